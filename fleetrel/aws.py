"""The aioboto3 session and IoT client, configured for an engine that owns its retries.

    async with iot_client(Target(region="us-east-1"), concurrency=16) as client:
        await client.update_package_version(packageName="p", versionName="1.0", action="PUBLISH")
"""
from __future__ import annotations

import ipaddress
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

# aioboto3 and botocore are imported where a client is built: `fleetrel status` and
# `validate` use the URL helpers here without paying for them.

# Credentials fleetrel uses against a local emulator when none are configured: the
# emulator accepts any, and a user rehearsing a release should not need an AWS account.
EMULATOR_CREDENTIALS = {"aws_access_key_id": "fleetrel-emulator", "aws_secret_access_key": "fleetrel-emulator"}


def target_settings(target: Any, endpoint_url: str | None = None, region: str | None = None,
                    profile: str | None = None) -> dict[str, str | None]:
    """The plan's `target:` with the command line's overrides on top (`iot_client`'s keywords)."""
    return {"endpoint_url": endpoint_url or target.endpoint_url, "region": region or target.region,
            "profile": profile or target.profile}


class AwsSetupError(Exception):
    """The user's AWS setup cannot give a client (no region, unknown profile, bad endpoint)."""


NO_REGION = "no AWS region: set target.region in the plan, pass --region, or set AWS_DEFAULT_REGION"


def without_userinfo(url: str) -> str:
    """`url` with any `user:password@` removed: for journals, reports and messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return parts._replace(netloc=netloc).geturl()


def check_endpoint_url(url: str | None) -> None:
    """An endpoint botocore can send to: http(s)://host[:port], with no credentials in it."""
    if url is None:
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise AwsSetupError(f"endpoint URL {without_userinfo(url)!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AwsSetupError(f"endpoint URL {without_userinfo(url)!r} needs a scheme and a host, "
                            "like http://127.0.0.1:5000 or https://iot.eu-west-1.amazonaws.com")
    if parts.username is not None or parts.password is not None:
        raise AwsSetupError(f"endpoint URL {without_userinfo(url)!r} carries a user name or password: "
                            "AWS endpoints take none (credentials come from your AWS profile or environment), "
                            "and fleetrel would not write them to its journal")


def client_identity(client: Any, profile: str | None) -> dict[str, str]:
    """Where a client sends its calls, as a run's identity: endpoint, region, profile, and
    the account when the client says it (`fleetrel.testing.FakeIoT`'s `account`)."""
    meta = getattr(client, "meta", None)
    identity = {"endpoint": without_userinfo(str(getattr(meta, "endpoint_url", "") or "")),
                "region": str(getattr(meta, "region_name", "") or ""), "profile": profile or "",
                "account": str(getattr(client, "account", "") or "")}
    return {k: v for k, v in identity.items() if v}


def configured_region(profile: str | None, endpoint_url: str | None) -> str:
    """The region a client built without one resolves to: AWS_DEFAULT_REGION, else the
    profile's config, else us-east-1 for a local emulator. AwsSetupError without one."""
    import botocore.session
    from botocore.exceptions import ProfileNotFound

    try:
        region = botocore.session.Session(profile=profile).get_config_variable("region")
    except ProfileNotFound as exc:
        raise AwsSetupError(f"AWS profile {profile!r} not found in your AWS config") from exc
    region = region or ("us-east-1" if is_loopback(endpoint_url) else None)
    if region is None:
        raise AwsSetupError(NO_REGION)
    return region


