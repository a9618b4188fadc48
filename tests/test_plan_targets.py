"""A plan's `targets:`: the list and matrix forms, their expansion into target-major
steps, keys and digest, every rule about them, and the service facts they rest on
(checked against botocore's IAM and STS models and its partitions.json).

Pure: no network. Rule tests load real files, as test_plan.py's do, so each message is
checked as the user sees it.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable

import botocore
import botocore.session
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from fleetrel import service
from fleetrel.cli import main
from fleetrel.events import ExitCode
from fleetrel.plan import PlanError, ReleasePlan, Step, TargetMatrix, TargetSpec, load

from test_plan import (  # noqa: F401 - `write` is a fixture
    DEMO_PLAN,
    FAST,
    PLANS,
    _load_only_plan_error,
    assert_refused,
    mutated_plans,
    problems_of,
    write,
)

IDS = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}


def matrix_plan(**changes: Any) -> dict[str, Any]:
    """Two accounts by two regions, three entries, one of them for one target."""
    data: dict[str, Any] = {
        "plan": "org",
        "targets": {"accounts": {"dev": IDS["dev"], "prod": IDS["prod"]}, "regions": ["us-east-1", "eu-west-1"],
                    "role_name": "fleet-release"},
        "defaults": {"description": "Spring"},
        "versions": [
            {"package": "fw", "versions": ["2.0", "2.1"], "action": "PUBLISH"},
            {"package": "fw", "version": "1.0", "action": "DEPRECATE"},
            {"package": "fw", "version": "2.2-smoke", "action": "PUBLISH", "targets": ["dev-us-east-1"]},
        ],
    }
    data.update(changes)
    return data


def listed_plan() -> dict[str, Any]:
    """The same shape as a list of named targets."""
    return matrix_plan(targets=[
        {"name": "dev-us-east-1", "region": "us-east-1", "account": IDS["dev"]},
        {"name": "gov", "region": "us-gov-west-1", "role_arn": f"arn:aws-us-gov:iam::{IDS['prod']}:role/ops/fleet",
         "external_id": "org-7f3a:release", "profile": "gov-admin", "endpoint_url": "http://127.0.0.1:5000"},
    ])


# --- expansion ---------------------------------------------------------------------------


def test_a_matrix_expands_accounts_then_regions_with_names_roles_and_accounts():
    matrix = TargetMatrix.model_validate({"accounts": {"dev": IDS["dev"], "prod": IDS["prod"]},
                                          "regions": ["us-east-1", "eu-west-1"],
                                          "role_name": "fleet-release", "external_id": "org-x1", "profile": "p"})
    specs = matrix.expand()
    assert [s.name for s in specs] == ["dev-us-east-1", "dev-eu-west-1", "prod-us-east-1", "prod-eu-west-1"]
    assert specs[2] == TargetSpec(name="prod-us-east-1", region="us-east-1", account=IDS["prod"],
                                  role_arn=f"arn:aws:iam::{IDS['prod']}:role/fleet-release",
                                  external_id="org-x1", profile="p")
    # a list of ids names each target by its id; no role_name, no role
    (only,) = TargetMatrix.model_validate({"accounts": [IDS["dev"]], "regions": ["eu-west-1"]}).expand()
    assert (only.name, only.account, only.role_arn) == (f"{IDS['dev']}-eu-west-1", IDS["dev"], None)


def test_a_matrix_roles_are_in_the_partition_of_their_region():
    (china,) = TargetMatrix.model_validate({"accounts": [IDS["dev"]], "regions": ["cn-north-1"], "role_name": "r"}).expand()
    (gov,) = TargetMatrix.model_validate({"accounts": [IDS["dev"]], "regions": ["us-gov-west-1"], "role_name": "ops/r"}).expand()
    assert china.role_arn == f"arn:aws-cn:iam::{IDS['dev']}:role/r"
    assert gov.role_arn == f"arn:aws-us-gov:iam::{IDS['dev']}:role/ops/r"


def test_steps_are_target_major_with_target_keys_and_one_index_across_the_plan(write):
    plan = load(write(matrix_plan()))
    steps = plan.steps()
    assert [s.key for s in steps] == [
        "dev-us-east-1:fw/2.0", "dev-us-east-1:fw/2.1", "dev-us-east-1:fw/1.0", "dev-us-east-1:fw/2.2-smoke",
        "dev-eu-west-1:fw/2.0", "dev-eu-west-1:fw/2.1", "dev-eu-west-1:fw/1.0",
        "prod-us-east-1:fw/2.0", "prod-us-east-1:fw/2.1", "prod-us-east-1:fw/1.0",
        "prod-eu-west-1:fw/2.0", "prod-eu-west-1:fw/2.1", "prod-eu-west-1:fw/1.0"]
    assert [s.index for s in steps] == list(range(13))
    assert steps[4] == Step("fw", "2.0", "PUBLISH", description="Spring", target="dev-eu-west-1")
    assert steps[4] != Step("fw", "2.0", "PUBLISH", description="Spring", target="prod-eu-west-1")  # target is part of equality
    assert steps[4].request() == {"packageName": "fw", "versionName": "2.0", "description": "Spring", "action": "PUBLISH"}
    assert plan.step_count() == 13 == len(load(write(matrix_plan())).steps())
    assert plan.summary() == "4 targets, 13 steps, 1 package, PUBLISH 9, DEPRECATE 4"
    assert [t.name for t in plan.target_specs()] == ["dev-us-east-1", "dev-eu-west-1", "prod-us-east-1", "prod-eu-west-1"]


def test_a_list_of_targets_keeps_its_order_and_settings(write):
    plan = load(write(listed_plan()))
    assert [s.key for s in plan.steps()][-3:] == ["gov:fw/2.0", "gov:fw/2.1", "gov:fw/1.0"]
    gov = plan.target_specs()[1]
    assert (gov.profile, gov.endpoint_url, gov.external_id) == ("gov-admin", "http://127.0.0.1:5000", "org-7f3a:release")
    assert "org-7f3a" not in repr(gov)  # kept out of tracebacks and logs
    assert plan.summary() == "2 targets, 7 steps, 1 package, PUBLISH 5, DEPRECATE 2"


def test_a_plan_without_targets_has_no_target_specs_and_keys_without_a_target(write):
    plan = load(DEMO_PLAN)
    assert plan.targets is None and plan.target_specs() == []
    assert all(s.target is None and "/" in s.key and ":" not in s.key for s in plan.steps())


# The digest a journal pins and the keys it records, as they were before `targets:` existed
# (computed at commit 45542ec): a journal of an earlier run must keep resuming.
BEFORE_TARGETS = {
    "demo.yaml": ("ca5f26375bfd0cf532b3e5b101a6eabe54687ec837a12c9e0fd3b75367518de1", "955e4045635e476b",
                  "200 steps, 4 packages, PUBLISH 200"),
    "deprecate-old.yaml": ("8b7668e84e4a744d24250c6aa1726f7bf12875c774d506a3c077bd3308f6a5f2", "6c2ebe7fbaf31037",
                           "37 steps, 4 packages, DEPRECATE 36, field-only 1"),
    "migration.yaml": ("691f0a52bbc5c6792353ad08b10e5656d5f2ccfd7b88717db92f58574e3f6eee", "b86caa829a4afa5d",
                       "9 steps, 4 packages, PUBLISH 9"),
}


@pytest.mark.parametrize("name", sorted(BEFORE_TARGETS))
def test_single_target_plans_keep_their_digest_keys_and_summary(name):
    plan = load(DEMO_PLAN if name == "demo.yaml" else PLANS / name)
    keys = hashlib.sha256("\n".join(s.key for s in plan.steps()).encode()).hexdigest()[:16]
    assert (plan.digest, keys, plan.summary()) == BEFORE_TARGETS[name]


def test_the_digest_covers_each_steps_target_and_not_where_it_points(write):
    plan = load(write(matrix_plan()))
    in_key_order = sorted(plan.steps(), key=lambda s: (s.target, s.package, s.version))
    assert plan.digest == hashlib.sha256(json.dumps(
        [{"target": s.target, "request": s.request()} for s in in_key_order],
        sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    renamed = matrix_plan()
    renamed["targets"]["accounts"] = {"develop": IDS["dev"], "prod": IDS["prod"]}
    renamed["versions"][2]["targets"] = ["develop-us-east-1"]
    assert load(write(renamed, "renamed.yaml")).digest != plan.digest
    narrowed = matrix_plan()
    narrowed["versions"][1]["targets"] = ["prod-us-east-1", "prod-eu-west-1"]
    assert load(write(narrowed, "narrowed.yaml")).digest != plan.digest
    # what a target points at is not what the run does: a new role resumes the same run
    other_role = matrix_plan()
    other_role["targets"]["role_name"] = "release/other"
    assert load(write(other_role, "role.yaml")).digest == plan.digest


def test_a_reordered_plan_with_targets_has_the_same_digest(write):
    plan = load(write(matrix_plan()))
    reordered = matrix_plan()
    reordered["versions"].reverse()
    reordered["targets"]["regions"].reverse()
    reordered["targets"]["accounts"] = dict(reversed(list(reordered["targets"]["accounts"].items())))
    again = load(write(reordered, "reordered.yaml"))
    assert [s.key for s in again.steps()] != [s.key for s in plan.steps()]
    assert again.digest == plan.digest


def test_the_same_version_may_appear_once_per_target(write):
    data = matrix_plan()
    data["versions"].append({"package": "fw", "version": "2.2-smoke", "action": "DEPRECATE",
                             "targets": ["prod-us-east-1", "prod-eu-west-1"]})
    steps = load(write(data)).steps()
    smoke = [(s.target, s.action) for s in steps if s.version == "2.2-smoke"]
    assert smoke == [("dev-us-east-1", "PUBLISH"), ("prod-us-east-1", "DEPRECATE"), ("prod-eu-west-1", "DEPRECATE")]


def test_waves_count_target_major_steps_so_the_first_target_can_be_a_canary(write):
    plan = load(write(matrix_plan(waves=[4, "50%"])))
    ends = plan.wave_ends()
    assert ends == [4, 7, 13]
    assert {s.target for s in plan.steps()[:ends[0]]} == {"dev-us-east-1"}


def test_the_bundled_org_release_plan():
    plan = load(PLANS / "org-release.yaml")
    specs = plan.target_specs()
    assert [s.name for s in specs] == [f"{a}-{r}" for a in ("dev", "staging", "prod") for r in ("us-east-1", "eu-west-1")]
    assert [s.account for s in specs[::2]] == [IDS["dev"], IDS["staging"], IDS["prod"]]
    assert all(s.role_arn == f"arn:aws:iam::{s.account}:role/fleet-release" for s in specs)
    steps = plan.steps()
    first_wave = steps[:plan.wave_ends()[0]]
    assert {s.target for s in first_wave} == {"dev-us-east-1"}
    assert len(first_wave) == sum(s.target == "dev-us-east-1" for s in steps)  # the whole first target
    assert [s.target for s in steps if s.attributes and s.attributes.get("channel") == "smoke"] == ["dev-us-east-1"]
    assert {s.action for s in steps} == {"PUBLISH", "DEPRECATE"}
    assert len({s.key for s in steps}) == len(steps)
    assert plan.summary().startswith("6 targets, ")


def test_json_and_toml_plans_with_targets_load_to_the_same_steps(write):
    reference = load(write(matrix_plan()))
    as_json = load(write(json.dumps(matrix_plan()), "plan.json"))
    toml_text = """
