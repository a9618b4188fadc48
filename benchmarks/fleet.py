"""What the fleet's device counts cost a preview: 100,000 things, 200 versions of 20 packages.

    python benchmarks/fleet.py                      # 100,000 things, 20 packages x 10 versions
    python benchmarks/fleet.py --things 5000 --packages 4 --versions 5 --no-naive   # a quick look
    python benchmarks/fleet.py --json out.json

An emulator (its own process) holds the catalog in two accounts of us-east-1: 123456789012
(the default credentials') and 111111111111 (through its STS, a role per target, as a plan
with `targets:` reaches it). In each it seeds `--packages` x `--versions` PUBLISHED
versions and a fleet of `--things` things reporting them in their `$package` shadow
(`Emulator.seed_fleet`: skewed as fleets are, the oldest fifth of each package's
versions on no device), fleet indexing on. Catalog reads are throttled at 10 calls/s
(burst 10) per operation with 50 ms latency, as in `benchmarks/reads.py`; the fleet's
reads at the emulator's fleet-indexing quotas (GetBucketsAggregation and GetStatistics
5/s; `fleetrel.emulator.settings.FLEET_RATES`).

Measured, each `fleetrel plan PLAN --json` a process of its own as a user runs it, with
the emulator's record (reset before each) counting the calls per target:

- **listed**: a plan that DEPRECATEs every version, listed: the preview with device counts
  (one GetBucketsAggregation per target and package), and the same preview with
  `--no-fleet-check` (no counts) as the baseline in the same run;
- **selector**: `select: {package: P, status: PUBLISHED, devices: {max: 0}}` per package,
  DEPRECATE: the versions no device runs, expanded and previewed;
- each with one target and with two (the two accounts): the calls per target stay one
  per package whatever the targets;
- **naive** (`--no-naive` to skip): counting the way a script would without an
  aggregation, one GetStatistics per version (`shadow.name.$package.reported.P.version:V`),
  through a bucket at the quota (5/s), in one target.

The counts the preview shows are checked against the emulator's truth (`Emulator.fleet()`).
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
from typing import Any

import yaml

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `fleetrel` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleetrel.emulator import start_emulator  # noqa: E402

REGION = "us-east-1"
ACCOUNTS = {"main": "123456789012", "second": "111111111111"}  # the first is the default credentials'
RATE, BURST, LATENCY_MS, CONCURRENCY = 10.0, 10, 50.0, 16
FLEET_OPERATIONS = ("GetBucketsAggregation", "GetStatistics", "SearchIndex")


def catalog(packages: int, versions: int) -> dict[str, list[str]]:
    """{package: [version, ...]}: `packages` packages of `versions` versions each."""
    return {f"fleet-pkg-{p:02d}": [f"{major}.0.0" for major in range(1, versions + 1)] for p in range(packages)}


def targets_doc(count: int) -> list[dict[str, str]]:
    """The plan's targets: the default credentials' account, then one reached through a role."""
    out = []
    for name, account in list(ACCOUNTS.items())[:count]:
        target = {"name": name, "region": REGION, "account": account}
        if name != "main":
            target["role_arn"] = f"arn:aws:iam::{account}:role/fleet-release"
        out.append(target)
    return out


def plan_doc(versions: dict[str, list[str]], targets: int, *, selector: bool) -> dict[str, Any]:
    if selector:
        entries = [{"select": {"package": p, "status": "PUBLISHED", "devices": {"max": 0}}, "action": "DEPRECATE"}
                   for p in versions]
    else:
        entries = [{"package": p, "versions": vs, "action": "DEPRECATE"} for p, vs in versions.items()]
    return {"plan": f"fleet-bench-{'selector' if selector else 'listed'}-{targets}",
            "limits": {"rate": RATE, "burst": BURST, "concurrency": CONCURRENCY},
            "targets": targets_doc(targets), "versions": entries}


def place_calls(record: dict[str, Any], account: str) -> dict[str, int]:
    """Calls per operation the emulator received in `account` (us-east-1), throttled ones included."""
    operations = record.get("accounts", {}).get(account, {}).get(REGION, {}).get("operations", {})
    return {op: sum(codes.values()) for op, codes in sorted(operations.items())}


def preview(emulator: Any, plan: Path, targets: int, *flags: str) -> dict[str, Any]:
    """`fleetrel plan PLAN --json [flags]` in its own process: wall time, exit, the
    steps' device counts and the calls per target."""
    emulator.reset_record()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fleetrel", "plan", str(plan), "--json",
                           "--endpoint-url", emulator.url, *flags], capture_output=True, text=True)
    wall = time.perf_counter() - started
    try:
        doc = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"fleetrel plan {plan} {' '.join(flags)}: exit {done.returncode}\n{done.stderr[-3000:]}")
    record = emulator.record()
    calls = {name: place_calls(record, account) for name, account in list(ACCOUNTS.items())[:targets]}
    return {"wall_s": round(wall, 2), "exit": done.returncode, "steps": len(doc.get("steps", [])),
            "apply": doc.get("totals", {}).get("apply"), "calls": calls,
            "aggregations_per_target": {name: ops.get("GetBucketsAggregation", 0) for name, ops in calls.items()},
            "devices": {step["key"]: step.get("devices") for step in doc.get("steps", [])}}


