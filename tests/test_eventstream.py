"""`run --events`: the stream's lines, its schema, and readers that fall behind or leave."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import threading

import jsonschema

from fleetrel import load_plan, run
from fleetrel.events import Event, ExitCode, Record
from fleetrel.eventstream import SCHEMA_VERSION, EventStream, schema
from fleetrel.testing import THROTTLE, FakeIoT, run_virtual
from fleetrel.where import Where
from support import journal_records, write_plan

PKG = "door-sensor-app"


def lines_of(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_a_run_streams_its_events_and_each_line_follows_the_schema(tmp_path):
    versions = [str(i) for i in range(6)]
    plan = load_plan(write_plan(tmp_path / "p.yaml", versions, package="fw", waves=[2]))
    iot = FakeIoT({f"fw/{v}": "DRAFT" for v in versions})
    iot.script("fw/3", THROTTLE)
    out = io.BytesIO()
    out.close = lambda: None  # keep it readable after the stream closes
    with EventStream(out, close_out=True) as stream:
        result = run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot,
                                         listeners=[stream]))
    assert result.succeeded == 6
    events = lines_of(out.getvalue())
    validator = jsonschema.Draft202012Validator(schema())
    for event in events:
        validator.validate(event)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["schema_version"] == SCHEMA_VERSION for e in events)
    names = [e["event"] for e in events]
    assert names[0] == "run_started" and names[-1] == "run_ended"
    assert names.count("step_started") == 6 and names.count("step_finished") == 6 and names.count("throttled") == 1
    waves = [(e["event"], e["wave"]) for e in events if e["event"].startswith("wave_")]
    assert waves == [("wave_started", 1), ("wave_ended", 1), ("wave_started", 2), ("wave_ended", 2)]
    assert [e["succeeded"] for e in events if e["event"] == "wave_ended"] == [2, 4]
    end = events[-1]
    assert (end["ending"], end["succeeded"], end["dropped"]) == ("finished", 6, 0)
    assert end["run_id"] == events[0]["run_id"] == journal_records(tmp_path / "j.jsonl")[0]["run_id"]


class _StuckReader(io.RawIOBase):
    """An output whose first write blocks until released: a reader that stopped reading."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.data = b""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.entered.set()
        self.release.wait()
        self.data += bytes(data)
        return len(data)


def test_a_reader_that_falls_behind_costs_dropped_events_never_a_wait():
    out = _StuckReader()
    stream = EventStream(out, buffer=3)
    record = Record.of(Event.STEP_STARTED, step="fw/1", attempt=1)
    stream.on_event(record)
    assert out.entered.wait(10)  # the writer thread is stuck in its first write
    for _ in range(10):
        stream.on_event(record)  # returns at once: three are buffered, the rest dropped
    assert stream.dropped == 7
    out.release.set()
    stream.close()
    assert len(lines_of(out.data)) == 4


def test_schema_command_prints_the_events_schema():
    out = subprocess.run([sys.executable, "-m", "fleetrel", "schema", "--events"], capture_output=True, text=True)
    assert out.returncode == 0
    printed = json.loads(out.stdout)
    assert printed == json.loads(json.dumps(schema()))
    assert "step_finished" in printed["properties"]["event"]["enum"]


def test_a_reader_that_leaves_after_one_line_does_not_disturb_the_run(emulator, tmp_path):
    # 600 steps: about 1,200 lines, more than a pipe holds, so the run writes after the reader left
    versions = [f"1.9.{i}" for i in range(600)]
    emulator.seed([(PKG, v) for v in versions])
    plan = write_plan(tmp_path / "p.yaml", versions, package=PKG, name="stream", rate=1000, burst=50,
                      concurrency=8)
    journal = tmp_path / "j.jsonl"
    # fleetrel ... --events - | (read one line; exit)
    writer = subprocess.Popen([sys.executable, "-m", "fleetrel", "run", str(plan), "--journal", str(journal),
                               "--endpoint-url", emulator.url, "--events", "-"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader = subprocess.run([sys.executable, "-c", "import sys; print(sys.stdin.readline(), end='')"],
                            stdin=writer.stdout, capture_output=True, text=True, timeout=120)
    writer.stdout.close()  # the reader's end is gone with it: only the run holds the pipe
    stderr = writer.stderr.read().decode()
    assert writer.wait(timeout=120) == ExitCode.OK, stderr
    assert json.loads(reader.stdout)["event"] == "run_started"
    records = journal_records(journal)
    assert sum(r["event"] == "step_succeeded" for r in records) == 600
    assert records[-1]["event"] == "run_finished"
    assert "Traceback" not in stderr


def test_a_fifo_that_nobody_reads_does_not_hold_the_run(emulator, tmp_path):
    import os

    versions = [f"1.9.{i}" for i in range(5)]
    emulator.seed([(PKG, v) for v in versions])
    plan = write_plan(tmp_path / "p.yaml", versions, package=PKG, name="fifo")
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)  # opening it for writing waits for a reader: none ever comes
    out = subprocess.run([sys.executable, "-m", "fleetrel", "run", str(plan), "--journal", str(tmp_path / "j.jsonl"),
                          "--endpoint-url", emulator.url, "--events", str(fifo)],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert out.returncode == ExitCode.OK, out.stderr
    assert journal_records(tmp_path / "j.jsonl")[-1]["event"] == "run_finished"
