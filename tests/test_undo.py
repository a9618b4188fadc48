"""`fleetrel undo JOURNAL`: the plan that reverses a run, and running it restores the catalog."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings, strategies as st
from click.testing import CliRunner

from fleetrel.where import Where
from fleetrel import load_plan, run
from fleetrel.cli import main
from fleetrel.plan import ReleasePlan
from fleetrel.testing import FakeIoT, run_virtual
from fleetrel.undo import build_undo

VERSIONS = [("fw", "1.0"), ("fw", "2.0"), ("fw", "3.0"), ("app", "0.9"), ("app", "1.0"), ("app", "2.0")]


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def catalog(iot) -> dict:
    out = {f"{p}/{v}": iot.get_package_version(packageName=p, versionName=v)["status"] for p, v in VERSIONS}
    for package in ("fw", "app"):
        out[package] = iot.get_package(packageName=package).get("defaultVersionName")
    return out


def test_run_undo_run_restores_the_catalog(emulator, iot, tmp_path):
    emulator.seed([{"package": "fw", "version": "1.0", "status": "PUBLISHED"},
                   {"package": "fw", "version": "2.0", "status": "DEPRECATED"},
                   ("fw", "3.0"),  # a DRAFT: once published, it cannot go back
                   {"package": "app", "version": "0.9", "status": "PUBLISHED"},
                   {"package": "app", "version": "1.0", "status": "PUBLISHED"},
                   {"package": "app", "version": "2.0", "status": "PUBLISHED"}])
    iot.update_package(packageName="fw", defaultVersionName="1.0")
    iot.update_package(packageName="app", defaultVersionName="1.0")
    before = catalog(iot)
    plan = tmp_path / "release.yaml"
    plan.write_text(yaml.safe_dump({"plan": "release", "limits": {"rate": 100, "burst": 10}, "versions": [
        {"package": "fw", "version": "2.0", "action": "PUBLISH", "default": True},
        {"package": "fw", "version": "3.0", "action": "PUBLISH", "description": "new"},
        {"package": "fw", "version": "1.0", "action": "DEPRECATE"},
        {"package": "app", "version": "1.0", "action": "DEPRECATE", "then_default": "0.9"},
        {"package": "app", "version": "2.0", "action": "PUBLISH"},  # already PUBLISHED: skipped
        {"package": "app", "version": "7.0", "action": "PUBLISH"},  # missing: fails
    ], "abort": {"max_failure_ratio": 1.0}}))
    journal = tmp_path / "release.journal.jsonl"
    ran = cli("run", str(plan), "--endpoint-url", emulator.url)
    assert ran.exit_code == 1, ran.output  # app/7.0 failed
    assert catalog(iot)["fw"] == "2.0" and catalog(iot)["app"] == "0.9"

    undo_plan = tmp_path / "undo.yaml"
    made = cli("undo", str(journal), "-o", str(undo_plan))
    assert made.exit_code == 0, made.output
    text = undo_plan.read_text()
    data = yaml.safe_load(text)
    assert data["plan"] == "release-undo" and data["limits"]["rate"] == 100
    assert data["versions"] == [
        {"package": "fw", "version": "2.0", "action": "DEPRECATE", "then_default": "1.0"},
        {"package": "fw", "version": "3.0", "action": "DEPRECATE"},
        {"package": "fw", "version": "1.0", "action": "PUBLISH"},
        {"package": "app", "version": "1.0", "action": "PUBLISH", "default": True}]
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert any("fw/3.0" in line and "DRAFT" in line for line in comments)
    assert any("fw/3.0" in line and "description" in line for line in comments)
    assert any("1 failed" in line and "1 skipped" in line for line in comments)  # left alone
    assert "app/2.0" not in text and "app/7.0" not in text

    # an ordinary plan: validate, preview, run (resumable), verify
    assert cli("validate", str(undo_plan)).exit_code == 0
    assert cli("plan", str(undo_plan), "--endpoint-url", emulator.url).exit_code == 0
    undone = cli("run", str(undo_plan), "--endpoint-url", emulator.url, "--verify")
    assert undone.exit_code == 0, undone.output
    after = catalog(iot)
    assert after == {**before, "fw/3.0": "DEPRECATED"}  # all but the DRAFT, which cannot return
    again = cli("run", str(undo_plan), "--endpoint-url", emulator.url, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["done_before"] == 6


def targets_plan(path: Path) -> Path:
    path.write_text(yaml.safe_dump({"plan": "org", "targets": [{"name": "us", "region": "us-east-1"},
                                                               {"name": "eu", "region": "eu-west-1"}],
                                    "versions": [{"package": "fw", "version": "2.0", "action": "PUBLISH",
                                                  "default": True}]}))
    return path


def test_undo_of_a_run_with_targets_names_them_and_restores_each_default(tmp_path):
    us = FakeIoT({"fw/1.0": "PUBLISHED", "fw/2.0": "DRAFT"}, defaults={"fw": "1.0"})
    eu = FakeIoT({"fw/2.0": "DEPRECATED"})  # no default in eu
    plan_path = targets_plan(tmp_path / "org.yaml")
    journal = tmp_path / "org.journal.jsonl"
    result = run_virtual(lambda: run(load_plan(plan_path), Where(journal_path=journal), client={"us": us, "eu": eu}))
    assert result.succeeded == 4 and us.defaults == {"fw": "2.0"} and eu.defaults == {"fw": "2.0"}
    undo = build_undo(journal)
    assert [t["name"] for t in undo.plan["targets"]] == ["us", "eu"]
    assert sorted(undo.plan["versions"], key=str) == sorted([
        {"package": "fw", "version": "2.0", "action": "DEPRECATE", "then_default": "1.0", "targets": ["us"]},
        {"package": "fw", "version": "2.0", "action": "DEPRECATE", "unset_default": True, "targets": ["eu"]}], key=str)
    plan = ReleasePlan.model_validate(undo.plan)
    back = run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "undo.journal.jsonl"), client={"us": us, "eu": eu}))
    assert back.succeeded == 4 and us.defaults == {"fw": "1.0"} and eu.defaults == {}
    assert us.status("fw/2.0") == eu.status("fw/2.0") == "DEPRECATED"

    plan_path.unlink()  # where the targets point is in the journal: the plan file is not needed
    gone = cli("undo", str(journal))
    assert gone.exit_code == 0, gone.output
    assert {(t["name"], t["region"]) for t in yaml.safe_load(gone.output)["targets"]} == {
        ("us", "us-east-1"), ("eu", "eu-west-1")}
    targets_plan(tmp_path / "elsewhere.yaml")
    assert cli("undo", str(journal), "--plan", str(tmp_path / "elsewhere.yaml")).exit_code == 0


def test_a_default_set_by_a_session_that_died_before_journalling_it_is_undone(tmp_path):
    """The first session read the old default and sent the change, then died; the resume
    found it done (skipped). The first read is the one undo restores."""
    journal = tmp_path / "j.jsonl"
    lines = [
        {"event": "run_started", "format": 1, "run_id": "r", "plan": "p", "plan_digest": "d", "steps": 2,
         "step_digests": {"fw/2.0": "a", "fw/2.0#default": "b"}},
        {"event": "step_started", "step": "fw/2.0", "client_token": "t1", "attempt": 1, "request": {"action": "PUBLISH"}},
        {"event": "step_succeeded", "step": "fw/2.0", "client_token": "t1", "attempt": 1},
        {"event": "step_started", "step": "fw/2.0#default", "client_token": "t2", "attempt": 1,
         "previous_default": "1.0", "request": {"defaultVersionName": "2.0"}},
        {"event": "run_resumed", "run_id": "r"},
        {"event": "step_started", "step": "fw/2.0#default", "client_token": "t2", "attempt": 1,
         "previous_default": "2.0", "request": {"defaultVersionName": "2.0"}},
        {"event": "step_skipped", "step": "fw/2.0#default", "client_token": "t2", "attempt": 0,
         "previous_default": "2.0", "message": "already in the desired state"},
        {"event": "run_finished"}]
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines))
    undo = build_undo(journal)
    assert undo.plan["versions"] == [{"package": "fw", "version": "2.0", "action": "DEPRECATE", "then_default": "1.0"}]


def test_nothing_to_undo(emulator, tmp_path):
    emulator.seed([{"package": "fw", "version": "1.0", "status": "PUBLISHED"}])
    plan = tmp_path / "p.yaml"
    plan.write_text(yaml.safe_dump({"plan": "noop", "versions": [{"package": "fw", "version": "1.0",
                                                                  "action": "PUBLISH"}]}))
    assert cli("run", str(plan), "--endpoint-url", emulator.url).exit_code == 0  # skipped: already published
    out = tmp_path / "undo.yaml"
    made = cli("undo", str(tmp_path / "p.journal.jsonl"), "-o", str(out))
    assert made.exit_code == 0 and "Nothing to undo" in made.output and not out.exists()
    assert cli("undo", str(tmp_path / "missing.jsonl")).exit_code == 2


STATUSES = ["DRAFT", "PUBLISHED", "DEPRECATED"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(STATUSES), st.sampled_from(["PUBLISH", "DEPRECATE"])),
                min_size=1, max_size=5),
       st.one_of(st.none(), st.integers(0, 4)), st.one_of(st.none(), st.integers(0, 4)))
def test_undo_applied_twice_gives_back_the_runs_own_end_state(versions, default_before, new_default):
    """Run a plan, run its undo, run the undo of the undo: the catalog is as the first run
    left it (a failed or skipped step included: undo leaves those alone)."""
    names = [f"1.{i}" for i in range(len(versions))]
    iot = FakeIoT({f"fw/{name}": status for name, (status, _) in zip(names, versions)})
    if default_before is not None and default_before < len(names) and versions[default_before][0] != "DRAFT":
        iot.defaults["fw"] = names[default_before]
    entries = [{"package": "fw", "version": name, "action": action} for name, (_, action) in zip(names, versions)]
    if new_default is not None and new_default < len(names) and entries[new_default]["action"] == "PUBLISH":
        entries[new_default]["default"] = True

    def state() -> tuple[dict[str, str | None], dict[str, str]]:
        return {name: iot.status(f"fw/{name}") for name in names}, dict(iot.defaults)

    with tempfile.TemporaryDirectory() as folder:
        plan_path = Path(folder) / "release.yaml"
        plan_path.write_text(yaml.safe_dump({"plan": "release", "abort": {"max_failure_ratio": 1.0},
                                             "versions": entries}))
        run_virtual(lambda: run(load_plan(plan_path), Where(journal_path=Path(folder) / "release.journal.jsonl"), client=iot))
        after_run = state()
        journal = Path(folder) / "release.journal.jsonl"
        default_by_hand = False  # an undo that says it cannot carry a default back (and how to, by hand)
        for generation in (1, 2):  # the undo, then the undo of the undo
            undo = build_undo(journal)
            default_by_hand |= any("no entry of this plan can carry it back" in line for line in undo.not_undone)
            if undo.plan is None:
                break
            undo_path = Path(folder) / f"undo-{generation}.yaml"
            undo_path.write_text(undo.text())
            journal = Path(folder) / f"undo-{generation}.journal.jsonl"
            run_virtual(lambda: run(load_plan(undo_path), Where(journal_path=journal), client=iot))
        if default_by_hand:  # the versions are back; the default waits for the command the undo printed
            assert state()[0] == after_run[0]
        else:
            assert state() == after_run
