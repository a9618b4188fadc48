"""`select:` entries: the pure matching (ordering, filters, keep_newest last) and the plan
rules around them (validation, digest, steps once expanded)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from fleetrel.expansion import duplicate_problems, empty_warnings, selection_lines, selection_problems
from fleetrel.plan import PlanError, ReleasePlan
from fleetrel.plan.loading import load
from fleetrel.plan.selectors import (
    MIXED,
    NATURAL_SORT,
    RELEASE_NUMBERS,
    PackageMatch,
    Select,
    Selection,
    SelectorMatch,
    VersionFacts,
    match_package,
    packages_matching,
)


def select(**fields) -> Select:
    return Select.model_validate({"package": "fw", **fields})


def facts(*names: str, status: str = "PUBLISHED") -> list[VersionFacts]:
    return [VersionFacts(name, status) for name in names]


def test_release_numbers_order_4_10_after_4_9():
    found = match_package(select(below="4.10"), "fw", facts("4.10", "4.9", "4.2", "10.0"))
    assert found.compared == RELEASE_NUMBERS
    assert found.matched == ["4.2", "4.9"]  # a text comparison would put 4.10 before 4.9 and 10.0 first


def test_natural_sort_when_a_version_is_not_a_release_number():
    found = match_package(select(above="build-9"), "fw", facts("build-10", "build-9", "build-2", "build-9b"))
    assert found.compared == NATURAL_SORT
    assert found.matched == ["build-9b", "build-10"]


def test_a_bound_matches_names_of_its_own_kind_only():
    # per version, not per package: the bound no longer turns 1.0 and 2.0 into natural sort
    found = match_package(select(below="x"), "fw", facts("1.0", "2.0"))
    assert found.compared == MIXED and found.matched == []
    assert match_package(select(above="x"), "fw", facts("1.0", "2.0")).matched == []
    # a DEPRECATE by release range never reaches a name that states no release
    assert match_package(select(below="4.0"), "fw", facts("nightly", "3.9", "4.0")).matched == ["3.9"]
    assert match_package(select(above="build-9"), "fw", facts("build-10", "1.0")).matched == ["build-10"]


def test_from_and_to_are_inclusive_below_and_above_strict():
    versions = facts("1.0", "1.1", "1.2", "1.3")
    assert match_package(select(**{"from": "1.1", "to": "1.2"}), "fw", versions).matched == ["1.1", "1.2"]
    assert match_package(select(above="1.1", below="1.3"), "fw", versions).matched == ["1.2"]


def test_keep_newest_is_applied_last_to_what_the_other_filters_matched():
    versions = facts("1.0", "2.0", "3.0") + facts("4.0", status="DRAFT") + facts("5.0")
    found = match_package(select(status="PUBLISHED", below="5.0", keep_newest=2), "fw", versions)
    # the newest PUBLISHED below 5.0 are 2.0 and 3.0 (4.0 is a draft, 5.0 not below): those are kept
    assert found.matched == ["1.0"] and found.kept == ["2.0", "3.0"]


def test_except_default_leaves_the_default_version_alone():
    found = match_package(select(except_default=True), "fw", facts("1.0", "2.0", "3.0"), default_version="2.0")
    assert found.matched == ["1.0", "3.0"] and found.default_version == "2.0"
    assert match_package(select(), "fw", facts("1.0", "2.0"), default_version="2.0").matched == ["1.0", "2.0"]


def test_attributes_must_all_match():
    versions = [VersionFacts("1.0", "PUBLISHED", attributes={"channel": "beta", "hw": "c"}),
                VersionFacts("1.1", "PUBLISHED", attributes={"channel": "stable"}),
                VersionFacts("1.2", "PUBLISHED", attributes=None)]
    assert match_package(select(attributes={"channel": "beta"}), "fw", versions).matched == ["1.0"]
    assert match_package(select(attributes={"channel": "beta", "hw": "d"}), "fw", versions).matched == []


def test_created_before_is_strict_and_a_date_is_midnight_utc():
    versions = [VersionFacts("1.0", "PUBLISHED", datetime(2025, 12, 31, 23, 59, tzinfo=timezone.utc)),
                VersionFacts("1.1", "PUBLISHED", datetime(2026, 1, 1, tzinfo=timezone.utc)),
                VersionFacts("1.2", "PUBLISHED", None)]
    assert match_package(select(created_before="2026-01-01"), "fw", versions).matched == ["1.0"]
    assert match_package(select(created_after="2026-01-01"), "fw", versions).matched == ["1.1"]


def test_globs_match_package_names_case_sensitively():
    names = ["thermostat-fw", "thermostat-app", "Thermostat-x", "door-fw"]
    assert packages_matching("thermostat-*", names) == ["thermostat-app", "thermostat-fw"]
    assert packages_matching("*-fw", names) == ["door-fw", "thermostat-fw"]
    assert packages_matching("door-fw", names) == ["door-fw"]


def plan_with(*entries, **top) -> ReleasePlan:
    return ReleasePlan.model_validate({"plan": "p", "versions": list(entries), **top})


SELECTOR = {"select": {"package": "fw-*", "status": "PUBLISHED", "below": "2.0"}, "action": "DEPRECATE"}
LISTED = {"package": "fw-a", "version": "3.0", "action": "PUBLISH"}


def test_a_plan_with_selectors_must_be_expanded_before_its_steps_are_used():
    plan = plan_with(LISTED, SELECTOR)
    assert plan.needs_expansion and "1 selector" in plan.summary()
    with pytest.raises(RuntimeError, match="expand it first"):
        plan.steps()
    selection = Selection([SelectorMatch(1, None, [PackageMatch("fw-a", RELEASE_NUMBERS, ["1.0", "1.1"])])])
    expanded = plan.expanded(selection)
    assert [s.key for s in expanded.steps()] == ["fw-a/3.0", "fw-a/1.0", "fw-a/1.1"]
    assert [s.action for s in expanded.steps()] == ["PUBLISH", "DEPRECATE", "DEPRECATE"]
    assert expanded.digest == plan.digest  # the digest covers definitions, not matches
    assert "3 steps" in expanded.summary()


def test_the_digest_changes_with_a_selector_definition_or_a_listed_entry():
    base = plan_with(LISTED, SELECTOR).digest
    narrower = {**SELECTOR, "select": {**SELECTOR["select"], "below": "1.5"}}
    assert plan_with(LISTED, narrower).digest != base
    assert plan_with({**LISTED, "version": "3.1"}, SELECTOR).digest != base
    assert plan_with({**LISTED, "description": "x"}, SELECTOR).digest != base
    assert plan_with(LISTED, SELECTOR).digest == base


def test_a_selector_and_a_listed_entry_naming_one_version_is_a_duplicate():
    plan = plan_with(LISTED, SELECTOR)
    expanded = plan.expanded(Selection([SelectorMatch(1, None, [PackageMatch("fw-a", RELEASE_NUMBERS, ["3.0"])])]))
    problems = duplicate_problems(expanded)
    assert len(problems) == 1 and "versions[1] (select fw-*): fw-a/3.0 is also named by versions[0] (fw-a)" in problems[0]


def test_a_selector_that_matched_nothing_is_a_warning_and_the_report_says_how_it_compared():
    plan = plan_with(LISTED, SELECTOR).expanded(Selection([SelectorMatch(1, None, [])]))
    assert duplicate_problems(plan) == []
    assert empty_warnings(plan) == ["warning: versions[1] (select fw-* PUBLISHED below 2.0) matched nothing"]
    plan = plan_with(SELECTOR).expanded(Selection([SelectorMatch(0, None, [
        PackageMatch("fw-a", NATURAL_SORT, ["b-1"], kept=["b-2"])])]))
    assert "  fw-a (compared as natural sort): b-1; kept newest: b-2" in selection_lines(plan)


def test_the_selection_round_trips_through_json_and_says_what_changed():
    before = Selection([SelectorMatch(0, "t1", [PackageMatch("fw", RELEASE_NUMBERS, ["1.0", "1.1"], ["1.2"])])])
    assert Selection.from_json(before.to_json()) == before
    after = Selection([SelectorMatch(0, "t1", [PackageMatch("fw", RELEASE_NUMBERS, ["1.1", "1.3"])])])
    assert before.differences(after) == ["t1: versions[0] now also matches fw/1.3",
                                         "t1: versions[0] no longer matches fw/1.0"]
    assert before.differences(Selection([SelectorMatch(0, "t2", [])])) == []  # t1 not listed again: nothing said


def test_invalid_selectors_are_refused_with_the_entry_named(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("plan: p\nversions:\n"
                    "  - select: {package: 'bad name', status: gone, keep_newest: 0, form: '1.0'}\n"
                    "    action: DEPRECATE\n"
                    "    artifact: {s3Location: {bucket: b, key: k}}\n")
    with pytest.raises(PlanError) as caught:
        load(path)
    text = str(caught.value)
    assert "versions[0] (select bad name): select.package: 'bad name' is not a package name or glob" in text
    assert "select.status: 'gone' is not a status" in text
    assert "select.keep_newest: should be greater than or equal to 1" in text
    assert "unknown key 'form' (did you mean 'from'?)" in text
    assert "artifact: unknown key 'artifact'" in text


def test_selector_entries_name_only_the_plans_targets():
    with pytest.raises(Exception, match="no target is named 'nowhere'"):
        plan_with({**SELECTOR, "targets": ["nowhere"]}, targets=[{"name": "a", "region": "us-east-1"}])


def test_waves_are_checked_against_the_step_count_once_expanded():
    plan = plan_with(SELECTOR, waves=[1, 5])  # not refused while the step count is unknown
    expanded = plan.expanded(Selection([SelectorMatch(0, None, [PackageMatch("fw-a", RELEASE_NUMBERS, ["1.0", "1.1"])])]))
    assert selection_problems(expanded) == [
        "waves[1]: wave 5 ends at step 5 but the plan has 2 steps once its selectors are expanded"]
    assert selection_problems(plan_with(SELECTOR, waves=[1]).expanded(expanded.selection)) == []


def test_two_identical_selectors_for_different_targets_keep_their_own_matches():
    targets = [{"name": "a", "region": "us-east-1"}, {"name": "b", "region": "us-east-1"}]
    plan = plan_with({**SELECTOR, "targets": ["a"]}, {**SELECTOR, "targets": ["b"]}, targets=targets)
    expanded = plan.expanded(Selection([
        SelectorMatch(0, "a", [PackageMatch("fw-a", RELEASE_NUMBERS, ["1.0"])]),
        SelectorMatch(1, "b", [PackageMatch("fw-a", RELEASE_NUMBERS, ["1.1"])])]))
    assert [s.key for s in expanded.steps()] == ["a:fw-a/1.0", "b:fw-a/1.1"]
    assert duplicate_problems(expanded) == []
