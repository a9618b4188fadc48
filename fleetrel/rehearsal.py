"""`fleetrel demo` and `fleetrel bench`: rehearsals that start their own emulator.

    fleetrel demo                       # the bundled demo plan against a throttling emulator
    fleetrel bench --rate 10 --steps 500

Registered by fleetrel/cli.py; they import the emulator (and moto) only when they run, and
refuse, naming the extra, when it is not installed. The demo's plan is package data
(fleetrel/demo.yaml, `DEMO_PLAN`), so `fleetrel demo` runs from any folder.
"""
from __future__ import annotations

import sys
from importlib.resources import as_file, files
from pathlib import Path

import click

from fleetrel.where import Where
from fleetrel.events import ExitCode

# 200 versions of four packages, published in waves: what `fleetrel demo` rehearses.
DEMO_PLAN = files("fleetrel") / "demo.yaml"


def _refuse_without_the_emulator(command: str) -> None:
    from fleetrel.cli import fail
    from fleetrel.extras import missing_extra

    if problem := missing_extra("emulator", f"`fleetrel {command}`"):
        fail(problem)


@click.command("demo")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The plan to rehearse (default: the bundled demo plan, 200 versions).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="The emulator's quota in calls per second (AWS allows about 10-15).")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=50.0, show_default=True,
              help="Latency the emulator adds to each call.")
def demo_command(plan_path: Path | None, rate: float, latency_ms: float) -> None:
    """Rehearse a plan against a local emulator: no AWS account needed.

    Starts `fleetrel emulator` in its own process (throttling at --rate, like AWS),
    seeds every version of the plan as DRAFT, runs the plan with a journal in a
    temporary folder, prints the summary and stops the emulator.
    """
    import tempfile

    import anyio

    from fleetrel.api import run
    from fleetrel.emulator import start_emulator
    from fleetrel.interrupts import with_signals
    from fleetrel.cli import _load_or_fail, _progress_display
    from fleetrel.report import plain_console, print_summary

    _refuse_without_the_emulator("demo")
    with as_file(DEMO_PLAN) as bundled:
        plan = _load_or_fail(plan_path or bundled)
    steps = plan.steps()
    with start_emulator(rate=rate, burst=plan.limits.burst, latency_ms=latency_ms) as emulator, \
            tempfile.TemporaryDirectory(prefix="fleetrel-demo-") as tmp:
        emulator.seed(steps)
        click.echo(f"emulator at {emulator.url}: {len(steps)} versions seeded as DRAFT, "
                   f"quota {rate:g} calls/s, {latency_ms:g} ms latency")
        console = plain_console()
        with _progress_display(console, plan.plan, to_stderr=False) as display:
            result = anyio.run(lambda: with_signals(lambda stop: run(
                plan, Where(journal_path=Path(tmp) / "demo.journal.jsonl", endpoint_url=emulator.url),
                listeners=[display], stop=stop)))
        print_summary(result, console)
        record = emulator.record()
        click.echo(f"  the emulator saw {sum(record['operations'].get('UpdatePackageVersion', {}).values())} "
                   f"UpdatePackageVersion calls, {record['throttled'].get('UpdatePackageVersion', 0)} throttled")
    sys.exit(result.exit_code)


@click.command("bench")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="The emulator's quota in calls per second.")
@click.option("--burst", type=click.IntRange(min=1), default=10, show_default=True, help="The emulator's bucket capacity.")
@click.option("--steps", type=click.IntRange(min=2), default=500, show_default=True, help="Versions to publish.")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=50.0, show_default=True,
              help="Latency the emulator adds to each call.")
@click.option("--ceiling", type=click.FloatRange(min=0, min_open=True),
              help="The rate fleetrel is told (default: --rate; set it higher to see the controller find the quota).")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
def bench_command(rate: float, burst: int, steps: int, latency_ms: float, ceiling: float | None,
                  concurrency: int, as_json: bool) -> None:
    """What will my settings do? Run fleetrel's engine against a local emulator
    enforcing this quota, and print E, θ and calls per second.

    E = wall time / ((steps - burst) / rate): 1.00 is the fastest the quota allows.
    θ = throttled attempts / all attempts, as the emulator counted them.
    For fleetrel beside botocore's own modes, run `python benchmarks/run.py`.
    """
    import json

    from fleetrel.bench import measure
    from fleetrel.cli import fail

    _refuse_without_the_emulator("bench")
    if steps <= burst:
        fail(f"--steps ({steps}) must be larger than --burst ({burst}): the ideal time would be zero")
    figures = measure(rate=rate, burst=burst, steps=steps, latency_ms=latency_ms, ceiling=ceiling,
                      concurrency=concurrency)
    if as_json:
        figures.pop("completions", None)
        click.echo(json.dumps(figures, indent=2))
    else:
        click.echo(
            f"{steps} steps, quota {rate:g}/s burst {burst}, {latency_ms:g} ms latency, "
            f"ceiling {ceiling or rate:g}/s, concurrency {concurrency}\n"
            f"  wall {figures['wall_s']:.2f}s (ideal {figures['ideal_s']:.2f}s)  E {figures['efficiency']:.3f}  "
            f"θ {figures['throttle_ratio']:.1%} ({figures['throttled']} of {figures['attempts']} attempts)\n"
            f"  {figures['calls_per_s']:.1f} calls/s, {figures['calls_per_cpu_s']:.0f} calls per client CPU-second, "
            f"failed {figures['failed']}"
        )
    sys.exit(ExitCode.FAILED if figures["failed"] else ExitCode.OK)
