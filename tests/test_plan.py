"""The release plan: loading, every validation rule, expansion into steps, the CLI.

Rule tests write a plan to a real file and load it, so each message is checked as the
user sees it: naming the file, the entry and the rule. Property tests throw arbitrary
YAML and mutated plans at `load` and require that it raises PlanError or nothing.
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetrel.cli import main
from fleetrel.events import ExitCode
from fleetrel.rehearsal import DEMO_PLAN

EXIT_INVALID, EXIT_OK = ExitCode.INVALID, ExitCode.OK
from fleetrel.plan.steps import canonical_json, requests_json
from fleetrel.plan import (
    Abort,
    Limits,
    PlanError,
    ReleasePlan,
    Step,
    Target,
    digest,
    load,
)

from support import update_calls, write_plan

REPO = Path(__file__).resolve().parent.parent
PLANS = REPO / "plans"  # the example plans; the demo's own (DEMO_PLAN) ships in the package


def valid_plan() -> dict[str, Any]:
    """A small plan that uses every feature: defaults, shorthand, artifact, recipe."""
    return {
        "plan": "unit-test",
        "limits": {"rate": 5, "burst": 2, "concurrency": 4},
        "defaults": {"action": "PUBLISH", "description": "Spring", "attributes": {"channel": "stable"}},
        "versions": [
            {"package": "thermostat-fw", "version": "4.2.0", "attributes": {"min_hw": "rev-c"}},
            {"package": "thermostat-fw", "versions": ["3.0.0", "3.0.1"], "action": "DEPRECATE"},
            {
                "package": "door-sensor-app",
                "version": "1.9.3",
                "artifact": {"s3Location": {"bucket": "fw", "key": "door/1.9.3.bin", "version": "3"}},
                "recipe": '{"steps": []}',
            },
        ],
    }


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(data_or_text, name="plan.yaml") -> path of a plan file in tmp_path."""

    def _write(content: Any, name: str = "plan.yaml") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    return _write


def problems_of(path: Path) -> list[str]:
    with pytest.raises(PlanError) as caught:
        load(path)
    assert caught.value.problems, "a PlanError must list at least one problem"
    assert str(caught.value) == "\n".join(caught.value.problems)
    assert caught.value.path == str(path)
    return caught.value.problems


# --- the valid path -----------------------------------------------------------------------


def test_valid_plan_expands_in_order_with_defaults_merged(write):
    plan = load(write(valid_plan()))
    steps = plan.steps()
    assert [s.key for s in steps] == [
        "thermostat-fw/4.2.0", "thermostat-fw/3.0.0", "thermostat-fw/3.0.1", "door-sensor-app/1.9.3"]
    assert [s.index for s in steps] == [0, 1, 2, 3]
    # attributes merge key by key; the entry wins for action
    assert steps[0].attributes == {"channel": "stable", "min_hw": "rev-c"}
    assert steps[0].action == "PUBLISH" and steps[1].action == "DEPRECATE"
    assert steps[1].description == "Spring"
    assert steps[3].artifact == {"s3Location": {"bucket": "fw", "key": "door/1.9.3.bin", "version": "3"}}
    assert steps[3].request() == {
        "packageName": "door-sensor-app", "versionName": "1.9.3", "description": "Spring",
        "attributes": {"channel": "stable"},
        "artifact": {"s3Location": {"bucket": "fw", "key": "door/1.9.3.bin", "version": "3"}},
        "action": "PUBLISH", "recipe": '{"steps": []}'}
    assert plan.summary() == "4 steps, 2 packages, PUBLISH 2, DEPRECATE 2"
    assert plan.source == write(valid_plan())


def test_models_show_their_defaults():
    assert Limits() == Limits(rate=10.0, burst=10, concurrency=16, adaptive=True)
    assert Abort() == Abort(max_failure_ratio=0.10, min_finished=20)
    assert Target() == Target(region=None, profile=None, endpoint_url=None)
    plan = ReleasePlan.model_validate({"plan": "p", "versions": [{"package": "a", "version": "1", "action": "PUBLISH"}]})
    assert plan.limits == Limits() and plan.abort == Abort() and plan.waves is None
    assert plan.source is None


def test_digest_is_over_the_expanded_requests_and_follows_every_field(write):
    plan = load(write(valid_plan()))
    in_key_order = sorted(plan.steps(), key=lambda s: (s.package, s.version))
    assert plan.digest == digest([s.request() for s in in_key_order])
    assert load(write(valid_plan())).digest == plan.digest  # deterministic
    changed = valid_plan()
    changed["versions"][1]["versions"].append("3.0.2")
    assert load(write(changed)).digest != plan.digest
    changed = valid_plan()
    changed["defaults"]["attributes"]["channel"] = "beta"
    assert load(write(changed)).digest != plan.digest
    # limits are how fast, not what: they do not change the digest (and so the run)
    changed = valid_plan()
    changed["limits"]["rate"] = 1
    assert load(write(changed)).digest == plan.digest


def test_a_reordered_plan_has_the_same_digest(write):
    # The clientTokens do not depend on the order; neither may the run's identity, or a
    # plan that was only reordered is refused as changed and `--new-run` re-sends it all.
    plan = load(write(valid_plan()))
    reordered = valid_plan()
    reordered["versions"].reverse()
    reordered["versions"][1]["versions"].reverse()  # the shorthand list too
    again = load(write(reordered, "reordered.yaml"))
    assert [s.key for s in again.steps()] != [s.key for s in plan.steps()]
    assert again.digest == plan.digest
    split = valid_plan()  # the same steps, written as one entry per version
    shorthand = split["versions"].pop(1)
    split["versions"] += [{**shorthand, "versions": None, "version": v} for v in shorthand["versions"]]
    for entry in split["versions"][-2:]:
        del entry["versions"]
    assert load(write(split, "split.yaml")).digest == plan.digest


