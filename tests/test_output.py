"""Output for CI logs and scripts (issue 22): tables at 80 columns, honest counts, an
ETA from the paced rate, exit codes, one JSON shape, and the emulator's answer to an
operation it does not emulate."""
from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from fleetrel.emulator import Emulator
from conftest import CREDENTIALS, REGION


# -- the emulator: an operation it does not emulate -------------------------------------

def test_an_operation_the_emulator_does_not_emulate_is_a_400_naming_it_and_not_retried(emulator: Emulator) -> None:
    # botocore's default retries on: a 5xx would arrive five times
    iot = boto3.client("iot", endpoint_url=emulator.url, region_name=REGION, **CREDENTIALS)
    with pytest.raises(ClientError) as caught:
        iot.get_package_configuration()
    response: dict[str, Any] = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["ResponseMetadata"]["RetryAttempts"] == 0
    assert response["Error"]["Code"] == "UnknownOperationException"
    assert "GetPackageConfiguration" in response["Error"]["Message"]
    assert emulator.record()["operations"] == {"GetPackageConfiguration": {"400": 1}}
