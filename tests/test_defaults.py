"""A package's default version: `default: true`, `then_default`, `unset_default`.

Plan rules and steps (pure), the engine on the fake client (virtual time), and a run,
a preview and a verify against the emulator over HTTP.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fleetrel.where import Where
from fleetrel import load_plan, run
from fleetrel.cli import main
from fleetrel.events import PREREQUISITE_FAILED, PREVIOUS_DEFAULT, Event, Status
from fleetrel.plan import PlanError, ReleasePlan
from fleetrel.testing import THROTTLE, FakeIoT, run_virtual
from fleetrel.tokens import client_token
from support import journal_records

PKG = "fw"


def plan_file(path: Path, entries: list[dict], **extra) -> Path:
    doc = {"plan": "defaults-test", "limits": {"rate": 100, "burst": 5, "concurrency": 4}, "versions": entries, **extra}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def problems(tmp_path: Path, entries: list[dict]) -> str:
    with pytest.raises(PlanError) as caught:
        load_plan(plan_file(tmp_path / "bad.yaml", entries))
    return str(caught.value)


# -- the plan -------------------------------------------------------------------------

def test_default_steps_follow_their_version_step(tmp_path):
    plan = load_plan(plan_file(tmp_path / "p.yaml", [
        {"package": PKG, "version": "2.0", "action": "PUBLISH", "default": True},
        {"package": PKG, "versions": ["0.8", "0.9"], "action": "DEPRECATE"},
        {"package": "app", "version": "1.0", "action": "DEPRECATE", "then_default": "0.9"},
        {"package": "tool", "version": "3.0", "action": "DEPRECATE", "unset_default": True}]))
    assert [s.key for s in plan.steps()] == ["fw/2.0", "fw/2.0#default", "fw/0.8", "fw/0.9", "app/1.0",
                                             "app/1.0#default", "tool/3.0", "tool/3.0#default"]
    steps = {s.key: s for s in plan.steps()}
    assert steps["fw/2.0#default"].request() == {"packageName": PKG, "defaultVersionName": "2.0"}
    assert steps["app/1.0#default"].request() == {"packageName": "app", "defaultVersionName": "0.9"}
    assert steps["tool/3.0#default"].request() == {"packageName": "tool", "unsetDefaultVersion": True}
    assert [s.index for s in plan.steps()] == list(range(8)) and plan.step_count() == 8
    assert plan.summary() == "8 steps, 3 packages, PUBLISH 1, DEPRECATE 4, SET_DEFAULT 2, UNSET_DEFAULT 1"
    tokens = {client_token("run", s) for s in plan.steps()}
    assert len(tokens) == 8  # the default step's token is its own


def test_plans_without_defaults_keep_their_digest_keys_and_tokens(tmp_path):
    """Journals written before default steps existed keep resuming: same digest, same tokens."""
    data = {"plan": "p", "versions": [{"package": PKG, "versions": ["1.0", "1.1"], "action": "PUBLISH",
                                       "description": "d", "attributes": {"a": "b"}}]}
    plan = ReleasePlan.model_validate(data)
    # the digest and tokens as fleetrel computed them before default steps existed (pinned)
    assert plan.digest == "d3ba21a830dd018018cd8a4706199d69c5b19e3ef3f388359c69de1df4686ddc"
    assert [s.key for s in plan.steps()] == ["fw/1.0", "fw/1.1"]
    assert client_token("run-1", plan.steps()[0]) == "5f1842a7-56b4-5ed8-846d-6d0c4ba842ce"
    assert client_token("run-1", plan.steps()[1], b"k" * 32) == "2cec0b16-3866-599e-a176-dff96b5611dc"
    with_targets = ReleasePlan.model_validate({
        "plan": "p", "targets": [{"name": "eu", "region": "eu-west-1"}, {"name": "us", "region": "us-east-1"}],
        "versions": [{"package": PKG, "version": "1.0", "action": "DEPRECATE"}]})
    assert with_targets.digest == "ce931615cd0b0bdb29c746ced467ba254599cf989bfe059354482416e606de3b"
    assert client_token("run-1", with_targets.steps()[1], b"k" * 32) == "a29fd47b-ef48-5aaf-8ec5-9c6ff0bb8d5a"


def test_default_field_rules(tmp_path):
    text = problems(tmp_path, [
        {"package": PKG, "versions": ["2.0", "2.1"], "action": "PUBLISH", "default": True},
        {"package": "a", "version": "1.0", "action": "DEPRECATE", "then_default": "0.9", "unset_default": True},
        {"package": "b", "version": "1.0", "action": "PUBLISH", "then_default": "0.9"},
        {"package": "c", "version": "1.1", "action": "DEPRECATE", "default": True},
        {"package": "d", "version": "1.1", "action": "DEPRECATE", "then_default": "1.1"},
        {"package": "e", "version": "2.0", "action": "PUBLISH", "default": True},
        {"package": "e", "version": "1.0", "action": "DEPRECATE", "then_default": "0.5"}])
    lines = text.splitlines()
    assert any("versions[0]" in line and "needs one version" in line for line in lines)
    assert any("versions[1]" in line and "cannot both be given" in line for line in lines)
    assert any("versions[2]" in line and "then_default goes on a DEPRECATE entry" in line for line in lines)
    assert any("versions[3]" in line and "default: true goes on a PUBLISH entry" in line for line in lines)
    assert any("versions[4]" in line and "names the version this entry deprecates" in line for line in lines)
    assert any("versions[6]" in line and "already changed by versions[5]" in line for line in lines)
    assert all(":" in line and "bad.yaml" in line for line in lines)  # each names the file and its line
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2


def test_default_from_the_plans_defaults_block_counts_as_publish(tmp_path):
    plan = load_plan(plan_file(tmp_path / "p.yaml", [{"package": PKG, "version": "2.0", "default": True}],
                               defaults={"action": "PUBLISH"}))
    assert [s.key for s in plan.steps()] == ["fw/2.0", "fw/2.0#default"]


# -- the engine on the fake client ----------------------------------------------------

def go(plan, iot, journal: Path, **kwargs):
    return run_virtual(lambda: run(plan, Where(journal_path=journal), client=iot, **kwargs))


def test_publish_then_default_journals_the_previous_default(tmp_path):
    iot = FakeIoT({"fw/1.0": "PUBLISHED", "fw/2.0": "DRAFT"}, defaults={PKG: "1.0"})
    iot.script("fw#default", THROTTLE)
    plan = load_plan(plan_file(tmp_path / "p.yaml", [{"package": PKG, "version": "2.0", "action": "PUBLISH",
                                                      "default": True}]))
    journal = tmp_path / "j.jsonl"
    result = go(plan, iot, journal)
    assert result.status == Status.COMPLETE and result.succeeded == 2
    assert iot.defaults == {PKG: "2.0"} and iot.calls["fw#default"] == 2 and len(iot.tokens["fw#default"]) == 1
    records = [r for r in journal_records(journal) if r.get("step") == "fw/2.0#default"]
    started = next(r for r in records if r["event"] == Event.STEP_STARTED)
    done = next(r for r in records if r["event"] == Event.STEP_SUCCEEDED)
    assert started[PREVIOUS_DEFAULT] == done[PREVIOUS_DEFAULT] == "1.0"
    assert started["request"] == {"defaultVersionName": "2.0"}
    # the version step finished before the default step started
    events = [(r["event"], r.get("step")) for r in journal_records(journal)]
    assert events.index((Event.STEP_SUCCEEDED, "fw/2.0")) < events.index((Event.STEP_STARTED, "fw/2.0#default"))
    again = go(plan, iot, journal)  # a resume of a finished run sends nothing
    assert again.done_before == 2 and iot.calls["fw#default"] == 2


def test_a_default_step_waits_for_its_version_step(tmp_path):
    iot = FakeIoT({"fw/1.0": "PUBLISHED"}, defaults={PKG: "1.0"})  # fw/2.0 does not exist
    plan = load_plan(plan_file(tmp_path / "p.yaml", [{"package": PKG, "version": "2.0", "action": "PUBLISH",
                                                      "default": True}], abort={"max_failure_ratio": 1.0}))
    result = go(plan, iot, tmp_path / "j.jsonl")
    assert result.failed == 2 and iot.calls["fw#default"] == 0 and iot.defaults == {PKG: "1.0"}
    failed = {o.key: o for o in result.outcomes}
    assert failed["fw/2.0#default"].code == PREREQUISITE_FAILED


def test_default_already_as_planned_is_skipped_and_unset_works(tmp_path):
    iot = FakeIoT({"fw/2.0": "PUBLISHED", "fw/1.0": "PUBLISHED", "app/1.0": "PUBLISHED"},
                  defaults={PKG: "2.0", "app": "1.0"})
    plan = load_plan(plan_file(tmp_path / "p.yaml", [
        {"package": PKG, "version": "1.0", "action": "DEPRECATE", "then_default": "2.0"},
        {"package": "app", "version": "1.0", "action": "DEPRECATE", "unset_default": True}]))
    result = go(plan, iot, tmp_path / "j.jsonl")
    outcomes = {o.key: o.outcome for o in result.outcomes}
    assert outcomes == {"fw/1.0": "succeeded", "fw/1.0#default": "skipped", "app/1.0": "succeeded",
                        "app/1.0#default": "succeeded"}
    assert iot.calls["fw#default"] == 0 and iot.defaults == {PKG: "2.0"}


# -- over HTTP: run, preview, verify --------------------------------------------------

def test_run_preview_and_verify_against_the_emulator(emulator, iot, tmp_path):
    emulator.seed([{"package": PKG, "version": "1.0", "status": "PUBLISHED"}, (PKG, "2.0"),
                   {"package": "app", "version": "1.0", "status": "PUBLISHED"},
                   {"package": "app", "version": "0.9", "status": "PUBLISHED"}])
    iot.update_package(packageName=PKG, defaultVersionName="1.0")
    iot.update_package(packageName="app", defaultVersionName="1.0")
    plan = plan_file(tmp_path / "p.yaml", [
        {"package": PKG, "version": "2.0", "action": "PUBLISH", "default": True},
        {"package": PKG, "version": "1.0", "action": "DEPRECATE"},
        {"package": "app", "version": "1.0", "action": "DEPRECATE"}])
    preview = CliRunner().invoke(main, ["plan", str(plan), "--endpoint-url", emulator.url, "--json"])
    assert preview.exit_code == 0, preview.output
    steps = {s["key"]: s for s in json.loads(preview.output)["steps"]}
    assert steps["fw/2.0#default"]["changes"] == ["default 1.0 -> 2.0"]
    assert steps["app/1.0"]["warning"] and "then_default" in steps["app/1.0"]["warning"]
    assert steps["fw/1.0"]["warning"] is None  # the plan moves fw's default itself
    text = CliRunner().invoke(main, ["plan", str(plan), "--endpoint-url", emulator.url])
    assert "warning" in text.output and "app/1.0" in text.output

    journal = tmp_path / "j.jsonl"
    ran = CliRunner().invoke(main, ["run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url,
                                    "--verify"])
    assert ran.exit_code == 0, ran.output
    assert iot.get_package(packageName=PKG)["defaultVersionName"] == "2.0"
    # the service keeps a deprecated default (docs: a deprecated version can be the default)
    assert iot.get_package(packageName="app")["defaultVersionName"] == "1.0"
    assert emulator.record()["operations"]["UpdatePackage"]  # counted by the emulator
    iot.update_package(packageName=PKG, defaultVersionName="1.0")  # drift
    verify = CliRunner().invoke(main, ["verify", str(plan), "--endpoint-url", emulator.url, "--json"])
    assert verify.exit_code == 1
    assert json.loads(verify.output)["drifted"] == [{"key": "fw/2.0#default", "differences": ["default 1.0 (planned 2.0)"]}]


def test_emulator_default_rules_as_documented(emulator, iot):
    """model: defaultVersionName and unsetDefaultVersion not together; docs: a DEPRECATED
    version can be the default, and deprecating the default keeps it the default."""
    from botocore.exceptions import ClientError

    emulator.seed([{"package": PKG, "version": "1.0", "status": "PUBLISHED"},
                   {"package": PKG, "version": "0.9", "status": "DEPRECATED"}])
    with pytest.raises(ClientError) as both:
        iot.update_package(packageName=PKG, defaultVersionName="1.0", unsetDefaultVersion=True)
    assert both.value.response["Error"]["Code"] == "ValidationException"
    assert "defaultVersionName" not in iot.get_package(packageName=PKG)
    iot.update_package(packageName=PKG, defaultVersionName="0.9")
    assert iot.get_package(packageName=PKG)["defaultVersionName"] == "0.9"
    iot.update_package(packageName=PKG, defaultVersionName="1.0")
    iot.update_package_version(packageName=PKG, versionName="1.0", action="DEPRECATE")
    assert iot.get_package(packageName=PKG)["defaultVersionName"] == "1.0"


def test_a_default_step_cut_off_in_flight_resumes_and_undo_restores_the_first_read(tmp_path):
    """The UpdatePackage call reached the service but the run died before its answer was
    journalled: the resume finds the default as planned (skipped), and undo still restores
    the default read before the first send."""
    import anyio

    from fleetrel import Stop
    from fleetrel.testing import HANG
    from fleetrel.undo import build_undo

    iot = FakeIoT({"fw/1.0": "PUBLISHED", "fw/2.0": "DRAFT"}, defaults={PKG: "1.0"})
    iot.script("fw#default", HANG)
    plan = load_plan(plan_file(tmp_path / "p.yaml", [{"package": PKG, "version": "2.0", "action": "PUBLISH",
                                                      "default": True}]))
    journal = tmp_path / "j.jsonl"
    stop = Stop()

    async def main():
        async with anyio.create_task_group() as tg:
            async def cut_off() -> None:
                while not iot.calls["fw#default"]:
                    await anyio.sleep(0.01)
                iot.defaults[PKG] = "2.0"  # the service applied it; the answer never came back
                stop.now()
            tg.start_soon(cut_off)
            return await run(plan, Where(journal_path=journal), client=iot, stop=stop)

    first = run_virtual(main)
    assert first.status == Status.INTERRUPTED and first.unfinished == 1
    resumed = go(plan, iot, journal)
    assert resumed.status == Status.COMPLETE and iot.calls["fw#default"] == 1  # nothing sent again
    assert {o.key: o.outcome for o in resumed.outcomes}["fw/2.0#default"] == "skipped"
    undo = build_undo(journal)
    assert undo.plan["versions"] == [{"package": PKG, "version": "2.0", "action": "DEPRECATE", "then_default": "1.0"}]


def test_expired_credentials_on_the_default_read_leave_the_step_for_a_resume(tmp_path):
    from fleetrel.testing import service_error

    class ExpiredOnRead(FakeIoT):
        async def get_package(self, **kwargs):
            raise service_error("ExpiredTokenException", 403, "expired", "GetPackage")

    iot = ExpiredOnRead({"fw/2.0": "DRAFT"})
    plan = load_plan(plan_file(tmp_path / "p.yaml", [{"package": PKG, "version": "2.0", "action": "PUBLISH",
                                                      "default": True}]))
    result = go(plan, iot, tmp_path / "j.jsonl")
    assert result.status == Status.INTERRUPTED and result.unfinished == 1 and result.failed == 0
    assert result.setup_error.startswith("ExpiredTokenException") and iot.calls["fw#default"] == 0
    resumed = go(plan, FakeIoT({"fw/2.0": "PUBLISHED"}), tmp_path / "j.jsonl")
    assert resumed.status == Status.COMPLETE and resumed.done_before == 1 and resumed.succeeded == 2