plan = "org"
[targets]
accounts = { dev = "111111111111", prod = "333333333333" }
regions = ["us-east-1", "eu-west-1"]
role_name = "fleet-release"
[defaults]
description = "Spring"
[[versions]]
package = "fw"
versions = ["2.0", "2.1"]
action = "PUBLISH"
[[versions]]
package = "fw"
version = "1.0"
action = "DEPRECATE"
[[versions]]
package = "fw"
version = "2.2-smoke"
action = "PUBLISH"
targets = ["dev-us-east-1"]
"""
    as_toml = load(write(toml_text, "plan.toml"))
    assert as_json.steps() == reference.steps() == as_toml.steps()
    assert as_json.digest == reference.digest == as_toml.digest


# --- every rule, one at a time --------------------------------------------------------------


def _change(edit: Callable[[dict], Any]) -> Callable[[dict], Any]:
    return edit  # a mutation of the plan's data, in place (for the table's readability)


def _matrix(**changes: Any) -> Callable[[dict], None]:
    return _change(lambda data: data["targets"].update(changes))


def _listed(index: int, **changes: Any) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        data.update(listed_plan())
        data["targets"][index].update(changes)
        for key in [k for k, v in changes.items() if v is None]:
            del data["targets"][index][key]
    return mutate


GOV = "targets[1] (gov)"
E2 = "versions[2] (fw/2.2-smoke)"

TARGET_RULES = [
    ("both-target-and-targets", _change(lambda d: d.update(target={"region": "us-east-1"})), "target", "not both"),
    ("unknown-target-in-entry", _change(lambda d: d["versions"][2].update(targets=["dev-us-east1"])),
     f"{E2}: targets[0]", "no target is named 'dev-us-east1' (did you mean 'dev-us-east-1'?)"),
    ("target-named-twice-in-entry", _change(lambda d: d["versions"][2].update(targets=["dev-us-east-1"] * 2)),
     f"{E2}: targets[1]", "named twice"),
    ("entry-targets-empty", _change(lambda d: d["versions"][2].update(targets=[])), f"{E2}: targets", "is empty"),
    ("entry-targets-without-plan-targets", _change(lambda d: d.pop("targets")), f"{E2}: targets", "the plan has no 'targets:'"),
    ("duplicate-target-name", _listed(1, name="dev-us-east-1"), "targets[1] (dev-us-east-1): name", "names must be unique"),
    ("same-account-and-region-twice", _listed(1, name="again", region="us-east-1", account=IDS["dev"], role_arn=None,
                                              endpoint_url=None),
     "targets[1] (again)", "are both account 111111111111 in us-east-1"),
    ("target-name-pattern", _listed(1, name="gov cloud"), "targets[1] (gov cloud): name", "outside [a-zA-Z0-9-_.]"),
    ("target-name-too-long", _listed(1, name="g" * 65), "targets[1]: name", "at most 64"),
    ("target-region-missing", _listed(1, region=None), f"{GOV}: region", "required key is missing"),
    ("target-unknown-key", _listed(1, regoin="x"), f"{GOV}: regoin", "did you mean 'region'"),
    ("account-unquoted", _listed(0, account=111111111111), "targets[0] (dev-us-east-1): account", "put it in quotes"),
    ("account-short", _listed(0, account="11111111111"), "targets[0] (dev-us-east-1): account", "12 digits"),
    ("account-dashes", _listed(0, account="1111-1111-1111"), "targets[0] (dev-us-east-1): account", "write it as '111111111111'"),
    ("account-unicode-digits", _listed(0, account="١١١١١١١١١١١١"), "targets[0] (dev-us-east-1): account", "12 digits"),
    ("region-malformed", _listed(1, region="us-gov-west"), f"{GOV}: region", "not an AWS region name"),
    ("region-availability-zone", _listed(1, region="us-gov-west-1a"), f"{GOV}: region", "availability zone: the region is 'us-gov-west-1'"),
    ("region-upper-case", _listed(0, region="US-EAST-1"), "targets[0] (dev-us-east-1): region", "must be written 'us-east-1'"),
    ("region-other-partition", _listed(0, region="us-iso-east-1"), "targets[0] (dev-us-east-1): region", "aws-us-gov partition"),
    ("role-arn-not-an-arn", _listed(1, role_arn="fleet-release"), f"{GOV}: role_arn", "not an IAM role ARN"),
    ("role-arn-a-user", _listed(1, role_arn=f"arn:aws-us-gov:iam::{IDS['prod']}:user/fleet"), f"{GOV}: role_arn", "not an IAM role ARN"),
    ("role-arn-short-account", _listed(1, role_arn="arn:aws-us-gov:iam::12345:role/r"), f"{GOV}: role_arn", "not an IAM role ARN"),
    ("role-arn-bad-name", _listed(1, role_arn=f"arn:aws-us-gov:iam::{IDS['prod']}:role/fleet release"), f"{GOV}: role_arn", "outside [a-zA-Z0-9_+=,.@-]"),
    ("role-arn-no-name", _listed(1, role_arn=f"arn:aws-us-gov:iam::{IDS['prod']}:role/ops/"), f"{GOV}: role_arn", "give the role's name"),
    ("role-arn-long-name", _listed(1, role_arn=f"arn:aws-us-gov:iam::{IDS['prod']}:role/{'r' * 65}"), f"{GOV}: role_arn", "at most 64"),
    ("role-arn-long-path", _listed(1, role_arn=f"arn:aws-us-gov:iam::{IDS['prod']}:role/{'p' * 511}/r"), f"{GOV}: role_arn", "at most 512"),
    ("role-arn-other-account", _listed(1, account=IDS["dev"]), GOV, "role in account 333333333333 but account is 111111111111"),
    ("role-arn-other-partition", _listed(1, role_arn=f"arn:aws:iam::{IDS['prod']}:role/r"), GOV, "write arn:aws-us-gov:iam::"),
    ("external-id-short", _listed(1, external_id="x"), f"{GOV}: external_id", "STS takes 2–1224"),
    ("external-id-long", _listed(1, external_id="x" * 1225), f"{GOV}: external_id", "STS takes 2–1224"),
    ("external-id-chars", _listed(1, external_id="org secret!"), f"{GOV}: external_id", "outside [a-zA-Z0-9_+=,.@:/-]: ' !'"),
    ("external-id-number", _listed(1, external_id=123456), f"{GOV}: external_id", "put it in quotes"),
    ("endpoint-url", _listed(1, endpoint_url="127.0.0.1:5000"), f"{GOV}: endpoint_url", "http:// or https://"),
    ("targets-empty-list", _change(lambda d: d.update(targets=[])), "targets", "is empty"),
    ("targets-a-string", _change(lambda d: d.update(targets="us-east-1")), "targets", "a list of targets"),
    ("matrix-no-accounts", _matrix(accounts=[]), "targets.accounts", "is empty"),
    ("matrix-no-account-names", _matrix(accounts={}), "targets.accounts", "is empty"),
    ("matrix-no-regions", _matrix(regions=[]), "targets.regions", "is empty"),
    ("matrix-missing-regions", _change(lambda d: d["targets"].pop("regions")), "targets.regions", "required key is missing"),
    ("matrix-accounts-a-string", _matrix(accounts="111111111111"), "targets.accounts", "a list of account IDs"),
    ("matrix-account-unquoted", _matrix(accounts=[111111111111]), "targets.accounts[0]", "put it in quotes"),
    ("matrix-named-account-malformed", _matrix(accounts={"dev": "dev"}), "targets.accounts.dev", "not an AWS account ID"),
    ("matrix-account-name-pattern", _matrix(accounts={"d v": IDS["dev"]}), "targets.accounts", "outside [a-zA-Z0-9-_.]"),
    ("matrix-account-twice", _matrix(accounts=[IDS["dev"], IDS["dev"]]), "targets.accounts", "listed twice"),
    ("matrix-account-under-two-names", _matrix(accounts={"dev": IDS["dev"], "test": IDS["dev"]}), "targets.accounts", "dev and test are both account"),
    ("matrix-region-twice", _matrix(regions=["us-east-1", "us-east-1"]), "targets.regions", "listed twice"),
    ("matrix-region-malformed", _matrix(regions=["us-east-1", "eu-west"]), "targets.regions[1]", "not an AWS region name"),
    ("matrix-regions-span-partitions", _matrix(regions=["us-east-1", "cn-north-1"]), "targets.regions", "different partitions"),
    ("matrix-role-name", _matrix(role_name="fleet release"), "targets.role_name", "outside [a-zA-Z0-9_+=,.@-]"),
    ("matrix-name-too-long", _matrix(accounts={"a" * 60: IDS["dev"]}), "targets", "at most 64 allowed, so shorten the account's name"),
    ("matrix-unknown-key", _matrix(role_nme="r"), "targets.role_nme", "did you mean 'role_name'"),
    ("duplicate-for-a-target", _change(lambda d: d["versions"].append({"package": "fw", "version": "2.0", "action": "DEPRECATE",
                                                                       "targets": ["prod-eu-west-1"]})),
     "versions[3] (fw/2.0): version", "already appears in versions[0] for target 'prod-eu-west-1'"),
    ("duplicate-for-every-target", _change(lambda d: d["versions"].append({"package": "fw", "version": "1.0"})),
     "versions[3] (fw/1.0): version", "a (target, package, version) may appear once per plan"),
    ("waves-beyond-all-targets", _change(lambda d: d.update(waves=[14])), "waves[0]", "the plan has 13 steps"),
]


@pytest.mark.parametrize(("mutate", "where", "rule"), [r[1:] for r in TARGET_RULES], ids=[r[0] for r in TARGET_RULES])
def test_each_target_rule_is_refused_naming_file_entry_and_rule(write, mutate, where, rule):
    data = matrix_plan()
    mutate(data)
    assert_refused(write(data), where, rule)


def test_the_plans_the_rule_table_mutates_are_valid(write):
    load(write(matrix_plan()))
    load(write(listed_plan(), "listed.yaml"))


def test_an_external_id_is_never_repeated_in_a_message(write):
    data = listed_plan()
    data["targets"][1]["external_id"] = "sekrit value!"
    (problem,) = problems_of(write(data))
    assert "sekrit" not in problem and "external_id" in problem


def test_every_target_problem_is_reported_at_once_beside_other_errors(write):
    data = matrix_plan(target={"region": "us-east-1"}, limits={"rate": -1})
    data["targets"]["regions"] = ["us-east-1", "mars-1"]
    data["versions"][0]["attributes"] = {"min_hw": 3}
    data["versions"][2]["targets"] = ["dev-us-east-1", "nowhere"]
    problems = problems_of(write(data))
    assert len(problems) == 4, problems
    assert sorted(p.split(": ")[1] for p in problems) == ["limits.rate", "target", "targets.regions[1]", "versions[0] (fw/2.0 …, 2 versions)"]
    # the matrix is invalid, so its names are unknown: 'nowhere' is not guessed at


def test_an_unknown_target_is_found_beside_an_invalid_entry(write):
    # A field error elsewhere stops the model's own rules; the loader still checks the
    # entries against the targets when the targets are valid on their own.
    data = matrix_plan(waves=[99])
    data["versions"][0]["action"] = "RETIRE"
    data["versions"][2]["targets"] = ["dev-us-east1"]
    data["versions"].append({"package": "fw", "version": "1.0", "action": "PUBLISH", "targets": ["prod-us-east-1"]})
    problems = problems_of(write(data))
    assert any("versions[0]" in p and "'RETIRE' is not an action" in p for p in problems), problems
    assert any("versions[2] (fw/2.2-smoke): targets[0]" in p and "did you mean 'dev-us-east-1'" in p for p in problems), problems
    assert any("versions[3] (fw/1.0)" in p and "for target 'prod-us-east-1'" in p for p in problems), problems
    assert len(problems) == 3, problems  # waves are not checked against a step count that is unknown


def test_target_problems_carry_yaml_line_numbers(write):
    text = ("plan: p\ntargets:\n  - name: a\n    region: us-east-1\n  - name: b\n    region: eu-west-1\n"
            "    account: '12345'\nversions:\n  - {package: x, version: '1', action: PUBLISH}\n")
    path = write(text)
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:7: targets[1] (b): account: account '12345'"), problem


def test_cli_validate_reports_targets_and_exits_2_on_a_target_problem(write):
    ok = CliRunner().invoke(main, ["validate", str(PLANS / "org-release.yaml")])
    assert ok.exit_code == ExitCode.OK, ok.output
    assert ok.stdout == f"{PLANS / 'org-release.yaml'}: ok — {load(PLANS / 'org-release.yaml').summary()}\n"
    assert ": ok — 6 targets, " in ok.stdout
    bad = write(matrix_plan(targets={"accounts": ["1234"], "regions": ["us-east-1"]}))
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == ExitCode.INVALID
    assert f"{bad}:" in result.stderr and "targets.accounts[0]: account '1234' is not an AWS account ID" in result.stderr


def test_the_json_schema_has_the_target_fields():
    schema = ReleasePlan.model_json_schema()
    defs = schema["$defs"]
    assert set(defs["TargetSpec"]["properties"]) == {"name", "region", "account", "role_arn", "external_id", "profile", "endpoint_url"}
    assert defs["TargetSpec"]["required"] == ["name", "region"] and defs["TargetSpec"]["additionalProperties"] is False
    assert set(defs["TargetMatrix"]["required"]) == {"accounts", "regions"}
    assert "targets" in schema["properties"] and "targets" in defs["VersionEntry"]["properties"]
    region = defs["TargetSpec"]["properties"]["region"]
    assert re.fullmatch(region["pattern"], "eu-west-1") and not re.fullmatch(region["pattern"], "eu-west-1a")
    account = defs["TargetSpec"]["properties"]["account"]["anyOf"][0]
    assert re.fullmatch(account["pattern"], IDS["dev"]) and not re.fullmatch(account["pattern"], "1234")


# --- the service facts, against botocore ---------------------------------------------------

IAM = botocore.session.get_session().get_service_model("iam")
STS = botocore.session.get_session().get_service_model("sts")
PARTITIONS = {p["id"]: p for p in json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())["partitions"]}


def test_role_and_external_id_limits_are_the_iam_and_sts_models():
    assert botocore.__version__ == "1.40.61"
    role_name, path = IAM.shape_for("roleNameType").metadata, IAM.shape_for("pathType").metadata
    assert (role_name["min"], role_name["max"], role_name["pattern"]) == (1, service.MAX_ROLE_NAME, "[\\w+=,.@-]+")
    assert path["max"] == service.MAX_ROLE_PATH and "\\u0021-\\u007E" in path["pattern"]
    external = STS.shape_for("externalIdType").metadata
    assert (external["min"], external["max"]) == (service.MIN_EXTERNAL_ID, service.MAX_EXTERNAL_ID)
    assert external["pattern"] == "[\\w+=,.@:\\/-]*"
    model_external = re.compile(external["pattern"], re.ASCII)  # Java's \w is ASCII
    for char in [chr(c) for c in range(0x20, 0x7F)] + ["é", "\n"]:
        ours = service.EXTERNAL_ID_RE.fullmatch(char * 2) is not None
        assert ours == (model_external.fullmatch(char * 2) is not None), char


@pytest.mark.parametrize("partition", service.PARTITIONS)
def test_every_region_botocore_lists_is_accepted_in_its_partition(partition):
    regions = [r for r in PARTITIONS[partition]["regions"] if not r.endswith("-global")]
    assert regions
    for region in regions:
        assert service.partition_of(region) == partition, region


@FAST
@given(region=st.from_regex(service.REGION_PATTERN, fullmatch=True))
def test_a_region_we_accept_matches_its_partitions_region_regex_in_botocore(region):
    partition = service.partition_of(region)
    assert partition in service.PARTITIONS
    assert re.fullmatch(PARTITIONS[partition]["regionRegex"], region)


# --- properties ------------------------------------------------------------------------------


@FAST
@given(accounts=st.lists(st.from_regex(r"[0-9]{12}", fullmatch=True), min_size=1, max_size=4, unique=True),
       regions=st.lists(st.sampled_from(["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-3", "sa-east-1"]),
                        min_size=1, max_size=3, unique=True),
       versions=st.lists(st.sampled_from(["1.0", "1.1", "2.0", "2.1"]), min_size=1, max_size=4, unique=True),
       limited=st.booleans())
def test_property_a_matrix_plan_has_one_step_per_target_and_version(accounts, regions, versions, limited):
    first = f"{accounts[0]}-{regions[0]}"
    entries: list[dict[str, Any]] = [{"package": "fw", "versions": versions, "action": "PUBLISH"}]
    if limited:
        entries.append({"package": "extra", "version": "1.0", "action": "PUBLISH", "targets": [first]})
    plan = ReleasePlan.model_validate({"plan": "p", "targets": {"accounts": accounts, "regions": regions}, "versions": entries})
    steps = plan.steps()
    assert len(steps) == plan.step_count() == len(accounts) * len(regions) * len(versions) + limited
    assert len({s.key for s in steps}) == len(steps) and [s.index for s in steps] == list(range(len(steps)))
    names = [t.name for t in plan.target_specs()]
    assert [s.target for s in steps] == sorted((s.target for s in steps), key=names.index)  # target-major
    assert all(s.key == f"{s.target}:{s.package}/{s.version}" for s in steps)
    assert plan.summary().startswith(f"{len(names)} target{'s' if len(names) > 1 else ''}, {len(steps)} step")


@FAST
@given(data=mutated_plans(matrix_plan(waves=[4])) | mutated_plans(listed_plan()))
def test_property_mutated_plans_with_targets_only_raise_plan_error(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "mutated-targets.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    plan = _load_only_plan_error(path)
    if plan is not None and plan.targets is not None:
        names = [t.name for t in plan.target_specs()]
        assert len(set(names)) == len(names)
        assert all(s.target in names for s in plan.steps())


def test_the_docs_targets_example_is_valid_and_its_first_wave_is_the_first_target(tmp_path):
    page = (PLANS.parent / "docs" / "many-accounts.md").read_text()
    start = page.index("```yaml\nplan: org-") + len("```yaml\n")
    example = tmp_path / "docs-targets.yaml"
    example.write_text(page[start:page.index("```", start)])
    plan = load(example)
    first = plan.target_specs()[0].name
    assert plan.summary() == "6 targets, 13 steps, 1 package, PUBLISH 13"
    assert plan.wave_ends()[0] == sum(s.target == first for s in plan.steps()) == 3
