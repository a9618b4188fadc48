"""`fleetrel emulator`: serve a local Software Package Catalog endpoint.

Defined here (not in fleetrel/cli.py) so `python -m fleetrel.emulator` runs the very same
command; cli.py registers it. moto is imported only when the command runs, and only
once the `emulator` extra is known to be installed (`fleetrel.extras`).
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
              help="Calls per second each operation allows in each account and region "
                   "(token bucket refill); default: no throttling.")
@click.option("--burst", type=float, default=None,
              help="Token bucket capacity per operation, account and region; "
                   "default: the rate.")
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
@click.option("--accounts", default="", metavar="ID,ID,...",
              help="The emulated accounts (12 digits, comma-separated). A package call "
                   "from another account is answered 403 UnrecognizedClientException, an "
                   "STS AssumeRole into another account 403 AccessDenied. Default: any.")
@click.option("--regions", default="", metavar="NAME,NAME,...",
              help="The emulated regions (comma-separated). A package call signed for "
                   "another region is answered 403 UnrecognizedClientException. "
                   "Default: any.")
@click.option("--session-seconds", type=int, default=None, metavar="N",
              help="STS AssumeRole and GetSessionToken sessions last at most N seconds; "
                   "a package call signed with them afterwards is answered 403 "
                   "ExpiredTokenException. Default: as long as the caller asks.")
@click.option("--place-rate", "place_rates", multiple=True, metavar="ACCOUNT/REGION=RATE[:BURST]",
              help="A quota of its own for one account and region: there every operation "
                   "allows RATE calls per second (burst BURST, default RATE) instead of "
                   "--rate. Repeatable.")
@click.option("--seed", "seed_plan", type=click.Path(dir_okay=False), default=None,
              metavar="PLAN", help="Create every package version of this release plan "
                                   "(as DRAFT) in every emulated account and region "
                                   "before serving.")
@click.option("--fleet", "fleet", type=click.IntRange(min=0), default=None, metavar="N",
              help="Seed N things (device-000000, ...) whose $package shadows report the "
                   "--seed plan's versions, skewed as real fleets are, in every emulated "
                   "account and region, with fleet indexing of $package turned on. "
                   "Needs --seed.")
@click.option("--fleet-seed", type=int, default=0, show_default=True, metavar="S",
              help="Seed of the --fleet dice: the same seed gives the same fleet.")
def emulator(host: str, port: int, rate: float | None, burst: float | None, fail_rate: float,
             drop_rate: float, latency_ms: float, jitter_ms: float, random_seed: int | None,
             accounts: str, regions: str, session_seconds: int | None,
             place_rates: tuple[str, ...], seed_plan: str | None, fleet: int | None,
             fleet_seed: int) -> None:
    """Serve a local AWS IoT Software Package Catalog (moto) that throttles like AWS.

    Prints its URL as the first line of stdout; point a plan's target.endpoint_url (or
    boto3's endpoint_url) at it. Control endpoints under /_fleetrel/ (seed, configure,
    record, reset) are never throttled.

    Packages and quotas are kept per account and region, as AWS keeps them. The region
    is the one the request is signed for. The account is the one the credentials belong
    to: any unknown access key is moto's default account 123456789012, and credentials
    from the emulator's own STS AssumeRole belong to the role's account, so

    \b
      aws sts assume-role --endpoint-url URL \\
          --role-arn arn:aws:iam::111111111111:role/release --role-session-name x

    gives credentials for account 111111111111. With --accounts/--regions, only those
    are emulated (plain credentials then need 123456789012 among the accounts): a
    wrong target in a rehearsal fails instead of landing somewhere nobody looks.
    Without them, any account and region works.
    """
    from fleetrel.extras import missing_extra

    if problem := missing_extra("emulator", "`fleetrel emulator`"):
        click.echo(f"fleetrel: {problem}", err=True)
        sys.exit(ExitCode.INVALID)
    if fleet is not None and seed_plan is None:
        click.echo("fleetrel emulator: --fleet needs --seed PLAN: the things report the "
                   "versions of the plan's packages (give both, like "
                   "--seed plan.yaml --fleet 1000)", err=True)
        sys.exit(ExitCode.INVALID)
    from fleetrel.emulator.server import serve
    from fleetrel.emulator.settings import EmulatorSettings, SettingsError, place_limits

    try:
        settings = EmulatorSettings(rate=rate, burst=burst, fail_rate=fail_rate,
                                    drop_rate=drop_rate, latency_ms=latency_ms,
                                    jitter_ms=jitter_ms, seed=random_seed,
                                    accounts=accounts, regions=regions,  # type: ignore[arg-type]
                                    session_seconds=session_seconds,
                                    places=dict(place_limits(text) for text in place_rates))
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
    sys.exit(serve(settings, host=host, port=port, versions=versions, fleet=fleet,
                   fleet_seed=fleet_seed))
