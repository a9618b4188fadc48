"""Rate control: the estimator's arithmetic with `now` passed in, the bucket and the
controller on a virtual-time event loop, and the shared-quota behaviour on a simulated
service.

No test here reads the wall clock: time is either a number the test passes, or the
virtual clock of ``VirtualTimeLoop`` (an asyncio loop that jumps straight to its next
timer instead of sleeping), which aiolimiter reads through ``loop.time()``.

The tuning simulation of the benchmark's scenarios is ``benchmarks/simulate.py``.
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import pytest

from benchmarks.simulate import run_virtual
from fleetrel.emulator.bucket import TokenBucket
from fleetrel.quota import QuotaEstimator, Tuning
from fleetrel.ratecontrol import RateController, RetunableLimiter, bucket
from fleetrel.testing import VirtualTimeLoop

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


# -- the estimator: pure arithmetic, `now` passed in ------------------------------


def tuned(**changes: Any) -> Tuning:
    return Tuning(**changes)


def accept(estimator: QuotaEstimator, now: float, *, rate: float, seconds: float) -> float:
    """Feed accepted answers at ``rate`` per second for ``seconds``; returns the new now."""
    for _ in range(round(rate * seconds)):
        now += 1 / rate
        estimator.accepted(now)
    return now


def test_first_throttle_without_history_steps_down_by_the_margin():
    estimator = QuotaEstimator(ceiling=100.0, floor=0.5, tuning=tuned(margin=0.05))
    assert estimator.throttled(100.05) == pytest.approx(95.0)
    assert estimator.estimate == 100.0


def test_throttles_measure_the_quota_from_the_accepted_calls_between_them():
    estimator = QuotaEstimator(ceiling=100.0, floor=0.5, tuning=tuned(cooldown=0.1, episode=10.0))
    estimator.throttled(100.0)  # anchor: the service bucket is empty now
    now = accept(estimator, 100.0, rate=12.0, seconds=5.0)  # it then admits 12/s
    rate = estimator.throttled(now)
    # (60 accepted + 1) / 5 s
    assert estimator.estimate == pytest.approx(61 / 5)
    assert rate == pytest.approx(61 / 5 * 0.95)


def test_anchors_from_a_previous_episode_are_not_used_for_the_bound():
    """After a quiet spell the service's bucket may have overflowed: no overload verdict."""
    estimator = QuotaEstimator(ceiling=100.0, floor=0.5, tuning=tuned(cooldown=0.1, episode=2.0))
    estimator.throttled(100.0)
    now = accept(estimator, 100.0, rate=12.0, seconds=5.0)
    estimator.throttled(now)
    # a touch, not a measurement: last estimate less the margin, or 61/5, whichever is more
    assert estimator.estimate == pytest.approx(95.0)


def test_a_touch_after_a_quiet_spell_uses_the_accepted_rate_since_the_last_episode():
    def run(accepted_rate: float) -> float | None:
        estimator = QuotaEstimator(ceiling=100.0, floor=0.5, tuning=tuned(cooldown=0.5, episode=2.0))
        estimator.throttled(100.0)  # touch: 100 -> 95
        now = accept(estimator, 100.0, rate=10.0, seconds=1.0)
        estimator.throttled(now)  # overload: (10 + 1) / 1 s
        assert estimator.estimate == pytest.approx(11.0)
        now = accept(estimator, now, rate=accepted_rate, seconds=5.0)  # quiet spell
        estimator.rate = 14.0  # the probe climbed meanwhile
        estimator.throttled(now)  # touch at 14/s
        return estimator.estimate

    # the last estimate less the margin ...
    assert run(10.0) == pytest.approx(11.0 * 0.95)
    # ... or what the service accepted since, if that is more
    assert run(12.0) == pytest.approx(61 / 5)


def test_with_a_burst_of_one_a_bound_made_by_lost_slots_is_not_a_measurement():
    """Scenario e (R=20, B=1): a bucket of one fills in any gap longer than 1/R, so a slot
    lost to a throttle lets it overflow, and (accepted + 1) / span counts our gaps:
    seven slots at 19/s, two of them throttled, read 16.3/s. Calls admitted 1/19 s apart
    say the service refills at 19/s or more, so that is a touch, not an overload."""

    def run(burst: int | None) -> float | None:
        estimator = QuotaEstimator(ceiling=20.0, floor=0.5, burst=burst, tuning=tuned(cooldown=0.1))
        gap = 1 / 19
        estimator.throttled(0.0)  # slot 0: an anchor
        for slot in (1, 2, 4, 5, 6):  # slot 3 throttled too, and lost
            estimator.accepted(slot * gap)
        estimator.throttled(3 * gap)
        estimator.throttled(7 * gap)
        return estimator.estimate

    assert run(burst=None) == pytest.approx(6 / (7 / 19))  # the count alone: an overload
    assert run(burst=1) == pytest.approx(20.0 * 0.95 * 0.95)  # a touch: the margin again


