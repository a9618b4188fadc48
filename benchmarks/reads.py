"""How long `fleetrel plan` and `fleetrel verify` take on a big clean-up (issue 14, item 5).

    python benchmarks/reads.py                       # 10,000 DEPRECATE steps, 100 packages
    python benchmarks/reads.py --steps 2000 --json out.json

An emulator (its own process) throttles every read operation at 10 calls/s, burst 10,
each operation with its own bucket as AWS does, and adds 50 ms to every call. It is
seeded with `--steps` PUBLISHED versions, 100 per package; the plan deprecates them all
at `rate: 10, burst: 10`. Measured, each as a process of its own as a user runs it:

- preview: `fleetrel plan PLAN --json` (exit 0: every step applies);
- verify: `fleetrel verify PLAN --json`, after the versions are set DEPRECATED behind
  its back, as a finished run leaves them (exit 0: nothing differs);
- the way both read before: one GetPackageVersion a version through one bucket at the
  plan's rate, timed on `--baseline-steps` versions in the same run and scaled to
  `--steps` (at 10 calls/s it would take `steps / 10` seconds to read them all).

The emulator's record gives the calls of each operation. Target: preview and verify of
10,000 steps in ≤ 30 s each.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import yaml

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `fleetrel` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleetrel.aws import iot_client  # noqa: E402
from fleetrel.emulator import start_emulator  # noqa: E402
from fleetrel.plan import Step  # noqa: E402
from fleetrel.reads import ReadBuckets, bounded, read_version  # noqa: E402

PER_PACKAGE = 100
RATE, BURST, LATENCY_MS, CONCURRENCY = 10.0, 10, 50.0, 16


def versions(steps: int) -> list[tuple[str, str]]:
    return [(f"clean-up-{i // PER_PACKAGE:04d}", f"1.{i % PER_PACKAGE}") for i in range(steps)]


def plan_doc(steps: int) -> dict:
    packages: dict[str, list[str]] = {}
    for package, version in versions(steps):
        packages.setdefault(package, []).append(version)
    return {"plan": f"clean-up-{steps}", "limits": {"rate": RATE, "burst": BURST, "concurrency": CONCURRENCY},
            "versions": [{"package": p, "versions": vs, "action": "DEPRECATE"} for p, vs in packages.items()]}


def timed_command(args: list[str]) -> tuple[float, int, dict]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fleetrel", *args], capture_output=True, text=True)
    wall = time.perf_counter() - started
    try:
        doc = json.loads(done.stdout)
    except json.JSONDecodeError:
        doc = {"stderr": done.stderr[-2000:]}
    return wall, done.returncode, doc


async def one_by_one(url: str, steps: int) -> float:
    """The way before: GetPackageVersion per version, one bucket at the plan's rate."""
    chosen = [Step(package, version, action="DEPRECATE") for package, version in versions(steps)]
    limiter = ReadBuckets(rate=RATE, burst=BURST)["get_package_version"]
    async with iot_client(endpoint_url=url, region="us-east-1", concurrency=CONCURRENCY) as client:
        started = time.perf_counter()

        async def read(step: Step) -> None:
            await read_version(client, limiter, step)

        await bounded(chosen, CONCURRENCY, read)
        return time.perf_counter() - started


def calls(record: dict) -> dict[str, dict[str, int]]:
    """Calls per operation as the emulator counted them, and how many it throttled."""
    return {op: {"calls": sum(codes.values()), "throttled": record["throttled"].get(op, 0)}
            for op, codes in record["operations"].items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--baseline-steps", type=int, default=200)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")  # the emulator takes any key
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    out: dict = {"steps": args.steps, "rate": RATE, "burst": BURST, "latency_ms": LATENCY_MS}
    with tempfile.TemporaryDirectory() as tmp, \
            start_emulator(rate=RATE, burst=BURST, latency_ms=LATENCY_MS) as emulator:
        seeds = [{"package": p, "version": v, "status": "PUBLISHED"} for p, v in versions(args.steps)]
        emulator.seed(seeds)
        plan = Path(tmp) / "clean-up.yaml"
        plan.write_text(yaml.safe_dump(plan_doc(args.steps), sort_keys=False))
        endpoint = ["--endpoint-url", emulator.url]

        emulator.reset_record()
        wall, code, doc = timed_command(["plan", str(plan), "--json", *endpoint])
        applies = doc.get("totals", {}).get("apply")
        out["preview"] = {"wall_s": round(wall, 2), "exit": code, "apply": applies, "calls": calls(emulator.record())}
        print(f"preview: {wall:.1f} s, exit {code}, {applies} to apply; calls {out['preview']['calls']}")

        emulator.seed([dict(s, status="DEPRECATED") for s in seeds])  # as the finished run leaves them
        emulator.reset_record()
        wall, code, doc = timed_command(["verify", str(plan), "--json", *endpoint])
        out["verify"] = {"wall_s": round(wall, 2), "exit": code, "matches": doc.get("matches"),
                         "calls": calls(emulator.record())}
        print(f"verify:  {wall:.1f} s, exit {code}, matches {doc.get('matches')}; calls {out['verify']['calls']}")

        emulator.reset_record()
        before = anyio.run(one_by_one, emulator.url, args.baseline_steps)
        scaled = before * args.steps / args.baseline_steps
        out["one_by_one"] = {"steps": args.baseline_steps, "wall_s": round(before, 2),
                             f"scaled_to_{args.steps}_s": round(scaled, 1), "calls": calls(emulator.record())}
        print(f"before (one GetPackageVersion a version): {args.baseline_steps} in {before:.1f} s "
              f"-> {args.steps} in ~{scaled:.0f} s ({scaled / 60:.1f} min)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if out["preview"]["exit"] == 0 and out["verify"]["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
