"""The commands that read or change the catalog: `run`, `plan` (a preview) and `verify`.

Loaded by `fleetrel.cli` when one of them is asked for; each is a thin shell over
`fleetrel.api`, `fleetrel.state` and `fleetrel.expansion`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from fleetrel.cli import _load_or_fail, _print_for_a_reader_that_may_leave, _progress_display, fail
from fleetrel.events import ExitCode


def _fleet_options(command):
    """--guard-max-devices, --allow-in-use, --no-fleet-check: the fleet guard (`fleetrel.fleetcheck`)."""
    command = click.option("--no-fleet-check", "no_fleet_check", is_flag=True,
                           help="Read no device counts (a fleet without indexing): the guard is not applied, a "
                                "devices: filter matches nothing; journalled.")(command)
    command = click.option("--allow-in-use", is_flag=True,
                           help="Deprecate versions the guard refuses (more devices run them than it allows); "
                                "journalled.")(command)
    return click.option("--guard-max-devices", type=click.IntRange(min=0), metavar="N",
                        help="Refuse to DEPRECATE a version more than N devices run, before anything is sent "
                             "(overrides the plan's guard.deprecate_max_devices; 0: only unused versions).")(command)


@click.command("run")
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Journal file (default: <plan stem>.journal.jsonl beside the plan file).")
@click.option("--endpoint-url", help="Service endpoint, e.g. a local `fleetrel emulator`.")
@click.option("--region", help="AWS region (default: the plan's, then your AWS config's).")
@click.option("--profile", help="AWS profile (default: the plan's, then AWS_PROFILE).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Ceiling in calls per second (overrides limits.rate).")
@click.option("--burst", type=click.IntRange(min=1), help="Bucket capacity (overrides limits.burst).")
@click.option("--concurrency", type=click.IntRange(min=1), help="Calls in flight at most (overrides limits.concurrency).")
@click.option("--new-run", is_flag=True, help="Start a new run even if the journal holds one (the old journal is kept, renamed). New clientTokens.")
@click.option("--retry-failed", is_flag=True, help="On resume, send again the steps that failed in earlier sessions.")
@click.option("--journal-sensitive", is_flag=True, help="Store description, attributes and recipe in clear in the journal (default: digests).")
@click.option("--dry-run", is_flag=True, help="Preview only, like `fleetrel plan`: read the versions, send no update.")
@click.option("--json", "json_output", is_flag=True, help="Print the final RunResult as JSON on stdout (progress and summary go to stderr).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (before a run of more than 20 steps, or between waves, on a terminal).")
@click.option("--verify", "verify_after", is_flag=True, help="After the run, read every version back and report drift from the plan (as `fleetrel verify`).")
@click.option("--target", "targets", multiple=True, metavar="NAME",
              help="For a plan with `targets:`, run (or resume) only this target; repeat for several.")
@click.option("--wave-pause", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Pause between the plan's waves (default: ask on a terminal, go straight on otherwise).")
@click.option("--shard", "shard_text", metavar="I/N",
              help="For a plan with `targets:`, run (or resume) only shard I of N (1-based), in a journal of its own "
                   "(<journal stem>.shard-I-of-N.journal.jsonl). Targets go to shards by step count, the same split "
                   "on every machine; `fleetrel status <journal>` merges the shards' journals.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run the shards as Ray actors (pip install 'fleetrel[ray]'): on the Ray cluster at ADDRESS, or "
                   "without one on a local Ray started for this run (loopback only) and stopped after it. This process "
                   "writes the run's one journal, so the same command resumes it, with or without --ray.")
@click.option("--actors", type=click.IntRange(min=1, max=10_000), metavar="N",
              help="With --ray: how many shards, one actor each (default: one per target, at most the cluster's CPUs).")
@click.option("--wave-gate", metavar="CMD",
              help="Before each wave after the first (and on resume), run CMD with the shell, the run's facts in "
                   "FLEETREL_* variables: exit 0 starts the wave, anything else stops the run (130). See docs/observe.md.")
@click.option("--wave-gate-timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              metavar="SECONDS", help="A --wave-gate command still running after this long is killed and counts as a no.")
@click.option("--events", "events_path", metavar="FILE",
              help="Write the run's events as JSON lines to FILE as they happen (`-`: stdout; people's output then "
                   "goes to stderr). A slow or departed reader never slows the run. `fleetrel schema --events`.")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), metavar="PORT",
              help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics while the run lasts "
                   "(pip install 'fleetrel[observe]').")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="ADDRESS",
              help="Address the metrics server binds (0.0.0.0: every interface, e.g. in a Kubernetes pod).")
@click.option("--metrics-linger", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
              help="After the run, keep serving until one scrape has read the final numbers, at most this long.")
@_fleet_options
def run_command(plan_path: Path, journal_path: Path | None, endpoint_url: str | None, region: str | None,
                profile: str | None, rate: float | None, burst: int | None, concurrency: int | None,
                new_run: bool, retry_failed: bool, journal_sensitive: bool, dry_run: bool, json_output: bool,
                yes: bool, verify_after: bool, targets: tuple[str, ...], wave_pause: float | None,
                shard_text: str | None, ray_address: str | None, actors: int | None,
                wave_gate: str | None = None, wave_gate_timeout: float = 600.0, events_path: str | None = None,
                metrics_port: int | None = None, metrics_host: str = "127.0.0.1", metrics_linger: float = 0.0,
                guard_max_devices: int | None = None, allow_in_use: bool = False, no_fleet_check: bool = False) -> None:
    """Apply a release plan: one UpdatePackageVersion per step, rate-limited, journalled.

    Run the same command again after a crash or Ctrl-C: it resumes from the journal,
    re-sending only unfinished steps with their original clientTokens (failed steps
    only with --retry-failed). On a terminal it shows a live display and asks before
    a run of more than 20 steps; otherwise it logs a progress line every 5 s or 10%.
    A plan with `waves:` runs them in order and stops before the next wave when one
    does not complete. Runs on this host that send to one account and region share
    its rate evenly (FLEETREL_NEIGHBOURS=off: do not; docs/rate-control.md).

    \b
    Exit codes:
      0    all steps succeeded or were already done (and --verify found no drift)
      1    some steps failed, or --verify found drift
      2    invalid input; --dry-run found blocked steps; confirmation declined;
           the fleet guard refused a DEPRECATE of a version in use, or could not read the fleet
      3    aborted by the plan's failure threshold (abort:)
      130  interrupted (Ctrl-C, SIGTERM, or declined to start the next wave)
    """
    import anyio

    from fleetrel.api import run
    from fleetrel.aws import AwsSetupError
    from fleetrel.engine import RunOptions
    from fleetrel.expansion import ExpansionError
    from fleetrel.fleet import FleetUnavailable
    from fleetrel.fleetcheck import FleetRefused
    from fleetrel.interrupts import ask, ask_now, with_signals
    from fleetrel.journal import JournalError
    from fleetrel.plan import PlanError
    from fleetrel.report import echo_json, plain_console, print_drift, print_summary
    from fleetrel.session import PlanChanged, TargetChanged
    from fleetrel.shards import Shard, ShardError
    from fleetrel.where import Where, WhereError

    plan = _load_or_fail(plan_path)
    try:
        shard = Shard.parse(shard_text) if shard_text is not None else None
        if ray_address is not None and targets:
            raise ShardError("--ray runs every target (or a --shard's): leave out --target")
        if actors is not None and ray_address is None:
            raise ShardError("--actors goes with --ray")
        if shard is not None and targets:
            raise ShardError("--shard and --target do not go together: a shard's targets are chosen by the "
                             "shard rule; run one target with --target alone")
        if shard is not None:
            targets = tuple(shard.targets(plan))  # what this shard previews, runs and verifies
    except ShardError as exc:
        fail(str(exc))
    if shard is not None and not targets:
        click.echo(f"fleetrel: shard {shard} of plan {plan.plan} has no targets (the plan has "
                   f"{len(plan.target_specs())}): nothing to {'preview' if dry_run else 'send'}", err=True)
        sys.exit(ExitCode.OK)
    fleet = {"guard": guard_max_devices, "allow_in_use": allow_in_use, "fleet_check": not no_fleet_check}
    if dry_run:
        _preview_and_exit(plan, endpoint_url, region, profile, json_output, targets, **fleet)
    if events_path == "-" and json_output:
        fail("--events - and --json both want stdout: give --events a file")
    # Everything for people goes to stderr under --json, so stdout parses.
    console = plain_console(stderr=json_output or events_path == "-")
    if "fleetrel.logs" in sys.modules and sys.modules["fleetrel.logs"].json_enabled():
        console = sys.modules["fleetrel.logs"].JsonConsole(console)  # text as `notice` lines on stderr
    interactive = console.is_terminal and sys.stdin.isatty()
    # (a plan with select: entries has an unknown number of steps until its run expands it)
    if interactive and not yes and (plan.needs_expansion or plan.step_count() > 20):
        where = endpoint_url or plan.target.endpoint_url or region or plan.target.region or "the default region"
        count = "the" if plan.needs_expansion else f"{plan.step_count()}"
        if not ask_now(lambda: click.confirm(f"Apply {count} steps of plan {plan.plan} ({plan.summary()}) to {where}?",
                                             err=json_output)):
            fail("not confirmed: nothing sent")
    ends = None if plan.needs_expansion else plan.wave_ends()

    async def before_wave(wave: int, waves: int) -> bool:
        """Between waves: the soak time, or the operator's yes."""
        if wave_pause is not None:
            console.print(f"wave {wave - 1}/{waves} complete; wave {wave} in {wave_pause:g} s")
            await anyio.sleep(wave_pause)  # the operator's soak time between waves, not synchronisation
            return True
        if interactive and not yes:
            with display.paused():
                go_on = await ask(lambda: click.confirm(
                    f"wave {wave - 1}/{waves} complete. Start wave {wave}"
                    + (f" (up to step {ends[wave - 1]})?" if ends else "?"),
                    default=True, err=json_output))
            if not go_on:
                console.print("stopped between waves: run the same command again to continue")
                return False
        return True

    options = RunOptions(rate=rate, burst=burst, concurrency=concurrency, new_run=new_run,
                         retry_failed=retry_failed, journal_sensitive=journal_sensitive,
                         guard_max_devices=guard_max_devices, allow_in_use=allow_in_use,
                         fleet_check=not no_fleet_check)
    display = _progress_display(console, plan.plan, to_stderr=json_output or events_path == "-")
    from fleetrel.observe import ObserveError, Observers, journal_of

    observers = Observers(journal=journal_of(plan, journal_path, shard), wave_gate=wave_gate,
                          wave_gate_timeout=wave_gate_timeout, events=events_path, metrics_port=metrics_port,
                          metrics_host=metrics_host, metrics_linger=metrics_linger, plan=plan.plan)
    # the hold file, --wave-gate, then the pause or the prompt (journalled as who decided)
    before_wave = observers.gate(before_wave if wave_pause is not None or (interactive and not yes) else None,
                                 by="pause" if wave_pause is not None else "operator")
    try:
        with display, observers:
            if ray_address is not None:
                from fleetrel.raydriver import run_on_ray

                if region or profile:
                    raise ShardError("a plan run with --ray has `targets:`: give region and profile per target in the plan")
                result = anyio.run(lambda: with_signals(lambda stop: run_on_ray(
                    plan, address=None if ray_address == "local" else ray_address, actors=actors,
                    journal_path=journal_path, endpoint_url=endpoint_url, options=options, listeners=[display, *observers.listeners],
                    before_wave=before_wave, stop=stop, shard=shard)))
            else:
                where = Where(endpoint_url=endpoint_url, region=region, profile=profile, journal_path=journal_path,
                              targets=frozenset() if shard else frozenset(targets), shard=shard)
                result = anyio.run(lambda: with_signals(lambda stop: run(
                    plan, where,
                    options=options, listeners=[display, *observers.listeners], before_wave=before_wave, stop=stop,
                    notice=console.print)))
    except PlanError as exc:  # a selector matched a version another entry names
        fail(str(exc))
    except (FleetRefused, FleetUnavailable) as exc:  # before anything was sent
        fail(str(exc))
    except ExpansionError as exc:
        fail(str(exc), ExitCode.FAILED)
    except PlanChanged as exc:
        fail(f"{exc}\nPass --new-run to start a new run.")
    except TargetChanged as exc:
        fail(str(exc))
    except (JournalError, AwsSetupError, ShardError, WhereError, ObserveError) as exc:
        fail(str(exc))
    exit_code = result.exit_code
    printers = [lambda: print_summary(result, console)]
    drift = None
    if verify_after and result.status in ("complete", "failed"):
        if shard is not None:  # a selection is frozen in the shard's own journal
            from fleetrel.journal import default_journal_path
            from fleetrel.shards import shard_journal_path

            journal_path = shard_journal_path(journal_path or default_journal_path(plan), shard)
        drift = _read_drift(plan, endpoint_url, region, profile, targets, journal_path)
        printers.append(lambda: print_drift(drift, console))
        if not drift.matches and exit_code == ExitCode.OK:
            exit_code = ExitCode.FAILED
    if json_output:  # built only when asked: a dict per step of the plan
        output = result.to_dict()
        if drift is not None:
            output["verify"] = drift.to_dict()
        printers.append(lambda: echo_json(output))
    _print_for_a_reader_that_may_leave(*printers)
    sys.exit(exit_code)


