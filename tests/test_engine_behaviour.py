"""The engine's behaviour against `fleetrel.testing.FakeIoT` on virtual time: retries,
aborts, waves, resume, interruption and skip-if-already-done, each in milliseconds.

The same behaviours over real HTTP against the emulator are in test_engine.py and
test_cli_run.py (the integration layer).
"""
from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from fleetrel.where import Where
from fleetrel import RunOptions, Stop, load_plan, run
from fleetrel.events import TERMINAL, Event, ExitCode, Record, Status
from fleetrel.replay import replay
from fleetrel.testing import DROP, EXPIRED, HANG, SERVER_ERROR, THROTTLE, FakeIoT, run_virtual
from support import journal_records, write_plan

PKG = "fw"


def plan_of(tmp_path: Path, versions: list[str], **kwargs):
    return load_plan(write_plan(tmp_path / "p.yaml", versions, package=PKG, rate=10, burst=5, concurrency=4, **kwargs))


def drafts(*versions: str, status: str = "DRAFT") -> dict[str, str]:
    return {f"{PKG}/{v}": status for v in versions}


def go(plan, iot, tmp_path, **kwargs):
    return run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot, **kwargs))


def terminal_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in journal_records(path):
        if record["event"] in TERMINAL:
            counts[record["step"]] = counts.get(record["step"], 0) + 1
    return counts


def test_throttles_and_server_errors_are_retried_with_one_token(tmp_path):
    iot = FakeIoT(drafts("1", "2", "3"))
    iot.script(f"{PKG}/1", THROTTLE, THROTTLE).script(f"{PKG}/2", SERVER_ERROR)
    result = go(plan_of(tmp_path, ["1", "2", "3"]), iot, tmp_path)
    assert result.status == Status.COMPLETE and result.succeeded == 3
    assert iot.calls == {f"{PKG}/1": 3, f"{PKG}/2": 2, f"{PKG}/3": 1}
    assert result.throttles == 2 and result.retries == 3
    assert all(len(tokens) == 1 for tokens in iot.tokens.values())
    assert set(terminal_counts(tmp_path / "j.jsonl").values()) == {1}


def test_a_dropped_connection_after_apply_is_resent_with_the_same_token(tmp_path):
    iot = FakeIoT(drafts("1"))
    iot.script(f"{PKG}/1", DROP)
    result = go(plan_of(tmp_path, ["1"]), iot, tmp_path)
    assert result.succeeded == 1 and iot.calls[f"{PKG}/1"] == 2 and iot.applied[f"{PKG}/1"] == 1
    assert len(iot.tokens[f"{PKG}/1"]) == 1


def test_a_permanent_refusal_is_sent_once_and_not_again_on_resume(tmp_path):
    iot = FakeIoT(drafts("1"))  # 2 does not exist: ResourceNotFoundException
    plan = plan_of(tmp_path, ["1", "2"])
    result = go(plan, iot, tmp_path)
    assert result.status == Status.FAILED and result.exit_code == ExitCode.FAILED
    assert result.failures_by_code == {"ResourceNotFoundException": 1} and iot.calls[f"{PKG}/2"] == 1
    again = go(plan, iot, tmp_path)
    assert again.status == Status.FAILED and again.attempts == 0 and iot.calls[f"{PKG}/2"] == 1
    retried = go(plan, iot, tmp_path, options=RunOptions(retry_failed=True))
    assert retried.attempts == 1 and iot.calls[f"{PKG}/2"] == 2


def test_a_version_already_as_planned_is_skipped(tmp_path):
    iot = FakeIoT({**drafts("1"), **drafts("2", status="PUBLISHED")})
    result = go(plan_of(tmp_path, ["1", "2"]), iot, tmp_path)
    assert result.status == Status.COMPLETE and (result.succeeded, result.skipped) == (1, 1)
    skipped = [r for r in journal_records(tmp_path / "j.jsonl") if r["event"] == Event.STEP_SKIPPED]
    assert [r["step"] for r in skipped] == [f"{PKG}/2"] and skipped[0]["code"] == "ConflictException"


