"""How close a batch of UpdatePackageVersion calls gets to the service's quota: the
measure behind `fleetrel bench` and `benchmarks/run.py`.

    >>> from fleetrel.bench import measure
    >>> figures = measure(rate=10, burst=10, steps=200)        # doctest: +SKIP
    >>> figures["efficiency"], figures["throttle_ratio"]       # doctest: +SKIP
    (1.01, 0.004)

The emulator, in a process of its own, enforces a token bucket of `rate` calls/s with
capacity `burst` on UpdatePackageVersion and adds `latency_ms` to every call. The bucket
starts full, so a perfect client finishes N calls in (N - B) / R seconds: B at once, then
one per refill. The figures:

- efficiency E = wall time / ideal time (1.00 is the physical limit, lower is impossible);
- throttle ratio θ = throttled attempts / all attempts, as counted by the emulator (the
  truth; the client's own count is kept beside it as a cross-check);
- calls per CPU-second of the *client* process (user + sys from getrusage(RUSAGE_SELF):
  the emulator runs elsewhere, so none of its work is charged to the client), over the
  whole run and from its first success on (`calls_per_cpu_s_sending`: each contender's
  fixed start, building its client, plan and journal and its first call, left out);
- failed: calls that never succeeded. It must be 0; a contender that loses calls is
  reported as such, never hidden.

The pure pieces (`ideal_seconds`, `delivered_ideal`, `efficiency`) are tested without a
network; `Trial` brackets one contender's run against a live emulator.
"""
from __future__ import annotations

import asyncio
import math
import os
import resource
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fleetrel.where import Where
from fleetrel.events import Event, Record

OPERATION = "UpdatePackageVersion"
PACKAGE = "bench-pkg"


# ---------------------------------------------------------------------------- quotas


@dataclass(frozen=True, slots=True)
class QuotaChange:
    """At `at_s` seconds into a run the service's quota becomes `rate`/s, bucket `burst`.

    `refills`: the new bucket starts full. fleetrel's emulator does that when the limits
    change (it builds a fresh bucket), so a perfect client gets `burst` calls at the
    change on top of the drip; the ideal time counts them, or E could drop below 1.
    """

    at_s: float
    rate: float
    burst: int
    refills: bool = True


@dataclass(frozen=True, slots=True)
class Quota:
    """The token bucket the emulator enforces on UpdatePackageVersion; rate None = none."""

    rate: float | None
    burst: int
    changes: tuple[QuotaChange, ...] = ()


def delivered_ideal(t: float, *, rate: float, burst: int, changes: Sequence[QuotaChange] = ()) -> float:
    """Calls a perfect client has had accepted by `t` seconds: the full bucket at once,
    then every token as it drips in. A perfect client keeps the bucket empty, so at a
    change it has nothing left to lose; it gains the new bucket if that starts full.

    >>> delivered_ideal(5, rate=50, burst=50, changes=[QuotaChange(5, 20, 20)])
    300.0
    >>> delivered_ideal(6, rate=50, burst=50, changes=[QuotaChange(5, 20, 20)])   # + 20 fresh + 20 dripped
    340.0
    """
    if t < 0:
        return 0.0
    delivered, now, current = float(burst), 0.0, rate
    for change in sorted(changes, key=lambda c: c.at_s):
        if change.at_s >= t:
            break
        delivered += current * (change.at_s - now) + (change.burst if change.refills else 0)
        now, current = change.at_s, change.rate
    return delivered + current * (t - now)


def ideal_seconds(calls: int, *, rate: float, burst: int, changes: Sequence[QuotaChange] = ()) -> float:
    """The least wall time in which `calls` calls can all be accepted.

    >>> ideal_seconds(500, rate=10, burst=10)
    49.0
    >>> ideal_seconds(500, rate=50, burst=50, changes=[QuotaChange(5, 20, 20, refills=False)])
    15.0
    >>> ideal_seconds(500, rate=50, burst=50, changes=[QuotaChange(5, 20, 20)])   # 300 by 5 s, 20 fresh, 180 at 20/s
    14.0
    """
    if calls <= burst:
        return 0.0
    now, current, delivered = 0.0, rate, float(burst)
    for change in sorted(changes, key=lambda c: c.at_s):
        reach = delivered + current * (change.at_s - now)
        if reach >= calls:
            break
        delivered, now, current = reach, change.at_s, change.rate
        if change.refills:
            delivered += change.burst
            if delivered >= calls:
                return now
    return now + (calls - delivered) / current