def _preview_and_exit(plan, endpoint_url: str | None, region: str | None, profile: str | None,
                      json_output: bool, targets: tuple[str, ...] = (), *, guard: int | None = None,
                      allow_in_use: bool = False, fleet_check: bool = True) -> NoReturn:
    """`fleetrel plan` and `run --dry-run`: exit 0 when every step can be applied, 2 if not."""
    from fleetrel.fleet import FleetUnavailable
    from fleetrel.fleetcheck import guard_limit
    import anyio

    from fleetrel.aws import AwsSetupError
    from fleetrel.expansion import ExpansionError, selection_problems, empty_warnings, expand_plan, selection_lines, selection_report
    from fleetrel.report import echo_json, print_preview
    from fleetrel.state import read_preview

    chosen = set(targets) or None
    counts: dict = {}  # the fleet's, read once for the selectors and the preview
    try:
        if plan.needs_expansion:
            plan = anyio.run(lambda: expand_plan(plan, endpoint_url=endpoint_url, region=region, profile=profile,
                                                 targets=chosen, fleet_check=fleet_check, counts=counts))
            problems = selection_problems(plan)
            if problems:
                fail("\n".join(f"{plan.source or plan.plan}: {p}" for p in problems))
        limit = guard_limit(plan, guard) if fleet_check else None
        preview = anyio.run(lambda: read_preview(plan, endpoint_url=endpoint_url, region=region, profile=profile,
                                                 targets=chosen, fleet_check=fleet_check, guard=limit,
                                                 allow_in_use=allow_in_use, known=counts))
    except (AwsSetupError, FleetUnavailable) as exc:
        fail(str(exc))
    except ExpansionError as exc:
        fail(str(exc), ExitCode.FAILED)
    warnings = empty_warnings(plan) if plan.selection is not None else []
    for line in warnings:
        click.echo(f"fleetrel: {line}", err=True)
    if json_output:
        output = preview.to_dict()
        if plan.selection is not None:
            output["selectors"] = selection_report(plan)
            output["warnings"] = warnings
        echo_json(output)
    else:
        if plan.selection is not None:
            for line in selection_lines(plan):
                click.echo(line)
        print_preview(preview)
    sys.exit(ExitCode.OK if preview.can_apply else ExitCode.INVALID)


