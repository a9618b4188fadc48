"""Rate control: the arithmetic under a fake clock, the bucket under a virtual-time
event loop, and a simulated service that the controller must learn.

No test here reads the wall clock: time is either a counter the test moves, or
the virtual clock of ``VirtualTimeLoop`` (an asyncio loop that jumps straight to
its next timer instead of sleeping), which aiolimiter reads through
``loop.time()``.

``simulate()`` at the bottom is also the tuning tool:
``.venv/bin/python tests/test_ratecontrol.py`` prints the efficiency E and the
throttled fraction for the benchmark scenarios.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import selectors
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import pytest

from fleetrel.errors import backoff
from fleetrel.ratecontrol import RateController, RetunableLimiter
from support import FakeClock

# -- a fake clock and a virtual-time event loop --------------------------------


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of waiting.

    asyncio asks the selector to block for ``timeout`` seconds until the next
    timer is due; here the selector only polls and the clock moves forward by
    ``timeout``. Everything that reads ``loop.time()`` (asyncio.sleep,
    aiolimiter) sees consistent virtual time, and a run takes milliseconds.
    """

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        self._virtual_now = 0.0
        poll = self._selector.select

        def select(timeout: float | None = None) -> list[Any]:
            events = poll(0)
            if events or self._ready:
                return events
            if timeout is not None:
                # A real loop iteration takes a few microseconds. Without
                # that, a timer that re-arms itself a rounding error from
                # "now" (aiolimiter's waker does) would spin forever.
                self._virtual_now += max(timeout, 1e-6)
            else:
                raise RuntimeError("virtual-time loop would wait forever: deadlock")
            return events

        self._selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self._virtual_now


def run_virtual(main: Callable[[asyncio.AbstractEventLoop], Coroutine[Any, Any, Any]]) -> Any:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


# -- the bucket: a rate change really changes the rate ---------------------------


def test_retunable_limiter_starts_with_a_full_burst_then_refills_at_rate():
    async def main(loop):
        limiter = RetunableLimiter(rate=10.0, burst=5)
        times = []
        for _ in range(8):
            await limiter.acquire()
            times.append(loop.time())
        return times

    times = run_virtual(main)
    assert times[:5] == [0.0] * 5
    assert times[5:] == pytest.approx([0.1, 0.2, 0.3])


def test_plain_asynclimiter_ignores_a_changed_max_rate_which_is_why_we_retune():
    """aiolimiter issue #98, pinned so we notice when it is fixed."""
    from aiolimiter import AsyncLimiter

    async def main(loop):
        limiter = AsyncLimiter(max_rate=5, time_period=0.5)  # 10/s, burst 5
        for _ in range(5):
            await limiter.acquire()
        limiter.time_period = 5.0  # "1/s" by the documented attributes
        await limiter.acquire()
        return loop.time()

    assert run_virtual(main) == pytest.approx(0.1)  # still 10/s


def test_retune_changes_the_schedule_of_tasks_already_waiting():
    async def main(loop):
        limiter = RetunableLimiter(rate=10.0, burst=1)
        await limiter.acquire()  # t=0, bucket now full
        times: list[float] = []

        async def one():
            await limiter.acquire()
            times.append(loop.time())

        waiters = [asyncio.create_task(one()) for _ in range(3)]
        await asyncio.sleep(0.05)  # half a drip at 10/s has leaked
        limiter.retune(2.0)  # the other half takes 0.25 s at 2/s
        await asyncio.gather(*waiters)
        return times

    times = run_virtual(main)
    # at 10/s they would have left at 0.1, 0.2, 0.3
    assert times == pytest.approx([0.3, 0.8, 1.3])


def test_retune_up_keeps_the_level_so_no_fresh_burst_is_handed_out():
    async def main(loop):
        limiter = RetunableLimiter(rate=1.0, burst=4)
        for _ in range(4):
            await limiter.acquire()
        assert limiter.level == pytest.approx(4.0)
        limiter.retune(100.0)
        assert limiter.level == pytest.approx(4.0)
        assert not limiter.has_capacity()
        await limiter.acquire()
        return loop.time()

    assert run_virtual(main) == pytest.approx(0.01)


def test_retune_rejects_a_non_positive_rate():
    with pytest.raises(ValueError):
        RetunableLimiter(rate=1.0, burst=1).retune(0.0)


# -- the controller's arithmetic, fake clock, no loop ------------------------------


def saturate(control: RateController, clock: FakeClock) -> None:
    """Mark the controller as rate-bound now (what a waiting acquire() does)."""
    control._saturated_at = clock()


