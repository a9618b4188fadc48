"""`fleetrel report JOURNAL`: the per-step completion report of a real run, in each format."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from fleetrel.cli import main
from fleetrel.completion import COLUMNS
from fleetrel.plan.models import parse_step_key
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


def csv_tables(text: str) -> tuple[list[dict], dict[str, str]]:
    steps_part, totals_part = text.split("\n\n", 1)
    steps = list(csv.DictReader(io.StringIO(steps_part)))
    totals = {row["total"]: row["value"] for row in csv.DictReader(io.StringIO(totals_part))}
    return steps, totals


def test_csv_report_of_a_real_run(emulator, tmp_path):
    journal = run_plan(emulator, tmp_path)
    code, text = report(journal)
    assert code == 0, text
    rows, totals = csv_tables(text)
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
    assert int(totals["throttles"]) == throttled == sum(int(r["throttles"]) for r in rows)
    assert (totals["succeeded"], totals["failed"], totals["unfinished"]) == ("6", "2", "0")
    assert totals["status"] == "failed" and totals["plan"] == "report-test" and totals["torn_tail"] == "False"
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
    run_virtual(lambda: run(load_plan(plan), client=iot, journal_path=journal))
    code, text = report(journal, "--format", "json")
    rows = [json.loads(line) for line in text.splitlines()][:-1]
    assert [(r["step"], r["action"], r["outcome"]) for r in rows] == [
        (f"{PKG}/2.0", "PUBLISH", "succeeded"), (f"{PKG}/2.0#default", "SET_DEFAULT", "succeeded")]
    assert rows[1]["version"] == "2.0" and rows[1]["client_token"] != rows[0]["client_token"]
