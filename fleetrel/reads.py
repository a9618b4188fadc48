"""Reading the catalog: a retried read, a paged listing, a bucket per read operation, and
what every version of a plan is now.

    buckets = ReadBuckets(rate=10.0, burst=10)
    answer = await read(client, buckets["get_package"], "get_package", packageName="fw")
    found, missing_packages = await read_versions(client, plan.steps(), rate=10.0, burst=10)

Each read operation has a quota of its own in AWS (GetPackageVersion, ListPackageVersions
and GetPackage are throttled apart), so each gets a bucket of its own at the plan's rate:
a preview that lists versions and reads packages at once is paced per operation, not
squeezed through one bucket. A read that fails for good comes back as a `ReadError`
value, not an exception: a preview says which version it could not read and goes on.

`read_versions` reads no more than a plan's steps need: a step that needs only its
version's status (every DEPRECATE, a PUBLISH that sets no field) is read from
ListPackageVersions, up to 100 versions a call; the others with GetPackageVersion. At 10
calls/s a 10,000-version clean-up is read in seconds, not in the 17 minutes one
GetPackageVersion a version would take. `fleetrel.state` compares what it finds with the
plan.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Iterator

import anyio

from fleetrel import errors
from fleetrel.plan import Step
from fleetrel.ratecontrol import bucket
from fleetrel.service import VERSION_FIELDS

# Reads give up sooner than updates: a preview that cannot read a version says so.
READ_POLICY = errors.RetryPolicy(max_attempts_transient=6, max_attempts_throttled=6)

PAGE = 100  # the model's maxResults maximum for ListPackages and ListPackageVersions: fewest calls


@dataclass
class ReadError:
    """A read that failed for good: `code` is the AWS error code."""

    code: str
    message: str

    @property
    def missing(self) -> bool:
        return self.code == "ResourceNotFoundException"


class ReadBuckets:
    """One bucket per read operation, made when first asked for, all at `rate` and `burst`."""

    def __init__(self, rate: float = 10.0, burst: int = 10) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, Any] = {}

    def __getitem__(self, operation: str) -> Any:
        if operation not in self._buckets:
            self._buckets[operation] = bucket(rate=self.rate, burst=self.burst)
        return self._buckets[operation]


async def read(client: Any, limiter: Any, call: str, policy: errors.RetryPolicy = READ_POLICY,
               **request: Any) -> dict[str, Any] | ReadError:
    """`client.<call>(**request)`, every attempt through `limiter`, retried on throttles and
    server faults as `policy` says."""
    attempt = 0
    while True:
        attempt += 1
        async with limiter:
            try:
                return await getattr(client, call)(**request)
            except Exception as exc:  # classified as the engine does; none is lost
                kind = errors.classify(exc)
                failure = ReadError(errors.error_code(exc), errors.error_message(exc))
        # a conflict cannot happen on a read: only throttles and server faults are worth another try
        delay = policy.retry_delay(kind, attempt) if kind in (errors.Kind.THROTTLED, errors.Kind.TRANSIENT) else None
        if delay is None:
            return failure
        await anyio.sleep(delay)


async def pages(client: Any, limiter: Any, call: str, items: str, *, policy: errors.RetryPolicy = READ_POLICY,
                enough: Callable[[list[dict[str, Any]], int], bool] | None = None,
                **request: Any) -> tuple[list[dict[str, Any]], bool] | ReadError:
    """Every item of a paged listing, `PAGE` a call, and whether the listing was read to
    its end. `enough(this page's items, pages so far)`, asked after every page, may stop
    it early (then: False)."""
    out: list[dict[str, Any]] = []
    token, count = None, 0
    while True:
        answer = await read(client, limiter, call, policy, maxResults=PAGE, **request,
                            **({"nextToken": token} if token else {}))
        if isinstance(answer, ReadError):
            return answer
        count += 1
        page = answer.get(items, [])
        out += page
        token = answer.get("nextToken")
        stop = enough is not None and enough(page, count)
        if not token:
            return out, True
        if stop:
            return out, False


@contextmanager
def first_error() -> Iterator[None]:
    """Around a task group: its first error raised as itself, not inside the ExceptionGroup
    anyio wraps it in, so a caller's `except ExpansionError` still catches it."""
    try:
        yield
    except ExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None