def accept(control: RateController, clock: FakeClock, *, rate: float, seconds: float) -> None:
    """Feed accepted answers at ``rate`` per second for ``seconds``."""
    for _ in range(round(rate * seconds)):
        clock.advance(1 / rate)
        control.on_success()


def make(clock: FakeClock, **kwargs: Any) -> tuple[RateController, list[tuple[float, float, str]]]:
    changes: list[tuple[float, float, str]] = []
    kwargs.setdefault("rate", 10.0)
    control = RateController(clock=clock, on_rate_change=lambda *c: changes.append(c), **kwargs)
    return control, changes


def test_first_throttle_without_history_steps_down_by_the_margin_and_reports_it():
    clock = FakeClock(100.0)
    control, changes = make(clock, rate=100.0, margin=0.05)
    clock.advance(0.05)
    control.on_throttle()
    assert control.rate == pytest.approx(95.0)
    assert control.estimate == 100.0
    assert changes == [(100.0, pytest.approx(95.0), "throttle")]
    assert control.stats()["decreases"] == 1


def test_throttles_measure_the_quota_from_the_accepted_calls_between_them():
    clock = FakeClock(100.0)
    control, _ = make(clock, rate=100.0, margin=0.05, cooldown=0.1, episode=10.0)
    control.on_throttle()  # anchor: the service bucket is empty now
    accept(control, clock, rate=12.0, seconds=5.0)  # it then admits 12/s
    control.on_throttle()
    # (60 accepted + 1) / 5 s
    assert control.estimate == pytest.approx(61 / 5)
    assert control.rate == pytest.approx(61 / 5 * 0.95)


def test_anchors_from_a_previous_episode_are_not_used_for_the_bound():
    """After a quiet spell the service's bucket may have overflowed: no overload verdict."""
    clock = FakeClock(100.0)
    control, _ = make(clock, rate=100.0, margin=0.05, cooldown=0.1, episode=2.0)
    control.on_throttle()
    accept(control, clock, rate=12.0, seconds=5.0)
    control.on_throttle()
    # a touch, not a measurement: last estimate less the margin, or 61/5, whichever is more
    assert control.estimate == pytest.approx(95.0)


def test_a_touch_after_a_quiet_spell_uses_the_accepted_rate_since_the_last_episode():
    def run(accepted_rate: float) -> float:
        clock = FakeClock(100.0)
        control, _ = make(clock, rate=100.0, margin=0.05, cooldown=0.5, episode=2.0)
        control.on_throttle()  # touch: 100 -> 95
        accept(control, clock, rate=10.0, seconds=1.0)
        control.on_throttle()  # overload: (10 + 1) / 1 s
        assert control.estimate == pytest.approx(11.0)
        accept(control, clock, rate=accepted_rate, seconds=5.0)  # quiet spell
        control._set_rate(14.0, "probe")  # the probe climbed meanwhile
        control.on_throttle()  # touch at 14/s
        return control.estimate

    # the last estimate less the margin ...
    assert run(10.0) == pytest.approx(11.0 * 0.95)
    # ... or what the service accepted since, if that is more
    assert run(12.0) == pytest.approx(61 / 5)


def test_cooldown_ignores_a_storm_of_throttles_from_calls_already_in_flight():
    clock = FakeClock(100.0)
    control, changes = make(clock, rate=10.0, margin=0.05, cooldown=1.0)
    accept(control, clock, rate=10.0, seconds=3.0)
    control.on_throttle()
    after_first = control.rate
    assert after_first == pytest.approx(9.5)
    for _ in range(15):  # the rest of 16 in flight come back within 50 ms
        clock.advance(0.003)
        control.on_throttle()
    assert control.rate == after_first
    assert control.stats()["throttles_ignored"] == 15
    assert control.stats()["throttles"] == 16
    assert len(changes) == 1


def test_a_throttle_after_the_cooldown_decreases_again():
    clock = FakeClock(100.0)
    control, _ = make(clock, rate=10.0, margin=0.05, cooldown=1.0)
    accept(control, clock, rate=10.0, seconds=3.0)
    control.on_throttle()
    first = control.rate
    clock.advance(1.5)
    control.on_throttle()
    assert control.rate < first


