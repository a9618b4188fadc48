"""Output for CI logs and scripts (issue 22): tables at 80 columns, honest counts, an
ETA from the paced rate, exit codes, one JSON shape, and the emulator's answer to an
operation it does not emulate."""
from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from fleetrel.cli import main
from fleetrel.emulator import Emulator
from fleetrel.events import ExitCode, Status
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
