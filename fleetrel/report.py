"""Summaries for people (rich tables) and for programs (dicts ready for JSON).

    print_summary(result)                          # after a run
    print_preview(preview, console)                # `fleetrel plan`
    print_status(journal_status(replay(path)))     # `fleetrel status`

rich writes no escape codes when its console is not a terminal, so the same tables serve
a terminal and a CI log. Each is printed through `Fitted`: at 80 columns (a CI log), or 60,
its cells wrap, then its least useful columns are dropped, never a name cut.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import os
import sys
import shlex
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import click
from rich.console import Console, ConsoleOptions, RenderableType
from rich.cells import cell_len
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from fleetrel.aws import without_userinfo
from fleetrel.events import ExitCode, Outcome, Status
from fleetrel.result import result_document

if TYPE_CHECKING:
    from fleetrel.fleet import PackageFleet
    from fleetrel.replay import RunState
    from fleetrel.result import RunResult
    from fleetrel.state import DriftReport, Preview

MAX_NAMED = 10  # steps named per error code in a text summary (JSON names them all)
# Rows of a per-step table (preview, drift): nobody reads 100,000 rows, and rich lays out
# every row it is given (135 MB and half a minute for a 100k-step drift table).
MAX_ROWS = 200


class _PlainConsole(Console):
    def on_broken_pipe(self) -> None:
        """The reader left (`fleetrel run … | head`): print nothing more. (rich would exit
        with 1 here, which would replace a finished run's exit code.)"""
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, (sys.stderr if self.stderr else sys.stdout).fileno())


def plain_console(*, stderr: bool = False) -> Console:
    """A console that prints text as it is: no markup (a path like `plans/[v2]/x.yaml` is
    text, not a style tag), no highlighting, and quiet once its reader has gone."""
    return _PlainConsole(stderr=stderr, highlight=False, markup=False)


def _console(console: Console | None) -> Console:
    return console if console is not None else plain_console()


# -- tables that fit a CI log ----------------------------------------------------------

def name_column(table: Table, header: str, **options: Any) -> None:
    """A column of names (step keys, targets, labels): never wrapped, and printed through
    `Fitted` as wide as its longest name, so a name is never cut."""
    table.add_column(header, no_wrap=True, overflow="fold", **options)


def text_column(table: Table, header: str, **options: Any) -> None:
    """A column that wraps at spaces and folds a word too long for it (rich's default,
    an ellipsis, would cut a status or a path mid-word)."""
    table.add_column(header, overflow="fold", **options)


_WIDE = 10_000
#: Words up to this long (statuses, error codes, "description") keep a column from being
#: narrower; a longer word in a column that is not a name's folds rather than costing columns.
FOLD_BEYOND = 20


class Fitted:
    """A table that fits its console's width without cutting a name: its cells wrap; if
    its words still cannot fit, the columns in `drop` go, in that order, and a caption
    names them; on a console too narrow even then, each row becomes a line.

        console.print(Fitted(preview_table(preview), drop=("changes", "status")))
    """

    def __init__(self, table: Table, *, drop: Sequence[str] = ()) -> None:
        self.table = table
        self.drop = drop
        for column in table.columns:
            if column.no_wrap:  # a name's column: as wide as its longest name (its header included)
                column.min_width = max((cell_len(str(cell)) for cell in (column.header, *column.cells)), default=1)

    def without(self, dropped: Sequence[str], width: int) -> Table:
        table = copy.copy(self.table)  # columns hold the cells: the copy shares them, lists a few
        table.columns = [column for column in self.table.columns if column.header not in dropped]
        note = f"not shown at {width} columns: {', '.join(dropped)} (a wider terminal or --json shows them)"
        table.caption = f"{table.caption}; {note}" if table.caption else note
        table.caption_justify = "left"
        return table

    @staticmethod
    def minimum(console: Console, options: ConsoleOptions, table: Table) -> int:
        """The narrowest `table` can be: each name's column as wide as its longest name,
        each other column as its longest word, up to `FOLD_BEYOND` (a longer word, a path
        say, folds: it would not fit a CI log in any column), and the borders."""
        measured = copy.copy(table)
        measured.columns = [column if column.no_wrap else dataclasses.replace(column, max_width=FOLD_BEYOND)
                            for column in table.columns]
        # on a wide console: rich measures within the width it is given
        return Measurement.get(console, options.update_width(_WIDE), measured).minimum

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        width = options.max_width
        for count in range(len(self.drop) + 1):
            table = self.without(self.drop[:count], width) if count else self.table
            if self.minimum(console, options, table) <= width:
                yield table
                return
        yield from self.lines()

    def lines(self) -> Iterator[RenderableType]:
        """Row by row: the name on a line of its own, its other cells below it, indented."""
        table = self.table
        if table.title:
            yield Text(str(table.title))
        columns = [list(column.cells) for column in table.columns]
        for row in range(table.row_count):
            first, *rest = (str(cells[row]) if row < len(cells) else "" for cells in columns)
            yield Text(first)
            if rest:
                yield Padding(Text(" | ".join(rest)), (0, 0, 0, 2))


