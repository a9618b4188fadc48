"""The WSGI layer in front of moto: throttling, faults, latency, the record, and control.

Package API calls (the ten operations, recognised by method and path) pass through, in
order: added latency, the caller check (expired STS credentials, an account or region
that is not emulated: 403, see `access`), the token bucket of the operation in the
caller's (account, region), the fault dice, then the catalog. Every other path goes to
moto untouched (STS included, which moto_glue wraps), except that an operation moto does
not implement is answered as AWS answers an operation it does not know, 400
UnknownOperationException naming it, not with moto's 500 (which clients retry).

The fleet's calls (`FLEET_ROUTES`: fleet indexing's reads and configuration, the device
shadow data plane) pass the caller check and their own bucket (AWS's rate, see
`settings.FLEET_RATES`; --rate is the catalog's), then go to the fleet ($package shadows,
GetBucketsAggregation, GetStatistics, SearchIndex: never moto's search_index) or to moto
(the indexing configuration, other named shadows); all are counted in the record. A
DeleteThing that moto answers 2xx takes the thing's $package shadow out of the counts.

Paths under /_fleetrel/ are the control endpoints; they are never delayed, throttled or
faulted, and answer only requests whose Host is a loopback name (403 otherwise: DNS rebinding), POSTs only as
application/json (415 otherwise: a web page's cross-origin text/plain POST):

    GET  /_fleetrel/health          {"ok": true}
    GET  /_fleetrel/settings        the current settings
    POST /_fleetrel/configure       {"rate": 10, "operations": {...}, ...} -> new settings
    POST /_fleetrel/seed            {"versions": [{"package", "version", "status", ...}],
                                     "accounts": [...], "regions": [...]}  (default: all
                                     the emulated ones; answers {"created",
                                     "existing"}, counted per account and region)
    GET  /_fleetrel/record          what was received (see `Record.snapshot`)
    POST /_fleetrel/reset-record    start a new record
    POST /_fleetrel/reset           forget all packages, the fleet (things, $package
                                    shadows, indexing configuration), the record and
                                    setting changes
    GET  /_fleetrel/state?package=P&version=V[&region=R&account=A]   one version, or 404
                                    (default: the first emulated account and region)
    POST /_fleetrel/fleet           {"things": N, "seed": S, "accounts": [...],
                                     "regions": [...]}: replace the fleet with N things
                                     over the catalog's versions there now; answers
                                     {"things", "seed", "accounts": {account: {region:
                                     {package: {version: count}}}}}
    GET  /_fleetrel/fleet[?account=A&region=R]   the index: {package: {version: count}}

    app = EmulatorApp(moto_glue.moto_server_app(), EmulatorSettings(rate=10))
"""
from __future__ import annotations

import functools
import json
import random
import re
import threading
import time
import uuid
from http import HTTPStatus
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

from fleetrel.emulator import moto_glue
from fleetrel.emulator.access import Access
from fleetrel.emulator.bucket import TokenBucket
from fleetrel.emulator.catalog import CatalogError, CatalogRules
from fleetrel.emulator.fleet import PACKAGE_SHADOW
from fleetrel.emulator.record import Record
from fleetrel.emulator.settings import EmulatorSettings, SettingsError

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Any path segment: names that break the pattern are still package calls (counted,
# throttled) that the catalog then refuses with a ValidationException, as AWS would.
_NAME = r"([^/]+)"
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(r"^/packages/?$"), "ListPackages"),
    ("PUT", re.compile(rf"^/packages/{_NAME}$"), "CreatePackage"),
    ("GET", re.compile(rf"^/packages/{_NAME}$"), "GetPackage"),
    ("PATCH", re.compile(rf"^/packages/{_NAME}$"), "UpdatePackage"),
    ("DELETE", re.compile(rf"^/packages/{_NAME}$"), "DeletePackage"),
    ("GET", re.compile(rf"^/packages/{_NAME}/versions/?$"), "ListPackageVersions"),
    ("PUT", re.compile(rf"^/packages/{_NAME}/versions/{_NAME}$"), "CreatePackageVersion"),
    ("GET", re.compile(rf"^/packages/{_NAME}/versions/{_NAME}$"), "GetPackageVersion"),
    ("PATCH", re.compile(rf"^/packages/{_NAME}/versions/{_NAME}$"), "UpdatePackageVersion"),
    ("DELETE", re.compile(rf"^/packages/{_NAME}/versions/{_NAME}$"), "DeletePackageVersion"),
)

