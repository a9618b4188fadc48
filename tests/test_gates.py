"""Gates between waves: `--wave-gate CMD`, and `fleetrel hold` / `promote` from another process."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from fleetrel.events import ExitCode
from fleetrel.gates import HOLD, PROMOTE, read_gate, set_gate
from support import journal_records, write_plan

PKG = "door-sensor-app"
VERSIONS = [f"1.9.{i}" for i in range(6)]


def fleetrel(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetrel", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def gates(journal: Path) -> list[dict]:
    return [r for r in journal_records(journal) if r["event"] == "wave_gate"]


def setup(emulator, tmp_path: Path) -> tuple[Path, Path]:
    emulator.seed([(PKG, v) for v in VERSIONS])
    return write_plan(tmp_path / "p.yaml", VERSIONS, package=PKG, name="gates", waves=[2, 4]), tmp_path / "j.jsonl"


def test_a_gate_that_says_no_stops_before_wave_2_and_a_resume_asks_again(emulator, tmp_path):
    plan, journal = setup(emulator, tmp_path)
    facts = tmp_path / "facts.env"
    run = ("run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url)
    no = fleetrel(*run, "--wave-gate", f"env | grep ^FLEETREL_ > {facts}; false")
    assert no.returncode == ExitCode.INTERRUPTED, no.stderr
    records = journal_records(journal)
    assert sum(r["event"] == "step_succeeded" for r in records) == 2  # wave 1 only
    assert records[-1]["event"] == "run_interrupted"
    [gate] = gates(journal)
    assert (gate["wave"], gate["waves"], gate["decision"], gate["by"], gate["exit_code"]) == (2, 3, "stop", "command", 1)
    assert gate["who"] and gate["ts"]
    env = dict(line.split("=", 1) for line in facts.read_text().splitlines())
    assert env["FLEETREL_RUN_ID"] == records[0]["run_id"]
    assert env["FLEETREL_JOURNAL"] == str(journal)
    assert (env["FLEETREL_WAVE"], env["FLEETREL_WAVES"], env["FLEETREL_SUCCEEDED"], env["FLEETREL_FAILED"]) == \
        ("2", "3", "2", "0")

    yes = fleetrel(*run, "--wave-gate", f"env | grep ^FLEETREL_ > {facts}")
    env = dict(line.split("=", 1) for line in facts.read_text().splitlines())
    # the last gate, before wave 3 of the resumed session: the whole run's counts and the session's
    assert (env["FLEETREL_WAVE"], env["FLEETREL_SUCCEEDED"], env["FLEETREL_UNFINISHED"],
            env["FLEETREL_SESSION_SUCCEEDED"], env["FLEETREL_DONE_BEFORE"]) == ("3", "4", "2", "2", "2")
    assert yes.returncode == ExitCode.OK, yes.stderr
    decisions = [(g["wave"], g["decision"]) for g in gates(journal)]
    assert decisions == [(2, "stop"), (2, "go"), (3, "go")]  # the resume asked again, before wave 2
    status = fleetrel("status", str(journal), "--json")
    assert status.returncode == 0
    assert [(g["wave"], g["decision"], g["by"]) for g in json.loads(status.stdout)["gates"]] == \
        [(2, "stop", "command"), (2, "go", "command"), (3, "go", "command")]
    assert "wave 2/3: stop by command" in fleetrel("status", str(journal)).stdout


def test_a_gate_that_hangs_past_its_timeout_is_a_no(emulator, tmp_path):
    plan, journal = setup(emulator, tmp_path)
    out = fleetrel("run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url,
                   "--wave-gate", "sleep 60", "--wave-gate-timeout", "0.2")
    assert out.returncode == ExitCode.INTERRUPTED, out.stderr
    [gate] = gates(journal)
    assert gate["decision"] == "stop" and gate["timed_out"] is True and gate["exit_code"] is None


def test_hold_and_promote_from_other_processes(emulator, tmp_path):
    plan, journal = setup(emulator, tmp_path)
    held = fleetrel("hold", str(journal), "--reason", "canary alarm")
    assert held.returncode == 0 and read_gate(journal)["state"] == HOLD
    runner = subprocess.Popen([sys.executable, "-m", "fleetrel", "run", str(plan), "--journal", str(journal),
                               "--endpoint-url", emulator.url, "--wave-pause", "0"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # bounded: until the run journals that it is held (at most ~60 s)
            if any(g["decision"] == "held" for g in gates(journal)) or runner.poll() is not None:
                break
            time.sleep(0.1)  # polling the journal the run writes, not a synchronisation by time
        assert runner.poll() is None, runner.stderr.read()
        [held_record] = gates(journal)
        assert (held_record["wave"], held_record["by"], held_record["reason"]) == (2, "hold-file", "canary alarm")
        assert sum(r["event"] == "step_succeeded" for r in journal_records(journal)) == 2  # waiting before wave 2
        assert fleetrel("promote", str(journal)).returncode == 0
        assert runner.wait(timeout=120) == ExitCode.OK, runner.stderr.read()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    decisions = [(g["wave"], g["decision"], g["by"], g.get("state")) for g in gates(journal)]
    assert decisions[:2] == [(2, "held", "hold-file", HOLD), (2, "go", "hold-file", PROMOTE)]
    assert [d[1] for d in decisions[2:]] == ["go", "go"]  # the --wave-pause decisions, journalled too
    assert journal_records(journal)[-1]["event"] == "run_finished"


def test_the_hold_file_is_replaced_whole(tmp_path):
    journal = tmp_path / "j.jsonl"
    assert read_gate(journal) is None
    set_gate(journal, HOLD, reason="why")
    set_gate(journal, PROMOTE)
    content = read_gate(journal)
    assert content["state"] == PROMOTE and "reason" not in content and "@" in content["who"]
    assert [p.name for p in tmp_path.iterdir()] == ["j.jsonl.gate"]