async def bounded(items: Iterable[Any], concurrency: int, work: Callable[[Any], Awaitable[None]]) -> None:
    """`work(item)` for every item, at most `concurrency` at a time, with that many tasks
    (not one per item: 100k steps would be 100k tasks)."""
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            await work(item)

    with first_error():
        async with anyio.create_task_group() as tg:
            for _ in range(max(1, concurrency)):
                tg.start_soon(worker)


# -- what a version and a package are now ------------------------------------------

@dataclass
class VersionState:
    """What GetPackageVersion says about one version (None fields: absent); from
    ListPackageVersions, the status alone (the step compares nothing else)."""

    status: str
    description: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    artifact: dict[str, Any] | None = None
    recipe: str | None = None
    package_default: str | None = None  # GetPackage's, read for a DEPRECATE step (the preview's warning)

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> "VersionState":
        return cls(status=response["status"], description=response.get("description"),
                   attributes=dict(response.get("attributes") or {}), artifact=response.get("artifact"),
                   recipe=response.get("recipe"))


@dataclass
class PackageState:
    """What GetPackage says about a package, as far as a default step cares."""

    default_version: str | None = None


# -- reading a plan's versions -------------------------------------------------------

def status_is_enough(step: Step) -> bool:
    """Whether the version's status is all a step's preview and check compare: an action
    and no field (every DEPRECATE as plans write them; a PUBLISH that sets nothing). Such
    steps are read from ListPackageVersions, up to 100 versions a call."""
    return (step.action is not None and not step.is_default
            and all(getattr(step, name) is None for name in VERSION_FIELDS))


async def read_version(client: Any, limiter: Any, step: Step, *,
                       policy: errors.RetryPolicy = READ_POLICY) -> VersionState | ReadError:
    """GetPackageVersion for one step, retried on throttles and server errors as
    `policy` says; every attempt waits for the bucket."""
    answer = await read(client, limiter, "get_package_version", policy, packageName=step.package,
                        versionName=step.version)
    return answer if isinstance(answer, ReadError) else VersionState.from_response(answer)


async def read_default(client: Any, limiter: Any, step: Step, *,
                       policy: errors.RetryPolicy = READ_POLICY) -> str | None | ReadError:
    """GetPackage's `defaultVersionName` for a default step's package (None: no default)."""
    answer = await read(client, limiter, "get_package", policy, packageName=step.package)
    return answer if isinstance(answer, ReadError) else answer.get("defaultVersionName")


async def list_statuses(client: Any, limiter: Any, package: str, names: set[str], *,
                        policy: errors.RetryPolicy = READ_POLICY
                        ) -> tuple[dict[str, VersionState | ReadError], set[str]]:
    """The status of each version of `package` named in `names`, from ListPackageVersions,
    and the names left to read one by one.

    The listing stops when it has seen every name, or when it has cost as many calls as
    reading the names still unseen one by one would (a plan that touches three versions
    of a package of ten thousand): those come back as left to read, so a listing never
    costs more than twice the GetPackageVersion calls it replaces. A name a complete
    listing lacks is missing; a listing refused leaves every name to read one by one.
    """
    unseen = set(names)

    def enough(page: list[dict[str, Any]], count: int) -> bool:
        unseen.difference_update(item["versionName"] for item in page)
        return not unseen or count >= len(unseen)

    listed = await pages(client, limiter, "list_package_versions", "packageVersionSummaries", policy=policy,
                         enough=enough, packageName=package)
    if isinstance(listed, ReadError):
        if listed.missing:  # no such package: every name is missing
            return {name: listed for name in names}, set()
        # refused (a role allowed GetPackageVersion but not ListPackageVersions, say) or
        # throttled past its retries: the versions are read one by one instead
        return {}, set(names)
    items, complete = listed
    status = {item["versionName"]: item["status"] for item in items if item["versionName"] in names}
    found: dict[str, VersionState | ReadError] = {name: VersionState(status[name]) for name in status}
    rest = names - status.keys()
    if not complete:
        return found, rest
    found.update({name: ReadError("ResourceNotFoundException", f"{package} has no version {name}")
                  for name in rest})
    return found, set()