def efficiency(wall_s: float, ideal_s: float) -> float:
    """E = wall / ideal; NaN when the ideal is 0 (N ≤ B: the measure says nothing there).

    >>> efficiency(51.45, 49.0)
    1.05
    """
    if ideal_s <= 0:
        return math.nan
    return round(wall_s / ideal_s, 4)


def cpu_seconds() -> float:
    """User + system CPU time of this process so far, every thread included: the boto3
    thread pools run here too, so they are charged like the async contenders."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------- one run


@dataclass(slots=True)
class Measurement:
    """Every figure of one contender's run; `to_dict()` is what the JSON output holds."""

    contender: str
    calls: int
    quota: Quota
    wall_s: float
    ideal_s: float
    efficiency: float
    succeeded: int
    failed: int
    attempts: int  # UpdatePackageVersion requests the emulator received
    throttled: int  # ... and answered with ThrottlingException
    throttle_ratio: float
    client_attempts: int | None  # the client's own count, a cross-check of the two above
    client_throttles: int | None
    cpu_s: float
    calls_per_cpu_s: float
    calls_per_s: float
    completions: list[float] = field(default_factory=list)  # seconds from start, one per success
    extra: dict[str, Any] = field(default_factory=dict)
    # From the first success on: the successes after it per CPU-second spent after it.
    # Each contender's fixed start (clients, plan, journal, its first call) is left out,
    # whatever it builds inside or outside the timed window.
    cpu_sending_s: float | None = None
    calls_per_cpu_s_sending: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["quota"] = {
            "rate": self.quota.rate,
            "burst": self.quota.burst,
            "changes": [asdict(c) for c in self.quota.changes],
        }
        return out


def operation_counts(record: dict[str, Any], operation: str = OPERATION) -> tuple[int, int]:
    """(attempts, throttled) for `operation` from the emulator's record, whose
    "operations" count answers per status ("dropped" ones included) and "throttled"
    counts the ThrottlingExceptions.

    >>> operation_counts({"operations": {"UpdatePackageVersion": {"200": 480, "400": 20}},
    ...                   "throttled": {"UpdatePackageVersion": 20}})
    (500, 20)
    """
    by_status = (record.get("operations") or {}).get(operation) or {}
    throttled = (record.get("throttled") or {}).get(operation, 0)
    return sum(int(n) for n in by_status.values()), int(throttled)


