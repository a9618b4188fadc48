"""The emulator's accounts, regions and STS sessions (issue 12), over real HTTP.

The emulated accounts and regions: calls from elsewhere are refused before the quota;
seeds and the record per (account, region); STS sessions that expire, and aiobotocore's
refreshing credentials that never see it. Pure pieces (`Access`, the settings) at the end.
"""
from __future__ import annotations

import datetime
import functools
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiobotocore.credentials import (
    AioAssumeRoleCredentialFetcher,
    AioCredentials,
    AioDeferredRefreshableCredentials,
)
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError

from fleetrel.emulator import Emulator, EmulatorError, start_emulator
from fleetrel.emulator.access import Access
from fleetrel.emulator.settings import EmulatorSettings, SettingsError
from fleetrel.rehearsal import DEMO_PLAN
from conftest import CREDENTIALS, NO_RETRIES, REGION

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ACCOUNT = "123456789012"  # moto's, for any access key it did not issue
ACCOUNTS = ["111111111111", "222222222222"]
REGIONS = ["us-east-1", "eu-west-1"]


def role_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:role/release"


def assume(emulator: Emulator, account: str) -> dict[str, str]:
    """Credentials (boto3 client keyword arguments) for the release role in `account`."""
    sts = boto3.client("sts", endpoint_url=emulator.url, region_name=REGION,
                       config=NO_RETRIES, **CREDENTIALS)
    found = sts.assume_role(RoleArn=role_arn(account),
                            RoleSessionName="fleetrel-test")["Credentials"]
    return {"aws_access_key_id": found["AccessKeyId"],
            "aws_secret_access_key": found["SecretAccessKey"],
            "aws_session_token": found["SessionToken"]}


def iot_client(emulator: Emulator, region: str, credentials: dict[str, str]) -> Any:
    return boto3.client("iot", endpoint_url=emulator.url, region_name=region,
                        config=NO_RETRIES, **credentials)


