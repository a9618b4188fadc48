"""The one order of version names that selectors use (issue 21, findings 3 and 4): per
version, release numbers with SemVer pre-releases, natural sort for other names."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetrel.plan.selectors import (
    MIXED,
    NATURAL_SORT,
    RELEASE_NUMBERS,
    Select,
    VersionFacts,
    match_package,
    sort_key,
    version_key,
)
from support import journal_records


def select(**fields) -> Select:
    return Select.model_validate({"package": "fw", **fields})


def facts(*names: str) -> list[VersionFacts]:
    return [VersionFacts(name, "PUBLISHED") for name in names]


def matched(names: tuple[str, ...], **fields) -> list[str]:
    return match_package(select(**fields), "fw", facts(*names)).matched


# --- finding 3: a bound compares release numbers, never the text beside them ------------


def test_a_strict_bound_does_not_match_the_same_release_written_longer():
    # 4.0 and 4.0.0 are one release number: `above: 4.0` is after it, not at it
    assert matched(("3.9", "4.0.0", "4.0.1"), above="4.0") == ["4.0.1"]
    assert matched(("4.0.0", "4.0.1"), below="4.0") == []


def test_an_inclusive_bound_matches_the_same_release_with_a_v():
    assert matched(("1.9.0", "v2.0.0", "2.0.1"), to="2.0.0") == ["1.9.0", "v2.0.0"]
    assert matched(("v2.0.0", "2.0.1"), **{"from": "2.0"}) == ["v2.0.0", "2.0.1"]


# --- finding 4: a pre-release sorts below its release, whatever its suffix ---------------


def test_keep_newest_keeps_the_release_not_its_release_candidate():
    found = match_package(select(keep_newest=1), "fw", facts("1.0.0-hotfix1", "2.0.0-rc1", "2.0.0"))
    assert found.kept == ["2.0.0"] and found.matched == ["1.0.0-hotfix1", "2.0.0-rc1"]


def test_one_firmware_suffix_does_not_change_how_the_others_compare():
    # 4.3.0-smoke is a pre-release of 4.3.0; 4.10.0 stays after 4.9.0 beside it
    found = match_package(select(keep_newest=2), "fw", facts("4.9.0", "4.10.0", "4.3.0", "4.3.0-smoke"))
    assert found.matched == ["4.3.0-smoke", "4.3.0"] and found.kept == ["4.9.0", "4.10.0"]


def test_hotfix_is_a_pre_release_as_semver_says_of_anything_after_a_dash():
    # packaging refuses 1.0.0-hotfix1 and reads 1.0.0-1 as a post-release; here both are before 1.0.0
    assert matched(("1.0.0", "1.0.0-hotfix1", "1.0.0-1"), keep_newest=1) == ["1.0.0-1", "1.0.0-hotfix1"]
    assert matched(("0.9.9", "1.0.0-hotfix1", "1.0.0"), above="0.9.9", below="1.0") == ["1.0.0-hotfix1"]


@pytest.mark.parametrize("older, newer", [
    ("4.3.0-rc9", "4.3.0-rc10"),  # digit runs in a word as numbers (SemVer's ASCII says otherwise)
    ("4.3.0-rc.2", "4.3.0-rc.10"),  # numeric identifiers as numbers
    ("4.3.0-1", "4.3.0-alpha"),  # numeric identifiers below words
    ("4.3.0-rc", "4.3.0-rc.1"),  # fewer identifiers first
    ("4.3.0-alpha", "4.3.0-beta"),
    ("4.2.9", "4.3.0-alpha"),  # a pre-release is after every lower release
    ("4.3.0", "4.3.0.1"),  # the fourth number firmware uses
    ("4.9", "4.10"),
    ("build-9", "build-10"),
    ("nightly", "0.0.1"),  # names that are no release number come first
])
def test_the_order_of_two_names(older, newer):
    assert version_key(older) < version_key(newer)
    assert matched((newer, older), keep_newest=1) == [older]


@pytest.mark.parametrize("same", [("4.0", "4.0.0", "4", "v4.0", "V4.0.0"),
                                  ("1.0.0-rc1", "1.0.0rc1", "1.0.0.rc1", "1.0.0_rc1")])
def test_one_version_written_several_ways_has_one_key(same):
    assert len({version_key(name) for name in same}) == 1


def test_the_preview_says_per_package_which_kinds_of_name_it_compared():
    assert match_package(select(), "fw", facts("1.0", "2.0.0-rc1", "v3")).compared == RELEASE_NUMBERS
    assert match_package(select(), "fw", facts("build-7", "nightly")).compared == NATURAL_SORT
    found = match_package(select(keep_newest=1), "fw", facts("nightly", "1.0", "build-7"))
    assert found.compared == MIXED and found.matched == ["build-7", "nightly"] and found.kept == ["1.0"]


# --- properties: a total order, and the bounds agree with it -----------------------------

_numbers = st.lists(st.integers(0, 12), min_size=1, max_size=4).map(lambda ns: ".".join(map(str, ns)))
_identifier = st.sampled_from(["rc", "rc1", "rc9", "rc10", "smoke", "hotfix1", "alpha", "beta",
                               "1", "2", "10", "01", "RC1"])


def _pre_release(separator: str, identifiers: list[str]) -> str:
    if identifiers[0][0].isdigit() and separator in (".", ""):
        separator = "-"  # 1.0.0.1 and 1.0.01 are release numbers, not 1.0.0 and a suffix
    return separator + ".".join(identifiers)


_suffix = st.builds(_pre_release, st.sampled_from(["-", ".", "_", ""]), st.lists(_identifier, min_size=1, max_size=3))
_release = st.tuples(st.sampled_from(["", "v"]), _numbers, st.one_of(st.just(""), _suffix)).map("".join)
_other = st.text(alphabet="abv09-_.", min_size=1, max_size=8)
_any = st.text(alphabet="abcvxyzRC0123456789-_.", min_size=1, max_size=12)
NAMES = st.one_of(_release, _release, _other, _any)


@settings(deadline=None)
@given(NAMES, NAMES, NAMES)
def test_the_order_is_total_antisymmetric_and_transitive(a, b, c):
    keys = {name: version_key(name) for name in (a, b, c)}
    for x, y in ((a, b), (b, c), (a, c)):
        # total: exactly one of <, ==, > (and comparing never raises)
        assert [keys[x] < keys[y], keys[x] == keys[y], keys[x] > keys[y]].count(True) == 1
        # the sort's tie-break makes it a strict order of distinct names
        assert (sort_key(x) == sort_key(y)) == (x == y)
    for x, y, z in ((a, b, c), (a, c, b), (b, a, c), (b, c, a), (c, a, b), (c, b, a)):
        if keys[x] <= keys[y] <= keys[z]:
            assert keys[x] <= keys[z]
        if sort_key(x) < sort_key(y) < sort_key(z):
            assert sort_key(x) < sort_key(z)


@settings(deadline=None)
@given(st.lists(NAMES, min_size=1, max_size=8, unique=True), NAMES)
def test_the_bounds_agree_with_the_order(names, bound):
    at = version_key(bound)
    # a bound matches names of its own kind only (a release range never reaches "nightly")
    ordered = [n for n in sorted(names, key=sort_key) if version_key(n)[0] == at[0]]
    below = matched(tuple(names), below=bound)
    above = matched(tuple(names), above=bound)
    from_ = matched(tuple(names), **{"from": bound})
    to = matched(tuple(names), to=bound)
    assert below == [n for n in ordered if version_key(n) < at]
    assert above == [n for n in ordered if version_key(n) > at]
    # strict and inclusive bounds split the order in two, at the same place
    assert below + from_ == ordered and to + above == ordered
    # names equal to the bound (4.0 and 4.0.0) are in both inclusive ones and in neither strict one
    assert [n for n in from_ if n in to] == [n for n in ordered if version_key(n) == at]
    # a version is its own inclusive bound, never its own strict one
    assert bound in matched((bound,), **{"from": bound}) and bound in matched((bound,), to=bound)
    assert matched((bound,), below=bound) == [] == matched((bound,), above=bound)


@settings(deadline=None)
@given(_numbers, _suffix, _numbers)
def test_a_pre_release_is_below_its_release_and_above_every_lower_one(numbers, suffix, lower):
    release = version_key(numbers)
    assert version_key(numbers + suffix) < release
    assert version_key("v" + numbers) == release == version_key(numbers + ".0")
    if version_key(lower) < release:
        assert version_key(lower) < version_key(numbers + suffix)


# --- over HTTP: the emulator's catalog, `fleetrel plan` and `fleetrel run` ----------------

ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def fleetrel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetrel", *args], capture_output=True, text=True, timeout=300,
                          env=ENV, stdin=subprocess.DEVNULL)


def test_keep_newest_over_http_deprecates_the_hotfix_and_the_candidate_not_the_release(emulator, tmp_path):
    published = ["1.0.0-hotfix1", "2.0.0-rc1", "2.0.0"]
    emulator.seed([{"package": "thermostat-fw", "version": v, "status": "PUBLISHED"} for v in published])
    plan = tmp_path / "p.yaml"
    plan.write_text(yaml.safe_dump({"plan": "keep-newest", "limits": {"rate": 200, "burst": 20}, "versions": [
        {"select": {"package": "thermostat-*", "status": "PUBLISHED", "keep_newest": 1}, "action": "DEPRECATE"}]}))
    preview = fleetrel("plan", str(plan), "--endpoint-url", emulator.url, "--json")
    assert preview.returncode == 0, preview.stderr
    [selector] = json.loads(preview.stdout)["selectors"]
    assert selector["packages"] == [{"package": "thermostat-fw", "compared": RELEASE_NUMBERS,
                                     "matched": ["1.0.0-hotfix1", "2.0.0-rc1"], "kept": ["2.0.0"]}]
    run = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["succeeded"] == 2
    assert {v: emulator.state("thermostat-fw", v)["status"] for v in published} == {
        "1.0.0-hotfix1": "DEPRECATED", "2.0.0-rc1": "DEPRECATED", "2.0.0": "PUBLISHED"}
    assert sum(emulator.record()["operations"]["UpdatePackageVersion"].values()) == 2  # nothing else was sent
    assert journal_records(tmp_path / "p.journal.jsonl")[0]["selection"][0]["packages"][0]["kept"] == ["2.0.0"]
