"""The one order of version names that selectors use (issue 21, findings 3 and 4): per
version, release numbers with SemVer pre-releases, natural sort for other names."""
from __future__ import annotations

from fleetrel.plan.selectors import Select, VersionFacts, match_package


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
