"""`fleetrel status JOURNAL` on real journals: complete, aborted, killed (SIGKILL), torn."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from fleetrel.cli import main
from support import write_plan as _write_plan

PKG = "thermostat-fw"


def write_plan(path: Path, versions: list[str], **kwargs) -> Path:
    return _write_plan(path, versions, package=PKG, name="status-test", **kwargs)


def names(n: int) -> list[str]:
    return [f"5.0.{i}" for i in range(n)]


def status(journal: Path) -> tuple[int, dict]:
    out = CliRunner().invoke(main, ["status", str(journal), "--json"])
    return out.exit_code, json.loads(out.output)


def terminal_records(journal: Path) -> int:
    if not journal.exists():
        return 0
    return sum(1 for line in journal.read_text().splitlines()
               if line.endswith("}") and '"event": "step_' in line and '"step_started"' not in line)


def invoke_run(*args: str):
    return CliRunner().invoke(main, ["run", *args])


def test_status_of_a_complete_run(emulator, tmp_path):
    versions = names(12)
    emulator.seed([(PKG, v) for v in versions])
    emulator.configure(operations={"UpdatePackageVersion": {"rate": 40, "burst": 2}})  # some throttles
    plan = write_plan(tmp_path / "p.yaml", versions, rate=100)
    journal = tmp_path / "j.jsonl"
    ran = invoke_run(str(plan), "--journal", str(journal), "--endpoint-url", emulator.url)
    assert ran.exit_code == 0, ran.output

    code, doc = status(journal)
    assert code == 0 and doc["status"] == "complete" and doc["plan"] == "status-test"
    assert doc["counts"] == {"succeeded": 12, "skipped": 0, "failed": 0, "unfinished": 0}
    assert doc["started"] and doc["ended"] and doc["sessions"] == 1 and "resume" not in doc
    throttled = emulator.record()["throttled"].get("UpdatePackageVersion", 0)
    assert doc["throttles"] == throttled  # the journal counts what the service refused
    assert len(doc["rate_changes"]) >= (1 if throttled else 0)
    text = CliRunner().invoke(main, ["status", str(journal)])
    assert text.exit_code == 0 and "complete" in text.output and "resume with" not in text.output


def test_status_of_an_aborted_run_names_failures_by_code_and_the_resume_command(emulator, tmp_path):
    versions = names(20)
    emulator.seed([(PKG, v) for i, v in enumerate(versions) if i % 2 == 0])  # half missing
    plan = write_plan(tmp_path / "p.yaml", versions, concurrency=2,
                      abort={"max_failure_ratio": 0.2, "min_finished": 10})
    journal = tmp_path / "j.jsonl"
    ran = invoke_run(str(plan), "--journal", str(journal), "--endpoint-url", emulator.url)
    assert ran.exit_code == 3, ran.output
    assert "aborted" in ran.output and "--retry-failed" in ran.output

    code, doc = status(journal)
    assert code == 3 and doc["status"] == "aborted"
    failed = doc["failures"]["ResourceNotFoundException"]
    assert failed and all(int(k.rsplit(".", 1)[1]) % 2 == 1 for k in failed)  # only the missing ones
    assert doc["counts"]["failed"] == len(failed) and doc["counts"]["unfinished"] > 0
    assert doc["resume"] == f"fleetrel run {plan} --journal {journal} --endpoint-url {emulator.url} --retry-failed"


def test_status_after_sigkill_then_resume(emulator, tmp_path):
    versions = names(80)
    emulator.seed([(PKG, v) for v in versions])
    plan = write_plan(tmp_path / "p.yaml", versions, rate=40)
    journal = tmp_path / "j.jsonl"
    cmd = [sys.executable, "-m", "fleetrel", "run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while terminal_records(journal) < 10:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)  # polling the journal for a condition, not a timing assumption
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    code, doc = status(journal)
    assert code == 130 and doc["status"] == "interrupted" and doc["ended"] is None
    assert doc["counts"]["succeeded"] >= 10 and doc["counts"]["unfinished"] > 0
    assert doc["counts"]["succeeded"] + doc["counts"]["unfinished"] == 80
    assert doc["resume"] == f"fleetrel run {plan} --journal {journal} --endpoint-url {emulator.url}"
    text = CliRunner().invoke(main, ["status", str(journal)])
    assert "interrupted" in text.output and "resume with:\nfleetrel run" in text.output

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    code, doc = status(journal)
    assert code == 0 and doc["status"] == "complete" and doc["sessions"] == 2


def test_status_tolerates_a_torn_last_line_and_refuses_garbage(emulator, tmp_path):
    versions = names(4)
    emulator.seed([(PKG, v) for v in versions])
    plan = write_plan(tmp_path / "p.yaml", versions)
    journal = tmp_path / "j.jsonl"
    assert invoke_run(str(plan), "--journal", str(journal), "--endpoint-url", emulator.url).exit_code == 0
    lines = journal.read_text().splitlines(keepends=True)
    # A crash while writing the last record: drop run_finished and leave half a line.
    torn = tmp_path / "torn.jsonl"
    torn.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    code, doc = status(torn)
    assert doc["torn_tail"] is True and doc["status"] == "interrupted" and code == 130
    assert doc["counts"]["succeeded"] == 4
    assert "torn last line ignored" in CliRunner().invoke(main, ["status", str(torn)]).output

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n" + "".join(lines))
    out = CliRunner().invoke(main, ["status", str(garbage)])
    assert out.exit_code == 2 and "Traceback" not in out.output
    missing = CliRunner().invoke(main, ["status", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "no such journal" in missing.output