def test_with_a_burst_of_ten_the_same_bound_stands():
    """Where the bucket cannot fill between two throttles nothing changes: a quota that
    dropped to 12/s under a burst of 10 is measured as before."""
    estimator = QuotaEstimator(ceiling=50.0, floor=0.5, burst=10, tuning=tuned(cooldown=0.1, episode=10.0))
    estimator.throttled(100.0)
    now = accept(estimator, 100.0, rate=12.0, seconds=5.0)
    estimator.throttled(now)
    assert estimator.estimate == pytest.approx(61 / 5)


def test_a_first_burst_is_no_evidence_against_a_share():
    """Scenario f, the second run 0.5 s later: the first run's burst of 10 and its next
    calls came in 0.5 s, the service's whole rate; then it shares the quota, and its
    bound is its share, to be taken as it is, with the burst told or not."""

    def run(burst: int | None) -> float | None:
        # (arrival off: it puts this run on the share, tests/test_quota_sharing.py)
        estimator = QuotaEstimator(ceiling=10.0, floor=0.5, burst=burst, tuning=tuned(cooldown=0.1, arrival=0.0))
        for _ in range(10):
            estimator.accepted(0.05)  # the burst, admitted at once
        now = accept(estimator, 0.05, rate=10.0, seconds=0.5)
        estimator.throttled(0.6)  # the other run has come
        now = accept(estimator, 0.6, rate=5.0, seconds=1.4)
        estimator.throttled(now)
        return estimator.estimate

    assert run(burst=10) == run(burst=None) == pytest.approx((7 + 1) / 1.4)


def test_a_burst_of_one_still_measures_a_quota_that_dropped():
    """Every other call throttled at 20/s against 10/s: the calls admitted are 1/10 s
    apart, which says 10/s, under the bound: a measurement, with the burst told or not."""

    def run(burst: int | None) -> float | None:
        estimator = QuotaEstimator(ceiling=20.0, floor=0.5, burst=burst, tuning=tuned(cooldown=10.0))
        now = 0.0
        estimator.throttled(now)
        for _ in range(20):
            estimator.accepted(now + 0.05)
            now += 0.1
            estimator.throttled(now)
        return estimator.estimate

    assert run(burst=1) == run(burst=None) == pytest.approx(10.0, rel=0.08)


def test_cooldown_ignores_a_storm_of_throttles_from_calls_already_in_flight():
    estimator = QuotaEstimator(ceiling=10.0, floor=0.5, tuning=tuned(cooldown=1.0))
    now = accept(estimator, 100.0, rate=10.0, seconds=3.0)
    first = estimator.throttled(now)
    assert first == pytest.approx(9.5)
    for _ in range(15):  # the rest of 16 in flight come back within 50 ms
        now += 0.003
        assert estimator.throttled(now) == first
    assert estimator.decreases_ignored == 15


def test_a_throttle_after_the_cooldown_decreases_again():
    estimator = QuotaEstimator(ceiling=10.0, floor=0.5, tuning=tuned(cooldown=1.0))
    now = accept(estimator, 100.0, rate=10.0, seconds=3.0)
    first = estimator.throttled(now)
    assert estimator.throttled(now + 1.5) < first


def test_within_the_cooldown_the_measured_bound_still_tightens_the_rate():
    """A quota that dropped: the bound from the newest anchor falls as data comes in."""
    estimator = QuotaEstimator(ceiling=50.0, floor=0.5, tuning=tuned(cooldown=10.0))
    now = accept(estimator, 100.0, rate=50.0, seconds=2.0)
    assert estimator.throttled(now) == pytest.approx(47.5, rel=0.03)
    now = accept(estimator, now, rate=20.0, seconds=1.5)
    # still in the cool-down, but (30 + 1) / 1.5 s is data
    assert estimator.throttled(now) == pytest.approx(31 / 1.5 * 0.95)


