"""`fleetrel --log-format json`: every line on stderr one JSON object with the documented keys."""
from __future__ import annotations

import json
import subprocess
import sys

from fleetrel.events import Event, Record
from fleetrel.logs import JsonProgress, configure
from support import journal_records, write_plan

PKG = "door-sensor-app"


def fleetrel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetrel", "--log-format", "json", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)


def test_a_run_logs_json_lines_only(emulator, tmp_path):
    versions = [f"1.9.{i}" for i in range(12)]
    emulator.seed([(PKG, v) for v in versions])
    plan = write_plan(tmp_path / "p.yaml", versions, package=PKG, name="logs", waves=[4])
    journal = tmp_path / "j.jsonl"
    out = fleetrel("run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url, "--wave-pause", "0")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    lines = [json.loads(line) for line in out.stderr.splitlines()]  # every line parses
    assert all({"ts", "level", "logger", "event"} <= set(line) for line in lines)
    run_id = journal_records(journal)[0]["run_id"]
    kinds = [line["event"] for line in lines]
    assert "progress" in kinds and "notice" in kinds
    [summary] = [line for line in lines if line["event"] == "summary"]
    assert (summary["ending"], summary["succeeded"], summary["run_id"], summary["plan"]) == \
        ("finished", 12, run_id, "logs")
    last = [line for line in lines if line["event"] == "progress"][-1]
    assert (last["done"], last["total"], last["run_id"]) == (12, 12, run_id)
    assert any("wave 2/2" in line.get("message", "") for line in lines if line["event"] == "notice")


def test_an_error_is_a_json_line_with_its_exit_code(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("plan: x\nversions: [{package: 'no spaces allowed', version: 1.0, action: PUBLISH}]\n")
    out = fleetrel("run", str(bad))
    assert out.returncode == 2
    [line] = [json.loads(line) for line in out.stderr.splitlines()]
    assert (line["event"], line["level"], line["exit_code"]) == ("error", "error", 2)
    assert "bad.yaml" in line["message"]


def test_json_progress_counts_as_the_plain_log_does(tmp_path):
    out = (tmp_path / "log").open("w")
    configure("json", file=out)
    try:
        progress = JsonProgress(every_seconds=1e9, every_fraction=0.5)
        progress.on_event(Record.of(Event.RUN_STARTED, run_id="r", plan="p", to_do=2))
        progress.on_event(Record.of(Event.STEP_SUCCEEDED, step="a/1", attempt=1))
        progress.on_event(Record.of(Event.STEP_FAILED, step="a/2", attempt=1, code="X"))
        progress.on_event(Record.of(Event.RUN_FINISHED, succeeded=1, skipped=0, failed=1, unfinished=0,
                                    attempts=2, throttles=0, elapsed=0.5))
    finally:
        configure("console")
        out.close()
    lines = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert [(line["event"], line.get("done")) for line in lines] == [("progress", 1), ("progress", 2), ("summary", None)]
    assert lines[-1]["failed"] == 1 and all(line["run_id"] == "r" for line in lines)