# The fleet's calls (see `fleet_route`): fleet indexing's reads and configuration (IoT),
# the device shadow data plane (IoT Data Plane, the same paths whatever the shadow).
FLEET_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/indices/buckets/?$"), "GetBucketsAggregation"),
    ("POST", re.compile(r"^/indices/statistics/?$"), "GetStatistics"),
    ("POST", re.compile(r"^/indices/search/?$"), "SearchIndex"),
    ("GET", re.compile(r"^/indexing/config/?$"), "GetIndexingConfiguration"),
    ("POST", re.compile(r"^/indexing/config/?$"), "UpdateIndexingConfiguration"),
    ("POST", re.compile(rf"^/things/{_NAME}/shadow/?$"), "UpdateThingShadow"),
    ("GET", re.compile(rf"^/things/{_NAME}/shadow/?$"), "GetThingShadow"),
    ("DELETE", re.compile(rf"^/things/{_NAME}/shadow/?$"), "DeleteThingShadow"),
    # Not throttled here (moto answers it): a deleted thing's shadow leaves the counts.
    ("DELETE", re.compile(rf"^/things/{_NAME}/?$"), "DeleteThing"),
)
FLEET_PREFIXES = ("/indices/", "/indexing/", "/things/")
# The IoT Data Plane's throttle is 429 (its model; the shadow service's "Too Many
# Requests"), the IoT control plane's 400.
DATA_PLANE = frozenset({"UpdateThingShadow", "GetThingShadow", "DeleteThingShadow"})

# AWS's answer to a call over quota (rest-json): 400, not 429, with the type in a header.
THROTTLE_BODY = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
INTERNAL_BODY = json.dumps({"__type": "InternalServerException",
                            "message": "Internal failure. Please retry your request."})
# AWS's answer to an operation it does not know: 400, a code no SDK retries. (A 5xx, as
# moto gives, is retried: four more calls for an answer that cannot change. A 501 would
# be retried by fleetrel's own classification, which reads every 5xx as transient.)
UNKNOWN_OPERATION = "UnknownOperationException"
_NOT_IMPLEMENTED = re.compile(r"The (\w+) action has not been implemented")


PATH_FIELDS = ("packageName", "versionName")  # the path names of ROUTES, in order


def route(method: str, path: str) -> tuple[str, tuple[str, ...]] | None:
    """(operation, path names) of a package API call, or None for anything else."""
    if not path.startswith("/packages"):
        return None
    for route_method, pattern, operation in ROUTES:
        if route_method == method:
            match = pattern.match(path)
            if match:
                # PATH_INFO is the path's bytes as latin-1 (PEP 3333); names are UTF-8.
                return operation, tuple(name.encode("latin-1").decode("utf-8", "replace")
                                        for name in match.groups())
    return None


def fleet_route(method: str, path: str) -> tuple[str, str | None] | None:
    """(operation, thing name or None) of a fleet call, or None for anything else."""
    if not path.startswith(FLEET_PREFIXES):
        return None
    for route_method, pattern, operation in FLEET_ROUTES:
        if route_method == method:
            match = pattern.match(path)
            if match:
                names = match.groups()
                return operation, (names[0].encode("latin-1").decode("utf-8", "replace")
                                   if names else None)
    return None


def aws_error(start_response: Callable[..., Any], status: str, code: str,
              body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data))),
                            ("x-amzn-ErrorType", code),
                            ("x-amzn-RequestId", str(uuid.uuid4()))])
    return [data]


