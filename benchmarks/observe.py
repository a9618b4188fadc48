"""What watching a run costs: CPU per call with metrics and the event stream, on and off.

    python benchmarks/observe.py                  # 5,000 steps x 5 rounds, ~1 min
    python benchmarks/observe.py --steps 20000 --rounds 3

The engine runs a plan against `fleetrel.testing.FakeIoT` on virtual time (no network,
no emulator: what is measured is fleetrel's own work per call, the journal included),
with no listener, with `RunMetrics` (scraped once at the end, as Prometheus would),
with `EventStream` to /dev/null, and with both. CPU is the process's (`time.process_time`:
every thread, so the stream's writer thread counts), per call; the configurations take
turns each round and the median is reported, with its ratio to "off".
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

import yaml  # noqa: E402

from fleetrel import RunOptions, load_plan, run  # noqa: E402
from fleetrel.eventstream import EventStream  # noqa: E402
from fleetrel.metrics import RunMetrics  # noqa: E402
from fleetrel.testing import FakeIoT, run_virtual  # noqa: E402
from fleetrel.where import Where  # noqa: E402

CONFIGS = ("off", "metrics", "events", "metrics+events")


def one_run(plan_path: Path, steps: int, folder: Path, config: str) -> tuple[float, int]:
    plan = load_plan(plan_path)
    iot = FakeIoT({f"fw/{i}": "DRAFT" for i in range(steps)})
    listeners: list = []
    metrics = stream = None
    if "metrics" in config:
        metrics = RunMetrics(plan=plan.plan)
        listeners.append(metrics)
    if "events" in config:
        stream = EventStream(open("/dev/null", "wb", buffering=0), close_out=True, buffer=10 * steps)
        listeners.append(stream)
    journal = folder / f"{config}-{time.monotonic_ns()}.journal.jsonl"
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plan_path = folder / "plan.yaml"
        plan_path.write_text(yaml.safe_dump({
            "plan": "observe-bench", "limits": {"rate": 1_000_000, "burst": 1000, "concurrency": 16, "adaptive": False},
            "versions": [{"package": "fw", "versions": [str(i) for i in range(args.steps)], "action": "PUBLISH"}]}))
        one_run(plan_path, min(args.steps, 200), folder, "metrics+events")  # warm-up: imports, caches
        per_call: dict[str, list[float]] = {c: [] for c in CONFIGS}
        for _ in range(args.rounds):
            for config in CONFIGS:
                cpu, calls = one_run(plan_path, args.steps, folder, config)
                per_call[config].append(cpu / calls * 1e6)
    off = statistics.median(per_call["off"])
    print(f"{args.steps} steps x {args.rounds} rounds, CPU per call (median), FakeIoT on virtual time")
    for config in CONFIGS:
        median = statistics.median(per_call[config])
        print(f"  {config:15s} {median:7.1f} us/call   x{median / off:.3f}")


if __name__ == "__main__":
    main()