# -- after a run -----------------------------------------------------------------------

def next_steps(result: RunResult) -> list[str]:
    """What the operator can do next, as commands."""
    if result.status == Status.ABORTED:
        return [f"aborted: the failure ratio passed the plan's abort threshold (journal: {result.journal})",
                "fix the cause, then run the same command again to resume; "
                "add --retry-failed to send the failed steps again"]
    if result.stopped_by == "setup":
        return [f"stopped: {result.setup_error}",
                "the unsent steps stay open: renew the credentials (or mend the setup), then run the same "
                f"command again to resume (journal: {result.journal})"]
    if result.status == Status.INTERRUPTED:
        return [f"interrupted: run the same command again to resume (journal: {result.journal})"]
    if result.status == Status.FAILED:
        return ["fix the failed steps, then run the same command with --retry-failed to send them again"]
    return []


def summary_table(result: RunResult) -> Table:
    table = Table(title=f"{result.plan}: {result.status}", show_header=False, title_justify="left")
    name_column(table, "what", style="dim")
    text_column(table, "value", justify="right")
    table.add_row("steps", str(result.steps))
    table.add_row("succeeded", str(result.succeeded))
    table.add_row("skipped (already done)", str(result.skipped))
    table.add_row("failed", str(result.failed))
    for code, count in sorted(result.failures_by_code.items()):
        table.add_row(f"  {code}", str(count))
    if result.unfinished:
        table.add_row("unfinished", str(result.unfinished))
    if result.done_before:
        table.add_row("finished in earlier sessions", str(result.done_before))
    table.add_row("elapsed", f"{result.elapsed:.1f} s")
    table.add_row("calls sent", str(result.attempts))
    table.add_row("mean calls/s", f"{result.calls_per_second:.2f}")
    table.add_row("throttled", f"{result.throttles} ({result.throttled_fraction:.1%})")
    table.add_row("retries", str(result.retries))
    table.add_row("final rate", f"{result.final_rate:.2f}/s")
    return table


def targets_table(counts: dict[str, dict[str, int]], title: str = "per target") -> Table:
    table = Table(title=title, title_justify="left")
    name_column(table, "target")
    for name in ("succeeded", "skipped", "failed", "unfinished"):
        text_column(table, name, justify="right")
    for target, by_outcome in sorted(counts.items()):
        table.add_row(target, *(str(by_outcome.get(o, 0)) for o in ("succeeded", "skipped", "failed", "unfinished")))
    return table


#: The columns of a per-target table given up first when it cannot fit.
TARGETS_DROP = ("skipped", "unfinished")


def print_summary(result: RunResult, console: Console | None = None) -> None:
    """The final summary table (and one per target) and what to do next."""
    console = _console(console)
    if result.targets:
        console.print(Fitted(targets_table(result.targets), drop=TARGETS_DROP))
    console.print(Fitted(summary_table(result)))
    if result.status != Status.COMPLETE:
        console.print(f"run {result.run_id}, journal {result.journal}")
    for hint in next_steps(result):
        console.print(hint)


# -- preview (`fleetrel plan`, `run --dry-run`) ----------------------------------------

OUTCOME_STYLE = {"apply": "green", "unchanged": "dim", "blocked": "bold red"}