def refused(call: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response
    return (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"],
            error["Error"]["Message"])


# -- emulated accounts and regions ----------------------------------------------------

def test_calls_from_an_account_or_region_that_is_not_emulated_are_refused(
        emulator: Emulator) -> None:
    emulator.configure(accounts=ACCOUNTS, regions=REGIONS)
    role = assume(emulator, "111111111111")
    # What an account guard reads before sending anything: the role's account.
    assert boto3.client("sts", endpoint_url=emulator.url, region_name=REGION,
                        config=NO_RETRIES, **role).get_caller_identity()["Account"] == \
        "111111111111"
    inside = iot_client(emulator, "eu-west-1", role)
    inside.create_package(packageName="fw")
    # Plain credentials are moto's default account, which is not one of the list.
    plain = iot_client(emulator, REGION, CREDENTIALS)
    code, status, message = refused(plain.create_package, packageName="fw")
    assert (code, status) == ("UnrecognizedClientException", 403)
    assert message.startswith("The security token included in the request is invalid")
    assert DEFAULT_ACCOUNT in message and "111111111111, 222222222222" in message
    elsewhere = iot_client(emulator, "ap-southeast-2", assume(emulator, "222222222222"))
    code, status, message = refused(elsewhere.list_packages)
    assert (code, status) == ("UnrecognizedClientException", 403)
    assert "region ap-southeast-2" in message
    # A wrong role ARN is caught where AWS catches it: STS refuses to hand out credentials.
    sts = boto3.client("sts", endpoint_url=emulator.url, region_name=REGION,
                       config=NO_RETRIES, **CREDENTIALS)
    code, status, message = refused(sts.assume_role, RoleArn=role_arn("333333333333"),
                                    RoleSessionName="fleetrel-test")
    assert (code, status) == ("AccessDenied", 403)
    assert "333333333333" in message
    record = emulator.record()
    assert record["refused"] == {"UnrecognizedClientException": {"CreatePackage": 1,
                                                                 "ListPackages": 1}}
    assert record["operations"] == {"CreatePackage": {"200": 1, "403": 1},
                                    "ListPackages": {"403": 1}}
    # Nothing was created outside the emulated places.
    assert emulator.state("fw", "1.0", account="111111111111", region="eu-west-1") is None
    assert inside.get_package(packageName="fw")["packageName"] == "fw"


def test_without_lists_any_account_and_region_is_served(emulator: Emulator) -> None:
    for region in ("ap-southeast-2", "eu-central-1"):
        iot_client(emulator, region, CREDENTIALS).create_package(packageName="fw")
    iot_client(emulator, REGION, assume(emulator, "333333333333")).create_package(
        packageName="fw")
    accounts = emulator.record()["accounts"]
    assert {account: sorted(regions) for account, regions in accounts.items()} == {
        DEFAULT_ACCOUNT: ["ap-southeast-2", "eu-central-1"], "333333333333": [REGION]}


def test_seeds_go_to_every_emulated_account_and_region_or_to_those_named(
        emulator: Emulator) -> None:
    emulator.configure(accounts=ACCOUNTS, regions=REGIONS)
    assert emulator.seed([("fw", "1.0"), ("fw", "2.0")]) == {"created": 8, "existing": 0}
    for account in ACCOUNTS:
        for region in REGIONS:
            assert emulator.state("fw", "1.0", account=account, region=region)["status"] == \
                "DRAFT"
    # Default place of a state read: the first listed account and region.
    assert emulator.state("fw", "2.0") is not None
    assert emulator.seed([{"package": "fw", "version": "3.0", "status": "PUBLISHED"}],
                         accounts="222222222222", regions=["eu-west-1"]) == \
        {"created": 1, "existing": 0}
    assert emulator.state("fw", "3.0", account="222222222222", region="eu-west-1")[
        "status"] == "PUBLISHED"
    assert emulator.state("fw", "3.0", account="111111111111", region="eu-west-1") is None
    with pytest.raises(EmulatorError, match="333333333333 is not emulated"):
        emulator.seed([("fw", "4.0")], accounts=["111111111111", "333333333333"])
    assert emulator.state("fw", "4.0") is None  # refused whole, before anything was made


def test_the_record_is_kept_per_account_and_region(emulator: Emulator) -> None:
    emulator.configure(accounts=ACCOUNTS, regions=REGIONS)
    emulator.seed([("fw", "1.0")])
    tokens = {}
    for account in ACCOUNTS:
        credentials = assume(emulator, account)
        for region in REGIONS:
            token = f"{account}-{region}".ljust(36, "x")
            tokens[(account, region)] = token
            iot = iot_client(emulator, region, credentials)
            iot.update_package_version(packageName="fw", versionName="1.0",
                                       action="PUBLISH", clientToken=token)
            if region == "eu-west-1":
                iot.get_package_version(packageName="fw", versionName="1.0")
    record = emulator.record()
    # The totals are what they always were ...
    assert record["operations"] == {"UpdatePackageVersion": {"200": 4},
                                    "GetPackageVersion": {"200": 2}}
    assert record["tokens"] == {"fw/1.0": list(tokens.values())}
    # ... and each (account, region) has its own share of them.
    for (account, region), token in tokens.items():
        place = record["accounts"][account][region]
        expected = {"UpdatePackageVersion": {"200": 1}}
        if region == "eu-west-1":
            expected["GetPackageVersion"] = {"200": 1}
        assert place["operations"] == expected, (account, region)
        assert place["tokens"] == place["tokens_sent"] == {"fw/1.0": [token]}
        assert emulator.state("fw", "1.0", account=account, region=region)["status"] == \
            "PUBLISHED"


def test_start_emulator_takes_the_lists_and_seeds_every_place() -> None:
    with start_emulator(accounts=ACCOUNTS, regions=REGIONS, session_seconds=60,
                        seed=[("fw", "1.0")]) as emulator:
        settings = emulator.settings()
        assert (settings["accounts"], settings["regions"], settings["session_seconds"]) == \
            (ACCOUNTS, REGIONS, 60)
        for account in ACCOUNTS:
            for region in REGIONS:
                assert emulator.state("fw", "1.0", account=account, region=region) is not None
        sts = boto3.client("sts", endpoint_url=emulator.url, region_name=REGION,
                           config=NO_RETRIES, **CREDENTIALS)
        before = datetime.datetime.now(datetime.timezone.utc)
        expiration = sts.assume_role(RoleArn=role_arn("111111111111"),
                                     RoleSessionName="fleetrel-test",
                                     DurationSeconds=3600)["Credentials"]["Expiration"]
        after = datetime.datetime.now(datetime.timezone.utc)
        # Capped at session_seconds (STS's Expiration is given to the second).
        assert before + datetime.timedelta(seconds=59) < expiration <= \
            after + datetime.timedelta(seconds=60)


def test_cli_seeds_a_plan_in_every_place_and_refuses_malformed_lists() -> None:
    from fleetrel.plan import load

    plan = DEMO_PLAN
    step = load(plan).steps()[0]
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetrel", "emulator", "--accounts", ",".join(ACCOUNTS),
         "--regions", ",".join(REGIONS), "--rate", "10", "--seed", str(plan)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stderr is not None
        emulator = Emulator(process.stdout.readline().strip())
        assert "111111111111, 222222222222" in process.stderr.readline()
        for account in ACCOUNTS:
            for region in REGIONS:
                assert emulator.state(step.package, step.version, account=account,
                                      region=region)["status"] == "DRAFT"
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
    for flags, named in ((["--accounts", "11111111111,222222222222"], "11111111111"),
                         (["--regions", "us-east-1,Europe"], "Europe"),
                         (["--session-seconds", "0"], "session_seconds")):
        done = subprocess.run([sys.executable, "-m", "fleetrel", "emulator", *flags],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, flags
        assert named in done.stderr and "Traceback" not in done.stderr


# -- STS sessions that expire ---------------------------------------------------------

SESSION_SECONDS = 3  # long enough that a fresh credential is never stale when it arrives


def wait_until_expired(call: Any) -> ClientError:
    """Poll a call signed with short-lived credentials until it is refused as expired
    (polling a condition with a deadline, not timing a result)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            call()
        except ClientError as error:
            if error.response["Error"]["Code"] == "ExpiredTokenException":
                return error
            raise
        time.sleep(0.2)
    pytest.fail("credentials never expired")


async def test_expired_credentials_are_refused_and_refreshing_ones_never_are(
        emulator: Emulator) -> None:
    emulator.configure(session_seconds=SESSION_SECONDS,
                       # One call, then 100 s of throttles: proves a refused call spends
                       # no token (the refreshing client's update below gets the one).
                       operations={"UpdatePackageVersion": {"rate": 0.01, "burst": 1}})
    emulator.seed([("fw", "1.0")], accounts="111111111111")
    session = AioSession()
    client_kwargs = {"endpoint_url": emulator.url, "region_name": REGION,
                     "config": NO_RETRIES}
    source = AioCredentials(CREDENTIALS["aws_access_key_id"],
                            CREDENTIALS["aws_secret_access_key"])
    # What botocore does for an assume-role profile: refresh through STS before expiry.
    fetcher = AioAssumeRoleCredentialFetcher(
        client_creator=functools.partial(session.create_client, **client_kwargs),
        source_credentials=source, role_arn=role_arn("111111111111"),
        extra_args={"RoleSessionName": "fleetrel-refresh", "DurationSeconds": 900})
    refreshing = AioDeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials,
                                                   method="assume-role")
    refreshing_session = AioSession()
    refreshing_session._credentials = refreshing  # how botocore's own session holds them
    async with session.create_client("sts", aws_access_key_id="testing",
                                     aws_secret_access_key="testing",
                                     **client_kwargs) as sts:
        stale = (await sts.assume_role(RoleArn=role_arn("111111111111"),
                                       RoleSessionName="fleetrel-stale",
                                       DurationSeconds=900))["Credentials"]
    stale_keys = {"aws_access_key_id": stale["AccessKeyId"],
                  "aws_secret_access_key": stale["SecretAccessKey"],
                  "aws_session_token": stale["SessionToken"]}
    stale_iot = iot_client(emulator, REGION, stale_keys)
    assert stale_iot.get_package_version(packageName="fw", versionName="1.0")["status"] \
        == "DRAFT"  # valid while the session lasts

    async with refreshing_session.create_client("iot", **client_kwargs) as fresh_iot:
        first = await fresh_iot.get_package_version(packageName="fw", versionName="1.0")
        first_key = (await refreshing.get_frozen_credentials()).access_key
        expired = wait_until_expired(
            lambda: stale_iot.get_package_version(packageName="fw", versionName="1.0"))
        assert expired.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert expired.response["Error"]["Message"] == \
            "The security token included in the request is expired"
        code, status, _ = refused(stale_iot.update_package_version, packageName="fw",
                                  versionName="1.0", action="PUBLISH",
                                  clientToken="s" * 36)
        assert (code, status) == ("ExpiredTokenException", 403)
        # The refreshing client's credentials are as old as the stale ones were, and it
        # never notices: it fetched new ones before signing.
        await fresh_iot.update_package_version(packageName="fw", versionName="1.0",
                                               action="PUBLISH", clientToken="f" * 36)
        assert (await refreshing.get_frozen_credentials()).access_key != first_key
    assert first["status"] == "DRAFT"
    assert emulator.state("fw", "1.0", account="111111111111")["status"] == "PUBLISHED"
    record = emulator.record()
    place = record["accounts"]["111111111111"][REGION]
    assert place["refused"]["ExpiredTokenException"]["UpdatePackageVersion"] == 1
    assert place["operations"]["UpdatePackageVersion"] == {"403": 1, "200": 1}
    # The stale call arrived but never reached the catalog.
    assert place["tokens_sent"] == {"fw/1.0": ["s" * 36, "f" * 36]}
    assert place["tokens"] == {"fw/1.0": ["f" * 36]}


def test_get_session_token_credentials_are_the_callers_and_expire(emulator: Emulator) -> None:
    emulator.configure(session_seconds=SESSION_SECONDS)
    sts = boto3.client("sts", endpoint_url=emulator.url, region_name=REGION,
                       config=NO_RETRIES, **CREDENTIALS)
    sessions = [sts.get_session_token(DurationSeconds=900)["Credentials"] for _ in range(2)]
    # One key per session (moto alone gives every session the same example key).
    assert sessions[0]["AccessKeyId"] != sessions[1]["AccessKeyId"]
    iot = iot_client(emulator, REGION, {
        "aws_access_key_id": sessions[0]["AccessKeyId"],
        "aws_secret_access_key": sessions[0]["SecretAccessKey"],
        "aws_session_token": sessions[0]["SessionToken"]})
    iot.create_package(packageName="fw")
    assert list(emulator.record()["accounts"]) == [DEFAULT_ACCOUNT]  # the caller's account
    wait_until_expired(lambda: iot.list_packages())
    # The long-lived key the session came from is not affected.
    assert iot_client(emulator, REGION, CREDENTIALS).list_packages()["packageSummaries"]


# -- pure pieces (no network) ---------------------------------------------------------

def test_access_refuses_expired_keys_then_unknown_accounts_then_regions() -> None:
    access = Access(EmulatorSettings(accounts="111111111111", regions=["eu-west-1"],
                                     session_seconds=30), default_account=DEFAULT_ACCOUNT)
    assert access.session_length(3600) == 30 and access.session_length(10) == 10
    access.issued("ASIAKEY", expires_at=100.0)
    assert access.refusal("ASIAKEY", "111111111111", "eu-west-1", now=99.9) is None
    assert access.refusal("ASIAKEY", "111111111111", "eu-west-1", now=100.0).code == \
        "ExpiredTokenException"
    assert access.refusal("ASIAKEY", "999999999999", "xx-nowhere-1", now=100.0).code == \
        "ExpiredTokenException"  # an expired token is refused before anything else
    assert "account 999999999999" in access.refusal(None, "999999999999", "eu-west-1").message
    assert "region us-east-1" in access.refusal("AKIAANY", "111111111111", "us-east-1").message
    assert access.admits_role_account("111111111111")
    assert not access.admits_role_account("999999999999")
    access.update(EmulatorSettings())  # no lists: anything goes; issued keys still expire
    assert access.refusal(None, "999999999999", "us-east-1") is None
    assert access.refusal("ASIAKEY", "999999999999", "us-east-1", now=100.0) is not None
    assert access.places() == [(DEFAULT_ACCOUNT, "us-east-1")]
    assert access.default_place() == (DEFAULT_ACCOUNT, "us-east-1")
    assert access.session_length(3600) == 3600


def test_places_are_the_product_of_the_lists_and_refuse_strangers() -> None:
    access = Access(EmulatorSettings(accounts=ACCOUNTS, regions=REGIONS),
                    default_account=DEFAULT_ACCOUNT)
    assert access.places() == [(a, r) for a in ACCOUNTS for r in REGIONS]
    assert access.places(regions=["eu-west-1"]) == [(a, "eu-west-1") for a in ACCOUNTS]
    assert access.default_place() == ("111111111111", "us-east-1")
    with pytest.raises(SettingsError, match="region ap-south-1 is not emulated"):
        access.places(regions=["ap-south-1"])


def test_account_and_region_settings_are_checked() -> None:
    settings = EmulatorSettings(accounts=" 111111111111, 222222222222,111111111111",
                                regions=["us-gov-west-1", "cn-north-1"])
    settings.check()
    assert settings.accounts == ("111111111111", "222222222222")  # repeats dropped
    for bad in ({"accounts": ["1111"]}, {"regions": ["useast1"]}, {"session_seconds": 0},
                {"session_seconds": 1.5}):
        with pytest.raises(SettingsError):
            EmulatorSettings().updated(**bad)


# -- a quota of its own for one account and region ---------------------------------

def test_a_place_rate_throttles_that_place_alone(emulator: Emulator) -> None:
    emulator.configure(accounts=ACCOUNTS, regions=REGIONS,
                       places={"111111111111/us-east-1": {"rate": 0.01, "burst": 1}})
    emulator.seed([("fw", "1.0"), ("fw", "1.1")])
    slow = iot_client(emulator, "us-east-1", assume(emulator, "111111111111"))
    slow.update_package_version(packageName="fw", versionName="1.0", description="the one token")
    assert refused(slow.update_package_version, packageName="fw", versionName="1.1",
                   description="none left")[:2] == ("ThrottlingException", 400)
    # the same account in another region, and another account in the same region: unthrottled
    for account, region in (("111111111111", "eu-west-1"), ("222222222222", "us-east-1")):
        other = iot_client(emulator, region, assume(emulator, account))
        for version in ("1.0", "1.1"):
            other.update_package_version(packageName="fw", versionName=version, description="free")
    # and the override goes as it came
    emulator.configure(places={"111111111111/us-east-1": None})
    assert emulator.settings()["places"] == {}
    slow.update_package_version(packageName="fw", versionName="1.1", description="unthrottled now")


def test_place_limits_replace_the_emulator_wide_ones_and_are_checked() -> None:
    from fleetrel.emulator.settings import place_limits

    settings = EmulatorSettings(rate=10, operations={"GetPackageVersion": {"rate": 50}},
                                places=dict([place_limits("111111111111/us-east-1=2"),
                                             place_limits("222222222222/eu-west-1=0")]))
    settings.check()
    assert settings.limits_for("UpdatePackageVersion", "111111111111", "us-east-1") == (2.0, 2.0)
    assert settings.limits_for("GetPackageVersion", "111111111111", "us-east-1") == (2.0, 2.0)
    assert settings.limits_for("UpdatePackageVersion", "222222222222", "eu-west-1") is None
    assert settings.limits_for("UpdatePackageVersion", "111111111111", "eu-west-1") == (10.0, 10.0)
    assert settings.limits_for("GetPackageVersion", "333333333333", "us-east-1") == (50.0, 50.0)
    assert place_limits("111111111111/us-east-1=2:5") == ("111111111111/us-east-1", {"rate": 2.0, "burst": 5.0})
    for bad in ("111111111111/us-east-1", "111111111111/us-east-1=fast"):
        with pytest.raises(SettingsError, match="ACCOUNT/REGION=RATE"):
            place_limits(bad)
    for places in ({"111111111111": {"rate": 1}}, {"111111111111/us-east-1": {"rate": -1}},
                   {"111111111111/us-east-1": {"rate": 1, "latency": 3}}):
        with pytest.raises(SettingsError, match="places"):
            EmulatorSettings().updated(places=places)
    with pytest.raises(SettingsError, match="not an emulated account"):
        EmulatorSettings(accounts=["222222222222"]).updated(places={"111111111111/us-east-1": {"rate": 1}})


def test_cli_place_rate_is_checked() -> None:
    done = subprocess.run([sys.executable, "-m", "fleetrel", "emulator", "--place-rate", "111111111111=2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "ACCOUNT/REGION" in done.stderr and "Traceback" not in done.stderr
