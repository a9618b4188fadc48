"""The `fleetrel` command line. It knows plans, journals and terminals; never HTTP.

Each command is a thin shell over a module: parse flags, call, render, choose the exit code
(`fleetrel.events.ExitCode`: 0 success, 1 some steps failed / drift found, 2 invalid input,
3 aborted by threshold, 75 still running (`status`), 130 interrupted). Signals, prompts and
the default journal path are chosen here, not in the engine.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from fleetrel.events import ExitCode


class _Commands(click.Group):
    """Ctrl-C (or Ctrl-D at a prompt) anywhere outside a run's own handling ends the
    command with 130, as an interrupted run does, not click's "Aborted!" and 1 (which
    `verify` uses for drift)."""

    # `fleetrel emulator` is defined beside the emulator, so that `python -m fleetrel.emulator`
    # runs the same command; it is imported only when it is asked for (the emulator's
    # package pulls in urllib.request and email, which no other command needs).
    lazy_commands = {"emulator": ("fleetrel.emulator.command", "emulator"),
                     # rehearsals that start their own emulator
                     "demo": ("fleetrel.rehearsal", "demo_command"),
                     "bench": ("fleetrel.rehearsal", "bench_command")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_commands])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy_commands:
            from importlib import import_module

            module, attribute = self.lazy_commands[name]
            return getattr(import_module(module), attribute)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, EOFError, click.Abort):
            click.echo("\nfleetrel: interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except BrokenPipeError:  # the reader left (`| head`): stop quietly, as a shell tool does
            _silence_stdout()
            sys.exit(128 + 13)  # 128 + SIGPIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _print_for_a_reader_that_may_leave(*printers) -> None:
    """Print a finished run's summary; a reader that went away (`| head -n 1`) does not turn
    the run's exit code into a traceback: the journal already holds everything."""
    try:
        for printer in printers:
            printer()
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fleetrel")
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console", show_default=True,
              envvar="FLEETREL_LOG_FORMAT",
              help="json: what the command logs (progress, notices, the summary, errors) as one JSON object per "
                   "line on stderr, keys in docs/observe.md.")
def main(log_format: str = "console") -> None:
    """fleetrel: batch releases for the AWS IoT Software Package Catalog.

    Publish or deprecate hundreds of package versions from one release plan,
    as fast as the service allows, resumable after any crash.
    """
    if log_format != "console":
        from fleetrel.logs import configure

        configure(log_format)




def fail(message: str, code: int = ExitCode.INVALID) -> NoReturn:
    """A user error: the message on stderr, no traceback, the exit code."""
    if "fleetrel.logs" in sys.modules and sys.modules["fleetrel.logs"].json_enabled():
        sys.modules["fleetrel.logs"].error(message, code)
        sys.exit(code)
    click.echo(f"fleetrel: {message}", err=True)
    sys.exit(code)


@main.command("validate")
@click.argument("plan_paths", metavar="PLAN...", nargs=-1, required=True)
def validate_command(plan_paths: tuple[str, ...]) -> None:
    """Check release plans without sending anything.

    Prints one summary line per valid plan (steps, packages, actions). For an invalid
    one, every problem goes to stderr, each naming the file, the entry and the rule.
    Exit codes: 0 all plans valid, 2 any problem.
    """
    from fleetrel.plan import PlanError, load

    any_invalid = False
    for plan_path in plan_paths:
        try:
            plan = load(plan_path)
        except PlanError as exc:
            any_invalid = True
            click.echo(str(exc), err=True)
        else:
            click.echo(f"{plan_path}: ok — {plan.summary()}")
    sys.exit(ExitCode.INVALID if any_invalid else ExitCode.OK)


@main.command("schema")
@click.option("--events", "events", is_flag=True, help="The schema of a `run --events` line instead.")
def schema_command(events: bool = False) -> None:
    """Print the JSON Schema of a release plan (for editors and CI linters)."""
    import json

    if events:
        from fleetrel.eventstream import schema

        click.echo(json.dumps(schema(), indent=2))
        return
    from fleetrel.plan import ReleasePlan

    click.echo(json.dumps(ReleasePlan.model_json_schema(), indent=2, ensure_ascii=False))


