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
- `--quick` runs (a), (b), (d) and the overhead pair, every contender included: about
  2 minutes on an idle 2-core machine, within the 3-minute budget.
- overhead: fleetrel against an unthrottled emulator (told a rate no run reaches) beside
  the raw aiobotocore loop, each twice in alternation; the best CPU-per-call of each is
  compared. It uses 5×N calls (3×N in `--quick`, to stay within 3 minutes), as 200
  calls take well under a second and CPU time is counted in ticks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from fleetrel.bench import Quota, QuotaChange

THROTTLED = ("fleetrel", "boto3-adaptive", "boto3-standard", "aiolimiter")
OVERHEAD = ("raw-aiobotocore", "fleetrel")
CALLS = {"quick": 200, "default": 500, "full": 2000}
UNREACHABLE_RATE = 100_000.0  # what fleetrel is told in the unthrottled overhead run


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    quota: Quota
    calls: int
    contenders: tuple[str, ...] = THROTTLED
    fleetrel_ceiling: float | None = None  # the rate fleetrel is told; None: the true one
    repeats: int = 1

    @property
    def measures_overhead(self) -> bool:
        return self.quota.rate is None


def scenarios_for(mode: str = "default", keys: Iterable[str] | None = None) -> list[Scenario]:
    """The scenarios named by `keys` (default: the mode's set) at the size of `mode`
    (quick, default, full), in run order. Unknown keys raise KeyError."""
    n = CALLS[mode]
    drop_at = 2.0 if mode == "quick" else 5.0
    all_ = [
        Scenario("a", "R=10, B=10", Quota(10, 10), n),
        Scenario("b", "R=50, B=50", Quota(50, 50), n),
        Scenario("c", "R=10, B=10, quota unknown (fleetrel told 100/s)", Quota(10, 10), n, fleetrel_ceiling=100.0),
        Scenario(
            "d",
            f"R=50, B=50, dropping to 20/s at {drop_at:g} s",
            Quota(50, 50, changes=(QuotaChange(drop_at, 20, 20),)),
            n,
        ),
        Scenario("e", "R=20, B=1 (no burst)", Quota(20, 1), n),
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
        keys = ("a", "b", "d", "o") if mode == "quick" else [s.key for s in all_]
    wanted = set(keys)
    unknown = wanted - {s.key for s in all_}
    if unknown:
        raise KeyError(f"unknown scenario(s) {sorted(unknown)}: choose among {','.join(s.key for s in all_)}")
    return [s for s in all_ if s.key in wanted]
