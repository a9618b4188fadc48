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

    # Every command but the smallest is imported only when it is asked for: a command's
    # module is one idea (the catalog's commands, the journal's, the emulator's, the
    # rehearsals), and `fleetrel validate` pays for none of the others' imports.
    # `fleetrel emulator` is defined beside the emulator, so that `python -m fleetrel.emulator`
    # runs the same command.
    lazy_commands = {"emulator": ("fleetrel.emulator.command", "emulator"),
                     # rehearsals that start their own emulator
                     "demo": ("fleetrel.rehearsal", "demo_command"),
                     "bench": ("fleetrel.rehearsal", "bench_command"),
                     # the commands that read or change the catalog
                     "run": ("fleetrel.catalogcommands", "run_command"),
                     "plan": ("fleetrel.catalogcommands", "plan_command"),
                     "verify": ("fleetrel.catalogcommands", "verify_command"),
                     "fleet": ("fleetrel.catalogcommands", "fleet_command"),
                     # the commands that act from a run's journal
                     "status": ("fleetrel.journalcommands", "status_command"),
                     "report": ("fleetrel.journalcommands", "report_command"),
                     "undo": ("fleetrel.journalcommands", "undo_command"),
                     "hold": ("fleetrel.journalcommands", "hold_command"),
                     "promote": ("fleetrel.journalcommands", "promote_command")}

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
