"""`select:` entries over real HTTP: expanded through the list/get operations (paged), per
target, frozen in the journal at a run's start, and sent as frozen on resume."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3

from fleetrel.events import Event, ExitCode
from support import cli, journal_records, plan_file, kill_after_successes

PKG = "thermostat-fw"
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def fleetrel(*args: str) -> subprocess.CompletedProcess:
    return cli(*args, env=ENV)


def write(path: Path, versions: list, **top) -> Path:
    return plan_file(path, "sel-test", versions, rate=200, burst=20, **top)


def sent(emulator) -> list[str]:
    """package/version of every UpdatePackageVersion the emulator accepted, by token."""
    record = emulator.record()
    return sorted(record["tokens"]) if "tokens" in record else []


def updates(emulator) -> int:
    return sum(emulator.record()["operations"].get("UpdatePackageVersion", {}).values())


DEPRECATE_OLD = {"select": {"package": "thermostat-*", "status": "PUBLISHED", "below": "4.0", "keep_newest": 1},
                 "action": "DEPRECATE"}


def test_preview_pages_through_versions_and_shows_each_selector(emulator, tmp_path):
    # 150 published 3.x versions (two pages of 100) and a 4.x one, in a package the glob names
    emulator.seed([{"package": PKG, "version": f"3.{i}", "status": "PUBLISHED"} for i in range(150)]
                  + [{"package": PKG, "version": "4.10", "status": "PUBLISHED"},
                     {"package": "thermostat-app", "version": "3.9", "status": "DRAFT"},
                     {"package": "door-fw", "version": "1.0", "status": "PUBLISHED"}])
    plan = write(tmp_path / "p.yaml", [DEPRECATE_OLD])
    out = fleetrel("plan", str(plan), "--endpoint-url", emulator.url, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    [selector] = doc["selectors"]
    app, package = selector["packages"]  # door-fw is not named by the glob
    assert app == {"package": "thermostat-app", "compared": "release numbers", "matched": []}  # no PUBLISHED version
    assert package["package"] == PKG and package["compared"] == "release numbers"
    assert len(package["matched"]) == 149 and package["kept"] == ["3.149"]  # newest below 4.0, kept
    assert package["matched"][:3] == ["3.0", "3.1", "3.2"] and "3.100" in package["matched"]
    assert len(doc["steps"]) == 149 and doc["warnings"] == []
    operations = emulator.record()["operations"]
    # the selection: two pages of thermostat-fw, one of -app; the preview of its 149
    # DEPRECATE steps: two pages more (status is all they need), no GetPackageVersion
    assert sum(operations["ListPackageVersions"].values()) == 2 + 1 + 2
    assert "GetPackageVersion" not in operations
    assert sum(operations["ListPackages"].values()) == 1
    assert "UpdatePackageVersion" not in operations
    text = fleetrel("plan", str(plan), "--endpoint-url", emulator.url)
    assert "versions[0] select thermostat-* PUBLISHED below 4.0 keep newest 1: 149 version(s)" in text.stdout
    assert "thermostat-fw (compared as release numbers)" in text.stdout


def test_a_run_sends_what_the_selectors_matched_and_freezes_it_in_the_journal(emulator, tmp_path, iot):
    emulator.seed([{"package": PKG, "version": v, "status": "PUBLISHED",
                    "attributes": {"channel": "beta" if v != "2.1" else "stable"}} for v in ("2.0", "2.1", "2.2", "4.0")])
    iot.update_package(packageName=PKG, defaultVersionName="2.2")
    entry = {"select": {"package": PKG, "below": "4.0", "except_default": True, "attributes": {"channel": "beta"},
                        "created_before": "2999-01-01"}, "action": "DEPRECATE"}
    plan = write(tmp_path / "p.yaml", [entry, {"package": PKG, "version": "4.0", "description": "current"}])
    out = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["succeeded"] == 2
    assert emulator.state(PKG, "2.0")["status"] == "DEPRECATED"
    assert [emulator.state(PKG, v)["status"] for v in ("2.1", "2.2")] == ["PUBLISHED", "PUBLISHED"]
    header = journal_records(tmp_path / "p.journal.jsonl")[0]
    assert header["selection"] == [{"entry": 0, "target": None, "packages": [
        {"package": PKG, "compared": "release numbers", "matched": ["2.0"], "default_version": "2.2"}]}]
    assert sorted(header["step_digests"]) == [f"{PKG}/2.0", f"{PKG}/4.0"]
    operations = emulator.record()["operations"]
    assert sum(operations["GetPackage"].values()) == 1  # except_default
    assert sum(operations["GetPackageVersion"].values()) == 2  # attributes of 2.0 and 2.1 only (2.2 is the default)


def test_a_resume_sends_the_frozen_selection_and_says_what_changed(emulator, tmp_path):
    versions = [f"1.{i}" for i in range(40)]
    emulator.seed([{"package": PKG, "version": v, "status": "PUBLISHED"} for v in versions])
    plan = write(tmp_path / "p.yaml", [{"select": {"package": PKG, "status": "PUBLISHED"}, "action": "DEPRECATE"}],
                 limits={"rate": 10, "burst": 1, "concurrency": 1})
    journal = tmp_path / "p.journal.jsonl"
    kill_after_successes(["run", str(plan), "--endpoint-url", emulator.url], journal, 5, ENV)
    # The catalog changes under the run: a new matching version, and one matched version withdrawn by hand.
    emulator.seed([{"package": PKG, "version": "1.99", "status": "PUBLISHED"}])
    frozen = journal_records(journal)[0]["selection"][0]["packages"][0]["matched"]
    assert sorted(frozen) == sorted(versions)
    out = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["succeeded"] == 40
    assert "the catalog changed since this run started" in out.stderr and "now also matches thermostat-fw/1.99" in out.stderr
    assert emulator.state(PKG, "1.99")["status"] == "PUBLISHED"  # not in the frozen selection: not sent
    assert all(emulator.state(PKG, v)["status"] == "DEPRECATED" for v in versions)
    terminal = [r["step"] for r in journal_records(journal) if r["event"] == Event.STEP_SUCCEEDED]
    assert sorted(terminal) == sorted(f"{PKG}/{v}" for v in versions)  # each once


def test_a_version_named_by_a_selector_and_an_entry_is_refused_with_exit_2(emulator, tmp_path):
    emulator.seed([{"package": PKG, "version": v, "status": "PUBLISHED"} for v in ("3.0", "3.1")])
    plan = write(tmp_path / "p.yaml", [{"package": PKG, "version": "3.1", "description": "x"},
                                       {"select": {"package": PKG, "below": "4.0"}, "action": "DEPRECATE"}])
    for command in ("plan", "run"):
        out = fleetrel(command, str(plan), "--endpoint-url", emulator.url)
        assert out.returncode == ExitCode.INVALID, out.stdout + out.stderr
        assert f"versions[1] (select {PKG}): {PKG}/3.1 is also named by versions[0] ({PKG})" in out.stderr
    assert updates(emulator) == 0
    assert not (tmp_path / "p.journal.jsonl").exists() or not journal_records(tmp_path / "p.journal.jsonl")


def test_a_selector_that_matches_nothing_is_a_warning(emulator, tmp_path):
    emulator.seed([{"package": PKG, "version": "3.0", "status": "PUBLISHED"}])
    plan = write(tmp_path / "p.yaml", [{"package": PKG, "version": "3.0", "description": "x"},
                                       {"select": {"package": "nothing-*"}, "action": "DEPRECATE"}])
    out = fleetrel("plan", str(plan), "--endpoint-url", emulator.url)
    assert out.returncode == 0, out.stderr
    assert "warning: versions[1] (select nothing-*) matched nothing" in out.stderr
    run = fleetrel("run", str(plan), "--endpoint-url", emulator.url)
    assert run.returncode == 0 and "matched nothing" in run.stdout + run.stderr


ACCOUNTS = {"dev": "111111111111", "prod": "333333333333"}


def catalog(url: str, account: str, region: str = "us-east-1"):
    sts = boto3.client("sts", endpoint_url=url, region_name=region, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/fleet-release", RoleSessionName="test")["Credentials"]
    return boto3.client("iot", endpoint_url=url, region_name=region, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])


def test_selectors_expand_per_target(emulator, tmp_path):
    # dev has 1.0-1.2 published, prod only 1.0: each target deprecates its own
    for account, versions in ((ACCOUNTS["dev"], ["1.0", "1.1", "1.2"]), (ACCOUNTS["prod"], ["1.0"])):
        iot = catalog(emulator.url, account)
        iot.create_package(packageName=PKG)
        for v in versions:
            iot.create_package_version(packageName=PKG, versionName=v)
            iot.update_package_version(packageName=PKG, versionName=v, action="PUBLISH")
    emulator.reset_record()
    plan = write(tmp_path / "org.yaml", [{"select": {"package": PKG, "status": "PUBLISHED"}, "action": "DEPRECATE"}],
                 targets={"accounts": ACCOUNTS, "regions": ["us-east-1"], "role_name": "fleet-release"})
    preview = fleetrel("plan", str(plan), "--endpoint-url", emulator.url, "--json")
    assert preview.returncode == 0, preview.stderr
    report = {s["target"]: s["packages"][0]["matched"] for s in json.loads(preview.stdout)["selectors"]}
    assert report == {"dev-us-east-1": ["1.0", "1.1", "1.2"], "prod-us-east-1": ["1.0"]}
    # One target first: the run's selection is made, and frozen, for every target at its start.
    first = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--target", "prod-us-east-1", "--json")
    assert first.returncode == 0, first.stderr
    header = journal_records(tmp_path / "org.journal.jsonl")[0]
    assert {m["target"]: m["packages"][0]["matched"] for m in header["selection"]} == report
    assert updates(emulator) == 1
    out = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--json")
    assert out.returncode == 0, out.stderr
    assert updates(emulator) == 4
    assert sorted(journal_records(tmp_path / "org.journal.jsonl")[0]["step_digests"]) == [
        f"dev-us-east-1:{PKG}/1.0", f"dev-us-east-1:{PKG}/1.1", f"dev-us-east-1:{PKG}/1.2", f"prod-us-east-1:{PKG}/1.0"]
    dev = catalog(emulator.url, ACCOUNTS["dev"])
    assert {dev.get_package_version(packageName=PKG, versionName=v)["status"] for v in ("1.0", "1.1", "1.2")} == {"DEPRECATED"}


REPO_PLAN = Path(__file__).resolve().parent.parent / "plans" / "retire-old-firmware.yaml"
BEFORE_2026 = 1735689600.0  # 2025-01-01T00:00:00Z


def test_the_bundled_retire_plan_against_a_seeded_catalog(emulator, tmp_path, iot):
    fw = [f"3.{minor}.0" for minor in range(11)]  # 3.0.0 ... 3.10.0: 3.10.0 is the newest
    emulator.seed([{"package": "thermostat-fw", "version": v, "status": "PUBLISHED"} for v in fw]
                  + [{"package": "thermostat-fw", "version": "4.2.0"},  # DRAFT, published by the plan
                     {"package": "thermostat-app", "version": "2.0.0", "status": "PUBLISHED"},
                     {"package": "door-sensor-app", "version": "1.7.0", "status": "PUBLISHED",
                      "attributes": {"channel": "beta"}, "created": BEFORE_2026},
                     {"package": "door-sensor-app", "version": "1.7.1", "status": "PUBLISHED",
                      "attributes": {"channel": "stable"}, "created": BEFORE_2026},
                     {"package": "door-sensor-app", "version": "1.8.0", "status": "PUBLISHED",
                      "attributes": {"channel": "beta"}}])  # created now: after 2026-01-01
    iot.update_package(packageName="thermostat-fw", defaultVersionName="3.2.0")
    plan = tmp_path / "retire.yaml"
    plan.write_text(REPO_PLAN.read_text())
    out = fleetrel("plan", str(plan), "--endpoint-url", emulator.url, "--json")
    assert out.returncode == 0, out.stderr
    by_entry = {(s["entry"], p["package"]): p for s in json.loads(out.stdout)["selectors"] for p in s["packages"]}
    thermostat = by_entry[(0, "thermostat-fw")]
    # release numbers: 3.10.0 is after 3.9.0, so the two newest kept are 3.9.0 and 3.10.0; 3.2.0 is the default
    assert thermostat["kept"] == ["3.9.0", "3.10.0"] and thermostat["default_version"] == "3.2.0"
    assert thermostat["matched"] == ["3.0.0", "3.1.0", "3.3.0", "3.4.0", "3.5.0", "3.6.0", "3.7.0", "3.8.0"]
    assert by_entry[(0, "thermostat-app")]["matched"] == []  # its one version is kept as the newest
    assert by_entry[(1, "door-sensor-app")]["matched"] == ["1.7.0"]
    run = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["succeeded"] == 8 + 1 + 1
    assert emulator.state("door-sensor-app", "1.7.0")["description"] == "Beta build retired: use the stable channel"
    # verify reads what the run selected (frozen in its journal), though the selectors match nothing now
    verify = fleetrel("verify", str(plan), "--endpoint-url", emulator.url, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["steps"] == 10


def test_the_bundled_cleanup_walkthrough_plan_run_report_undo(emulator, tmp_path, iot):
    """docs/rules-undo-reports.md's clean-up by rule, on the catalog the demo leaves behind
    (tests/test_docs.py runs the page's commands as written; this checks the outcome)."""
    published = [f"4.1.{i}" for i in range(30)] + [f"4.2.{i}" for i in range(30)]
    emulator.seed([{"package": PKG, "version": v, "status": "PUBLISHED"} for v in published])
    plan = tmp_path / "cleanup.yaml"
    plan.write_text((REPO_PLAN.parent / "cleanup.yaml").read_text())
    preview = fleetrel("plan", str(plan), "--endpoint-url", emulator.url, "--json")
    assert preview.returncode == 0, preview.stderr
    (selector,) = json.loads(preview.stdout)["selectors"]
    assert selector["packages"][0]["kept"] == ["4.1.28", "4.1.29"] and len(selector["packages"][0]["matched"]) == 28
    ran = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--json")
    assert ran.returncode == 0, ran.stderr
    assert (json.loads(ran.stdout)["succeeded"], json.loads(ran.stdout)["skipped"]) == (29, 1)
    assert iot.get_package(packageName=PKG)["defaultVersionName"] == "4.2.29"
    assert emulator.state(PKG, "4.1.27")["status"] == "DEPRECATED"
    assert emulator.state(PKG, "4.1.28")["status"] == "PUBLISHED"
    report = fleetrel("report", str(tmp_path / "cleanup.journal.jsonl"), "--format", "json")
    rows = [json.loads(line) for line in report.stdout.splitlines()]
    assert [r["outcome"] for r in rows if r["type"] == "step"].count("succeeded") == 29
    undo = fleetrel("undo", str(tmp_path / "cleanup.journal.jsonl"), "-o", str(tmp_path / "undo.yaml"))
    assert undo.returncode == 0, undo.stderr
    back = fleetrel("run", str(tmp_path / "undo.yaml"), "--endpoint-url", emulator.url, "--verify")
    assert back.returncode == 0, back.stderr
    assert {emulator.state(PKG, v)["status"] for v in published} == {"PUBLISHED"}
