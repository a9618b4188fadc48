"""Runs that share the quota: several processes of one contender started together, and a
steady foreign caller beside them.

    m = run_together(emu, scenario, "fleetrel", repeat=0, journal_dir=tmp)
    m.efficiency, m.throttle_ratio, m.extra["fairness"]

Each run is a process of its own (`spawn`), as two operators' runs or a CI job beside a
run would be: its own interpreter, event loop or thread pool, and client. The processes
import what they need first, then wait at a barrier, so their timed windows start
together; with `stagger=S`, run k starts k × S seconds after the barrier (two operators
never press Enter at the same instant, and fairness depends on that gap). The foreign
caller (`foreign_rate` calls/s) is a process too: it sends UpdatePackageVersion on its
own drafts at a steady pace, whatever the answer, from before the runs start until they
all end.

The combined measurement: wall = from the first run's start to the last run's end (the
later finisher's wall when they start together), E over the ideal time of every
run's calls on the quota left by the foreign caller (`Scenario.ideal_s`), θ = every
throttle the emulator answered over every attempt it received, the foreign caller's
included; `extra["walls"]` and `extra["fairness"]` (earliest wall / latest) per run.
"""
from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.scenarios import Scenario
from fleetrel.bench import PACKAGE, Measurement, efficiency, operation_counts, per_cpu_second, prepare, seed_versions

START_TIMEOUT_S = 120.0  # for the processes to import and build their clients


def _run_one(index: int, url: str, name: str, versions: Sequence[str], quota: Any, kwargs: dict[str, Any],
             barrier: Any, results: Any, delay: float = 0.0) -> None:
    """One process: build the contender's arguments, wait for the others, then `delay`
    seconds, run. Puts (index, measurement, start) on `results`, start the run's
    perf_counter() (CLOCK_MONOTONIC: one clock for every process on the machine)."""
    from benchmarks.contenders import CONTENDERS
    from fleetrel.emulator import Emulator

    emu = Emulator(url)
    barrier.wait(START_TIMEOUT_S)
    if delay > 0:
        time.sleep(delay)
    started = time.perf_counter()
    try:
        results.put((index, CONTENDERS[name](emu, versions, quota, shared=True, **kwargs), started))
    except BaseException as exc:  # the parent reports it with the others' figures
        results.put((index, exc, started))
        raise


def _foreign(url: str, rate: float, versions: Sequence[str], ready: Any, stop: Any) -> None:
    """A steady, non-adaptive caller: one UpdatePackageVersion every 1/rate s, no retries."""
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "iot", region_name="us-east-1", endpoint_url=url, aws_access_key_id="foreign", aws_secret_access_key="foreign",
        config=Config(retries={"total_max_attempts": 1}),
    )
    ready.set()
    start, sent = time.perf_counter(), 0
    while not stop.is_set():
        version = versions[sent % len(versions)]
        try:  # a description edit is allowed in every state, so each call is a real change
            client.update_package_version(packageName=PACKAGE, versionName=version, description=f"foreign {sent}")
        except Exception:  # throttled or not, it keeps its pace: that is what it is here for
            pass
        sent += 1
        time.sleep(max(0.0, start + sent / rate - time.perf_counter()))


