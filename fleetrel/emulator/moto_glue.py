"""Everything that touches moto's internals, in one file, so a moto upgrade edits only this.

moto 5.2.5 routes IoT REST calls by the botocore model (which already describes the ten
package operations) to `IoTResponse.<snake_case_operation>`; it has no such methods.
`install()` adds them, each one a thin copy between the HTTP request and the
`PackageCatalog` of the request's account and region, so `moto.mock_aws` in-process sees
the operations. The emulator's server skips moto's routing for them (it costs more than
the call): the middleware routes them and calls `catalog_answer` with the account and
region `caller_of` reads from the request, by moto's own rules.

The fleet lives beside: things are moto's (seeded ones too, so DescribeThing, ListThings
and DeleteThing see them), each place's `$package` shadows and their counts are a `Fleet`
kept on moto's IoT backend (`fleet_for`), and fleet indexing's reads run over both
(`fleet_answer`), reading the indexing configuration moto keeps.

`install()` also wraps moto's STS (see `fleetrel.emulator.access`): AssumeRole and
GetSessionToken sessions last at most `session_seconds`, every key they issue is
reported with its expiry, AssumeRole into an account that is not emulated is refused,
and GetSessionToken issues a key of its own per session (moto's is one fixed example key,
so one session's expiry would be every session's).

    from fleetrel.emulator import moto_glue
    moto_glue.install()
    with moto.mock_aws():
        boto3.client("iot", region_name="us-east-1").create_package(packageName="fw")
"""
from __future__ import annotations

import datetime
import functools
import json
import os
import re
import threading
from typing import Any, Callable, NamedTuple

import moto.core.responses as moto_responses

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.exceptions import AccessDeniedError
from moto.core.responses import ActionResult, BaseResponse
from moto.iam.models import get_account_id_from, iam_backends
from moto.iot.models import FakeIndexingConfiguration, FakeThing, IoTBackend, iot_backends
from moto.iot.responses import IoTResponse
from moto.sts.models import STSBackend
from moto.sts.responses import TokenResponse
from moto.sts.utils import random_session_token
from moto.utilities.utils import ARN_PARTITION_REGEX, get_partition

from fleetrel.emulator.access import Access
from fleetrel.emulator.catalog import CatalogError, CatalogRules, PackageCatalog
from fleetrel.emulator.fleet import PACKAGE_SHADOW, Fleet
from fleetrel.emulator.fleetindex import IndexReads, version_field
from fleetrel.emulator.fleetseed import fleet_plan

# Which request fields each operation reads from the query string (the model's
# "location": "querystring"); path fields come from moto's router, the rest from the body.
QUERY_FIELDS = {
    "CreatePackage": ("clientToken",),
    "UpdatePackage": ("clientToken",),
    "DeletePackage": ("clientToken",),
    "ListPackages": ("maxResults", "nextToken"),
    "CreatePackageVersion": ("clientToken",),
    "UpdatePackageVersion": ("clientToken",),
    "DeletePackageVersion": ("clientToken",),
    "ListPackageVersions": ("maxResults", "nextToken", "status"),
    "GetPackage": (),
    "GetPackageVersion": (),
}
INTEGER_FIELDS = ("maxResults",)
TAKES_TOKEN = {name for name, fields in QUERY_FIELDS.items() if "clientToken" in fields}

_catalogs_lock = threading.Lock()
_rules = CatalogRules()
# What the STS wrappers consult and report to; the middleware installs its own.
_access = Access(default_account=DEFAULT_ACCOUNT_ID)
_moto_assume_role = STSBackend.assume_role
# moto's own rule for the account of a role ARN (STSBackend._create_access_key).
_ROLE_ACCOUNT = re.compile(ARN_PARTITION_REGEX + r":iam::([0-9]+).+")


def _kept_on_backend(account: str, region: str, name: str, make: Callable[[], Any]) -> Any:
    """An object kept on moto's IoT backend of (account, region) under `name`, made on first
    use. Stored on the backend object so moto's own reset (which rebuilds backends) clears it."""
    backend: IoTBackend = iot_backends[account][region]
    kept = backend.__dict__.get(name)
    if kept is None:
        with _catalogs_lock:
            kept = backend.__dict__.get(name)
            if kept is None:
                kept = backend.__dict__[name] = make()
    return kept


def catalog_for(account: str = DEFAULT_ACCOUNT_ID, region: str = "us-east-1") -> PackageCatalog:
    """The catalog kept on moto's IoT backend for (account, region), created on first use."""
    return _kept_on_backend(account, region, "_fleetrel_catalog",
                            lambda: PackageCatalog(region=region, account=account, rules=_rules))


def reset_catalogs() -> None:
    """Forget every package in every account and region (moto's other IoT state stays)."""
    with _catalogs_lock:
        for account_backends in list(iot_backends.values()):
            for backend in list(account_backends.values()):
                backend.__dict__.pop("_fleetrel_catalog", None)


