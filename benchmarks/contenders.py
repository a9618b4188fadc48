"""The contenders: what each one is, and how one run of it is timed.

Every contender has the same shape, so that `benchmarks/run.py` can line them up:

    measurement = CONTENDERS["boto3-adaptive"](emu, versions, quota, concurrency=16, deadline_s=120)

It publishes every draft in `versions` (fresh ones, seeded for it alone) against the
emulator `emu`, whose UpdatePackageVersion quota is `quota`, and returns a
`fleetrel.bench.Measurement`. Each creates its client *inside* the timed window, as a
user's run does; fleetrel's engine has to, so the baselines do too.

Baselines use botocore's default clientToken (a fresh uuid4 per attempt): that is what
their users get.

- `fleetrel`: fleetrel's engine through its Python API, journal on.
- `boto3-adaptive`: boto3 `retries={"mode": "adaptive"}` (default max_attempts, 3), a
  16-thread pool over one shared client: what an AWS user reaches for. A call botocore
  gives up on is resubmitted (and counted as a give-up), so that it still gets done.
- `boto3-standard`: the same with `mode="standard"`.
- `aiolimiter`: an aioboto3 loop, 16 workers, botocore retries off, pacing through an
  `AsyncLimiter` shaped exactly like the server's bucket (capacity B, draining at R),
  resubmitting on throttle. It is told the true quota in advance, changes included: a
  reference, not a peer.
- `raw-aiobotocore`: 16 workers, retries off, no limiter, each call sent once: the client
  CPU floor, run against an unthrottled emulator for the overhead figure.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import aioboto3
import boto3
from aiolimiter import AsyncLimiter
from botocore.config import Config
from botocore.exceptions import ClientError

from fleetrel.bench import PACKAGE, Measurement, Quota, Trial, run_fleetrel

REGION = "us-east-1"
FAKE_CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
THROTTLE = "ThrottlingException"
# The asyncio loops give one call this many tries (their own retries aside), the boto3
# pools resubmit in at most this many rounds, before the rest count as failed: enough
# that no contender that makes progress hits it, small enough to end a run. Each
# contender also has a deadline.
MAX_SUBMISSIONS = 50
MAX_ROUNDS = 200


class AttemptCounter:
    """The client's own count of attempts and throttles, shared by threads or tasks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts = 0
        self.throttles = 0
        self.give_ups = 0  # a call botocore stopped retrying, resubmitted by us
        self.gave_up_once: set[str] = set()  # calls given up on at least once
        self.errors: Counter[str] = Counter()
        self.rounds = 0  # boto3 pools: rounds of resubmission, the first included

    def attempt(self, *, throttled: bool) -> None:
        with self._lock:
            self.attempts += 1
            self.throttles += throttled

    def on_needs_retry(self, response: Any = None, caught_exception: Any = None, **_: Any) -> None:
        """botocore's `needs-retry` event fires once after every attempt, the retries it
        makes on its own included: the public hook for counting them. Returns None, so
        botocore's retry decision is untouched."""
        code = ""
        if response is not None:
            code = response[1].get("Error", {}).get("Code", "")
        self.attempt(throttled=code == THROTTLE)

    def gave_up(self, version: str, code: str) -> None:
        with self._lock:
            self.give_ups += 1
            self.gave_up_once.add(version)
            self.errors[code] += 1

    def failed(self, code: str) -> None:
        with self._lock:
            self.errors[code] += 1

    def finish(self, trial: Trial, *, succeeded: int, calls: int) -> Measurement:
        """The trial's measurement, with the client's own counts beside the emulator's."""
        return trial.finish(succeeded=succeeded, failed=calls - succeeded, client_attempts=self.attempts,
                            client_throttles=self.throttles, extra=self.extra())

    def extra(self) -> dict[str, Any]:
        return {
            "give_ups": self.give_ups,
            "calls_given_up_once": len(self.gave_up_once),
            "errors": dict(self.errors),
            **({"rounds": self.rounds} if self.rounds else {}),
        }


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "ClientError")
    return type(exc).__name__


# ---------------------------------------------------------------------------- fleetrel