def run_together(emu: Any, scenario: Scenario, name: str, *, repeat: int, journal_dir: Path,
                 concurrency: int, deadline_s: float, stagger: float = 0.0) -> Measurement:
    """`scenario.runs` processes of contender `name`, beside the foreign caller if any;
    run k starts k × `stagger` seconds after the first."""
    quota = scenario.quota
    ctx = multiprocessing.get_context("spawn")
    kwargs: dict[str, Any] = {"concurrency": concurrency, "deadline_s": deadline_s}
    if name == "fleetrel":
        kwargs.update(ceiling=scenario.fleetrel_ceiling, told_burst=scenario.fleetrel_burst, journal_dir=journal_dir)
    runs = [seed_versions(emu, f"{scenario.key}-{name}-{repeat}-{i}", scenario.calls) for i in range(scenario.runs)]
    prepare(emu, quota)

    foreign = stop = None
    if scenario.foreign_rate:
        ready, stop = ctx.Event(), ctx.Event()
        drafts = seed_versions(emu, f"{scenario.key}-{name}-{repeat}-foreign", 20)
        foreign = ctx.Process(target=_foreign, args=(emu.url, scenario.foreign_rate, drafts, ready, stop), daemon=True)
        foreign.start()
        if not ready.wait(START_TIMEOUT_S):
            raise RuntimeError("the foreign caller did not start")
        time.sleep(1.0)  # a steady load: the run starts into it, not beside its first call
    barrier = ctx.Barrier(scenario.runs + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_run_one, daemon=True,
                         args=(k, emu.url, name, versions, quota, kwargs, barrier, results, k * stagger))
             for k, versions in enumerate(runs)]
    try:
        for proc in procs:
            proc.start()
        emu.reset_record()  # the runs wait at the barrier: every call they make counts from here
        barrier.wait(START_TIMEOUT_S)
        started = time.perf_counter()
        got = sorted((results.get(timeout=deadline_s + START_TIMEOUT_S + len(procs) * stagger) for _ in procs),
                     key=lambda r: r[0])
        wall = time.perf_counter() - started
    finally:
        if stop is not None:
            stop.set()
        for proc in [*procs, *([foreign] if foreign else [])]:
            proc.join(10.0)
            if proc.is_alive():
                proc.kill()
    errors = [o for _, o, _ in got if isinstance(o, BaseException)]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(procs)} {name} runs crashed: {errors[0]!r}")
    return combine(emu, scenario, name, [o for _, o, _ in got], wall, starts=[s for _, _, s in got])


def combine(emu: Any, scenario: Scenario, name: str, runs: Sequence[Measurement], wall: float,
            starts: Sequence[float] | None = None) -> Measurement:
    """One measurement for runs that shared the quota, the emulator's record for θ.
    `starts`: each run's start on one clock (perf_counter, seconds); the combined wall is
    then from the first start to the last end, else the longest run's wall."""
    attempts, throttled = operation_counts(emu.record())
    walls = [m.wall_s for m in runs]
    first = min(starts) if starts else 0.0
    offsets = [s - first for s in starts] if starts else [0.0] * len(walls)  # from the first run's start
    span = max(offset + w for offset, w in zip(offsets, walls))
    ideal = scenario.ideal_s()
    succeeded = sum(m.succeeded for m in runs)
    cpu = sum(m.cpu_s for m in runs)
    parts = [m.cpu_sending_s for m in runs]
    sending = None if None in parts else round(sum(p for p in parts if p is not None), 4)
    return Measurement(
        contender=name,
        calls=scenario.calls * scenario.runs,
        quota=scenario.quota,
        wall_s=round(span, 4),
        ideal_s=round(ideal, 4),
        efficiency=efficiency(span, ideal),
        succeeded=succeeded,
        failed=sum(m.failed for m in runs),
        attempts=attempts,
        throttled=throttled,
        throttle_ratio=round(throttled / attempts, 5) if attempts else 0.0,
        client_attempts=sum(m.client_attempts or 0 for m in runs) or None,
        client_throttles=sum(m.client_throttles or 0 for m in runs) or None,
        cpu_s=round(cpu, 4),
        calls_per_cpu_s=round(succeeded / cpu, 1) if cpu > 0 else float("inf"),
        calls_per_s=round(succeeded / span, 2) if span > 0 else float("inf"),
        completions=sorted(t + offset for m, offset in zip(runs, offsets) for t in m.completions),
        cpu_sending_s=sending,
        calls_per_cpu_s_sending=per_cpu_second(sum(m.succeeded - 1 for m in runs), sending),
        extra={
            "walls": walls,
            "fairness": round(min(walls) / max(walls), 4) if max(walls) > 0 else 1.0,
            "runs_client_throttled": [m.client_throttles for m in runs],
            "parent_wall_s": round(wall, 4),
            "started_apart_s": [round(offset, 4) for offset in offsets],
            "foreign_rate": scenario.foreign_rate,
        },
    )