def test_a_reordered_plan_resumes_its_run_over_http_and_sends_nothing_again(emulator, tmp_path):
    versions = [f"2.0.{i}" for i in range(6)]
    emulator.seed([("reorder-pkg", v) for v in versions])
    plan, journal = tmp_path / "p.yaml", tmp_path / "p.journal.jsonl"
    args = ["run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url]
    write_plan(plan, versions, package="reorder-pkg")
    first = CliRunner().invoke(main, args)
    assert first.exit_code == EXIT_OK, first.output
    write_plan(plan, versions[::-1], package="reorder-pkg")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == EXIT_OK, again.output  # the same run, already complete
    assert update_calls(emulator) == len(versions)


def test_steps_are_built_once_per_plan_and_handed_out_as_copies(write):
    plan = load(write(valid_plan()))
    first, second = plan.steps(), plan.steps()
    assert first == second and all(a is b for a, b in zip(first, second))  # the same Step objects
    first.reverse()
    first.append(first[0])
    assert [s.index for s in plan.steps()] == [0, 1, 2, 3]  # the caller's list was a copy


@pytest.mark.parametrize("with_a_field_error", [False, True], ids=["fields-valid", "field-error"])
def test_rules_across_entries_run_once_per_load(write, monkeypatch, with_a_field_error):
    # With every field valid the model's validator finds the duplicate; with a field error it
    # does not run and the loader finds it over the valid parts. Never both.
    import fleetrel.plan.diagnostics
    import fleetrel.plan.entries
    import fleetrel.plan.models

    calls: list[str] = []
    for name in ("cross_entry_problems", "duplicate_problems"):
        original = getattr(fleetrel.plan.entries, name)

        def counted(*args, _original=original, _name=name):
            calls.append(_name)
            return _original(*args)

        for module in (fleetrel.plan.models, fleetrel.plan.diagnostics):
            monkeypatch.setattr(module, name, counted)
    data = valid_plan()
    data["versions"].append({"package": "thermostat-fw", "version": "4.2.0"})
    if with_a_field_error:
        data["limits"]["rate"] = -1
    problems = problems_of(write(data))
    assert any("versions[3]" in p and "already appears in versions[0]" in p for p in problems), problems
    assert len(problems) == (2 if with_a_field_error else 1)
    assert sorted(calls) == ["cross_entry_problems", "duplicate_problems"]


def test_action_is_case_insensitive_and_normalised(write):
    data = valid_plan()
    data["defaults"]["action"] = "publish"
    data["versions"][1]["action"] = "Deprecate"
    steps = load(write(data)).steps()
    assert [s.action for s in steps] == ["PUBLISH", "DEPRECATE", "DEPRECATE", "PUBLISH"]


def test_explicit_null_in_an_entry_clears_a_default(write):
    data = valid_plan()
    data["versions"][0]["action"] = None  # description-and-attributes-only update
    data["versions"][2]["attributes"] = None
    steps = load(write(data)).steps()
    assert steps[0].action is None and steps[0].description == "Spring"
    assert steps[3].attributes is None and "attributes" not in steps[3].request()


def test_entry_without_action_is_a_field_only_update(write):
    data = valid_plan()
    del data["defaults"]["action"]
    data["versions"] = [{"package": "hub-agent", "version": "3.0.0",
                         "artifact": {"s3Location": {"bucket": "b", "key": "k"}}}]
    plan = load(write(data))
    (step,) = plan.steps()
    assert step.action is None and step.artifact == {"s3Location": {"bucket": "b", "key": "k"}}
    assert "action" not in step.request()
    assert plan.summary() == "1 step, 1 package, field-only 1"


def test_waves_resolve_to_cumulative_step_counts(write):
    data = valid_plan()
    data["waves"] = [1, "50%"]
    assert load(write(data)).wave_ends() == [1, 2, 4]
    data["waves"] = ["25%", "100%"]
    assert load(write(data)).wave_ends() == [1, 4]
    del data["waves"]
    assert load(write(data)).wave_ends() == [4]


def test_json_and_toml_plans_load_to_the_same_steps(write):
    reference = load(write(valid_plan()))
    as_json = load(write(json.dumps(valid_plan()), "plan.json"))
    toml_text = """
plan = "unit-test"
[limits]
rate = 5
burst = 2
concurrency = 4
[defaults]
action = "PUBLISH"
description = "Spring"
attributes = { channel = "stable" }
[[versions]]
package = "thermostat-fw"
version = "4.2.0"
attributes = { min_hw = "rev-c" }
[[versions]]
package = "thermostat-fw"
versions = ["3.0.0", "3.0.1"]
action = "DEPRECATE"
[[versions]]
package = "door-sensor-app"
version = "1.9.3"
recipe = '{"steps": []}'
artifact = { s3Location = { bucket = "fw", key = "door/1.9.3.bin", version = "3" } }
"""
    as_toml = load(write(toml_text, "plan.toml"))
    assert as_json.steps() == reference.steps() == as_toml.steps()
    assert as_json.digest == reference.digest == as_toml.digest
    assert load(write(yaml.safe_dump(valid_plan()), "plan.yml")).digest == reference.digest


# --- the bundled plans ----------------------------------------------------------------------


def test_every_bundled_plan_is_in_the_list_below():
    assert sorted(p.name for p in PLANS.glob("*.yaml")) == sorted(BUNDLED_PLANS)


BUNDLED_PLANS = ["deprecate-old.yaml", "migration.yaml", "org-release.yaml", "retire-old-firmware.yaml",
                 "cleanup.yaml", "fleet-catalog.yaml", "cleanup-by-usage.yaml"]


@pytest.mark.parametrize("path", [DEMO_PLAN, *(PLANS / name for name in BUNDLED_PLANS)], ids=lambda path: path.name)
def test_bundled_plans_validate(path):
    plan = load(path)
    assert plan.target.endpoint_url is None  # the CLI passes it
    for step in plan.steps() if not plan.needs_expansion else []:  # select: entries: tests/test_selection_http.py
        assert_step_passes_the_rules(step)


def test_demo_plan_shape():
    plan = load(DEMO_PLAN)
    steps = plan.steps()
    assert plan.plan == "demo-spring-release"
    assert len(steps) == 200 and {s.action for s in steps} == {"PUBLISH"}
    assert {s.package for s in steps} == {"thermostat-fw", "door-sensor-app", "hub-agent", "camera-fw"}
    assert (plan.limits.rate, plan.limits.burst, plan.limits.concurrency) == (10, 10, 16)
    assert all(s.attributes and s.attributes["release"] == "spring-2026" for s in steps)
    assert plan.summary() == "200 steps, 4 packages, PUBLISH 200"


def test_migration_plan_sets_artifact_attributes_and_publish_in_one_step():
    steps = load(PLANS / "migration.yaml").steps()
    assert steps and all(s.action == "PUBLISH" and s.artifact and s.attributes for s in steps)
    assert len({s.key for s in steps}) == len(steps)


# --- every rule, one at a time ----------------------------------------------------------------
# (mutate a valid plan, expected where, expected rule wording)

def _set(path: tuple, value: Any) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        target = data
        for item in path[:-1]:
            target = target[item]
        target[path[-1]] = value
    return mutate


def _delete(path: tuple) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        target = data
        for item in path[:-1]:
            target = target[item]
        del target[path[-1]]
    return mutate


E0 = "versions[0] (thermostat-fw/4.2.0)"
E1 = "versions[1] (thermostat-fw/3.0.0 …, 2 versions)"
E2 = "versions[2] (door-sensor-app/1.9.3)"

RULES = [
    ("package-pattern", _set(("versions", 0, "package"), "thermo fw"), "versions[0] (thermo fw/4.2.0): package", "outside [a-zA-Z0-9-_.]"),
    ("package-empty", _set(("versions", 0, "package"), ""), "versions[0] (/4.2.0): package", "is empty"),
    ("package-too-long", _set(("versions", 0, "package"), "p" * 129), "versions[0] (", "at most 128"),
    ("package-128-ok-version-65", _set(("versions", 0, "version"), "1" * 65), "versions[0] (thermostat-fw/", "at most 64"),
    ("version-pattern", _set(("versions", 0, "version"), "4.2.0 beta"), "versions[0] (thermostat-fw/4.2.0 beta): version", "outside [a-zA-Z0-9-_.]"),
    ("version-number", _set(("versions", 0, "version"), 1.1), "versions[0] (thermostat-fw/1.1): version", "read as a number"),
    ("version-in-list", _set(("versions", 1, "versions"), ["3.0.0", "bad/slash"]), "versions[1] (thermostat-fw/3.0.0 …, 2 versions): versions[1]", "outside [a-zA-Z0-9-_.]"),
    ("description-too-long", _set(("versions", 0, "description"), "x" * 1025), f"{E0}: description", "at most 1024"),
    ("description-control", _set(("versions", 0, "description"), "two\nlines"), f"{E0}: description", "control character U+000A"),
    ("description-format-char", _set(("defaults", "description"), "zero\u200bwidth"), "defaults.description", "control character U+200B"),
    ("description-empty", _set(("versions", 0, "description"), ""), f"{E0}: description", "empty"),
    ("recipe-too-long", _set(("versions", 2, "recipe"), "r" * 3073), f"{E2}: recipe", "at most 3072"),
    ("attribute-key-pattern", _set(("versions", 0, "attributes"), {"min hw": "c"}), f"{E0}: attributes.min hw", "outside [a-zA-Z0-9:_-]"),
    ("attribute-key-too-long", _set(("versions", 0, "attributes"), {"k" * 129: "c"}), f"{E0}: attributes", "1–128"),
    ("attribute-value-empty", _set(("versions", 0, "attributes"), {"min_hw": ""}), f"{E0}: attributes.min_hw", "empty"),
    ("attribute-value-number", _set(("versions", 0, "attributes"), {"min_hw": 3}), f"{E0}: attributes.min_hw", "put it in quotes"),
    ("attribute-value-bool", _set(("versions", 0, "attributes"), {"signed": True}), f"{E0}: attributes.signed", "read as a boolean"),
    ("attribute-value-control", _set(("versions", 0, "attributes"), {"a": "x\ty"}), f"{E0}: attributes.a", "control character U+0009"),
    ("attributes-not-mapping", _set(("versions", 0, "attributes"), ["a", "b"]), f"{E0}: attributes", "must be a mapping"),
    ("attributes-3kb-merged", _set(("versions", 0, "attributes"), {"blob": "x" * 3060}), f"{E0}: attributes", "with the defaults merged in"),
    ("attributes-3kb-defaults", _set(("defaults", "attributes"), {"blob": "x" * 3100}), "defaults.attributes", "at most 3072"),
    ("attributes-3kb-utf8-bytes", _set(("versions", 0, "attributes"), {"blob": "é" * 1530}), f"{E0}: attributes", "UTF-8"),
    ("action-unknown", _set(("versions", 0, "action"), "PUBLISHED"), f"{E0}: action", "did you mean 'PUBLISH'"),
    ("action-number", _set(("versions", 0, "action"), 1), f"{E0}: action", "use PUBLISH or DEPRECATE"),
    ("artifact-missing-s3location", _set(("versions", 2, "artifact"), {"bucket": "b", "key": "k"}), f"{E2}: artifact", "unknown key 'bucket'"),
    ("artifact-empty-bucket", _set(("versions", 2, "artifact", "s3Location", "bucket"), ""), f"{E2}: artifact.s3Location.bucket", "empty"),
    ("artifact-no-key", _delete(("versions", 2, "artifact", "s3Location", "key")), f"{E2}: artifact.s3Location.key", "required key is missing"),
    ("artifact-version-number", _set(("versions", 2, "artifact", "s3Location", "version"), 3), f"{E2}: artifact.s3Location.version", "read as a number"),
    ("artifact-extra", _set(("versions", 2, "artifact", "s3Location", "region"), "eu"), f"{E2}: artifact.s3Location.region", "unknown key"),
    ("duplicate-single", _set(("versions", 2), {"package": "thermostat-fw", "version": "4.2.0"}), "versions[2] (thermostat-fw/4.2.0): version", "already appears in versions[0]"),
    ("duplicate-in-shorthand", _set(("versions", 1, "versions"), ["3.0.0", "4.2.0"]), "versions[1] (thermostat-fw/3.0.0 …, 2 versions): versions[1]", "thermostat-fw/4.2.0 already appears in versions[0]"),
    ("duplicate-within-one-list", _set(("versions", 1, "versions"), ["3.0.0", "3.0.0"]), "versions[1] (thermostat-fw/3.0.0 …, 2 versions): versions[1]", "already appears in versions[1]"),
    ("rate-zero", _set(("limits", "rate"), 0), "limits.rate", "greater than 0"),
    ("rate-text", _set(("limits", "rate"), "fast"), "limits.rate", "valid number"),
    ("burst-zero", _set(("limits", "burst"), 0), "limits.burst", "greater than or equal to 1"),
    ("burst-float", _set(("limits", "burst"), 2.5), "limits.burst", "valid integer"),
    ("concurrency-zero", _set(("limits", "concurrency"), 0), "limits.concurrency", "greater than or equal to 1"),
    ("adaptive-text", _set(("limits", "adaptive"), "maybe"), "limits.adaptive", "valid boolean"),
    ("ratio-zero", _set(("abort",), {"max_failure_ratio": 0}), "abort.max_failure_ratio", "greater than 0"),
    ("ratio-above-one", _set(("abort",), {"max_failure_ratio": 1.5}), "abort.max_failure_ratio", "less than or equal to 1"),
    ("min-finished-negative", _set(("abort",), {"min_finished": -1}), "abort.min_finished", "greater than or equal to 0"),
    ("plan-name-pattern", _set(("plan",), "spring release/2026"), "plan", "outside [a-zA-Z0-9-_.]"),
    ("plan-name-missing", _delete(("plan",)), "plan", "required key is missing"),
    ("versions-empty", _set(("versions",), []), "versions", "is empty"),
    ("versions-missing", _delete(("versions",)), "versions", "required key is missing"),
    ("entry-both", _set(("versions", 0, "versions"), ["4.2.1"]), E0, "exactly one of 'version: X' or 'versions"),
    ("entry-neither", _delete(("versions", 0, "version")), "versions[0] (thermostat-fw)", "exactly one of 'version: X' or 'versions"),
    ("entry-empty-list", _set(("versions", 1, "versions"), []), "versions[1] (thermostat-fw): versions", "is empty"),
    ("entry-not-mapping", _set(("versions", 1), "thermostat-fw/3.0.0"), "versions[1]: ", "must be a mapping"),
    ("entry-changes-nothing", _set(("versions", 0), {"package": "thermostat-fw", "version": "4.2.0", "action": None, "description": None, "attributes": None}), E0, "changes nothing"),
    ("entry-changes-nothing-no-defaults", lambda d: (_delete(("defaults",))(d), _delete(("versions", 0, "attributes"))(d)), E0, "changes nothing"),
    ("entry-unknown-key", _set(("versions", 0, "verison"), "4.2.1"), f"{E0}: verison", "did you mean 'version'"),
    ("top-unknown-key", _set(("limit",), {"rate": 1}), "limit", "did you mean 'limits'"),
    ("defaults-artifact", _set(("defaults", "artifact"), {"s3Location": {"bucket": "b", "key": "k"}}), "defaults.artifact", "belongs to each entry"),
    ("endpoint-url", _set(("target",), {"endpoint_url": "localhost:5000"}), "target.endpoint_url", "http:// or https://"),
    ("waves-beyond", _set(("waves",), [2, 10]), "waves[1]", "the plan has 4 steps"),
    ("waves-not-growing", _set(("waves",), [3, "50%"]), "waves[1]", "must grow"),
    ("waves-bad-percent", _set(("waves",), ["0%"]), "waves[0]", "percentage in (0%, 100%]"),
    ("waves-bool", _set(("waves",), [True]), "waves[0]", "step count"),
    ("target-not-mapping", _set(("target",), "us-east-1"), "target", "must be a mapping"),
]


@pytest.mark.parametrize(("mutate", "where", "rule"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_is_refused_naming_file_entry_and_rule(write, mutate, where, rule):
    data = valid_plan()
    mutate(data)
    assert_refused(write(data), where, rule)


def assert_refused(path: Path, where: str, rule: str) -> None:
    """Loading `path` lists a problem that names `where` and `rule`, every one naming the file."""
    problems = problems_of(path)
    matching = [p for p in problems if where in p and rule in p]
    assert matching, f"no problem names {where!r} and {rule!r}: {problems}"
    assert all(p.startswith(f"{path}:") for p in problems)


def test_the_valid_plan_itself_is_valid(write):
    # The rule table above mutates this plan: it must start out valid.
    load(write(valid_plan()))


def test_names_at_the_limits_are_accepted(write):
    data = valid_plan()
    data["versions"][0].update(package="p" * 128, version="v" * 64, description="d" * 1024)
    data["versions"][2]["recipe"] = "r" * 3072
    data["versions"][0]["attributes"] = {"k:_-9": "-", "blob": "x" * (3072 - len("k:_-9-blob") - len("channelstable"))}
    data["plan"] = "a-b_c.d"
    step = load(write(data)).steps()[0]
    assert len(step.package) == 128
    assert sum(len(k) + len(v) for k, v in step.attributes.items()) == 3072


def test_every_problem_is_reported_at_once(write):
    data = valid_plan()
    data["limits"]["rate"] = -1
    data["versions"][0]["attributes"] = {"min_hw": 3}
    data["versions"][1]["action"] = "RETIRE"
    data["versions"].append({"package": "thermostat-fw", "version": "4.2.0"})  # duplicate of [0]
    problems = problems_of(write(data))
    assert len(problems) == 4, problems
    assert any("limits.rate" in p for p in problems)
    assert any("attributes.min_hw" in p for p in problems)
    assert any("versions[1]" in p and "'RETIRE' is not an action" in p for p in problems)
    # the duplicate is found even though other entries have type errors
    assert any("versions[3]" in p and "already appears in versions[0]" in p for p in problems)


# A YAML or JSON escape "\ud800" makes a lone surrogate: not text, and not encodable as UTF-8,
# so it would pass validation and crash the run (UnicodeEncodeError) on the first send.
LONE_SURROGATE_FIELDS = [
    ("recipe", '    recipe: "{x}"\n', "versions[0] (a/1.0): recipe"),
    ("description", '    description: "ok {x}"\n', "versions[0] (a/1.0): description"),
    ("attribute-value", '    attributes: {{k: "{x}"}}\n', "versions[0] (a/1.0): attributes.k"),
    ("attribute-key", '    attributes: {{"k{x}": v}}\n', "versions[0] (a/1.0): attributes.k"),  # pydantic shows the key with U+FFFD
    ("s3-bucket", '    artifact: {{s3Location: {{bucket: "b{x}", key: k}}}}\n', "artifact.s3Location.bucket"),
    ("s3-key", '    artifact: {{s3Location: {{bucket: b, key: "k/{x}.bin"}}}}\n', "artifact.s3Location.key"),
    ("s3-version", '    artifact: {{s3Location: {{bucket: b, key: k, version: "{x}"}}}}\n', "artifact.s3Location.version"),
    ("version-name", '    versions: ["2.0", "2.{x}"]\n', "versions[0] (a/2.0 …, 2 versions): versions[1]"),
]


@pytest.mark.parametrize(("line", "where"), [f[1:] for f in LONE_SURROGATE_FIELDS], ids=[f[0] for f in LONE_SURROGATE_FIELDS])
def test_a_lone_surrogate_is_refused_in_validation(write, line, where):
    head = "plan: p\nversions:\n  - package: a\n    action: PUBLISH\n"
    head += "" if "versions:" in line else '    version: "1.0"\n'
    (problem,) = problems_of(write(head + line.format(x="\\ud800")))
    assert where in problem and "lone surrogate U+D800" in problem and "encodable as UTF-8" in problem, problem
    problem.encode("utf-8")  # the message itself can be printed


def test_run_refuses_a_lone_surrogate_before_sending_or_writing_anything(emulator, write, tmp_path):
    emulator.seed([("a", "1.0")])
    plan = write('plan: p\nversions:\n  - {package: a, version: "1.0", recipe: "\\udc80"}\n')
    journal = tmp_path / "run.journal.jsonl"
    result = CliRunner().invoke(main, ["run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url])
    assert result.exit_code == EXIT_INVALID and "encodable as UTF-8" in result.output, result.output
    assert not journal.exists() and update_calls(emulator) == 0


def test_a_lone_surrogate_from_json_or_in_target_and_defaults_is_refused(write):
    data = {"plan": "p", "target": {"region": "eu-\ud800"}, "defaults": {"recipe": "\udfff"},
            "versions": [{"package": "a", "version": "1", "action": "PUBLISH"}]}
    path = write(json.dumps(data), "plan.json")  # json.dumps writes the escapes
    problems = problems_of(path)
    assert [p.split(": ")[1] for p in problems] == ["target.region", "defaults.recipe"], problems
    assert all("encodable as UTF-8" in p for p in problems)
    # a well-formed pair of escapes is one character, and fine
    data = {"plan": "p", "versions": [{"package": "a", "version": "1", "recipe": "\ud83d\ude00"}]}
    (step,) = load(write(json.dumps(data), "pair.json")).steps()
    assert step.recipe == "\U0001F600"


def test_yaml_problems_carry_line_numbers(write):
    text = "plan: p\nversions:\n  - package: a\n    version: '1'\n    action: PUBLISH\n  - package: b\n    version: '2'\n    action: RETIRE\n"
    path = write(text)
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:8: versions[1] (b/2): action:")


# --- malformed files: every one a PlanError, never anything else --------------------------------

MALFORMED = [
    ("yaml-syntax", "plan: p\nversions: [\n  - package: a\n", "plan.yaml", "YAML syntax error at line"),
    ("yaml-bad-indent", "plan: p\n  versions: x\n", "plan.yaml", "YAML syntax error at line 2, column 11"),
    ("yaml-tab", "plan: p\nversions:\n\t- a\n", "plan.yaml", "YAML syntax error at line 3"),
    ("yaml-nul", "plan: p\x00\n", "plan.yaml", "YAML syntax error at line 1, column 8"),
    ("yaml-duplicate-key", "plan: p\nplan: q\nversions: []\n", "plan.yaml", "'plan' appears twice in one mapping (first at line 1)"),
    ("yaml-bad-date", "plan: 2024-13-45\n", "plan.yaml", "cannot be read as YAML"),
    ("yaml-two-documents", "plan: p\n---\nplan: q\n", "plan.yaml", "YAML syntax error"),
    ("yaml-unknown-tag", "plan: !!python/object:os.system ls\n", "plan.yaml", "YAML syntax error"),
    ("yaml-deep", "a: " + "[" * 5000 + "]" * 5000 + "\n", "plan.yaml", "plan.yaml"),
    ("yaml-cyclic-alias", "plan: p\nversions: &v [*v]\n", "plan.yaml", "versions[0]"),
    ("top-level-list", "- plan: p\n", "plan.yaml", "top level must be a mapping"),
    ("top-level-scalar", "just words\n", "plan.yaml", "top level must be a mapping"),
    ("empty-file", "", "plan.yaml", "the plan is empty"),
    ("only-comments", "# nothing yet\n", "plan.yaml", "the plan is empty"),
    ("json-syntax", '{"plan": "p",\n "versions": [}', "plan.json", "JSON syntax error at line 2, column 15"),
    ("json-duplicate-key", '{"plan": "p", "plan": "q"}', "plan.json", "'plan' appears twice"),
    ("json-nan-rate", '{"plan": "p", "limits": {"rate": NaN}, "versions": [{"package": "a", "version": "1", "action": "PUBLISH"}]}', "plan.json", "limits.rate"),
    ("toml-syntax", 'plan = "p"\nversions = [\n', "plan.toml", "TOML syntax error"),
    ("toml-date", 'plan = 2024-01-01\n[[versions]]\npackage = "a"\nversion = "1"\n', "plan.toml", "plan: 2024-01-01 was read as a date"),
    ("unknown-extension", "plan: p\n", "plan.txt", "unknown plan format '.txt'"),
    ("not-utf8", b"plan: caf\xe9\n", "plan.yaml", "not UTF-8 text (byte 0xe9 on line 1)"),
    ("wrong-types-everywhere", "plan: [a]\nlimits: 5\nversions: {package: a}\n", "plan.yaml", "limits: must be a mapping"),
    ("set-instead-of-list", "plan: p\nversions: !!set {a, b}\n", "plan.yaml", "versions: must be a list"),
]


@pytest.mark.parametrize(("content", "name", "expected"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_files_raise_plan_error(write, content, name, expected):
    path = write(content, name)
    problems = problems_of(path)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(str(path)) for p in problems)


def test_the_json_duplicate_key_check_compares_keys_a_linear_number_of_times():
    # Counted, not timed: a count per key compared every key with every other (60,000 keys: 23 s).
    from fleetrel.plan.loading import _json_object_without_duplicates  # json.loads' object_pairs_hook

    compared = 0

    class Key(str):
        __hash__ = str.__hash__

        def __eq__(self, other: object) -> bool:
            nonlocal compared
            compared += 1
            return str.__eq__(self, other)

    n = 2000
    assert len(_json_object_without_duplicates([(Key(f"k{i}"), i) for i in range(n)])) == n
    assert compared <= 2 * n, compared
    with pytest.raises(ValueError, match="'k7' appears twice"):
        _json_object_without_duplicates([(Key(f"k{i}"), i) for i in range(n)] + [(Key("k7"), 0)])


def test_a_duplicate_key_at_the_end_of_a_big_json_object_is_found(write):
    attributes = ", ".join(f'"k{i}": "v"' for i in range(20_000))
    text = '{"plan": "p", "versions": [{"package": "a", "version": "1", "attributes": {%s, "k5": "w"}}]}' % attributes
    (problem,) = problems_of(write(text, "big.json"))
    assert "'k5' appears twice in one object" in problem


def test_missing_file(tmp_path):
    problems = problems_of(tmp_path / "nope.yaml")
    assert problems == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_directory(tmp_path):
    (tmp_path / "plans.yaml").mkdir()
    assert problems_of(tmp_path / "plans.yaml") == [f"{tmp_path / 'plans.yaml'}: is a directory, not a plan file"]


def test_path_through_a_file_is_unreadable(write):
    # Works as root too (unlike chmod 000): the "directory" is a file.
    path = write("plan: p\n") / "inner.yaml"
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: cannot be read:")


def test_a_file_name_that_is_not_utf8_is_a_plan_error_that_can_be_printed(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"spring-\xff.yaml")
    with open(raw, "wb") as f:
        f.write(b'plan: p\nversions: [{package: a, version: "1", action: PUBLISH}]\n')
    for path in (os.fsdecode(raw), Path(os.fsdecode(raw)), os.fsdecode(raw[:-5] + b".toml")):
        with pytest.raises(PlanError) as caught:
            load(path)
        (problem,) = caught.value.problems
        assert problem.startswith(f"{tmp_path}/spring-\\xff.") and "not UTF-8 (byte 0xff)" in problem, problem
        str(caught.value).encode("utf-8")
        caught.value.path.encode("utf-8")


def test_run_refuses_a_file_name_that_is_not_utf8_before_writing_anything(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"\xff.yaml")
    with open(raw, "wb") as f:
        f.write(b'plan: p\nversions: [{package: a, version: "1", action: PUBLISH}]\n')
    proc = subprocess.run([sys.executable, "-m", "fleetrel", "run", raw, "--endpoint-url", "http://127.0.0.1:9"],
                          capture_output=True, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == EXIT_INVALID, proc.stderr
    assert b"Traceback" not in proc.stderr and b"not UTF-8" in proc.stderr
    assert os.listdir(tmp_path) == [os.fsdecode(raw[-6:])]  # no journal beside it


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(write):
    path = write("plan: p\n")
    path.chmod(0)
    assert problems_of(path) == [f"{path}: cannot be read: permission denied"]


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_validate_ok_prints_one_line_per_plan():
    result = CliRunner().invoke(main, ["validate", str(DEMO_PLAN), str(PLANS / "migration.yaml")])
    assert result.exit_code == EXIT_OK, result.output
    lines = result.stdout.splitlines()
    assert lines == [f"{DEMO_PLAN}: ok — 200 steps, 4 packages, PUBLISH 200",
                     f"{PLANS / 'migration.yaml'}: ok — 9 steps, 4 packages, PUBLISH 9"]


def test_cli_validate_invalid_lists_problems_on_stderr_and_exits_2(write):
    data = valid_plan()
    data["versions"][0]["attributes"] = {"min_hw": 3}
    bad = write(data)
    result = CliRunner().invoke(main, ["validate", str(DEMO_PLAN), str(bad)])
    assert result.exit_code == EXIT_INVALID
    assert "demo.yaml: ok" in result.stdout  # the valid plan is still reported
    assert f"{bad}:" in result.stderr and "versions[0] (thermostat-fw/4.2.0): attributes.min_hw" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_schema_prints_the_plan_json_schema():
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == ReleasePlan.model_json_schema()
    assert set(schema["required"]) == {"plan", "versions"}
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Limits"]["properties"]["rate"]["default"] == 10.0


@pytest.mark.parametrize("case", ["syntax", "missing", "types"])
def test_cli_validate_in_a_real_process_never_prints_a_traceback(tmp_path, case):
    path = tmp_path / "bad.yaml"
    if case == "syntax":
        path.write_text("plan: p\nversions: [\n")
    elif case == "types":
        path.write_text("plan: 12\nlimits: {rate: fast}\nversions: [{package: a, version: 1.10}]\n")
    proc = subprocess.run([sys.executable, "-m", "fleetrel", "validate", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == EXIT_INVALID
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.startswith(f"{path}")
    expected = {"syntax": "YAML syntax error at line", "missing": "no such file", "types": "versions[0] (a/1.1): version"}[case]
    assert expected in proc.stderr


# --- properties -----------------------------------------------------------------------------------

NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,}")
KEY_RE = re.compile(r"[A-Za-z0-9:_\-]{1,}")


def _no_control(text: str) -> bool:
    import unicodedata
    return not any(unicodedata.category(c).startswith("C") for c in text)


def assert_step_passes_the_rules(step: Step) -> None:
    """The rules, restated independently of fleetrel.plan."""
    assert NAME_RE.fullmatch(step.package) and len(step.package) <= 128
    assert NAME_RE.fullmatch(step.version) and len(step.version) <= 64
    assert step.action in (None, "PUBLISH", "DEPRECATE")
    if step.description is not None:
        assert 0 < len(step.description) <= 1024 and _no_control(step.description)
    if step.recipe is not None:
        assert isinstance(step.recipe, str) and len(step.recipe) <= 3072
    if step.attributes is not None:
        assert sum(len(k.encode()) + len(v.encode()) for k, v in step.attributes.items()) <= 3072
        for key, value in step.attributes.items():
            assert KEY_RE.fullmatch(key) and len(key) <= 128
            assert isinstance(value, str) and value and _no_control(value)
    if step.artifact is not None:
        assert set(step.artifact) == {"s3Location"}
        location = step.artifact["s3Location"]
        assert {"bucket", "key"} <= set(location) <= {"bucket", "key", "version"}
        assert all(isinstance(v, str) and v for v in location.values())
    assert step.request() and len(step.request_digest()) == 64


FIELD_NAMES = ["plan", "target", "limits", "abort", "defaults", "versions", "waves", "package", "version",
               "action", "description", "attributes", "artifact", "s3Location", "bucket", "key", "recipe",
               "rate", "burst", "concurrency", "adaptive", "max_failure_ratio", "min_finished",
               "targets", "name", "region", "account", "role_arn", "external_id", "accounts", "regions", "role_name"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.dates()
           | st.text(max_size=12) | st.sampled_from(["PUBLISH", "publish", "1.0.0", "", "50%", "a b", "x" * 200]))
nested = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), inner, max_size=4),
                      max_leaves=12)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("plans")


def _load_only_plan_error(path: Path) -> ReleasePlan | None:
    try:
        plan = load(path)
    except PlanError as exc:
        assert exc.problems and all(p.startswith(str(path)) for p in exc.problems)
        return None
    steps = plan.steps()
    for step in steps:
        assert_step_passes_the_rules(step)
    assert len({s.key for s in steps}) == len(steps)
    # summary() counts per entry without the steps: it must agree with them
    summary = plan.summary()
    if plan.targets is not None:  # "N targets, " first
        targets, _, summary = summary.partition(", ")
        assert targets.startswith(f"{len(plan.target_specs())} target")
    assert summary.startswith(f"{len(steps)} step") and f", {len({s.package for s in steps})} package" in summary
    for action in ("PUBLISH", "DEPRECATE"):
        count = sum(s.action == action for s in steps)
        assert (f"{action} {count}" in summary) == (count > 0), summary
    assert plan.wave_ends()[-1] == len(steps)
    return plan


@FAST
@given(text=st.text(max_size=200) | st.text(alphabet=" :-[]{}\n\t\"'&*!|>#%@`,?ab01.~", max_size=120))
def test_property_arbitrary_yaml_text_only_raises_plan_error(scratch, text):
    path = scratch / "arbitrary.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load_only_plan_error(path)


@FAST
@given(data=nested)
def test_property_arbitrary_data_as_yaml_only_raises_plan_error(scratch, data):
    path = scratch / "data.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    _load_only_plan_error(path)


def _yaml_outcome(loader: Any, text: str) -> tuple[str, str]:
    from fleetrel.plan.loading import _compose_and_construct

    try:
        return "data", repr(_compose_and_construct(loader(text))[0])
    except Exception as exc:  # noqa: BLE001 - any refusal counts as one
        return "refused", type(exc).__name__


@pytest.mark.skipif(not hasattr(yaml, "CSafeLoader"), reason="PyYAML without libyaml")
@FAST
@given(text=st.text(max_size=120) | st.text(alphabet=" :-[]{}\n\t\"'&*!|>#%@`,?ab01.~<=", max_size=80)
       | st.sampled_from(["!", "a: !", "a: ! 1", "- !\n- ''"]))
def test_property_the_c_parser_gives_the_data_the_python_parser_gives(text):
    from fleetrel.plan.loading import _FastPlanYamlLoader, _PlanYamlLoader, _yaml_document

    exact = _yaml_outcome(_PlanYamlLoader, text)
    if exact[0] == "data":  # what the pure-Python parser reads, the C parser must read the same
        assert _yaml_outcome(_FastPlanYamlLoader, text) == exact
        assert repr(_yaml_document(text)[0]) == exact[1]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, prefix + (index,))
    return found


@st.composite
def mutated_plans(draw, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """`base` (by default a valid plan using every top-level key) with one to three keys
    deleted, set to arbitrary data or added."""
    if base is None:
        data = valid_plan()
        data["target"] = {"region": "us-east-1"}
        data["abort"] = {"max_failure_ratio": 0.2, "min_finished": 5}
        data["waves"] = [1, "50%"]
    else:
        data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for item in path[:-1]:
            parent = parent[item]
        operation = draw(st.sampled_from(["delete", "set", "add"]))
        if operation == "delete":
            del parent[path[-1]]
        elif operation == "set":
            parent[path[-1]] = draw(nested)
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(FIELD_NAMES) | st.text(max_size=8))] = draw(nested)
        else:
            parent.insert(path[-1], draw(nested))
    return copy.deepcopy(data)


@FAST
@given(data=mutated_plans())
def test_property_mutated_plans_only_raise_plan_error_and_loaded_ones_pass_the_rules(scratch, data):
    path = scratch / "mutated.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    _load_only_plan_error(path)


def test_the_readme_example_plan_is_valid(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("```yaml\n") + len("```yaml\n")
    example = tmp_path / "readme.yaml"
    example.write_text(readme[start:readme.index("```", start)])
    plan = load(example)
    assert len(plan.steps()) == 5 and plan.wave_ends() == [1, 3, 5]


_text = st.text(min_size=1, max_size=12)  # any text: quotes, backslashes, controls, astral characters


@st.composite
def _entry_steps(draw):
    """The steps of one plan entry: shared fields (some absent), their own names."""
    fields = {
        "action": draw(st.sampled_from([None, "PUBLISH", "DEPRECATE"])),
        "description": draw(st.none() | _text),
        "attributes": draw(st.none() | st.dictionaries(_text, _text, max_size=3)),
        "artifact": draw(st.none() | st.fixed_dictionaries(
            {"s3Location": st.fixed_dictionaries({"bucket": _text, "key": _text})})),
        "recipe": draw(st.none() | _text),
    }
    package = draw(_text)
    return [Step(package, version, **fields) for version in draw(st.lists(_text, min_size=1, max_size=3))]


@given(st.lists(_entry_steps(), min_size=1, max_size=4))
def test_the_plan_digest_json_is_the_canonical_json_of_the_requests(entries):
    """requests_json encodes each entry's shared fields once; it must write exactly what
    canonical_json writes for the requests, or a digest would change with the code."""
    steps = [step for entry in entries for step in entry]
    assert requests_json(steps) == canonical_json([step.request() for step in steps])