async def read_versions(
    client: Any,
    steps: Iterable[Step],
    *,
    rate: float = 10.0,
    burst: int = 10,
    concurrency: int = 16,
    policy: errors.RetryPolicy = READ_POLICY,
    warn_default: bool = True,
) -> tuple[dict[str, VersionState | ReadError], set[str]]:
    """The state of every step's version, each read operation at most `rate` calls/s with
    bursts of `burst` through a bucket of its own.

    Steps that need only a status are listed per package (`list_statuses`); the others
    are read with GetPackageVersion. GetPackage once per package with a default step (its
    default now) and, when `warn_default`, with a DEPRECATE step (whether it deprecates
    the default). Returns the state per step key, and the packages found missing (a
    GetPackage for each package that had a version not found, so the preview can say
    which is missing).
    """
    steps = list(steps)
    buckets = ReadBuckets(rate=rate, burst=burst)
    found: dict[str, Any] = {}
    listed: dict[str, dict[str, Step]] = {}  # package -> version -> step, for the status-only steps
    one_by_one: list[Step] = []
    unlisted: list[Step] = []  # status-only steps a listing stopped short of, or was refused
    for step in steps:
        if status_is_enough(step):
            listed.setdefault(step.package, {})[step.version] = step
        elif not step.is_default:
            one_by_one.append(step)
    packages: dict[str, PackageState | ReadError] = {}

    async def get(step: Step) -> None:
        found[step.key] = await read_version(client, buckets["get_package_version"], step, policy=policy)

    async def list_package(name: str) -> None:
        versions = listed[name]
        got, rest = await list_statuses(client, buckets["list_package_versions"], name, set(versions), policy=policy)
        found.update({versions[version].key: state for version, state in got.items()})
        unlisted.extend(versions[version] for version in sorted(rest))

    async def read_package(name: str) -> None:
        answer = await read(client, buckets["get_package"], "get_package", policy, packageName=name)
        packages[name] = answer if isinstance(answer, ReadError) else PackageState(answer.get("defaultVersionName"))

    described = {s.package for s in steps if s.is_default or (warn_default and s.action == "DEPRECATE")}
    # each operation paced by its own bucket, so the three kinds of read go at once
    async with anyio.create_task_group() as tg:
        tg.start_soon(bounded, sorted(listed), concurrency, list_package)
        tg.start_soon(bounded, one_by_one, concurrency, get)
        tg.start_soon(bounded, sorted(described), concurrency, read_package)
    await bounded(unlisted, concurrency, get)
    for step in steps:
        package = packages.get(step.package)
        if step.is_default:
            found[step.key] = package
        elif isinstance(package, PackageState) and isinstance(found[step.key], VersionState):
            found[step.key].package_default = package.default_version
    missing_packages: set[str] = set()
    suspects = sorted({s.package for s in steps if not s.is_default
                       and isinstance(found[s.key], ReadError) and found[s.key].missing})

    async def check_package(name: str) -> None:
        answer = packages.get(name) or await read(client, buckets["get_package"], "get_package", policy,
                                                  packageName=name)  # read once: for a default, or now
        if isinstance(answer, ReadError) and answer.missing:
            missing_packages.add(name)

    await bounded(suspects, concurrency, check_package)
    return found, missing_packages
