"""The emulator's fleet (issue 24, part 1), over real HTTP through real boto3 clients:
things and their `$package` shadow (IoT Data Plane), the indexing configuration, and
fleet indexing's reads (GetBucketsAggregation, GetStatistics, SearchIndex), throttled at
their own rates and counted in the record; answers checked against botocore's model.
Pure pieces (the fleet's skew, the settings' rates) at the end.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from fleetrel.emulator import Emulator, EmulatorError
from fleetrel.emulator.command import emulator as emulator_command
from fleetrel.emulator.fleetindex import DEFAULT_BUCKETS, MAX_BUCKETS, parse_query
from fleetrel.emulator.fleetseed import fleet_plan, newest_first, version_weights
from fleetrel.emulator.settings import FLEET_RATES, EmulatorSettings
from fleetrel.rehearsal import DEMO_PLAN
from conftest import CREDENTIALS, NO_RETRIES, REGION

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"  # moto's, for any access key it did not issue
IOT = botocore.session.get_session().get_service_model("iot")
DATA = botocore.session.get_session().get_service_model("iot-data")
# Package names with each of - _ . (the catalog's pattern allows them all).
PACKAGES = {"thermostat-fw": ["1.0.0", "1.1.0", "2.0.0", "2.1.0", "3.0.0", "3.1.0"],
            "hub_agent": ["0.9", "1.0", "1.0.1"],
            "cam.app": ["7.0.0", "7.0.1", "7.0.2", "7.1.0", "8.0.0-rc1"]}


def field(package: str) -> str:
    return f"shadow.name.$package.reported.{package}.version"


def client(emulator: Emulator, service: str, region: str = REGION) -> Any:
    return boto3.client(service, endpoint_url=emulator.url, region_name=region,
                        config=NO_RETRIES, **CREDENTIALS)


def aggregate(iot: Any, package: str, query: str = "thingName:*",
              max_buckets: int = 10000) -> dict[str, Any]:
    """The call the client side makes: one aggregation per package and target."""
    return iot.get_buckets_aggregation(
        indexName="AWS_Things", queryString=query, aggregationField=field(package),
        bucketsAggregationType={"termsAggregation": {"maxBuckets": max_buckets}})


def as_counts(answer: dict[str, Any]) -> dict[str, int]:
    return {bucket["keyValue"]: bucket["count"] for bucket in answer["buckets"]}


def refused(call: Any, *args: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    error = caught.value.response
    return (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"],
            error["Error"]["Message"])


def put_package(data: Any, thing: str, reported: dict[str, Any], **extra: Any) -> dict[str, Any]:
    answer = data.update_thing_shadow(thingName=thing, shadowName="$package", payload=json.dumps(
        {"state": {"reported": reported}, **extra}))
    return json.loads(answer["payload"].read())


def index_package_shadow(iot: Any, *packages: str) -> None:
    """What the console's "Add device software packages and versions" turns on, plus the
    custom fields GetBucketsAggregation needs (one per package)."""
    iot.update_indexing_configuration(thingIndexingConfiguration={
        "thingIndexingMode": "REGISTRY_AND_SHADOW", "namedShadowIndexingMode": "ON",
        "filter": {"namedShadowNames": ["$package"]},
        "customFields": [{"name": field(package), "type": "String"} for package in packages]})


def unthrottled(emulator: Emulator) -> None:
    """AWS's rates are low (GetBucketsAggregation 5 a second, UpdateIndexingConfiguration
    1): a test that is not about throttling lifts them rather than racing the refill."""
    emulator.configure(operations={operation: {"rate": 100000} for operation in FLEET_RATES})


def seed_catalog(emulator: Emulator, **places: Any) -> None:
    emulator.seed([(package, version) for package, versions in PACKAGES.items()
                   for version in versions], **places)


# -- things and the $package shadow ---------------------------------------------------

def test_a_shadow_written_read_and_deleted_moves_the_counts(emulator: Emulator) -> None:
    unthrottled(emulator)
    iot, data = client(emulator, "iot"), client(emulator, "iot-data")
    for name in ("pump-1", "pump-2", "pump-3"):
        iot.create_thing(thingName=name)
    written = put_package(data, "pump-1", {"thermostat-fw": {
        "version": "2.0.0", "attributes": {"packageID": "1111"}}}, clientToken="c-1")
    assert written["state"] == {"reported": {"thermostat-fw": {
        "version": "2.0.0", "attributes": {"packageID": "1111"}}}}
    assert (written["version"], written["clientToken"]) == (1, "c-1")
    assert "metadata" not in written  # the reserved shadow keeps no metadata
    put_package(data, "pump-2", {"thermostat-fw": {"version": "2.0.0"},
                                 "hub_agent": {"version": "1.0"}})
    put_package(data, "pump-3", {"thermostat-fw": {"version": "1.0.0"}})
    assert emulator.fleet() == {"hub_agent": {"1.0": 1},
                                "thermostat-fw": {"1.0.0": 1, "2.0.0": 2}}
    # An update merges into what was reported: the attributes stay, the version moves.
    put_package(data, "pump-1", {"thermostat-fw": {"version": "2.1.0"}})
    document = json.loads(data.get_thing_shadow(thingName="pump-1",
                                                shadowName="$package")["payload"].read())
    assert document["state"] == {"reported": {"thermostat-fw": {
        "version": "2.1.0", "attributes": {"packageID": "1111"}}}}
    assert document["version"] == 2
    # null removes a package, as a shadow update removes a field.
    put_package(data, "pump-2", {"hub_agent": None})
    data.delete_thing_shadow(thingName="pump-3", shadowName="$package")
    assert emulator.fleet() == {"thermostat-fw": {"2.0.0": 1, "2.1.0": 1}}
    iot.delete_thing(thingName="pump-2")  # a deleted thing leaves the counts
    assert emulator.fleet() == {"thermostat-fw": {"2.1.0": 1}}
    index_package_shadow(iot, "thermostat-fw")
    answer = aggregate(iot, "thermostat-fw")
    assert (answer["totalCount"], as_counts(answer)) == (2, {"2.1.0": 1})  # pump-1, pump-3
    assert refused(data.get_thing_shadow, thingName="pump-3", shadowName="$package") == \
        ("ResourceNotFoundException", 404, "No shadow exists with name: $package")
    # Other named shadows are moto's, still counted under the shadow calls' names.
    data.update_thing_shadow(thingName="pump-1", shadowName="config",
                             payload=json.dumps({"state": {"reported": {"on": True}}}))
    operations = emulator.record()["operations"]
    assert operations["UpdateThingShadow"] == {"200": 6}
    assert operations["GetThingShadow"] == {"200": 1, "404": 1}
    assert operations["DeleteThingShadow"] == {"200": 1}


@pytest.mark.parametrize(("document", "message"), [
    ("{not json", "Invalid JSON"),
    ({"reported": {}}, "Missing required node: state"),
    ({"state": []}, "State node must be an object"),
    ({"state": {"reported": {}, "delta": {}}}, "State contains an invalid node"),
    ({"state": {"desired": {"fw": {"version": "1"}}}}, "State contains an invalid node"),
    ({"state": {"reported": []}}, "Reported node must be an object"),
    ({"state": {"reported": {"fw": {"version": 2}}}}, "reported.fw.version must be a string"),
    ({"state": {"reported": {"fw": {"version": "1", "description": "x"}}}},
     "may hold only version and attributes, not description"),
    ({"state": {"reported": {"fw": {"attributes": {}}}}}, "reported.fw needs a version"),
    ({"state": {"reported": {"fw/1": {"version": "1"}}}}, "is not a package name"),
    ({"state": {"reported": {"fw": {"version": "1", "attributes": {"a": 1}}}}},
     "attributes must be an object of strings"),
    ({"state": {"reported": {}}, "version": "2"}, "Invalid version"),
    ({"state": {"reported": {}}, "clientToken": "t" * 65}, "Invalid clientToken"),
])
def test_a_package_shadow_that_breaks_the_rules_is_refused(emulator: Emulator, document: Any,
                                                           message: str) -> None:
    client(emulator, "iot").create_thing(thingName="pump-1")
    data = client(emulator, "iot-data")
    payload = document if isinstance(document, str) else json.dumps(document)
    code, status, said = refused(data.update_thing_shadow, thingName="pump-1",
                                 shadowName="$package", payload=payload)
    assert (code, status) == ("InvalidRequestException", 400)
    assert message in said
    assert emulator.fleet() == {}


def test_a_stale_version_conflicts_and_an_unknown_thing_is_not_found(emulator: Emulator) -> None:
    client(emulator, "iot").create_thing(thingName="pump-1")
    data = client(emulator, "iot-data")
    put_package(data, "pump-1", {"fw": {"version": "1.0"}}, version=0)
    put_package(data, "pump-1", {"fw": {"version": "1.1"}}, version=1)
    assert refused(data.update_thing_shadow, thingName="pump-1", shadowName="$package",
                   payload=json.dumps({"state": {"reported": {"fw": {"version": "2"}}},
                                       "version": 1})) == \
        ("ConflictException", 409, "Version conflict")
    assert refused(data.update_thing_shadow, thingName="nobody", shadowName="$package",
                   payload=json.dumps({"state": {"reported": {}}})) == \
        ("ResourceNotFoundException", 404, "Thing not found")
    assert emulator.fleet() == {"fw": {"1.1": 1}}


# -- seeding ----------------------------------------------------------------------------

def test_aggregations_equal_the_seeded_fleet_in_every_place(emulator: Emulator) -> None:
    regions = [REGION, "eu-west-1"]
    emulator.configure(regions=regions)
    unthrottled(emulator)
    seed_catalog(emulator)
    seeded = emulator.seed_fleet(1500, seed=3)
    assert (seeded["things"], seeded["seed"]) == (1500, 3)
    for region in regions:
        truth = seeded["accounts"][ACCOUNT][region]
        assert truth == emulator.fleet(region=region)
        assert set(truth) == set(PACKAGES)
        iot = client(emulator, "iot", region)
        for package in PACKAGES:
            answer = aggregate(iot, package)
            assert answer["totalCount"] == 1500
            assert as_counts(answer) == truth[package]
            counts = [bucket["count"] for bucket in answer["buckets"]]
            assert counts == sorted(counts, reverse=True)
        # A query narrows the things counted; totalCount is the things it matches.
        version, count = next(iter(truth["thermostat-fw"].items()))
        narrowed = aggregate(iot, "thermostat-fw", f"{field('thermostat-fw')}:{version}")
        assert (narrowed["totalCount"], as_counts(narrowed)) == (count, {version: count})
        escaped = field("thermostat-fw").replace("-", "\\-")  # as Lucene escapes it
        both = aggregate(iot, "hub_agent", f"thingName:* AND {escaped}:{version}")
        assert both["totalCount"] == count
        assert sum(as_counts(both).values()) <= count
        statistics = iot.get_statistics(queryString=f"{field('cam.app')}:*")["statistics"]
        assert statistics["count"] == sum(truth["cam.app"].values())
        statistics = iot.get_statistics(queryString="*", aggregationField=field("cam.app"))
        assert statistics["statistics"] == {"count": sum(truth["cam.app"].values())}
        limited = aggregate(iot, "thermostat-fw", max_buckets=2)
        assert limited["buckets"] == aggregate(iot, "thermostat-fw")["buckets"][:2]
        assert iot.get_indexing_configuration()["thingIndexingConfiguration"][
            "namedShadowIndexingMode"] == "ON"
    place = emulator.record()["accounts"][ACCOUNT]
    assert {region: place[region]["operations"]["GetBucketsAggregation"]
            for region in regions} == {region: {"200": 7} for region in regions}


def test_the_fleet_is_skewed_like_a_real_one(emulator: Emulator) -> None:
    seed_catalog(emulator)
    truth = emulator.seed_fleet(3000, seed=11)["accounts"][ACCOUNT][REGION]
    fw = truth["thermostat-fw"]
    newest = newest_first(PACKAGES["thermostat-fw"])
    assert max(fw, key=fw.__getitem__) == newest[0]
    assert fw[newest[0]] + fw[newest[1]] > 0.6 * sum(fw.values())
    assert newest[-1] not in fw  # the oldest runs on no device
    things = sum(sum(versions.values()) for versions in truth.values())
    assert 3000 < things < 3 * 3000  # 1-3 packages a thing
    assert all(sum(versions.values()) < 3000 for versions in truth.values())


def test_seeding_is_deterministic_per_seed(emulator: Emulator) -> None:
    seed_catalog(emulator)
    first = emulator.seed_fleet(500, seed=5)["accounts"]
    again = emulator.seed_fleet(500, seed=5)["accounts"]
    other = emulator.seed_fleet(500, seed=6)["accounts"]
    assert first == again != other
    assert emulator.fleet() == other[ACCOUNT][REGION]  # a seed replaces the fleet
    iot = client(emulator, "iot")
    assert aggregate(iot, "hub_agent")["totalCount"] == 500
    found = iot.search_index(queryString="thingName:device-000499")["things"]
    assert [thing["thingName"] for thing in found] == ["device-000499"]


def test_a_fleet_seed_that_cannot_be_made_is_refused(emulator: Emulator) -> None:
    emulator.configure(regions=[REGION])
    for things, regions, named in ((-1, None, "things"), ("10", None, "things"),
                                   (10, ["eu-west-1"], "eu-west-1")):
        with pytest.raises(EmulatorError) as caught:
            emulator.seed_fleet(things, 0, None, regions)
        assert "400" in str(caught.value) and named in str(caught.value)
    assert emulator.seed_fleet(3, 0, None, [REGION])["accounts"] == {ACCOUNT: {REGION: {}}}
    assert client(emulator, "iot").list_things()["things"]  # things, running nothing


def test_reset_forgets_the_fleet(emulator: Emulator) -> None:
    seed_catalog(emulator)
    emulator.seed_fleet(50)
    emulator.reset()
    assert emulator.fleet() == {}
    iot = client(emulator, "iot")
    assert iot.list_things()["things"] == []
    assert iot.get_indexing_configuration()["thingIndexingConfiguration"][
        "thingIndexingMode"] == "OFF"


def test_search_index_pages_through_the_things(emulator: Emulator) -> None:
    unthrottled(emulator)
    seed_catalog(emulator)
    emulator.seed_fleet(250)
    iot = client(emulator, "iot")
    pages, token = [], None
    while True:
        answer = iot.search_index(queryString="thingName:*", maxResults=100,
                                  **({"nextToken": token} if token else {}))
        pages.append([thing["thingName"] for thing in answer["things"]])
        token = answer.get("nextToken")
        if not token:
            break
    assert [len(page) for page in pages] == [100, 100, 50]
    names = [name for page in pages for name in page]
    assert names == sorted(set(names)) and names[0] == "device-000000"
    shadow = json.loads(iot.search_index(queryString="thingName:device-000007")
                        ["things"][0]["shadow"])
    assert set(shadow["name"]["$package"]["reported"]) <= set(PACKAGES)


# -- indexing off, $package not indexed, queries not served ----------------------------

def test_with_indexing_off_the_index_does_not_exist(emulator: Emulator) -> None:
    iot = client(emulator, "iot")
    iot.create_thing(thingName="pump-1")
    configuration = iot.get_indexing_configuration()["thingIndexingConfiguration"]
    assert configuration["thingIndexingMode"] == "OFF"  # as a fresh AWS account
    expected = ("ResourceNotFoundException", 404, "Index AWS_Things does not exist")
    assert refused(iot.get_buckets_aggregation, queryString="thingName:*",
                   aggregationField=field("fw"),
                   bucketsAggregationType={"termsAggregation": {"maxBuckets": 10}}) == expected
    assert refused(iot.get_statistics, queryString="*") == expected
    assert refused(iot.search_index, queryString="thingName:*") == expected


def test_package_shadow_not_indexed_is_refused(emulator: Emulator) -> None:
    unthrottled(emulator)
    seed_catalog(emulator)
    emulator.seed_fleet(20)
    iot = client(emulator, "iot")
    # Registry only: shadows are not indexed, whatever the filter says.
    iot.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "REGISTRY"})
    code, status, message = refused(aggregate, iot, "hub_agent")
    assert (code, status) == ("InvalidAggregationException", 400)
    assert "$package is not indexed" in message and "namedShadowNames" in message
    code, status, message = refused(iot.search_index, queryString=f"{field('hub_agent')}:*")
    assert (code, status) == ("InvalidQueryException", 400)
    assert "$package is not indexed" in message
    # $package no longer in the named shadow filter: the same.
    iot.update_indexing_configuration(thingIndexingConfiguration={
        "thingIndexingMode": "REGISTRY_AND_SHADOW", "filter": {"namedShadowNames": ["config"]}})
    assert refused(aggregate, iot, "hub_agent")[0] == "InvalidAggregationException"
    assert iot.get_statistics(queryString="thingName:*")["statistics"]["count"] == 20
    # Indexed, but the version is not a custom field: AWS aggregates only those.
    iot.update_indexing_configuration(thingIndexingConfiguration={
        "thingIndexingMode": "REGISTRY_AND_SHADOW",
        "filter": {"namedShadowNames": ["$package"]}, "customFields": []})
    code, status, message = refused(aggregate, iot, "hub_agent")
    assert (code, status) == ("InvalidAggregationException", 400)
    assert "customFields" in message
    assert iot.search_index(queryString=f"{field('hub_agent')}:*")["things"]


@pytest.mark.parametrize("query", [
    "thingName:a OR thingName:b", "NOT thingName:a", "attributes.model:x",
    "thingName:device-*", f"{field('fw')}:[1 TO 2]", "(thingName:a)",
    "shadow.reported.x:1", "thingName:a and thingName:b",
])
def test_a_query_outside_the_subset_is_an_invalid_query(emulator: Emulator, query: str) -> None:
    seed_catalog(emulator)
    emulator.seed_fleet(5)
    code, status, message = refused(client(emulator, "iot").search_index, queryString=query)
    assert (code, status) == ("InvalidQueryException", 400)
    assert "thingName:NAME" in message  # it says what is served


def test_an_aggregation_field_outside_the_subset_is_an_invalid_aggregation(emulator: Emulator) -> None:
    seed_catalog(emulator)
    emulator.seed_fleet(5)
    iot = client(emulator, "iot")
    code, status, _ = refused(iot.get_buckets_aggregation, queryString="*",
                              aggregationField="attributes.model",
                              bucketsAggregationType={"termsAggregation": {}})
    assert (code, status) == ("InvalidAggregationException", 400)
    answer = iot.get_buckets_aggregation(queryString="*", aggregationField=field("cam.app"),
                                         bucketsAggregationType={"termsAggregation": {}})
    assert len(answer["buckets"]) <= DEFAULT_BUCKETS


# -- throttling --------------------------------------------------------------------------

def test_get_buckets_aggregation_has_its_own_bucket_counted_per_place(emulator: Emulator) -> None:
    seed_catalog(emulator)
    emulator.seed_fleet(10)
    # The catalog's rate does not reach the fleet's calls; their own limits do. A refill
    # of one token per 1000 s: the burst is all a test can spend.
    emulator.configure(rate=1000, operations={"GetBucketsAggregation": {"rate": 0.001, "burst": 3},
                                              "UpdateThingShadow": {"rate": 0.001, "burst": 1}})
    iot, data = client(emulator, "iot"), client(emulator, "iot-data")
    outcomes = []
    for _ in range(5):
        try:
            aggregate(iot, "hub_agent")
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append((error.response["Error"]["Code"],
                             error.response["ResponseMetadata"]["HTTPStatusCode"],
                             error.response["Error"]["Message"]))
    assert outcomes == ["ok"] * 3 + [("ThrottlingException", 400, "Rate exceeded")] * 2
    iot.get_statistics(queryString="*")  # another operation, another bucket
    put_package(data, "device-000001", {"hub_agent": {"version": "1.0"}})
    code, status, _ = refused(put_package, data, "device-000002", {"hub_agent": {"version": "1.0"}})
    assert (code, status) == ("ThrottlingException", 429)  # the data plane's throttle
    place = emulator.record()["accounts"][ACCOUNT][REGION]
    assert place["operations"]["GetBucketsAggregation"] == {"200": 3, "400": 2}
    assert place["throttled"] == {"GetBucketsAggregation": 2, "UpdateThingShadow": 1}
    assert place["operations"]["GetStatistics"] == {"200": 1}


def test_the_fleets_rates_are_awss_whatever_the_catalogs_rate() -> None:
    settings = EmulatorSettings(rate=1000, burst=2000)
    assert settings.limits_for("GetBucketsAggregation", ACCOUNT, REGION) == (5.0, 5.0)
    assert settings.limits_for("UpdateIndexingConfiguration") == (1.0, 1.0)
    assert settings.limits_for("UpdatePackageVersion") == (1000.0, 2000.0)
    changed = settings.updated(operations={"SearchIndex": {"rate": 0}})
    assert changed.limits_for("SearchIndex") is None
    assert set(FLEET_RATES) == {"SearchIndex", "GetStatistics", "GetBucketsAggregation",
                                "GetIndexingConfiguration", "UpdateIndexingConfiguration",
                                "UpdateThingShadow", "GetThingShadow", "DeleteThingShadow"}


# -- answers against botocore's model ----------------------------------------------------

def check_shape(value: Any, shape: Any, where: str) -> None:
    """Every key of `value` a member of `shape`, every value of the member's type."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), where
        assert set(value) <= set(shape.members), (where, set(value) - set(shape.members))
        for name, item in value.items():
            check_shape(item, shape.members[name], f"{where}.{name}")
    elif kind == "list":
        assert isinstance(value, list), where
        for index, item in enumerate(value):
            check_shape(item, shape.member, f"{where}[{index}]")
    elif kind == "map":
        assert isinstance(value, dict), where
        for key, item in value.items():
            check_shape(key, shape.key, f"{where} key")
            check_shape(item, shape.value, f"{where}[{key}]")
    elif kind == "string":
        assert isinstance(value, str), where
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif kind in ("double", "float"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
    elif kind == "boolean":
        assert isinstance(value, bool), where
    else:
        raise AssertionError(f"{where}: unexpected shape type {kind}")


def test_the_reads_answers_are_the_models_shapes(emulator: Emulator) -> None:
    unthrottled(emulator)
    seed_catalog(emulator)
    emulator.seed_fleet(120, seed=2)
    iot = client(emulator, "iot")
    raw: dict[str, Any] = {}

    def keep(http_response: Any, model: Any, **_: Any) -> None:
        raw.setdefault(model.name, []).append(
            (http_response.status_code, json.loads(http_response.content or b"{}")))

    iot.meta.events.register("after-call.iot", keep)
    aggregate(iot, "thermostat-fw")
    iot.get_statistics(queryString="*")
    iot.get_statistics(queryString="thingName:*", aggregationField=field("hub_agent"))
    iot.search_index(queryString=f"{field('cam.app')}:*", maxResults=5)
    for operation in ("GetBucketsAggregation", "GetStatistics", "SearchIndex"):
        for status, body in raw[operation]:
            assert status == 200
            check_shape(body, IOT.operation_model(operation).output_shape, operation)
    stats = raw["GetStatistics"][0][1]["statistics"]
    assert stats["count"] == 120 and stats["average"] == 1.0  # registry.version
    assert iot.get_statistics(queryString="*", aggregationField="registry.version")[
        "statistics"] == stats
    # Errors: a code the operation lists, at the status the model gives it.
    refused(iot.search_index, queryString="a OR b")
    refused(aggregate, iot, "nowhere")
    for operation in ("SearchIndex", "GetBucketsAggregation"):
        status, body = raw[operation][-1]
        errors = {shape.name: shape.metadata["error"]["httpStatusCode"]
                  for shape in IOT.operation_model(operation).error_shapes}
        assert errors[body["__type"]] == status


def test_the_emulators_limits_are_the_models() -> None:
    buckets = IOT.operation_model("GetBucketsAggregation").input_shape.members
    terms = buckets["bucketsAggregationType"].members["termsAggregation"].members
    assert (terms["maxBuckets"].metadata["min"], terms["maxBuckets"].metadata["max"]) == \
        (1, MAX_BUCKETS)
    served = {"indexName", "queryString", "aggregationField", "queryVersion",
              "bucketsAggregationType"}
    assert set(buckets) == served
    throttles = {model.metadata["serviceId"]: model.shape_for("ThrottlingException")
                 .metadata["error"]["httpStatusCode"] for model in (IOT, DATA)}
    assert throttles == {"IoT": 400, "IoT Data Plane": 429}


# -- the command line --------------------------------------------------------------------

def test_fleet_needs_a_seed_plan() -> None:
    result = CliRunner().invoke(emulator_command, ["--fleet", "10"])
    assert result.exit_code == 2
    assert "--fleet needs --seed PLAN" in result.output


def test_the_command_line_seeds_a_fleet_over_the_plans_versions() -> None:
    # Four aggregations: within GetBucketsAggregation's burst of 5 at AWS's rate.
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetrel", "emulator", "--seed", str(DEMO_PLAN),
         "--fleet", "300", "--fleet-seed", "9"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        emulator = Emulator(process.stdout.readline().strip())
        truth = emulator.fleet()
        assert set(truth) == {"camera-fw", "door-sensor-app", "hub-agent", "thermostat-fw"}
        iot = client(emulator, "iot")
        for package, versions in truth.items():
            answer = aggregate(iot, package)
            assert (answer["totalCount"], as_counts(answer)) == (300, versions)
        again = emulator.seed_fleet(300, seed=9)["accounts"][ACCOUNT][REGION]
        assert again == truth  # --fleet-seed is the seed of seed_fleet
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


# -- pure pieces -------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 2, 3, 5, 10, 40])
def test_version_weights_favour_the_newest_and_leave_the_oldest_unused(count: int) -> None:
    weights = version_weights(count)
    assert len(weights) == count and sum(weights) == pytest.approx(1.0)
    assert weights == sorted(weights, reverse=True)
    if count >= 3:
        assert weights[-1] == 0.0 and weights[0] + weights[1] >= 0.75


def test_a_fleet_plan_gives_each_thing_one_to_three_packages() -> None:
    versions = {f"pkg-{index}": ["1.0", "2.0"] for index in range(5)}
    plan = fleet_plan(2000, versions, seed=1, place=(ACCOUNT, REGION))
    assert plan == fleet_plan(2000, versions, seed=1, place=(ACCOUNT, REGION))
    assert plan != fleet_plan(2000, versions, seed=1, place=(ACCOUNT, "eu-west-1"))
    assert {len(packages) for _, packages in plan} == {1, 2, 3}
    assert plan[12][0] == "device-000012"


def test_the_query_subset_reads_lucene_escapes() -> None:
    [clause] = parse_query(r"shadow.name.$package.reported.telemetry\-agent.version:1.0\-rc")
    assert (clause.kind, clause.package, clause.value) == ("version", "telemetry-agent", "1.0-rc")
    assert [c.kind for c in parse_query('* AND thingName:* AND thingName:"a-1"')] == \
        ["all", "all", "name"]
