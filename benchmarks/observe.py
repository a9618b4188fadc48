"""What watching a run costs: CPU per call with metrics and the event stream, on and off.

    python benchmarks/observe.py                  # 5,000 steps x 5 rounds, ~1 min
    python benchmarks/observe.py --steps 20000 --rounds 3
    python benchmarks/observe.py --emulator --steps 3000 --rounds 7   # real clients, as benchmarks/run.py

Against a FakeIoT a call costs fleetrel ~0.33 ms of CPU, so a listener's few µs are a large
share; through real aiobotocore clients it costs ~2 ms, and metrics and events together
(~14 µs a call, measured alone below) are under 1 %, inside the end-to-end ratios' noise
(x0.98-x1.06 in two runs on a quiet machine, 2026-12-07).

The engine runs a plan against `fleetrel.testing.FakeIoT` on virtual time (no network,
no emulator: what is measured is fleetrel's own work per call, the journal included),
with no listener, with `RunMetrics` (scraped once at the end, as Prometheus would),
with `EventStream` to /dev/null, and with both. CPU is the process's (`time.process_time`:
every thread, so the stream's writer thread counts), per call; the configurations take
turns each round and the median is reported, with its ratio to "off".

Then each listener alone on a recorded run's records (no engine): CPU per record of
`on_event` (what the engine's path pays), and of the stream's writer thread, which a busy
machine's noise does not blur as it blurs the end-to-end ratios.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402
import yaml  # noqa: E402

from fleetrel import RunOptions, load_plan, run  # noqa: E402
from fleetrel.events import Record  # noqa: E402
from fleetrel.eventstream import EventStream  # noqa: E402
from fleetrel.metrics import RunMetrics  # noqa: E402
from fleetrel.testing import FakeIoT, run_virtual  # noqa: E402
from fleetrel.where import Where  # noqa: E402

CONFIGS = ("off", "metrics", "events", "metrics+events")


def one_run(plan_path: Path, steps: int, folder: Path, config: str, emulator=None) -> tuple[float, int]:
    """CPU of one run with `config`'s listeners: against a FakeIoT on virtual time, or
    (`emulator`) through real aiobotocore clients over HTTP to the emulator's own process,
    whose CPU is not this process's."""
    plan = load_plan(plan_path)
    listeners: list = []
    metrics = stream = None
    if "metrics" in config:
        metrics = RunMetrics(plan=plan.plan)
        listeners.append(metrics)
    if "events" in config:
        stream = EventStream(open("/dev/null", "wb", buffering=0), close_out=True, buffer=10 * steps)
        listeners.append(stream)
    journal = folder / f"{config}-{time.monotonic_ns()}.journal.jsonl"
    if emulator is not None:
        emulator.reset()
        emulator.seed([("fw", str(i)) for i in range(steps)])
        started = time.process_time()
        result = anyio.run(lambda: run(plan, Where(journal_path=journal, endpoint_url=emulator.url),
                                       listeners=listeners, options=RunOptions(new_run=True)))
    else:
        iot = FakeIoT({f"fw/{i}": "DRAFT" for i in range(steps)})
        started = time.process_time()
        result = run_virtual(lambda: run(plan, Where(journal_path=journal), client=iot, listeners=listeners,
                                         options=RunOptions(new_run=True)))
    if stream is not None:
        stream.close(wait=600)  # every line written: its CPU is the run's
        assert stream.dropped == 0
    if metrics is not None:
        list(metrics.collect())
    cpu = time.process_time() - started
    assert result.succeeded == steps
    return cpu, result.attempts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--emulator", action="store_true",
                        help="through real aiobotocore clients to the emulator (as benchmarks/run.py), not a FakeIoT")
    args = parser.parse_args()
    emulator = None
    if args.emulator:
        from fleetrel.emulator.process import start_emulator

        emulator = start_emulator()  # no throttling: what is measured is the client's CPU per call
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plan_path = folder / "plan.yaml"
        plan_path.write_text(yaml.safe_dump({
            "plan": "observe-bench", "limits": {"rate": 1_000_000, "burst": 1000, "concurrency": 16, "adaptive": False},
            "versions": [{"package": "fw", "versions": [str(i) for i in range(args.steps)], "action": "PUBLISH"}]}))
        one_run(plan_path, min(args.steps, 200), folder, "metrics+events", emulator)  # warm-up: imports, caches
        per_call: dict[str, list[float]] = {c: [] for c in CONFIGS}
        for _ in range(args.rounds):
            for config in CONFIGS:
                cpu, calls = one_run(plan_path, args.steps, folder, config, emulator)
                per_call[config].append(cpu / calls * 1e6)
        records = recorded(plan_path, args.steps, folder)
    off = statistics.median(per_call["off"])
    if emulator is not None:
        emulator.stop()
    where = "aiobotocore to the emulator" if args.emulator else "FakeIoT on virtual time"
    print(f"{args.steps} steps x {args.rounds} rounds, CPU per call (median), {where}")
    for config in CONFIGS:
        median = statistics.median(per_call[config])
        print(f"  {config:15s} {median:7.1f} us/call   x{median / off:.3f}")
    per_call_records = len(records) / args.steps
    print(f"each listener alone, {len(records)} records ({per_call_records:.1f} a call), CPU per record (median of 5)")
    for name, cost in listener_costs(records).items():
        print(f"  {name:28s} {cost:6.2f} us/record  {cost * per_call_records:6.2f} us/call")


def recorded(plan_path: Path, steps: int, folder: Path) -> list[Record]:
    """The records of one run, as the engine hands them to listeners."""
    class Keep:
        def __init__(self) -> None:
            self.records: list[Record] = []

        def on_event(self, record: Record) -> None:
            self.records.append(record)

    keep = Keep()
    plan = load_plan(plan_path)
    iot = FakeIoT({f"fw/{i}": "DRAFT" for i in range(steps)})
    run_virtual(lambda: run(plan, Where(journal_path=folder / "recorded.journal.jsonl"), client=iot,
                            listeners=[keep], options=RunOptions(new_run=True)))
    return keep.records


def listener_costs(records: list[Record]) -> dict[str, float]:
    def metrics_on_event() -> float:
        metrics = RunMetrics()
        started = time.process_time()
        for record in records:
            metrics.on_event(record)
        return time.process_time() - started

    def stream_on_event() -> float:
        stream = EventStream(open("/dev/null", "wb", buffering=0), close_out=True, buffer=2 * len(records),
                             flush_interval=3600)  # the writer asleep: on_event alone
        started = time.process_time()
        for record in records:
            stream.on_event(record)
        spent = time.process_time() - started
        stream._buffer.clear()
        stream.close()
        return spent

    def stream_writer() -> float:
        stream = EventStream(open("/dev/null", "wb", buffering=0), close_out=True)
        stream.close()
        started = time.process_time()
        for record in records:
            stream._lines(0.0, record)
        return time.process_time() - started

    runs = {"metrics on_event": metrics_on_event, "events on_event": stream_on_event,
            "events writer thread": stream_writer}
    return {name: statistics.median(measure() for _ in range(5)) / len(records) * 1e6
            for name, measure in runs.items()}


if __name__ == "__main__":
    main()
