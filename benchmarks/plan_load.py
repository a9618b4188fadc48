"""Time to read and validate a plan of 1k, 10k and 50k steps (`fleetrel.plan.load`).

    python benchmarks/plan_load.py [--sizes 1000,10000,50000] [--repeat 3] [--format yaml]

Each plan is `versions:` entries of 100 versions each (the shorthand a big release
uses), with defaults and one attribute, written to a temporary file. The figure is the
best of `--repeat` loads: the file is parsed, every rule is checked, the summary line
of `fleetrel validate` made and the digest a run's journal pins taken. The parse alone (the
same file through PyYAML's C loader, or json/tomllib) is printed beside it, to show how
much of the time is the parser's.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import tomllib
from pathlib import Path

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


def best_of(repeat: int, work) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000", help="step counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="loads per size; the best is shown")
    parser.add_argument("--format", default="yaml", choices=("yaml", "json"))
    args = parser.parse_args()
    print(f"{'steps':>7}  {'load + validate':>15}  {'parse only':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for steps in (int(size) for size in args.sizes.split(",")):
            path = write_plan(Path(tmp), steps, args.format)

            def validate() -> None:
                plan = load(path)
                assert len(plan.steps()) == steps
                plan.summary()  # what `fleetrel validate` prints
                plan.digest  # noqa: B018 - what the journal header pins at every run

            seconds = best_of(args.repeat, validate)
            parse = best_of(args.repeat, lambda: parse_only(path))
            print(f"{steps:>7}  {seconds:>13.3f} s  {parse:>8.3f} s")


if __name__ == "__main__":
    main()