def rules() -> CatalogRules:
    """The undocumented-behaviour settings shared by every catalog (mutable in place)."""
    return _rules


def error_answer(error: CatalogError) -> tuple[str, dict[str, Any]]:
    # The rest-json error shape: botocore reads the code from x-amzn-ErrorType first.
    return json.dumps(error.body()), {"status": error.status, "Content-Type": "application/json",
                                      "x-amzn-ErrorType": error.code}


def catalog_answer(operation: str, account: str, region: str, body: bytes | str,
                   path_fields: dict[str, str],
                   query: dict[str, list[str]]) -> tuple[str, dict[str, Any]]:
    """Run one package operation on (account, region)'s catalog: (JSON body, headers with
    "status"), the shape moto's responses return."""
    try:
        request: dict[str, Any] = json.loads(body) if body else {}
    except ValueError:
        return error_answer(CatalogError("ValidationException", 400,
                                         "The request body is not valid JSON"))
    if not isinstance(request, dict):
        return error_answer(CatalogError("ValidationException", 400,
                                         "The request body must be a JSON object"))
    request.update(path_fields)
    client_token = None
    for name in QUERY_FIELDS[operation]:
        values = query.get(name)
        if not values:
            continue
        if name == "clientToken":
            client_token = values[0]
        elif name in INTEGER_FIELDS:
            try:
                request[name] = int(values[0])
            except ValueError:
                return error_answer(CatalogError("ValidationException", 400,
                                                 f"{name} must be an integer"))
        else:
            request[name] = values[0]
    catalog = catalog_for(account, region)
    try:
        call = getattr(catalog, snake(operation))
        if operation in TAKES_TOKEN:
            answer = call(request, client_token=client_token)
        else:
            answer = call(request)
    except CatalogError as error:
        return error_answer(error)
    return json.dumps(answer), {"status": 200, "Content-Type": "application/json"}


# -- the fleet: things (moto's registry), $package shadows and fleet indexing's reads -------

# Fleet operations moto answers itself (the middleware throttles and records them): the
# indexing configuration is moto's, and so are shadows other than $package.
FLEET_READS = {"GetBucketsAggregation": "buckets", "GetStatistics": "statistics",
               "SearchIndex": "search"}
SHADOW_CALLS = {"UpdateThingShadow": "update", "GetThingShadow": "get",
                "DeleteThingShadow": "delete"}


def fleet_for(account: str = DEFAULT_ACCOUNT_ID, region: str = "us-east-1") -> Fleet:
    """The `$package` shadows of (account, region), kept on moto's IoT backend beside
    its things (moto's own reset rebuilds both)."""
    return _kept_on_backend(account, region, "_fleetrel_fleet", Fleet)


class RegistryThings:
    """moto's things of one (account, region), as fleet indexing reads them. Looked up
    by ARN (moto's key): moto's describe_thing scans every thing."""

    def __init__(self, account: str, region: str) -> None:
        self.backend: IoTBackend = iot_backends[account][region]
        self.prefix = f"arn:{get_partition(region)}:iot:{region}:{account}:thing/"

    def count(self) -> int:
        return len(self.backend.things)

    def names(self) -> list[str]:
        return [thing.thing_name for thing in list(self.backend.things.values())]

    def get(self, name: str) -> FakeThing | None:
        return self.backend.things.get(self.prefix + name)

    def exists(self, name: str) -> bool:
        return self.prefix + name in self.backend.things

    def version(self, name: str) -> int:
        thing = self.get(name)
        return thing.version if thing is not None else 0

    def document(self, name: str) -> dict[str, Any]:
        thing = self.get(name)
        if thing is None:
            return {"thingName": name}
        out: dict[str, Any] = {"thingName": thing.thing_name, "thingId": thing.thing_id,
                               "attributes": dict(thing.attributes or {})}
        if thing.thing_type is not None:
            out["thingTypeName"] = thing.thing_type.thing_type_name
        return out


def thing_indexing(account: str, region: str) -> dict[str, Any]:
    """GetIndexingConfiguration's thingIndexingConfiguration, as moto keeps it."""
    backend: IoTBackend = iot_backends[account][region]
    return backend.indexing_configuration.to_dict()["thingIndexingConfiguration"]


