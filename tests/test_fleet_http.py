"""Releases that see the fleet (issue 24), over real HTTP through the CLI against the
emulator's fleet: device counts in `plan` and `fleet`, a `devices:` selector, the guard,
and fleet indexing switched off."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from fleetrel.events import ExitCode
from support import cli, journal_records, plan_file

ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}
PKG = "thermostat-fw"
VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.1.0", "2.2.0", "3.0.0", "3.1.0"]


def fleetrel(*args: str) -> subprocess.CompletedProcess:
    return cli(*args, env=ENV)


def write(path: Path, versions: list, **top) -> Path:
    return plan_file(path, "fleet-test", versions, rate=100, burst=10, **top)


def seeded(emulator, things: int = 600, packages: tuple[str, ...] = (PKG, "door-app")) -> dict[str, dict[str, int]]:
    """Published versions of `packages`, a fleet over them; the fleet's exact counts."""
    emulator.seed([{"package": p, "version": v, "status": "PUBLISHED"} for p in packages for v in VERSIONS])
    emulator.seed_fleet(things, seed=11)
    return emulator.fleet()


def updates(emulator) -> int:
    return sum(emulator.record()["operations"].get("UpdatePackageVersion", {}).values())


def aggregations(emulator) -> int:
    return sum(emulator.record()["operations"].get("GetBucketsAggregation", {}).values())


def test_the_preview_shows_exactly_the_seeded_counts_one_aggregation_per_package(emulator, tmp_path):
    truth = seeded(emulator)
    assert any(n == 0 for n in (truth[PKG].get(v, 0) for v in VERSIONS)), "the skew leaves some version unused"
    plan = write(tmp_path / "p.yaml", [{"package": p, "versions": VERSIONS, "action": "DEPRECATE"}
                                       for p in (PKG, "door-app")])
    emulator.reset_record()
    out = fleetrel("plan", str(plan), "--endpoint-url", emulator.url, "--json")
    doc = json.loads(out.stdout)
    assert doc["fleet"] is True
    counts = {step["key"]: step["devices"] for step in doc["steps"]}
    assert counts == {f"{p}/{v}": truth[p].get(v, 0) for p in (PKG, "door-app") for v in VERSIONS}
    assert aggregations(emulator) == 2 and updates(emulator) == 0  # one per package, not one per version
    text = fleetrel("plan", str(plan), "--endpoint-url", emulator.url)
    assert "devices" in text.stdout and f"{truth[PKG]['3.1.0']}" in text.stdout


def test_fleet_shows_the_distribution_with_status_and_default(emulator, iot):
    truth = seeded(emulator)
    iot.update_package(packageName=PKG, defaultVersionName="3.1.0")
    out = fleetrel("fleet", "--package", PKG, "--endpoint-url", emulator.url, "--json")
    assert out.returncode == 0, out.stderr
    [package] = json.loads(out.stdout)["packages"]
    rows = {row["version"]: row for row in package["versions"]}
    assert [row["version"] for row in package["versions"]] == VERSIONS[::-1]  # newest first
    assert {v: rows[v]["devices"] for v in VERSIONS} == {v: truth[PKG].get(v, 0) for v in VERSIONS}
    assert package["things"] == sum(truth[PKG].values())
    assert rows["3.1.0"]["default"] and not rows["3.0.0"]["default"] and rows["1.0.0"]["status"] == "PUBLISHED"
    text = fleetrel("fleet", "--package", PKG, "--endpoint-url", emulator.url)
    assert "PUBLISHED (default)" in text.stdout and "█" in text.stdout


def test_a_devices_max_0_selector_deprecates_exactly_the_versions_no_thing_runs(emulator, tmp_path):
    truth = seeded(emulator)
    unused = [v for v in VERSIONS if not truth[PKG].get(v)]
    assert unused and len(unused) < len(VERSIONS)
    plan = write(tmp_path / "p.yaml", [{"select": {"package": PKG, "status": "PUBLISHED", "devices": {"max": 0}},
                                        "action": "DEPRECATE"}])
    emulator.reset_record()
    preview = fleetrel("plan", str(plan), "--endpoint-url", emulator.url, "--json")
    assert [s["key"] for s in json.loads(preview.stdout)["steps"]] == [f"{PKG}/{v}" for v in unused]
    assert aggregations(emulator) == 1  # the selector's counts serve the preview too
    out = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "-y")
    assert out.returncode == ExitCode.OK, out.stderr
    statuses = {v: emulator.state(PKG, v)["status"] for v in VERSIONS}
    assert [v for v, s in statuses.items() if s == "DEPRECATED"] == unused
    header = journal_records(tmp_path / "p.journal.jsonl")[0]
    frozen = header["selection"][0]["packages"][0]
    assert frozen["devices"] == {v: truth[PKG].get(v, 0) for v in VERSIONS}  # the evidence, frozen


