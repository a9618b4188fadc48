"""Per-target AWS sessions: the caller's own credentials, or a role assumed through STS and
refreshed before it expires, and the account each target really resolves to.

    async with target_clients(plan.target_specs(), run_name=plan.plan) as (clients, identities):
        clients["prod-eu-west-1"]                   # an aiobotocore IoT client, role assumed and refreshed
        identities["prod-eu-west-1"]["account"]     # '333333333333', from STS GetCallerIdentity

A 50,000-step run at 10 calls/s lasts 80 minutes, past a one-hour role session, so an
assumed role is not fetched once: aiobotocore's own assume-role fetcher and deferred
refreshable credentials (what a profile with `role_arn` uses) fetch it on first use and
again before it expires, for every call the client signs. Their cache is a dict in
memory: fleetrel writes no credential anywhere, and no message here quotes one.

When a refresh fails, aiobotocore logs a warning with the whole traceback (through the
`logging` module's last-resort handler, on stderr, before fleetrel's own message) and then
either raises (the credentials are expired or about to: "mandatory") or carries on with
the current ones ("advisory"). `QuietRefreshFailures` keeps AWS's answers (a refused role,
an unreachable endpoint) to what fleetrel says of them, and lets anything else through
with its traceback: that is a bug.
"""
from __future__ import annotations

import copy
import functools
import logging
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, AsyncIterator

from fleetrel.aws import (EMULATOR_CREDENTIALS, AwsSetupError, check_endpoint_url, client_config, configured_region,
                          is_loopback, no_tls)

# Refresh an assumed role this long before it expires (botocore's default is 15 minutes,
# longer than the short sessions a rehearsal against the emulator hands out).
EXPIRY_WINDOW_SECONDS = 60

# The logger and the message of aiobotocore's failed refresh (aiobotocore.credentials,
# AioRefreshableCredentials._protected_refresh; botocore's is the same words).
REFRESH_LOGGER = "aiobotocore.credentials"
REFRESH_FAILED = "Refreshing temporary credentials failed during %s refresh period."


class QuietRefreshFailures(logging.Filter):
    """Drops aiobotocore's traceback of a refresh that AWS refused or could not be reached for.

    A mandatory refresh raises the error to the call that needed the credentials, which
    fleetrel reports (a target that cannot be set up, a failed step): the record is dropped.
    An advisory one is not raised: the record stays, one line that says why, no traceback.
    Any other exception (not botocore's) is a bug and passes through untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        from fleetrel import errors

        if record.msg != REFRESH_FAILED or not record.exc_info:
            return True
        exc = record.exc_info[1]
        if not isinstance(exc, (ClientError, BotoCoreError)):
            return True
        if record.args == ("mandatory",):
            return False
        record.msg = REFRESH_FAILED.removesuffix(".") + " (%s: %s); the current credentials stay in use."
        record.args = (*record.args, errors.error_code(exc), errors.error_message(exc))
        record.exc_info = record.exc_text = None
        return True


def quiet_refresh_failures() -> None:
    """Install `QuietRefreshFailures` on aiobotocore's credentials logger (once per process)."""
    logger = logging.getLogger(REFRESH_LOGGER)
    if not any(isinstance(f, QuietRefreshFailures) for f in logger.filters):
        logger.addFilter(QuietRefreshFailures())


async def target_session(*, region: str, profile: str | None = None, role_arn: str | None = None,
                         external_id: str | None = None, session_name: str = "fleetrel",
                         endpoint_url: str | None = None, loader: Any = None, base: Any = None,
                         sts: Any = None) -> Any:
    """An aiobotocore session for one target: `profile`'s (or the environment's)
    credentials, through `role_arn` when given. `loader`: a botocore data loader to share
    between targets (it caches the parsed service models: ~0.1 s of CPU per client);
    `base`: the session of `profile` to share between targets (a botocore session costs
    ~15 ms of CPU to make: its handlers); `sts`: an open STS client of `base` in `region`
    to assume the role with, shared between targets (a client costs ~7 ms of CPU to make),
    or None to make one at each AssumeRole."""
    from aiobotocore.credentials import AioDeferredRefreshableCredentials
    from aiobotocore.session import AioSession

    base = base if base is not None else _sharing(AioSession(profile=profile), loader)
    source = await source_credentials(base, profile, endpoint_url)
    if role_arn is None:
        return base
    quiet_refresh_failures()
    extra = {"RoleSessionName": session_name[:64]}
    if external_id:
        extra["ExternalId"] = external_id
    if sts is not None:
        # AssumeRole signed with the base session's own credentials: the source credentials
        # the fetcher would hand a new client, refreshed by the session if they expire
        creator: Any = lambda *_args, **_kwargs: _Lent(sts)  # noqa: E731
    else:
        creator = functools.partial(base.create_client, region_name=region, endpoint_url=endpoint_url,
                                    config=client_config(1), **no_tls(endpoint_url))
    fetcher = _role_fetcher_class()(
        client_creator=creator,
        source_credentials=source, role_arn=role_arn, extra_args=extra, cache={},
        expiry_window_seconds=EXPIRY_WINDOW_SECONDS)
    # The role's session: the base's components (its handlers, loader, config) with credentials
    # of its own. A shallow copy, not a new AioSession: making one registers botocore's ~230
    # handlers again, ~15 ms of CPU per target (20 targets: 0.3 s before the first call).
    assumed = copy.copy(base)
    # aiobotocore has no public setter for refreshable credentials; this is what its own
    # profile-based assume-role provider hands the session.
    assumed._credentials = AioDeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials,
                                                             method="assume-role")
    assumed._fleetrel_role = fetcher  # read by `caller_account`
    return assumed


