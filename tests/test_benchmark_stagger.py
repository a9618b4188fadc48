"""Scenario (f) started apart (`benchmarks/run.py --stagger S --repeat K`): how two runs'
figures combine, and how repetitions are summed up. Pure arithmetic on made-up
measurements; no emulator, no timing."""
import pytest

from benchmarks.run import label, meets, parse_args, summary
from benchmarks.scenarios import scenarios_for
from benchmarks.together import combine
from fleetrel.bench import Measurement, Quota


class FakeEmulator:
    def record(self):
        return {"operations": {"UpdatePackageVersion": {"200": 500, "429": 10}},
                "throttled": {"UpdatePackageVersion": 10}}


def run(wall, completions=(1.0,)):
    return Measurement(contender="fleetrel", calls=250, quota=Quota(10, 10), wall_s=wall, ideal_s=24.0,
                       efficiency=wall / 24.0, succeeded=250, failed=0, attempts=0, throttled=0,
                       throttle_ratio=0.0, client_attempts=None, client_throttles=None, cpu_s=1.0,
                       calls_per_cpu_s=250.0, calls_per_s=10.0, completions=list(completions))


def test_runs_started_apart_are_timed_from_the_first_start_to_the_last_end():
    (f,) = scenarios_for("default", ["f"])
    # the second run started 0.5 s after the first and took 49 s: the quota was busy 49.5 s
    m = combine(FakeEmulator(), f, "fleetrel", [run(48.0, [48.0]), run(49.0, [49.0])], wall=49.6,
                starts=[100.0, 100.5])
    assert m.wall_s == pytest.approx(49.5)
    assert m.efficiency == pytest.approx(49.5 / f.ideal_s(), abs=1e-3)
    assert m.extra["walls"] == [48.0, 49.0]
    assert m.extra["fairness"] == pytest.approx(48 / 49, abs=1e-4)  # each run's wall from its own start
    assert m.extra["started_apart_s"] == [0.0, 0.5]
    assert m.completions == [48.0, 49.5]  # on the first run's clock
    assert m.throttle_ratio == pytest.approx(10 / 510, abs=1e-5)


def test_without_starts_the_combined_wall_is_the_longer_run():
    (f,) = scenarios_for("default", ["f"])
    m = combine(FakeEmulator(), f, "fleetrel", [run(48.0), run(49.0)], wall=49.6)
    assert m.wall_s == pytest.approx(49.0)


def test_repetitions_are_summed_up_per_stagger_and_must_each_meet_the_targets():
    (f,) = scenarios_for("default", ["f"])
    good = combine(FakeEmulator(), f, "fleetrel", [run(48.0), run(49.0)], wall=49.0, starts=[0.0, 0.1])
    unfair = combine(FakeEmulator(), f, "fleetrel", [run(30.0), run(49.0)], wall=49.0, starts=[0.0, 0.1])
    good.extra["stagger"] = unfair.extra["stagger"] = 0.1
    assert label("f", good) == "f@0.1"
    assert meets(f, good) is True and meets(f, unfair) is False
    (line,) = summary({"f": [good, unfair]}, {"f": f})
    assert line.startswith("(f@0.1) fleetrel") and "2 runs" in line and "targets met 1/2" in line
    assert "fairness 0.61 / 0.80 / 0.98" in line


def test_stagger_and_repeat_options():
    args = parse_args(["--scenario", "f", "--stagger", "0,0.1,0.5,1", "--repeat", "10"])
    assert args.stagger == "0,0.1,0.5,1" and args.repeat == 10
    assert parse_args([]).stagger == "0" and parse_args([]).repeat is None
    assert parse_args(["--apart"]).apart is True and parse_args([]).apart is False
