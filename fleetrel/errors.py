"""What a failed call means, and whether and when to try it again.

    try:
        await client.update_package_version(**request)
    except Exception as exc:
        kind = classify(exc)                      # THROTTLED, TRANSIENT, CONFLICT, PERMANENT
        delay = policy.retry_delay(kind, attempt) # None: give up
        journal(code=error_code(exc), message=error_message(exc), ...)

Throttles and transient faults are the service's doing and are retried; a
conflict is retried a few times (the engine first checks whether the version
already is where the plan wants it); anything else, including any exception we
do not recognise, is permanent: retrying our own bug only hides it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import random
import sys
from typing import Any

import botocore.exceptions


class Kind(enum.Enum):
    """What kind of failure an exception is, for the retry decision."""

    THROTTLED = "throttled"  # the service's quota: slow down, then retry
    TRANSIENT = "transient"  # 5xx, lost connection, timeout: retry with backoff
    CONFLICT = "conflict"  # 409: state changed under us; check, then retry a little
    CREDENTIALS = "credentials"  # expired or unobtainable credentials: stop the run, resume later
    SETUP = "setup"  # the client cannot send this at all (a local misconfiguration): stop the run
    PERMANENT = "permanent"  # the request itself is wrong, or we have a bug: stop


#: botocore 1.40.61 ``ThrottledRetryableChecker._THROTTLED_ERROR_CODES``, the
#: union of every code AWS services use for "slow down". IoT answers
#: ThrottlingException with HTTP 400, so the code matters, not the status.
THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)

#: Server-side faults by code (botocore's transient codes plus the common 5xx
#: names), for answers whose status was lost or is not 5xx.
TRANSIENT_CODES = frozenset(
    {
        "InternalServerException",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

CONFLICT_CODES = frozenset({"ConflictException"})

#: Answers that say the caller's credentials ran out (STS session tokens: ExpiredToken,
#: ExpiredTokenException; a signature past its 5-minute window: RequestExpired) or were not
#: accepted. botocore 1.40.61 has no list of these to reuse (it refreshes credentials
#: before they expire, it does not classify the answers). Nothing is wrong with the step,
#: so it must stay unfinished for a resume with fresh credentials.
CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    }
)

# botocore.exceptions.ConnectionError covers EndpointConnectionError,
# ConnectTimeoutError, ProxyConnectionError, SSLError; HTTPClientError covers
# ConnectionClosedError, ReadTimeoutError, ResponseStreamingError. aiobotocore
# 2.25.1 (httpsession.py) turns aiohttp's ServerDisconnectedError and payload
# errors into ConnectionClosedError, ServerTimeoutError into Read/ConnectTimeoutError,
# connector errors into EndpointConnectionError, asyncio.TimeoutError into
# ReadTimeoutError and anything else into HTTPClientError. The raw aiohttp and
# OS errors are listed too, for a body read that fails after botocore returned.
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.IncompleteReadError,
    TimeoutError,  # asyncio.TimeoutError is TimeoutError since Python 3.11
    asyncio.TimeoutError,
    ConnectionError,  # builtin: ConnectionResetError, BrokenPipeError, ConnectionRefusedError, ...
)


def _transient_types() -> tuple[type[BaseException], ...]:
    """The transient exception types, aiohttp's among them once it is loaded: an aiohttp
    error can only come from a loaded aiohttp, and a session with nothing to send never
    loads it (its import is a fifth of a second)."""
    aiohttp = sys.modules.get("aiohttp")
    return _TRANSIENT_TYPES + ((aiohttp.ClientError,) if aiohttp is not None else ())


def _client_error_parts(exc: botocore.exceptions.ClientError) -> tuple[str, int | None]:
    response: dict[str, Any] = exc.response or {}
    code = str(response.get("Error", {}).get("Code") or "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status if isinstance(status, int) else None


def classify(exc: BaseException) -> Kind:
    """The kind of failure ``exc`` is.

        >>> classify(ClientError({"Error": {"Code": "ThrottlingException"}}, "UpdatePackageVersion"))
        <Kind.THROTTLED: 'throttled'>
    """
    if isinstance(exc, (botocore.exceptions.NoCredentialsError, botocore.exceptions.CredentialRetrievalError,
                        botocore.exceptions.PartialCredentialsError)):
        return Kind.CREDENTIALS
    if isinstance(exc, botocore.exceptions.HTTPClientError) and isinstance(exc.kwargs.get("error"), (ValueError, TypeError)):
        # aiohttp refused to build the request ("Cannot combine AUTHORIZATION header with
        # AUTH argument or credentials encoded in URL"): retrying cannot help
        return Kind.SETUP
    if isinstance(exc, botocore.exceptions.ClientError):
        code, status = _client_error_parts(exc)
        if code in CREDENTIAL_CODES:
            return Kind.CREDENTIALS
        if code in THROTTLE_CODES or status == 429:
            return Kind.THROTTLED
        if code in CONFLICT_CODES or (status == 409 and not code):
            return Kind.CONFLICT
        if code in TRANSIENT_CODES or (status is not None and status >= 500):
            return Kind.TRANSIENT
        # Validation, ResourceNotFound, AccessDenied, ExpiredToken,
        # UnrecognizedClient and every code we do not know: retrying the same
        # request cannot make it right.
        return Kind.PERMANENT
    if isinstance(exc, _transient_types()):
        return Kind.TRANSIENT
    # ParamValidationError, NoCredentialsError, our own bugs: permanent.
    return Kind.PERMANENT


def error_code(exc: BaseException) -> str:
    """A short stable code for journals and summaries.

    The service's error code for an answer (``ThrottlingException``,
    ``HTTP503`` if the answer had no code), else the exception's class name
    (``ReadTimeoutError``, ``EndpointConnectionError``, ``TimeoutError``).
    """
    if isinstance(exc, botocore.exceptions.ClientError):
        code, status = _client_error_parts(exc)
        if code:
            return code
        return f"HTTP{status}" if status is not None else "ClientError"
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    """The service's message for an answer, else ``str(exc)`` (or the class name)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        message = (exc.response or {}).get("Error", {}).get("Message")
        if message:
            return str(message)
    return str(exc) or type(exc).__name__


