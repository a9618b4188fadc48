"""`fleetrel status` of a sharded run: its shards' journals merged into one report.

    journals = find_shard_journals(Path("org.journal.jsonl"))       # or the paths a user gave
    status = sharded_status([replay(p) for p in journals.values()])
    print_sharded_status(status)

A sharded run (`fleetrel run PLAN --shard I/N`) is N journals, each written by its own
process, maybe on its own machine. Put side by side, they tell one run: the steps of a
shard whose journal is not there are unfinished (never started, or its journal was not
collected), and the run's status is the least finished of its shards':

    running > interrupted (a shard missing counts so) > aborted > failed > complete

so the exit code says what to do next: wait, resume the shards named, fix and retry, or
nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetrel.events import ExitCode, Outcome, Status
from fleetrel.journal import JournalError
from fleetrel.replay import RunState
from fleetrel.report import (MAX_NAMED, STATUS_MEANING, TARGETS_DROP, Fitted, _console, journal_status,
                             name_column, targets_table, text_column)
from fleetrel.result import result_document
from fleetrel.shards import JOURNAL_SUFFIX, shard_journals, shard_of_path

# The least finished first: a merged run is as far as its least finished shard.
_PRECEDENCE = [Status.RUNNING, Status.INTERRUPTED, Status.ABORTED, Status.FAILED, Status.COMPLETE]


def find_shard_journals(path: Path) -> dict[Any, Path]:
    """The shard journals of the run whose unsharded journal is `path` (or `path`.journal.jsonl)."""
    found = shard_journals(path)
    if not found and not path.name.endswith(JOURNAL_SUFFIX):
        found = shard_journals(path.with_name(path.name + JOURNAL_SUFFIX))
    return found


def sharded_status(states: list[RunState]) -> dict[str, Any]:
    """One report from the journals of one sharded run (see the module docstring)."""
    if not states:
        raise JournalError("no shard journals given")
    loose = [str(s.path) for s in states if not s.shard]
    if loose:
        raise JournalError(f"{', '.join(loose)}: not a shard's journal (written without --shard); "
                           "give `fleetrel status` one whole run's journal, or the journals of one sharded run")
    first = states[0]
    for state in states[1:]:
        if state.plan_digest != first.plan_digest or state.shard["count"] != first.shard["count"]:
            raise JournalError(f"{state.path} and {first.path} are shards of two different runs (another plan, or "
                               "another shard count): give the journals of one run")
    count = int(first.shard["count"])
    by_index: dict[int, RunState] = {}
    for state in states:
        index = int(state.shard["index"])
        if index in by_index:
            raise JournalError(f"{state.path} and {by_index[index].path} are both shard {index}/{count}")
        by_index[index] = state
    shards = {index: journal_status(state) for index, state in sorted(by_index.items())}
    missing = [i for i in range(1, count + 1) if i not in by_index]

    counts = {o.value: 0 for o in Outcome}
    targets: dict[str, dict[str, int]] = {}
    failures: dict[str, list[str]] = {}
    covered: set[str] = set()
    for index, status in shards.items():
        covered.update(by_index[index].planned_keys())
        for outcome, n in status["counts"].items():
            counts[outcome] += n
        targets.update(status["targets"])
        for code, keys in status["failures"].items():
            failures.setdefault(code, []).extend(keys)
    # the steps of missing shards: in every header's step list, in no present shard's scope
    # (a plan with `select:` lists only its own targets' matches: a missing shard's are unknown)
    selecting = any("selection" in state.header for state in states)
    planned: dict[str, None] = {}
    for state in states:
        planned.update(dict.fromkeys(state.header.get("step_digests", {})))
    for key in planned:
        if key not in covered and not selecting:
            counts[Outcome.UNFINISHED.value] += 1
            per_target = targets.setdefault(key.split(":", 1)[0], {o.value: 0 for o in Outcome})
            per_target[Outcome.UNFINISHED.value] += 1
    statuses = [Status(s["status"]) for s in shards.values()] + [Status.INTERRUPTED] * len(missing)
    status = next(s for s in _PRECEDENCE if s in statuses)
    named = shard_of_path(first.path)
    # the keys of every run's result JSON (`fleetrel.result`), then the shards'
    out = result_document(
        run_id=first.run_id, plan=first.header.get("plan"), journal=str(named[0] if named else first.path),
        status=status, exit_code=ExitCode.for_status(status), counts=counts, failures=failures, targets=targets,
        # None: shards with a selection of their own are missing, so how many steps is unknown
        steps=None if selecting and missing else len(covered) if selecting else len(planned))
    return {
        **out,
        "plan_file": first.header.get("plan_file"),
        "throttles": sum(s["throttles"] for s in shards.values()),
        "retries": sum(s["retries"] for s in shards.values()),
        "shard_count": count,
        "missing_shards": missing,
        "unfinished_shards": [i for i, s in shards.items() if s["status"] != Status.COMPLETE],
        "shards": {str(i): {k: s.get(k) for k in ("journal", "run_id", "status", "counts", "started", "ended",
                                                   "sessions", "resume")} for i, s in shards.items()},
    }


def print_sharded_status(status: dict[str, Any], console: Any = None) -> None:
    from rich.table import Table

    console = _console(console)
    count = status["shard_count"]
    table = Table(title=f"plan {status['plan']}: {count} shards", title_justify="left")
    name_column(table, "shard", justify="right")
    for name in ("status", "succeeded", "skipped", "failed", "unfinished"):
        text_column(table, name, justify="right" if name != "status" else "left")
    name_column(table, "journal")
    for index in range(1, count + 1):
        shard = status["shards"].get(str(index))
        if shard is None:
            table.add_row(f"{index}/{count}", "missing", "", "", "", "", "- (no journal)")
            continue
        c = shard["counts"]
        table.add_row(f"{index}/{count}", str(shard["status"]), *(str(c[o]) for o in
                      ("succeeded", "skipped", "failed", "unfinished")), shard["journal"])
    console.print(Fitted(table, drop=(*TARGETS_DROP, "succeeded", "failed")))
    if status["targets"]:
        console.print(Fitted(targets_table(status["targets"]), drop=TARGETS_DROP))
    c = status["counts"]
    console.print(f"status: {STATUS_MEANING.get(status['status'], status['status'])}")
    steps = (f"{status['steps']} steps" if status["steps"] is not None else
             f"{sum(c.values())} steps known (steps of shard {', '.join(map(str, status['missing_shards']))} not known "
             "until it expands its selectors)")
    console.print(f"{steps}: {c['succeeded']} succeeded, {c['skipped']} skipped, {c['failed']} failed, "
                  f"{c['unfinished']} unfinished; {status['throttles']} throttles, {status['retries']} retries")
    for code, keys in status["failures"].items():
        named = ", ".join(keys[:MAX_NAMED]) + (f", ... and {len(keys) - MAX_NAMED} more" if len(keys) > MAX_NAMED else "")
        console.print(f"failed with {code} ({len(keys)}): {named}")
    if status["missing_shards"]:
        shown = ", ".join(f"{i}/{count}" for i in status["missing_shards"])
        console.print(f"missing shards (no journal found): {shown}: run them with --shard, or collect their journals")
    for index in status["unfinished_shards"]:
        resume = status["shards"][str(index)].get("resume")
        if resume:
            console.print(f"shard {index}/{count} not complete; resume with:")
            console.print(resume, soft_wrap=True)  # one line, never wrapped
