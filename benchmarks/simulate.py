"""The benchmark's scenarios, simulated: fleetrel's rate controller against the
emulator's token bucket on a virtual clock, in milliseconds instead of minutes.

    python benchmarks/simulate.py                      # every scenario, seeds 1-10
    python benchmarks/simulate.py --scenario f,g --seeds 3 --calls 500
    python benchmarks/simulate.py --scenario f --stagger 0,0.1,0.5,1 --jitter 5
    python benchmarks/simulate.py --scenario f --stagger 0,0.1,0.5,1 --apart   # runs on two hosts

This is the tuning tool: change a constant in `fleetrel.quota.Tuning`, run this, and
only then confirm against the emulator with `benchmarks/run.py`. It shares with the
benchmark what makes the two comparable:

- the scenarios and their targets (`benchmarks.scenarios`), ideal times included;
- the service's bucket: the emulator's own `TokenBucket`, on the virtual clock, built
  fresh and full when the quota changes, as the emulator does;
- what each worker does, as the engine does it: acquire, send (the call reaches the
  service after up to `jitter` seconds and answers after `latency`), report the answer
  to the controller, and after a throttle wait the engine's full-jitter backoff.

Several runs (scenario f) are several controllers, each with its own workers and
steps, on the one bucket; a foreign caller (scenario g) sends at its steady rate and
never adapts. The figures follow `benchmarks/run.py`: E over the ideal time of every
run's calls on the quota left, θ over every caller's attempts. Deterministic for a seed.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `fleetrel` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scenarios import Scenario, scenarios_for  # noqa: E402
from fleetrel.emulator.bucket import TokenBucket  # noqa: E402
from fleetrel.errors import RetryPolicy, backoff  # noqa: E402
from fleetrel.ratecontrol import RateController  # noqa: E402
from fleetrel.testing import VirtualTimeLoop  # noqa: E402

LATENCY = 0.05  # the benchmark's emulator adds 50 ms to every call
CONCURRENCY = 16


def run_virtual(main: Callable[[asyncio.AbstractEventLoop], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``main(loop)`` on a fresh virtual-time loop (`fleetrel.testing.VirtualTimeLoop`)
    and return its result."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


class Service:
    """The emulator's throttle on the virtual clock: its `TokenBucket`, replaced by a
    fresh, full one at each quota change (what the emulator does when its limits change)."""

    def __init__(self, scenario: Scenario, clock: Callable[[], float]) -> None:
        quota = scenario.quota
        assert quota.rate is not None, "the simulation needs a throttled scenario"
        assert all(c.refills for c in quota.changes), "the emulator's new bucket starts full"
        self.clock = clock
        self.bucket = TokenBucket(quota.rate, quota.burst, clock=clock)
        self.changes = sorted(quota.changes, key=lambda c: c.at_s)
        self.attempts = 0
        self.throttled = 0

    def admit(self) -> bool:
        now = self.clock()
        while self.changes and self.changes[0].at_s <= now:
            change = self.changes.pop(0)
            self.bucket = TokenBucket(change.rate, change.burst, clock=self.clock)
        self.attempts += 1
        if self.bucket.take():
            return True
        self.throttled += 1
        return False


def recovery(accepted: list[float], stopped: float, rate: float, share: float = 0.9) -> float:
    """Seconds from `stopped` (the foreign caller's last call) until one run's answers
    came at `share` of `rate` again: the end of the first second after `stopped` holding
    at least share × rate of its accepted calls (inf if none does)."""
    need = share * rate
    times = sorted(t for t in accepted if t > stopped)
    start = 0
    for end, t in enumerate(times):
        while times[start] <= t - 1.0:
            start += 1
        if end - start + 1 >= need - 1e-9 and t - 1.0 >= stopped - 1e-9:
            return t - stopped
    return float("inf")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One simulated scenario: per run wall time and controller counters, and the whole."""

    scenario: str
    walls: tuple[float, ...]  # each run's, from its own start
    span: float  # from the first run's start to the last run's end
    ideal: float
    attempts: int  # every caller's, the foreign one's included
    throttled: int
    rates: tuple[float, ...]  # each controller's rate at the end
    stats: tuple[dict[str, Any], ...]
    recovered_s: float | None = None  # (i): back at 90 % of the quota this long after the caller stopped

    @property
    def efficiency(self) -> float:
        return self.span / self.ideal

    @property
    def throttled_fraction(self) -> float:
        return self.throttled / self.attempts

    @property
    def fairness(self) -> float:
        """The earliest finisher's wall over the latest one's (1.0 for one run)."""
        return min(self.walls) / max(self.walls)

    def meets(self, scenario: Scenario) -> bool:
        ok = True
        if scenario.target is not None:
            e_max, theta_max = scenario.target
            ok = self.efficiency <= e_max and self.throttled_fraction <= theta_max
        if scenario.min_fairness is not None:
            ok = ok and self.fairness >= scenario.min_fairness
        if scenario.recovery_s is not None:
            ok = ok and self.recovered_s is not None and self.recovered_s <= scenario.recovery_s
        return ok


def simulate(
    scenario: Scenario,
    *,
    seed: int = 1,
    latency: float = LATENCY,
    jitter: float = 0.002,
    concurrency: int = CONCURRENCY,
    calls: tuple[int, ...] | None = None,
    stagger: float = 0.0,
    apart: bool = False,
    **controller: Any,
) -> Outcome:
    """Run `scenario` against the simulated service; `controller` goes to every
    `RateController` (a `tuning=` to try, say). `calls`: each run's N, when the runs
    differ (default: the scenario's N for each). `stagger`: run k starts k × stagger
    seconds after the first (two operators never press Enter at the same instant).
    `apart`: the runs are on different hosts and see each other only through throttles;
    by default they see each other (`fleetrel.neighbours`), as `benchmarks/run.py`'s do."""
    rng = random.Random(seed)
    policy = RetryPolicy()
    quota = scenario.quota
    assert quota.rate is not None
    rate = scenario.fleetrel_ceiling or quota.rate
    burst = scenario.fleetrel_burst or quota.burst

    async def one_run(loop: asyncio.AbstractEventLoop, service: Service, n: int,
                      delay: float) -> tuple[float, float, RateController]:
        await asyncio.sleep(delay)
        started = loop.time()
        control = RateController(rate=rate, burst=burst, floor=min(0.5, rate), clock=loop.time, **controller)
        member = object()
        if not apart:
            live.append(member)
            control.watch(_Neighbours(live))  # as the engine's lanes do
        todo = list(range(n))
        finished = 0.0
        accepted: list[float] = []
        accepted_by_run.append(accepted)

        async def worker() -> None:
            nonlocal finished
            while todo:
                todo.pop()
                attempt = 0
                while True:
                    attempt += 1
                    await control.acquire()
                    first_burst = control.in_first_burst  # as the engine keeps it
                    await asyncio.sleep(rng.uniform(0, jitter))
                    admitted = service.admit()
                    await asyncio.sleep(latency + rng.uniform(-jitter, jitter) / 2)
                    if admitted:
                        control.on_success()
                        accepted.append(loop.time())
                        finished = max(finished, loop.time())
                        break
                    control.on_throttle(first_burst=first_burst)
                    # the engine's delay, without its attempt limit: a step given up would hide a bad tuning
                    await asyncio.sleep(backoff(attempt, base=policy.base, cap=policy.cap, rng=rng))

        await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
        if not apart:
            live.remove(member)
            control.watch(None)
        return finished - started, finished, control

    live: list[object] = []  # the runs on this (simulated) host, while they send

    accepted_by_run: list[list[float]] = []
    foreign_admitted: list[float] = []

    async def foreign(service: Service, loop: asyncio.AbstractEventLoop) -> None:
        # steady and deaf: one call every 1/rate seconds whatever the answer, until it stops
        until = scenario.foreign_until if scenario.foreign_until is not None else float("inf")
        while loop.time() < until:
            if service.admit():
                foreign_admitted.append(loop.time())
            await asyncio.sleep(1 / scenario.foreign_rate)

    async def main(loop: asyncio.AbstractEventLoop) -> Outcome:
        service = Service(scenario, loop.time)
        background = asyncio.ensure_future(foreign(service, loop)) if scenario.foreign_rate else None
        sizes = calls or (scenario.calls,) * scenario.runs
        runs = await asyncio.gather(*(one_run(loop, service, n, k * stagger) for k, n in enumerate(sizes)))
        if background is not None:
            background.cancel()
        span = max(end for _, end, _ in runs)
        sized = scenario if calls is None else replace(scenario, calls=sum(calls), runs=1)
        recovered = None
        if scenario.foreign_until is not None:
            # the foreign caller's last call went at the last multiple of its interval before it stopped
            stopped = max(foreign_admitted, default=0.0) if foreign_admitted else scenario.foreign_until
            stopped = max(stopped, scenario.foreign_until - 1 / scenario.foreign_rate)
            recovered = max(recovery(a, stopped, quota.rate) for a in accepted_by_run)
        return Outcome(
            scenario=scenario.key,
            walls=tuple(wall for wall, _, _ in runs),
            span=span,
            ideal=sized.ideal_s(sum(1 for t in foreign_admitted if t <= span)) if scenario.foreign_until is not None
            else sized.ideal_s(),
            attempts=service.attempts,
            throttled=service.throttled,
            rates=tuple(c.rate for _, _, c in runs),
            stats=tuple(c.stats() for _, _, c in runs),
            recovered_s=recovered,
        )

    return run_virtual(main)


class _Neighbours:
    """`fleetrel.neighbours.Neighbours` in one process: the runs sending now."""

    def __init__(self, live: list[object]) -> None:
        self.live = live

    def count(self) -> int:
        return max(1, len(self.live))


def simulated_scenarios(mode: str = "default", keys: Any = None, calls: int | None = None) -> list[Scenario]:
    """The benchmark's throttled scenarios (the overhead pair needs no simulation)."""
    chosen = [s for s in scenarios_for(mode, keys) if not s.measures_overhead]
    return [replace(s, calls=calls) for s in chosen] if calls else chosen


def report(scenarios: list[Scenario], seeds: range, calls: tuple[int, ...] | None = None, stagger: float = 0.0,
           jitter: float = 0.002, apart: bool = False, **controller: Any) -> bool:
    """Print E, θ and fairness per scenario over `seeds`; True if every seed met its targets.
    `calls`: each run's N in the scenarios of several runs (see `simulate`)."""
    all_met = True
    for scenario in scenarios:
        uneven = calls if calls and scenario.runs == len(calls) else None
        runs = [simulate(scenario, seed=s, calls=uneven, stagger=stagger if scenario.runs > 1 else 0.0,
                         jitter=jitter, apart=apart, **controller)
                for s in seeds]
        es = [r.efficiency for r in runs]
        thetas = [r.throttled_fraction for r in runs]
        met = sum(r.meets(scenario) for r in runs)
        all_met &= met == len(runs)
        target = "" if scenario.target is None else f"(≤ {scenario.target[0]}, ≤ {scenario.target[1]:.0%})"
        fair = ""
        if scenario.runs > 1:
            fair = f"  fairness min {min(r.fairness for r in runs):.2f}"
            if scenario.target is not None and scenario.min_fairness is not None:
                but_theta = sum(r.efficiency <= scenario.target[0] and r.fairness >= scenario.min_fairness for r in runs)
                fair += f" (E and fairness met {but_theta}/{len(runs)})"
        if scenario.recovery_s is not None:
            fair += f"  back at 90 % after max {max(r.recovered_s or float('inf') for r in runs):.1f} s" \
                    f" (≤ {scenario.recovery_s:g})"
        n = "+".join(map(str, uneven)) if uneven else f"{scenario.calls:<5d}"
        key = f"{scenario.key}@{stagger:g}" if stagger and scenario.runs > 1 else scenario.key
        print(
            f"({key}) N={n} E mean {sum(es) / len(es):.3f} max {max(es):.3f}"
            f"  θ mean {sum(thetas) / len(thetas):.2%} max {max(thetas):.2%} {target}{fair}"
            f"  met {met}/{len(runs)}  {scenario.title}",
            flush=True,
        )
    return all_met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="", help="comma-separated keys (default: every throttled one)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 1..SEEDS (default 10)")
    parser.add_argument("--calls", type=int, default=None, help="N per run (default: the benchmark's, N=500)")
    parser.add_argument("--run-calls", default="", metavar="N1,N2",
                        help="each run's N in (f), when they differ: 250,100 shows how the longer run climbs "
                             "back to the whole quota once the other has finished")
    parser.add_argument("--stagger", default="0", metavar="S[,S...]",
                        help="in (f), the second run starts S seconds after the first, once per S (two "
                             "operators never press Enter at the same instant; benchmarks/run.py --stagger)")
    parser.add_argument("--apart", action="store_true",
                        help="the runs of (f) are on different hosts: they learn of each other only from "
                             "throttles (by default they see each other, as runs on one host do: "
                             "fleetrel.neighbours)")
    parser.add_argument("--jitter", type=float, default=2.0, metavar="MS",
                        help="each call reaches the service up to this many ms after its admission (default 2; "
                             "5 reproduces what the emulator runs of (e) measure on a slow 2-core machine)")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.scenario.split(",") if k.strip()] or "abcdefghij"
    scenarios = simulated_scenarios("default", keys, args.calls)
    run_calls = tuple(int(n) for n in args.run_calls.split(",") if n.strip()) or None
    staggers = [float(x) for x in args.stagger.split(",") if x.strip()] or [0.0]
    met = True
    for k, stagger in enumerate(staggers):
        chosen = scenarios if k == 0 else [s for s in scenarios if s.runs > 1]  # only (f) depends on it
        met &= report(chosen, range(1, args.seeds + 1), calls=run_calls, stagger=stagger, jitter=args.jitter / 1000,
                      apart=args.apart)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
