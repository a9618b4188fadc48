"""The completion report: one row per step of a run, from its journal, and a totals block.

    with open("report.csv", "w", newline="") as out:
        totals = write_report(Path("spring.journal.jsonl"), out, "csv")
    totals["counts"]      # {'succeeded': 498, 'skipped': 0, 'failed': 2, 'unfinished': 0}
    with open("report.totals.json", "wb") as out:
        write_totals(totals, out)

`fleetrel report JOURNAL` is this; `fleetrel status` stays the short human view.

One pass over the journal's lines (`fleetrel.replay.JournalLines`, orjson): no record is
kept, only a small fixed-size slot per step (what the row shows), and the rows are written
one by one as they are formatted, so a 100,000-step journal is reported in about the time
and memory `status` takes. Rows come in the plan's order (the header names every step),
which is also the order steps first appear; a step that never started is a row too,
`unfinished`. Nothing of the requests is shown but the action: no description,
attributes or recipe (not even their digests), so a report can be shared.

Formats, each streamed as written:
- `csv`: one table, a header row and one row per step, every row as long as the header
  (what pandas, spreadsheets and `csv.DictReader` read), lines ended CRLF (RFC 4180). The totals are not in it: they
  are in the other formats, and `write_totals` writes them as JSON beside a CSV
  (`fleetrel report --totals FILE`). A spreadsheet evaluates a cell that begins with
  `=`, `+`, `-` or `@` (or a tab or carriage return) as a formula, and a package named
  `-fw` or a service message is text the run did not choose: such a cell is written with
  a single quote before it (`'-fw/-2-3`), the OWASP rule against CSV injection, which a
  spreadsheet shows as the text itself. `--format json` has every value as it is.
- `json`: JSON lines, one object per step (`"type": "step"`), then one `"type": "totals"`
  object. Lines rather than one document: a reader (jq, pandas `lines=True`) streams
  them too, and a report cut short still parses up to where it was cut.
- `markdown`: a table of steps and a table of totals.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import orjson

from fleetrel.events import SESSION_STARTS, TERMINAL, Ending, Event, Outcome, run_status
from fleetrel.journal import FORMAT_VERSION, JournalError, is_locked
from fleetrel.plan.steps import parse_step_key
from fleetrel.replay import JournalLines, collector_paused, is_header, open_journal

FORMATS = ("csv", "json", "markdown")
COLUMNS = ("step", "target", "package", "version", "action", "outcome", "code", "message", "attempts",
           "throttles", "client_token", "first_ts", "last_ts")


class StepRow:
    """What the report holds of one step while the journal is read: the row, not the records."""

    __slots__ = ("key", "action", "outcome", "code", "message", "attempts", "throttles", "token", "first", "last")

    def __init__(self, key: str) -> None:
        self.key = key
        self.action = self.outcome = self.code = self.message = self.token = self.first = self.last = None
        self.attempts = self.throttles = 0

    def cells(self) -> dict[str, Any]:
        target, package, version, is_default = parse_step_key(self.key)
        action = self.action
        if action is None and is_default:
            action = "SET_DEFAULT"  # a default step that never started: its key says what it is
        return {"step": self.key, "target": target, "package": package, "version": version,
                "action": action, "outcome": self.outcome or Outcome.UNFINISHED.value, "code": self.code,
                "message": self.message, "attempts": self.attempts, "throttles": self.throttles,
                "client_token": self.token, "first_ts": self.first, "last_ts": self.last}


_OUTCOME_OF = {str(e): str(e).removeprefix("step_") for e in TERMINAL}
_SESSION_STARTS = frozenset(str(e) for e in SESSION_STARTS)
_ENDINGS = {str(e): e for e in Ending}
_STARTED, _ATTEMPT_FAILED = str(Event.STEP_STARTED), str(Event.ATTEMPT_FAILED)
_SHARED: dict[Any, Any] = {}


def action_of(key: str, request: dict[str, Any] | None) -> str | None:
    """The action a step_started record's request says: PUBLISH, DEPRECATE, SET_DEFAULT,
    UNSET_DEFAULT, or None for a field-only update of a draft."""
    request = request or {}
    if "unsetDefaultVersion" in request:
        return "UNSET_DEFAULT"
    if "defaultVersionName" in request or parse_step_key(key)[3]:
        return "SET_DEFAULT"
    return request.get("action")


def read_rows(path: Path) -> tuple[dict[str, Any], dict[str, StepRow], dict[str, Any]]:
    """(header, rows by step key in the plan's order, run facts) from one pass over the journal."""
    with open_journal(path) as file, collector_paused():
        lines = JournalLines(path, file)
        records = iter(lines)
        header = next(records, None)
        if header is None or not is_header(header):
            raise JournalError(f"{path}: not a fleetrel journal (format {FORMAT_VERSION}): the first line is not its header")
        rows = {key: StepRow(key) for key in header.get("step_digests", {})}
        header.pop("step_digests", None)  # 100k digests: not needed once the rows exist
        facts: dict[str, Any] = {"sessions": 0, "ending": None, "ended": None, "retries": 0, "throttles": 0,
                                 "started": header.get("ts"), "last_ts": header.get("ts")}
        _fold(header, rows, facts)
        for record in records:
            _fold(record, rows, facts)
        facts["torn_tail"] = lines.torn_tail
    return header, rows, facts


def _fold(record: dict[str, Any], rows: dict[str, StepRow], facts: dict[str, Any]) -> None:
    event, ts = record["event"], record.get("ts")
    if ts is not None:
        facts["last_ts"] = ts
    if event in _SESSION_STARTS:
        facts["sessions"] += 1
        facts["ending"] = None
        return
    if event in _ENDINGS:
        facts["ending"], facts["ended"] = _ENDINGS[event], ts
        return
    key = record.get("step")
    if key is None:
        return
    row = rows.get(key)
    if row is None:
        row = rows[key] = StepRow(key)
    if row.first is None:
        row.first = ts
    row.last = ts
    row.token = record.get("client_token", row.token)
    attempt = record.get("attempt", 0)
    if attempt > row.attempts:
        row.attempts = attempt
    if event == _STARTED:
        action = action_of(key, record.get("request"))
        row.action = _SHARED.setdefault(action, action)  # one string per action, not one per row
    elif event == _ATTEMPT_FAILED:
        facts["retries"] += 1
        if record.get("throttled"):
            row.throttles += 1
            facts["throttles"] += 1
    elif event in _OUTCOME_OF:
        row.outcome = _OUTCOME_OF[event]
        row.code = record.get("code")
        row.message = record.get("message")


def totals_of(path: Path, header: dict[str, Any], rows: dict[str, StepRow], facts: dict[str, Any]) -> dict[str, Any]:
    counts = {outcome.value: 0 for outcome in Outcome}
    attempts = 0
    for row in rows.values():
        counts[row.outcome or Outcome.UNFINISHED.value] += 1
        attempts += row.attempts
    return {"journal": str(path), "plan": header.get("plan"), "run_id": header.get("run_id"),
            "status": str(run_status(facts["ending"], counts, running=is_locked(path))),
            "steps": len(rows), "counts": counts, "attempts": attempts, "throttles": facts["throttles"],
            "retries": facts["retries"], "sessions": facts["sessions"], "started": facts["started"],
            "ended": facts["ended"] if facts["ending"] else None, "last_ts": facts["last_ts"],
            "torn_tail": facts["torn_tail"]}


def write_report(path: Path, out: IO[str], fmt: str = "csv") -> dict[str, Any]:
    """Write the report of the journal at `path` to `out` in `fmt`; return the totals."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    header, rows, facts = read_rows(path)
    totals = totals_of(path, header, rows, facts)
    WRITERS[fmt](out, (row.cells() for row in rows.values()), totals)
    return totals


def flat_totals(totals: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The totals as (name, value) pairs: the counts spelled out one per line."""
    for name, value in totals.items():
        if name == "counts":
            yield from value.items()
        else:
            yield name, value


def write_totals(totals: dict[str, Any], out: IO[bytes]) -> None:
    """The totals as one JSON document (what `--format json` ends with), for beside a CSV."""
    out.write(orjson.dumps(totals, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))


# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell as written to CSV: None empty, and text a spreadsheet would evaluate behind a quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _write_csv(out: IO[str], cells: Iterator[dict[str, Any]], totals: dict[str, Any]) -> None:
    # RFC 4180's line end, the csv module's default: the writer quotes a cell holding any
    # character of it, so a carriage return inside a message cannot split its row
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in cells:
        writer.writerow([csv_cell(row[name]) for name in COLUMNS])


def _write_json_lines(out: IO[str], cells: Iterator[dict[str, Any]], totals: dict[str, Any]) -> None:
    for row in cells:
        out.write(orjson.dumps({"type": "step", **row}).decode())
        out.write("\n")
    out.write(orjson.dumps({"type": "totals", **totals}).decode())
    out.write("\n")


def _markdown_cell(value: Any) -> str:
    if value is None:
        return ""
    # a pipe ends a cell and a newline ends the table: neither may come through as is
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _write_markdown(out: IO[str], cells: Iterator[dict[str, Any]], totals: dict[str, Any]) -> None:
    out.write(f"# Run {_markdown_cell(totals['run_id'])} of plan {_markdown_cell(totals['plan'])}\n\n")
    out.write("| " + " | ".join(COLUMNS) + " |\n")
    out.write("|" + "---|" * len(COLUMNS) + "\n")
    for row in cells:
        out.write("| " + " | ".join(_markdown_cell(row[name]) for name in COLUMNS) + " |\n")
    out.write("\n## Totals\n\n| total | value |\n|---|---|\n")
    for name, value in flat_totals(totals):
        out.write(f"| {name} | {_markdown_cell(value)} |\n")


WRITERS: dict[str, Callable[[IO[str], Iterator[dict[str, Any]], dict[str, Any]], None]] = {
    "csv": _write_csv, "json": _write_json_lines, "markdown": _write_markdown}