def preview_table(preview: Preview) -> Table:
    table = Table(title=f"plan {preview.plan}: what would change", title_justify="left")
    name_column(table, "step")
    for name in ("status", "changes"):
        text_column(table, name)
    if preview.fleet:  # things that report the version now (fleet indexing's $package shadow)
        table.add_column("devices", justify="right", no_wrap=True)
    text_column(table, "outcome")
    for step in preview.steps[:MAX_ROWS]:
        status = f"{step.current or '-'} -> {step.planned or '-'}" if step.current != step.planned else (step.current or "-")
        outcome = step.outcome if step.outcome != "blocked" else f"blocked: {step.reason}"
        if step.outcome == "unchanged":
            outcome = f"unchanged: {step.reason}"
        devices = ["-" if step.devices is None else str(step.devices)] if preview.fleet else []
        table.add_row(step.key, status, ", ".join(step.changes) or "-", *devices, outcome,
                      style=OUTCOME_STYLE[step.outcome])
    return table


def preview_totals(preview: Preview) -> list[str]:
    totals = preview.totals()
    lines = [f"{totals['steps']} steps: {totals['apply']} to apply, {totals['unchanged']} already as planned "
             f"(will be skipped), {totals['blocked']} blocked"]
    for reason, count in sorted(totals["blocked_by_reason"].items()):
        lines.append(f"  blocked ({reason}): {count}")
    in_use = totals["blocked_by_reason"].get("in-use", 0)
    if totals["blocked"] > in_use:
        lines.append("blocked steps will fail if run: fix the plan or the versions first")
    if in_use:
        lines.append("the fleet guard refuses to run this plan: leave the versions in use out, or pass --allow-in-use")
    return lines


def _more_rows(shown: int, total: int, what: str) -> str | None:
    if total <= shown:
        return None
    return f"... and {total - shown} more {what} (the first {shown} are shown; --json lists every one)"


def print_preview(preview: Preview, console: Console | None = None) -> None:
    console = _console(console)
    if preview.fleet_note:  # first: the last lines stay the totals, for a reader who tails them
        console.print(f"note: {preview.fleet_note}")
    console.print(Fitted(preview_table(preview), drop=("changes", "status")))
    more = _more_rows(MAX_ROWS, len(preview.steps), "steps")
    if more:
        console.print(more)
    for line in preview_totals(preview):
        console.print(line)
    for step in preview.warnings[:MAX_ROWS]:
        console.print(f"warning: {step.key}: {step.warning}")


# -- fleet (`fleetrel fleet`) -----------------------------------------------------------

BAR = 20  # cells of the longest bar


