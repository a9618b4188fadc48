"""fleetrel.aws: which endpoints get TLS verification, and the emulator credentials."""
from __future__ import annotations

import pytest

from fleetrel.aws import EMULATOR_CREDENTIALS, iot_client, plain_http_loopback


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