def test_probe_climbs_slowly_under_the_estimate_and_never_past_the_ceiling():
    estimator = QuotaEstimator(
        ceiling=20.0, floor=0.5, tuning=tuned(margin=0.1, probe=0.02, growth=0.5, recover=math.inf)
    )
    estimator.throttled(100.0)  # anchor
    now = accept(estimator, 100.0, rate=10.0, seconds=2.0)
    assert estimator.throttled(now) == pytest.approx(9.45)
    assert estimator.estimate == pytest.approx(10.5)
    estimator.probe(now, waited_at=now)  # start the probe clock
    now += 1.0  # inside the cool-down: hold
    assert estimator.probe(now, waited_at=now) == pytest.approx(9.45)
    now += 1.0  # one second of probing: + 2 % of the estimate
    assert estimator.probe(now, waited_at=now) == pytest.approx(9.45 + 0.21)
    rates = []
    for _ in range(600):  # a minute without throttles: geometric growth above the estimate
        now += 0.1
        rates.append(estimator.probe(now, waited_at=now))
    assert rates[-1] == estimator.ceiling == 20.0
    assert rates == sorted(rates)


def squeezed(ceiling: float, *, peak: float, share: float, now: float = 100.0,
             tuning: Tuning = Tuning()) -> tuple[QuotaEstimator, float]:
    """An estimator admitted `peak` calls in a second at first, then squeezed to `share`/s
    for a while (another caller took the rest): returns it and its last throttle's time."""
    estimator = QuotaEstimator(ceiling=ceiling, floor=0.5, tuning=tuning)
    now = accept(estimator, now, rate=peak, seconds=1.0)
    estimator.throttled(now)  # its bucket ran dry after a second at `peak`
    for _ in range(round(Tuning().settle / 1.5) + 1):  # squeezed for longer than `settle`
        now = accept(estimator, now, rate=share, seconds=1.5)
        estimator.throttled(now)  # the bound: what it was admitted since, (1.5 share + 1) / 1.5
    return estimator, now


def saturated(estimator: QuotaEstimator, now: float, seconds: float, step: float = 0.05) -> list[tuple[float, float]]:
    """Calls admitted as fast as the bucket allows and all accepted, for `seconds`:
    (now, rate) after each."""
    out = []
    for _ in range(round(seconds / step)):
        now += step
        estimator.accepted(now)
        out.append((now, estimator.probe(now, waited_at=now)))
    return out


def test_a_freed_quota_is_found_again_within_seconds():
    estimator, stopped = squeezed(10.0, peak=10.0, share=2.0)
    assert 1.5 < estimator.estimate < 2.7  # about its share
    rates = saturated(estimator, stopped, 8.0)
    quiet = [r for t, r in rates if t <= stopped + Tuning().quiet]
    assert max(quiet) < 3.0  # throttles of a squeeze come closer together than this: no climb
    back = next(t for t, r in rates if r >= 9.0)
    assert back - stopped < 5.0  # was 14 s: the probe above 2.5/s grew from 0.3 % of it
    assert [r for _, r in rates] == sorted(r for _, r in rates)


def test_a_steady_share_above_the_gate_probes_as_before():
    # 6/s of 10 beside a steady caller: its throttles come every 10 s, it climbs to none
    # (arrival off: a caller that came after the run puts it on the share, tests/test_quota_sharing.py)
    estimator, last = squeezed(10.0, peak=10.0, share=6.0, tuning=tuned(arrival=0.0))
    assert estimator.rate > Tuning().gate * 10.0
    rates = saturated(estimator, last, 5.0)
    assert rates[-1][1] < estimator.estimate * 1.01  # the slow probe, back to the estimate


def test_no_climb_soon_after_a_quota_dropped():
    # alone at 50/s, then the quota drops to 20: the bound cuts the estimate by 60 %
    estimator = QuotaEstimator(ceiling=50.0, floor=0.5)
    now = accept(estimator, 100.0, rate=50.0, seconds=1.0)
    estimator.throttled(now)
    now = accept(estimator, now, rate=20.0, seconds=1.5)
    estimator.throttled(now)
    assert estimator.rate < Tuning().gate * 50.0
    rates = saturated(estimator, now, Tuning().settle - 0.5)
    assert rates[-1][1] < estimator.estimate * 1.05  # the slow probe alone
    later = saturated(estimator, rates[-1][0], 2.0)
    assert later[-1][1] > 30.0  # ... until it settled: then a caller that stopped is found


def test_no_climb_towards_a_ceiling_never_admitted():
    # told 100/s, admitted 10 in its best second: 100 is not a quota it ever saw
    estimator, last = squeezed(100.0, peak=10.0, share=10.0)
    rates = saturated(estimator, last, 5.0)
    assert rates[-1][1] < estimator.estimate * 1.1


def test_the_smaller_share_climbs_more_calls_per_second():
    low, t_low = squeezed(10.0, peak=10.0, share=1.5)
    high, t_high = squeezed(10.0, peak=10.0, share=3.0)
    assert low.rate < high.rate < Tuning().gate * 10.0
    after = Tuning().quiet + 0.5  # half a second of climbing
    start_low, start_high = low.rate, high.rate
    gain_low = saturated(low, t_low, after)[-1][1] - start_low
    gain_high = saturated(high, t_high, after)[-1][1] - start_high
    assert gain_low > gain_high > 0