def _read_drift(plan, endpoint_url: str | None, region: str | None, profile: str | None,
                targets: tuple[str, ...] = (), journal_path: Path | None = None):
    import anyio

    from fleetrel.aws import AwsSetupError
    from fleetrel.expansion import ExpansionError, expand_plan, frozen_selection
    from fleetrel.journal import default_journal_path
    from fleetrel.state import read_drift

    try:
        if plan.needs_expansion:
            # what the run selected (frozen in its journal), else what the selectors match now
            frozen = frozen_selection(journal_path or default_journal_path(plan), plan)
            plan = plan.expanded(frozen) if frozen is not None else anyio.run(lambda: expand_plan(
                plan, endpoint_url=endpoint_url, region=region, profile=profile, targets=set(targets) or None))
        return anyio.run(lambda: read_drift(plan, endpoint_url=endpoint_url, region=region, profile=profile,
                                            targets=set(targets) or None))
    except AwsSetupError as exc:
        fail(str(exc))
    except ExpansionError as exc:
        fail(str(exc), ExitCode.FAILED)


def _target_options(command):
    """--endpoint-url, --region, --profile, --target: where to read from (default: the plan's target(s))."""
    command = click.option("--target", "targets", multiple=True, metavar="NAME",
                           help="For a plan with `targets:`, read only this target; repeat for several.")(command)
    command = click.option("--profile", help="AWS profile (default: the plan's, then AWS_PROFILE).")(command)
    command = click.option("--region", help="AWS region (default: the plan's, then your AWS config's).")(command)
    return click.option("--endpoint-url", help="Service endpoint, e.g. a local `fleetrel emulator`.")(command)