def test_within_the_cooldown_the_measured_bound_still_tightens_the_rate():
    """A quota that dropped: the bound from the newest anchor falls as data comes in."""
    clock = FakeClock(100.0)
    control, _ = make(clock, rate=50.0, margin=0.05, cooldown=10.0)
    accept(control, clock, rate=50.0, seconds=2.0)
    control.on_throttle()
    assert control.rate == pytest.approx(47.5, rel=0.03)
    accept(control, clock, rate=20.0, seconds=1.5)
    control.on_throttle()  # still in the cool-down, but (30 + 1) / 1.5 s is data
    assert control.rate == pytest.approx(31 / 1.5 * 0.95)


def test_probe_climbs_slowly_under_the_estimate_and_never_past_the_ceiling():
    clock = FakeClock(100.0)
    control, changes = make(
        clock, rate=20.0, margin=0.1, cooldown=1.0, probe=0.02, growth=0.5, recover=math.inf
    )
    control.on_throttle()  # anchor
    accept(control, clock, rate=10.0, seconds=2.0)
    control.on_throttle()
    assert control.estimate == pytest.approx(10.5)
    assert control.rate == pytest.approx(9.45)
    control._probe_up(clock())  # start the probe clock
    clock.advance(1.0)  # inside the cool-down: hold
    saturate(control, clock)
    control._probe_up(clock())
    assert control.rate == pytest.approx(9.45)
    clock.advance(1.0)  # one second of probing: + 2 % of the estimate
    saturate(control, clock)
    control._probe_up(clock())
    assert control.rate == pytest.approx(9.45 + 0.21)
    for _ in range(600):  # a minute without throttles: geometric growth above the estimate
        clock.advance(0.1)
        saturate(control, clock)
        control._probe_up(clock())
    assert control.rate == control.ceiling == 20.0
    assert changes[-1] == (pytest.approx(changes[-1][0]), 20.0, "probe")
    assert all(new > old for old, new, reason in changes if reason == "probe")


def test_under_the_estimate_the_probe_closes_the_gap_with_the_recover_time_constant():
    clock = FakeClock(100.0)
    control, _ = make(clock, rate=20.0, margin=0.1, cooldown=1.0, probe=0.0, recover=2.0)
    control.on_throttle()
    accept(control, clock, rate=10.0, seconds=2.0)
    control.on_throttle()  # estimate 10.5, rate 9.45
    control._probe_up(clock())
    clock.advance(1.0)  # the cool-down
    for _ in range(100):
        clock.advance(0.01)
        saturate(control, clock)
        control._probe_up(clock())
    gap = 10.5 - control.rate
    assert gap == pytest.approx(1.05 * math.exp(-0.5), rel=0.01)


def test_probe_reports_only_steps_of_report_step_or_more():
    clock = FakeClock(100.0)
    control, changes = make(clock, rate=20.0, margin=0.1, cooldown=0.0, report_step=0.05)
    control.on_throttle()
    accept(control, clock, rate=10.0, seconds=2.0)
    control.on_throttle()
    control._probe_up(clock())
    for _ in range(200):
        clock.advance(0.05)
        saturate(control, clock)
        control._probe_up(clock())
    probes = [(old, new) for old, new, reason in changes if reason == "probe"]
    assert probes, "the probe should have been reported"
    for old, new in probes:
        assert new >= old * 1.05 or new == control.ceiling


def test_no_probe_while_the_bucket_is_not_what_limits_the_run():
    clock = FakeClock(100.0)
    control, _ = make(clock, rate=20.0, cooldown=0.0, idle=1.0)
    control.on_throttle()
    accept(control, clock, rate=10.0, seconds=2.0)
    control.on_throttle()
    low = control.rate
    control._probe_up(clock())
    clock.advance(30.0)  # nobody waited on the bucket: the rate is not being used
    control._probe_up(clock())
    assert control.rate == low


def test_never_below_the_floor():
    clock = FakeClock(100.0)
    control, _ = make(clock, rate=10.0, floor=2.0, cooldown=0.0)
    for _ in range(20):
        clock.advance(1.0)
        control.on_throttle()
    assert control.rate == 2.0
    assert control.stats()["min_rate"] == 2.0


def test_non_adaptive_keeps_the_rate_fixed_but_counts():
    clock = FakeClock(100.0)
    control, changes = make(clock, rate=10.0, adaptive=False)
    for _ in range(5):
        clock.advance(0.1)
        control.on_throttle()
    control._probe_up(clock())
    assert control.rate == 10.0
    assert control.limiter.rate == 10.0
    assert changes == []
    assert control.stats()["throttles"] == 5


