"""Stopping a run from outside (`fleetrel.interrupts`: SIGINT/SIGTERM become `Stop`
requests): what a stop that comes too late to change anything leaves behind.
FakeIoT on virtual time, in milliseconds."""
from __future__ import annotations

from pathlib import Path

import pytest

from fleetrel import Stop, load_plan, run
from fleetrel.events import TERMINAL, Event, ExitCode, Record, Status
from fleetrel.replay import replay
from fleetrel.testing import FakeIoT, run_virtual
from fleetrel.where import Where
from support import journal_records, write_plan

PKG = "fw"


class StopOnLastEnd:
    """Asks the run to stop (as `with_signals` does on SIGTERM) when the last step ends."""

    def __init__(self, stop: Stop, steps: int, *, forced: bool) -> None:
        self.stop, self.left, self.forced = stop, steps, forced

    def on_event(self, record: Record) -> None:
        if record.event in TERMINAL:
            self.left -= 1
            if self.left == 0:
                self.stop.now() if self.forced else self.stop.request("interrupted")


@pytest.mark.parametrize("forced", [False, True], ids=["first signal", "second signal"])
def test_a_signal_after_every_step_ended_leaves_the_run_complete(tmp_path: Path, forced: bool):
    names = ["1", "2", "3"]
    plan = load_plan(write_plan(tmp_path / "p.yaml", names, package=PKG, rate=10, burst=5, concurrency=2))
    iot = FakeIoT({f"{PKG}/{n}": "DRAFT" for n in names}, latency=0.05)
    stop = Stop()
    journal = tmp_path / "j.jsonl"
    result = run_virtual(lambda: run(plan, Where(journal_path=journal), client=iot, stop=stop,
                                     listeners=[StopOnLastEnd(stop, len(names), forced=forced)]))
    assert stop.reason == "interrupted"  # the stop did arrive
    assert result.status == Status.COMPLETE and result.exit_code == ExitCode.OK and result.stopped_by is None
    assert journal_records(journal)[-1]["event"] == Event.RUN_FINISHED
    assert replay(journal).status == Status.COMPLETE


def test_a_signal_with_a_step_left_still_interrupts(tmp_path: Path):
    names = ["1", "2", "3"]
    plan = load_plan(write_plan(tmp_path / "p.yaml", names, package=PKG, rate=10, burst=5, concurrency=1))
    iot = FakeIoT({f"{PKG}/{n}": "DRAFT" for n in names}, latency=0.05)
    stop = Stop()
    result = run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot, stop=stop,
                                     listeners=[StopOnLastEnd(stop, 2, forced=False)]))
    assert result.status == Status.INTERRUPTED and result.exit_code == ExitCode.INTERRUPTED and result.unfinished == 1