@click.command("plan")
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@_target_options
@click.option("--json", "json_output", is_flag=True, help="Print the preview as JSON.")
@_fleet_options
def plan_command(plan_path: Path, endpoint_url: str | None, region: str | None, profile: str | None,
                 targets: tuple[str, ...], json_output: bool, guard_max_devices: int | None = None,
                 allow_in_use: bool = False, no_fleet_check: bool = False) -> None:
    """Preview a release plan: read every planned version (GetPackageVersion, at the
    plan's rate), show what each step would change, and which steps cannot succeed and
    why. Sends no update. Each step also shows how many devices report its version
    (fleet indexing's $package shadow: one GetBucketsAggregation per target and package);
    the plan's guard (or --guard-max-devices) blocks a DEPRECATE of a version in use.

    `select:` entries are expanded first (ListPackages, ListPackageVersions, and
    GetPackage / GetPackageVersion when a filter needs them): each selector is shown with
    what it matched and how it compared versions (release numbers, or natural sort when
    a version is not one). A selector that matches nothing is a warning; one that matches
    a version another entry names is an error (exit 2).

    \b
    Exit codes:
      0  every step can be applied (or is already as planned and will be skipped)
      1  the catalog could not be read to expand the plan's select: entries
      2  invalid plan, or some steps are blocked (missing version or package,
         DRAFT -> DEPRECATE, DRAFT-only fields on a non-DRAFT version, a
         DEPRECATE the fleet guard refuses, ...), or a selector matched a version
         another entry names, or the fleet's counts that a guard or a devices:
         filter needs could not be read
    """
    _preview_and_exit(_load_or_fail(plan_path), endpoint_url, region, profile, json_output, targets,
                      guard=guard_max_devices, allow_in_use=allow_in_use, fleet_check=not no_fleet_check)