def resolve_identity(*, region: str | None = None, profile: str | None = None,
                     endpoint_url: str | None = None) -> dict[str, str]:
    """What `client_identity` says of the client `iot_client` builds with these settings,
    without building it: a session with nothing left to send needs neither aiohttp nor
    aiobotocore (together half a second of start-up). botocore's own session resolves
    the region exactly as aioboto3's does (the region given, else AWS_DEFAULT_REGION,
    else the profile's config); the endpoint is the one given (botocore keeps it as it
    is), else the one a botocore client resolves for the region. tests/test_aws.py holds
    this equal to the identity of real clients. Credentials are not looked at: nothing
    will be signed.
    """
    import botocore.session
    from botocore.exceptions import ProfileNotFound

    check_endpoint_url(endpoint_url)
    session = botocore.session.Session(profile=profile)
    try:
        configured = session.get_config_variable("region")  # reads the profile: refuses a missing one, as aioboto3 does
    except ProfileNotFound as exc:
        raise AwsSetupError(f"AWS profile {profile!r} not found in your AWS config") from exc
    region = region or configured or ("us-east-1" if is_loopback(endpoint_url) else None)
    if region is None:
        raise AwsSetupError(NO_REGION)
    if endpoint_url is None:
        # AWS's endpoint, by botocore's endpoint rules (FIPS and dual-stack settings included);
        # the dummy key only spares the credential chain a lookup
        endpoint_url = session.create_client("iot", region_name=region, aws_access_key_id="resolve-only",
                                             aws_secret_access_key="resolve-only").meta.endpoint_url
    identity = {"endpoint": without_userinfo(str(endpoint_url)), "region": region, "profile": profile or ""}
    return {k: v for k, v in identity.items() if v}


def is_loopback(endpoint_url: str | None) -> bool:
    if not endpoint_url:
        return False
    host = urlsplit(endpoint_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_loopback(endpoint_url: str | None) -> bool:
    """An http:// endpoint on this machine (the emulator): nothing to verify TLS for."""
    return is_loopback(endpoint_url) and urlsplit(endpoint_url or "").scheme == "http"


def no_tls(endpoint_url: str | None) -> dict[str, Any]:
    """`verify=False` for a plain-http endpoint on this machine (the emulator), for every
    client fleetrel builds (IoT, STS). There is no TLS on the connection, so no certificate
    to verify; but with verification on, aiobotocore still loads the whole CA bundle into
    an SSL context when it builds each client's connector (15-35 ms of CPU: 1.4 s of a
    20-target set-up's 3.9, three clients a target)."""
    return {"verify": False} if plain_http_loopback(endpoint_url) else {}


def client_config(concurrency: int, *, connect_timeout: float = 5.0, read_timeout: float = 20.0) -> Any:
    """botocore 1.40.61 defaults to the legacy retry mode with 5 attempts, blind to our
    limiter and with a fresh clientToken per retry: switch it off, the engine retries.
    The connection pool defaults to 10; a smaller pool than the concurrency queues calls
    inside aiohttp where the limiter cannot see them."""
    from botocore.config import Config

    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max(10, concurrency),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


@asynccontextmanager
async def iot_client(
    *,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    concurrency: int = 16,
) -> AsyncIterator[Any]:
    """An aiobotocore IoT client: profile/region/env/config resolved the AWS way."""
    import aioboto3
    from botocore.exceptions import ProfileNotFound

    check_endpoint_url(endpoint_url)
    try:
        session = aioboto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as exc:
        raise AwsSetupError(f"AWS profile {profile!r} not found in your AWS config") from exc
    region = session.region_name or ("us-east-1" if is_loopback(endpoint_url) else None)
    if region is None:
        raise AwsSetupError(NO_REGION)
    extra: dict[str, Any] = {}
    if await session.get_credentials() is None:
        if not is_loopback(endpoint_url):
            # botocore would only say so at the first call, once per step
            raise AwsSetupError("no AWS credentials found: set AWS_PROFILE or --profile, "
                                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws configure`")
        extra = dict(EMULATOR_CREDENTIALS)
    extra.update(no_tls(endpoint_url))
    async with session.client(
        "iot", region_name=region, endpoint_url=endpoint_url, config=client_config(concurrency), **extra
    ) as client:
        yield client