@main.command("run")
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
def run_command(plan_path: Path, journal_path: Path | None, endpoint_url: str | None, region: str | None,
                profile: str | None, rate: float | None, burst: int | None, concurrency: int | None,
                new_run: bool, retry_failed: bool, journal_sensitive: bool, dry_run: bool, json_output: bool,
                yes: bool, verify_after: bool, targets: tuple[str, ...], wave_pause: float | None,
                shard_text: str | None, ray_address: str | None, actors: int | None,
                wave_gate: str | None = None, wave_gate_timeout: float = 600.0, events_path: str | None = None,
                metrics_port: int | None = None, metrics_host: str = "127.0.0.1", metrics_linger: float = 0.0) -> None:
    """Apply a release plan: one UpdatePackageVersion per step, rate-limited, journalled.

    Run the same command again after a crash or Ctrl-C: it resumes from the journal,
    re-sending only unfinished steps with their original clientTokens (failed steps
    only with --retry-failed). On a terminal it shows a live display and asks before
    a run of more than 20 steps; otherwise it logs a progress line every 5 s or 10%.
    A plan with `waves:` runs them in order and stops before the next wave when one
    does not complete.

    \b
    Exit codes:
      0    all steps succeeded or were already done (and --verify found no drift)
      1    some steps failed, or --verify found drift
      2    invalid input; --dry-run found blocked steps; confirmation declined
      3    aborted by the plan's failure threshold (abort:)
      130  interrupted (Ctrl-C, SIGTERM, or declined to start the next wave)
    """
    import anyio

    from fleetrel.api import run
    from fleetrel.aws import AwsSetupError
    from fleetrel.engine import RunOptions
    from fleetrel.expansion import ExpansionError
    from fleetrel.interrupts import ask, with_signals
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
    if dry_run:
        _preview_and_exit(plan, endpoint_url, region, profile, json_output, targets)
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
        if not click.confirm(f"Apply {count} steps of plan {plan.plan} ({plan.summary()}) to {where}?",
                             err=json_output):
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
                         retry_failed=retry_failed, journal_sensitive=journal_sensitive)
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
                      json_output: bool, targets: tuple[str, ...] = ()) -> NoReturn:
    """`fleetrel plan` and `run --dry-run`: exit 0 when every step can be applied, 2 if not."""
    import anyio

    from fleetrel.aws import AwsSetupError
    from fleetrel.expansion import ExpansionError, selection_problems, empty_warnings, expand_plan, selection_lines, selection_report
    from fleetrel.report import echo_json, print_preview
    from fleetrel.state import read_preview

    chosen = set(targets) or None
    try:
        if plan.needs_expansion:
            plan = anyio.run(lambda: expand_plan(plan, endpoint_url=endpoint_url, region=region, profile=profile,
                                                 targets=chosen))
            problems = selection_problems(plan)
            if problems:
                fail("\n".join(f"{plan.source or plan.plan}: {p}" for p in problems))
        preview = anyio.run(lambda: read_preview(plan, endpoint_url=endpoint_url, region=region, profile=profile,
                                                 targets=chosen))
    except AwsSetupError as exc:
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


def _progress_display(console, title: str, *, to_stderr: bool):
    """A live display on a terminal; plain log lines (no escape codes) otherwise."""
    from fleetrel.progress import LiveDisplay, PlainLog

    if "fleetrel.logs" in sys.modules and sys.modules["fleetrel.logs"].json_enabled():
        return sys.modules["fleetrel.logs"].JsonProgress()  # --log-format json
    if console.is_terminal:
        return LiveDisplay(console, title=title)
    return PlainLog(lambda line: click.echo(line, err=to_stderr))


def _load_or_fail(plan_path: Path):
    from fleetrel.plan import PlanError, load

    try:
        return load(plan_path)
    except PlanError as exc:
        fail(str(exc))


@main.command("plan")
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@_target_options
@click.option("--json", "json_output", is_flag=True, help="Print the preview as JSON.")
def plan_command(plan_path: Path, endpoint_url: str | None, region: str | None, profile: str | None,
                 targets: tuple[str, ...], json_output: bool) -> None:
    """Preview a release plan: read every planned version (GetPackageVersion, at the
    plan's rate), show what each step would change, and which steps cannot succeed and
    why. Sends no update.

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
         DRAFT -> DEPRECATE, DRAFT-only fields on a non-DRAFT version, ...),
         or a selector matched a version another entry names
    """
    _preview_and_exit(_load_or_fail(plan_path), endpoint_url, region, profile, json_output, targets)


@main.command("verify")
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