def test_the_bucket_follows_the_controller():
    clock = FakeClock(100.0)
    control, _ = make(clock, rate=10.0, margin=0.05)
    control.on_throttle()
    assert control.limiter.rate == control.rate == pytest.approx(9.5)


def test_constructor_refuses_nonsense():
    with pytest.raises(ValueError):
        RateController(rate=0)
    with pytest.raises(ValueError):
        RateController(rate=10, burst=0)
    with pytest.raises(ValueError):
        RateController(rate=1, floor=2)


def test_acquire_waits_at_the_decreased_rate():
    """End to end through the bucket: after a decrease, acquire() is slower."""

    async def main(loop):
        control = RateController(rate=10.0, burst=1, margin=0.5, clock=loop.time)
        await control.acquire()
        await control.acquire()
        before = loop.time()
        control.on_throttle()  # 10/s -> 5/s
        await control.acquire()
        await control.acquire()
        return before, loop.time()

    before, after = run_virtual(main)
    assert before == pytest.approx(0.1)
    # abs: the virtual loop charges 1 us per idle loop iteration
    assert after - before == pytest.approx(0.4, abs=1e-5)


# -- a simulated service --------------------------------------------------------------


#: A quota over time: ``[(from_second, calls_per_second), ...]``, first from 0.
Quota = Sequence[tuple[float, float]]


