"""Output for CI logs and scripts (issue 22): tables at 80 columns, honest counts, an
ETA from the paced rate, exit codes, one JSON shape, and the emulator's answer to an
operation it does not emulate."""
from __future__ import annotations

import fcntl
import io
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from rich.console import Console

from fleetrel import load_plan, run
from fleetrel.cli import main
from fleetrel.emulator import Emulator
from fleetrel.events import Event, ExitCode, Record, Status
from fleetrel.progress import PlainLog
from fleetrel.replay import replay
from fleetrel.report import journal_status, print_status, print_summary
from fleetrel.testing import FakeClock, FakeIoT, run_virtual
from fleetrel.where import Where
from conftest import CREDENTIALS, REGION


# -- the emulator: an operation it does not emulate -------------------------------------

def test_an_operation_the_emulator_does_not_emulate_is_a_400_naming_it_and_not_retried(emulator: Emulator) -> None:
    # botocore's default retries on: a 5xx would arrive five times
    iot = boto3.client("iot", endpoint_url=emulator.url, region_name=REGION, **CREDENTIALS)
    with pytest.raises(ClientError) as caught:
        iot.get_package_configuration()
    response: dict[str, Any] = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["ResponseMetadata"]["RetryAttempts"] == 0
    assert response["Error"]["Code"] == "UnknownOperationException"
    assert "GetPackageConfiguration" in response["Error"]["Message"]
    assert emulator.record()["operations"] == {"GetPackageConfiguration": {"400": 1}}


# -- status: a run running now is not a run that was killed -----------------------------

def _journal(path: Path, *records: dict[str, Any]) -> Path:
    header = {"event": "run_started", "format": 1, "run_id": "r" * 8, "plan": "p", "steps": 2, "to_do": 2,
              "rate": 5.0, "pid": 1, "host": "h", "step_digests": {"a/1": "x", "a/2": "y"},
              "ts": "2026-12-07T00:00:00Z"}
    path.write_text("".join(json.dumps(r) + "\n" for r in (header, *records)))
    return path


def test_status_of_a_running_run_exits_75_and_of_a_killed_one_130(tmp_path: Path) -> None:
    journal = _journal(tmp_path / "j.jsonl", {"event": "step_succeeded", "step": "a/1", "attempt": 1,
                                              "ts": "2026-12-07T00:00:01Z"})
    killed = CliRunner().invoke(main, ["status", str(journal), "--json"])
    assert killed.exit_code == ExitCode.INTERRUPTED == 130 and json.loads(killed.output)["status"] == "interrupted"
    with journal.open("rb") as held:  # what a run does while it runs: an exclusive lock on its journal
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        running = CliRunner().invoke(main, ["status", str(journal), "--json"])
    assert running.exit_code == ExitCode.RUNNING == 75 and json.loads(running.output)["status"] == "running"
    assert ExitCode.for_status(Status.RUNNING) == 75
    help_text = " ".join(CliRunner().invoke(main, ["status", "--help"]).output.split())
    assert "75 still running" in help_text and "130 interrupted or killed;" in help_text


# -- undo: what it reverses apart from what it cannot restore ---------------------------

