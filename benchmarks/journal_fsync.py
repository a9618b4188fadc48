"""Cost of the journal per step: fsync on every terminal record vs batched (the default).

    python benchmarks/journal_fsync.py [--steps 2000]

Each step writes two records (step_started, step_succeeded), as a run does.
"""
import argparse
import tempfile
import time
from pathlib import Path

from fleetrel.events import Event
from fleetrel.journal import Journal


def per_step_cost(fsync_interval: float, steps: int) -> tuple[float, float]:
    """(wall µs, CPU µs) per step."""
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        journal = Journal.open(Path(tmp) / "j.jsonl")
        wall, cpu = time.perf_counter(), time.process_time()
        synced = wall
        for i in range(steps):
            journal.write(Event.STEP_STARTED, step=f"pkg/{i}", client_token="x" * 36, attempt=1)
            journal.write(Event.STEP_SUCCEEDED, step=f"pkg/{i}", client_token="x" * 36, attempt=1)
            now = time.perf_counter()
            if now - synced >= fsync_interval:  # as the engine's timer does
                journal.sync()
                synced = now
        journal.close()
        return (time.perf_counter() - wall) / steps * 1e6, (time.process_time() - cpu) / steps * 1e6


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    for interval, label in ((0.0, "fsync every terminal record"), (0.5, "fsync batched (0.5 s, default)")):
        wall, cpu = per_step_cost(interval, args.steps)
        print(f"{label:32s} wall {wall:7.0f} µs/step   cpu {cpu:6.0f} µs/step")
