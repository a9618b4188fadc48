"""Failure classification, error codes, backoff and the retry policy.

The exceptions are real botocore/aiohttp objects, built the way botocore and
aiobotocore build them (``ClientError(parsed_response, operation_name)`` with
the HTTP status in ``ResponseMetadata``).
"""

from __future__ import annotations

import asyncio
import random

import aiohttp
import botocore.exceptions as bce
import botocore.session
import pytest

from fleetrel.errors import THROTTLE_CODES, Kind, RetryPolicy, backoff, classify, error_code, error_message

URL = "http://127.0.0.1:5000/packages/p/versions/1.0.0"


def client_error(code: str | None, status: int, message: str = "boom") -> bce.ClientError:
    error = {"Message": message}
    if code is not None:
        error["Code"] = code
    response = {
        "Error": error,
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0},
    }
    return bce.ClientError(response, "UpdatePackageVersion")


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        # IoT throttles with HTTP 400: the code decides, not the status
        (client_error("ThrottlingException", 400, "Rate exceeded"), Kind.THROTTLED, "ThrottlingException"),
        (client_error("TooManyRequestsException", 429), Kind.THROTTLED, "TooManyRequestsException"),
        (client_error("SlowDown", 503), Kind.THROTTLED, "SlowDown"),
        (client_error(None, 429), Kind.THROTTLED, "HTTP429"),
        (client_error("InternalServerException", 500), Kind.TRANSIENT, "InternalServerException"),
        (client_error("ServiceUnavailable", 503), Kind.TRANSIENT, "ServiceUnavailable"),
        (client_error(None, 502), Kind.TRANSIENT, "HTTP502"),
        (client_error("SomethingNew", 504), Kind.TRANSIENT, "SomethingNew"),
        (client_error("ConflictException", 409), Kind.CONFLICT, "ConflictException"),
        (client_error(None, 409), Kind.CONFLICT, "HTTP409"),
        (client_error("ValidationException", 400), Kind.PERMANENT, "ValidationException"),
        (client_error("ResourceNotFoundException", 404), Kind.PERMANENT, "ResourceNotFoundException"),
        (client_error("AccessDeniedException", 403), Kind.PERMANENT, "AccessDeniedException"),
        (client_error("UnauthorizedException", 401), Kind.PERMANENT, "UnauthorizedException"),
        # credentials that ran out stop the run with the step unfinished (issue 10)
        (client_error("ExpiredTokenException", 403), Kind.CREDENTIALS, "ExpiredTokenException"),
        (client_error("ExpiredToken", 400), Kind.CREDENTIALS, "ExpiredToken"),
        (client_error("RequestExpired", 400), Kind.CREDENTIALS, "RequestExpired"),
        (bce.CredentialRetrievalError(provider="sts", error_msg="x"), Kind.CREDENTIALS, "CredentialRetrievalError"),
        # a request the local HTTP client refuses to build is a setup error, not a transient one
        (bce.HTTPClientError(error=ValueError("Cannot combine AUTHORIZATION header with AUTH argument or "
                                              "credentials encoded in URL")), Kind.SETUP, "HTTPClientError"),
        (client_error("InvalidClientTokenId", 403), Kind.CREDENTIALS, "InvalidClientTokenId"),
        (client_error("UnrecognizedClientException", 400), Kind.CREDENTIALS, "UnrecognizedClientException"),
        (client_error("SomethingNew", 400), Kind.PERMANENT, "SomethingNew"),
        # what aiobotocore 2.25.1 raises for a lost connection or a timeout
        (bce.ConnectionClosedError(endpoint_url=URL, error=aiohttp.ServerDisconnectedError(), request=None),
         Kind.TRANSIENT, "ConnectionClosedError"),
        (bce.ReadTimeoutError(endpoint_url=URL, error=asyncio.TimeoutError()), Kind.TRANSIENT, "ReadTimeoutError"),
        (bce.ConnectTimeoutError(endpoint_url=URL, error="connect"), Kind.TRANSIENT, "ConnectTimeoutError"),
        (bce.EndpointConnectionError(endpoint_url=URL, error=ConnectionRefusedError()),
         Kind.TRANSIENT, "EndpointConnectionError"),
        (bce.HTTPClientError(error=RuntimeError("x")), Kind.TRANSIENT, "HTTPClientError"),
        (bce.ResponseStreamingError(error=aiohttp.ClientPayloadError("x")), Kind.TRANSIENT, "ResponseStreamingError"),
        (aiohttp.ServerDisconnectedError(), Kind.TRANSIENT, "ServerDisconnectedError"),
        (aiohttp.ClientOSError(), Kind.TRANSIENT, "ClientOSError"),
        (asyncio.TimeoutError(), Kind.TRANSIENT, "TimeoutError"),
        (ConnectionResetError(104, "reset"), Kind.TRANSIENT, "ConnectionResetError"),
        (BrokenPipeError(), Kind.TRANSIENT, "BrokenPipeError"),
        # ours to fix: permanent
        (bce.ParamValidationError(report="Invalid length for parameter versionName"), Kind.PERMANENT,
         "ParamValidationError"),
        (bce.NoCredentialsError(), Kind.CREDENTIALS, "NoCredentialsError"),
        (FileNotFoundError("x"), Kind.PERMANENT, "FileNotFoundError"),
        (KeyError("x"), Kind.PERMANENT, "KeyError"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_classify_and_code(exc, kind, code):
    assert classify(exc) is kind
    assert error_code(exc) == code


@pytest.mark.parametrize("code", sorted(THROTTLE_CODES))
def test_every_botocore_throttle_code_is_a_throttle(code):
    assert classify(client_error(code, 400)) is Kind.THROTTLED


def test_our_throttle_codes_are_botocores():
    from botocore.retries.standard import ThrottledRetryableChecker

    assert THROTTLE_CODES == set(ThrottledRetryableChecker._THROTTLED_ERROR_CODES)


def test_a_modeled_service_error_class_is_classified_by_its_code():
    """What the client raises is a generated ClientError subclass, e.g. client.exceptions.ThrottlingException."""
    session = botocore.session.get_session()
    client = session.create_client(
        "iot", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    exc = client.exceptions.ThrottlingException(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
         "ResponseMetadata": {"HTTPStatusCode": 400}},
        "UpdatePackageVersion",
    )
    assert classify(exc) is Kind.THROTTLED
    assert error_message(exc) == "Rate exceeded"


def test_error_message():
    assert error_message(client_error("ValidationException", 400, "name too long")) == "name too long"
    assert error_message(KeyError("x")) == "'x'"
    assert error_message(asyncio.TimeoutError()) == "TimeoutError"


def test_backoff_is_full_jitter_within_the_capped_exponential():
    rng = random.Random(42)
    for attempt in range(0, 12):
        high = min(5.0, 0.1 * 2**attempt)
        delays = [backoff(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= d <= high for d in delays)
        # full jitter: it really spreads over the range, not just near the top
        assert min(delays) < 0.1 * high and max(delays) > 0.9 * high


def test_backoff_is_deterministic_for_a_seed_and_survives_huge_attempts():
    assert backoff(3, rng=random.Random(1)) == backoff(3, rng=random.Random(1))
    assert 0 <= backoff(10_000, rng=random.Random(1)) <= 5.0
    with pytest.raises(ValueError):
        backoff(-1)


@pytest.mark.parametrize(
    ("kind", "limit"),
    [(Kind.TRANSIENT, 8), (Kind.CONFLICT, 3), (Kind.THROTTLED, 20), (Kind.PERMANENT, 1)],
)
def test_retry_policy_limits(kind, limit):
    policy = RetryPolicy()
    rng = random.Random(0)
    for attempt in range(1, limit):
        assert policy.should_retry(kind, attempt)
        delay = policy.retry_delay(kind, attempt, rng=rng)
        assert delay is not None and 0 <= delay <= min(policy.cap, policy.base * 2**attempt)
    assert not policy.should_retry(kind, limit)
    assert policy.retry_delay(kind, limit, rng=rng) is None


def test_retry_policy_uses_its_own_base_and_cap():
    policy = RetryPolicy(base=1.0, cap=2.0)
    delays = [policy.retry_delay(Kind.TRANSIENT, 5, rng=random.Random(s)) for s in range(50)]
    assert max(delays) <= 2.0 and max(delays) > 1.5