def backoff(
    attempt: int, *, base: float = 0.1, cap: float = 5.0, rng: random.Random | Any = random
) -> float:
    """Seconds to wait before the next attempt: full jitter.

        delay = backoff(attempt=1)   # uniform(0, 0.2)
        delay = backoff(attempt=9)   # uniform(0, 5.0): capped

    ``attempt`` is the number of attempts that have failed so far. The jitter
    spreads retries of calls that failed together, so they do not all come
    back at once.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, not {attempt!r}")
    # 2**attempt overflows a float past ~1023; the cap is reached long before.
    ceiling = min(cap, base * 2 ** min(attempt, 64))
    return rng.uniform(0, ceiling)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How many attempts each kind of failure gets, and the backoff between them.

        policy = RetryPolicy()
        delay = policy.retry_delay(Kind.TRANSIENT, attempt=1)   # a float, or None to give up

    Limits count every attempt of the step (``attempt`` = attempts made so
    far, 1 after the first failure) against the limit of the latest failure's
    kind. Throttles get many attempts because the rate controller is already
    slowing the run down for them; they are bounded anyway so a service that
    throttles everything does not hang a run: such a step fails as not
    permanent, and a resumed run tries it again.
    """

    max_attempts_transient: int = 8
    max_attempts_conflict: int = 3
    max_attempts_throttled: int = 20
    base: float = 0.1
    cap: float = 5.0

    def max_attempts(self, kind: Kind) -> int:
        """Attempts a step may make in all when its latest failure is ``kind``."""
        return {
            Kind.THROTTLED: self.max_attempts_throttled,
            Kind.TRANSIENT: self.max_attempts_transient,
            Kind.CONFLICT: self.max_attempts_conflict,
            Kind.CREDENTIALS: 1,
            Kind.SETUP: 1,
            Kind.PERMANENT: 1,
        }[kind]

    def should_retry(self, kind: Kind, attempt: int) -> bool:
        """Whether a step that has made ``attempt`` attempts, the last failing with ``kind``, tries again."""
        return attempt < self.max_attempts(kind)

    def retry_delay(
        self, kind: Kind, attempt: int, *, rng: random.Random | Any = random
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if not self.should_retry(kind, attempt):
            return None
        return backoff(attempt, base=self.base, cap=self.cap, rng=rng)
