"""The quota estimator's rules for a quota shared by two runs (issue 25, item 3): a run
that meets another's burst, or sees another arrive after it, sends at the share (half its
ceiling, what both compute alike) and is held near it: the run above gives more back at
a touch, the run a little under is brought back up. Pure arithmetic on made-up answers."""
import math

import pytest

from fleetrel.quota import QuotaEstimator, Tuning


def accept(estimator: QuotaEstimator, now: float, *, rate: float, seconds: float) -> float:
    for _ in range(round(rate * seconds)):
        now += 1 / rate
        estimator.accepted(now)
    return now


def lone_then_bound(admitted_after: float, tuning: Tuning = Tuning()) -> QuotaEstimator:
    """Alone at 10/s for half a second (its burst and paced calls all admitted), then a
    throttle, then 1.4 s admitted at `admitted_after`/s and another throttle."""
    estimator = QuotaEstimator(ceiling=10.0, floor=0.5, burst=10, tuning=tuning)
    for _ in range(10):
        estimator.accepted(0.05)
    accept(estimator, 0.05, rate=10.0, seconds=0.5)
    estimator.throttled(0.6, first_burst=False)  # the other run has come: a touch
    now = accept(estimator, 0.6, rate=admitted_after, seconds=1.4)
    estimator.throttled(now, first_burst=False)
    return estimator


def shared_from_the_start(tuning: Tuning = Tuning()) -> QuotaEstimator:
    """A run whose first burst met another's: two of its first ten throttled."""
    estimator = QuotaEstimator(ceiling=10.0, floor=0.5, burst=10, tuning=tuning)
    for k in range(10):
        estimator.probe(0.001 * k, waited_at=-math.inf)
    estimator.throttled(0.05, waited=False, first_burst=True)
    estimator.throttled(0.05, waited=False, first_burst=True)
    return estimator


def test_a_run_that_had_the_quota_to_itself_goes_to_the_share_when_another_arrives():
    # 5.7/s measured (8 admitted in 1.4 s): between the share (5) and 95 % of the ceiling
    assert lone_then_bound(5.0).estimate == pytest.approx(5.0)
    assert lone_then_bound(5.0).rate == pytest.approx(4.75)
    # without the rule it stepped down to its bound, and held 10 % more than the late run
    assert lone_then_bound(5.0, Tuning(arrival=0.0)).estimate == pytest.approx(8 / 1.4)


def test_a_bound_under_the_share_is_a_smaller_quota_not_a_second_run():
    # 3/s measured: a quota that dropped (d), a heavier caller (i): the bound, as before
    assert lone_then_bound(3.0).estimate < 4.0
    assert lone_then_bound(3.0).estimate == lone_then_bound(3.0, Tuning(arrival=0.0)).estimate


def test_a_run_whose_first_burst_was_throttled_is_not_arrived_upon():
    """Beside a caller that was there first (g), the first burst lost a call: that run did
    not have the quota to itself, and a bound of 7/s is what it may send."""
    estimator = QuotaEstimator(ceiling=10.0, floor=0.5, burst=10)
    for k in range(10):
        estimator.probe(0.001 * k, waited_at=-math.inf)
    for _ in range(9):
        estimator.accepted(0.05)
    estimator.throttled(0.05, waited=False, first_burst=True)  # one, not a cluster
    estimator.throttled(3.0, first_burst=False)  # later, paced: a new episode
    now = accept(estimator, 3.0, rate=7.0, seconds=1.0)
    estimator.throttled(now, first_burst=False)
    assert estimator.estimate > 7.0  # not the share


def test_sharing_a_touch_above_the_share_cuts_towards_it():
    estimator = lone_then_bound(5.0)  # sharing now, at 4.75
    now = 2.0
    for _ in range(58):  # 5.8 s quiet (under `alone`): back to the estimate, then past it
        now += 0.1
        estimator.accepted(now)
        estimator.probe(now, waited_at=now)
    above = estimator.rate
    assert above > 5.0
    estimator.throttled(now + 0.1, first_burst=False)  # a touch
    # the share or 20 % less, whichever is less; less the margin
    assert estimator.estimate == pytest.approx(max(5.0, above * 0.8))
    # alone, a touch steps down by the margin (or to what it was admitted), not to 5
    lone = QuotaEstimator(ceiling=10.0, floor=0.5, burst=10)
    now = accept(lone, 0.0, rate=10.0, seconds=1.0)
    lone.throttled(now, first_burst=False)
    assert lone.estimate == pytest.approx(10.0)  # no history: the rate it was at


def test_sharing_a_run_a_little_under_the_share_is_brought_back_to_it():
    estimator = shared_from_the_start()
    hold = Tuning().start_hold
    now = accept(estimator, 0.05, rate=4.0, seconds=hold + 0.5)  # after the hold
    estimator.throttled(now, first_burst=False)  # a touch after a quiet spell: 4.75, less the margin
    assert 5.0 * 0.85 <= estimator.estimate < 5.0 and estimator.rate < 4.55
    for _ in range(60):  # 6 s saturated, no throttle: back to the share with the recovery
        now += 0.1
        estimator.probe(now, waited_at=now)
    assert estimator.rate > 4.95
    alone = Tuning(share_band=0.0)  # (the share only as the estimate said it)
    other = shared_from_the_start(alone)
    now = accept(other, 0.05, rate=4.0, seconds=hold + 0.5)
    other.throttled(now, first_burst=False)
    for _ in range(60):
        now += 0.1
        other.probe(now, waited_at=now)
    assert other.rate < 4.8
    # further under (a deaf caller takes more, i) the estimate holds: the probe alone
    squeezed = shared_from_the_start()
    now = accept(squeezed, 0.05, rate=4.0, seconds=hold + 0.5)
    squeezed.throttled(now, first_burst=False)  # an anchor
    now = accept(squeezed, now + 0.001, rate=2.0, seconds=1.5)
    squeezed.throttled(now + 0.01, first_burst=False)  # a bound far under the share
    estimate = squeezed.estimate
    assert estimate < 5.0 * 0.85
    for _ in range(10):
        now += 0.1
        squeezed.probe(now, waited_at=now)
    assert squeezed.rate < estimate * 1.01


