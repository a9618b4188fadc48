"""Shared fixtures: a real emulator process over real HTTP.

`emulator` is one `fleetrel emulator` process per test module, reset before each test
(no packages, an empty record, the start-up settings: no throttling, no faults), so a
test pays ~0.5 s once per module instead of once per test.

    def test_publish(emulator, iot):
        emulator.seed([("fw", "1.0.0")])
        iot.update_package_version(packageName="fw", versionName="1.0.0", action="PUBLISH")
        assert emulator.state("fw", "1.0.0")["status"] == "PUBLISHED"
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config

from fleetrel.emulator import Emulator, start_emulator

REGION = "us-east-1"
# No credentials here, so botocore's chain would end at the instance metadata service:
# a probe of ~0.1 s per run (and a CA bundle loaded for it), in every test that runs.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
# Runs on this host that share a quota see each other through a directory
# (fleetrel.neighbours): the suite's own, so that no test sees a real run of this
# machine, or leaves anything in this user's. Set before the test modules import, as
# several copy the environment for their commands then; `own_neighbours` gives each
# test a directory of its own on top.
os.environ["FLEETREL_NEIGHBOURS"] = tempfile.mkdtemp(prefix="fleetrel-test-quotas-")
atexit.register(shutil.rmtree, os.environ["FLEETREL_NEIGHBOURS"], ignore_errors=True)
# Dummy credentials: moto accepts any, and they keep a developer's real ones out of tests.
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# botocore's own retries off, so every attempt a test makes is one the emulator sees.
NO_RETRIES = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10)


@pytest.fixture(autouse=True)
def own_neighbours(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own directory of quota locks (`fleetrel.neighbours`): the runs of one
    test see each other, as runs on one host do, and nothing else on this machine."""
    folder = tmp_path_factory.mktemp("quotas")
    monkeypatch.setenv("FLEETREL_NEIGHBOURS", str(folder))
    return folder


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[Emulator]:
    """One emulator process for the module (use `emulator` for a clean one per test)."""
    with start_emulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(emulator_process: Emulator) -> Emulator:
    """The module's emulator, reset: no packages, empty record, start-up settings."""
    emulator_process.reset()
    return emulator_process


@pytest.fixture
def iot(emulator: Emulator) -> Any:
    """A boto3 IoT client for the emulator, botocore retries off."""
    return boto3.client("iot", endpoint_url=emulator.url, region_name=REGION,
                        config=NO_RETRIES, **CREDENTIALS)
