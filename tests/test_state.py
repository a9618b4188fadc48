"""The preview (`fleetrel plan`) and the drift check (`fleetrel verify`) against the emulator.

The strongest check of a preview is the run itself: after previewing, the plan is run and
every step must end as the preview said (apply -> succeeded, unchanged -> skipped,
blocked -> failed).
"""
from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
import yaml
from click.testing import CliRunner

from fleetrel.where import Where
from fleetrel import load_plan, run
from fleetrel.cli import main
from fleetrel.plan import Step
from fleetrel.state import (APPLY, BLOCKED, UNCHANGED, ReadError, VersionState, diff_step, drift_of,
                            read_drift, read_preview)

ART = {"s3Location": {"bucket": "fw-artifacts", "key": "fw/1.1.bin", "version": "3"}}
OTHER_ART = {"s3Location": {"bucket": "fw-artifacts", "key": "fw/old.bin", "version": "1"}}

# (seed of the version or None when missing, plan entry, expected outcome, expected reason or changes)
CASES = [
    ({"status": "DRAFT", "attributes": {"channel": "beta", "old": "y"}, "description": "old"},
     {"version": "1.0", "action": "PUBLISH", "attributes": {"channel": "stable", "new": "x"}, "description": "d"},
     APPLY, ["attributes +new ~channel -old", "description"]),
    ({"status": "DRAFT", "artifact": OTHER_ART},
     {"version": "1.1", "action": "PUBLISH", "artifact": ART, "recipe": '{"steps": []}'},
     APPLY, ["artifact", "recipe"]),
    ({"status": "PUBLISHED"}, {"version": "2.0", "action": "PUBLISH"}, UNCHANGED, []),
    ({"status": "DRAFT"}, {"version": "2.1", "action": "DEPRECATE"}, BLOCKED, "draft-to-deprecate"),
    ({"status": "PUBLISHED", "attributes": {"channel": "stable"}},
     {"version": "2.2", "action": "DEPRECATE", "attributes": {"channel": "stable"}}, BLOCKED, "fields-need-draft"),
    (None, {"version": "2.3", "action": "PUBLISH"}, BLOCKED, "version-missing"),
    ({"status": "PUBLISHED", "description": "old"}, {"version": "2.4", "action": "PUBLISH", "description": "new"},
     BLOCKED, "already-in-status"),
    ({"status": "PUBLISHED", "description": "old"}, {"version": "2.5", "action": "DEPRECATE", "description": "eol"},
     APPLY, ["description"]),
    ({"status": "DEPRECATED"}, {"version": "2.6", "action": "PUBLISH"}, APPLY, []),
    ({"status": "PUBLISHED", "description": "old"}, {"version": "2.7", "description": "new"}, APPLY, ["description"]),
    ({"status": "DEPRECATED"}, {"version": "2.8", "artifact": ART}, BLOCKED, "fields-need-draft"),
]
GHOST = {"package": "ghost-fw", "version": "1.0", "action": "PUBLISH"}  # its package does not exist


