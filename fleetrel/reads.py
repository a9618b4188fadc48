"""Reading the catalog: a retried read, a paged listing, and a bucket per read operation.

    buckets = ReadBuckets(rate=10.0, burst=10)
    answer = await read(client, buckets["get_package"], "get_package", packageName="fw")
    listed = await pages(client, buckets["list_package_versions"], "list_package_versions",
                         "packageVersionSummaries", packageName="fw")

Each read operation has a quota of its own in AWS (GetPackageVersion, ListPackageVersions
and GetPackage are throttled apart), so each gets a bucket of its own at the plan's rate:
a preview that lists versions and reads packages at once is paced per operation, not
squeezed through one bucket. A read that fails for good comes back as a `ReadError`
value, not an exception: a preview says which version it could not read and goes on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

import anyio

from fleetrel import errors
from fleetrel.ratecontrol import bucket

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


async def bounded(items: Iterable[Any], concurrency: int, work: Callable[[Any], Awaitable[None]]) -> None:
    """`work(item)` for every item, at most `concurrency` at a time, with that many tasks
    (not one per item: 100k steps would be 100k tasks)."""
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            await work(item)

    async with anyio.create_task_group() as tg:
        for _ in range(max(1, concurrency)):
            tg.start_soon(worker)