def test_the_failure_threshold_aborts_the_run(tmp_path):
    names = [f"{i}" for i in range(40)]
    iot = FakeIoT(drafts(*names[:10]))  # 30 of 40 missing
    plan = plan_of(tmp_path, names, abort={"max_failure_ratio": 0.2, "min_finished": 10})
    result = go(plan, iot, tmp_path)
    assert result.status == Status.ABORTED and result.exit_code == ExitCode.ABORTED
    assert result.unfinished > 0 and sum(iot.calls.values()) < 40
    assert replay(tmp_path / "j.jsonl").status == Status.ABORTED


def test_a_failed_wave_holds_the_next_wave_back(tmp_path):
    names = ["1", "2", "3", "4"]
    iot = FakeIoT(drafts("1", "3", "4"))  # 2, in the first wave, is missing
    result = go(plan_of(tmp_path, names, waves=[2]), iot, tmp_path)
    assert result.status == Status.FAILED and result.unfinished == 2
    assert iot.calls[f"{PKG}/3"] == 0 and iot.calls[f"{PKG}/4"] == 0
    events = [r["event"] for r in journal_records(tmp_path / "j.jsonl")]
    assert Event.WAVE_STOPPED in events and events[-1] == Event.RUN_FINISHED


def test_the_python_api_applies_the_plans_waves_and_asks_between_them(tmp_path):
    asked: list[tuple[int, int]] = []

    async def before_wave(wave: int, waves: int) -> bool:
        asked.append((wave, waves))
        return False  # the operator says no

    iot = FakeIoT(drafts("1", "2", "3", "4"))
    result = go(plan_of(tmp_path, ["1", "2", "3", "4"], waves=[2]), iot, tmp_path, before_wave=before_wave)
    assert asked == [(2, 2)] and result.status == Status.INTERRUPTED and result.succeeded == 2
    assert iot.calls[f"{PKG}/3"] == 0
    resumed = go(plan_of(tmp_path, ["1", "2", "3", "4"], waves=[2]), iot, tmp_path)
    assert resumed.status == Status.COMPLETE and resumed.done_before == 2 and resumed.attempts == 2


class StopAfter:
    """A listener that asks the run to stop after `count` steps succeeded."""

    def __init__(self, stop: Stop, count: int) -> None:
        self.stop, self.count = stop, count

    def on_event(self, record: Record) -> None:
        if record.event == Event.STEP_SUCCEEDED:
            self.count -= 1
            if self.count == 0:
                self.stop.request("interrupted")


def test_calls_released_by_the_answer_that_stops_the_run_are_not_sent(tmp_path):
    """A burst of 50 and four calls out: the fourth answer ends the first wave, which
    releases the three workers waiting for it, and is the success the stop waits for.
    Those three must see the stop, not send."""
    names = [str(i) for i in range(8)]
    plan = load_plan(write_plan(tmp_path / "p.yaml", names, package=PKG, rate=10, burst=50, concurrency=4))
    iot = FakeIoT(drafts(*names), latency=0.05)
    stop = Stop()
    result = go(plan, iot, tmp_path, stop=stop, listeners=[StopAfter(stop, 4)])
    assert result.status == Status.INTERRUPTED and result.succeeded == 4
    assert sum(iot.calls.values()) == 4 and result.unfinished == 4


def test_an_interrupted_run_resumes_with_the_same_tokens_and_sends_only_the_rest(tmp_path):
    names = [str(i) for i in range(12)]
    plan = plan_of(tmp_path, names)
    iot = FakeIoT(drafts(*names), latency=0.05)
    stop = Stop()
    first = go(plan, iot, tmp_path, stop=stop, listeners=[StopAfter(stop, 5)])
    assert first.status == Status.INTERRUPTED and first.exit_code == ExitCode.INTERRUPTED
    assert first.succeeded >= 5 and first.unfinished == 12 - first.succeeded
    tokens_before = {k: set(v) for k, v in iot.tokens.items()}
    second = go(plan, iot, tmp_path)
    assert second.status == Status.COMPLETE and second.done_before == first.succeeded
    assert all(iot.applied[f"{PKG}/{n}"] == 1 for n in names)
    assert all(len(iot.tokens[k]) == 1 for k in iot.tokens)  # the same token if it was sent before
    assert all(iot.tokens[k] == v for k, v in tokens_before.items())
    assert set(terminal_counts(tmp_path / "j.jsonl").values()) == {1} and len(terminal_counts(tmp_path / "j.jsonl")) == 12