def write_preview_plan(path: Path, emulator) -> Path:
    seeds = [{"package": "fw", "version": entry["version"], **seed} for seed, entry, *_ in CASES if seed]
    emulator.seed(seeds)
    doc = {"plan": "preview-test", "limits": {"rate": 100, "burst": 20, "concurrency": 4},
           "abort": {"max_failure_ratio": 1.0, "min_finished": 1000},
           "versions": [{"package": "fw", **entry} for _, entry, *_ in CASES] + [GHOST]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def test_preview_shows_each_change_and_each_blocked_step_and_the_run_agrees(emulator, tmp_path):
    plan = load_plan(write_preview_plan(tmp_path / "p.yaml", emulator))
    preview = await read_preview(plan, endpoint_url=emulator.url)

    by_key = {s.key: s for s in preview.steps}
    for _, entry, outcome, detail in CASES:
        step = by_key[f"fw/{entry['version']}"]
        assert step.outcome == outcome, step
        if outcome == BLOCKED:
            assert step.blocked == detail and step.reason, step
        else:
            assert step.changes == detail, step
    assert by_key["ghost-fw/1.0"].blocked == "package-missing"
    assert by_key["fw/2.5"].current == "PUBLISHED" and by_key["fw/2.5"].planned == "DEPRECATED"
    assert not preview.can_apply
    assert preview.totals()["blocked_by_reason"] == {"draft-to-deprecate": 1, "fields-need-draft": 2,
                                                     "version-missing": 1, "package-missing": 1,
                                                     "already-in-status": 1}
    record = emulator.record()
    assert "UpdatePackageVersion" not in record["operations"]
    # GetPackageVersion only where fields are compared; the steps that need only a status
    # (2.0, 2.1, 2.3 and the ghost) come from one ListPackageVersions per package; GetPackage
    # once per package with a DEPRECATE step or a version not found, never twice.
    with_fields = [entry for _, entry, *_ in CASES if set(entry) - {"version", "action"}]
    assert record["operations"]["GetPackageVersion"] == {"200": len(with_fields)}
    assert record["operations"]["ListPackageVersions"] == {"200": 2}
    assert record["operations"]["GetPackage"] == {"200": 1, "404": 1}

    # The run does what the preview said.
    result = await run(plan, Where(journal_path=tmp_path / "j.jsonl", endpoint_url=emulator.url))
    expected = {APPLY: "succeeded", UNCHANGED: "skipped", BLOCKED: "failed"}
    assert {o.key: o.outcome for o in result.outcomes} == {s.key: expected[s.outcome] for s in preview.steps}


def test_plan_command_exit_codes_and_json(emulator, tmp_path):
    plan_path = write_preview_plan(tmp_path / "p.yaml", emulator)
    runner = CliRunner()
    blocked = runner.invoke(main, ["plan", str(plan_path), "--endpoint-url", emulator.url, "--json"])
    assert blocked.exit_code == 2, blocked.output
    doc = json.loads(blocked.output)
    assert doc["can_apply"] is False and doc["totals"]["blocked"] == 6 and doc["totals"]["unchanged"] == 1

    table = runner.invoke(main, ["plan", str(plan_path), "--endpoint-url", emulator.url])
    assert table.exit_code == 2
    assert "fw/2.1" in table.output and "ghost-fw/1.0" in table.output
    assert "5 to apply, 1 already as planned (will be skipped), 6 blocked" in table.output
    assert "blocked (draft-to-deprecate): 1" in table.output

    # Only the steps that can be applied: exit 0, and `run --dry-run` says the same.
    ok_doc = yaml.safe_load(plan_path.read_text())
    ok_doc["versions"] = [v for v in ok_doc["versions"] 
                         if v["package"] == "fw" and v["version"] in ("1.0", "1.1", "2.0", "2.6")]
    ok_path = tmp_path / "ok.yaml"
    ok_path.write_text(yaml.safe_dump(ok_doc))
    assert runner.invoke(main, ["plan", str(ok_path), "--endpoint-url", emulator.url]).exit_code == 0
    dry = runner.invoke(main, ["run", str(ok_path), "--endpoint-url", emulator.url, "--dry-run", "--json"])
    assert dry.exit_code == 0 and json.loads(dry.output)["totals"]["apply"] == 3
    assert "UpdatePackageVersion" not in emulator.record()["operations"]
    assert not (tmp_path / "ok.journal.jsonl").exists() and not Path("ok.journal.jsonl").exists()


def test_verify_finds_drift_made_behind_fleetrels_back(emulator, iot, tmp_path):
    versions = [f"3.0.{i}" for i in range(6)]
    emulator.seed([{"package": "fw", "version": v, "description": "old"} for v in versions])
    doc = {"plan": "verify-test", "limits": {"rate": 100, "burst": 20, "concurrency": 4},
           "versions": [{"package": "fw", "versions": versions, "action": "PUBLISH", "description": "spring",
                         "attributes": {"channel": "stable"}}]}
    plan_path = tmp_path / "v.yaml"
    plan_path.write_text(yaml.safe_dump(doc))
    plan = load_plan(plan_path)
    runner = CliRunner()
    ran = runner.invoke(main, ["run", str(plan_path), "--journal", str(tmp_path / "j.jsonl"),
                               "--endpoint-url", emulator.url])
    assert ran.exit_code == 0, ran.output
    assert anyio.run(lambda: read_drift(plan, endpoint_url=emulator.url)).matches
    assert runner.invoke(main, ["verify", str(plan_path), "--endpoint-url", emulator.url]).exit_code == 0

    # Behind fleetrel's back: deprecate one version and edit another's description.
    iot.update_package_version(packageName="fw", versionName="3.0.1", action="DEPRECATE")
    iot.update_package_version(packageName="fw", versionName="3.0.4", description="hotfix")
    report = anyio.run(lambda: read_drift(plan, endpoint_url=emulator.url))
    assert {d.key: d.differences for d in report.drifted} == {
        "fw/3.0.1": ["status DEPRECATED (planned PUBLISHED)"], "fw/3.0.4": ["description"]}
    out = runner.invoke(main, ["verify", str(plan_path), "--endpoint-url", emulator.url])
    assert out.exit_code == 1 and "fw/3.0.1" in out.output and "fw/3.0.4" in out.output
    assert "2 of 6 versions differ" in out.output
    js = runner.invoke(main, ["verify", str(plan_path), "--endpoint-url", emulator.url, "--json"])
    assert js.exit_code == 1 and json.loads(js.output)["matches"] is False


# -- the rules, without a network ------------------------------------------------------

def test_attribute_drift_is_reported_by_digest_not_by_value():
    step = Step("fw", "1.0", action="PUBLISH", attributes={"secret": "s3cr3t"})
    drift = drift_of(step, VersionState("PUBLISHED", attributes={"secret": "leaked"}))
    assert len(drift) == 1 and drift[0].startswith("attributes (digest") and "~secret" in drift[0]
    assert "s3cr3t" not in drift[0] and "leaked" not in drift[0]
    assert drift_of(step, VersionState("PUBLISHED", attributes={"secret": "s3cr3t"})) == []
    assert drift_of(step, ReadError("ResourceNotFoundException", "gone")) == ["missing"]


@pytest.mark.parametrize("current, action, outcome", [
    ("DRAFT", "PUBLISH", APPLY), ("PUBLISHED", "DEPRECATE", APPLY), ("DEPRECATED", "PUBLISH", APPLY),
    ("DRAFT", "DEPRECATE", BLOCKED), ("PUBLISHED", "PUBLISH", UNCHANGED), ("DEPRECATED", "DEPRECATE", UNCHANGED),
])
def test_lifecycle_transitions(current, action, outcome):
    assert diff_step(Step("fw", "1.0", action=action), VersionState(current)).outcome == outcome


def test_an_unreadable_version_is_blocked_with_the_error_named():
    preview = diff_step(Step("fw", "1.0", action="PUBLISH"), ReadError("AccessDeniedException", "no"))
    assert preview.outcome == BLOCKED and "AccessDeniedException" in preview.reason


def test_tables_for_people_stop_at_max_rows_and_say_how_many_more():
    """A 100k-step verify printed every drifted version through rich (135 MB, half a
    minute): the tables stop at MAX_ROWS and say how many more --json lists."""
    from rich.console import Console

    from fleetrel.report import MAX_ROWS, print_drift, print_preview
    from fleetrel.state import DriftReport, Preview, StepDrift, StepPreview

    keys = [f"fw/1.{i}.0" for i in range(MAX_ROWS + 50)]
    console = Console(record=True, width=200, highlight=False, markup=False)
    print_drift(DriftReport("p", [StepDrift(k, ["missing"]) for k in keys]), console)
    print_preview(Preview("p", [StepPreview(k, "PUBLISH", "DRAFT", "PUBLISHED", APPLY) for k in keys]), console)
    text = console.export_text()
    assert f"{keys[MAX_ROWS - 1]} " in text and f"{keys[MAX_ROWS]} " not in text
    assert "... and 50 more versions that differ" in text and "... and 50 more steps" in text
    assert f"{MAX_ROWS + 50} of {MAX_ROWS + 50} versions differ from the plan" in text


# -- reading by listing ------------------------------------------------------------------

def test_a_status_only_step_is_read_from_the_listing_a_step_with_fields_one_by_one():
    from fleetrel.reads import status_is_enough

    assert status_is_enough(Step("fw", "1.0", action="DEPRECATE"))
    assert status_is_enough(Step("fw", "1.0", action="PUBLISH"))
    assert not status_is_enough(Step("fw", "1.0", action="PUBLISH", description="d"))
    assert not status_is_enough(Step("fw", "1.0", action="DEPRECATE", attributes={}))
    assert not status_is_enough(Step("fw", "1.0", description="d"))  # no action: fields only


@pytest.mark.parametrize("wanted, pages, left", [
    (range(1000), 10, 0),  # every version: the whole listing, nothing read one by one
    (range(0, 1000, 10), 10, 0),  # one in ten: still cheaper listed (10 pages for 100 versions)
    ([5, 500, 999], 2, 2),  # three of a thousand: stops at two pages, reads the two it has not seen
])
def test_a_listing_stops_when_reading_the_rest_one_by_one_costs_less(wanted, pages, left):
    from fleetrel.reads import list_statuses
    from fleetrel.testing import FakeIoT
    from fleetrel.reads import ReadBuckets

    client = FakeIoT({f"fw/{i:04d}": "PUBLISHED" for i in range(1000)})
    names = {f"{i:04d}" for i in wanted}
    found, rest = anyio.run(lambda: list_statuses(client, ReadBuckets(rate=1e6, burst=1000)["l"], "fw", names))
    assert client.reads == pages and len(rest) == left
    assert set(found) | rest == names and not set(found) & rest
    assert all(state.status == "PUBLISHED" for state in found.values())


def test_a_version_a_complete_listing_lacks_is_missing_and_a_missing_package_lists_nothing():
    from fleetrel.reads import list_statuses
    from fleetrel.testing import FakeIoT
    from fleetrel.reads import ReadBuckets

    client = FakeIoT({"fw/1.0": "DEPRECATED"})

    async def both() -> tuple:
        limiter = ReadBuckets(rate=1e6, burst=1000)["l"]
        return (await list_statuses(client, limiter, "fw", {"1.0", "9.9"}),
                await list_statuses(client, limiter, "ghost", {"1.0"}))

    (found, rest), (ghost, ghost_rest) = anyio.run(both)
    assert found["1.0"].status == "DEPRECATED" and found["9.9"].missing and rest == set()
    assert ghost["1.0"].missing and ghost_rest == set()


def test_a_listing_refused_leaves_the_versions_to_read_one_by_one():
    """A role may allow GetPackageVersion and not ListPackageVersions: the preview still
    reads every version, one by one, rather than calling them all unreadable."""
    from fleetrel.reads import read_versions
    from fleetrel.testing import FakeIoT, service_error

    class NoListing(FakeIoT):
        async def list_package_versions(self, **request):
            raise service_error("AccessDeniedException", 403, "not allowed", "ListPackageVersions")

    client = NoListing({"fw/1.0": "PUBLISHED", "fw/1.1": "DEPRECATED"})
    steps = [Step("fw", "1.0", action="DEPRECATE"), Step("fw", "1.1", action="PUBLISH"),
             Step("fw", "2.0", action="PUBLISH")]
    found, missing = anyio.run(lambda: read_versions(client, steps, rate=1e6, burst=1000, warn_default=False))
    assert found["fw/1.0"].status == "PUBLISHED" and found["fw/1.1"].status == "DEPRECATED"
    assert found["fw/2.0"].missing and missing == set()  # the package exists (GetPackage said so)


def test_preview_and_verify_of_a_large_deprecation_list_versions_a_hundred_a_call(emulator, tmp_path):
    """250 DEPRECATE steps over two packages: three ListPackageVersions (two pages and
    one), one GetPackage per package for the preview's default warning, no
    GetPackageVersion; the verify after the run lists again and reads no package."""
    emulator.seed([{"package": "fw", "version": f"1.{i:03d}", "status": "PUBLISHED"} for i in range(200)]
                  + [{"package": "app", "version": f"2.{i:02d}", "status": "PUBLISHED"} for i in range(50)])
    doc = {"plan": "big-clean-up", "limits": {"rate": 100, "burst": 20, "concurrency": 4},
           "versions": [{"package": "fw", "versions": [f"1.{i:03d}" for i in range(200)], "action": "DEPRECATE"},
                        {"package": "app", "versions": [f"2.{i:02d}" for i in range(50)], "action": "DEPRECATE"},
                        {"package": "app", "version": "2.99", "action": "DEPRECATE"}]}  # not in the catalog
    plan_path = tmp_path / "big.yaml"
    plan_path.write_text(yaml.safe_dump(doc))
    plan = load_plan(plan_path)

    preview = anyio.run(lambda: read_preview(plan, endpoint_url=emulator.url))
    assert preview.totals()["apply"] == 250 and [s.key for s in preview.blocked] == ["app/2.99"]
    assert preview.blocked[0].blocked == "version-missing"
    operations = emulator.record()["operations"]
    assert operations["ListPackageVersions"] == {"200": 3} and operations["GetPackage"] == {"200": 2}
    assert "GetPackageVersion" not in operations

    emulator.reset_record()
    doc["versions"].pop()
    plan_path.write_text(yaml.safe_dump(doc))
    plan = load_plan(plan_path)
    anyio.run(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl", endpoint_url=emulator.url)))
    emulator.reset_record()
    report = anyio.run(lambda: read_drift(plan, endpoint_url=emulator.url))
    assert report.matches and len(report.steps) == 250
    operations = emulator.record()["operations"]
    assert operations == {"ListPackageVersions": {"200": 3}}