def index_packages(account: str, region: str, packages: list[str]) -> None:
    """Turn on what the console's "Add device software packages and versions" turns on
    (REGISTRY_AND_SHADOW, named shadows ON, "$package" in the filter), and a String
    custom field per package, which GetBucketsAggregation on its version needs."""
    configuration = thing_indexing(account, region)
    fields = [dict(item) for item in configuration.get("customFields") or []]
    known = {item.get("name") for item in fields}
    fields += [{"name": version_field(name), "type": "String"}
               for name in packages if version_field(name) not in known]
    shadow_filter = dict(configuration.get("filter") or {})
    names = list(shadow_filter.get("namedShadowNames") or [])
    if PACKAGE_SHADOW not in names:
        names.append(PACKAGE_SHADOW)
    shadow_filter["namedShadowNames"] = names
    iot_backends[account][region].update_indexing_configuration(
        {"thingIndexingMode": "REGISTRY_AND_SHADOW", "namedShadowIndexingMode": "ON",
         "customFields": fields, "filter": shadow_filter}, {})


def fleet_answer(operation: str, account: str, region: str, body: bytes | str,
                 thing: str | None, now: float) -> tuple[str, dict[str, Any]]:
    """Run a $package shadow call or a fleet-indexing read on (account, region): (JSON
    body, headers with "status"), as `catalog_answer`."""
    fleet = fleet_for(account, region)
    try:
        if operation in SHADOW_CALLS:
            registry = RegistryThings(account, region)
            if thing is None or not registry.exists(thing):
                raise CatalogError("ResourceNotFoundException", 404, "Thing not found")
            if operation == "UpdateThingShadow":
                answer = fleet.update(thing, body or b"", now)
            elif operation == "GetThingShadow":
                answer = fleet.get(thing)
            else:
                answer = fleet.delete(thing, now)
        else:
            try:
                request = json.loads(body) if body else {}
            except ValueError:
                raise CatalogError("InvalidRequestException", 400,
                                   "The request body is not valid JSON") from None
            if not isinstance(request, dict):
                raise CatalogError("InvalidRequestException", 400,
                                   "The request body must be a JSON object")
            reads = IndexReads(fleet, RegistryThings(account, region),
                               thing_indexing(account, region))
            answer = getattr(reads, FLEET_READS[operation])(request)
    except CatalogError as error:
        return error_answer(error)
    return json.dumps(answer), {"status": 200, "Content-Type": "application/json"}


def forget_thing(account: str, region: str, name: str) -> None:
    """A thing was deleted (DeleteThing answered 2xx): its $package shadow goes too."""
    fleet_for(account, region).forget(name)


def catalog_versions(account: str, region: str) -> dict[str, list[str]]:
    """{package: [version, ...]} existing now in (account, region)'s catalog."""
    catalog = catalog_for(account, region)
    with catalog._lock:
        return {name: list(package.versions) for name, package in catalog.packages.items()}


def seed_fleet(account: str, region: str, things: int, seed: int,
               now: float) -> dict[str, dict[str, int]]:
    """Replace (account, region)'s fleet with `things` new things (device-000000, ...)
    running the catalog's versions (see `fleetseed`), index $package, and return the
    index: {package: {version: things}}. Things seeded before are deleted, and every
    $package shadow there is forgotten: the counts are the seed's alone."""
    versions = catalog_versions(account, region)
    plan = fleet_plan(things, versions, seed, (account, region))
    backend: IoTBackend = iot_backends[account][region]
    fleet = fleet_for(account, region)
    registry = RegistryThings(account, region)
    with _catalogs_lock:
        for name in backend.__dict__.pop("_fleetrel_seeded", []):
            backend.things.pop(registry.prefix + name, None)
        fleet.clear()
        for name, _ in plan:
            # moto's create_thing, without its per-call scan of the thing types.
            thing = FakeThing(name, None, {}, account, region)
            backend.things[thing.arn] = thing
        backend.__dict__["_fleetrel_seeded"] = [name for name, _ in plan]
    fleet.report(plan, now)
    index_packages(account, region, sorted(versions))
    return fleet.index()


def reset_fleets() -> None:
    """Forget every fleet: the things, every $package shadow and the indexing
    configuration, in every account and region (a fresh account's indexing is OFF)."""
    with _catalogs_lock:
        for account_backends in list(iot_backends.values()):
            for backend in list(account_backends.values()):
                backend.__dict__.pop("_fleetrel_fleet", None)
                backend.__dict__.pop("_fleetrel_seeded", None)
                backend.things.clear()
                backend.indexing_configuration = FakeIndexingConfiguration(
                    backend.region_name, backend.account_id)


class Caller(NamedTuple):
    account: str
    region: str
    access_key: str | None  # None: the request was not signed