def test_under_the_estimate_the_probe_closes_the_gap_with_the_recover_time_constant():
    estimator = QuotaEstimator(ceiling=20.0, floor=0.5, tuning=tuned(margin=0.1, probe=0.0, recover=2.0))
    estimator.throttled(100.0)
    now = accept(estimator, 100.0, rate=10.0, seconds=2.0)
    estimator.throttled(now)  # estimate 10.5, rate 9.45
    estimator.probe(now, waited_at=now)
    now += 1.0  # the cool-down
    for _ in range(100):
        now += 0.01
        estimator.probe(now, waited_at=now)
    assert 10.5 - estimator.rate == pytest.approx(1.05 * math.exp(-0.5), rel=0.01)


def test_no_probe_while_the_bucket_is_not_what_limits_the_run():
    estimator = QuotaEstimator(ceiling=20.0, floor=0.5, tuning=tuned(cooldown=0.0, idle=1.0))
    estimator.throttled(100.0)
    now = accept(estimator, 100.0, rate=10.0, seconds=2.0)
    low = estimator.throttled(now)
    estimator.probe(now, waited_at=now)
    # nobody waited on the bucket for 30 s: the rate is not being used
    assert estimator.probe(now + 30.0, waited_at=now) == low


def test_never_below_the_floor():
    estimator = QuotaEstimator(ceiling=10.0, floor=2.0, tuning=tuned(cooldown=0.0))
    rates = [estimator.throttled(100.0 + i) for i in range(20)]
    assert rates[-1] == 2.0


def test_a_throttle_before_our_bucket_ever_held_a_call_back_guesses_from_what_was_admitted():
    """An overstated burst: the service admitted 10 of our 16 first calls."""
    estimator = QuotaEstimator(ceiling=100.0, floor=0.5)
    for _ in range(10):
        estimator.accepted(100.05)
    assert estimator.throttled(100.05, waited=False) == pytest.approx(10 * 0.95)
    assert estimator.burst_bound == 10
    # the same throttle after our bucket had held calls back: the margin alone
    other = QuotaEstimator(ceiling=100.0, floor=0.5)
    for _ in range(10):
        other.accepted(100.05)
    assert other.throttled(100.05, waited=True) == pytest.approx(95.0)
    assert other.burst_bound is None


def test_a_cluster_of_throttles_at_the_start_halves_the_rate_whatever_the_race_for_tokens():
    """Two runs started together: each halves, whichever won more of the first tokens."""

    def start(admitted: int) -> float:
        estimator = QuotaEstimator(ceiling=10.0, floor=0.5)
        for _ in range(10):  # our burst: the bucket made no caller wait
            estimator.probe(0.0, waited_at=-math.inf)
        for _ in range(admitted):
            estimator.accepted(0.05)
        estimator.throttled(0.051)
        return estimator.throttled(0.052)  # the second of the cluster, inside the cool-down

    assert start(admitted=7) == start(admitted=3) == pytest.approx(10.0 * 0.5 * 0.95)


def test_runs_started_together_share_whatever_their_first_burst_guessed():
    """Each run's burst met an empty bucket before its own bucket held anything back, so
    its first throttle guesses the quota from what it was admitted: its luck in the race,
    2 of 10 or 8. The cluster then puts both on the share, up as well as down."""

    def start(admitted: int) -> float:
        estimator = QuotaEstimator(ceiling=10.0, floor=0.5)
        for _ in range(10):
            estimator.probe(0.0, waited_at=-math.inf)
        for _ in range(admitted):
            estimator.accepted(0.05)
        estimator.throttled(0.051, waited=False, first_burst=True)
        return estimator.throttled(0.052, waited=False, first_burst=True)

    assert start(admitted=2) == start(admitted=8) == pytest.approx(10.0 * 0.5 * 0.95)


def test_a_run_halved_at_the_start_holds_half_against_its_bound_for_a_while():
    # a run that started into a bucket another run keeps empty: its first burst throttled
    hold = Tuning().start_hold
    estimator = QuotaEstimator(ceiling=10.0, floor=0.5)
    for k in range(10):
        estimator.probe(0.001 * k, waited_at=-math.inf)  # the first burst leaves
    estimator.throttled(0.05, waited=False, first_burst=True)
    assert estimator.throttled(0.05, waited=False, first_burst=True) == pytest.approx(4.75)  # half, less the margin
    now = accept(estimator, 0.05, rate=3.0, seconds=1.5)  # the other run still sends at 10/s: a third
    assert estimator.throttled(now) == pytest.approx(4.75)  # held, not 3/s
    now = accept(estimator, now, rate=3.0, seconds=hold)
    estimator.throttled(now)  # the hold is over: a touch (a new episode) ...
    now = accept(estimator, now, rate=3.0, seconds=1.0)
    # ... and the bound applies again, once that touch's cool-down is over (sharing, a
    # bound near the share cuts once per cool-down, tests/test_quota_sharing.py)
    assert estimator.throttled(now + 0.01) == pytest.approx(4.0 / 1.01 * 0.95)


