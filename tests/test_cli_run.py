"""`fleetrel run` as an operator meets it: piped output, --json, abort and resume, waves."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from fleetrel.cli import main
from fleetrel.replay import replay
from fleetrel.events import Event, Record
from fleetrel.progress import PlainLog
from support import FakeClock, update_calls, write_plan as _write_plan
from support import journal_records as records

PKG = "door-sensor-app"
ANSI_ESCAPE = "\x1b"


def names(n: int) -> list[str]:
    return [f"1.9.{i}" for i in range(n)]


def write_plan(path: Path, versions: list[str], **kwargs) -> Path:
    return _write_plan(path, versions, package=PKG, name="cli-test", **kwargs)


def fleetrel(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI in its own process, stdout and stderr piped, stdin not a terminal."""
    return subprocess.run([sys.executable, "-m", "fleetrel", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def test_piped_run_logs_plain_lines_without_escape_codes_and_never_prompts(emulator, tmp_path):
    versions = names(25)  # more than 20: a terminal would be asked to confirm
    emulator.seed([(PKG, v) for v in versions])
    plan = write_plan(tmp_path / "p.yaml", versions)
    out = fleetrel("run", str(plan), "--journal", str(tmp_path / "j.jsonl"), "--endpoint-url", emulator.url)
    assert out.returncode == 0, out.stderr
    assert ANSI_ESCAPE not in out.stdout and ANSI_ESCAPE not in out.stderr
    progress = [line for line in out.stdout.splitlines() if line.startswith("[")]
    assert progress and progress[-1].split("]")[1].strip().startswith("25/25 (100%)")
    assert "succeeded" in out.stdout and "mean calls/s" in out.stdout and "throttled" in out.stdout
    assert update_calls(emulator) == 25


def test_json_output_parses_and_keeps_people_on_stderr(emulator, tmp_path):
    versions = names(6)
    emulator.seed([(PKG, v) for v in versions[:5]])  # one missing: it fails
    plan = write_plan(tmp_path / "p.yaml", versions)
    out = fleetrel("run", str(plan), "--journal", str(tmp_path / "j.jsonl"), "--endpoint-url", emulator.url,
                   "--json", "--verify")
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "failed" and doc["succeeded"] == 5 and doc["failed"] == 1
    assert doc["failures_by_code"] == {"ResourceNotFoundException": 1}
    assert doc["verify"]["matches"] is False and [d["key"] for d in doc["verify"]["drifted"]] == [f"{PKG}/1.9.5"]
    assert "calls_per_second" in doc and "throttled_fraction" in doc
    assert "--retry-failed" in out.stderr and ANSI_ESCAPE not in out.stderr


def test_the_same_command_on_a_finished_run_sends_nothing_and_loads_no_http_client(emulator, tmp_path):
    """Nothing left to send: the run is answered from its journal, with no AWS client
    built (aiohttp and aiobotocore stay unloaded), and another target is still refused."""
    versions = names(4)
    emulator.seed([(PKG, v) for v in versions])
    plan = write_plan(tmp_path / "p.yaml", versions)
    run = ["run", str(plan), "--journal", str(tmp_path / "j.jsonl"), "--json"]
    assert fleetrel(*run, "--endpoint-url", emulator.url).returncode == 0
    sent = update_calls(emulator)
    # the CLI in a process of its own that says, at its end, whether aiohttp was loaded
    probe = ("import runpy, sys\n"
             "try:\n    runpy.run_module('fleetrel', run_name='__main__')\n"
             "finally:\n    print('aiohttp loaded:', 'aiohttp' in sys.modules, file=sys.stderr)\n")

    def again(endpoint: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", probe, *run, "--endpoint-url", endpoint], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=300)

    out = again(emulator.url)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "complete" and doc["attempts"] == 0 and doc["done_before"] == 4
    assert [o["outcome"] for o in doc["outcomes"]] == ["succeeded"] * 4
    assert "aiohttp loaded: False" in out.stderr
    assert update_calls(emulator) == sent
    elsewhere = again("http://127.0.0.1:9")
    assert elsewhere.returncode == 2 and "was sent to" in elsewhere.stderr
    assert "aiohttp loaded: False" in elsewhere.stderr


def test_abort_threshold_exits_3_early_and_a_rerun_resumes(emulator, tmp_path):
    versions = names(30)
    missing = {v for i, v in enumerate(versions) if i % 2}
    emulator.seed([(PKG, v) for v in versions if v not in missing])
    plan = write_plan(tmp_path / "p.yaml", versions, concurrency=2,
                      abort={"max_failure_ratio": 0.2, "min_finished": 10})
    journal = tmp_path / "j.jsonl"
    args = ["run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 3, first.output
    assert "aborted" in first.output and "run the same command again to resume" in first.output
    sent_first = update_calls(emulator)
    assert sent_first < len(versions)  # stopped before attempting everything
    state = replay(journal)
    assert state.status == "aborted" and state.counts()["unfinished"] == len(versions) - sent_first

    # The missing versions appear; a re-run resumes: only the steps never sent go out.
    emulator.seed([(PKG, v) for v in missing])
    second = CliRunner().invoke(main, args)
    assert update_calls(emulator) == len(versions)  # each step sent exactly once over both runs
    assert second.exit_code == 1, second.output  # the first run's failures stay failed ...
    third = CliRunner().invoke(main, [*args, "--retry-failed"])
    assert third.exit_code == 0, third.output  # ... until --retry-failed
    assert replay(journal).status == "complete" and replay(journal).sessions == 3


def test_waves_run_in_order_with_wave_pause(emulator, tmp_path):
    versions = names(10)
    emulator.seed([(PKG, v) for v in versions])
    plan = write_plan(tmp_path / "p.yaml", versions, waves=[2, "50%"])
    journal = tmp_path / "j.jsonl"
    out = fleetrel("run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url,
                   "--wave-pause", "0")
    assert out.returncode == 0, out.stderr
    assert "wave 3/3" in out.stdout
    recs = records(journal)
    # one session: the journal stays locked and the rate controller keeps its estimate
    assert [r["event"] for r in recs if r["event"] in ("run_started", "run_resumed")] == ["run_started"]
    assert [(r["wave"], r["steps"]) for r in recs if r["event"] == "wave_started"] == [(1, 2), (2, 3), (3, 5)]
    # every step of a wave finished before any step of the next one started
    position = {(r["event"], r.get("step")): i for i, r in enumerate(recs)}
    keys = [f"{PKG}/{v}" for v in versions]
    for earlier, later in ((keys[:2], keys[2:]), (keys[:5], keys[5:])):
        last_done = max(position[("step_succeeded", k)] for k in earlier)
        first_start = min(position[("step_started", k)] for k in later)
        assert last_done < first_start


def test_a_failure_in_a_wave_stops_before_the_next(emulator, tmp_path):
    versions = names(8)
    emulator.seed([(PKG, v) for i, v in enumerate(versions) if i != 2])  # step 3 is in wave 2
    plan = write_plan(tmp_path / "p.yaml", versions, waves=[2, 4])
    journal = tmp_path / "j.jsonl"
    out = fleetrel("run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url,
                   "--wave-pause", "0")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "not starting wave 3" in out.stdout
    assert update_calls(emulator) == 4
    started = {r["step"] for r in records(journal) if r["event"] == "step_started"}
    assert started == {f"{PKG}/{v}" for v in versions[:4]}

    # the same command again: the failure still holds the next wave back ...
    again = fleetrel("run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url, "--wave-pause", "0")
    assert again.returncode == 1 and update_calls(emulator) == 4
    # ... until the missing version exists and the failed step is retried
    emulator.seed([(PKG, versions[2])])
    fixed = fleetrel("run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url,
                     "--wave-pause", "0", "--retry-failed")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert update_calls(emulator) == 4 + 1 + 4  # the retried step, then wave 3


# -- the plain log, with a fake clock --------------------------------------------------

def test_plain_log_writes_every_tenth_of_the_steps_and_every_interval():
    clock, lines = FakeClock(), []
    log = PlainLog(lines.append, every_seconds=5.0, every_fraction=0.1, clock=clock)
    log.on_event(Record.of(Event.RUN_STARTED, to_do=100))
    log.started = clock.now
    for i in range(1, 31):
        log.on_event(Record.of(Event.STEP_SUCCEEDED, step=f"p/{i}"))
    assert len(lines) == 3 and lines[-1].split("]")[1].strip().startswith("30/100 (30%)")
    clock.now = 6.0  # nothing for a while, then one step and a throttle: the interval passed
    log.on_event(Record.of(Event.ATTEMPT_FAILED, step="p/31", throttled=True))
    assert len(lines) == 4 and "throttles 1 retries 1" in lines[-1]
    log.on_event(Record.of(Event.STEP_FAILED, step="p/31", code="ValidationException"))
    assert len(lines) == 4  # neither a tenth more nor 5 s since the last line
    log.on_event(Record.of(Event.RUN_ABORTED))
    assert "failed 1" in lines[-1] and "stopping: aborted" in lines[-1]
    assert all(ANSI_ESCAPE not in line for line in lines)
    assert "ETA" in lines[-1]


# -- demo and bench: the commands that start their own emulator ---------------------------

def test_demo_rehearses_a_plan_against_its_own_emulator(tmp_path):
    plan = write_plan(tmp_path / "p.yaml", names(12))
    out = fleetrel("demo", "--plan", str(plan), "--rate", "100", "--latency-ms", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "12 versions seeded as DRAFT" in out.stdout and "complete" in out.stdout
    seen, throttled = map(int, re.search(r"the emulator saw (\d+) UpdatePackageVersion calls, (\d+) throttled",
                                         out.stdout).groups())
    assert seen - throttled == 12  # every step accepted once


def test_bench_reports_its_figures_as_json(tmp_path):
    out = fleetrel("bench", "--rate", "100", "--burst", "10", "--steps", "30", "--latency-ms", "0", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    figures = json.loads(out.stdout)
    assert figures["failed"] == 0 and figures["succeeded"] == 30
    assert figures["attempts"] >= 30 and figures["efficiency"] > 0
