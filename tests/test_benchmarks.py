"""The benchmark's arithmetic: ideal times (piecewise when the quota changes) and E.

No timing here: these are the pure pieces the figures are computed with, and
benchmarks/fleet.py at a small scale, whose call counts (never its times) are asserted.
"""
import math

import pytest

from benchmarks.plots import plot_path
from benchmarks.scenarios import scenarios_for
from fleetrel.bench import (
    Quota,
    QuotaChange,
    Trial,
    cpu_seconds,
    delivered_ideal,
    efficiency,
    ideal_seconds,
    operation_counts,
)

DROP = (QuotaChange(5.0, 20, 20),)  # the emulator starts the new bucket full
DROP_KEEPING_TOKENS = (QuotaChange(5.0, 20, 20, refills=False),)


@pytest.mark.parametrize(
    ("calls", "rate", "burst", "expected"),
    [
        (500, 10, 10, 49.0),  # (a): (N - B) / R
        (500, 50, 50, 9.0),  # (b)
        (500, 20, 1, 24.95),  # (e): no burst to speak of
        (2000, 10, 10, 199.0),
        (10, 10, 10, 0.0),  # the whole run fits in the bucket
    ],
)
def test_ideal_time_is_what_the_bucket_allows(calls, rate, burst, expected):
    assert ideal_seconds(calls, rate=rate, burst=burst) == pytest.approx(expected)


def test_ideal_time_after_a_quota_drop_is_piecewise():
    # 50 + 50·5 = 300 calls by 5 s, the other 200 at 20/s
    assert ideal_seconds(500, rate=50, burst=50, changes=DROP_KEEPING_TOKENS) == pytest.approx(15.0)
    assert ideal_seconds(2000, rate=50, burst=50, changes=DROP_KEEPING_TOKENS) == pytest.approx(5 + 1700 / 20)
    # ... and 20 more at once when the new bucket starts full
    assert ideal_seconds(500, rate=50, burst=50, changes=DROP) == pytest.approx(5 + 180 / 20)
    assert ideal_seconds(310, rate=50, burst=50, changes=DROP) == pytest.approx(5.0)


def test_a_drop_after_the_run_would_have_ended_changes_nothing():
    assert ideal_seconds(200, rate=50, burst=50, changes=DROP) == pytest.approx(3.0)
    assert ideal_seconds(300, rate=50, burst=50, changes=DROP) == pytest.approx(5.0)


def test_quick_drop_at_two_seconds():
    (d,) = scenarios_for("quick", ["d"])
    assert d.calls == 200
    q = d.quota
    # 50 + 50·2 = 150 by 2 s, 20 from the fresh bucket, then 30 more at 20/s
    assert ideal_seconds(d.calls, rate=q.rate, burst=q.burst, changes=q.changes) == pytest.approx(3.5)


@pytest.mark.parametrize("changes", [DROP, DROP_KEEPING_TOKENS])
@pytest.mark.parametrize("calls", [51, 120, 300, 321, 500, 2000])
def test_the_ideal_line_reaches_n_exactly_at_the_ideal_time(calls, changes):
    t = ideal_seconds(calls, rate=50, burst=50, changes=changes)
    assert delivered_ideal(t, rate=50, burst=50, changes=changes) == pytest.approx(calls)
    assert delivered_ideal(t - 0.01, rate=50, burst=50, changes=changes) < calls


def test_ideal_line_starts_with_the_full_bucket():
    assert delivered_ideal(0, rate=10, burst=10) == 10
    assert delivered_ideal(-1, rate=10, burst=10) == 0
    assert delivered_ideal(7, rate=50, burst=50, changes=DROP_KEEPING_TOKENS) == pytest.approx(300 + 40)
    assert delivered_ideal(7, rate=50, burst=50, changes=DROP) == pytest.approx(300 + 20 + 40)


def test_efficiency_is_wall_over_ideal():
    assert efficiency(49.0, 49.0) == 1.0
    assert efficiency(53.9, 49.0) == pytest.approx(1.1)
    assert efficiency(20.0, 40.0) == 0.5  # impossible in practice, but reported as measured
    assert math.isnan(efficiency(1.0, 0.0))