def test_a_lone_overstated_burst_keeps_its_guess_above_the_share_of_what_it_sent():
    """Told 100/s and a burst of 100, 16 calls out: the service (10 a second, burst 10)
    admits 10. That is a cluster of first-burst throttles too, but the share may lift a
    guess only to half of what the burst sent (8), and the guess goes on to 10 with the
    answers of that burst still coming in."""
    estimator = QuotaEstimator(ceiling=100.0, floor=0.5)
    for _ in range(16):
        estimator.probe(0.0, waited_at=-math.inf)
    for _ in range(4):
        estimator.accepted(0.05)
    assert estimator.throttled(0.051, waited=False, first_burst=True) == pytest.approx(4 * 0.95)
    assert estimator.throttled(0.0515, waited=False, first_burst=True) == pytest.approx(8 * 0.95)
    for _ in range(6):
        estimator.accepted(0.052)
    assert estimator.probe(0.06, waited_at=0.06) == pytest.approx(10 * 0.95)


def test_throttles_after_a_burst_that_all_got_through_are_a_late_start_not_another_run():
    """20 targets at once: each lane's burst of ten reached a busy service late (first
    answer at 0.36 s) and all got through; the refill of that delay did not fit in the
    full bucket, so two paced calls are throttled within two round trips. Not halved."""
    estimator = QuotaEstimator(ceiling=10.0, floor=0.5)
    for index in range(10):  # the burst: the bucket never made a caller wait
        estimator.probe(index / 1000, waited_at=-math.inf)
    estimator.probe(0.1, waited_at=0.01)  # paced calls from here on
    for index in range(11):
        estimator.accepted(0.36 + index / 100)
    estimator.throttled(0.58)
    assert estimator.throttled(0.6) == pytest.approx(9.5)  # a touch, not 4.75


def test_throttles_after_the_first_round_trips_are_measured_not_halved():
    """A steady foreign caller: the bucket runs dry under our rate a few round trips in."""
    estimator = QuotaEstimator(ceiling=10.0, floor=0.5)
    estimator.probe(0.0, waited_at=0.0)
    now = accept(estimator, 0.0, rate=10.0, seconds=0.3)  # first answer at 0.1: a round trip of 0.1 s
    estimator.throttled(now)
    assert estimator.throttled(now + 0.01) == pytest.approx(9.5)  # not 4.75


def test_a_lone_throttle_at_the_start_is_a_touch_not_another_run():
    estimator = QuotaEstimator(ceiling=10.0, floor=0.5)
    estimator.probe(0.0, waited_at=0.0)
    now = accept(estimator, 0.0, rate=10.0, seconds=0.5)
    assert estimator.throttled(now) == pytest.approx(9.5)


# -- the controller: the bucket follows the estimator ----------------------------------


def test_the_bucket_follows_the_controller_and_decreases_are_reported():
    async def main(loop):
        changes: list[tuple[float, float, str]] = []
        control = RateController(rate=10.0, burst=10, on_rate_change=lambda *c: changes.append(c))
        await control.acquire()
        control.on_throttle()
        return control, changes

    control, changes = run_virtual(main)
    assert control.limiter.rate == control.rate == pytest.approx(9.5)
    assert changes == [(10.0, pytest.approx(9.5), "throttle")]
    assert control.stats()["decreases"] == 1


def test_after_a_throttle_the_next_acquire_waits_for_a_refill():
    """The saved burst is not spent into a service bucket that just said it is empty."""

    async def main(loop):
        control = RateController(rate=10.0, burst=10)
        await control.acquire()  # nine more calls' worth of burst saved
        assert control.limiter.has_capacity()
        control.on_throttle()  # 10/s -> 9.5/s, and the bucket is full
        start = loop.time()
        await control.acquire()
        return loop.time() - start

    assert run_virtual(main) == pytest.approx(1 / 9.5, abs=1e-5)


class LateBucketTimer(VirtualTimeLoop):
    """Virtual time on which the bucket's waker fires 1.5 ms late, as a real loop's timers
    do (the epoll timeout is rounded up to a whole millisecond), while other waits do not
    (an answer wakes a real loop through its socket, on time)."""

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> Any:
        if getattr(callback, "__name__", "") == "_wake_next":
            when += 0.0015
        return super().call_at(when, callback, *args, context=context)


