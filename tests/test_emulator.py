"""The emulator over real HTTP, with real boto3 and aioboto3 clients (botocore retries off).

Pure pieces (token bucket, settings, catalog rules) are tested directly at the end.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aioboto3
import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from fleetrel.emulator import Emulator, start_emulator_in_thread
from fleetrel.emulator.bucket import TokenBucket
from fleetrel.emulator.catalog import CatalogError, CatalogRules, PackageCatalog
from fleetrel.emulator.settings import EmulatorSettings, SettingsError
from fleetrel.rehearsal import DEMO_PLAN
from conftest import CREDENTIALS, NO_RETRIES, REGION
from support import FakeClock

ROOT = Path(__file__).resolve().parent.parent
TOKEN_A, TOKEN_B = "a" * 36, "b" * 36


def error_of(call: Any, *args: Any, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value


def code_and_status(error: ClientError) -> tuple[str, int]:
    return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]


def status_of(iot: Any, package: str, version: str) -> str:
    return iot.get_package_version(packageName=package, versionName=version)["status"]


def aio_client(url: str, **config: Any) -> Any:
    session = aioboto3.Session(region_name=REGION, **CREDENTIALS)
    return session.client("iot", endpoint_url=url,
                          config=Config(retries={"total_max_attempts": 1}, **config))


# -- lifecycle ------------------------------------------------------------------------

def test_full_lifecycle_over_http(iot: Any) -> None:
    created = iot.create_package(packageName="fw", description="firmware")
    assert created["packageArn"].endswith(":package/fw")
    version = iot.create_package_version(packageName="fw", versionName="1.0.0",
                                         attributes={"channel": "beta"})
    assert version["status"] == "DRAFT"

    iot.update_package_version(packageName="fw", versionName="1.0.0",
                               attributes={"channel": "stable", "min_hw": "rev-c"})
    got = iot.get_package_version(packageName="fw", versionName="1.0.0")
    assert got["attributes"] == {"channel": "stable", "min_hw": "rev-c"}

    iot.update_package_version(packageName="fw", versionName="1.0.0", action="PUBLISH")
    assert status_of(iot, "fw", "1.0.0") == "PUBLISHED"
    iot.update_package_version(packageName="fw", versionName="1.0.0", description="now live")
    iot.update_package_version(packageName="fw", versionName="1.0.0", action="DEPRECATE")
    assert status_of(iot, "fw", "1.0.0") == "DEPRECATED"
    iot.update_package_version(packageName="fw", versionName="1.0.0", action="PUBLISH")
    got = iot.get_package_version(packageName="fw", versionName="1.0.0")
    assert (got["status"], got["description"]) == ("PUBLISHED", "now live")
    assert got["lastModifiedDate"] >= got["creationDate"]


def test_refused_transitions_and_edits_carry_the_codes_botocore_raises(
        emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", "draft"), {"package": "fw", "version": "live", "status": "PUBLISHED"},
                   {"package": "fw", "version": "old", "status": "DEPRECATED"}])
    deprecate_draft = error_of(iot.update_package_version, packageName="fw",
                               versionName="draft", action="DEPRECATE")
    assert code_and_status(deprecate_draft) == ("ValidationException", 400)
    again = error_of(iot.update_package_version, packageName="fw", versionName="live",
                     action="PUBLISH")
    assert code_and_status(again) == ("ConflictException", 409)
    assert "already PUBLISHED" in again.response["Error"]["Message"]
    twice = error_of(iot.update_package_version, packageName="fw", versionName="old",
                     action="DEPRECATE")
    assert code_and_status(twice) == ("ConflictException", 409)
    for field, value in (("attributes", {"k": "v"}), ("recipe", "{}"),
                         ("artifact", {"s3Location": {"bucket": "b", "key": "k"}})):
        edit = error_of(iot.update_package_version, packageName="fw", versionName="live",
                        **{field: value})
        assert code_and_status(edit) == ("ValidationException", 400), field
    missing = error_of(iot.update_package_version, packageName="fw", versionName="nope",
                       action="PUBLISH")
    assert code_and_status(missing) == ("ResourceNotFoundException", 404)
    unknown_action = error_of(iot.update_package_version, packageName="fw",
                              versionName="draft", action="RETIRE")
    assert code_and_status(unknown_action) == ("ValidationException", 400)
    # Nothing above changed anything.
    assert [status_of(iot, "fw", v) for v in ("draft", "live", "old")] == \
        ["DRAFT", "PUBLISHED", "DEPRECATED"]


def test_field_limits_from_the_model(emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", "1.0")])
    at_limit = {"k": "x" * 3071}  # 1 + 3071 bytes: exactly 3 KB
    iot.update_package_version(packageName="fw", versionName="1.0", attributes=at_limit)
    over = error_of(iot.update_package_version, packageName="fw", versionName="1.0",
                    attributes={"k": "x" * 3072})
    assert code_and_status(over) == ("ValidationException", 400)
    bad_key = error_of(iot.update_package_version, packageName="fw", versionName="1.0",
                       attributes={"a.b": "v"})
    assert code_and_status(bad_key) == ("ValidationException", 400)
    long_description = error_of(iot.update_package_version, packageName="fw",
                                versionName="1.0", description="d" * 1025)
    assert code_and_status(long_description) == ("ValidationException", 400)
    bad_name = error_of(iot.create_package, packageName="fw@1")
    assert code_and_status(bad_name) == ("ValidationException", 400)
    assert iot.get_package_version(packageName="fw", versionName="1.0")["attributes"] == at_limit


def test_default_version_rules(emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", "draft"), {"package": "fw", "version": "live",
                                     "status": "PUBLISHED"}])
    draft_default = error_of(iot.update_package, packageName="fw",
                             defaultVersionName="draft")
    assert code_and_status(draft_default) == ("ValidationException", 400)
    iot.update_package(packageName="fw", defaultVersionName="live")
    assert iot.get_package(packageName="fw")["defaultVersionName"] == "live"
    delete_default = error_of(iot.delete_package_version, packageName="fw",
                              versionName="live")
    assert code_and_status(delete_default) == ("ValidationException", 400)
    iot.update_package(packageName="fw", unsetDefaultVersion=True)
    iot.delete_package_version(packageName="fw", versionName="live")
    non_empty = error_of(iot.delete_package, packageName="fw")
    assert code_and_status(non_empty) == ("ValidationException", 400)
    iot.delete_package_version(packageName="fw", versionName="draft")
    iot.delete_package(packageName="fw")
    assert iot.list_packages()["packageSummaries"] == []


def test_seed_is_idempotent_and_accepts_steps(emulator: Emulator) -> None:
    from fleetrel.plan import Step

    first = emulator.seed([Step("fw", "1.0", action="PUBLISH"), ("fw", "2.0")])
    again = emulator.seed([("fw", "1.0"), ("fw", "2.0"), ("fw", "3.0")])
    assert first == {"created": 2, "existing": 0}
    assert again == {"created": 1, "existing": 2}
    assert emulator.state("fw", "1.0")["status"] == "DRAFT"  # a Step says what to do, not what is
    assert emulator.state("fw", "9.9") is None


# -- throttling -----------------------------------------------------------------------

def test_token_bucket_throttles_a_burst_as_predicted(emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", "1.0")])
    emulator.configure(rate=5, burst=5)
    accepted, throttles = 0, []
    started = time.monotonic()
    for index in range(20):
        try:
            iot.update_package_version(packageName="fw", versionName="1.0",
                                       description=f"call {index}")
            accepted += 1
        except ClientError as error:
            throttles.append(error)
    elapsed = time.monotonic() - started
    # The bucket starts full (5) and refills 5/s during the burst, which lasted at most
    # `elapsed` as this client saw it.
    assert 5 <= accepted <= int(5 + 5 * elapsed)
    assert accepted + len(throttles) == 20
    for error in throttles:
        assert code_and_status(error) == ("ThrottlingException", 400)
        assert error.response["Error"]["Message"] == "Rate exceeded"
        headers = error.response["ResponseMetadata"]["HTTPHeaders"]
        assert headers["x-amzn-errortype"] == "ThrottlingException"
    record = emulator.record()
    assert len(record["tokens_sent"]["fw/1.0"]) == 20  # botocore drew a new token per call
    assert len(record["tokens"]["fw/1.0"]) == accepted  # only these reached the backend
    assert record["throttled"] == {"UpdatePackageVersion": len(throttles)}
    assert record["operations"]["UpdatePackageVersion"] == {"200": accepted,
                                                            "400": len(throttles)}
    assert len(record["accepted_times"]) == accepted


async def test_per_operation_limits_under_concurrency(emulator: Emulator) -> None:
    import asyncio

    emulator.seed([("fw", f"v{i}") for i in range(30)])
    emulator.configure(operations={"UpdatePackageVersion": {"rate": 3, "burst": 3}})
    async with aio_client(emulator.url, max_pool_connections=30) as client:
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(client.update_package_version(packageName="fw", versionName=f"v{i}",
                                            action="PUBLISH") for i in range(30)),
            return_exceptions=True)
        elapsed = time.monotonic() - started
        reads = await asyncio.gather(*(client.get_package_version(
            packageName="fw", versionName=f"v{i}") for i in range(30)))
    accepted = [o for o in outcomes if not isinstance(o, BaseException)]
    throttled = [o for o in outcomes if isinstance(o, ClientError)
                 and o.response["Error"]["Code"] == "ThrottlingException"]
    assert 3 <= len(accepted) <= int(3 + 3 * elapsed)
    assert len(accepted) + len(throttled) == 30
    # GetPackageVersion has no limit of its own and the global rate is off.
    published = sum(read["status"] == "PUBLISHED" for read in reads)
    assert published == len(accepted)
    assert emulator.record()["operations"]["GetPackageVersion"] == {"200": 30}


def test_runtime_reconfiguration_takes_effect_and_the_record_counts(
        emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", "1.0")])
    for _ in range(10):
        iot.get_package_version(packageName="fw", versionName="1.0")
    emulator.configure(rate=1, burst=1)
    started = time.monotonic()
    iot.get_package_version(packageName="fw", versionName="1.0")  # takes the only token
    # Refill is 1/s: the next call is throttled unless a whole second passed in between.
    try:
        iot.get_package_version(packageName="fw", versionName="1.0")
        throttled = 0
    except ClientError as error:
        assert code_and_status(error) == ("ThrottlingException", 400)
        throttled = 1
    assert throttled == 1 or time.monotonic() - started >= 1.0
    emulator.configure(rate=None)
    for _ in range(5):
        iot.get_package_version(packageName="fw", versionName="1.0")
    record = emulator.record()["operations"]["GetPackageVersion"]
    assert record == ({"200": 16, "400": 1} if throttled else {"200": 17})
    emulator.reset_record()
    assert emulator.record()["operations"] == {}


def test_changing_other_settings_keeps_the_bucket_level(emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", "1.0")])
    emulator.configure(rate=2, burst=2)
    accepted = 0
    started = time.monotonic()
    for index in range(4):
        if index == 2:
            emulator.configure(latency_ms=0.0, seed=3)  # limits unchanged: same bucket
        try:
            iot.get_package_version(packageName="fw", versionName="1.0")
            accepted += 1
        except ClientError as error:
            assert code_and_status(error) == ("ThrottlingException", 400)
    # A refilled bucket would allow all four whatever the elapsed time.
    assert 2 <= accepted <= int(2 + 2 * (time.monotonic() - started))


def test_control_endpoints_are_never_throttled_or_faulted(emulator: Emulator) -> None:
    emulator.configure(rate=1, burst=1, fail_rate=0.5, drop_rate=0.5)
    for index in range(20):
        emulator.seed([("fw", f"{index}.0")])
        assert emulator.state("fw", f"{index}.0")["status"] == "DRAFT"
        emulator.record()
    assert emulator.record()["operations"] == {}


def test_bad_settings_are_refused_and_change_nothing(emulator: Emulator) -> None:
    from fleetrel.emulator import EmulatorError

    for bad in ({"fail_rate": 2}, {"operations": {"NoSuchCall": {"rate": 1}}},
                {"burst": 0}, {"speed": 3}):
        with pytest.raises(EmulatorError, match="400"):
            emulator.configure(**bad)
    assert emulator.settings()["fail_rate"] == 0.0


# -- idempotency ----------------------------------------------------------------------

def test_client_token_replay_returns_the_first_answer_and_changes_nothing(
        emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", "1.0")])
    iot.update_package_version(packageName="fw", versionName="1.0", action="PUBLISH",
                               clientToken=TOKEN_A)
    iot.update_package_version(packageName="fw", versionName="1.0", action="DEPRECATE",
                               clientToken=TOKEN_B)
    # Replaying the PUBLISH succeeds, as the first answer did, but does not publish again.
    iot.update_package_version(packageName="fw", versionName="1.0", action="PUBLISH",
                               clientToken=TOKEN_A)
    assert status_of(iot, "fw", "1.0") == "DEPRECATED"
    mismatch = error_of(iot.update_package_version, packageName="fw", versionName="1.0",
                        action="PUBLISH", description="different", clientToken=TOKEN_A)
    assert code_and_status(mismatch) == ("ConflictException", 409)
    assert emulator.record()["tokens"] == {"fw/1.0": [TOKEN_A, TOKEN_B]}
    # Outside the idempotency window the same token is a new request.
    emulator.configure(idempotency_window_s=0)
    iot.update_package_version(packageName="fw", versionName="1.0", action="PUBLISH",
                               clientToken=TOKEN_A)
    assert status_of(iot, "fw", "1.0") == "PUBLISHED"


def test_create_is_idempotent_too(iot: Any) -> None:
    first = iot.create_package(packageName="fw", clientToken=TOKEN_A)
    replay = iot.create_package(packageName="fw", clientToken=TOKEN_A)
    assert replay["packageArn"] == first["packageArn"]
    duplicate = error_of(iot.create_package, packageName="fw", clientToken=TOKEN_B)
    assert code_and_status(duplicate) == ("ConflictException", 409)
    bad_token = error_of(iot.create_package, packageName="fw2", clientToken="short" + " " * 31)
    assert code_and_status(bad_token) == ("ValidationException", 400)


# -- faults ---------------------------------------------------------------------------

async def test_a_dropped_connection_is_a_connection_error_not_a_hang(
        emulator: Emulator) -> None:
    emulator.seed([("fw", "1.0")])
    emulator.configure(drop_rate=1.0)
    # read_timeout: were the server to hang, the call would fail as a timeout, not block.
    async with aio_client(emulator.url, read_timeout=10, connect_timeout=5) as client:
        with pytest.raises(ConnectionClosedError) as caught:
            await client.update_package_version(packageName="fw", versionName="1.0",
                                                action="PUBLISH", clientToken=TOKEN_A)
        assert not isinstance(caught.value, ReadTimeoutError)
        emulator.configure(drop_rate=0.0)
        # The backend applied the call before the answer was lost: the retry with the
        # same token gets the first answer.
        await client.update_package_version(packageName="fw", versionName="1.0",
                                            action="PUBLISH", clientToken=TOKEN_A)
    assert emulator.state("fw", "1.0")["status"] == "PUBLISHED"
    record = emulator.record()
    assert record["operations"]["UpdatePackageVersion"] == {"dropped": 1, "200": 1}
    assert record["injected"] == {"dropped": {"UpdatePackageVersion": 1}}


def test_an_injected_500_has_the_aws_shape_and_changes_nothing(
        emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", "1.0")])
    emulator.configure(fail_rate=1.0)
    error = error_of(iot.update_package_version, packageName="fw", versionName="1.0",
                     action="PUBLISH")
    assert code_and_status(error) == ("InternalServerException", 500)
    assert emulator.state("fw", "1.0")["status"] == "DRAFT"
    assert emulator.record()["tokens"] == {}  # it never reached the backend


def test_mixed_faults_are_counted_exactly_as_the_client_saw_them(
        emulator: Emulator) -> None:
    emulator.seed([("fw", "1.0")])
    emulator.configure(fail_rate=0.3, drop_rate=0.2, seed=7)
    client = boto3.client("iot", endpoint_url=emulator.url, region_name=REGION,
                          config=Config(retries={"total_max_attempts": 1}, read_timeout=10),
                          **CREDENTIALS)
    seen = {"200": 0, "500": 0, "dropped": 0}
    for index in range(40):
        try:
            client.update_package_version(packageName="fw", versionName="1.0",
                                          description=f"d{index}")
            seen["200"] += 1
        except ClientError as error:
            assert code_and_status(error) == ("InternalServerException", 500)
            seen["500"] += 1
        except ConnectionClosedError:
            seen["dropped"] += 1
    assert seen["500"] > 0 and seen["dropped"] > 0 and seen["200"] > 0
    counted = emulator.record()["operations"]["UpdatePackageVersion"]
    assert counted == {key: value for key, value in seen.items() if value}


def test_added_latency_delays_every_package_call(emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", "1.0")])
    emulator.configure(latency_ms=300)
    started = time.monotonic()
    iot.get_package_version(packageName="fw", versionName="1.0")
    assert time.monotonic() - started >= 0.3  # a sleep guarantees a lower bound


# -- listing --------------------------------------------------------------------------

def test_list_package_versions_pages_past_100(emulator: Emulator, iot: Any) -> None:
    names = [f"1.0.{i:03d}" for i in range(250)]
    emulator.seed([{"package": "fw", "version": name,
                    "status": "PUBLISHED" if i % 3 == 0 else "DRAFT"}
                   for i, name in enumerate(names)])
    pages, token = [], None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = iot.list_package_versions(packageName="fw", **kwargs)
        pages.append([item["versionName"] for item in page["packageVersionSummaries"]])
        token = page.get("nextToken")
        if not token:
            break
    assert [len(page) for page in pages] == [100, 100, 50]
    assert [name for page in pages for name in page] == names
    paginator = iot.get_paginator("list_package_versions")
    published = [item["versionName"]
                 for page in paginator.paginate(packageName="fw", status="PUBLISHED",
                                                PaginationConfig={"PageSize": 7})
                 for item in page["packageVersionSummaries"]]
    assert published == names[::3]
    too_many = error_of(iot.list_package_versions, packageName="fw", maxResults=101)
    assert code_and_status(too_many) == ("ValidationException", 400)


# -- processes and the CLI ------------------------------------------------------------

def test_cli_prints_the_url_first_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetrel", "emulator", "--port", "0", "--rate", "10"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert process.stdout is not None and process.stderr is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        assert "loopback only" in process.stderr.readline()
        with urllib.request.urlopen(f"{url}/_fleetrel/settings", timeout=10) as answer:
            assert json.load(answer)["rate"] == 10
        client = boto3.client("iot", endpoint_url=url, region_name="eu-west-1",
                              config=NO_RETRIES, **CREDENTIALS)
        client.create_package(packageName="any-region")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_refuses_bad_flags_without_a_traceback() -> None:
    done = subprocess.run([sys.executable, "-m", "fleetrel", "emulator", "--fail-rate", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "fail_rate" in done.stderr and "Traceback" not in done.stderr
    missing = subprocess.run([sys.executable, "-m", "fleetrel", "emulator", "--seed",
                              "no-such-plan.yaml"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2
    assert "no-such-plan.yaml" in missing.stderr and "Traceback" not in missing.stderr


def test_cli_seeds_a_plan_as_drafts() -> None:
    from fleetrel.plan import load

    plan = DEMO_PLAN
    steps = load(plan).steps()
    process = subprocess.Popen([sys.executable, "-m", "fleetrel", "emulator", "--seed",
                                str(plan)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        emulator = Emulator(process.stdout.readline().strip())
        for step in (steps[0], steps[-1]):
            assert emulator.state(step.package, step.version)["status"] == "DRAFT"
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not yet reaped
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_an_emulator_whose_starter_was_killed_stops_by_itself() -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from fleetrel.emulator import start_emulator;"
         " emu = start_emulator(); print(emu.process.pid, flush=True); time.sleep(600)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    child = int(starter.stdout.readline())
    starter.kill()  # SIGKILL: no chance to stop the emulator
    starter.wait()
    deadline = time.monotonic() + 30
    while not process_gone(child) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling a condition with a deadline, not timing a result
    if not process_gone(child):
        os.kill(child, signal.SIGKILL)
        pytest.fail("the orphaned emulator kept running")


def test_in_thread_emulator_serves_the_same_api() -> None:
    with start_emulator_in_thread(rate=100) as emulator:
        emulator.seed([("fw", "1.0")])
        client = boto3.client("iot", endpoint_url=emulator.url, region_name=REGION,
                              config=NO_RETRIES, **CREDENTIALS)
        client.update_package_version(packageName="fw", versionName="1.0", action="PUBLISH")
        assert emulator.state("fw", "1.0")["status"] == "PUBLISHED"
        assert emulator.record()["operations"]["UpdatePackageVersion"] == {"200": 1}


# -- pure pieces (no network) ---------------------------------------------------------

def test_token_bucket_arithmetic() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now = 0.4  # 0.8 of a token: not enough
    assert bucket.take() is False
    clock.now = 0.5  # a whole token
    assert bucket.take() is True
    clock.now = 100.0  # refill stops at the burst
    assert sum(bucket.take() for _ in range(10)) == 3


def test_settings_limits_and_validation() -> None:
    settings = EmulatorSettings(rate=10).updated(
        operations={"GetPackageVersion": {"rate": 50}, "ListPackages": {"rate": 0}})
    assert settings.limits_for("UpdatePackageVersion") == (10.0, 10.0)
    assert settings.limits_for("GetPackageVersion") == (50.0, 50.0)
    assert settings.limits_for("ListPackages") is None
    assert settings.updated(operations={"GetPackageVersion": None}).limits_for(
        "GetPackageVersion") == (10.0, 10.0)
    assert EmulatorSettings().limits_for("UpdatePackageVersion") is None
    with pytest.raises(SettingsError, match="fail_rate"):
        settings.updated(fail_rate=0.7, drop_rate=0.7)


def test_catalog_rules_are_settings() -> None:
    catalog = PackageCatalog(rules=CatalogRules(refused_transition="ConflictException",
                                                already_in_state=None))
    catalog.seed("fw", "1.0")
    with pytest.raises(CatalogError) as refused:
        catalog.update_package_version({"packageName": "fw", "versionName": "1.0",
                                        "action": "DEPRECATE"})
    assert (refused.value.code, refused.value.status) == ("ConflictException", 409)
    request = {"packageName": "fw", "versionName": "1.0", "action": "PUBLISH"}
    catalog.update_package_version(request)
    assert catalog.update_package_version(request) == {}  # already published: a no-op
    assert catalog.get_package_version(request)["status"] == "PUBLISHED"


def test_paging_is_stable_when_versions_appear_between_pages() -> None:
    catalog = PackageCatalog()
    for name in ("a", "c", "e"):
        catalog.seed("fw", name)
    first = catalog.list_package_versions({"packageName": "fw", "maxResults": 2})
    catalog.seed("fw", "b")  # sorts before the token: must not repeat "c"
    rest = catalog.list_package_versions({"packageName": "fw", "maxResults": 2,
                                          "nextToken": first["nextToken"]})
    names = [v["versionName"] for page in (first, rest) for v in page["packageVersionSummaries"]]
    assert names == ["a", "c", "e"]
