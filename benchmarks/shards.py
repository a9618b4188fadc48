"""Beyond one machine (issue 13): one process against Ray actors, on this machine.

    python benchmarks/shards.py                     # 40 targets x 100 steps, 10/s burst 10 each
    python benchmarks/shards.py --quick             # 8 targets x 40 steps
    python benchmarks/shards.py --json out.json

Targets are spread over several emulator processes (one moto process serves about 400-500
calls a second), each keeping a bucket per (account, region), like AWS. Contenders, the
same plan each (fresh versions each time):
- **one process**: `fleetrel run`'s engine, every target in one process;
- **Ray, K actors**: `fleetrel run --ray --actors K`, a local Ray started once for both
  (its start-up is reported apart), the driver journalling every actor's records.

Figures: aggregate calls/s (UpdatePackageVersion attempts / sending time), E = sending
time / ideal (the ideal: (steps - burst) / rate, every target in parallel), and client CPU
per call: the CPU time of every process on the client side (this one and, for Ray, its
descendants: the actors, raylet, GCS, ...; not the emulators) while sending, over the
attempts (with set-up too: imports, clients, roles assumed, actors started).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleetrel.where import Where
from fleetrel import run  # noqa: E402
from fleetrel.emulator import start_emulator  # noqa: E402
from fleetrel.events import Event, Record  # noqa: E402
from fleetrel.plan import ReleasePlan  # noqa: E402

PACKAGE = "bench-fw"
REGIONS = ["us-east-1", "eu-west-1"]
RATE, BURST, CONCURRENCY, LATENCY_MS = 10.0, 10, 8, 20.0
TARGETS_PER_EMULATOR = 20  # 200 calls/s each at most: well inside one moto process
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_of_tree(root: int, exclude: set[int]) -> float:
    """CPU seconds (user + system) of `root` and its descendants, less `exclude` and theirs."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in exclude:
            continue
        total += times.get(pid, 0.0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total


class Meter:
    """Client CPU while sending, from the session's first record (clients built, roles
    assumed, actors up) to its last (the Ray actors are still up then), and in all."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.cpu_start = self.cpu_sending_start = cpu_of_tree(os.getpid(), exclude)
        self.cpu = self.cpu_total = self.emulator = self.emulator_start = self.own = self.own_start = 0.0

    def on_event(self, record: Record) -> None:
        if record.event in (Event.RUN_STARTED, Event.RUN_RESUMED):
            self.cpu_sending_start = cpu_of_tree(os.getpid(), self.exclude)
            self.own_start = sum(os.times()[:2])
            self.emulator_start = self.emulator_cpu()
        elif record.event in (Event.RUN_FINISHED, Event.RUN_INTERRUPTED):
            now = cpu_of_tree(os.getpid(), self.exclude)
            self.cpu, self.cpu_total = now - self.cpu_sending_start, now - self.cpu_start
            self.own = sum(os.times()[:2]) - self.own_start  # this process alone: the Ray driver
            self.emulator = self.emulator_cpu() - self.emulator_start

    def emulator_cpu(self) -> float:
        """The service's side: the emulator processes' CPU (where the rest of the machine goes)."""
        return sum(cpu_of_tree(pid, set()) for pid in self.exclude)


def account_of(target: int) -> str:
    return f"{100000000000 + target // len(REGIONS):012d}"


def plan_for(urls: list[str], versions: list[str], targets: int, name: str, per_emulator: int) -> ReleasePlan:
    specs = []
    for i in range(targets):
        account = account_of(i)
        specs.append({"name": f"t{i:03d}", "region": REGIONS[i % len(REGIONS)], "account": account,
                      "role_arn": f"arn:aws:iam::{account}:role/fleet-release",
                      "endpoint_url": urls[i // per_emulator]})
    return ReleasePlan.model_validate({
        "plan": name, "limits": {"rate": RATE, "burst": BURST, "concurrency": CONCURRENCY}, "targets": specs,
        "versions": [{"package": PACKAGE, "versions": versions, "action": "PUBLISH"}]})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 targets x 40 steps")
    parser.add_argument("--targets", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--actors", default="2,4", help="Ray actor counts to measure, comma-separated")
    parser.add_argument("--per-emulator", type=int, default=TARGETS_PER_EMULATOR,
                        help="targets per emulator process")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    targets = args.targets or (8 if args.quick else 40)
    steps = args.steps or (40 if args.quick else 100)
    ideal = (steps - BURST) / RATE
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    from fleetrel.raydriver import import_ray

    import_ray(local=True)  # before anything imports Ray: loopback, no usage stats
    from fleetrel.raydriver import ray_cluster, run_on_ray

    per_emulator = args.per_emulator
    emulators = (targets + per_emulator - 1) // per_emulator
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    print(f"{targets} targets x {steps} steps, {RATE:g}/s burst {BURST} each ({targets * RATE:g} calls/s in all), "
          f"{LATENCY_MS:g} ms latency, {emulators} emulator process(es); ideal {ideal:.1f} s; "
          f"load {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        from contextlib import ExitStack

        with ExitStack() as stack:
            emus = [stack.enter_context(start_emulator(
                rate=RATE, burst=BURST, latency_ms=LATENCY_MS, regions=REGIONS,  # seeded in these accounts
                accounts=sorted({account_of(i) for i in range(j * per_emulator,
                                                               min(targets, (j + 1) * per_emulator))})))
                for j in range(emulators)]
            exclude = {emu.process.pid for emu in emus if emu.process is not None}
            round_no = 0

            def measure(label: str, runner) -> None:
                nonlocal round_no
                round_no += 1
                versions = [f"{round_no}.0.{i}" for i in range(steps)]
                for emu in emus:
                    emu.seed([(PACKAGE, v) for v in versions])
                plan = plan_for([e.url for e in emus], versions, targets, f"bench-shards-{round_no}", per_emulator)
                meter = Meter(exclude)
                result = asyncio.run(runner(plan, Path(tmp) / f"{round_no}.journal.jsonl", meter))
                throttled = sum(e.record()["throttled"].get("UpdatePackageVersion", 0) for e in emus)
                row = {"contender": label, "sending_s": round(result.elapsed, 2), "E": round(result.elapsed / ideal, 3),
                       "calls": result.attempts, "calls_per_s": round(result.attempts / result.elapsed, 1),
                       "cpu_s": round(meter.cpu, 2), "cpu_ms_per_call": round(1000 * meter.cpu / result.attempts, 3),
                       "cpu_total_s": round(meter.cpu_total, 2), "emulator_cpu_s": round(meter.emulator, 2),
                       "driver_cpu_s": round(meter.own, 2), "driver_ms_per_call": round(1000 * meter.own / result.attempts, 3),
                       "throttled": throttled, "succeeded": result.succeeded, "status": str(result.status)}
                rows.append(row)
                print(f"{label:18s} sending {row['sending_s']:6.1f} s  E {row['E']:.3f}  {row['calls_per_s']:7.1f} "
                      f"calls/s  client CPU sending {row['cpu_s']:5.1f} s = {row['cpu_ms_per_call']:.2f} ms/call "
                      f"(this process {row['driver_ms_per_call']:.2f}; with set-up {row['cpu_total_s']:.1f} s), "
                      f"emulators {row['emulator_cpu_s']:.1f} s  "
                      f"θ {throttled / max(1, result.attempts):.1%}  ok {result.succeeded}/{targets * steps}", flush=True)
                for emu in emus:
                    emu.reset()

            measure("one process", lambda plan, journal, meter: run(plan, Where(journal_path=journal), listeners=[meter]))
            started = time.monotonic()
            with ray_cluster(None):
                ray_start = time.monotonic() - started
                print(f"local Ray started in {ray_start:.1f} s", flush=True)
                for actors in [int(a) for a in args.actors.split(",") if a]:
                    measure(f"Ray, {actors} actors", lambda plan, journal, meter, k=actors: run_on_ray(
                        plan, actors=k, journal_path=journal, listeners=[meter]))
    load_after = os.getloadavg()
    print(f"load after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "targets": targets, "steps": steps, "rate": RATE, "ideal_s": ideal, "cpus": os.cpu_count(),
            "load_before": load_before, "load_after": load_after, "ray_start_s": round(ray_start, 2), "rows": rows},
            indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