@functools.lru_cache(maxsize=None)
def _operations(service: str) -> dict[str, str]:
    """moto's action name (`get_package_configuration`) -> the API's (`GetPackageConfiguration`)."""
    import botocore.session
    from moto.core.utils import camelcase_to_underscores

    try:
        model = botocore.session.get_session().get_service_model(service)
    except Exception:  # an unknown service name: no mapping, the fallback below
        return {}
    return {camelcase_to_underscores(name): name for name in model.operation_names}


def operation_name(service: str, action: str) -> str:
    """The operation `action` (moto's snake_case name) names in `service`'s API."""
    return _operations(service).get(action) or "".join(part.capitalize() for part in action.split("_"))


class DroppedConnection(ConnectionAbortedError):
    """Raised by the app to have the server reset the connection without an answer
    (WSGI has no way to say it; `server._Gateway` does it)."""


class EmulatorApp:
    """WSGI app: control endpoints; package calls to the catalogs behind throttling,
    faults and the record; everything else to `moto_app` (all of moto's services)."""

    def __init__(self, moto_app: WSGIApp, settings: EmulatorSettings | None = None) -> None:
        self.moto_app = moto_app
        self.initial = settings if settings is not None else EmulatorSettings()
        self.record = Record()
        self.access = Access(self.initial, default_account=moto_glue.DEFAULT_ACCOUNT_ID)
        self._lock = threading.Lock()
        self._apply(self.initial)

    # -- settings -----------------------------------------------------------------

    def _apply(self, settings: EmulatorSettings, fresh: bool = True) -> None:
        """Swap in new settings. Unless `fresh`, a bucket whose limits did not change keeps
        its level (turning faults on mid-run must not hand out a free burst) and the dice
        keep rolling unless the seed changed."""
        moto_glue.install(CatalogRules(refused_transition=settings.refused_transition,
                                       already_in_state=settings.already_in_state,
                                       idempotency_window_s=settings.idempotency_window_s),
                          self.access)
        with self._lock:
            reseed = fresh or settings.seed != self.settings.seed
            self.settings = settings
            self.access.update(settings)
            if fresh:
                # (account, region, operation) -> bucket, made on first use (`bucket`):
                # AWS keeps a quota per account and region.
                self.buckets: dict[tuple[str, str, str], TokenBucket] = {}
            if reseed:
                self.dice = random.Random(settings.seed)

    def bucket(self, account: str, region: str, operation: str) -> TokenBucket | None:
        """The token bucket of `operation` in (account, region), or None if unthrottled.
        A bucket whose limits the settings changed is replaced by a new, full one."""
        limits = self.settings.limits_for(operation, account, region)
        if limits is None:
            return None
        key = (account, region, operation)
        bucket = self.buckets.get(key)
        if bucket is None or (bucket.rate, bucket.burst) != limits:
            with self._lock:
                bucket = self.buckets.get(key)
                if bucket is None or (bucket.rate, bucket.burst) != limits:
                    bucket = self.buckets[key] = TokenBucket(*limits)
        return bucket

    def configure(self, **changes: Any) -> EmulatorSettings:
        with self._lock:
            current = self.settings
        new = current.updated(**changes)
        self._apply(new, fresh=False)
        return new

    def reset(self) -> None:
        moto_glue.reset_catalogs()
        moto_glue.reset_fleets()
        self.record.clear()
        self._apply(self.initial)

    # -- WSGI -----------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_fleetrel/"):
            return self.control(environ, start_response, path[len("/_fleetrel/"):])
        routed = route(environ.get("REQUEST_METHOD", "GET"), path)
        if routed is None:
            fleet = fleet_route(environ.get("REQUEST_METHOD", "GET"), path)
            if fleet is not None:
                return self.fleet_call(environ, start_response, *fleet)
            try:
                return self.moto_app(environ, start_response)
            except NotImplementedError as error:  # moto knows the operation, implements none of it
                return self.not_emulated(environ, start_response, error)
        return self.package_call(environ, start_response, *routed)

    def not_emulated(self, environ: dict[str, Any], start_response: Callable[..., Any],
                     error: NotImplementedError) -> list[bytes]:
        """400 UnknownOperationException naming the operation (counted in the record)."""
        header = lambda name: environ.get("HTTP_" + name.upper().replace("-", "_"))  # noqa: E731
        account, region, _ = moto_glue.caller_of(header)
        scope = (header("Authorization") or "").split(",")[0].split("/")
        service = scope[3] if len(scope) > 3 else ""
        match = _NOT_IMPLEMENTED.search(str(error))
        operation = operation_name(service, match.group(1)) if match else "this operation"
        self.record.answered(operation, 400, place=(account, region), refused=UNKNOWN_OPERATION)
        message = (f"{operation} is not emulated: fleetrel's emulator serves the Software Package "
                   f"Catalog's calls and what moto implements of {service or 'the service'}")
        return aws_error(start_response, "400 Bad Request", UNKNOWN_OPERATION,
                         json.dumps({"__type": UNKNOWN_OPERATION, "message": message}))

    def package_call(self, environ: dict[str, Any], start_response: Callable[..., Any],
                     operation: str, names: tuple[str, ...]) -> Any:
        settings, dice, record = self.settings, self.dice, self.record
        account, region, access_key = moto_glue.caller_of(
            lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")))
        place = (account, region)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        token = None
        record.connection(environ.get("REMOTE_ADDR", ""), environ.get("REMOTE_PORT", ""))
        if operation == "UpdatePackageVersion":
            token = query.get("clientToken", [None])[0]
            record.token("/".join(names), token, reached_backend=False, place=place)
        delay_ms = settings.latency_ms + (dice.uniform(0, settings.jitter_ms)
                                          if settings.jitter_ms else 0.0)
        if delay_ms > 0:
            # Sleeps in this request's own thread: other requests are not held up.
            time.sleep(delay_ms / 1000.0)
        refused = self.admit(start_response, operation, access_key, place)
        if refused is not None:
            return refused
        roll = dice.random() if (settings.fail_rate or settings.drop_rate) else 1.0
        if roll < settings.fail_rate:
            record.answered(operation, 500, place=place, injected="500")
            return aws_error(start_response, "500 Internal Server Error",
                             "InternalServerException", INTERNAL_BODY)
        drop = roll < settings.fail_rate + settings.drop_rate

        if operation == "UpdatePackageVersion":
            record.token("/".join(names), token, reached_backend=True, place=place)
        # Straight to the catalog, not through moto's Flask app: routing a call there
        # costs ~1 ms of the ~1.3 ms a package call takes, and the route is known here.
        text, headers = moto_glue.catalog_answer(
            operation, account, region, read_body(environ),
            dict(zip(PATH_FIELDS, names)), query)
        status = headers.pop("status")
        if drop:
            # The backend has applied the call; now lose the answer, as a reset
            # connection would. The retry this provokes is what clientTokens are for.
            record.answered(operation, "dropped", place=place, injected="dropped")
            raise DroppedConnection("fleetrel emulator: connection dropped by fault injection")
        record.answered(operation, status, place=place)
        data = text.encode()
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       [*headers.items(), ("Content-Length", str(len(data))),
                        ("x-amzn-RequestId", str(uuid.uuid4()))])
        return [data]

    def admit(self, start_response: Callable[..., Any], operation: str, access_key: str | None,
              place: tuple[str, str], throttle_status: int = 400) -> Any:
        """None when the call may go on; else the answer already started: 403 for a caller
        not emulated or expired (settled before the quota: a refused call spends no token),
        `throttle_status` ThrottlingException when the operation's bucket is empty."""
        account, region = place
        refusal = self.access.refusal(access_key, account, region)
        if refusal is not None:
            self.record.answered(operation, 403, place=place, refused=refusal.code)
            return aws_error(start_response, "403 Forbidden", refusal.code,
                             json.dumps({"__type": refusal.code, "message": refusal.message}))
        bucket = self.bucket(account, region, operation)
        if bucket is not None and not bucket.take():
            self.record.answered(operation, throttle_status, place=place, throttled=True)
            return aws_error(start_response, f"{throttle_status} {HTTPStatus(throttle_status).phrase}",
                             "ThrottlingException", THROTTLE_BODY)
        return None

    def fleet_call(self, environ: dict[str, Any], start_response: Callable[..., Any],
                   operation: str, thing: str | None) -> Any:
        """A fleet call: the caller check and the operation's own bucket (AWS's rate, not
        --rate), then the fleet ($package shadows, the reads) or moto (the indexing
        configuration, other shadows); counted in the record. No faults or latency: those
        are the catalog's."""
        account, region, access_key = moto_glue.caller_of(
            lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")))
        if operation == "DeleteThing":
            return self.moto_call(environ, start_response, on_success=functools.partial(
                moto_glue.forget_thing, account, region, thing or ""))
        place, record = (account, region), self.record
        refused = self.admit(start_response, operation, access_key, place,
                             throttle_status=429 if operation in DATA_PLANE else 400)
        if refused is not None:
            return refused
        shadow = parse_qs(environ.get("QUERY_STRING", "")).get("name", [None])[0]
        if operation in moto_glue.FLEET_READS or (operation in DATA_PLANE
                                                   and shadow == PACKAGE_SHADOW):
            text, headers = moto_glue.fleet_answer(operation, account, region,
                                                   read_body(environ), thing, time.time())
            status = headers.pop("status")
            record.answered(operation, status, place=place)
            data = text.encode()
            start_response(f"{status} {HTTPStatus(status).phrase}",
                           [*headers.items(), ("Content-Length", str(len(data))),
                            ("x-amzn-RequestId", str(uuid.uuid4()))])
            return [data]
        return self.moto_call(environ, start_response, on_answer=functools.partial(
            record.answered, operation, place=place))

    def moto_call(self, environ: dict[str, Any], start_response: Callable[..., Any],
                  on_answer: Callable[[int], None] | None = None,
                  on_success: Callable[[], None] | None = None) -> Any:
        """moto's answer, telling `on_answer` its status (and `on_success` a 2xx)."""
        def starting(status: str, headers: Any, *exc: Any) -> Any:
            code = int(status.split(" ", 1)[0])
            if on_answer is not None:
                on_answer(code)
            if on_success is not None and 200 <= code < 300:
                on_success()
            return start_response(status, headers, *exc)

        try:
            return self.moto_app(environ, starting)
        except NotImplementedError as error:
            return self.not_emulated(environ, start_response, error)

    # -- control --------------------------------------------------------------------

    def control(self, environ: dict[str, Any], start_response: Callable[..., Any],
                action: str) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        refused = control_refusal(environ)
        if refused is not None:
            status, answer = refused
        else:
            try:
                payload = read_json(environ) if method == "POST" else {}
                status, answer = self.control_answer(method, action, payload,
                                                     parse_qs(environ.get("QUERY_STRING", "")))
            except (SettingsError, CatalogError, ValueError, TypeError, KeyError) as error:
                status, answer = 400, {"error": str(error)}
        data = json.dumps(answer).encode()
        start_response(f"{status} {'OK' if status == 200 else 'Error'}",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(data)))])
        return [data]

    def control_answer(self, method: str, action: str, payload: dict[str, Any],
                       query: dict[str, list[str]]) -> tuple[int, Any]:
        if (method, action) == ("GET", "health"):
            return 200, {"ok": True}
        if (method, action) == ("GET", "settings"):
            return 200, self.settings.to_json()
        if (method, action) == ("POST", "configure"):
            return 200, self.configure(**payload).to_json()
        if (method, action) == ("GET", "record"):
            return 200, self.record.snapshot()
        if (method, action) == ("POST", "reset-record"):
            self.record.clear()
            return 200, {"ok": True}
        if (method, action) == ("POST", "reset"):
            self.reset()
            return 200, {"ok": True}
        if (method, action) == ("POST", "seed"):
            return 200, self.seed(payload.get("versions") or [],
                                  accounts=payload.get("accounts"),
                                  regions=payload.get("regions"))
        if (method, action) == ("POST", "fleet"):
            return 200, self.seed_fleet(payload.get("things"), payload.get("seed", 0),
                                        accounts=payload.get("accounts"),
                                        regions=payload.get("regions"))
        if (method, action) == ("GET", "fleet"):
            first = {key: values[0] for key, values in query.items()}
            account, region = self.access.default_place()
            return 200, moto_glue.fleet_for(first.get("account", account),
                                            first.get("region", region)).index()
        if (method, action) == ("GET", "state"):
            first = {key: values[0] for key, values in query.items()}
            account, region = self.access.default_place()
            catalog = moto_glue.catalog_for(first.get("account", account),
                                            first.get("region", region))
            try:
                return 200, catalog.get_package_version(
                    {"packageName": first["package"], "versionName": first["version"]})
            except CatalogError as error:
                return error.status, error.body()
        return 404, {"error": f"no control endpoint {method} /_fleetrel/{action}"}


    def seed(self, versions: list[dict[str, Any]], accounts: list[str] | None = None,
             regions: list[str] | None = None) -> dict[str, int]:
        """Create each {"package", "version", ...} (DRAFT unless "status" says otherwise)
        in every (account, region) of accounts × regions (default: all emulated ones)."""
        places = self.access.places(accounts, regions)  # checked before anything is made
        created = existing = 0
        for account, region in places:
            catalog = moto_glue.catalog_for(account, region)
            for entry in versions:
                fields = {name: entry.get(name) for name in
                          ("status", "attributes", "description", "artifact", "recipe", "created")}
                if catalog.seed(entry["package"], entry["version"], **fields):
                    created += 1
                else:
                    existing += 1
        return {"created": created, "existing": existing}


    def seed_fleet(self, things: Any, seed: Any = 0, accounts: list[str] | None = None,
                   regions: list[str] | None = None) -> dict[str, Any]:
        """Seed `things` things in every (account, region) of accounts × regions (default:
        all emulated ones) over the catalog versions there now (see `fleetseed`):
        {"things": N, "seed": S, "accounts": {account: {region: {package: {version: n}}}}}."""
        if not isinstance(things, int) or isinstance(things, bool) or things < 0:
            raise ValueError(f"fleet: things must be a whole number >= 0, not {things!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"fleet: seed must be a whole number, not {seed!r}")
        places = self.access.places(accounts, regions)
        counts: dict[str, dict[str, Any]] = {}
        for account, region in places:
            counts.setdefault(account, {})[region] = moto_glue.seed_fleet(
                account, region, things, seed, time.time())
        return {"things": things, "seed": seed, "accounts": counts}


# Host names a control request may carry: a browser on this machine reaches the emulator
# under another name only through DNS rebinding (evil.example resolving to 127.0.0.1).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
_HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:\[\]]*)(?::\d*)?$")


