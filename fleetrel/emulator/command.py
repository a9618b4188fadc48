"""`fleetrel emulator`: serve a local Software Package Catalog endpoint.

Defined here (not in fleetrel/cli.py) so `python -m fleetrel.emulator` runs the very same
command; cli.py registers it. moto is imported only when the command runs.
"""
from __future__ import annotations

import sys

import click

from fleetrel.events import ExitCode


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; keep the loopback default (there is no authentication).")
@click.option("--port", default=0, show_default=True, type=int,
              help="Port to bind; 0 picks a free one (the URL is printed first).")
@click.option("--rate", type=float, default=None,
              help="Calls per second each operation allows (token bucket refill); "
                   "default: no throttling.")
@click.option("--burst", type=float, default=None,
              help="Token bucket capacity per operation; default: the rate.")
@click.option("--fail-rate", type=float, default=0.0, show_default=True,
              help="Share of package calls answered 500 InternalServerException.")
@click.option("--drop-rate", type=float, default=0.0, show_default=True,
              help="Share of package calls applied, then answered with a dropped connection.")
@click.option("--latency-ms", type=float, default=0.0, show_default=True,
              help="Latency added to every package call.")
@click.option("--jitter-ms", type=float, default=0.0, show_default=True,
              help="Extra latency, uniform in [0, J], added to every package call.")
@click.option("--random-seed", type=int, default=None,
              help="Seed for the fault and jitter dice (repeatable runs).")
@click.option("--seed", "seed_plan", type=click.Path(dir_okay=False), default=None,
              metavar="PLAN", help="Create every package version of this release plan "
                                   "(as DRAFT) before serving.")
def emulator(host: str, port: int, rate: float | None, burst: float | None, fail_rate: float,
             drop_rate: float, latency_ms: float, jitter_ms: float, random_seed: int | None,
             seed_plan: str | None) -> None:
    """Serve a local AWS IoT Software Package Catalog (moto) that throttles like AWS.

    Prints its URL as the first line of stdout; point a plan's target.endpoint_url (or
    boto3's endpoint_url) at it. Any region and any credentials are accepted. Control
    endpoints under /_fleetrel/ (seed, configure, record, reset) are never throttled.
    """
    from fleetrel.emulator.server import serve
    from fleetrel.emulator.settings import EmulatorSettings, SettingsError

    try:
        settings = EmulatorSettings(rate=rate, burst=burst, fail_rate=fail_rate,
                                    drop_rate=drop_rate, latency_ms=latency_ms,
                                    jitter_ms=jitter_ms, seed=random_seed)
        settings.check()
    except SettingsError as error:
        click.echo(f"fleetrel emulator: {error}", err=True)
        sys.exit(ExitCode.INVALID)
    versions = []
    if seed_plan is not None:
        from fleetrel.plan import PlanError, load

        try:
            steps = load(seed_plan).steps()
        except (PlanError, OSError) as error:
            click.echo(f"fleetrel emulator: cannot seed from {seed_plan}:\n{error}", err=True)
            sys.exit(ExitCode.INVALID)
        versions = [{"package": step.package, "version": step.version} for step in steps]
    sys.exit(serve(settings, host=host, port=port, versions=versions))
