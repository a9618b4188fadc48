"""The service's facts against botocore's model: fleetrel.service, the plan's validation
and the emulator's own copy of the rules, each compared with what the model states.

The emulator keeps its rules apart from `fleetrel.service` on purpose (an independent
reading); this file is where both readings meet the one source they share. Only what
the model states is checked here: the 3 KB attribute limit and the lifecycle are docs.
"""
from __future__ import annotations

import re
from typing import Any

import botocore
import botocore.session
import pytest
from pydantic import ValidationError

from fleetrel import service
from fleetrel.emulator import rules as emulator_rules
from fleetrel.emulator import settings
from fleetrel.emulator.catalog import PackageCatalog
from fleetrel.plan import ReleasePlan, Step
from fleetrel.tokens import client_token

MODEL = botocore.session.get_session().get_service_model("iot")
UPDATE = MODEL.operation_model("UpdatePackageVersion").input_shape.members
ASCII = [chr(c) for c in range(0x20, 0x7F)] + ["\t", "\n", "é", "\u200b"]


def model(shape: Any, key: str) -> Any:
    return shape.metadata.get(key)


def model_regex(shape: Any) -> re.Pattern[str]:
    # The model's patterns are Java-style, anchored by convention; those compared here
    # mean the same in Python's re (no \p{...}).
    return re.compile(model(shape, "pattern"))


def test_the_model_is_botocore_1_40_61s():
    assert botocore.__version__ == "1.40.61"  # pinned by aioboto3 15.5.0; a new model needs a new look


# --- names -----------------------------------------------------------------------------


@pytest.mark.parametrize(("member", "maximum", "emulator_maximum"), [
    ("packageName", service.MAX_PACKAGE_NAME, emulator_rules.MAX_PACKAGE_NAME),
    ("versionName", service.MAX_VERSION_NAME, emulator_rules.MAX_VERSION_NAME),
])
def test_name_lengths_and_pattern_are_the_models(member, maximum, emulator_maximum):
    shape = UPDATE[member]
    assert (model(shape, "min"), model(shape, "max")) == (service.MIN_NAME, maximum) == (1, emulator_maximum)
    allowed = model_regex(shape)
    for char in ASCII:
        expected = allowed.fullmatch(char) is not None
        assert (service.NAME_RE.fullmatch(char) is not None) == expected, char
        assert (char in emulator_rules.NAME_CHARS) == expected, char


def _entry_is_valid(**entry: Any) -> bool:
    try:
        ReleasePlan.model_validate({"plan": "p", "versions": [{"action": "PUBLISH", **entry}]})
    except ValidationError:
        return False
    return True


def _emulator_accepts(check: Any, *args: Any) -> bool:
    try:
        check(*args)
    except emulator_rules.CatalogError as exc:
        assert exc.code == "ValidationException"
        return False
    return True


EMULATOR_MAX = {"packageName": emulator_rules.MAX_PACKAGE_NAME, "versionName": emulator_rules.MAX_VERSION_NAME}


@pytest.mark.parametrize("member", ["packageName", "versionName"])
def test_the_plan_and_the_emulator_refuse_names_as_the_model_says(member):
    shape = UPDATE[member]
    allowed, longest = model_regex(shape), model(shape, "max")
    field = {"packageName": "package", "versionName": "version"}[member]
    other = {"package": "a", "version": "1"}
    for name, expected in [("x" * longest, True), ("x" * (longest + 1), False), ("", False)] + [
            (f"a{char}b", allowed.fullmatch(f"a{char}b") is not None) for char in ASCII]:
        assert _entry_is_valid(**{**other, field: name}) == expected, name
        assert _emulator_accepts(emulator_rules.check_name, name, member, EMULATOR_MAX[member]) == expected, name


# --- the fields ------------------------------------------------------------------------


