"""How many UpdatePackageVersion calls a second one emulator process serves, unthrottled.

    python -m fleetrel.emulator.capacity --calls 2000 --concurrency 32

Starts its own emulator process, seeds one DRAFT version per call (so every call is a
real state change, never an idempotent replay), sends the calls from one aioboto3 client
with `concurrency` in flight and botocore retries off, and prints calls/s as JSON. The
number bounds what any benchmark against the emulator can show. On a shared machine the
client competes with the server for CPU, so it also prints the server's CPU time per call
(from /proc, Linux only): 1000 / that is what one server process could serve given a core.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from fleetrel.emulator.process import start_emulator


async def measure(url: str, calls: int, concurrency: int) -> dict[str, Any]:
    import aioboto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1}, max_pool_connections=concurrency,
                    read_timeout=30)
    session = aioboto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                               region_name="us-east-1")
    failures: dict[str, int] = {}
    async with session.client("iot", endpoint_url=url, config=config) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(calls):
            queue.put_nowait(index)

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                try:
                    await client.update_package_version(
                        packageName="capacity", versionName=f"v{index}",
                        description=f"call {index}")
                except Exception as error:  # counted, not raised: we measure the server
                    name = type(error).__name__
                    failures[name] = failures.get(name, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"calls": calls, "concurrency": concurrency, "elapsed_s": round(elapsed, 3),
            "calls_per_s": round(calls / elapsed, 1), "failures": failures}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` (Linux /proc), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with start_emulator() as emulator:
        emulator.seed([("capacity", f"v{index}") for index in range(args.calls)])
        pid = emulator.process.pid if emulator.process else 0
        cpu_before = cpu_seconds(pid)
        result = asyncio.run(measure(emulator.url, args.calls, args.concurrency))
        cpu_after = cpu_seconds(pid)
        record = emulator.record()["operations"].get("UpdatePackageVersion", {})
    result["emulator_saw"] = record
    if cpu_before is not None and cpu_after is not None:
        per_call_ms = (cpu_after - cpu_before) * 1000 / args.calls
        result["server_cpu_ms_per_call"] = round(per_call_ms, 3)
        result["server_calls_per_cpu_s"] = round(1000 / per_call_ms, 1) if per_call_ms else None
    result["load_average"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