def test_scenario_sets():
    assert [s.key for s in scenarios_for("quick")] == ["a", "b", "d", "f", "g", "h", "o"]
    assert [s.key for s in scenarios_for("default")] == ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "o"]
    assert {s.calls for s in scenarios_for("full") if s.key not in "foi"} == {2000}
    (c,) = scenarios_for("default", ["c"])
    assert c.quota == Quota(10, 10) and c.fleetrel_ceiling == 100.0
    with pytest.raises(KeyError):
        scenarios_for("default", ["z"])


def test_plot_names():
    assert str(plot_path("/tmp/bench", "a")) == "/tmp/bench-a.png"
    assert str(plot_path("/tmp/bench.png", "d")) == "/tmp/bench-d.png"


def test_the_sending_cpu_leaves_out_the_contenders_fixed_start():
    # A contender that burns 50 ms of CPU before its first success (its clients, plan,
    # journal): the whole-run figure pays it, the sending one does not.
    trial = Trial(None, contender="x", calls=3, quota=Quota(None, 0), shared=True)
    trial.start()
    start = cpu_seconds()
    while cpu_seconds() - start < 0.05:
        pass
    for _ in range(3):
        trial.completed()
    m = trial.finish(succeeded=3, failed=0)
    assert m.cpu_sending_s is not None and m.cpu_s - m.cpu_sending_s >= 0.0499
    assert m.calls_per_cpu_s_sending is not None and m.calls_per_cpu_s_sending > m.calls_per_cpu_s
    assert m.to_dict()["calls_per_cpu_s_sending"] == m.calls_per_cpu_s_sending


def test_no_success_no_sending_figure():
    trial = Trial(None, contender="x", calls=3, quota=Quota(None, 0), shared=True)
    trial.start()
    m = trial.finish(succeeded=0, failed=3)
    assert m.cpu_sending_s is None and m.calls_per_cpu_s_sending is None


def test_throttles_are_read_from_the_emulator_record():
    record = {
        "operations": {"UpdatePackageVersion": {"200": 480, "400": 20, "dropped": 1}, "GetPackageVersion": {"200": 7}},
        "throttled": {"UpdatePackageVersion": 20},
    }
    assert operation_counts(record) == (501, 20)
    assert operation_counts({"operations": {}, "throttled": {}}) == (0, 0)


def test_a_freed_quota_is_timed_against_every_admitted_call():
    (i,) = scenarios_for("default", ["i"])
    assert i.foreign_rate == 8.0 and i.foreign_until == 20.0 and i.calls == 300
    # (N + F - B) / R: the foreign caller's admitted calls used the quota too
    assert i.ideal_s(foreign_admitted=125) == pytest.approx((300 + 125 - 10) / 10)
    assert i.ideal_s() == pytest.approx((300 + 160 - 10) / 10)  # all it sent, 8/s for 20 s


def test_recovery_is_the_first_second_at_ninety_percent_after_the_stop():
    from benchmarks.simulate import recovery

    slow = [20.0 + k * 0.5 for k in range(1, 7)]  # 2/s until 23 s
    fast = [23.0 + k * 0.1 for k in range(1, 21)]  # then 10/s
    # (22.8, 23.8] holds the last slow call and eight fast ones: nine, 90 % of 10/s
    assert recovery(slow + fast, stopped=20.0, rate=10) == pytest.approx(3.8)
    assert recovery(slow, stopped=20.0, rate=10) == float("inf")


@pytest.fixture(scope="module")
def fleet_bench():
    """benchmarks/fleet.py at a small scale: 3 packages x 4 versions, 300 things, 1 and 2 targets."""
    from benchmarks.fleet import measure

    return measure(things=300, packages=3, versions=4, naive=False, log=lambda *_: None)


@pytest.mark.parametrize("plan", ["listed", "selector"])
def test_the_fleet_preview_makes_one_aggregation_per_target_and_package(fleet_bench, plan):
    """Counts, not times: one GetBucketsAggregation per (target, package), whatever the
    versions and targets, as the emulator recorded them (and none with --no-fleet-check)."""
    rows = [row for row in fleet_bench["runs"] if row["plan"].startswith(plan)]
    assert [row["targets"] for row in rows] == [1, 2]
    for row in rows:
        names = ["main", "second"][:row["targets"]]
        assert row["with_counts"]["exit"] == 0
        assert row["with_counts"]["aggregations_per_target"] == {name: 3 for name in names}
        assert row["no_fleet_check"]["aggregations_per_target"] == {name: 0 for name in names}
        if plan == "listed":  # every version in every target, counted
            assert row["with_counts"]["steps"] == 12 * row["targets"]