def test_a_guarded_deprecate_of_a_version_in_use_sends_nothing(emulator, tmp_path):
    truth = seeded(emulator)
    busy = max(VERSIONS, key=lambda v: truth[PKG].get(v, 0))
    plan = write(tmp_path / "p.yaml", [{"package": PKG, "versions": ["1.0.0", busy], "action": "DEPRECATE"}],
                 guard={"deprecate_max_devices": 0})
    preview = fleetrel("plan", str(plan), "--endpoint-url", emulator.url)
    assert preview.returncode == ExitCode.INVALID and "in-use" in preview.stdout
    out = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "-y")
    assert out.returncode == ExitCode.INVALID
    assert f"{PKG}/{busy} is run by {truth[PKG][busy]} devices" in out.stderr
    assert updates(emulator) == 0 and not (tmp_path / "p.journal.jsonl").exists()
    # the command line's limit over the plan's, and the override, journalled
    allowed = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "-y", "--allow-in-use")
    assert allowed.returncode == ExitCode.OK, allowed.stderr
    check = journal_records(tmp_path / "p.journal.jsonl")[0]["fleet_check"]
    assert check["allow_in_use"] is True
    assert check["in_use"] == [{"target": None, "package": PKG, "version": busy, "devices": truth[PKG][busy]}]


def test_indexing_switched_off_gives_awss_message_and_no_fleet_check_goes_on(emulator, iot, tmp_path):
    seeded(emulator)
    iot.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "OFF"})
    plan = write(tmp_path / "p.yaml", [{"package": PKG, "version": "1.0.0", "action": "DEPRECATE"}],
                 guard={"deprecate_max_devices": 0})
    out = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "-y")
    assert out.returncode == ExitCode.INVALID and updates(emulator) == 0
    assert "cannot count the devices on thermostat-fw's versions" in out.stderr and "--no-fleet-check" in out.stderr
    # a preview without a guard still works, and says why it shows no counts
    bare = write(tmp_path / "bare.yaml", [{"package": PKG, "version": "1.0.0", "action": "DEPRECATE"}])
    preview = fleetrel("plan", str(bare), "--endpoint-url", emulator.url)
    assert preview.returncode == ExitCode.OK
    assert "note: no device counts: fleet indexing is off (see docs/fleet.md)" in preview.stdout
    went_on = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "-y", "--no-fleet-check")
    assert went_on.returncode == ExitCode.OK, went_on.stderr
    assert journal_records(tmp_path / "p.journal.jsonl")[0]["fleet_check"]["skipped"] is True


def test_a_package_fleet_indexing_cannot_count_leaves_the_others_counts(emulator, tmp_path):
    truth = seeded(emulator, packages=(PKG,))
    emulator.seed([{"package": "new-app", "version": "1.0", "status": "PUBLISHED"}])  # after the index: no custom field
    plan = write(tmp_path / "p.yaml", [{"package": PKG, "version": "3.1.0", "action": "DEPRECATE"},
                                       {"package": "new-app", "version": "1.0", "action": "DEPRECATE"}])
    doc = json.loads(fleetrel("plan", str(plan), "--endpoint-url", emulator.url, "--json").stdout)
    assert {s["key"]: s["devices"] for s in doc["steps"]} == {f"{PKG}/3.1.0": truth[PKG]["3.1.0"], "new-app/1.0": None}
    assert "for some packages: new-app: InvalidAggregationException" in doc["fleet_note"]
    guarded = write(tmp_path / "g.yaml", [{"package": "new-app", "version": "1.0", "action": "DEPRECATE"}],
                    guard={"deprecate_max_devices": 0})
    refused = fleetrel("run", str(guarded), "--endpoint-url", emulator.url, "-y")
    assert refused.returncode == ExitCode.INVALID and "String custom field" in refused.stderr
    assert updates(emulator) == 0
