"""The emulator as an HTTP server: kept-alive connections, faults on a reused connection,
and the guards on the control endpoints (issue 10). Real HTTP, real botocore.
"""
from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from fleetrel.emulator import Emulator
from conftest import CREDENTIALS, NO_RETRIES, REGION


def test_one_client_reuses_its_connection(emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", f"v{index}") for index in range(10)])
    for index in range(10):
        iot.update_package_version(packageName="fw", versionName=f"v{index}",
                                   description=f"call {index}")
        iot.get_package_version(packageName="fw", versionName=f"v{index}")
    record = emulator.record()
    assert sum(record["operations"]["UpdatePackageVersion"].values()) == 10
    # 20 sequential calls from one botocore client: one kept-alive TCP connection (a server
    # that closes after each answer would show 20).
    assert record["connections"] == 1


async def test_concurrent_calls_share_a_pool_of_connections(emulator: Emulator) -> None:
    import asyncio

    import aioboto3

    emulator.seed([("fw", f"v{index}") for index in range(60)])
    session = aioboto3.Session(region_name=REGION, **CREDENTIALS)
    config = Config(retries={"total_max_attempts": 1}, max_pool_connections=4)
    async with session.client("iot", endpoint_url=emulator.url, config=config) as client:
        for start in range(0, 60, 4):
            await asyncio.gather(*(client.update_package_version(
                packageName="fw", versionName=f"v{index}", action="PUBLISH")
                for index in range(start, start + 4)))
    record = emulator.record()
    assert record["operations"]["UpdatePackageVersion"] == {"200": 60}
    assert record["connections"] <= 4  # the client's pool, not one per call


def test_a_drop_on_a_kept_alive_connection_is_a_connection_error_and_is_not_reused(
        emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", "1.0"), ("fw", "2.0")])
    iot.get_package_version(packageName="fw", versionName="1.0")  # opens the connection
    emulator.configure(drop_rate=1.0)
    with pytest.raises(ConnectionClosedError):
        iot.update_package_version(packageName="fw", versionName="1.0", action="PUBLISH",
                                   clientToken="t" * 36)
    emulator.configure(drop_rate=0.0)
    # Applied before the answer was lost, and the next call gets a new, working connection.
    assert iot.get_package_version(packageName="fw", versionName="1.0")["status"] == \
        "PUBLISHED"
    iot.update_package_version(packageName="fw", versionName="2.0", action="PUBLISH")
    record = emulator.record()
    assert record["operations"]["UpdatePackageVersion"] == {"dropped": 1, "200": 1}
    assert record["connections"] == 2


def test_a_throttle_keeps_the_connection(emulator: Emulator, iot: Any) -> None:
    emulator.seed([("fw", "1.0")])
    emulator.configure(rate=0.01, burst=1)  # one call, then throttles for 100 s
    outcomes = []
    for _ in range(5):
        try:
            iot.get_package_version(packageName="fw", versionName="1.0")
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    assert outcomes == ["ok"] + ["ThrottlingException"] * 4
    assert emulator.record()["connections"] == 1


# -- control endpoints: only loopback names, only JSON POSTs --------------------------

def control_request(emulator: Emulator, method: str, action: str, body: bytes | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One raw request, so the test sets Host and Content-Type as a browser would."""
    import http.client
    import json
    from urllib.parse import urlsplit

    address = urlsplit(emulator.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request(method, f"/_fleetrel/{action}", body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"null")
    finally:
        connection.close()


def test_a_cross_origin_text_plain_post_changes_nothing(emulator: Emulator) -> None:
    port = emulator.url.rsplit(":", 1)[1]
    host = {"Host": f"127.0.0.1:{port}"}
    emulator.seed([("fw", "1.0")])
    # What a web page can send without a CORS preflight: text/plain, form, multipart.
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", None):
        headers = dict(host, **({"Content-Type": content_type} if content_type else {}))
        for action, body in (("configure", b'{"fail_rate": 1.0}'),
                             ("seed", b'{"versions": [{"package": "fw", "version": "2.0"}]}'),
                             ("reset", b"{}"), ("reset-record", b"{}")):
            status, answer = control_request(emulator, "POST", action, body, headers)
            assert status == 415, (action, content_type, answer)
            assert "application/json" in answer["error"]
    assert emulator.settings()["fail_rate"] == 0.0
    assert emulator.state("fw", "1.0") is not None  # not reset
    assert emulator.state("fw", "2.0") is None  # not seeded
    json_headers = dict(host, **{"Content-Type": "application/json; charset=utf-8"})
    status, answer = control_request(emulator, "POST", "configure", b'{"fail_rate": 0.5}',
                                     json_headers)
    assert (status, answer["fail_rate"]) == (200, 0.5)


def test_control_endpoints_refuse_a_host_that_is_not_loopback(emulator: Emulator) -> None:
    port = emulator.url.rsplit(":", 1)[1]
    json_type = {"Content-Type": "application/json"}
    # DNS rebinding: evil.example resolves to 127.0.0.1, the browser still says its name.
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}",
                 f"10.0.0.1:{port}", ""):
        for method, action, body in (("POST", "configure", b'{"fail_rate": 1.0}'),
                                     ("GET", "record", None), ("GET", "settings", None),
                                     ("POST", "reset", b"{}")):
            status, answer = control_request(emulator, method, action, body,
                                             dict(json_type, Host=host))
            assert status == 403, (host, action, answer)
    assert emulator.settings()["fail_rate"] == 0.0
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}",
                 "127.0.0.1"):
        status, answer = control_request(emulator, "GET", "settings", None, {"Host": host})
        assert status == 200, host



# -- whose catalog: the account from the credentials, the region from the signature ---

def test_the_region_comes_from_the_signing_scope(emulator: Emulator) -> None:
    def client(region: str) -> Any:
        return boto3.client("iot", endpoint_url=emulator.url, region_name=region,
                            config=NO_RETRIES, **CREDENTIALS)

    client("eu-west-1").create_package(packageName="fw")
    client("eu-west-1").create_package_version(packageName="fw", versionName="1.0")
    assert client("us-east-1").list_packages()["packageSummaries"] == []
    assert emulator.state("fw", "1.0", region="eu-west-1")["status"] == "DRAFT"
    assert emulator.state("fw", "1.0", region="us-east-1") is None


def test_assumed_role_credentials_reach_the_roles_account(emulator: Emulator) -> None:
    sts = boto3.client("sts", endpoint_url=emulator.url, region_name=REGION,
                       config=NO_RETRIES, **CREDENTIALS)
    assumed = sts.assume_role(RoleArn="arn:aws:iam::111111111111:role/release",
                              RoleSessionName="fleetrel-test")["Credentials"]
    iot = boto3.client("iot", endpoint_url=emulator.url, region_name=REGION,
                       config=NO_RETRIES, aws_access_key_id=assumed["AccessKeyId"],
                       aws_secret_access_key=assumed["SecretAccessKey"],
                       aws_session_token=assumed["SessionToken"])
    iot.create_package(packageName="fw")
    iot.create_package_version(packageName="fw", versionName="1.0")
    # Moto's rule: an access key STS issued for a role belongs to the role's account.
    status, found = control_request(emulator, "GET", "state?package=fw&version=1.0&account="
                                    "111111111111", headers={"Host": "127.0.0.1"})
    assert (status, found["status"]) == (200, "DRAFT")
    default = boto3.client("iot", endpoint_url=emulator.url, region_name=REGION,
                           config=NO_RETRIES, **CREDENTIALS)
    assert default.list_packages()["packageSummaries"] == []


def test_each_account_and_region_has_its_own_quota(emulator: Emulator) -> None:
    emulator.configure(rate=0.01, burst=1)  # one call per bucket, then throttles for 100 s
    sts = boto3.client("sts", endpoint_url=emulator.url, region_name=REGION,
                       config=NO_RETRIES, **CREDENTIALS)
    assumed = sts.assume_role(RoleArn="arn:aws:iam::222222222222:role/release",
                              RoleSessionName="fleetrel-test")["Credentials"]
    other_account = {"aws_access_key_id": assumed["AccessKeyId"],
                     "aws_secret_access_key": assumed["SecretAccessKey"],
                     "aws_session_token": assumed["SessionToken"]}
    callers = {"default/us-east-1": (REGION, CREDENTIALS),
               "default/eu-west-1": ("eu-west-1", CREDENTIALS),
               "222222222222/us-east-1": (REGION, other_account)}
    outcomes = {}
    for name, (region, credentials) in callers.items():
        client = boto3.client("iot", endpoint_url=emulator.url, region_name=region,
                              config=NO_RETRIES, **credentials)
        seen = []
        for _ in range(3):
            try:
                client.list_packages()
                seen.append("ok")
            except ClientError as error:
                seen.append(error.response["Error"]["Code"])
        outcomes[name] = seen
    # Each (account, region) spent its own one-token bucket; none drained another's.
    assert outcomes == {name: ["ok", "ThrottlingException", "ThrottlingException"]
                        for name in callers}
    assert emulator.record()["throttled"] == {"ListPackages": 6}