def test_a_burst_of_one_probes_while_calls_queue_even_when_each_call_finds_room():
    """At a burst of one, a step a little slower than an interval (50 ms of latency and its
    journal records, against 1/19 s) finds room when it asks again before the late waker
    hands the room to a call queued in the bucket, and takes it: the rate limits the run all
    along, and the probe must see it. (It did not: 18.9/s of 20 for 20 s on the emulator.)"""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        control = RateController(rate=20.0, burst=1)
        rates = []

        async def worker() -> None:
            while loop.time() < 12.0:
                await control.acquire()
                await asyncio.sleep(0.0532)  # the call: 1/19 s and 0.6 ms
                control.on_success()

        async def throttle_once() -> None:
            await asyncio.sleep(1.0)
            control.on_throttle()  # 20 -> 19/s
            rates.append(control.rate)
            await asyncio.sleep(10.0)
            rates.append(control.rate)

        await asyncio.gather(throttle_once(), *(worker() for _ in range(16)))
        return rates

    loop = LateBucketTimer()
    try:
        after_throttle, ten_seconds_later = loop.run_until_complete(main())
    finally:
        loop.close()
    assert after_throttle == pytest.approx(19.0)
    assert ten_seconds_later > 19.5  # probed back towards the ceiling, not frozen at 19


def test_try_acquire_admits_what_the_bucket_holds_now_and_takes_nothing_when_it_would_wait():
    async def main(loop):
        control = RateController(rate=10.0, burst=3, adaptive=False)
        taken = [control.try_acquire() for _ in range(5)]
        level_after_refusals = control.limiter.level
        await control.acquire()  # the refusals took nothing: the 4th call waits one interval
        return taken, level_after_refusals, loop.time()

    taken, level, waited_until = run_virtual(main)
    assert taken == [True, True, True, False, False]
    assert level == 3.0
    assert waited_until == pytest.approx(0.1)


def test_a_throttle_inside_the_burst_shrinks_the_bucket_to_what_the_service_admitted():
    async def main(loop):
        control = RateController(rate=100.0, burst=100)
        for _ in range(16):
            await control.acquire()  # 16 at once: our bucket never made anyone wait
        for _ in range(10):
            control.on_success()
        control.on_throttle()
        return control

    control = run_virtual(main)
    assert control.limiter.max_rate == 10
    assert control.rate == pytest.approx(9.5)


def test_probe_reports_only_steps_of_report_step_or_more():
    async def main(loop):
        changes: list[tuple[float, float, str]] = []
        control = RateController(
            rate=20.0, burst=1, tuning=Tuning(cooldown=0.0, report_step=0.05),
            on_rate_change=lambda *c: changes.append(c),
        )
        await control.acquire()
        control.on_throttle()
        for _ in range(10):
            control.on_success()
        await asyncio.sleep(1.0)
        control.on_throttle()  # about 11/s
        for _ in range(200):
            await control.acquire()  # burst 1: every acquire waits, so the probe runs
        return control, changes

    control, changes = run_virtual(main)
    probes = [(old, new) for old, new, reason in changes if reason == "probe"]
    assert probes, "the probe should have been reported"
    for old, new in probes:
        assert new >= old * 1.05 or new == control.ceiling


def test_non_adaptive_keeps_the_rate_fixed_and_the_burst_but_counts():
    async def main(loop):
        changes: list[Any] = []
        control = RateController(rate=10.0, burst=5, adaptive=False, on_rate_change=lambda *c: changes.append(c))
        await control.acquire()
        for _ in range(5):
            control.on_throttle()
        await control.acquire()
        return control, changes, loop.time()

    control, changes, now = run_virtual(main)
    assert control.rate == control.limiter.rate == 10.0
    assert changes == []
    assert now == 0.0  # the saved burst is still there
    assert control.stats()["throttles"] == 5


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
        control = RateController(rate=10.0, burst=1, tuning=Tuning(margin=0.5))
        await control.acquire()
        control.on_success()  # the first answer, at once: paced calls need not wait for it
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