def caller_of(headers: Callable[[str], str | None]) -> Caller:
    """Account, region and access key of a request, decided as moto decides them for its
    own services (`BaseResponse.get_current_account` and `get_region_from_url`):
    MOTO_ACCOUNT_ID, the x-moto-account-id header, else the account whose IAM/STS access
    key signed it (moto's default account for any key it does not know); the region from
    the SigV4 scope. `headers(name)` returns a request header or None."""
    authorization = headers("Authorization") or ""
    match = BaseResponse.access_key_regex.search(authorization)
    access_key = match.group(1) if match else None
    if "MOTO_ACCOUNT_ID" in os.environ:
        account = os.environ["MOTO_ACCOUNT_ID"]
    elif headers("x-moto-account-id"):
        account = headers("x-moto-account-id") or DEFAULT_ACCOUNT_ID
    else:
        account = get_account_id_from(access_key or "AKIAEXAMPLE")
    agent = BaseResponse.region_from_useragent_regex.search(headers("User-Agent") or "")
    if agent:
        region = agent.group(1)
    elif "AWS4" in authorization:
        region = authorization.split(",")[0].split("/")[2]
    else:
        region = BaseResponse.default_region
    return Caller(account, region, access_key)


# -- STS: session length, expiry, emulated accounts -------------------------------------

def _epoch(expiration: datetime.datetime) -> float:
    # moto keeps STS expirations as naive UTC datetimes (moto.core.utils.utcnow).
    return expiration.replace(tzinfo=datetime.timezone.utc).timestamp()


def _assume_role(self: STSBackend, **kwargs: Any) -> Any:
    """moto's AssumeRole (also behind AssumeRoleWithWebIdentity), held to the emulated
    accounts and the session length, reporting the key it issues and its expiry."""
    role_arn = kwargs.get("role_arn") or ""
    match = _ROLE_ACCOUNT.search(role_arn)
    role_account = match.group(2) if match else self.account_id
    if not _access.admits_role_account(role_account):
        # AWS's answer when a role's trust policy does not open it to the caller.
        raise AccessDeniedError(user_arn=f"arn:aws:iam::{self.account_id}:user/moto",
                                action=f"sts:AssumeRole on resource: {role_arn} "
                                       f"(fleetrel emulator: account {role_account} is "
                                       f"not one of the emulated accounts)")
    kwargs["duration"] = _access.session_length(kwargs["duration"])
    role = _moto_assume_role(self, **kwargs)
    _access.issued(role.access_key_id, _epoch(role.expiration))
    return role


def _get_session_token(self: TokenResponse) -> ActionResult:
    """GetSessionToken with a key of its own per session, in the caller's account (moto
    answers every session with the same example key)."""
    duration = _access.session_length(self._get_int_param("DurationSeconds", 43200))
    token = self.backend.get_session_token(duration=duration)
    key = iam_backends[self.current_account][self.partition].create_temp_access_key()
    _access.issued(key.access_key_id, _epoch(token.expiration))
    return ActionResult({"Credentials": {
        "AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key,
        "SessionToken": random_session_token(), "Expiration": token.expiration}})


def _handler(operation: str, method_name: str) -> Callable[[IoTResponse], Any]:
    def handle(self: IoTResponse) -> tuple[str, dict[str, Any]]:
        return catalog_answer(operation, self.current_account, self.region, self.body,
                              self.uri_match or {}, self.querystring)

    handle.__name__ = method_name
    return handle


def snake(operation: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in operation).lstrip("_")


def install(rules: CatalogRules | None = None, access: Access | None = None) -> None:
    """Add the package operations to moto's IoT responses and wrap its STS (idempotent).

    `rules` replaces the shared undocumented-behaviour settings if given; `access` the
    object STS consults and reports the keys it issues to.
    """
    global _rules, _access
    if access is not None:
        _access = access
    if rules is not None:
        _rules = rules
        # Catalogs already created keep a reference to the old object: point them over.
        for account_backends in list(iot_backends.values()):
            for backend in list(account_backends.values()):
                catalog = backend.__dict__.get("_fleetrel_catalog")
                if catalog is not None:
                    catalog.rules = rules
    for operation in QUERY_FIELDS:
        method_name = snake(operation)
        if not getattr(IoTResponse, method_name, None) or \
                not getattr(getattr(IoTResponse, method_name), "_fleetrel", False):
            handle = _handler(operation, method_name)
            handle._fleetrel = True  # type: ignore[attr-defined]
            setattr(IoTResponse, method_name, handle)
    STSBackend.assume_role = _assume_role  # type: ignore[method-assign]
    TokenResponse.get_session_token = _get_session_token  # type: ignore[method-assign]
    _cache_method_names()


def _cache_method_names() -> None:
    """moto lists a response class's methods (inspect.getmembers) on every call: 0.6 ms of
    the ~1 ms a package call costs. Classes do not change after install, so cache it."""
    current = moto_responses.method_names_from_class
    if not hasattr(current, "cache_clear"):
        moto_responses.method_names_from_class = functools.lru_cache(maxsize=None)(current)
    else:
        current.cache_clear()  # install() may just have added methods


def moto_server_app() -> Any:
    """moto's WSGI application for every service (the one `moto_server` runs)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return DomainDispatcherApplication(create_backend_app)
