"""`fleetrel report JOURNAL`: the per-step completion report of a real run, in each format."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from fleetrel.where import Where
from fleetrel.cli import main
from fleetrel.completion import COLUMNS
from fleetrel.plan.steps import parse_step_key
from support import journal_records, write_plan

PKG = "thermostat-fw"
SECRET = "do-not-print-this-description"


def run_plan(emulator, tmp_path: Path, seeded: int = 6, missing: int = 2) -> Path:
    """A run of `seeded + missing` PUBLISH steps: the missing versions fail (404)."""
    versions = [f"6.0.{i}" for i in range(seeded + missing)]
    emulator.seed([(PKG, v) for v in versions[:seeded]])
    emulator.configure(operations={"UpdatePackageVersion": {"rate": 40, "burst": 2}})  # some throttles
    entries = [{"package": PKG, "versions": versions, "action": "PUBLISH", "description": SECRET,
                "attributes": {"channel": SECRET}}]
    plan = write_plan(tmp_path / "p.yaml", entries, name="report-test", abort={"max_failure_ratio": 1.0})
    journal = tmp_path / "p.journal.jsonl"
    ran = CliRunner().invoke(main, ["run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url])
    assert ran.exit_code == (1 if missing else 0), ran.output  # the missing versions failed
    return journal


def report(journal: Path, *args: str) -> tuple[int, str]:
    out = CliRunner().invoke(main, ["report", str(journal), *args])
    return out.exit_code, out.output


def csv_table(text: str) -> list[dict]:
    """The CSV report as one table: every row (header included) as long as the header."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows and rows[0] == list(COLUMNS) and all(len(row) == len(COLUMNS) for row in rows), rows
    try:
        import pandas  # not a dependency: read as pandas reads it when it is there
    except ImportError:
        pass
    else:
        frame = pandas.read_csv(io.StringIO(text, newline=""), dtype=str, keep_default_na=False)
        assert list(frame.columns) == list(COLUMNS) and len(frame) == len(rows) - 1
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_report_of_a_real_run(emulator, tmp_path):
    journal = run_plan(emulator, tmp_path)
    code, text = report(journal, "--totals", str(tmp_path / "totals.json"))
    assert code == 0, text
    rows = csv_table(text)
    totals = json.loads((tmp_path / "totals.json").read_text())
    last_line = json.loads(report(journal, "--format", "json")[1].splitlines()[-1])
    assert {"type": "totals", **totals} == last_line  # the totals --format json ends with
    assert list(rows[0]) == list(COLUMNS)
    assert [r["version"] for r in rows] == [f"6.0.{i}" for i in range(8)]  # the plan's order
    assert {r["outcome"] for r in rows[:6]} == {"succeeded"}
    for row in rows[6:]:
        assert row["outcome"] == "failed" and row["code"] == "ResourceNotFoundException" and row["message"]
    assert all(r["action"] == "PUBLISH" and r["package"] == PKG and r["target"] == "" for r in rows)
    # what the journal says, step by step: tokens, attempts, throttles
    records = journal_records(journal)
    for row in rows:
        mine = [r for r in records if r.get("step") == row["step"]]
        assert row["client_token"] == mine[0]["client_token"]
        assert int(row["attempts"]) == max(r["attempt"] for r in mine)
        assert int(row["throttles"]) == sum(1 for r in mine if r.get("throttled"))
        assert row["first_ts"] == mine[0]["ts"] and row["last_ts"] == mine[-1]["ts"]
    throttled = emulator.record()["throttled"].get("UpdatePackageVersion", 0)
    assert totals["throttles"] == throttled == sum(int(r["throttles"]) for r in rows)
    assert totals["counts"] == {"succeeded": 6, "skipped": 0, "failed": 2, "unfinished": 0}
    assert totals["status"] == "failed" and totals["plan"] == "report-test" and totals["torn_tail"] is False
    assert SECRET not in text and "hmac:" not in text  # no request text, not even its digest