@click.command("verify")
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@_target_options
@click.option("--json", "json_output", is_flag=True, help="Print the drift report as JSON.")
def verify_command(plan_path: Path, endpoint_url: str | None, region: str | None, profile: str | None,
                   targets: tuple[str, ...], json_output: bool) -> None:
    """Read every planned version back and report drift from the plan: status,
    description, attributes (compared by digest), artifact and recipe.

    \b
    Exit codes:
      0  every version is as the plan says
      1  some versions differ (or are missing)
      2  invalid plan or AWS setup
    """
    from fleetrel.report import echo_json, print_drift

    drift = _read_drift(_load_or_fail(plan_path), endpoint_url, region, profile, targets)
    if json_output:
        echo_json(drift.to_dict())
    else:
        print_drift(drift)
    sys.exit(ExitCode.OK if drift.matches else ExitCode.FAILED)


@click.command("fleet")
@click.argument("plan_path", metavar="[PLAN]", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--package", "packages", multiple=True, metavar="NAME",
              help="A package to show (repeatable); default: the plan's packages (its selectors' globs listed).")
@_target_options
@click.option("--json", "json_output", is_flag=True, help="Print the distributions as JSON.")
def fleet_command(plan_path: Path | None, packages: tuple[str, ...], endpoint_url: str | None, region: str | None,
                  profile: str | None, targets: tuple[str, ...], json_output: bool) -> None:
    """Show which package versions the devices run: per package and target, every
    version with the devices that report it (fleet indexing's $package shadow), its
    share, its catalog status and the default. One GetBucketsAggregation per package
    and target, whatever the number of versions or devices.

    \b
      fleetrel fleet plans/cleanup.yaml            # the plan's packages, each target
      fleetrel fleet --package thermostat-fw --endpoint-url http://127.0.0.1:5000

    \b
    Exit codes:
      0  shown
      2  invalid input, or fleet indexing is off or does not index the $package shadow
    """
    import anyio

    from fleetrel.aws import AwsSetupError
    from fleetrel.fleet import FleetUnavailable
    from fleetrel.report import echo_json, print_fleet

    if plan_path is None and not packages:
        fail("give a PLAN, or --package NAME (with --endpoint-url/--region/--profile)")
    if plan_path is None and targets:
        fail("--target names a plan's targets: give the PLAN too")
    plan = _load_or_fail(plan_path) if plan_path is not None else None
    try:
        fleets = anyio.run(lambda: _read_fleets(plan, packages, endpoint_url, region, profile, set(targets)))
    except (AwsSetupError, FleetUnavailable) as exc:
        fail(str(exc))
    if json_output:
        echo_json({"schema_version": 1, "packages": [fleet.to_json() for fleet in fleets]})
    else:
        _print_for_a_reader_that_may_leave(lambda: print_fleet(fleets))
    sys.exit(ExitCode.OK)