def test_paced_calls_wait_for_the_first_wave_and_the_refill_counts_from_its_first_answer():
    """The whole first burst out and no answer yet: the next call waits until the burst
    has answered (our refill meanwhile is one the service's bucket may not have had), and
    our refill counts from the first answer; an answer that never comes holds it
    FIRST_ANSWER_WAIT at most."""
    from fleetrel.ratecontrol import FIRST_ANSWER_WAIT

    async def main(loop):
        control = RateController(rate=10.0, burst=3)
        for _ in range(3):
            await control.acquire()
        assert loop.time() == 0.0
        paced = loop.create_task(control.acquire())
        await asyncio.sleep(0.5)  # virtual: five intervals' refill, all held
        assert not paced.done()
        control.on_success()  # the first answer, at 0.5 s: the refill counts from here
        control.on_success()
        await asyncio.sleep(0.05)
        assert not paced.done()  # one of the burst has not answered
        control.on_success()  # the last, at 0.55 s
        await paced
        answered_then = loop.time()
        silent = RateController(rate=10.0, burst=2)
        await silent.acquire()
        await silent.acquire()
        start = loop.time()
        await silent.acquire()  # nobody answers
        return answered_then, loop.time() - start

    answered_then, silent_wait = run_virtual(main)
    assert answered_then == pytest.approx(0.6, abs=1e-5)  # one interval after the first answer
    assert silent_wait == pytest.approx(FIRST_ANSWER_WAIT, abs=1e-5)


def test_no_call_leaves_between_the_first_answer_and_the_last_of_the_first_wave():
    """A burst of 50 and four calls out: once one has answered, the next waits for the
    other three (a throttle among them would say the service's burst is smaller than
    ours), then leaves at once from the burst still saved."""

    async def main(loop):
        control = RateController(rate=10.0, burst=50)
        for _ in range(4):
            await control.acquire()
        await asyncio.sleep(0.05)
        control.on_success()  # 0.05 s: the first answer, three to come
        nxt = loop.create_task(control.acquire())
        await asyncio.sleep(0.1)
        held = not nxt.done()
        for _ in range(3):
            control.on_success()  # 0.15 s
        await nxt
        return held, loop.time()

    held, left_at = run_virtual(main)
    assert held
    assert left_at == pytest.approx(0.15, abs=1e-4)


def test_a_guess_from_the_first_wave_counts_every_answer_of_it_however_late():
    """Told 100/s with a burst of 100, 16 calls out: 4 admitted and 6 throttled answer at
    once, 6 more admitted 0.3 s later (past `round_trip`). The gate holds every call
    meanwhile, so the guess counts all ten: 9.5, not the 7.6 of the first ones."""

    async def main(loop):
        control = RateController(rate=100.0, burst=100)
        for _ in range(16):
            await control.acquire()
        await asyncio.sleep(0.05)
        for _ in range(4):
            control.on_success()
        for _ in range(6):
            control.on_throttle(first_burst=True)
        early = control.rate
        await asyncio.sleep(0.3)
        for _ in range(6):
            control.on_success()
        return early, control.rate

    early, late = run_virtual(main)
    assert early == pytest.approx(8 * 0.95)  # lifted to half of the 16 sent
    assert late == pytest.approx(10 * 0.95)


def test_the_share_never_lifts_a_guess_above_a_measured_bound():
    """Runs that collided, but the throttles so far already bound what the service
    admits to this run below the share: the bound wins, as it does over the share."""
    estimator = QuotaEstimator(ceiling=10.0, floor=0.5)
    for _ in range(10):
        estimator.probe(0.0, waited_at=-math.inf)
    estimator.accepted(0.05)
    estimator.accepted(0.05)
    estimator.throttled(0.051, waited=False, first_burst=True)  # guess 2
    # 0.5 s later, nothing admitted since: at most (0 + 1) / 0.5 = 2/s
    assert estimator.throttled(0.551, waited=False, first_burst=True) == pytest.approx(2 * 0.95)


def test_a_fixed_rate_and_a_burst_not_yet_spent_never_wait_for_an_answer():
    async def main(loop):
        fixed = RateController(rate=10.0, burst=2, adaptive=False)
        for _ in range(4):
            await fixed.acquire()
        big = RateController(rate=10.0, burst=50)  # a first answer before the burst is spent
        await big.acquire()
        big.on_success()
        for _ in range(49):
            await big.acquire()
        return loop.time()

    assert run_virtual(main) == pytest.approx(0.2, abs=1e-5)  # the fixed one's two paced calls


def test_bucket_factory_holds_burst_calls_then_refills_at_rate():
    async def main(loop):
        reads = bucket(rate=4.0, burst=2)
        times = []
        for _ in range(4):
            async with reads:
                times.append(loop.time())
        return times

    assert run_virtual(main) == pytest.approx([0.0, 0.0, 0.25, 0.5])


# -- the simulated service (benchmarks/simulate.py) ------------------------------------


def test_simulation_is_deterministic_for_a_seed():
    from dataclasses import replace

    from benchmarks.scenarios import scenarios_for
    from benchmarks.simulate import simulate

    (c,) = scenarios_for("default", ["c"])
    c = replace(c, calls=100)
    assert simulate(c, seed=7) == simulate(c, seed=7)


