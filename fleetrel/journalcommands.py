"""The commands that act from a run's journal: `status`, `report`, `undo`, and `hold` /
`promote` between waves.

Loaded by `fleetrel.cli` when one of them is asked for; none of them sends a call.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from fleetrel.cli import fail
from fleetrel.events import ExitCode


@click.command("status")
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
    from fleetrel.journal import JournalError, is_locked
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
            live = None
            if is_locked(paths[0]):  # a running run: one read gives the status and its live fields
                from fleetrel.watch import LiveJournal

                live = LiveJournal(paths[0])
            status = journal_status(live.refresh() if live is not None else replay(paths[0]))
            if live is not None and status["status"] == "running":  # elapsed, rate, ETA, wave, pid, host, last record's age
                status["live"] = live.fields()
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


@click.command("report")
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
    from fleetrel.journal import JournalError, is_locked

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


@click.command("undo")
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
    from fleetrel.journal import JournalError, is_locked
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


@click.command("hold")
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


@click.command("promote")
@click.argument("journal_path", metavar="JOURNAL", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reason", help="Why: journalled with the decision.")
def promote_command(journal_path: Path, reason: str | None) -> None:
    """Let a held run go on to its next wave (see `fleetrel hold`). Exit code 0."""
    from fleetrel.gates import PROMOTE, set_gate

    content = set_gate(journal_path, PROMOTE, reason=reason)
    click.echo(f"{journal_path}: promoted by {content['who']}", err=True)