def test_sharing_from_the_start_a_bound_near_the_share_cuts_a_fifth_at_most():
    """The earlier run's calls may keep the service's rhythm so that this run takes every
    throttle: its bounds must not take it to the floor, one after the other."""
    estimator = shared_from_the_start()
    hold = Tuning().start_hold
    now = accept(estimator, 0.05, rate=4.75, seconds=hold)
    estimator.throttled(now, first_burst=False)  # after the hold: an anchor
    before = estimator.rate
    now = accept(estimator, now + 0.001, rate=3.0, seconds=1.8)  # 3.6/s measured: near the share
    assert estimator.throttled(now + 0.01, first_burst=False) == pytest.approx(before * 0.8 * 0.95)
    # ... once per cool-down
    assert estimator.estimate == pytest.approx(before * 0.8)
    assert estimator.throttled(now + 0.011, first_burst=False) == pytest.approx(before * 0.8 * 0.95)
    # without the rule, the bound itself
    plain = shared_from_the_start(Tuning(share_cut=0.0))
    later = accept(plain, 0.05, rate=4.75, seconds=hold)
    plain.throttled(later, first_burst=False)
    later = accept(plain, later + 0.001, rate=3.0, seconds=1.8)
    plain.throttled(later + 0.01, first_burst=False)
    assert plain.estimate < before * 0.8


def test_sharing_a_bound_far_under_the_share_applies_at_once():
    estimator = shared_from_the_start()
    hold = Tuning().start_hold
    now = accept(estimator, 0.05, rate=4.75, seconds=hold)
    estimator.throttled(now, first_burst=False)
    now = accept(estimator, now + 0.001, rate=2.0, seconds=1.5)
    estimator.throttled(now + 0.01, first_burst=False)
    assert estimator.estimate == pytest.approx(4 / 1.51, rel=0.01)  # a third caller: the bound


def test_a_first_wave_admitted_well_over_the_share_was_not_sharing():
    """g: a run beside a light caller loses a couple of its first burst, its guess then
    rises to what it was admitted (8.5 of 10): it does not share with a run, and its
    touches step down by the margin, not towards 5."""
    estimator = QuotaEstimator(ceiling=10.0, floor=0.5, burst=10)
    for k in range(10):
        estimator.probe(0.001 * k, waited_at=-math.inf)
    for _ in range(2):
        estimator.accepted(0.05)
    estimator.throttled(0.05, waited=False, first_burst=True)
    estimator.throttled(0.051, waited=False, first_burst=True)  # a cluster: the share, for now
    for _ in range(6):
        estimator.accepted(0.06)
    estimator.first_wave_answered(0.07)  # 8 of 10 admitted in the last second
    assert estimator.estimate == pytest.approx(8.0)
    now = 0.1
    for k in range(100):  # 10 s admitted at 10/s
        estimator.accepted(now)
        estimator.probe(now, waited_at=now)
        now += 0.1
    rate = estimator.rate
    estimator.throttled(now, first_burst=False)
    # what it was admitted since says more than its rate: the touch keeps the rate (sharing: 4/5 of it)
    assert estimator.estimate == pytest.approx(rate)


def test_an_overstated_burst_that_throttles_itself_is_not_sharing():
    """h: told 100/s and a burst of 100, 16 calls out, 10 admitted: a cluster of
    first-burst throttles, but more calls than half the ceiling's worth never left at
    once: a later touch steps by the margin, not towards half of 100/s or of 10."""
    estimator = QuotaEstimator(ceiling=100.0, floor=0.5, burst=100)
    for k in range(16):
        estimator.probe(0.001 * k, waited_at=-math.inf)
    for _ in range(10):
        estimator.accepted(0.05)
    for _ in range(6):
        estimator.throttled(0.051, waited=False, first_burst=True)
    estimator.first_wave_answered(0.06)
    now = accept(estimator, 10.0, rate=10.0, seconds=8.0)
    rate = estimator.rate
    estimator.throttled(now + 3.0, first_burst=False)
    assert estimator.estimate >= min(rate, estimator.estimate) and estimator.estimate > 8.0


def test_a_run_quiet_at_the_share_for_a_while_was_alone_and_climbs():
    """Told 10/s against a quota of 8.8: the first bounds read like a run that arrived
    (8.8 of 10); at the share nothing throttles it. After `alone` seconds it leaves the
    sharing and climbs, where it used to take ~15 s to find 8.8 again."""
    alone = Tuning().alone
    estimator = lone_then_bound(5.0)  # "arrived": at the share
    arrived = 2.0
    now = arrived
    rates = []
    while now < arrived + alone + 2.0:
        now += 0.1
        estimator.accepted(now)
        rates.append((now, estimator.probe(now, waited_at=now)))
    before = [r for t, r in rates if t <= arrived + alone - 0.1]
    after = [r for t, r in rates if t >= arrived + alone + 1.5]
    assert max(before) < 5.3  # at the share while it might be sharing
    assert min(after) > 7.5  # then climbing towards the ceiling
    # without the rule (a wait longer than this test) it stays near the share
    patient = lone_then_bound(5.0, Tuning(alone=60.0))
    now = arrived
    while now < arrived + alone + 2.0:
        now += 0.1
        patient.accepted(now)
        patient.probe(now, waited_at=now)
    assert patient.rate < 5.5