def test_json_lines_and_markdown(emulator, tmp_path):
    journal = run_plan(emulator, tmp_path, seeded=3, missing=1)
    code, text = report(journal, "--format", "json")
    assert code == 0
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["type"] for line in lines] == ["step"] * 4 + ["totals"]
    assert lines[-1]["counts"] == {"succeeded": 3, "skipped": 0, "failed": 1, "unfinished": 0}
    assert lines[3]["code"] == "ResourceNotFoundException" and lines[0]["target"] is None
    code, text = report(journal, "--format", "markdown")
    assert code == 0 and SECRET not in text
    table = [line for line in text.splitlines() if line.startswith(f"| {PKG}/")]
    assert len(table) == 4 and all(line.count(" | ") == len(COLUMNS) - 1 for line in table)


def test_torn_last_line_and_unstarted_steps(emulator, tmp_path):
    versions = [f"7.0.{i}" for i in range(5)]
    emulator.seed([(PKG, v) for v in versions])
    plan = write_plan(tmp_path / "p.yaml", versions, name="torn", concurrency=1)
    journal = tmp_path / "p.journal.jsonl"
    assert CliRunner().invoke(main, ["run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url]).exit_code == 0
    # a run killed after its second step finished, in the middle of writing a record
    lines = journal.read_bytes().split(b"\n")
    second_done = next(i for i, line in enumerate(lines) if b"step_succeeded" in line and b"7.0.1" in line)
    journal.write_bytes(b"\n".join(lines[:second_done + 1]) + b'\n{"event": "step_sta')
    code, text = report(journal, "--format", "json")
    assert code == 0, text
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r.get("outcome") for r in rows[:-1]] == ["succeeded", "succeeded", "unfinished", "unfinished", "unfinished"]
    assert rows[4]["attempts"] == 0 and rows[4]["client_token"] is None
    assert rows[-1]["torn_tail"] is True and rows[-1]["status"] == "interrupted"


def test_output_file_and_bad_journals(emulator, tmp_path):
    journal = run_plan(emulator, tmp_path, seeded=2, missing=0)
    out = tmp_path / "out" / "report.md"
    out.parent.mkdir()
    code, text = report(journal, "--format", "markdown", "-o", str(out))
    assert code == 0 and text == "" and out.read_text().startswith("# Run ")
    assert list(out.parent.iterdir()) == [out]  # no partial file left behind
    code, text = report(tmp_path / "nope.jsonl")
    assert code == 2 and "no such journal" in text
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    code, text = report(other)
    assert code == 2 and "not a fleetrel journal" in text
    corrupt = tmp_path / "corrupt.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    corrupt.write_text("".join([*lines[:2], "{not json\n", *lines[2:]]))
    code, text = report(corrupt)
    assert code == 2 and "corrupt journal line" in text


def test_step_keys_parse_back():
    assert parse_step_key("fw/1.0") == (None, "fw", "1.0", False)
    assert parse_step_key("eu-prod:fw/1.0") == ("eu-prod", "fw", "1.0", False)
    assert parse_step_key("eu-prod:fw/1.0#default") == ("eu-prod", "fw", "1.0", True)
    assert parse_step_key("fw/1.0#default") == (None, "fw", "1.0", True)


def test_default_steps_have_their_own_rows(tmp_path):
    from fleetrel import load_plan, run
    from fleetrel.testing import FakeIoT, run_virtual

    plan = write_plan(tmp_path / "p.yaml", [{"package": PKG, "version": "2.0", "action": "PUBLISH", "default": True}])
    journal = tmp_path / "j.jsonl"
    iot = FakeIoT({f"{PKG}/2.0": "DRAFT"})
    run_virtual(lambda: run(load_plan(plan), Where(journal_path=journal), client=iot))
    code, text = report(journal, "--format", "json")
    rows = [json.loads(line) for line in text.splitlines()][:-1]
    assert [(r["step"], r["action"], r["outcome"]) for r in rows] == [
        (f"{PKG}/2.0", "PUBLISH", "succeeded"), (f"{PKG}/2.0#default", "SET_DEFAULT", "succeeded")]
    assert rows[1]["version"] == "2.0" and rows[1]["client_token"] != rows[0]["client_token"]


# -- issue 21 finding 10: CSV injection; issue 22: one table, a reader that leaves --------

def header_only_journal(path: Path, keys: list[str]) -> Path:
    """The journal of a run killed right after its header: every step a row, `unfinished`."""
    from fleetrel.events import Event
    from fleetrel.journal import FORMAT_VERSION

    header = {"format": FORMAT_VERSION, "run_id": "r", "plan": "p", "event": str(Event.RUN_STARTED),
              "ts": "2026-12-01T10:00:00.000000Z", "step_digests": {key: "0" * 16 for key in keys}}
    path.write_text(json.dumps(header) + "\n")
    return path


def test_csv_cells_a_spreadsheet_would_evaluate_are_written_behind_a_quote(emulator, tmp_path):
    """A package "-fw" and a version "-2-3" pass validation; a service message is the
    service's text. In CSV, a cell that begins with = + - @ tab or CR gets a ' first."""
    from fleetrel.events import Event

    emulator.seed([("-fw", "-2-3")])
    plan = write_plan(tmp_path / "p.yaml", ["-2-3"], package="-fw")
    journal = tmp_path / "p.journal.jsonl"
    ran = CliRunner().invoke(main, ["run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url])
    assert ran.exit_code == 0, ran.output
    code, text = report(journal)
    assert code == 0, text
    [row] = csv_table(text)
    assert (row["step"], row["package"], row["version"]) == ("'-fw/-2-3", "'-fw", "'-2-3")
    assert row["outcome"] == "succeeded" and row["attempts"] == "1" and row["client_token"][0] not in "'=+-@"
    assert json.loads(report(journal, "--format", "json")[1].splitlines()[0])["package"] == "-fw"  # as it is

    # the service's messages, as a run journals a refused step
    messages = {"1.0": '=HYPERLINK("http://x","y")', "1.1": "+1+2", "1.2": "@SUM(A1:A2)",
                "1.3": "\t=1", "1.4": "\r=1", "1.5": "-1", "1.6": "fine\rfine = fine"}
    failed = header_only_journal(tmp_path / "failed.jsonl", [f"fw/{v}" for v in messages])
    with open(failed, "a") as out:
        for version, message in messages.items():
            for event in (Event.STEP_STARTED, Event.STEP_FAILED):
                out.write(json.dumps({"event": str(event), "step": f"fw/{version}", "attempt": 1,
                                      "client_token": "t" * 36, "ts": "2026-12-01T10:00:01.000000Z",
                                      "code": "ValidationException", "message": message}) + "\n")
    code, text = report(failed)
    assert code == 0, text
    rows = {row["step"]: row for row in csv_table(text)}
    for version, message in messages.items():
        row = rows[f"fw/{version}"]
        assert row["outcome"] == "failed"
        assert row["message"] == (message if version == "1.6" else "'" + message)
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values()), row
    assert json.loads(report(failed, "--format", "json")[1].splitlines()[0])["message"] == messages["1.0"]


def test_totals_file_beside_a_csv_file_and_no_partial_left(emulator, tmp_path):
    journal = run_plan(emulator, tmp_path, seeded=2, missing=0)
    out, totals = tmp_path / "out" / "report.csv", tmp_path / "out" / "report.totals.json"
    out.parent.mkdir()
    code, text = report(journal, "-o", str(out), "--totals", str(totals))
    assert code == 0 and text == ""
    assert [row["outcome"] for row in csv_table(out.read_text())] == ["succeeded", "succeeded"]
    assert json.loads(totals.read_text())["counts"]["succeeded"] == 2
    assert sorted(out.parent.iterdir()) == sorted([out, totals])
    # a totals file that cannot be written: neither file is replaced, no partial left
    out.unlink()
    code, text = report(journal, "-o", str(out), "--totals", str(tmp_path / "no-such-dir" / "t.json"))
    assert code == 2 and "no-such-dir" in text and "cannot write the totals" in text
    assert list(out.parent.iterdir()) == [totals]


def test_a_reader_that_leaves_after_one_line_ends_the_report_quietly(tmp_path):
    """`fleetrel report J --format json | grep -m1 failed`: 141, as `run` does, and nothing
    on stderr. The report (a header-only journal of 20,000 steps: 20,000 unfinished rows,
    over 3 MB) is far larger than a pipe holds, so the reader leaves before it is written."""
    import subprocess
    import sys

    journal = header_only_journal(tmp_path / "j.jsonl", [f"fw/1.0.{i}" for i in range(20_000)])
    for fmt in ("json", "csv"):
        process = subprocess.Popen([sys.executable, "-m", "fleetrel", "report", str(journal), "--format", fmt],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        first = process.stdout.readline()
        process.stdout.close()  # the reader leaves
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 141, stderr
        assert first.startswith(b'{"type":"step"' if fmt == "json" else b"step,") and stderr == ""
