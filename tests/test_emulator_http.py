"""The emulator as an HTTP server: kept-alive connections, faults on a reused connection,
and the guards on the control endpoints. Real HTTP, real botocore.
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