class Trial:
    """Brackets one contender's run against a live emulator.

        trial = Trial(emu, contender="boto3-adaptive", calls=500, quota=Quota(10, 10))
        trial.start()               # full bucket, clean record, clocks running
        ...  trial.completed()  after each successful call, from any thread
        m = trial.finish(succeeded=..., failed=...)

    `start` sets the quota and then waits burst/rate seconds, the time an idle bucket
    takes to fill from empty: the emulator keeps a bucket whose limits did not change
    (the previous contender may have drained it), so only the wait makes sure every
    contender starts with the whole burst. Quota changes are applied from a timer thread
    at their time into the run, the same for every contender.

    `shared=True`: other callers use the quota at the same time (another run, a foreign
    load), so whoever starts them all prepares the emulator (`prepare`) and reads its
    record; this trial only times its own run and counts from the client's side.
    """

    def __init__(self, emu: Any, *, contender: str, calls: int, quota: Quota, shared: bool = False) -> None:
        self.emu = emu
        self.contender = contender
        self.calls = calls
        self.quota = quota
        self.shared = shared
        self._completions: list[float] = []
        self._timers: list[threading.Timer] = []
        self._t0 = 0.0
        self._cpu0 = 0.0
        self._cpu_first: float | None = None  # CPU seconds at the first success

    def start(self) -> None:
        if not self.shared:
            prepare(self.emu, self.quota)
        self._completions.clear()
        self._cpu_first = None
        self._cpu0 = cpu_seconds()
        self._t0 = time.perf_counter()
        for change in () if self.shared else self.quota.changes:
            timer = threading.Timer(change.at_s, set_quota, (self.emu, change.rate, change.burst))
            timer.daemon = True
            timer.start()
            self._timers.append(timer)

    @property
    def started_at(self) -> float:
        """perf_counter() at the start of the run."""
        return self._t0

    def completed(self, at: float | None = None) -> None:
        """One call succeeded (now, or at perf_counter() value `at`). Thread-safe:
        list.append is atomic (two threads may both read the first success's CPU: a few
        microseconds apart)."""
        if self._cpu_first is None:
            self._cpu_first = cpu_seconds()
        self._completions.append((time.perf_counter() if at is None else at) - self._t0)

    def finish(
        self,
        *,
        succeeded: int,
        failed: int,
        client_attempts: int | None = None,
        client_throttles: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Measurement:
        wall = time.perf_counter() - self._t0
        end = cpu_seconds()
        cpu = end - self._cpu0
        sending = None if self._cpu_first is None else end - self._cpu_first
        for timer in self._timers:
            timer.cancel()
        extra = dict(extra or {})
        if self.shared:  # the record holds every caller's calls: only ours are ours
            attempts, throttled = client_attempts or 0, client_throttles or 0
        else:
            record = self.emu.record()
            attempts, throttled = operation_counts(record)
            # A second cross-check: the successes the service saw, against the client's.
            extra["emulator_accepted"] = int((record.get("operations") or {}).get(OPERATION, {}).get("200", 0))
        rate = self.quota.rate
        ideal = ideal_seconds(self.calls, rate=rate, burst=self.quota.burst, changes=self.quota.changes) if rate else 0.0
        return Measurement(
            contender=self.contender,
            calls=self.calls,
            quota=self.quota,
            wall_s=round(wall, 4),
            ideal_s=round(ideal, 4),
            efficiency=efficiency(wall, ideal),
            succeeded=succeeded,
            failed=failed,
            attempts=attempts,
            throttled=throttled,
            throttle_ratio=round(throttled / attempts, 5) if attempts else 0.0,
            client_attempts=client_attempts,
            client_throttles=client_throttles,
            cpu_s=round(cpu, 4),
            calls_per_cpu_s=round(succeeded / cpu, 1) if cpu > 0 else math.inf,
            calls_per_s=round(succeeded / wall, 2) if wall > 0 else math.inf,
            completions=sorted(round(t, 4) for t in self._completions),
            extra=extra,
            cpu_sending_s=None if sending is None else round(sending, 4),
            calls_per_cpu_s_sending=per_cpu_second(succeeded - 1, sending),
        )


def per_cpu_second(calls: int, cpu_s: float | None) -> float | None:
    """Calls per CPU-second, None when unknown (no CPU measured, or no call after the
    first success).

    >>> per_cpu_second(499, 2.0), per_cpu_second(0, 0.0), per_cpu_second(10, None)
    (249.5, None, None)
    """
    if cpu_s is None or calls <= 0:
        return None
    return round(calls / cpu_s, 1) if cpu_s > 0 else math.inf


def prepare(emu: Any, quota: Quota) -> None:
    """Set `quota`, wait until its bucket is full, and clear the record: the state every
    trial starts from."""
    set_quota(emu, quota.rate, quota.burst)
    if quota.rate:
        time.sleep(quota.burst / quota.rate)
    emu.reset_record()


def set_quota(emu: Any, rate: float | None, burst: int) -> None:
    """Throttle UpdatePackageVersion alone (rate None: not at all), so that whatever else
    a client reads (a state check, say) is not charged against the quota being measured.
    The emulator builds a fresh, full bucket when the limits change, and keeps the old
    one (at its level) when they do not."""
    limits = {"rate": rate, "burst": burst} if rate else {"rate": None}
    emu.configure(operations={OPERATION: limits})


def seed_versions(emu: Any, prefix: str, calls: int) -> list[str]:
    """`calls` fresh DRAFT versions of the bench package named `<prefix>-00001`…, so
    that no two runs touch the same version."""
    names = [f"{prefix}-{i:05d}" for i in range(1, calls + 1)]
    emu.seed((PACKAGE, name) for name in names)
    return names


# ---------------------------------------------------------------------------- fleetrel


class _Completions:
    """An engine listener that timestamps each success on the client's clock."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial

    def on_event(self, record: Record) -> None:
        if record.event == Event.STEP_SUCCEEDED:
            self.trial.completed()


async def run_fleetrel(
    emu: Any,
    versions: Sequence[str],
    *,
    quota: Quota,
    ceiling: float | None = None,
    told_burst: int | None = None,
    concurrency: int = 16,
    journal_dir: Path,
    contender: str = "fleetrel",
    shared: bool = False,
) -> Measurement:
    """fleetrel's engine, through its Python API with the journal on, as one contender.

    `ceiling` and `told_burst` are the rate and burst fleetrel is told (default: the
    true quota's); `shared`: see `Trial`.
    """
    from fleetrel import RunOptions, run
    from fleetrel.plan import ReleasePlan

    rate = ceiling if ceiling is not None else quota.rate
    # The baselines are handed credentials; without these fleetrel's credential chain
    # would probe the instance metadata service inside the timed window (~0.1 s).
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    # Against an unthrottled emulator there is no true burst to tell: let the first
    # wave fill every slot, as the raw loop it is compared with does.
    burst = told_burst or (quota.burst if quota.rate is not None else concurrency)
    plan = ReleasePlan(
        plan=f"bench-{contender}",
        limits={"rate": rate, "burst": burst, "concurrency": concurrency},
        versions=[{"package": PACKAGE, "versions": list(versions), "action": "PUBLISH"}],
    )
    journal_path = journal_dir / f"{contender}-{os.getpid()}-{int(time.time() * 1000)}.journal.jsonl"
    trial = Trial(emu, contender=contender, calls=len(versions), quota=quota, shared=shared)
    listener = _Completions(trial)
    trial.start()
    result = await run(plan, Where(journal_path=journal_path, endpoint_url=emu.url),
                       options=RunOptions(rate=rate, burst=burst, concurrency=concurrency), listeners=[listener])
    measurement = trial.finish(
        succeeded=result.succeeded,
        failed=len(versions) - result.succeeded,
        client_attempts=result.attempts,
        client_throttles=result.throttles,
        extra={"skipped": result.skipped, "engine_failed": result.failed, "engine_elapsed_s": result.elapsed},
    )
    return measurement


def measure(
    *,
    rate: float = 10.0,
    burst: int = 10,
    steps: int = 500,
    latency_ms: float = 50.0,
    ceiling: float | None = None,
    concurrency: int = 16,
) -> dict[str, Any]:
    """Start an emulator with this quota, publish `steps` fresh drafts through fleetrel's
    engine (journal on, in a temporary directory) and return the figures.

        >>> measure(rate=10, burst=10, steps=200)["failed"]     # doctest: +SKIP
        0

    `ceiling` is the rate fleetrel is told when the quota is not known (default: the
    true `rate`).
    """
    from fleetrel.emulator import start_emulator

    quota = Quota(rate=rate, burst=burst)
    with start_emulator(latency_ms=latency_ms) as emu, tempfile.TemporaryDirectory(prefix="fleetrel-bench-") as tmp:
        versions = seed_versions(emu, "fleetrel", steps)
        measurement = asyncio.run(
            run_fleetrel(emu, versions, quota=quota, ceiling=ceiling, concurrency=concurrency, journal_dir=Path(tmp))
        )
    return measurement.to_dict()