@main.command("status")
@click.argument("journal_paths", metavar="JOURNAL...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "json_output", is_flag=True, help="Print the status as JSON.")
@click.option("--watch", "watch_live", is_flag=True,
              help="Follow a live run until it ends: elapsed, rate, ETA, wave, per-target progress, pid and host, "
                   "the last record's age (with --json: one JSON object per look).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True, metavar="SECONDS",
              help="With --watch: seconds between looks at the journal.")
def status_command(journal_paths: tuple[Path, ...], json_output: bool, watch_live: bool = False,
                   interval: float = 2.0) -> None:
    """What a run did, from its journal alone: counts per outcome, failures by error
    code, throttles, retries, rate changes, and the command that resumes it.

    A sharded run (`run --shard I/N`): give its shards' journals, or the run's journal
    path (`org.journal.jsonl`, or its stem `org`) to find them beside it. They are merged
    into one report that names the shards missing or not finished.

    \b
    Exit codes (the run's):
      0    complete
      1    finished with failed steps
      2    the journal cannot be read
      3    aborted by the failure threshold
      75   still running: a fleetrel run holds the journal now (ask again later)
      130  interrupted or killed; a sharded run with a shard missing
    """
    from fleetrel.journal import JournalError
    from fleetrel.replay import replay
    from fleetrel.report import echo_json, journal_status, print_status
    from fleetrel.shardreport import find_shard_journals, print_sharded_status, sharded_status

    paths = list(journal_paths)
    if watch_live:
        from fleetrel.watch import watch_command

        try:
            sys.exit(watch_command(paths[0], json_output=json_output, interval=interval))
        except JournalError as exc:
            fail(str(exc))
    try:
        found = find_shard_journals(paths[0]) if len(paths) == 1 and not paths[0].exists() else {}
        paths = list(found.values()) or paths  # a sharded run's journal (or stem): its shards beside it
        if len(paths) == 1 and not found:
            status = journal_status(replay(paths[0]))
            if status["status"] == "running":  # elapsed, rate, ETA, wave, pid, host, last record's age
                from fleetrel.watch import live_fields

                status["live"] = live_fields(paths[0])
            from fleetrel.shards import run_journals

            others = [str(p) for p in run_journals(paths[0]) if p != paths[0]]
            if others:  # the run's other layouts: this journal alone does not tell the whole run
                status["other_journals"] = others
            show = print_status
        else:
            status = sharded_status([replay(path) for path in paths])
            show = print_sharded_status
    except JournalError as exc:
        fail(str(exc))
    if json_output:
        echo_json(status)
    else:
        show(status)
    sys.exit(ExitCode.for_status(status["status"]))


@main.command("report")
@click.argument("journal_path", metavar="JOURNAL", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "markdown", "html"]), default="csv", show_default=True,
              help="csv: the step table alone, one header and one row per step (use --totals for the totals); "
                   "json: JSON lines, one per step, then the totals; markdown: a step table and a totals table.")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file (default: stdout).")
@click.option("--totals", "totals_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the totals to this file as one JSON object (what the last line of "
                   "--format json holds): beside a CSV report, which leaves them out.")
def report_command(journal_path: Path, fmt: str, output_path: Path | None, totals_path: Path | None) -> None:
    """A completion report of a run, from its journal alone: one row per step (target,
    package, version, action, outcome, error code and message, attempts, throttles,
    clientToken, first and last timestamps) in the plan's order, and the run's totals.

    CSV is one table, the steps, which pandas and spreadsheets read as it is; the totals
    (status, counts, attempts, throttles, ...) go to --totals FILE. A CSV cell that begins
    with =, +, -, @, a tab or a carriage return (a package named "-fw", a service message)
    is written after a single quote ('-fw), so that a spreadsheet shows it rather than
    evaluates it as a formula (CSV injection); --format json keeps every value as it is.

    Shows no description, attributes or recipe. Reads the journal in one pass, so a
    100,000-step journal is reported in about the time `fleetrel status` takes. A torn
    last line (a crash mid-write) is ignored and said in the totals (torn_tail). A reader
    that leaves early (`| head`) ends the command quietly, with 141 as `run` does.

    \b
    Exit codes:
      0  the report was written (whatever the run's outcome: see its totals)
      2  the journal cannot be read, or an output file cannot be written
    """
    if fmt == "html":  # one self-contained page: the timeline, per-target progress, failures, steps
        from fleetrel.htmlreport import html_command

        html_command(journal_path, output_path, fail)
        return
    from fleetrel.completion import write_report, write_totals
    from fleetrel.journal import JournalError

    # each file is written beside its target and renamed over it once all are whole:
    # a failed report leaves no half file, and no report without its totals
    partials: dict[Path, Path] = {}
    writing, what = "standard output", "the report"
    try:
        if output_path is None:
            totals = write_report(journal_path, sys.stdout, fmt)
            sys.stdout.flush()
        else:
            writing = output_path
            partials[output_path] = output_path.with_name(output_path.name + ".partial")
            with open(partials[output_path], "w", encoding="utf-8", newline="") as out:
                totals = write_report(journal_path, out, fmt)
        if totals_path is not None:
            writing, what = totals_path, "the totals"
            partials[totals_path] = totals_path.with_name(totals_path.name + ".partial")
            with open(partials[totals_path], "wb") as binary:
                write_totals(totals, binary)
        for final, partial in partials.items():
            partial.replace(final)
    except BrokenPipeError:
        raise  # stdout's reader left: `_Commands.invoke` ends the command quietly (141)
    except JournalError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{writing}: cannot write {what}: {exc.strerror or exc}")
    finally:
        for partial in partials.values():
            partial.unlink(missing_ok=True)