def test_description_and_recipe_limits_are_the_models():
    description, recipe = UPDATE["description"], UPDATE["recipe"]
    assert model(description, "max") == service.MAX_DESCRIPTION == emulator_rules.MAX_DESCRIPTION
    assert model(recipe, "max") == service.MAX_RECIPE == emulator_rules.MAX_RECIPE
    assert model(recipe, "pattern") is None and model(recipe, "min") is None
    # [^\p{C}]+: at least one character, none of Unicode category C (Python's re has no \p)
    assert model(description, "pattern") == "[^\\p{C}]+"
    for text, expected in [("d" * service.MAX_DESCRIPTION, True), ("d" * (service.MAX_DESCRIPTION + 1), False),
                           ("a\nb", False), ("tab\there", False), ("zero\u200bwidth", False), ("héllo ✓", True)]:
        assert _entry_is_valid(package="a", version="1", description=text) == expected, text
        assert _emulator_accepts(emulator_rules.check_description, text) == expected, text
    for text, expected in [("r" * service.MAX_RECIPE, True), ("r" * (service.MAX_RECIPE + 1), False)]:
        assert _entry_is_valid(package="a", version="1", recipe=text) == expected
        assert _emulator_accepts(emulator_rules.check_recipe, text) == expected


def test_attribute_keys_and_values_are_the_models():
    attributes = UPDATE["attributes"]
    key, value = attributes.key, attributes.value
    assert model(key, "min") == service.MIN_ATTRIBUTE_KEY == 1
    assert model(key, "max") is None  # so service.MAX_ATTRIBUTE_KEY (128) is ours, and says so
    assert model(value, "min") == service.MIN_ATTRIBUTE_VALUE and model(value, "pattern") == "[^\\p{C}]+"
    allowed = model_regex(key)
    for char in ASCII:
        expected = allowed.fullmatch(char) is not None
        assert (service.ATTRIBUTE_KEY_RE.fullmatch(char) is not None) == expected, char
        assert (char in emulator_rules.ATTRIBUTE_KEY_CHARS) == expected, char
        name = f"k{char}k"
        assert _entry_is_valid(package="a", version="1", attributes={name: "v"}) == expected, name
        assert _emulator_accepts(emulator_rules.check_attributes, {name: "v"}) == expected, name
    assert not _entry_is_valid(package="a", version="1", attributes={"k": ""})
    assert not _emulator_accepts(emulator_rules.check_attributes, {"k": ""})


def test_s3_location_minimums_are_the_models():
    location = UPDATE["artifact"].members["s3Location"].members
    assert model(location["bucket"], "min") == service.MIN_S3_BUCKET
    assert model(location["key"], "min") == service.MIN_S3_KEY
    for bucket, key, expected in [("b", "k", True), ("", "k", False), ("b", "", False)]:
        artifact = {"s3Location": {"bucket": bucket, "key": key}}
        assert _entry_is_valid(package="a", version="1", artifact=artifact) == expected


def test_the_actions_are_the_models_enum():
    enum = UPDATE["action"].enum
    assert tuple(enum) == service.ACTIONS == tuple(service.TARGET_STATUS)
    assert all(_entry_is_valid(package="a", version="1", action=action) for action in enum)
    assert not _entry_is_valid(package="a", version="1", action="RETIRE")
    # The emulator accepts exactly these as actions (PUBLISH from DRAFT, DEPRECATE from PUBLISHED).
    emulator = PackageCatalog()
    emulator.seed("a", "draft", status="DRAFT")
    emulator.seed("a", "published", status="PUBLISHED")
    for action, version in zip(enum, ["draft", "published"]):
        emulator.update_package_version({"packageName": "a", "versionName": version, "action": action})
    with pytest.raises(emulator_rules.CatalogError, match="action must be"):
        emulator.update_package_version({"packageName": "a", "versionName": "draft", "action": "RETIRE"})


def test_statuses_are_the_models_enum():
    statuses = tuple(MODEL.shape_for("PackageVersionStatus").enum)
    assert statuses == service.STATUSES == emulator_rules.STATUSES
    assert set(service.TARGET_STATUS.values()) < set(statuses)
    assert {state for transition in service.ALLOWED_TRANSITIONS for state in transition} == set(statuses)


