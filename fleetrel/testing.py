"""Test seams for code that drives fleetrel: a scripted fake IoT client and virtual time.

    from fleetrel.testing import DROP, THROTTLE, FakeIoT, run_virtual

    iot = FakeIoT({"fw/1.0": "DRAFT", "fw/1.1": "PUBLISHED"})
    iot.script("fw/1.0", THROTTLE, THROTTLE)   # its first two calls are throttled, then served
    iot.script("fw/1.1", DROP)                 # applied, then the connection drops
    result = run_virtual(lambda: fleetrel.run(plan, fleetrel.Where(journal_path=path), client=iot))
    iot.calls["fw/1.0"], iot.tokens["fw/1.0"]  # 3 calls, one clientToken

`FakeIoT` answers the calls the engine and the state reader make (UpdatePackageVersion,
GetPackageVersion, UpdatePackage, GetPackage) by the service's rules — the lifecycle, DRAFT-only fields,
clientToken idempotency — and raises exactly what aiobotocore raises (`ClientError` with
the service's code and HTTP status, `ConnectionClosedError` for a dropped connection), so
`fleetrel.errors.classify` sees what it sees in production. `run_virtual` runs a coroutine
on an event loop whose clock jumps to the next timer, so backoffs, the rate controller's
bucket and fake latency cost no real time: an engine test takes milliseconds.

The emulator (`fleetrel.emulator`, over real HTTP) stays the integration layer; this is
for fast behaviour tests of retries, aborts, waves, resume and interruption.
"""
from __future__ import annotations

import asyncio
import selectors
from collections import Counter, defaultdict
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, TypeVar

import anyio
from botocore.exceptions import ClientError, ConnectionClosedError

from fleetrel.service import ALLOWED_TRANSITIONS, DRAFT_ONLY, TARGET_STATUS

T = TypeVar("T")

# Scripted answers: each is used for one call of the step it was scripted for, in order.
THROTTLE = "throttle"  # 400 ThrottlingException, nothing applied
SERVER_ERROR = "server-error"  # 500 InternalServerException, nothing applied
DROP = "drop"  # the call is applied, then the connection is lost before the answer
HANG = "hang"  # the call never answers (until it is cancelled)
EXPIRED = "expired"  # 403 ExpiredTokenException: the caller's credentials ran out

_ERRORS = {
    THROTTLE: ("ThrottlingException", 400, "Rate exceeded"),
    SERVER_ERROR: ("InternalServerException", 500, "Internal failure"),
    EXPIRED: ("ExpiredTokenException", 403, "The security token included in the request is expired"),
}