def test_a_staggered_second_run_is_timed_from_its_own_start():
    """simulate.py --stagger: each run's wall from its own start, E over the whole span."""
    from dataclasses import replace

    from benchmarks.scenarios import scenarios_for
    from benchmarks.simulate import simulate

    (f,) = scenarios_for("default", ["f"])
    f = replace(f, calls=60)
    together, apart = simulate(f, seed=3), simulate(f, seed=3, stagger=2.0)
    assert together.span == pytest.approx(max(together.walls))
    assert apart.span == pytest.approx(max(apart.walls[0], 2.0 + apart.walls[1]))
    assert apart.span > 2.0 + min(apart.walls)


def test_at_a_bucket_of_one_arrival_jitter_is_what_costs_time():
    """simulate.py --jitter: a service bucket of one throttles calls that arrive closer
    than 1/R, so the same controller is slower when calls reach it less evenly."""
    from dataclasses import replace

    from benchmarks.scenarios import scenarios_for
    from benchmarks.simulate import simulate

    (e,) = scenarios_for("default", ["e"])
    e = replace(e, calls=200)
    even, uneven = simulate(e, seed=1, jitter=0.0), simulate(e, seed=1, jitter=0.01)
    assert even.throttled < uneven.throttled
    assert even.efficiency < uneven.efficiency


def test_a_fixed_rate_above_the_quota_is_what_adaptation_saves_us_from():
    """The simulation can fail: non-adaptive at 10x the quota throttles heavily."""
    from dataclasses import replace

    from benchmarks.scenarios import scenarios_for
    from benchmarks.simulate import simulate

    (c,) = scenarios_for("default", ["c"])
    assert simulate(replace(c, calls=100), adaptive=False).throttled_fraction > 0.5


def test_two_controllers_sharing_one_bucket_converge_to_a_fair_share():
    """Two runs on one 10/s quota (the emulator's TokenBucket on the virtual clock), each
    told the whole quota: each ends near half of it, and they finish together."""
    quota = 10.0

    async def main(loop):
        service = TokenBucket(quota, 10, clock=loop.time)
        rng = random.Random(3)
        finished: list[float] = []

        async def run(control: RateController, steps: int) -> None:
            todo = list(range(steps))

            async def worker() -> None:
                while todo:
                    todo.pop()
                    while True:
                        await control.acquire()
                        first_burst = control.in_first_burst  # as the engine keeps it
                        await asyncio.sleep(rng.uniform(0, 0.002))
                        admitted = service.take()
                        await asyncio.sleep(0.05)
                        if admitted:
                            control.on_success()
                            break
                        control.on_throttle(first_burst=first_burst)
                        await asyncio.sleep(rng.uniform(0, 0.2))

            await asyncio.gather(*(worker() for _ in range(16)))
            finished.append(loop.time())

        controls = [RateController(rate=quota, burst=10) for _ in range(2)]
        await asyncio.gather(*(run(c, 150) for c in controls))
        return controls, finished

    controls, finished = run_virtual(main)
    rates = [c.rate for c in controls]
    assert min(finished) >= 0.9 * max(finished)
    assert min(rates) >= 0.8 * max(rates)
    assert sum(rates) == pytest.approx(quota, rel=0.15)
    # and the quota was used: 300 calls in not much more than (300 - 10) / 10 s
    assert max(finished) <= 1.1 * (300 - 10) / quota


@pytest.mark.parametrize("late_calls_throttled, halved", [(True, False), (False, True)])
def test_only_throttles_of_the_first_burst_itself_halve_the_start(late_calls_throttled, halved):
    """A run's first burst answered late (40 targets at once: 0.6 s): meanwhile our bucket
    refilled and admitted six more without a wait, which the service's bucket, full when
    the burst arrived and capped there, had not refilled for. Their throttles are the
    run's own timing, not other callers: only throttles of the first ten calls (two runs
    whose bursts met one bucket) halve the rate."""
    async def main(loop):
        control = RateController(rate=10.0, burst=10)
        firsts = []
        for _ in range(10):
            await control.acquire()
            firsts.append(control.in_first_burst)
        await asyncio.sleep(0.6)
        for _ in range(6):
            await control.acquire()  # the bucket refilled: admitted at once
            firsts.append(control.in_first_burst)
        for _ in range(8):
            control.on_success()
        throttled = firsts[-2:] if late_calls_throttled else firsts[:2]
        for first in throttled:
            control.on_throttle(first_burst=first)
        return firsts, control.rate

    firsts, rate = run_virtual(main)
    assert firsts == [True] * 10 + [False] * 6
    assert (rate <= 5.0) is halved
