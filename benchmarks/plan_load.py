"""Time to read and validate a plan of 1k, 10k and 50k steps (`fleetrel.plan.load`).

    python benchmarks/plan_load.py [--sizes 1000,10000,50000] [--repeat 5] [--format yaml]

Each plan is `versions:` entries of 100 versions each (the shorthand a big release
uses), with defaults and one attribute per entry, written to a temporary file. Figures
are the best of `--repeat`, wall time:

- validate: `load` and `summary()`, what `fleetrel validate` does (issue 11's target:
  ≤ 0.5 s at 50k steps);
- steps + digest: what a run adds before its first call (the steps expanded, the digest
  its journal pins);
- parse only: the same file through PyYAML's C loader alone (or json), the floor.

The machines are shared: compare figures taken in one invocation, not across runs.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Callable

import yaml

from fleetrel.plan import load

VERSIONS_PER_ENTRY = 100


def plan_data(steps: int) -> dict:
    entries = [
        {"package": f"pkg-{e:05d}", "versions": [f"1.{v}.0" for v in range(min(VERSIONS_PER_ENTRY, steps - e * VERSIONS_PER_ENTRY))],
         "attributes": {"wave": str(e % 7)}}
        for e in range((steps + VERSIONS_PER_ENTRY - 1) // VERSIONS_PER_ENTRY)
    ]
    return {"plan": f"scale-{steps}", "defaults": {"action": "PUBLISH", "description": "Scale test"},
            "versions": entries}


def write_plan(directory: Path, steps: int, fmt: str) -> Path:
    data = plan_data(steps)
    path = directory / f"plan-{steps}.{fmt}"
    if fmt == "yaml":
        path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=10_000))
    elif fmt == "json":
        path.write_text(json.dumps(data, indent=1))
    else:
        raise SystemExit(f"unknown format {fmt!r}: yaml or json")
    return path


def parse_only(path: Path) -> None:
    text = path.read_text()
    if path.suffix == ".yaml":
        yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    elif path.suffix == ".json":
        json.loads(text)
    else:
        tomllib.loads(text)


def best_of(repeat: int, work: Callable[[], float | None]) -> float:
    """The shortest of `repeat` runs of `work`; a work that returns a time times itself."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        took = work()
        best = min(best, took if took is not None else time.perf_counter() - started)
    return best


def validate(path: Path) -> None:
    load(path).summary()


def steps_and_digest(path: Path) -> float:
    plan = load(path)  # a fresh plan each time: its steps and digest are kept once computed
    started = time.perf_counter()
    plan.steps()
    plan.digest  # noqa: B018 - computed on first use
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000", help="step counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the best is shown")
    parser.add_argument("--format", default="yaml", choices=("yaml", "json"))
    args = parser.parse_args()
    print(f"{'steps':>7}  {'validate':>9}  {'steps + digest':>14}  {'parse only':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for steps in (int(size) for size in args.sizes.split(",")):
            path = write_plan(Path(tmp), steps, args.format)
            figures = [best_of(args.repeat, lambda: validate(path)),
                       best_of(args.repeat, lambda: steps_and_digest(path)),
                       best_of(args.repeat, lambda: parse_only(path))]
            print(f"{steps:>7}  {figures[0]:>7.3f} s  {figures[1]:>12.3f} s  {figures[2]:>8.3f} s")


if __name__ == "__main__":
    main()
