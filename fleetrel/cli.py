"""The `fleetrel` command line. It knows plans, journals and terminals; never HTTP.

Each command is a thin shell over a module: parse flags, call, render, choose the exit code.
Exit codes: 0 success, 1 some steps failed / drift found, 2 invalid input, 3 aborted by
threshold, 130 interrupted.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fleetrel")
def main() -> None:
    """fleetrel: batch releases for the AWS IoT Software Package Catalog.

    Publish or deprecate hundreds of package versions from one release plan,
    as fast as the service allows, resumable after any crash.
    """


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    """A user error: the message on stderr, no traceback, the exit code."""
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
    sys.exit(EXIT_INVALID if any_invalid else EXIT_OK)


@main.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of a release plan (for editors and CI linters)."""
    import json

    from fleetrel.plan import ReleasePlan

    click.echo(json.dumps(ReleasePlan.model_json_schema(), indent=2, ensure_ascii=False))


@main.command("run")
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Journal file (default: <plan stem>.journal.jsonl in the current directory).")
@click.option("--endpoint-url", help="Service endpoint, e.g. a local `fleetrel emulator`.")
@click.option("--region", help="AWS region (default: the plan's, then your AWS config's).")
@click.option("--profile", help="AWS profile (default: the plan's, then AWS_PROFILE).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Ceiling in calls per second (overrides limits.rate).")
@click.option("--burst", type=click.IntRange(min=1), help="Bucket capacity (overrides limits.burst).")
@click.option("--concurrency", type=click.IntRange(min=1), help="Calls in flight at most (overrides limits.concurrency).")
@click.option("--new-run", is_flag=True, help="Start a new run even if the journal holds one (the old journal is kept, renamed). New clientTokens.")
@click.option("--retry-failed", is_flag=True, help="On resume, send again the steps that failed in earlier sessions.")
@click.option("--journal-sensitive", is_flag=True, help="Store description, attributes and recipe in clear in the journal (default: digests).")
def run_command(plan_path: Path, journal_path: Path | None, endpoint_url: str | None, region: str | None,
                profile: str | None, rate: float | None, burst: int | None, concurrency: int | None,
                new_run: bool, retry_failed: bool, journal_sensitive: bool) -> None:
    """Apply a release plan: one UpdatePackageVersion per step, rate-limited, journalled.

    Run the same command again after a crash or Ctrl-C: it resumes from the journal,
    re-sending only unfinished steps with their original clientTokens.

    Exit codes: 0 all steps succeeded or were already done, 1 some failed, 2 invalid
    input, 3 aborted by the plan's failure threshold, 130 interrupted.
    """
    import anyio

    from fleetrel.aws import AwsSetupError
    from fleetrel.engine import run
    from fleetrel.journal import JournalError
    from fleetrel.plan import PlanError, load
    from fleetrel.report import print_summary

    try:
        plan = load(plan_path)
    except PlanError as exc:
        fail(str(exc))
    try:
        result = anyio.run(lambda: run(
            plan, journal_path=journal_path, endpoint_url=endpoint_url, region=region, profile=profile,
            rate=rate, burst=burst, concurrency=concurrency, new_run=new_run, retry_failed=retry_failed,
            journal_sensitive=journal_sensitive, handle_signals=True))
    except (JournalError, AwsSetupError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    print_summary(result)
    sys.exit(result.exit_code)
