"""`fleetrel report` on a big journal, beside `fleetrel status` on the same journal.

    python benchmarks/report_scale.py                      # 100,000 steps
    python benchmarks/report_scale.py --steps 10000 --repeat 5

The journal is written here in the shape a run writes (a header naming every step with its
digest, then per step `step_started` with the journalled request, 2% of them a throttled
`attempt_failed`, and `step_succeeded`; 4 steps in flight at a time, so records of
neighbouring steps interleave), which takes a second where a real 100k-step run against
the emulator takes minutes (`benchmarks/scale.py` does that). Each command is its own
process, started by `benchmarks/scale.py`'s small launcher so its peak RSS is its own;
the fastest of `--repeat` is shown, and the ratio to `status` is the figure to read (the
machines are shared: absolute seconds move with the load).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `fleetrel` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scale import Launcher, best  # noqa: E402

IN_FLIGHT = 4


def write_journal(path: Path, steps: int) -> None:
    """A finished run of `steps` PUBLISH steps, as the engine journals one."""
    keys = [f"pkg-{i // 100:04d}/1.0.{i % 100}" for i in range(steps)]
    digests = {key: hashlib.sha256(key.encode()).hexdigest()[:16] for key in keys}
    run_id = str(uuid.uuid4())
    ts = "2026-12-01T10:00:00.000000Z"
    with open(path, "w", encoding="utf-8") as out:
        def write(**record: object) -> None:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")

        write(format=1, fleetrel_version="0.1.0", run_id=run_id, plan="scale", plan_digest="0" * 64, steps=steps,
              to_do=steps, rate=1000.0, burst=1000, concurrency=16, pid=1, plan_file="scale.yaml",
              step_digests=digests, token_scheme=2, event="run_started", level="info", ts=ts)
        for start in range(0, steps, IN_FLIGHT):
            group = keys[start:start + IN_FLIGHT]
            tokens = {key: str(uuid.uuid5(uuid.NAMESPACE_URL, run_id + key)) for key in group}
            for key in group:
                write(step=key, client_token=tokens[key], attempt=1,
                      request={"description": "hmac:" + digests[key], "action": "PUBLISH"},
                      event="step_started", level="info", ts=ts)
            for n, key in enumerate(group):
                attempt = 1
                if (start + n) % 50 == 0:
                    write(step=key, client_token=tokens[key], attempt=1, code="ThrottlingException", throttled=True,
                          kind="throttled", event="attempt_failed", level="info", ts=ts)
                    attempt = 2
                write(step=key, client_token=tokens[key], attempt=attempt, event="step_succeeded", level="info", ts=ts)
        write(succeeded=steps, skipped=0, failed=0, unfinished=0, attempts=steps + steps // 50, throttles=steps // 50,
              elapsed=100.0, event="run_finished", level="info", ts=ts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    launcher = Launcher()
    try:
        with tempfile.TemporaryDirectory(prefix="fleetrel-report-") as tmp:
            directory = Path(tmp)
            journal = directory / "scale.journal.jsonl"
            write_journal(journal, args.steps)
            log = directory / "log"
            print(f"{args.steps} steps, journal {journal.stat().st_size / 1e6:.1f} MB")
            commands = {"status": ["status", str(journal)],
                        "status --json": ["status", str(journal), "--json"]}
            for fmt in ("csv", "json", "markdown"):
                commands[f"report {fmt}"] = ["report", str(journal), "--format", fmt, "-o", str(directory / f"r.{fmt}")]
            figures = {name: best(launcher, args.repeat, command, log=log) for name, command in commands.items()}
            rows = sum(1 for _ in open(directory / "r.json"))
            assert rows == args.steps + 1, f"report json has {rows} lines, not {args.steps} steps and the totals"
    finally:
        launcher.close()
    base = figures["status"]
    print(f"{'command':<16} {'wall s':>7} {'CPU s':>6} {'RSS MB':>7}  {'wall/status':>11} {'RSS/status':>10}")
    for name, f in figures.items():
        print(f"{name:<16} {f.wall_s:7.2f} {f.cpu_s:6.2f} {f.rss_mb:7.0f}  {f.wall_s / base.wall_s:11.2f} "
              f"{f.rss_mb / base.rss_mb:10.2f}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