def fleet_table(fleet: PackageFleet) -> Table:
    where = f" in {fleet.target}" if fleet.target else ""
    title = f"{fleet.package}{where}: {fleet.things} device(s) report it"
    if not fleet.exists:
        title += " (no such package in the catalog)"
    table = Table(title=title, title_justify="left")
    name_column(table, "version")
    table.add_column("devices", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    text_column(table, "status")
    table.add_column("distribution", no_wrap=True)  # a bar: devices against the most-run version's
    most = max((row.devices or 0 for row in fleet.rows), default=0)
    for row in fleet.rows:
        devices = "?" if row.devices is None else str(row.devices)
        share = "?" if row.share is None else f"{row.share:.1%}"
        status = (row.status or "not in catalog") + (" (default)" if row.default else "")
        bar = "█" * round(BAR * (row.devices or 0) / most) if most else ""
        table.add_row(row.version, devices, share, status, bar)
    return table


def print_fleet(fleets: Sequence[PackageFleet], console: Console | None = None) -> None:
    console = _console(console)
    for fleet in fleets:
        console.print(Fitted(fleet_table(fleet), drop=("distribution",)))
        if not fleet.complete:
            from fleetrel.fleet import MAX_BUCKETS

            console.print(f"note: more versions than fleet indexing answers in one call ({MAX_BUCKETS}): "
                          "the others show '?'")


# -- verify ----------------------------------------------------------------------------

def print_drift(report: DriftReport, console: Console | None = None) -> None:
    console = _console(console)
    if report.matches:
        console.print(f"plan {report.plan}: all {len(report.steps)} versions match the plan")
        return
    table = Table(title=f"plan {report.plan}: drift", title_justify="left")
    drifted = report.drifted
    name_column(table, "step")
    text_column(table, "differs from the plan")
    for step in drifted[:MAX_ROWS]:
        table.add_row(step.key, "; ".join(step.differences))
    console.print(Fitted(table))
    more = _more_rows(MAX_ROWS, len(drifted), "versions that differ")
    if more:
        console.print(more)
    console.print(f"{len(drifted)} of {len(report.steps)} versions differ from the plan")


# -- status (`fleetrel status JOURNAL`) ------------------------------------------------

def _elapsed(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


def resume_command(state: RunState) -> str:
    """The command that continues this run (the plan file as the run recorded it)."""
    plan_file = state.header.get("plan_file") or "PLAN"
    words = ["fleetrel", "run", plan_file, "--journal", str(state.path)]
    shard = state.shard
    if shard:  # a shard's journal is named from the run's by --shard
        from fleetrel.shards import shard_of_path

        named = shard_of_path(state.path)
        words[-1] = str(named[0]) if named else words[-1]
        words += ["--shard", f"{shard['index']}/{shard['count']}"]
    for name, value in state.target.items():
        # journals of fleetrel before 0.2 could hold a password in the endpoint: never show it
        words += [f"--{name.replace('_', '-')}", without_userinfo(value) if name == "endpoint_url" else value]
    for target in sorted(state.scope or ()) if state.shard is None else ():  # what the run was run for
        words += ["--target", target]
    if state.status in (Status.FAILED, Status.ABORTED) and state.counts()["failed"]:
        words.append("--retry-failed")
    return " ".join(shlex.quote(w) for w in words)


def journal_status(state: RunState) -> dict[str, Any]:
    """Everything `fleetrel status` shows, from the journal alone, as plain data."""
    failures: dict[str, list[str]] = {}
    for key, step in state.steps.items():
        if step.outcome == Outcome.FAILED:
            failures.setdefault(step.code or "unknown", []).append(key)
    start = state.header.get("ts")
    changes = [{"at": _elapsed(start, rec.get("ts")), "old": rec.get("old"), "new": rec.get("new"),
                "reason": rec.get("reason"), **({"target": rec["target"]} if "target" in rec else {})}
               for rec in state.rate_changes]
    status = state.status
    # the keys a run's result JSON always holds (`run --json` too), then the journal's own
    out: dict[str, Any] = result_document(
        run_id=state.run_id, plan=state.header.get("plan"), journal=str(state.path), status=status,
        exit_code=ExitCode.for_status(status), failures=failures, targets=state.counts_per_target(),
        steps=len(state.planned_keys()) if state.shard or state.scope is not None else state.header.get("steps"),
        counts=state.counts())
    out.update({
        "plan_file": state.header.get("plan_file"),
        "started": state.started,
        "ended": state.ended if state.ending else None,  # an earlier session's end is not this one's
        "sessions": state.sessions,
        "throttles": state.throttles,
        "retries": state.retries,
        "rate_changes": changes,
        "torn_tail": state.torn_tail,
    })
    if state.gate_decisions:  # fleetrel.gates: who or what held, stopped or let a wave go, and when
        out["gates"] = [{k: v for k, v in rec.items() if k != "event"} for rec in state.gate_decisions]
    if state.fleet_checks:  # fleetrel.fleetcheck: the guard's counts and what overrode it, per session
        out["fleet_checks"] = list(state.fleet_checks)
    if state.shard:
        out["shard"] = dict(state.shard)
    if state.targets_not_run():  # a `--target` run: the others wait for their own command
        out["targets_run"] = sorted(state.scope or ())
        out["targets_not_run"] = state.targets_not_run()
    if status not in (Status.COMPLETE, Status.RUNNING):
        out["resume"] = resume_command(state)
    return out


STATUS_MEANING = {
    Status.COMPLETE: "complete: every step succeeded or was already done",
    Status.FAILED: "finished with failures",
    Status.ABORTED: "aborted: the failure ratio passed the plan's abort threshold",
    Status.INTERRUPTED: "interrupted: stopped or killed before every step finished",
    Status.RUNNING: "running: a fleetrel run holds this journal now",
}


def fleet_check_line(check: dict[str, Any]) -> str:
    """One session's fleet decision, for people."""
    at = f" at {check['ts']}" if check.get("ts") else ""
    if check.get("devices_filter_unread"):
        return f"fleet: not read (--no-fleet-check){at}: a devices: filter matched no version"
    if check.get("skipped"):
        return f"fleet: not read (--no-fleet-check){at}: the guard (at most {check.get('limit')} devices) was not applied"
    in_use = check.get("in_use") or []
    line = f"fleet guard{at}: {check.get('checked', 0)} DEPRECATE step(s) counted against at most {check.get('limit')} devices"
    if in_use:
        named = ", ".join(f"{(i['target'] + ': ') if i.get('target') else ''}{i['package']}/{i['version']} "
                          f"({'?' if i.get('devices') is None else i['devices']})" for i in in_use[:5])
        line += f", let through by --allow-in-use: {named}" + (f" … {len(in_use) - 5} more" if len(in_use) > 5 else "")
    return line


def print_status(status: dict[str, Any], console: Console | None = None) -> None:
    console = _console(console)
    counts = status["counts"]
    table = Table(title=f"run {status['run_id']} of plan {status['plan']}", show_header=False, title_justify="left")
    name_column(table, "what", style="dim")
    text_column(table, "value")
    table.add_row("status", STATUS_MEANING.get(status["status"], status["status"]))
    if status.get("shard"):
        shard = status["shard"]
        table.add_row("shard", f"{shard['index']}/{shard['count']} ({len(shard['targets'])} targets)")
    table.add_row("journal", status["journal"] + (" (torn last line ignored)" if status["torn_tail"] else ""))
    table.add_row("started", status["started"] or "-")
    table.add_row("ended", status["ended"] or "- (no end record: still running, or killed)")
    table.add_row("sessions", str(status["sessions"]))
    table.add_row("steps", str(status["steps"]))
    for outcome in ("succeeded", "skipped", "failed", "unfinished"):
        table.add_row(f"  {outcome}", str(counts[outcome]))
    table.add_row("throttles", str(status["throttles"]))
    table.add_row("retries", str(status["retries"]))
    console.print(Fitted(table))
    if status.get("targets"):
        console.print(Fitted(targets_table(status["targets"]), drop=TARGETS_DROP))
    for code, keys in status["failures"].items():
        named = ", ".join(keys[:MAX_NAMED]) + (f", ... and {len(keys) - MAX_NAMED} more" if len(keys) > MAX_NAMED else "")
        console.print(f"failed with {code} ({len(keys)}): {named}")
    changes = status["rate_changes"]
    if changes:
        shown = changes if len(changes) <= 2 * MAX_NAMED else changes[:MAX_NAMED] + changes[-MAX_NAMED:]
        console.print(f"rate changes ({len(changes)}):")
        for i, change in enumerate(shown):
            if len(changes) > len(shown) and i == MAX_NAMED:
                console.print(f"  ... {len(changes) - len(shown)} more")
            at = f"{change['at']:7.1f}s" if change["at"] is not None else "      ?"
            where = f"{change['target']}: " if change.get("target") else ""
            console.print(f"  {at}  {where}{change['old']} -> {change['new']} /s ({change['reason']})")
    for check in status.get("fleet_checks", ()):
        console.print(fleet_check_line(check))
    for gate in status.get("gates", ()):
        console.print(f"wave {gate.get('wave')}/{gate.get('waves')}: {gate.get('decision')} by {gate.get('by')}"
                      + (f" ({gate['who']})" if gate.get("who") else "") + f" at {gate.get('ts')}"
                      + (f", exit {gate['exit_code']}" if gate.get("by") == "command" else "")
                      + (", timed out" if gate.get("timed_out") else "")
                      + (f": {gate['reason']}" if gate.get("reason") else ""))
    if status.get("other_journals"):
        console.print(f"this run also has journals of another layout beside it: {', '.join(status['other_journals'])} "
                      "(`fleetrel status` with the run's stem merges its shards)")
    if status.get("targets_not_run"):
        console.print(f"run for targets {', '.join(status['targets_run'])} only; not run yet: "
                      f"{', '.join(status['targets_not_run'])} (run them with --target, or leave --target out "
                      "for every target)")
    if status.get("live"):  # a running journal (fleetrel.watch): where it is now
        from fleetrel.watch import live_lines

        for line in live_lines(status, status["live"]):
            console.print(line)
    if "resume" in status:
        console.print("resume with:")
        console.print(status["resume"], soft_wrap=True)  # one line a script or a person can paste, never wrapped


def echo_json(data: Any) -> None:
    """JSON on stdout, for programs."""
    import json

    click.echo(json.dumps(data, indent=2, default=str))