def fleetrel(
    emu: Any,
    versions: Sequence[str],
    quota: Quota,
    *,
    concurrency: int = 16,
    deadline_s: float = 600.0,
    ceiling: float | None = None,
    told_burst: int | None = None,
    journal_dir: Path,
    shared: bool = False,
) -> Measurement:
    """fleetrel's engine; `ceiling` and `told_burst` are what it is told when it does
    not know the quota."""
    return asyncio.run(
        asyncio.wait_for(
            run_fleetrel(emu, versions, quota=quota, ceiling=ceiling, told_burst=told_burst, concurrency=concurrency,
                         journal_dir=journal_dir, shared=shared),
            timeout=deadline_s,
        )
    )


# ---------------------------------------------------------------------------- boto3 threads


def _boto3_pool(
    emu: Any, versions: Sequence[str], quota: Quota, *, mode: str, name: str, concurrency: int, deadline_s: float,
    shared: bool = False,
) -> Measurement:
    trial = Trial(emu, contender=name, calls=len(versions), quota=quota, shared=shared)
    counter = AttemptCounter()
    trial.start()
    deadline = time.monotonic() + deadline_s
    client = boto3.session.Session().client(
        "iot",
        region_name=REGION,
        endpoint_url=emu.url,
        config=Config(retries={"mode": mode}, max_pool_connections=concurrency),
        **FAKE_CREDENTIALS,
    )
    client.meta.events.register("needs-retry.iot.UpdatePackageVersion", counter.on_needs_retry)

    def publish(version: str) -> str:
        """"done", "again" (botocore gave up on a throttle) or "failed"."""
        if time.monotonic() > deadline:
            counter.failed("deadline")
            return "failed"
        try:
            client.update_package_version(packageName=PACKAGE, versionName=version, action="PUBLISH")
        except Exception as exc:  # a lost connection is a failed call, not a crash
            code = error_code(exc)
            if code != THROTTLE:
                counter.failed(code)
                return "failed"
            counter.gave_up(version, code)
            return "again"
        trial.completed()
        return "done"

    # What a user does with the calls botocore gave up on: submit them again, as a new
    # round after the others, until none is left. (Resubmitting at once, in the same
    # thread, lets the 16 threads starve a few unlucky calls for 50 tries and more.)
    succeeded, pending, rounds = 0, list(versions), 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        while pending and rounds < MAX_ROUNDS:
            rounds += 1
            outcomes = list(pool.map(publish, pending))
            succeeded += outcomes.count("done")
            pending = [v for v, outcome in zip(pending, outcomes) if outcome == "again"]
    if pending:
        counter.failed("max_rounds")
    client.close()
    counter.rounds = rounds
    return counter.finish(trial, succeeded=succeeded, calls=len(versions))


def boto3_adaptive(emu: Any, versions: Sequence[str], quota: Quota, *, concurrency: int = 16, deadline_s: float = 600.0,
                   shared: bool = False) -> Measurement:
    return _boto3_pool(emu, versions, quota, mode="adaptive", name="boto3-adaptive", concurrency=concurrency,
                       deadline_s=deadline_s, shared=shared)


def boto3_standard(emu: Any, versions: Sequence[str], quota: Quota, *, concurrency: int = 16, deadline_s: float = 600.0) -> Measurement:
    return _boto3_pool(emu, versions, quota, mode="standard", name="boto3-standard", concurrency=concurrency, deadline_s=deadline_s)


# ---------------------------------------------------------------------------- asyncio loops


def _no_retries(concurrency: int) -> Config:
    return Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=concurrency)


def shaped_limiter(rate: float, burst: int) -> AsyncLimiter:
    """An AsyncLimiter with the server's bucket shape: room for `burst` calls, draining at
    `rate` per second (AsyncLimiter(R, 1) would allow a burst of R, not B)."""
    return AsyncLimiter(burst, burst / rate)