@main.command("undo")
@click.argument("journal_path", metavar="JOURNAL", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the undo plan to this file (default: stdout). Its journal goes beside it when run.")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The run's plan, for its target(s) and limits (default: the plan file the journal names).")
def undo_command(journal_path: Path, output_path: Path | None, plan_path: Path | None) -> None:
    """Write the plan that reverses what a run changed, from its journal.

    A succeeded PUBLISH becomes a DEPRECATE, a succeeded DEPRECATE a PUBLISH, a changed
    default the default it replaced (or unset). Skipped, failed and unfinished steps are
    left alone. What cannot be undone (a published DRAFT cannot return to DRAFT;
    description, attributes, artifact and recipe the run sent) is listed as comments at
    the top of the plan. The undo plan is an ordinary plan: validate, preview (`fleetrel
    plan`), run, resume and verify it as any other.

    \b
    Exit codes:
      0  the undo plan was written (or there is nothing to undo: said on stderr)
      2  the journal cannot be read, is held by a running run, or its targets are unknown
    """
    from fleetrel.journal import JournalError
    from fleetrel.plan import PlanError, ReleasePlan
    from fleetrel.plan import load
    from fleetrel.undo import UndoError, build_undo

    try:
        original = load(plan_path) if plan_path is not None else None
        undo = build_undo(journal_path, original)
    except PlanError as exc:
        fail(str(exc))
    except (JournalError, UndoError) as exc:
        fail(str(exc))
    if undo.plan is not None:
        try:
            ReleasePlan.model_validate(undo.plan)  # what we write must load: a bug here, not the user's
        except ValueError as exc:
            fail(f"the undo plan of {journal_path} does not validate (a fleetrel bug; please report it): {exc}", 1)
    text = undo.text()
    if undo.plan is None:
        click.echo(text, err=True, nl=False)
        return
    if output_path is None:
        click.echo(text, nl=False)
        return
    try:
        output_path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"{output_path}: cannot write the undo plan: {exc.strerror or exc}")
    # What it reverses (a version's status, a default) apart from what it cannot restore (a
    # description, a DRAFT): "28 not undone" beside 28 versions it does undo would read as none.
    entries = undo.plan["versions"]
    versions = sum(len(entry.get("targets") or [None]) for entry in entries)
    defaults = sum(len(entry.get("targets") or [None]) for entry in entries
                   if {"default", "then_default", "unset_default"} & entry.keys())
    notes = len(undo.not_undone)
    click.echo(f"{output_path}: undo plan written: {_count(len(entries), 'entry', 'entries')} put back the status of "
               f"{_count(versions, 'version')}" + (f" and {_count(defaults, 'default')}" if defaults else "")
               + (f"; {_count(notes, 'note')} at its top on what it cannot restore" if notes
                  else "; it restores everything the run changed"), err=True)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


@main.command("hold")
@click.argument("journal_path", metavar="JOURNAL", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reason", help="Why: journalled with the hold.")
def hold_command(journal_path: Path, reason: str | None) -> None:
    """Hold a run before its next wave, from any process that can write beside its journal.

    Writes <JOURNAL>.gate. The run reads it at each wave boundary: held, it journals who
    held it and waits (Ctrl-C stops it as interrupted) until `fleetrel promote JOURNAL`.
    A run between waves already is held at its next boundary. Exit code 0.
    """
    from fleetrel.gates import HOLD, set_gate

    content = set_gate(journal_path, HOLD, reason=reason)
    click.echo(f"{journal_path}: held by {content['who']} before its next wave (fleetrel promote to let it go)", err=True)


@main.command("promote")
@click.argument("journal_path", metavar="JOURNAL", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reason", help="Why: journalled with the decision.")
def promote_command(journal_path: Path, reason: str | None) -> None:
    """Let a held run go on to its next wave (see `fleetrel hold`). Exit code 0."""
    from fleetrel.gates import PROMOTE, set_gate

    content = set_gate(journal_path, PROMOTE, reason=reason)
    click.echo(f"{journal_path}: promoted by {content['who']}", err=True)