async def _read_fleets(plan, packages: tuple[str, ...], endpoint_url: str | None, region: str | None,
                       profile: str | None, targets: set[str]):
    """Every (target, package) distribution `fleetrel fleet` shows, target by target."""
    import anyio

    from fleetrel.aws import iot_client, target_settings
    from fleetrel.credentials import plan_clients
    from fleetrel.fleet import package_fleets
    from fleetrel.plan import Target
    from fleetrel.plan.selectors import is_glob, packages_matching
    from fleetrel.reads import ReadBuckets, ReadError, first_error, pages

    async def for_target(name: str | None, client) -> list:
        wanted = set(packages)
        if plan is not None and not packages:
            # the packages its entries name (a selector's glob: those the catalog has)
            mine = [entry for entry in plan.versions if name is None or entry.targets is None or name in entry.targets]
            patterns = {getattr(entry, "select", entry).package for entry in mine}
            wanted = {p for p in patterns if not is_glob(p)}
            if any(is_glob(p) for p in patterns):
                listed = await pages(client, ReadBuckets()["list_packages"], "list_packages", "packageSummaries")
                names = [] if isinstance(listed, ReadError) else [p["packageName"] for p in listed[0]]
                for pattern in filter(is_glob, patterns):
                    wanted |= set(packages_matching(pattern, names))
        return await package_fleets(client, wanted, target=name)

    if plan is None:  # --package alone: the command line's (or the AWS configuration's) target
        async with iot_client(**target_settings(Target(), endpoint_url, region, profile)) as client:
            return await for_target(None, client)
    found: dict[str | None, list] = {}
    async with plan_clients(plan, endpoint_url=endpoint_url, region=region, profile=profile,
                            targets=targets) as clients:
        async def one(name: str | None) -> None:
            found[name] = await for_target(name, clients[name])

        with first_error():
            async with anyio.create_task_group() as tg:
                for name in clients:
                    tg.start_soon(one, name)
    return [fleet for name in clients for fleet in found[name]]