def control_refusal(environ: dict[str, Any]) -> tuple[int, dict[str, str]] | None:
    """(status, body) refusing a control request a web page could have made, or None.

    Control endpoints change what the emulator does (fail_rate 1.0, forget every package)
    and show what it received. A page in the developer's browser can send a cross-origin
    POST without a preflight only as text/plain, form or multipart: requiring JSON rules
    those out. It can reach 127.0.0.1 under its own name by DNS rebinding: the Host header
    still carries that name, so only loopback names are accepted.
    """
    match = _HOST_PORT.match(environ.get("HTTP_HOST", ""))
    host = match.group(1).lower() if match else ""
    if host not in LOOPBACK_HOSTS:
        return 403, {"error": "control endpoints answer only requests addressed to a "
                              "loopback host (127.0.0.1, localhost, [::1]), not "
                              f"{environ.get('HTTP_HOST', '(no Host header)')!r}"}
    if environ.get("REQUEST_METHOD") == "POST":
        media_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            return 415, {"error": "control POSTs must be sent as Content-Type: "
                                  f"application/json, not {media_type or '(none)'!r}"}
    return None


def read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def read_json(environ: dict[str, Any]) -> dict[str, Any]:
    raw = read_body(environ)
    value = json.loads(raw) if raw.strip() else {}
    if not isinstance(value, dict):
        raise ValueError("the request body must be a JSON object")
    return value
