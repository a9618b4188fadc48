"""The engine against the emulator over real HTTP: throttling, faults, kill and resume."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from fleetrel.where import Where
from fleetrel import RunOptions, load_plan, run
from fleetrel.events import TERMINAL
from fleetrel.journal import JournalError, Journal
from fleetrel.replay import replay
from support import journal_records, update_calls, write_plan as _write_plan

PKG = "thermostat-fw"


def write_plan(path: Path, versions: list[dict], **limits) -> Path:
    return _write_plan(path, versions, name="engine-test", **{"rate": 50, "burst": 10, "concurrency": 8, **limits})


def version_names(n: int) -> list[str]:
    return [f"4.{i // 100}.{i % 100}" for i in range(n)]


def boto(url: str):
    return boto3.client("iot", region_name="us-east-1", endpoint_url=url, aws_access_key_id="t",
                        aws_secret_access_key="t", config=Config(retries={"total_max_attempts": 1}))


def statuses(url: str, package: str, versions: list[str]) -> dict[str, str]:
    client = boto(url)
    return {v: client.get_package_version(packageName=package, versionName=v)["status"] for v in versions}


def terminal_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in journal_records(path):
        if rec["event"] in TERMINAL:
            counts[rec["step"]] = counts.get(rec["step"], 0) + 1
    return counts


async def test_all_steps_succeed_under_throttling_and_every_attempt_passes_the_limiter(emulator, tmp_path):
    versions = version_names(60)
    emulator.seed([(PKG, v) for v in versions])
    emulator.configure(operations={"UpdatePackageVersion": {"rate": 20, "burst": 5}})
    plan = load_plan(write_plan(tmp_path / "p.yaml", [{"package": PKG, "versions": versions, "action": "PUBLISH"}],
                                rate=20, burst=5))
    result = await run(plan, Where(journal_path=tmp_path / "j.jsonl", endpoint_url=emulator.url))

    assert result.status == "complete" and result.succeeded == 60 and result.failed == 0
    record = emulator.record()
    # botocore sent nothing on its own: the service saw exactly the attempts the engine counted
    assert update_calls(emulator) == result.attempts
    assert record["throttled"].get("UpdatePackageVersion", 0) == result.throttles
    assert result.throttles <= 0.2 * result.attempts
    assert set(statuses(emulator.url, PKG, versions).values()) == {"PUBLISHED"}
    assert all(n == 1 for n in terminal_counts(tmp_path / "j.jsonl").values())


async def test_faults_do_not_lose_steps(emulator, tmp_path):
    versions = version_names(80)
    emulator.seed([(PKG, v) for v in versions])
    emulator.configure(fail_rate=0.10, drop_rate=0.05)
    plan = load_plan(write_plan(tmp_path / "p.yaml", [{"package": PKG, "versions": versions, "action": "PUBLISH"}],
                                rate=200, burst=20))
    result = await run(plan, Where(journal_path=tmp_path / "j.jsonl", endpoint_url=emulator.url))

    assert result.status == "complete", result.failures_by_code
    assert result.succeeded == 80 and result.retries > 0
    emulator.configure(fail_rate=0.0, drop_rate=0.0)
    assert set(statuses(emulator.url, PKG, versions).values()) == {"PUBLISHED"}
    tokens = emulator.record()["tokens"]
    assert all(len(set(tokens[f"{PKG}/{v}"])) == 1 for v in versions)


async def test_permanent_errors_end_at_once_and_done_steps_are_skipped(emulator, tmp_path):
    emulator.seed([{"package": PKG, "version": "1.0.0"},
                   {"package": PKG, "version": "2.0.0", "status": "PUBLISHED"}])
    plan = load_plan(write_plan(tmp_path / "p.yaml", [
        {"package": PKG, "version": "1.0.0", "action": "DEPRECATE"},   # DRAFT → DEPRECATED is not allowed
        {"package": PKG, "version": "2.0.0", "action": "PUBLISH"},     # already PUBLISHED
        {"package": PKG, "version": "9.9.9", "action": "PUBLISH"},     # does not exist
    ]))
    result = await run(plan, Where(journal_path=tmp_path / "j.jsonl", endpoint_url=emulator.url))

    outcomes = {o.key: o for o in result.outcomes}
    assert outcomes[f"{PKG}/1.0.0"].outcome == "failed" and outcomes[f"{PKG}/1.0.0"].attempts == 1
    assert outcomes[f"{PKG}/2.0.0"].outcome == "skipped"
    assert outcomes[f"{PKG}/9.9.9"].outcome == "failed" and outcomes[f"{PKG}/9.9.9"].code == "ResourceNotFoundException"
    assert result.status == "failed" and result.exit_code == 1
    assert update_calls(emulator) == 3  # each sent exactly once
    assert statuses(emulator.url, PKG, ["1.0.0"]) == {"1.0.0": "DRAFT"}
    failed = [r for r in journal_records(tmp_path / "j.jsonl") if r["event"] == "step_failed"]
    assert {r["step"]: r["permanent"] for r in failed} == {f"{PKG}/1.0.0": True, f"{PKG}/9.9.9": True}

    # a resume does not send rejected steps again
    emulator.reset_record()
    again = await run(plan, Where(journal_path=tmp_path / "j.jsonl", endpoint_url=emulator.url))
    assert again.attempts == 0 and again.done_before == 3 and again.status == "failed"
    assert update_calls(emulator) == 0


async def test_journal_holds_no_credential_and_no_sensitive_text(emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASENTINELKEYID0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sentinel-secret-access-key")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "sentinel-session-token")
    emulator.seed([(PKG, "1.0.0")])
    plan = load_plan(write_plan(tmp_path / "p.yaml", [{
        "package": PKG, "version": "1.0.0", "action": "PUBLISH", "description": "sentinel-description",
        "attributes": {"channel": "sentinel-attribute"}, "recipe": '{"sentinel": "recipe"}'}]))
    result = await run(plan, Where(journal_path=tmp_path / "j.jsonl", endpoint_url=emulator.url))
    assert result.succeeded == 1
    text = (tmp_path / "j.jsonl").read_text()
    assert "AKIASENTINELKEYID0000" not in text and "sentinel" not in text
    started = next(r for r in journal_records(tmp_path / "j.jsonl") if r["event"] == "step_started")
    # keyed with the run's key, which is not in the journal: a guessed text cannot be confirmed
    assert started["request"]["description"].startswith("hmac:")
    unkeyed = hashlib.sha256(json.dumps("sentinel-description").encode()).hexdigest()[:16]
    assert unkeyed not in text and "sha256:" not in text
    assert oct(os.stat(tmp_path / "j.jsonl").st_mode & 0o777) == "0o600"
    assert oct(os.stat(tmp_path / "j.jsonl.key").st_mode & 0o777) == "0o600"


async def test_second_run_on_one_journal_is_refused(emulator, tmp_path):
    emulator.seed([(PKG, "1.0.0")])
    plan_path = write_plan(tmp_path / "p.yaml", [{"package": PKG, "version": "1.0.0", "action": "PUBLISH"}])
    with Journal.open(tmp_path / "j.jsonl"):
        proc = subprocess.run([sys.executable, "-m", "fleetrel", "run", str(plan_path), "--journal",
                               str(tmp_path / "j.jsonl"), "--endpoint-url", emulator.url],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "another fleetrel run holds this journal" in proc.stderr and "Traceback" not in proc.stderr
    assert update_calls(emulator) == 0


async def test_changed_plan_is_refused_and_new_run_gets_new_tokens(emulator, tmp_path):
    emulator.seed([(PKG, "1.0.0"), (PKG, "1.0.1")])
    journal = tmp_path / "j.jsonl"
    first = load_plan(write_plan(tmp_path / "p.yaml", [{"package": PKG, "version": "1.0.0", "action": "PUBLISH"}]))
    assert (await run(first, Where(journal_path=journal, endpoint_url=emulator.url))).succeeded == 1
    # the same version deprecated, then published again in a later run: all three must apply
    second = load_plan(write_plan(tmp_path / "p.yaml", [{"package": PKG, "version": "1.0.0", "action": "DEPRECATE"},
                                                        {"package": PKG, "version": "1.0.1", "action": "PUBLISH"}]))
    with pytest.raises(JournalError, match=r"(?s)another version of plan.*added: thermostat-fw/1.0.1.*Start a new run"):
        await run(second, Where(journal_path=journal, endpoint_url=emulator.url))
    assert (await run(second, Where(journal_path=journal, endpoint_url=emulator.url), options=RunOptions(new_run=True))).succeeded == 2
    assert (await run(first, Where(journal_path=journal, endpoint_url=emulator.url), options=RunOptions(new_run=True))).succeeded == 1
    assert statuses(emulator.url, PKG, ["1.0.0"]) == {"1.0.0": "PUBLISHED"}
    assert len(set(emulator.record()["tokens"][f"{PKG}/1.0.0"])) == 3  # a new token per run
    kept = [p for p in tmp_path.glob("j.jsonl.*") if not p.name.endswith(".key")]
    assert len(kept) == 2  # old journals kept, renamed (each beside its run key)
    assert all(p.with_name(p.name + ".key").exists() for p in kept)


def test_kill_nine_three_times_then_resume_loses_nothing_and_doubles_nothing(emulator, tmp_path):
    versions = version_names(90)
    emulator.seed([(PKG, v) for v in versions])
    emulator.configure(operations={"UpdatePackageVersion": {"rate": 30, "burst": 5}}, latency_ms=20)
    plan_path = write_plan(tmp_path / "p.yaml", [{"package": PKG, "versions": versions, "action": "PUBLISH"}],
                           rate=30, burst=5)
    journal = tmp_path / "j.jsonl"
    cmd = [sys.executable, "-m", "fleetrel", "run", str(plan_path), "--journal", str(journal),
           "--endpoint-url", emulator.url]
    for kill_after in (10, 35, 60):  # terminal records in the journal when we pull the plug
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while sum(terminal_counts(journal).values()) < kill_after if journal.exists() else True:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.02)  # polling the journal for a condition, not a timing assumption
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr

    assert set(statuses(emulator.url, PKG, versions).values()) == {"PUBLISHED"}
    tokens = emulator.record()["tokens"]
    assert all(len(set(tokens[f"{PKG}/{v}"])) == 1 for v in versions), "a version saw two clientTokens"
    counts = terminal_counts(journal)
    assert len(counts) == 90 and set(counts.values()) == {1}
    state = replay(journal)
    assert state.sessions == 4 and state.status == "complete"


def test_ctrl_c_stops_gracefully_journals_and_the_same_command_resumes(emulator, tmp_path):
    versions = version_names(60)
    emulator.seed([(PKG, v) for v in versions])
    emulator.configure(operations={"UpdatePackageVersion": {"rate": 20, "burst": 5}})
    plan_path = write_plan(tmp_path / "p.yaml", [{"package": PKG, "versions": versions, "action": "PUBLISH"}],
                           rate=20, burst=5)
    journal = tmp_path / "j.jsonl"
    cmd = [sys.executable, "-m", "fleetrel", "run", str(plan_path), "--journal", str(journal),
           "--endpoint-url", emulator.url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while sum(terminal_counts(journal).values()) < 10 if journal.exists() else True:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)  # polling the journal for a condition, not a timing assumption
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "resume" in out
    assert journal_records(journal)[-1]["event"] == "run_interrupted"
    assert replay(journal).status == "interrupted"

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert set(terminal_counts(journal).values()) == {1} and len(terminal_counts(journal)) == 60
    tokens = emulator.record()["tokens"]
    assert all(len(set(tokens[f"{PKG}/{v}"])) == 1 for v in versions)