def test_stop_now_cancels_calls_in_flight_and_leaves_them_unfinished(tmp_path):
    iot = FakeIoT(drafts("1", "2"))
    iot.script(f"{PKG}/1", HANG).script(f"{PKG}/2", HANG)
    stop = Stop()

    async def main():
        async with anyio.create_task_group() as tg:
            async def stopper() -> None:
                while sum(iot.calls.values()) < 2:  # both calls in flight
                    await anyio.sleep(0.01)
                stop.request()
                stop.now()
            tg.start_soon(stopper)
            return await run(plan_of(tmp_path, ["1", "2"]), Where(journal_path=tmp_path / "j.jsonl"), client=iot, stop=stop)

    result = run_virtual(main)
    assert result.status == Status.INTERRUPTED and result.unfinished == 2
    assert terminal_counts(tmp_path / "j.jsonl") == {}
    assert journal_records(tmp_path / "j.jsonl")[-1]["event"] == Event.RUN_INTERRUPTED


def test_a_stop_with_nothing_in_flight_ends_the_run_without_waiting(tmp_path):
    """Workers waiting for the bucket leave at once: on virtual time, the run ends at
    the moment of the stop, not when the bucket would have admitted them."""
    names = [str(i) for i in range(30)]
    iot = FakeIoT(drafts(*names))
    stop = Stop()
    plan = load_plan(write_plan(tmp_path / "p.yaml", names, package=PKG, rate=1, burst=1, concurrency=8))

    async def main():
        result = await run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot, stop=stop, listeners=[StopAfter(stop, 2)])
        return result, anyio.current_time()

    result, ended = run_virtual(main)
    assert result.status == Status.INTERRUPTED and result.succeeded == 2
    assert ended < 2.5  # 2 calls at 1/s; without the fix the 8 waiting workers each waited for a token


def test_listeners_get_records_and_a_read_only_view(tmp_path):
    seen: list[Record] = []

    class Listener:
        view = None

        def on_start(self, view) -> None:
            Listener.view = view

        def on_event(self, record: Record) -> None:
            seen.append(record)

    iot = FakeIoT(drafts("1"))
    go(plan_of(tmp_path, ["1"]), iot, tmp_path, listeners=[Listener()])
    assert [r.event for r in seen][0] == Event.RUN_STARTED and seen[-1].event == Event.RUN_FINISHED
    assert Listener.view.ceiling == 10 and Listener.view.to_do == 1
    with pytest.raises(TypeError):
        seen[0].fields["plan"] = "changed"  # type: ignore[index]


@pytest.mark.parametrize("fault", [EXPIRED])
def test_fake_client_raises_what_aiobotocore_raises(fault):
    from fleetrel import errors

    iot = FakeIoT(drafts("1")).script(f"{PKG}/1", fault)
    with pytest.raises(Exception) as caught:
        run_virtual(lambda: iot.update_package_version(packageName=PKG, versionName="1", action="PUBLISH"))
    assert errors.error_code(caught.value) == "ExpiredTokenException"


def test_a_target_throttled_hard_does_not_slow_the_others(tmp_path):
    """Two targets, each its own quota: one throttles every call for a while. The other's
    steps all finish, and its calls are never held behind the first one's."""
    from fleetrel.plan import ReleasePlan

    names = [str(i) for i in range(20)]
    plan = ReleasePlan.model_validate({
        "plan": "two", "limits": {"rate": 10, "burst": 5, "concurrency": 2},
        "targets": [{"name": "slow", "region": "us-east-1"}, {"name": "fast", "region": "eu-west-1"}],
        "versions": [{"package": PKG, "versions": names, "action": "PUBLISH"}]})
    slow, fast = FakeIoT(drafts(*names)), FakeIoT(drafts(*names))
    for name in names:
        slow.script(f"{PKG}/{name}", *[THROTTLE] * 5)
    finished_at: dict[str, float] = {}

    class When:
        def on_event(self, record: Record) -> None:
            if record.event == Event.STEP_SUCCEEDED:
                finished_at[record["step"]] = anyio.current_time()

    result = run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client={"slow": slow, "fast": fast}, listeners=[When()]))
    assert result.status == Status.COMPLETE and result.targets["fast"]["succeeded"] == 20
    assert sum(fast.calls.values()) == 20  # never throttled
    fast_done = max(t for k, t in finished_at.items() if k.startswith("fast:"))
    slow_done = max(t for k, t in finished_at.items() if k.startswith("slow:"))
    assert fast_done < slow_done  # on virtual time: its own pace, not the throttled target's
    assert {r["target"] for r in journal_records(tmp_path / "j.jsonl") if r["event"] in TERMINAL} == {"slow", "fast"}