def test_client_token_is_the_models():
    shape = UPDATE["clientToken"]
    assert (model(shape, "min"), model(shape, "max")) == (service.MIN_CLIENT_TOKEN, service.MAX_CLIENT_TOKEN)
    assert (emulator_rules.TOKEN_MIN, emulator_rules.TOKEN_MAX) == (service.MIN_CLIENT_TOKEN, service.MAX_CLIENT_TOKEN)
    pattern = re.compile(model(shape, "pattern"))  # \S{36,64}
    for token in ["t" * 35, "t" * 36, "t" * 64, "t" * 65, "t" * 20 + " " + "t" * 20, "t" * 40 + "\n"]:
        expected = pattern.fullmatch(token) is not None
        assert (service.CLIENT_TOKEN_RE.fullmatch(token) is not None) == expected, token
        assert _emulator_accepts(emulator_rules.check_token, token) == expected, token
    token = client_token("run-id", Step(package="a", version="1", action="PUBLISH"))
    assert pattern.fullmatch(token)


# --- the operations --------------------------------------------------------------------


def test_package_operations_are_the_models_under_packages():
    under_packages = re.compile(r"^/packages(/\{packageName\}(/versions(/\{versionName\})?)?)?$")
    in_model = {name for name in MODEL.operation_names
                if under_packages.match(MODEL.operation_model(name).http["requestUri"].split("?")[0])}
    assert in_model == set(service.PACKAGE_OPERATIONS) == set(settings.OPERATIONS)
    assert len(service.PACKAGE_OPERATIONS) == len(set(service.PACKAGE_OPERATIONS)) == 10



# --- the list and get operations `select:` entries are expanded with --------------------


def _members(shape_name: str) -> set[str]:
    return set(MODEL.shape_for(shape_name).members)


def test_the_emulators_list_and_get_answers_have_the_models_fields():
    catalog = PackageCatalog()
    catalog.seed("fw", "1.0", status="PUBLISHED")
    catalog.update_package({"packageName": "fw", "defaultVersionName": "1.0"})
    [package] = catalog.list_packages({})["packageSummaries"]
    assert set(package) == _members("PackageSummary")
    [version] = catalog.list_package_versions({"packageName": "fw"})["packageVersionSummaries"]
    assert set(version) == _members("PackageVersionSummary")  # creationDate is listed: no Get for dates
    assert set(catalog.get_package({"packageName": "fw"})) <= set(MODEL.operation_model("GetPackage").output_shape.members)
    assert catalog.get_package({"packageName": "fw"})["defaultVersionName"] == "1.0"
    described = catalog.get_package_version({"packageName": "fw", "versionName": "1.0"})
    assert set(described) <= set(MODEL.operation_model("GetPackageVersion").output_shape.members)


@pytest.mark.parametrize("operation", ["ListPackages", "ListPackageVersions"])
def test_the_emulators_paging_is_the_models(operation):
    members = MODEL.operation_model(operation).input_shape.members
    assert (model(members["maxResults"], "min"), model(members["maxResults"], "max")) == (1, emulator_rules.MAX_PAGE)
    assert members["nextToken"].serialization["location"] == "querystring"
    from fleetrel.reads import PAGE

    assert PAGE == model(members["maxResults"], "max")  # the expansion and the preview ask for the fewest pages


def test_list_package_versions_filters_by_the_models_statuses():
    shape = MODEL.operation_model("ListPackageVersions").input_shape.members["status"]
    assert shape.serialization["location"] == "querystring"
    assert tuple(shape.enum) == emulator_rules.STATUSES == service.STATUSES


def test_the_version_fields_are_what_update_package_version_sets_besides_the_action():
    """The preview reads a step that sets none of them from ListPackageVersions: a field
    missing here would be compared against a listing that does not carry it."""
    sent = set(UPDATE) - {"packageName", "versionName", "clientToken", "action"}
    assert set(service.VERSION_FIELDS) == sent
    listed = MODEL.shape_for("PackageVersionSummary").members
    assert not set(service.VERSION_FIELDS) & set(listed) and "status" in listed
