"""The engine's side of gates (`fleetrel.engine.WaveGate`) on FakeIoT and virtual time."""
from __future__ import annotations

import anyio

from fleetrel import Stop, load_plan, run
from fleetrel.events import Status
from fleetrel.gates import HOLD, WaveGates, set_gate
from fleetrel.testing import FakeIoT, run_virtual
from fleetrel.where import Where
from support import journal_records, write_plan

VERSIONS = [str(i) for i in range(6)]


class Answers:
    """A gate whose answers are scripted; it records what the engine asked."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[int, int, bool]] = []

    async def decide(self, wave, waves, *, first_in_session, record):
        self.asked.append((wave, waves, first_in_session))
        go = self.answers.pop(0)
        record(decision="go" if go else "stop", by="test")
        return go


def setup(tmp_path):
    plan = load_plan(write_plan(tmp_path / "p.yaml", VERSIONS, package="fw", waves=[2, 4]))
    return plan, FakeIoT({f"fw/{v}": "DRAFT" for v in VERSIONS}), Where(journal_path=tmp_path / "j.jsonl")


def test_a_gate_is_asked_before_every_wave_after_the_first_and_again_on_resume(tmp_path):
    plan, iot, where = setup(tmp_path)
    no = Answers(False)
    first = run_virtual(lambda: run(plan, where, client=iot, before_wave=no))
    assert first.status == Status.INTERRUPTED and first.succeeded == 2
    assert no.asked == [(2, 3, False)]
    yes = Answers(True, True)
    second = run_virtual(lambda: run(plan, where, client=iot, before_wave=yes))
    assert second.status == Status.COMPLETE
    assert yes.asked == [(2, 3, True), (3, 3, False)]  # the resumed session's first wave was asked too
    gates = [(r["wave"], r["decision"]) for r in journal_records(tmp_path / "j.jsonl") if r["event"] == "wave_gate"]
    assert gates == [(2, "stop"), (2, "go"), (3, "go")]


def test_a_run_held_between_waves_stops_on_a_stop(tmp_path):
    plan, iot, where = setup(tmp_path)
    journal = tmp_path / "j.jsonl"
    set_gate(journal, HOLD, reason="soak")
    gates = WaveGates(journal=journal, poll=5.0)
    stop = Stop()

    async def main():
        async with anyio.create_task_group() as tg:
            async def stop_once_held():
                while not any(r.get("decision") == "held" for r in journal_records(journal)):
                    await anyio.sleep(1)  # virtual seconds: the run's clock, not the machine's
                await anyio.sleep(60)  # held for a virtual minute
                stop.request("interrupted")
            tg.start_soon(stop_once_held)
            result = await run(plan, where, client=iot, before_wave=gates, listeners=[gates], stop=stop)
        return result

    result = run_virtual(main)
    assert result.status == Status.INTERRUPTED and result.succeeded == 2
    [held] = [r for r in journal_records(journal) if r["event"] == "wave_gate"]
    assert (held["decision"], held["by"], held["reason"]) == ("held", "hold-file", "soak")