def test_log_lines_show_at_most_six_targets_and_sum_up_the_rest(tmp_path):
    from fleetrel.plan import ReleasePlan
    from fleetrel.progress import PlainLog

    names = [str(i) for i in range(4)]
    targets = [{"name": f"t{i}", "region": "us-east-1", "endpoint_url": f"http://127.0.0.1:{9000 + i}"}
               for i in range(8)]
    plan = ReleasePlan.model_validate({"plan": "eight", "limits": {"rate": 100, "burst": 5, "concurrency": 2},
                                       "targets": targets, "versions": [{"package": PKG, "versions": names,
                                                                         "action": "PUBLISH"}]})
    clients = {t["name"]: FakeIoT(drafts(*names)) for t in targets}
    clients["t5"] = FakeIoT(drafts(*names[:1]))  # three of t5's versions are missing: it fails them at once
    lines: list[str] = []
    log = PlainLog(lines.append, every_fraction=1.0, every_seconds=1e9)
    run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=clients, listeners=[log]))
    last = lines[-7:]
    assert len(last) == 7 and last[-1].startswith("  ... and 2 more target(s)")
    assert all(line.startswith("  t") for line in last[:-1])


def test_no_call_past_the_first_burst_leaves_before_the_first_answer(tmp_path):
    """Calls take 0.5 s: the first burst (5) leaves at 0, and the sixth call not before
    the first answer, then one interval after it (not at 0.1 s, on a refill the
    service's bucket may not have had)."""
    versions = [str(i) for i in range(8)]
    iot = FakeIoT(drafts(*versions), latency=0.5)
    sent: dict[str, float] = {}
    for version in versions:
        async def note(version=version) -> None:  # the fake awaits this after its latency
            sent[version] = anyio.current_time() - 0.5
        iot.script(f"{PKG}/{version}", note)
    plan = load_plan(write_plan(tmp_path / "p.yaml", versions, package=PKG, rate=10, burst=5, concurrency=8))
    result = go(plan, iot, tmp_path)
    assert result.succeeded == 8
    times = sorted(sent.values())
    assert times[:5] == pytest.approx([0.0] * 5, abs=1e-3)
    assert times[5] == pytest.approx(0.6, abs=1e-3) and times[6] == pytest.approx(0.7, abs=1e-3)


def test_every_target_sends_its_first_call_before_any_target_its_second(tmp_path):
    """Workers start round-robin over the targets, a loop turn between rounds: with 20
    targets the first burst is 200 calls of ~1.5 ms of CPU each, and started target after
    target the last target's first call left ~0.3 s after the first one's, its quota's
    refill unused meanwhile (issue 25, item 5)."""
    from fleetrel.plan import ReleasePlan

    names = [str(i) for i in range(6)]
    targets = [{"name": f"t{i}", "region": "us-east-1", "endpoint_url": f"http://127.0.0.1:{9000 + i}"}
               for i in range(4)]
    plan = ReleasePlan.model_validate({"plan": "four", "limits": {"rate": 10, "burst": 5, "concurrency": 3},
                                       "targets": targets, "versions": [{"package": PKG, "versions": names,
                                                                         "action": "PUBLISH"}]})
    order: list[str] = []

    class Noting(FakeIoT):
        def __init__(self, name: str) -> None:
            super().__init__(drafts(*names), latency=0.05)
            self.name = name

        async def update_package_version(self, **kwargs):
            order.append(self.name)
            return await super().update_package_version(**kwargs)

    clients = {t["name"]: Noting(t["name"]) for t in targets}
    result = run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=clients))
    assert result.status == Status.COMPLETE and len(order) == 24
    assert order[:4] == ["t0", "t1", "t2", "t3"]
    assert order[4:8] == ["t0", "t1", "t2", "t3"]
