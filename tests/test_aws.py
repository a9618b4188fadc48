"""fleetrel.aws: which endpoints get TLS verification, and the emulator credentials."""
from __future__ import annotations

import pytest

from fleetrel.aws import (EMULATOR_CREDENTIALS, AwsSetupError, client_identity, iot_client, plain_http_loopback,
                          resolve_identity)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:5000", True),
        ("http://localhost:5000", True),
        ("http://[::1]:5000", True),
        ("https://127.0.0.1:5000", False),  # TLS on loopback: still verified
        ("http://10.0.0.5:5000", False),
        ("https://iot.us-east-1.amazonaws.com", False),
        (None, False),
    ],
)
def test_only_plain_http_on_this_machine_skips_certificate_verification(url, expected):
    assert plain_http_loopback(url) is expected


async def test_a_loopback_client_leaves_the_shared_emulator_credentials_alone(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    before = dict(EMULATOR_CREDENTIALS)
    async with iot_client(region="us-east-1", endpoint_url="http://127.0.0.1:1") as client:
        assert client._endpoint.http_session._verify is False
    assert EMULATOR_CREDENTIALS == before


@pytest.fixture
def aws_config(tmp_path, monkeypatch):
    """An AWS config of our own: a default profile without a region, `eu` with one (and
    keys, so iot_client finds credentials), and nothing from the environment."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config"
    config.write_text("[default]\noutput = json\n\n[profile eu]\nregion = eu-west-1\n")
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n\n"
                           "[eu]\naws_access_key_id = a\naws_secret_access_key = b\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.mark.parametrize(
    ("settings", "env_region"),
    [
        ({"endpoint_url": "http://127.0.0.1:5000"}, None),  # the emulator: us-east-1 by default
        ({"endpoint_url": "http://127.0.0.1:5000/"}, None),  # kept as given, slash and all
        ({"endpoint_url": "http://localhost:5000", "region": "ap-south-1"}, None),
        ({"endpoint_url": "http://127.0.0.1:5000"}, "ca-central-1"),  # AWS_DEFAULT_REGION
        ({"endpoint_url": "http://127.0.0.1:5000", "profile": "eu"}, None),  # the profile's region
        ({"region": "us-west-2"}, None),  # AWS's own endpoint for the region
        ({"profile": "eu"}, None),
        ({"profile": "eu", "region": "eu-central-1"}, None),
        ({}, "sa-east-1"),
    ],
)
async def test_a_resolved_identity_is_the_one_of_the_client_those_settings_build(aws_config, settings, env_region):
    """A resume with nothing left to send builds no client: the run's identity it checks
    must be exactly what the client would have said."""
    if env_region:
        aws_config.setenv("AWS_DEFAULT_REGION", env_region)
    full = {"region": None, "profile": None, "endpoint_url": None, **settings}
    async with iot_client(**full) as client:
        expected = client_identity(client, full["profile"])
    assert resolve_identity(**full) == expected


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"endpoint_url": "https://iot.example.com"}, "no AWS region"),
        ({"profile": "missing", "region": "us-east-1"}, "profile 'missing' not found"),
        ({"endpoint_url": "127.0.0.1:5000"}, "needs a scheme"),
    ],
)
async def test_resolving_an_identity_refuses_what_building_the_client_refuses(aws_config, settings, message):
    full = {"region": None, "profile": None, "endpoint_url": None, **settings}
    with pytest.raises(AwsSetupError, match=message):
        async with iot_client(**full):
            pass
    with pytest.raises(AwsSetupError, match=message):
        resolve_identity(**full)
