"""The scenarios of issue #6: which quota the emulator enforces, what fleetrel is told,
and who runs.

    for scenario in scenarios_for("quick"):
        print(scenario.key, scenario.quota, scenario.calls)

Choices (each also in benchmarks/README.md):
- (c) quota unknown: fleetrel is told a ceiling of 10×R = 100/s but the true burst (10).
  Telling it a burst of 100 as well would make it fire 100 calls at a bucket of 10 at
  t=0, which measures the wrong thing twice: a real user's burst setting is the number
  of calls the first second may carry, and the default (10) is what they would leave.
- (d) the quota drops to 20/s (and a bucket of 20) 5 s into each run. With `--quick`
  (N=200) the run would end before 5 s (B + 50·5 = 300 > 200 calls), so the drop comes
  at 2 s there: 150 calls by then. The emulator starts the new 20-call bucket full, so
  the ideal client gets 20 more at the drop and the rest at 20/s (see QuotaChange).
- `--quick` runs (a), (b), (d), (f), (g), (h) and the overhead pair: about 5 minutes
  on an idle 2-core machine. (f), (g) and (h) line fleetrel up beside boto3-adaptive
  only, the one baseline that adapts.
- (f) two runs share the quota: two fleetrel processes started together on one 10/s,
  B=10 quota, each with its own plan (rate 10, burst 10) and its own versions; beside
  them two boto3-adaptive processes doing the same. `calls` is per run; E is the
  combined wall (the later finisher) over the ideal time of both runs' calls together,
  θ counts every caller's attempts, and fairness is the earlier finisher's wall over
  the later one's.
- (g) foreign load: one run beside a steady, non-adaptive caller sending 3 calls/s on
  a 10/s quota (from the run's start to its end); E is against the 7/s left
  (ideal (N - B) / 7), θ counts every caller's attempts, the foreign one's included.
- (h) burst overstated: the plan says rate 100 and burst 100 against 10/s, B=10.
- (i) a freed quota: a foreign caller at 8/s on a 10/s quota, from 1 s before the run
  until 20 s into it, then none (N=300). E is against every call the quota admitted
  while the run lasted, the foreign caller's included: ideal (N + F - B) / R, F the
  foreign calls admitted between the run's start and its end; a run that squeezes the
  foreign caller shrinks F and is timed against that. The second figure is how long
  after the caller stops the run sends at 90 % of the quota again (target 5 s). θ counts
  the deaf caller's throttles (it sends 8/s into a quota the run takes part of), hence
  10 %, not 3 %.
- (j) a ceiling a little above the quota: the plan says 10/s (the default) where the
  account allows 8.8/s, burst 10. A lone run's first bound then reads like another run
  arriving (between half and 95 % of the ceiling), and fleetrel goes to half its
  ceiling until six quiet seconds say it is alone (`Tuning.alone`): the price of the
  sharing rules, measured here so that it shows in every run. Target as (c), whose
  quota is unknown too.
- overhead: fleetrel against an unthrottled emulator (told a rate no run reaches) beside
  the raw aiobotocore loop, each twice in alternation; the best CPU-per-call of each is
  compared. It uses 5×N calls (3×N in `--quick`, to stay within 3 minutes), as 200
  calls take well under a second and CPU time is counted in ticks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from fleetrel.bench import Quota, QuotaChange, ideal_seconds

THROTTLED = ("fleetrel", "boto3-adaptive", "boto3-standard", "aiolimiter")
ADAPTIVE = ("fleetrel", "boto3-adaptive")
OVERHEAD = ("raw-aiobotocore", "fleetrel")
CALLS = {"quick": 200, "default": 500, "full": 2000}
SHARED_CALLS = {"quick": 150, "default": 250, "full": 1000}  # per run, two runs
FREED_CALLS = {"quick": 300, "default": 300, "full": 1000}  # (i): 50 calls fit the first 20 s
UNREACHABLE_RATE = 100_000.0  # what fleetrel is told in the unthrottled overhead run


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    quota: Quota
    calls: int
    contenders: tuple[str, ...] = THROTTLED
    fleetrel_ceiling: float | None = None  # the rate fleetrel is told; None: the true one
    fleetrel_burst: int | None = None  # the burst fleetrel is told; None: the true one
    repeats: int = 1
    runs: int = 1  # processes of each contender started together on the one quota
    foreign_rate: float = 0.0  # calls/s of a steady, non-adaptive caller beside the run
    foreign_until: float | None = None  # it stops this many seconds into the run (None: at the run's end)
    target: tuple[float, float] | None = None  # fleetrel's (E at most, θ at most)
    min_fairness: float | None = None  # earlier finisher's wall / later one's, at least
    recovery_s: float | None = None  # back at 90 % of the quota this soon after the foreign caller stops

    @property
    def measures_overhead(self) -> bool:
        return self.quota.rate is None

    def ideal_s(self, foreign_admitted: int | None = None) -> float:
        """The least wall time for every run's calls, on the quota left by the foreign
        caller: what E is measured against. A foreign caller that stops part-way left
        the run what it did not take: `foreign_admitted` of its calls admitted while the
        run lasted (default: all it sent, at its rate, until it stopped)."""
        quota = self.quota
        if quota.rate is None:
            return 0.0
        if self.foreign_until is not None:
            if foreign_admitted is None:
                foreign_admitted = round(self.foreign_rate * self.foreign_until)
            return ideal_seconds(self.calls * self.runs + foreign_admitted, rate=quota.rate, burst=quota.burst)
        return ideal_seconds(self.calls * self.runs, rate=quota.rate - self.foreign_rate, burst=quota.burst,
                             changes=quota.changes)


def scenarios_for(mode: str = "default", keys: Iterable[str] | None = None) -> list[Scenario]:
    """The scenarios named by `keys` (default: the mode's set) at the size of `mode`
    (quick, default, full), in run order. Unknown keys raise KeyError."""
    n = CALLS[mode]
    drop_at = 2.0 if mode == "quick" else 5.0
    all_ = [
        Scenario("a", "R=10, B=10", Quota(10, 10), n, target=(1.03, 0.01)),
        Scenario("b", "R=50, B=50", Quota(50, 50), n, target=(1.03, 0.01)),
        Scenario("c", "R=10, B=10, quota unknown (fleetrel told 100/s)", Quota(10, 10), n, fleetrel_ceiling=100.0,
                 target=(1.10, 0.03)),
        Scenario(
            "d",
            f"R=50, B=50, dropping to 20/s at {drop_at:g} s",
            Quota(50, 50, changes=(QuotaChange(drop_at, 20, 20),)),
            n,
            target=(1.10, 0.03),
        ),
        Scenario("e", "R=20, B=1 (no burst)", Quota(20, 1), n, target=(1.10, 0.01)),
        Scenario("f", "R=10, B=10, two runs share the quota", Quota(10, 10), SHARED_CALLS[mode], contenders=ADAPTIVE,
                 runs=2, target=(1.05, 0.03), min_fairness=0.9),
        Scenario("g", "R=10, B=10, beside a foreign caller at 3/s", Quota(10, 10), n, contenders=ADAPTIVE,
                 foreign_rate=3.0, target=(1.10, 0.03)),
        Scenario("h", "R=10, B=10, burst overstated (fleetrel told 100/s, B=100)", Quota(10, 10), n,
                 contenders=ADAPTIVE, fleetrel_ceiling=100.0, fleetrel_burst=100, target=(1.05, 0.03)),
        Scenario("i", "R=10, B=10, a foreign caller at 8/s stops 20 s in (the freed quota)", Quota(10, 10),
                 FREED_CALLS[mode], contenders=ADAPTIVE, foreign_rate=8.0, foreign_until=20.0, target=(1.05, 0.10),
                 recovery_s=5.0),
        Scenario("j", "R=8.8, B=10, fleetrel told 10/s (a ceiling a little above the quota)", Quota(8.8, 10), n,
                 contenders=ADAPTIVE, fleetrel_ceiling=10.0, target=(1.10, 0.03)),
        Scenario(
            "o",
            "unthrottled: CPU overhead per call",
            Quota(None, 0),
            (3 if mode == "quick" else 5) * n,
            contenders=OVERHEAD,
            fleetrel_ceiling=UNREACHABLE_RATE,
            repeats=2,
        ),
    ]
    if keys is None:
        keys = ("a", "b", "d", "f", "g", "h", "o") if mode == "quick" else [s.key for s in all_]
    wanted = set(keys)
    unknown = wanted - {s.key for s in all_}
    if unknown:
        raise KeyError(f"unknown scenario(s) {sorted(unknown)}: choose among {','.join(s.key for s in all_)}")
    return [s for s in all_ if s.key in wanted]
