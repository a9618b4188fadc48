"""Organisation-wide plans (issue 12) over real HTTP: one plan across accounts and
regions, each target through its own assumed role, its own quota and its own client.

The emulator keeps state and quota per (account, region), and moto's STS AssumeRole
hands out credentials that act in the role's account, so the targets below are six
independent catalogs behind one URL.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from fleetrel.events import TERMINAL, ExitCode
from support import journal_records, kill_after_successes

ACCOUNTS = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}
REGIONS = ["us-east-1", "eu-west-1"]
PKG = "thermostat-fw"
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def target_names() -> list[str]:
    return [f"{name}-{region}" for name in ACCOUNTS for region in REGIONS]


def catalog(url: str, account: str, region: str):
    """A boto3 IoT client acting in `account` (through the emulator's STS), in `region`."""
    sts = boto3.client("sts", endpoint_url=url, region_name=region, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/fleet-release", RoleSessionName="test")["Credentials"]
    return boto3.client("iot", endpoint_url=url, region_name=region, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])


def seed(url: str, versions: list[str], *, skip: set[tuple[str, str]] = frozenset()) -> None:
    for account in ACCOUNTS.values():
        for region in REGIONS:
            if (account, region) in skip:
                continue
            iot = catalog(url, account, region)
            iot.create_package(packageName=PKG)
            for version in versions:
                iot.create_package_version(packageName=PKG, versionName=version)


def statuses(url: str, account: str, region: str, versions: list[str]) -> dict[str, str]:
    iot = catalog(url, account, region)
    out = {}
    for version in versions:
        try:
            out[version] = iot.get_package_version(packageName=PKG, versionName=version)["status"]
        except iot.exceptions.ResourceNotFoundException:
            out[version] = "missing"
    return out


def org_plan(path: Path, versions: list[str], *, pin: dict[str, str] | None = None, rate: float = 50,
             concurrency: int = 4) -> Path:
    doc = {"plan": "org-test", "limits": {"rate": rate, "burst": 5, "concurrency": concurrency},
           "targets": {"accounts": dict(pin or ACCOUNTS), "regions": REGIONS, "role_name": "fleet-release"},
           "versions": [{"package": PKG, "versions": versions, "action": "PUBLISH"}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def fleetrel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetrel", *args], capture_output=True, text=True, timeout=300,
                          env=ENV)


def tokens_per_target_version(journal: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for record in journal_records(journal):
        if record.get("client_token") and record.get("step"):
            out.setdefault(record["step"], set()).add(record["client_token"])
    return out


def test_three_accounts_by_two_regions_end_to_end(emulator, tmp_path):
    versions = ["4.0.0", "4.0.1", "4.0.2"]
    seed(emulator.url, versions)
    plan = org_plan(tmp_path / "org.yaml", versions)
    preview = fleetrel("plan", str(plan), "--endpoint-url", emulator.url, "--json")
    assert preview.returncode == 0, preview.stderr
    assert len(json.loads(preview.stdout)["steps"]) == 18
    out = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["succeeded"] == 18 and set(doc["targets"]) == set(target_names())
    for account in ACCOUNTS.values():
        for region in REGIONS:
            assert set(statuses(emulator.url, account, region, versions).values()) == {"PUBLISHED"}
    records = journal_records(tmp_path / "org.journal.jsonl")
    header = records[0]
    assert {name: where["account"] for name, where in header["identity"].items()} == \
        {f"{n}-{r}": a for n, a in ACCOUNTS.items() for r in REGIONS}
    assert all(r["target"] == r["step"].split(":")[0] for r in records if r["event"] in TERMINAL)
    assert "testing" not in (tmp_path / "org.journal.jsonl").read_text()  # no credential of any kind
    verify = fleetrel("verify", str(plan), "--endpoint-url", emulator.url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_pinned_account_that_does_not_match_is_refused_before_any_call(emulator, tmp_path):
    seed(emulator.url, ["4.0.0"])
    plan = tmp_path / "org.yaml"
    doc = {"plan": "org-pinned", "targets": [
        {"name": "prod-eu", "region": "eu-west-1", "account": "333333333333",
         "role_arn": "arn:aws:iam::333333333333:role/fleet-release"},
        # no role: the caller's own credentials act in the emulator's default account, not the pinned one
        {"name": "wrong", "region": "us-east-1", "account": "444444444444"}],
        "versions": [{"package": PKG, "version": "4.0.0", "action": "PUBLISH"}]}
    plan.write_text(yaml.safe_dump(doc))
    out = fleetrel("run", str(plan), "--endpoint-url", emulator.url)
    assert out.returncode == ExitCode.INVALID and "pins account 444444444444" in out.stderr
    assert sum(emulator.record()["operations"].get("UpdatePackageVersion", {}).values()) == 0
    assert not (tmp_path / "org.journal.jsonl").exists()


def test_a_target_whose_versions_are_missing_fails_alone(emulator, tmp_path):
    versions = ["4.1.0", "4.1.1"]
    seed(emulator.url, versions, skip={("222222222222", "eu-west-1")})
    out = fleetrel("run", str(org_plan(tmp_path / "org.yaml", versions)), "--endpoint-url", emulator.url, "--json")
    assert out.returncode == ExitCode.FAILED, out.stderr
    targets = json.loads(out.stdout)["targets"]
    assert targets["staging-eu-west-1"]["failed"] == 2
    assert all(counts["succeeded"] == 2 for name, counts in targets.items() if name != "staging-eu-west-1")


def test_kill_mid_run_then_resume_one_token_per_target_and_version(emulator, tmp_path):
    versions = [f"5.0.{i}" for i in range(10)]
    seed(emulator.url, versions)
    plan = org_plan(tmp_path / "org.yaml", versions, rate=5, concurrency=2)  # 60 steps at 5/s per target
    journal = tmp_path / "org.journal.jsonl"
    kill_after_successes(["run", str(plan), "--endpoint-url", emulator.url], journal, 12, ENV)
    out = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--json")
    assert out.returncode == 0, out.stderr
    tokens = tokens_per_target_version(journal)
    assert len(tokens) == 60 and all(len(t) == 1 for t in tokens.values())
    per_place = emulator.record()["accounts"]  # what each (account, region) catalog accepted
    accepted = [tokens for regions in per_place.values() for place in regions.values()
                for tokens in place["tokens"].values()]
    assert len(accepted) == 60 and all(len(set(t)) == 1 for t in accepted)
    terminal: dict[str, int] = {}
    for r in journal_records(journal):
        if r["event"] in TERMINAL:
            terminal[r["step"]] = terminal.get(r["step"], 0) + 1
    assert len(terminal) == 60 and set(terminal.values()) == {1}


def test_one_target_can_be_run_alone(emulator, tmp_path):
    seed(emulator.url, ["4.2.0"])
    plan = org_plan(tmp_path / "org.yaml", ["4.2.0"])
    out = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--target", "dev-eu-west-1", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["attempts"] == 1
    assert statuses(emulator.url, "111111111111", "eu-west-1", ["4.2.0"]) == {"4.2.0": "PUBLISHED"}
    assert statuses(emulator.url, "333333333333", "us-east-1", ["4.2.0"]) == {"4.2.0": "DRAFT"}
    rest = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--json")
    assert rest.returncode == 0 and json.loads(rest.stdout)["attempts"] == 5
    unknown = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--target", "nope")
    assert unknown.returncode == ExitCode.INVALID and "no target named nope" in unknown.stderr


def test_credentials_that_expire_during_the_run_cause_no_failed_step(emulator, tmp_path):
    """Every assumed role lasts 2 s here; the run lasts longer, and its credentials are
    refreshed before they expire (aiobotocore's assume-role fetcher)."""
    emulator.configure(session_seconds=2)
    versions = [f"7.0.{i}" for i in range(20)]  # at 4/s, burst 5: at least 3.75 s per target
    seed(emulator.url, versions)
    out = fleetrel("run", str(org_plan(tmp_path / "org.yaml", versions, rate=4, concurrency=2)),
                   "--endpoint-url", emulator.url, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["succeeded"] == 120 and doc["failed"] == 0 and doc["elapsed"] > 2
    assert not emulator.record()["refused"].get("ExpiredTokenException")


# -- issue 21 finding 6: a refused role is one clean message, no traceback ----------------

@pytest.mark.parametrize("command", [["plan"], ["run"], ["run", "--ray"]], ids=" ".join)
def test_a_refused_role_is_said_in_one_message_without_a_traceback(emulator, tmp_path, command):
    """aiobotocore logs a failed credential refresh with its traceback before raising it;
    fleetrel reports the refusal itself, so stderr holds that report alone, one period at
    its end (the Ray driver rejoins its actors' reports)."""
    if "--ray" in command:
        pytest.importorskip("ray")
    emulator.configure(accounts=["123456789012", "111111111111", "222222222222"])  # prod's role is refused
    plan = org_plan(tmp_path / "org.yaml", ["4.0.0"])
    out = fleetrel(command[0], str(plan), "--endpoint-url", emulator.url, *command[1:])
    assert out.returncode == ExitCode.INVALID, out.stderr
    assert "Traceback" not in out.stderr and "Refreshing temporary credentials" not in out.stderr
    message = [line for line in out.stderr.splitlines() if line.startswith("fleetrel: ")]
    assert len(message) == 1, out.stderr
    assert "target prod-eu-west-1: cannot resolve its account (AccessDenied" in message[0]
    assert "target prod-us-east-1: cannot resolve its account (AccessDenied" in message[0]
    assert message[0].endswith(")). Nothing was sent to any target.") and ".." not in message[0]
    # no credential: neither the caller's keys nor any key the emulator's STS handed out
    assert ENV["AWS_SECRET_ACCESS_KEY"] not in out.stderr and "ASIA" not in out.stderr
    assert sum(emulator.record()["operations"].get("UpdatePackageVersion", {}).values()) == 0


def test_an_advisory_refresh_that_aws_refuses_is_one_line_and_a_bug_keeps_its_traceback():
    """The filter on aiobotocore's refresh warning, on the records aiobotocore makes."""
    import logging

    from botocore.exceptions import ClientError

    from fleetrel.credentials import REFRESH_FAILED, REFRESH_LOGGER, QuietRefreshFailures

    def record(period: str, exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            return logging.getLogger(REFRESH_LOGGER).makeRecord(
                REFRESH_LOGGER, logging.WARNING, __file__, 1, REFRESH_FAILED, (period,), sys.exc_info())

    refused = ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized"}}, "AssumeRole")
    quiet = QuietRefreshFailures()
    assert quiet.filter(record("mandatory", refused)) is False  # raised to the caller, which says it
    advisory = record("advisory", refused)
    assert quiet.filter(advisory) is True and advisory.exc_info is None
    assert advisory.getMessage() == ("Refreshing temporary credentials failed during advisory refresh period "
                                     "(AccessDenied: not authorized); the current credentials stay in use.")
    for period in ("mandatory", "advisory"):
        bug = record(period, TypeError("a bug"))
        assert quiet.filter(bug) is True and bug.exc_info is not None and bug.getMessage() == REFRESH_FAILED % period


def test_a_roles_account_is_read_from_assume_roles_answer_and_is_what_get_caller_identity_says(emulator, monkeypatch):
    """Issue 25, item 5: a target with a role resolves its account from AssumeRole's
    AssumedRoleUser ARN (no GetCallerIdentity call); that is the account STS itself names
    for those credentials."""
    import anyio

    from fleetrel.credentials import caller_account, target_session

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    async def both() -> tuple[str, str, str | None]:
        session = await target_session(region="eu-west-1", role_arn="arn:aws:iam::222233334444:role/release",
                                       endpoint_url=emulator.url)
        from_assume_role = await caller_account(session, region="eu-west-1", endpoint_url=emulator.url)
        async with session.create_client("sts", region_name="eu-west-1", endpoint_url=emulator.url) as sts:
            asked = (await sts.get_caller_identity())["Account"]
        return from_assume_role, asked, session._fleetrel_role.account

    from_assume_role, asked, kept = anyio.run(both)
    assert from_assume_role == asked == kept == "222233334444"