def service_error(code: str, status: int, message: str, operation: str = "UpdatePackageVersion") -> ClientError:
    """The exception aiobotocore raises for an error answer of the service."""
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class FakeIoT:
    """An in-memory IoT client with the package-version lifecycle and scripted faults.

    :param versions: `{"package/version": "DRAFT" | "PUBLISHED" | "DEPRECATED"}`; others do not exist.
    :param latency: seconds each call takes (virtual seconds under `run_virtual`).
    :param defaults: `{"package": "version"}`: the packages' default versions.
    :param account: the AWS account the fake stands for (`self.account`), so that a test
        with several fakes can tell one (account, region) from another.
    :param devices: `{"package/version": N}`: how many things report each version in the
        `$package` shadow (GetBucketsAggregation, as fleet indexing counts them); None: fleet
        indexing is off (the aggregation is refused, as AWS refuses it).

    UpdatePackage calls are counted and scripted under the key `package#default`.
    `log` holds every update call in the order received: `{"key", "token", "request",
    "applied"}`, `applied` true once the call changed the catalog.
    """

    def __init__(self, versions: dict[str, str] | None = None, *, latency: float = 0.0,
                 endpoint_url: str = "https://iot.fake.invalid", region: str = "us-east-1",
                 defaults: dict[str, str] | None = None, account: str | None = None,
                 devices: dict[str, int] | None = None) -> None:
        self.latency = latency
        self.devices = None if devices is None else dict(devices)
        self.aggregations: Counter[str] = Counter()  # GetBucketsAggregation calls per package
        self.account = account
        # what aiobotocore clients expose, and fleetrel records as a run's target
        self.meta = SimpleNamespace(endpoint_url=endpoint_url, region_name=region)
        self.versions: dict[str, dict[str, Any]] = {}
        for key, status in (versions or {}).items():
            self.versions[key] = {"status": status, "attributes": {}}
        self.calls: Counter[str] = Counter()  # UpdatePackageVersion calls received per step key
        self.applied: Counter[str] = Counter()  # ... of which changed the version
        self.tokens: defaultdict[str, set[str]] = defaultdict(set)  # clientTokens seen per step key
        self.log: list[dict[str, Any]] = []  # every update call: key, token, request, applied
        self.reads = 0
        self.defaults: dict[str, str] = dict(defaults or {})  # package -> default version
        self._script: defaultdict[str, list[str | Callable[[], Awaitable[None]]]] = defaultdict(list)
        self._answers: dict[str, tuple[str, dict[str, Any]]] = {}  # token -> (key, request)

    def script(self, key: str, *answers: str | Callable[[], Awaitable[None]]) -> "FakeIoT":
        """Queue answers for the next calls to `key`; an async callable is awaited first
        (to hold a call until a test lets it go), then the call is served."""
        self._script[key].extend(answers)
        return self

    def status(self, key: str) -> str | None:
        version = self.versions.get(key)
        return version["status"] if version else None

    async def update_package_version(self, *, packageName: str, versionName: str, clientToken: str | None = None,
                                     **fields: Any) -> dict[str, Any]:
        return await self._call(f"{packageName}/{versionName}", clientToken, fields, self._apply)

    async def update_package(self, *, packageName: str, clientToken: str | None = None,
                             **fields: Any) -> dict[str, Any]:
        return await self._call(f"{packageName}#default", clientToken, fields,
                                lambda key, fields: self._apply_default(packageName, fields))

    async def _call(self, key: str, clientToken: str | None, fields: dict[str, Any],
                    apply: Callable[[str, dict[str, Any]], None]) -> dict[str, Any]:
        self.calls[key] += 1
        entry = {"key": key, "token": clientToken, "request": dict(fields), "applied": False}
        self.log.append(entry)
        if clientToken:
            self.tokens[key].add(clientToken)
        if self.latency:
            await anyio.sleep(self.latency)
        answer = self._script[key].pop(0) if self._script[key] else None
        if callable(answer):
            await answer()
        elif answer == HANG:
            await anyio.sleep_forever()
        elif answer in _ERRORS:
            raise service_error(*_ERRORS[answer])
        if clientToken and clientToken in self._answers:
            if self._answers[clientToken] != (key, fields):
                raise service_error("ConflictException", 409, "clientToken reused with a different request")
            return {}  # the same call again: the first answer
        apply(key, fields)
        entry["applied"] = True
        if clientToken:
            self._answers[clientToken] = (key, fields)
        if answer == DROP:
            raise ConnectionClosedError(endpoint_url="https://iot.fake.amazonaws.com")
        return {}

    def _apply(self, key: str, fields: dict[str, Any]) -> None:
        version = self.versions.get(key)
        if version is None:
            raise service_error("ResourceNotFoundException", 404, f"version {key} does not exist")
        now, action = version["status"], fields.get("action")
        after = TARGET_STATUS.get(action or "", now)
        if action and after == now:
            raise service_error("ConflictException", 409, f"version {key} is already {now}")
        if action and (now, after) not in ALLOWED_TRANSITIONS:
            raise service_error("ValidationException", 400, f"{now} cannot become {after}")
        if now != "DRAFT" and any(fields.get(name) is not None for name in DRAFT_ONLY):
            raise service_error("ValidationException", 400, f"{', '.join(DRAFT_ONLY)} can change only in DRAFT")
        version.update({k: v for k, v in fields.items() if k != "action" and v is not None}, status=after)
        self.applied[key] += 1

    def _apply_default(self, package: str, fields: dict[str, Any]) -> None:
        """UpdatePackage's default-version rules, as the emulator applies them (see
        fleetrel.emulator.catalog): both fields at once is refused; a DRAFT cannot be the
        default; a PUBLISHED or DEPRECATED version can."""
        name, unset = fields.get("defaultVersionName"), bool(fields.get("unsetDefaultVersion"))
        if name is not None and unset:
            raise service_error("ValidationException", 400, "defaultVersionName and unsetDefaultVersion "
                                "cannot both be set", "UpdatePackage")
        if not any(key.split("/", 1)[0] == package for key in self.versions):
            raise service_error("ResourceNotFoundException", 404, "no such package", "UpdatePackage")
        if name is not None:
            version = self.versions.get(f"{package}/{name}")
            if version is None:
                raise service_error("ResourceNotFoundException", 404, f"no version {package}/{name}", "UpdatePackage")
            if version["status"] == "DRAFT":
                raise service_error("ValidationException", 400, "a DRAFT version cannot be the default", "UpdatePackage")
            self.defaults[package] = name
        elif unset:
            self.defaults.pop(package, None)
        self.applied[f"{package}#default"] += 1

    async def get_package_version(self, *, packageName: str, versionName: str) -> dict[str, Any]:
        self.reads += 1
        version = self.versions.get(f"{packageName}/{versionName}")
        if version is None:
            raise service_error("ResourceNotFoundException", 404, "no such version", "GetPackageVersion")
        return {"packageName": packageName, "versionName": versionName, **version}

    async def list_package_versions(self, *, packageName: str, maxResults: int = 100, nextToken: str | None = None,
                                    status: str | None = None) -> dict[str, Any]:
        """A page of the package's versions, sorted by name; the token is the last name
        returned (as the emulator pages). A package with no version lists nothing."""
        self.reads += 1
        names = sorted(key.split("/", 1)[1] for key in self.versions if key.split("/", 1)[0] == packageName)
        names = [n for n in names if (nextToken is None or n > nextToken)
                 and (status is None or self.versions[f"{packageName}/{n}"]["status"] == status)]
        page = names[:maxResults]
        out: dict[str, Any] = {"packageVersionSummaries": [
            {"packageName": packageName, "versionName": n, "status": self.versions[f"{packageName}/{n}"]["status"]}
            for n in page]}
        if len(names) > maxResults:
            out["nextToken"] = page[-1]
        return out

    async def get_buckets_aggregation(self, *, queryString: str, aggregationField: str,
                                      bucketsAggregationType: dict[str, Any], indexName: str = "AWS_Things",
                                      **_: Any) -> dict[str, Any]:
        """Things per version of the package `aggregationField` names
        (`shadow.name.$package.reported.<package>.version`), most first."""
        self.reads += 1
        package = aggregationField.removeprefix("shadow.name.$package.reported.").removesuffix(".version")
        self.aggregations[package] += 1
        if self.devices is None:
            raise service_error("ResourceNotFoundException", 404, "Index AWS_Things does not exist",
                                "GetBucketsAggregation")
        counts = {key.split("/", 1)[1]: n for key, n in self.devices.items()
                  if key.split("/", 1)[0] == package and n > 0}
        most = int(bucketsAggregationType.get("termsAggregation", {}).get("maxBuckets", 10))
        buckets = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:most]
        return {"totalCount": sum(self.devices.values()),
                "buckets": [{"keyValue": name, "count": n} for name, n in buckets]}

    async def get_package(self, *, packageName: str) -> dict[str, Any]:
        self.reads += 1
        if not any(key.split("/", 1)[0] == packageName for key in self.versions):
            raise service_error("ResourceNotFoundException", 404, "no such package", "GetPackage")
        default = self.defaults.get(packageName)
        return {"packageName": packageName, **({"defaultVersionName": default} if default else {})}


class FakeClock:
    """A clock that moves only when the test says so (for pure pieces that take `clock=`)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of waiting.

    asyncio asks the selector to block for `timeout` seconds until the next timer is
    due; here the selector only polls and the clock moves forward by `timeout`.
    Everything that reads `loop.time()` (asyncio.sleep, aiolimiter, anyio.current_time)
    sees consistent virtual time.
    """

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        self._virtual_now = 0.0
        poll = self._selector.select

        def select(timeout: float | None = None) -> list[Any]:
            events = poll(0)
            if events or self._ready:
                return events
            if timeout is None:
                raise RuntimeError("virtual-time loop would wait forever: deadlock")
            # A real loop iteration takes a few microseconds. Without that, a timer that
            # re-arms itself a rounding error from "now" (aiolimiter's waker does) would spin.
            self._virtual_now += max(timeout, 1e-6)
            return events

        self._selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self._virtual_now


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run `main()` to completion on a fresh `VirtualTimeLoop`."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()