def check_counts(result: dict[str, Any], truth: dict[str, dict[str, dict[str, int]]]) -> None:
    """Every count the preview shows is the emulator's (a version no thing reports: 0)."""
    for key, devices in result["devices"].items():
        target, step = key.split(":", 1) if ":" in key else ("main", key)  # target:package/version
        package, version = step.split("/", 1)
        expected = truth[target].get(package, {}).get(version, 0)
        if devices != expected:
            raise RuntimeError(f"{key}: the preview shows {devices} devices, the emulator holds {expected}")


async def naive_counts(url: str, versions: dict[str, list[str]], rate: float) -> tuple[float, dict[str, dict[str, int]]]:
    """One GetStatistics per version, through one bucket at `rate` (the fleet quota)."""
    from fleetrel.aws import iot_client
    from fleetrel.fleet import INDEX, version_field
    from fleetrel.reads import ReadBuckets, ReadError, bounded, read

    limiter = ReadBuckets(rate=rate, burst=1)["get_statistics"]
    found: dict[str, dict[str, int]] = {}
    pairs = [(p, v) for p, vs in versions.items() for v in vs]
    async with iot_client(endpoint_url=url, region=REGION, concurrency=CONCURRENCY) as client:
        started = time.perf_counter()

        async def count(pair: tuple[str, str]) -> None:
            package, version = pair
            query = f"{version_field(package).replace('-', chr(92) + '-')}:{version}"
            answer = await read(client, limiter, "get_statistics", indexName=INDEX, queryString=query)
            if isinstance(answer, ReadError):
                raise RuntimeError(f"GetStatistics {query}: {answer.code}: {answer.message}")
            found.setdefault(package, {})[version] = answer["statistics"]["count"]

        await bounded(pairs, CONCURRENCY, count)
        return time.perf_counter() - started, found


def measure(things: int, packages: int, versions: int, *, seed: int = 1, naive: bool = True,
            target_counts: tuple[int, ...] = (1, 2), selectors: tuple[bool, ...] = (False, True),
            log: Any = print) -> dict[str, Any]:
    """The whole benchmark; returns its figures (see the module's docstring)."""
    import anyio

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")  # the emulator takes any key
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    chosen = catalog(packages, versions)
    out: dict[str, Any] = {"things": things, "packages": packages, "versions": packages * versions,
                           "catalog_rate": RATE, "catalog_burst": BURST, "latency_ms": LATENCY_MS,
                           "load_at_start": round(os.getloadavg()[0], 2), "runs": []}
    with tempfile.TemporaryDirectory() as tmp, \
            start_emulator(rate=RATE, burst=BURST, latency_ms=LATENCY_MS, accounts=list(ACCOUNTS.values()),
                           regions=[REGION]) as emulator:
        quota = emulator.settings()
        started = time.perf_counter()
        emulator.seed([{"package": p, "version": v, "status": "PUBLISHED"} for p, vs in chosen.items() for v in vs])
        emulator.seed_fleet(things, seed)
        out["seed_s"] = round(time.perf_counter() - started, 2)
        truth = {name: emulator.fleet(account=account, region=REGION) for name, account in ACCOUNTS.items()}
        unused = sum(1 for p, vs in chosen.items() for v in vs if not truth["main"].get(p, {}).get(v))
        out["unused_versions"] = unused
        log(f"seeded {packages * versions} versions of {packages} packages and {things:,} things in each of "
            f"{len(ACCOUNTS)} accounts in {out['seed_s']} s ({unused} versions on no device)")
        for targets in target_counts:
            for selector in selectors:
                plan = Path(tmp) / f"fleet-{'selector' if selector else 'listed'}-{targets}.yaml"
                plan.write_text(yaml.safe_dump(plan_doc(chosen, targets, selector=selector), sort_keys=False))
                with_counts = preview(emulator, plan, targets)
                check_counts(with_counts, truth)
                without = preview(emulator, plan, targets, "--no-fleet-check")
                row = {"plan": "selector devices: {max: 0}" if selector else "listed DEPRECATE of every version",
                       "targets": targets, "with_counts": with_counts, "no_fleet_check": without,
                       "wall_ratio": round(with_counts["wall_s"] / without["wall_s"], 2)}
                for result in (with_counts, without):
                    result.pop("devices")
                out["runs"].append(row)
                log(f"{row['plan']}, {targets} target(s): {with_counts['steps']} steps in "
                    f"{with_counts['wall_s']} s (exit {with_counts['exit']}), aggregations per target "
                    f"{with_counts['aggregations_per_target']}; --no-fleet-check {without['steps']} steps in "
                    f"{without['wall_s']} s: x{row['wall_ratio']}")
        if naive:
            emulator.reset_record()
            rate = quota.get("operations", {}).get("GetStatistics", {}).get("rate", 5.0)
            wall, counted = anyio.run(naive_counts, emulator.url, chosen, rate)
            if counted != {p: {v: truth["main"].get(p, {}).get(v, 0) for v in vs} for p, vs in chosen.items()}:
                raise RuntimeError("the naive counts differ from the emulator's")
            calls = place_calls(emulator.record(), ACCOUNTS["main"])
            out["naive"] = {"wall_s": round(wall, 2), "rate": rate, "calls": calls}
            log(f"naive, one GetStatistics per version at {rate:g}/s, 1 target: {wall:.1f} s, calls {calls}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--things", type=int, default=100_000)
    parser.add_argument("--packages", type=int, default=20)
    parser.add_argument("--versions", type=int, default=10, help="versions per package")
    parser.add_argument("--fleet-seed", type=int, default=1)
    parser.add_argument("--no-naive", action="store_true", help="skip one GetStatistics per version")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    out = measure(args.things, args.packages, args.versions, seed=args.fleet_seed, naive=not args.no_naive)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