async def _async_loop(
    emu: Any,
    versions: Sequence[str],
    quota: Quota,
    trial: Trial,
    *,
    concurrency: int,
    deadline_s: float,
    paced: bool,
) -> Measurement:
    counter = AttemptCounter()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for version in versions:
        queue.put_nowait(version)
    succeeded = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    holder: dict[str, AsyncLimiter] = {}
    if paced:
        assert quota.rate is not None, "the aiolimiter reference needs a quota"
        holder["limiter"] = shaped_limiter(quota.rate, quota.burst)

    async def follow_quota() -> None:
        # The reference knows the quota: swap its limiter when the server's changes. A
        # new AsyncLimiter starts with room for a whole burst, as the emulator's new
        # bucket starts full; where the server's does not, the reference is pre-filled.
        for change in sorted(quota.changes, key=lambda c: c.at_s):
            await asyncio.sleep(max(0.0, trial.started_at + change.at_s - time.perf_counter()))
            limiter = shaped_limiter(change.rate, change.burst)
            if not change.refills:
                await limiter.acquire(change.burst)
            holder["limiter"] = limiter

    session = aioboto3.Session()
    async with session.client(
        "iot", region_name=REGION, endpoint_url=emu.url, config=_no_retries(concurrency), **FAKE_CREDENTIALS
    ) as client:

        async def worker() -> None:
            nonlocal succeeded
            while not queue.empty():
                version = queue.get_nowait()
                for _ in range(MAX_SUBMISSIONS if paced else 1):
                    if loop.time() > deadline:
                        counter.failed("deadline")
                        break
                    if paced:
                        await holder["limiter"].acquire()
                    try:
                        await client.update_package_version(packageName=PACKAGE, versionName=version, action="PUBLISH")
                    except Exception as exc:  # a lost connection is a failed call, not a crash
                        code = error_code(exc)
                        counter.attempt(throttled=code == THROTTLE)
                        if code == THROTTLE and paced:
                            continue
                        counter.failed(code)
                        break
                    counter.attempt(throttled=False)
                    trial.completed()
                    succeeded += 1
                    break
                else:
                    counter.failed("max_submissions")

        follower = asyncio.create_task(follow_quota()) if paced and quota.changes else None
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if follower:
            follower.cancel()
    return counter.finish(trial, succeeded=succeeded, calls=len(versions))


def aiolimiter_reference(emu: Any, versions: Sequence[str], quota: Quota, *, concurrency: int = 16, deadline_s: float = 600.0) -> Measurement:
    trial = Trial(emu, contender="aiolimiter", calls=len(versions), quota=quota)

    async def go() -> Measurement:
        trial.start()
        return await _async_loop(emu, versions, quota, trial, concurrency=concurrency, deadline_s=deadline_s, paced=True)

    return asyncio.run(go())


def raw_aiobotocore(emu: Any, versions: Sequence[str], quota: Quota, *, concurrency: int = 16, deadline_s: float = 600.0) -> Measurement:
    trial = Trial(emu, contender="raw-aiobotocore", calls=len(versions), quota=quota)

    async def go() -> Measurement:
        trial.start()
        return await _async_loop(emu, versions, quota, trial, concurrency=concurrency, deadline_s=deadline_s, paced=False)

    return asyncio.run(go())


Contender = Callable[..., Measurement]
def foreign_caller(url: str, rate: float, versions: Sequence[str], ready: Any, stop: Any, counting: Any,
                   admitted: Any) -> None:
    """A steady, deaf caller for scenario (i), in a process of its own: one
    UpdatePackageVersion every 1/rate s whatever the answer, no retries, until `stop`;
    its accepted calls while `counting` is set add up in `admitted` (a shared int)."""
    client = boto3.session.Session().client(
        "iot", region_name=REGION, endpoint_url=url, aws_access_key_id="foreign", aws_secret_access_key="foreign",
        config=Config(retries={"total_max_attempts": 1}),
    )
    ready.set()
    start, sent = time.perf_counter(), 0
    while not stop.is_set():
        try:  # a description edit is allowed in every state, so each call is a real change
            client.update_package_version(packageName=PACKAGE, versionName=versions[sent % len(versions)],
                                          description=f"foreign {sent}")
            if counting.is_set():
                with admitted.get_lock():
                    admitted.value += 1
        except Exception:  # throttled or not, it keeps its pace
            pass
        sent += 1
        time.sleep(max(0.0, start + sent / rate - time.perf_counter()))


CONTENDERS: dict[str, Contender] = {
    "fleetrel": fleetrel,
    "boto3-adaptive": boto3_adaptive,
    "boto3-standard": boto3_standard,
    "aiolimiter": aiolimiter_reference,
    "raw-aiobotocore": raw_aiobotocore,
}