async def source_credentials(base: Any, profile: str | None, endpoint_url: str | None) -> Any:
    """`base`'s credentials (`profile`'s, or the environment's); any for the emulator."""
    from botocore.exceptions import ProfileNotFound

    try:
        source = await base.get_credentials()
    except ProfileNotFound as exc:
        raise AwsSetupError(f"AWS profile {profile!r} not found in your AWS config") from exc
    if source is None:
        if not is_loopback(endpoint_url):
            raise AwsSetupError("no AWS credentials found: set AWS_PROFILE or the target's profile, "
                                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws configure`")
        base.set_credentials(EMULATOR_CREDENTIALS["aws_access_key_id"], EMULATOR_CREDENTIALS["aws_secret_access_key"])
        source = await base.get_credentials()
    return source


class _Lent:
    """An open client lent where a new one is expected: `async with` gives it and leaves it
    open for the next borrower (its owner closes it)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def __aenter__(self) -> Any:
        return self.client

    async def __aexit__(self, *_exc: object) -> None:
        return None


def _sharing(session: Any, loader: Any) -> Any:
    if loader is not None:
        session.register_component("data_loader", loader)
    return session


@functools.lru_cache(maxsize=None)
def _role_fetcher_class() -> Any:
    """Made on first use: aiobotocore is imported only when a client is built."""
    from aiobotocore.credentials import AioAssumeRoleCredentialFetcher

    class RoleFetcher(AioAssumeRoleCredentialFetcher):
        """AssumeRole, keeping the account its answer names: AssumedRoleUser.Arn is
        arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION, the very ARN GetCallerIdentity
        answers for these credentials (AWS STS API reference, both actions), so its
        account is the one they act in, known without another call."""

        account: str | None = None

        async def _get_credentials(self) -> Any:
            response = await super()._get_credentials()
            parts = str((response.get("AssumedRoleUser") or {}).get("Arn", "")).split(":")
            if len(parts) > 5 and parts[2] == "sts" and parts[4].isdigit():
                self.account = parts[4]
            return response

    return RoleFetcher


async def caller_account(session: Any, *, region: str, endpoint_url: str | None = None) -> str:
    """The account the session's credentials act in: for an assumed role, the one
    AssumeRole's answer names (the role is assumed now, as it would be at the first call);
    otherwise STS GetCallerIdentity."""
    fetcher = getattr(session, "_fleetrel_role", None)
    if fetcher is not None:
        await (await session.get_credentials()).get_frozen_credentials()
        if fetcher.account:
            return fetcher.account
    async with session.create_client("sts", region_name=region, endpoint_url=endpoint_url,
                                     config=client_config(1), **no_tls(endpoint_url)) as sts:
        return str((await sts.get_caller_identity())["Account"])


@asynccontextmanager
async def target_clients(specs: list[Any], *, run_name: str, endpoint_url: str | None = None,
                         concurrency: int = 16) -> AsyncIterator[tuple[dict[str, Any], dict[str, dict[str, str]]]]:
    """An IoT client per target of a plan, and where each really points: endpoint, region,
    profile and the account its credentials resolve to (STS GetCallerIdentity), checked
    before any call against an `account:` the plan pins (Terraform's allowed_account_ids).
    Targets are set up all at once; every target's problem is reported, not the first.

    `specs` are `TargetSpec`s or `fleetrel.where.Destination`s (a single-target plan's one
    target is named None, its region may be left to the AWS configuration).
    `endpoint_url` overrides every target's (a rehearsal against the emulator)."""
    import anyio
    from aiobotocore.session import AioSession

    from fleetrel import errors
    from fleetrel.aws import without_userinfo

    loader: Any = None  # the first base session's, shared by every other session
    bases: dict[str | None, Any] = {}  # one session per profile: the source credentials of its targets' roles
    # one STS client per profile, region and endpoint, for its targets' AssumeRole
    role_clients: dict[tuple[str | None, str | None, str | None], Any] = {}
    role_clients_made = anyio.Lock()
    clients: dict[str, Any] = {}
    identities: dict[str, dict[str, str]] = {}
    problems: dict[str, str] = {}
    async with AsyncExitStack() as stack:
        async def role_client(base: Any, profile: str | None, region: str | None, endpoint: str | None) -> Any:
            async with role_clients_made:  # made once, by the first of its targets to ask
                key = (profile, region, endpoint)
                if key not in role_clients:
                    await source_credentials(base, profile, endpoint)
                    role_clients[key] = await stack.enter_async_context(base.create_client(
                        "sts", region_name=region, endpoint_url=endpoint, config=client_config(1),
                        **no_tls(endpoint)))
                return role_clients[key]

        async def set_up(spec: Any) -> None:
            endpoint = endpoint_url or spec.endpoint_url
            try:
                check_endpoint_url(endpoint)
                region = spec.region or configured_region(spec.profile, endpoint)
                if spec.profile not in bases:
                    nonlocal loader
                    bases[spec.profile] = _sharing(AioSession(profile=spec.profile), loader)
                    loader = loader or bases[spec.profile].get_component("data_loader")
                base = bases[spec.profile]
                sts = await role_client(base, spec.profile, region, endpoint) if spec.role_arn else None
                session = await target_session(region=region, profile=spec.profile, role_arn=spec.role_arn,
                                               external_id=spec.external_id, session_name=f"fleetrel-{run_name}",
                                               endpoint_url=endpoint, loader=loader, base=base, sts=sts)
                account = await caller_account(session, region=region, endpoint_url=endpoint)
            except AwsSetupError as exc:
                problems[spec.name] = str(exc)
                return
            except Exception as exc:  # noqa: BLE001 - any failure here is the target's setup
                problems[spec.name] = f"cannot resolve its account ({errors.error_code(exc)}: {errors.error_message(exc)})"
                return
            if spec.account and account != spec.account:
                problems[spec.name] = (f"pins account {spec.account}, but its credentials act in account {account}")
                return
            context = session.create_client("iot", region_name=region, endpoint_url=endpoint,
                                            config=client_config(concurrency), **no_tls(endpoint))
            client = await context.__aenter__()
            stack.push_async_exit(context)
            clients[spec.name] = client
            identities[spec.name] = {k: v for k, v in {
                "endpoint": without_userinfo(str(client.meta.endpoint_url)), "region": region,
                "profile": spec.profile or "", "account": account,
                # the role, so that `undo` can act where the run did from the journal alone (an
                # ARN is no secret; the external id is, and is never recorded)
                "role_arn": getattr(spec, "role_arn", None) or ""}.items() if v}

        async with anyio.create_task_group() as tg:
            for spec in specs:
                tg.start_soon(set_up, spec)
        if problems:
            raise AwsSetupError("; ".join(_problem(name, why) for name, why in sorted(problems.items(), key=_by_name))
                                + ". Nothing was sent to any target.")
        yield {spec.name: clients[spec.name] for spec in specs}, identities


@asynccontextmanager
async def plan_clients(plan: Any, *, endpoint_url: str | None = None, region: str | None = None,
                       profile: str | None = None, targets: set[str] | None = None,
                       concurrency: int = 16) -> AsyncIterator[dict[str | None, Any]]:
    """The clients a command that only reads uses for `plan` ({target name: client}): for a
    plan without `targets:`, {None: a client} for its `target:` under the command line's
    endpoint, region and profile; else one per target in `targets` (or all), its role
    assumed and its account checked (`target_clients`; only the endpoint is overridden)."""
    specs = plan.target_specs()
    if not specs:
        from fleetrel.aws import iot_client, target_settings

        async with iot_client(**target_settings(plan.target, endpoint_url, region, profile),
                              concurrency=concurrency) as client:
            yield {None: client}
        return
    chosen = [spec for spec in specs if not targets or spec.name in targets]
    async with target_clients(chosen, run_name=plan.plan, endpoint_url=endpoint_url,
                              concurrency=concurrency) as (clients, _):
        yield clients


def _by_name(item: tuple[str | None, str]) -> str:
    return item[0] or ""


def _problem(name: str | None, why: str) -> str:
    """One target's set-up problem, named (a single-target plan's target has no name)."""
    if name is None:
        return f"the plan's target {why}" if why.startswith("pins") else why
    return f"target {name} {why}" if why.startswith("pins") else f"target {name}: {why}"