class ServiceBucket:
    """The service's quota: a token bucket of ``burst`` that starts full and
    refills continuously at a rate that may change over time."""

    def __init__(self, quota: Quota, burst: int) -> None:
        self.quota = sorted(quota)
        self.burst = burst
        self.tokens = float(burst)
        self.last = 0.0

    def _segments(self, start: float) -> Iterator[tuple[float, float, float]]:
        """(from, to, rate) pieces of the quota from ``start`` on."""
        for (begin, rate), (end, _) in zip(self.quota, [*self.quota[1:], (math.inf, 0.0)]):
            if end > start:
                yield max(begin, start), end, rate

    def _refill(self, now: float) -> None:
        for begin, end, rate in self._segments(self.last):
            if begin >= now:
                break
            # within one rate the cap applies at the end exactly
            self.tokens = min(self.burst, self.tokens + rate * (min(end, now) - begin))
        self.last = max(self.last, now)

    def admit(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1 - 1e-9:
            self.tokens = max(0.0, self.tokens - 1)
            return True
        return False

    def next_token(self, now: float) -> float:
        """The earliest time >= now at which a call would be admitted."""
        self._refill(now)
        need = 1 - self.tokens
        if need <= 1e-9:
            return now
        for begin, end, rate in self._segments(now):
            if rate * (end - begin) >= need:
                return begin + need / rate
            need -= rate * (end - begin)
        raise AssertionError("the quota never refills")  # pragma: no cover


def ideal_seconds(quota: Quota, burst: int, n: int) -> float:
    """Time for n calls by an oracle that sends whenever the service has a token."""
    bucket = ServiceBucket(quota, burst)
    t = 0.0
    for _ in range(n):
        t = bucket.next_token(t)
        assert bucket.admit(t)
    return t


def test_the_oracle_matches_the_benchmark_formula():
    assert ideal_seconds([(0, 10.0)], 10, 500) == pytest.approx((500 - 10) / 10)
    assert ideal_seconds([(0, 20.0)], 1, 500) == pytest.approx((500 - 1) / 20)
    # 50 burst, 50/s until 4.5 s (275 calls in all), then 225 more at 20/s
    assert ideal_seconds([(0, 50.0), (4.5, 20.0)], 50, 500) == pytest.approx(4.5 + 225 / 20)


@dataclasses.dataclass
class Outcome:
    wall: float
    ideal: float
    attempts: int
    throttled: int
    final_rate: float
    stats: dict[str, Any]

    @property
    def efficiency(self) -> float:
        return self.wall / self.ideal

    @property
    def throttled_fraction(self) -> float:
        return self.throttled / self.attempts


def simulate(
    *,
    quota: float | Quota,
    service_burst: int,
    ceiling: float,
    burst: int,
    steps: int = 500,
    concurrency: int = 16,
    latency: float = 0.05,
    jitter: float = 0.002,
    seed: int = 1,
    **controller: Any,
) -> Outcome:
    """Run ``steps`` calls through a RateController against a simulated service.

    Each of ``concurrency`` workers does what the engine does: acquire, send
    (the call reaches the service after ``uniform(0, jitter)`` and answers
    after ``latency`` plus jitter), report the answer, and on a throttle wait a
    full-jitter backoff and try again. Deterministic for a seed.
    """
    quota_at = [(0.0, float(quota))] if isinstance(quota, (int, float)) else list(quota)
    rng = random.Random(seed)
    service = ServiceBucket(quota_at, service_burst)
    counts = {"attempts": 0, "throttled": 0, "next": 0}

    async def main(loop: asyncio.AbstractEventLoop) -> tuple[float, RateController]:
        control = RateController(rate=ceiling, burst=burst, clock=loop.time, **controller)
        finished = 0.0

        async def worker() -> None:
            nonlocal finished
            while counts["next"] < steps:
                counts["next"] += 1
                attempt = 0
                while True:
                    await control.acquire()
                    counts["attempts"] += 1
                    await asyncio.sleep(rng.uniform(0, jitter))
                    admitted = service.admit(loop.time())
                    await asyncio.sleep(latency + rng.uniform(-jitter, jitter) / 2)
                    if admitted:
                        control.on_success()
                        finished = max(finished, loop.time())
                        break
                    counts["throttled"] += 1
                    control.on_throttle()
                    attempt += 1
                    await asyncio.sleep(backoff(attempt, rng=rng))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return finished, control

    wall, control = run_virtual(main)
    return Outcome(
        wall=wall,
        ideal=ideal_seconds(quota_at, service_burst, steps),
        attempts=counts["attempts"],
        throttled=counts["throttled"],
        final_rate=control.rate,
        stats=control.stats(),
    )


#: The benchmark's scenarios (N=500, concurrency 16, 50 ms latency) and their targets.
SCENARIOS: dict[str, tuple[dict[str, Any], float, float]] = {
    "ceiling = quota = 10": (
        dict(quota=10.0, service_burst=10, ceiling=10.0, burst=10),
        1.03,
        0.01,
    ),
    "ceiling = quota = 50": (
        dict(quota=50.0, service_burst=50, ceiling=50.0, burst=50),
        1.03,
        0.01,
    ),
    "ceiling 100, quota 10": (
        dict(quota=10.0, service_burst=10, ceiling=100.0, burst=10),
        1.10,
        0.03,
    ),
    "quota 50 -> 20 mid-run": (
        dict(quota=[(0.0, 50.0), (4.5, 20.0)], service_burst=50, ceiling=50.0, burst=50),
        1.10,
        0.03,
    ),
    "quota 20, no burst": (
        dict(quota=20.0, service_burst=1, ceiling=20.0, burst=1),
        1.10,
        0.03,
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_simulated_benchmark_scenarios_meet_their_targets(name):
    kwargs, max_efficiency, max_throttled = SCENARIOS[name]
    outcome = simulate(**kwargs)
    assert outcome.efficiency <= max_efficiency, outcome
    assert outcome.throttled_fraction <= max_throttled, outcome


def test_simulation_converges_near_the_true_rate_from_a_far_ceiling():
    outcome = simulate(quota=10.0, service_burst=10, ceiling=100.0, burst=10, steps=600)
    assert outcome.stats["estimate"] == pytest.approx(10.0, rel=0.10)
    assert outcome.final_rate == pytest.approx(10.0, rel=0.10)
    assert outcome.final_rate <= 10.0 * 1.1


def test_simulation_is_deterministic_for_a_seed():
    kwargs = dict(quota=10.0, service_burst=10, ceiling=100.0, burst=10, steps=100)
    assert simulate(**kwargs, seed=7) == simulate(**kwargs, seed=7)


def test_a_fixed_rate_above_the_quota_is_what_adaptation_saves_us_from():
    """The simulation can fail: non-adaptive at 10x the quota throttles heavily."""
    outcome = simulate(
        quota=10.0, service_burst=10, ceiling=100.0, burst=10, steps=100, adaptive=False
    )
    assert outcome.throttled_fraction > 0.5


def report(seeds: range = range(1, 11)) -> None:
    """Print E and the throttled fraction per scenario, over several seeds."""
    for name, (kwargs, max_e, max_theta) in SCENARIOS.items():
        runs = [simulate(**kwargs, seed=s) for s in seeds]
        es = [r.efficiency for r in runs]
        thetas = [r.throttled_fraction for r in runs]
        print(
            f"{name:26s} E mean {sum(es) / len(es):.3f} max {max(es):.3f} (<= {max_e})"
            f"   theta mean {sum(thetas) / len(thetas):.2%} max {max(thetas):.2%} (<= {max_theta:.0%})"
            f"   final rate {runs[0].final_rate:.2f}"
        )


if __name__ == "__main__":
    report()