def test_undo_says_the_versions_it_reverses_apart_from_the_fields_it_cannot_restore(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    lines: list[dict[str, Any]] = [{"event": "run_started", "format": 1, "run_id": "r", "plan": "p", "plan_digest": "d",
                                    "steps": 3, "step_digests": {"fw/1.0": "a", "fw/1.1": "b", "fw/2.0#default": "c"}}]
    for version in ("1.0", "1.1"):  # deprecated with a new description: the status goes back, the description cannot
        lines += [{"event": "step_started", "step": f"fw/{version}", "client_token": f"t{version}", "attempt": 1,
                   "request": {"action": "DEPRECATE", "description": "hmac:x"}},
                  {"event": "step_succeeded", "step": f"fw/{version}", "client_token": f"t{version}", "attempt": 1}]
    journal.write_text("".join(json.dumps(line) + "\n" for line in [*lines, {"event": "run_finished"}]))
    made = CliRunner().invoke(main, ["undo", str(journal), "-o", str(tmp_path / "undo.yaml")])
    assert made.exit_code == 0, made.output
    assert made.stderr.strip() == (f"{tmp_path / 'undo.yaml'}: undo plan written: 2 entries put back the status of "
                                   "2 versions; 2 notes at its top on what it cannot restore")


# -- tables at 80 columns (a CI log) and 60: wrap or drop columns, never cut a name ------

def words(text: str) -> set[str]:
    """What the output holds between spaces, table borders and commas: a name cut or
    folded across lines is not among them."""
    return {word.strip(",") for word in re.findall(r"[^\s│┃|]+", text)}


def targets_plan(path: Path, regions: dict[str, str], versions: list[str]) -> Path:
    path.write_text(json.dumps({
        "plan": "org-cleanup", "abort": {"max_failure_ratio": 1.0},
        "targets": [{"name": name, "region": region} for name, region in regions.items()],
        "versions": [{"package": "thermostat-fw", "versions": versions[1:], "action": "PUBLISH",
                      "description": "Retired: upgrade to 4.2", "attributes": {"channel": "stable"}},
                     {"package": "thermostat-fw", "version": versions[0], "action": "PUBLISH", "default": True}]}))
    return path


@pytest.mark.parametrize("width", [80, 60])
def test_plan_at_a_ci_logs_width_prints_every_step_key_whole(emulator: Emulator, tmp_path: Path, width: int) -> None:
    versions = ["4.1.10", "4.1.11", "4.1.12"]
    emulator.seed([("thermostat-fw", v) for v in versions])
    single = tmp_path / "cleanup.yaml"
    single.write_text(json.dumps({"plan": "cleanup-thermostat-4.1", "versions": [
        {"package": "thermostat-fw", "versions": versions[:-1], "action": "PUBLISH", "description": "Retired: upgrade to 4.2"},
        {"package": "thermostat-fw", "version": versions[-1], "action": "PUBLISH", "default": True}]}))
    regions = {"staging-eu-west-1": "eu-west-1", "production-us-east-1": "us-east-1"}
    emulator.seed([("thermostat-fw", v) for v in versions], regions=list(regions.values()))
    for plan in (single, targets_plan(tmp_path / "org.yaml", regions, versions)):
        keys = [step["key"] for step in json.loads(
            CliRunner().invoke(main, ["plan", str(plan), "--endpoint-url", emulator.url, "--json"]).stdout)["steps"]]
        shown = CliRunner().invoke(main, ["plan", str(plan), "--endpoint-url", emulator.url],
                                   env={"COLUMNS": str(width)})
        assert shown.exit_code == 0, shown.output
        assert max(map(len, shown.stdout.splitlines())) <= width
        assert set(keys) <= words(shown.stdout), shown.stdout
        assert "…" not in shown.stdout


@pytest.mark.parametrize("width", [80, 60])
def test_the_run_summary_and_status_at_a_ci_logs_width_print_every_target_and_key_whole(
        tmp_path: Path, width: int) -> None:
    regions = {"production-eu-central-1": "eu-central-1", "staging-ap-southeast-2": "ap-southeast-2"}
    versions = ["4.1.10", "4.1.11", "4.1.12", "4.1.99"]  # 4.1.99 is missing: it fails, and status names it
    clients = {name: FakeIoT({f"thermostat-fw/{v}": "DRAFT" for v in versions[:-1]}) for name in regions}
    journal = tmp_path / "org.journal.jsonl"
    result = run_virtual(lambda: run(load_plan(targets_plan(tmp_path / "org.yaml", regions, versions)),
                                     Where(journal_path=journal), client=clients))
    assert result.failed == 2
    summary = Console(width=width, file=io.StringIO())
    print_summary(result, summary)
    status = Console(width=width, file=io.StringIO())
    print_status(journal_status(replay(journal)), status)
    for out in (summary.file.getvalue(), status.file.getvalue()):
        # (but the resume command: one line to paste, never wrapped)
        assert max(len(line) for line in out.splitlines() if not line.startswith("fleetrel run")) <= width
        assert set(regions) <= words(out), out
        assert "…" not in out
    failed = [f"{t}:thermostat-fw/4.1.99" for t in regions]
    assert set(failed) <= words(status.file.getvalue())
    assert "finished in earlier sessions" not in summary.file.getvalue()  # (a label, whole when shown)


# -- progress: the ETA from the paced rate, the rate of the targets running ----------------

class View:
    """A session's read-only view (`fleetrel.events.SessionView`), as a display gets it."""

    def __init__(self, to_do: int, rate: float, ceiling: float,
                 targets: dict[str, tuple[int, float, float]] | None = None) -> None:
        self.to_do, self.rate, self.ceiling, self._targets = to_do, rate, ceiling, targets or {}

    def targets(self) -> dict[str, tuple[int, float, float]]:
        return self._targets


def test_the_eta_leaves_the_first_burst_out() -> None:
    clock, lines = FakeClock(), []
    log = PlainLog(lines.append, every_fraction=0.05, clock=clock)
    log.on_start(View(to_do=89, rate=10.0, ceiling=10.0))
    clock.advance(0.1)  # the bucket's burst of 8 answered at once
    for i in range(8):
        log.on_event(Record.of(Event.STEP_SUCCEEDED, step=f"p/{i}"))
    assert log.snapshot().eta == pytest.approx(81 / 10)  # not 81 * 0.1 / 8, about 1 s
    assert lines[-1].startswith("[    0s] 8/89 (9%)") and lines[-1].endswith("ETA 8s")
    clock.advance(60)  # latency, not the bucket, holds it back: the throughput so far is the slower
    log.on_event(Record.of(Event.STEP_SUCCEEDED, step="p/8"))
    assert log.snapshot().eta == pytest.approx(80 * 60.1 / 9)


def test_a_wave_of_one_target_shows_that_targets_rate_and_the_eta_its_slowest_target() -> None:
    clock, lines = FakeClock(), []
    targets = {f"t{i}": (10, 10.0, 10.0) for i in range(6)}
    targets["t5"] = (40, 5.0, 10.0)
    log = PlainLog(lines.append, every_fraction=1.0, every_seconds=1e9, clock=clock)
    log.on_start(View(to_do=90, rate=55.0, ceiling=60.0, targets=targets))
    log.on_event(Record.of(Event.STEP_STARTED, step="t0:p/1", target="t0"))
    snapshot = log.snapshot()
    assert (snapshot.rate, snapshot.ceiling) == (10.0, 10.0)  # t0 alone runs: not 55/60
    assert "rate 10.0/10 per s" in snapshot.line()
    assert snapshot.eta == pytest.approx(40 / 5.0)  # t5: 40 steps at 5/s
    log.on_event(Record.of(Event.STEP_SUCCEEDED, step="t0:p/1", target="t0"))
    assert log.snapshot().rate == 55.0  # between steps: every target with steps left


# -- one JSON shape for a run's result, from run --json or status --json ---------------------

CORE = ("schema_version", "run_id", "plan", "journal", "status", "exit_code", "steps", "counts", "failures",
        "failures_by_code", "targets")


def test_run_json_and_status_json_give_a_runs_result_one_shape(emulator: Emulator, tmp_path: Path) -> None:
    versions = ["1.0", "1.1", "1.2"]
    emulator.seed([("fw", v) for v in versions[:2]])  # 1.2 is missing: it fails
    plan = tmp_path / "p.yaml"
    plan.write_text(json.dumps({"plan": "p", "abort": {"max_failure_ratio": 1.0},
                                "versions": [{"package": "fw", "versions": versions, "action": "PUBLISH"}]}))
    journal = tmp_path / "j.jsonl"
    ran = CliRunner().invoke(main, ["run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url,
                                    "--json"])
    status = CliRunner().invoke(main, ["status", str(journal), "--json"])
    run_doc, status_doc = json.loads(ran.stdout), json.loads(status.stdout)
    assert ran.exit_code == status.exit_code == 1
    assert {k: run_doc[k] for k in CORE} == {k: status_doc[k] for k in CORE} == {
        "schema_version": 1, "run_id": run_doc["run_id"], "plan": "p", "journal": str(journal), "status": "failed",
        "exit_code": 1, "steps": 3, "counts": {"succeeded": 2, "skipped": 0, "failed": 1, "unfinished": 0},
        "failures": {"ResourceNotFoundException": ["fw/1.2"]}, "failures_by_code": {"ResourceNotFoundException": 1},
        "targets": {}}
    # kept for the scripts that read them: the counts flat in run --json
    assert (run_doc["succeeded"], run_doc["failed"]) == (2, 1)


@pytest.mark.parametrize("width", [80, 60])
def test_a_sharded_runs_status_prints_every_shards_journal_whole(width: int) -> None:
    from fleetrel.shardreport import print_sharded_status

    counts = {"succeeded": 55, "skipped": 0, "failed": 0, "unfinished": 0}
    journals = [f"org-shards.shard-{i}-of-2.journal.jsonl" for i in (1, 2)]
    status = {"plan": "org-spring-release-2026", "shard_count": 2, "status": "complete", "steps": 110,
              "counts": counts, "targets": {"production-eu-central-1": counts}, "throttles": 0, "retries": 0,
              "failures": {}, "missing_shards": [], "unfinished_shards": [],
              "shards": {str(i): {"status": "complete", "counts": counts, "journal": journals[i - 1]} for i in (1, 2)}}
    console = Console(width=width, file=io.StringIO())
    print_sharded_status(status, console)
    out = console.file.getvalue()
    assert max(map(len, out.splitlines())) <= width
    assert {*journals, "production-eu-central-1"} <= words(out) and "…" not in out
