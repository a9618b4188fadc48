"""One shard of a `fleetrel run --ray`, on its actor: the engine on its targets, records buffered.

    worker = ShardWorker(["prod-eu-west-1", "prod-us-east-1"], endpoint_url, options)
    identities = await worker.connect(plan)             # roles assumed, accounts resolved
    summary = await worker.run(1, run_id, keys, tokens) # meanwhile the driver calls drain(1)

Plain Python, no Ray: `fleetrel.raydriver` makes it a Ray actor (an async one, so `run`
and `drain` interleave on its event loop) and is the only module that imports Ray.
"""
from __future__ import annotations

import asyncio
import os
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetrel.engine import RunOptions, Stop, execute
from fleetrel.events import SESSION_STARTS, Ending, Event, Outcome, Record
from fleetrel.plan import ReleasePlan
from fleetrel.replay import RunState, StepRecord
from fleetrel.session import Session

DRAIN_WAIT = 0.2  # seconds an actor holds a poll for records: batches them, bounds the display's lag
#: Records only the driver writes, for the whole run; an actor's session's own are dropped.
DRIVER_EVENTS = frozenset({*SESSION_STARTS, *(Event(e.value) for e in Ending), Event.WAVE_STARTED,
                           Event.WAVE_STOPPED})


@dataclass(frozen=True)
class DriverProcess:
    """The driver's process, as an actor on its machine can find it: pid, start time (in
    clock ticks since boot, /proc/PID/stat) and the kernel's boot id."""

    pid: int
    started: str
    boot_id: str

    @classmethod
    def this(cls) -> DriverProcess | None:
        try:
            return cls(os.getpid(), _start_time(os.getpid()), Path(_BOOT_ID).read_text().strip())
        except OSError:
            return None  # not Linux: nothing to watch

    def open(self) -> int | None:
        """A pidfd that becomes readable when the driver ends; None when this is not the
        driver's machine (another boot id, no such process started then: nothing to watch)."""
        try:
            if Path(_BOOT_ID).read_text().strip() != self.boot_id:
                return None
            fd = os.pidfd_open(self.pid)
            if _start_time(self.pid) != self.started:  # the pid is another process's now
                os.close(fd)
                return None
            return fd
        except (OSError, AttributeError):  # gone already (and maybe reused), or no pidfd here
            return None


_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


class _RecordBuffer:
    """The actor session's journal: records wait here until the driver drains them. The
    driver's next drain says it has journalled the records it took at the last one."""

    def __init__(self, wake: Any) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.path = Path("ray-actor")
        self._wake = wake
        self.written = self.taken = self.journalled = 0  # records so far: buffered, drained, journalled
        self.started_as: dict[str, int] = {}  # clientToken -> the number of its step's `step_started`
        self.held: set[str] = set()  # tokens of calls waiting for their `step_started` to be journalled
        self._more_journalled = asyncio.Event()

    def on_event(self, record: Record) -> None:
        if record.event not in DRIVER_EVENTS:
            self.records.append((str(record.event), dict(record.fields)))
            self.written += 1
            if record.event is Event.STEP_STARTED:
                self.started_as[record.fields["client_token"]] = self.written
            self._wake()

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        records, self.records = self.records, []
        self.taken = self.written
        return records

    def taken_were_journalled(self) -> None:
        self.journalled = self.taken
        self._more_journalled.set()
        self._more_journalled = asyncio.Event()

    async def journalled_first(self, token: str | None) -> None:
        """Return once the `step_started` of the step sent with `token` is in the driver's journal."""
        number = self.started_as.get(token or "", 0)
        if number <= self.journalled:
            return
        self.held.add(token)
        try:
            while number > self.journalled:
                self._wake()
                await self._more_journalled.wait()
        finally:
            self.held.discard(token)

    def sync(self) -> None:
        pass  # the driver's journal is the durable one


class _JournalFirst:
    """A target's client whose default changes (UpdatePackage, a default step's call) wait
    until the driver has journalled the step's `step_started`, with the default read before
    it: one process writes that record before it sends, and `fleetrel undo` restores what it
    says. Without the wait, an actor that died with the record still in its buffer would
    have changed the default, and its restarted self would journal the new default as the
    one it replaced. Everything else passes straight through."""

    def __init__(self, client: Any, buffer: _RecordBuffer) -> None:
        self._client, self._buffer = client, buffer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def update_package(self, **request: Any) -> Any:
        await self._buffer.journalled_first(request.get("clientToken"))
        return await self._client.update_package(**request)


class ShardWorker:
    """One shard of a run: its targets' clients, running the engine on what the driver hands
    it. Made a Ray actor by `fleetrel.raydriver`; a restart builds it again from these arguments."""

    def __init__(self, targets: list[str], endpoint_url: str | None, options: RunOptions,
                 driver: DriverProcess | None = None) -> None:
        # the plan comes with `connect`, not here: a restart builds the actor again from
        # these arguments, and a large plan would have to outlive the run in Ray's object
        # store for that (Ray warns so); the driver connects a restarted actor again instead
        self.targets, self.endpoint_url, self.options = targets, endpoint_url, options
        self.driver = driver
        self.watching = False
        self.plan: ReleasePlan | None = None
        self.clients: dict[str, Any] | None = None
        self.identities: dict[str, dict[str, str]] = {}
        self.finished = 0  # the last generation (driver's call number) whose run ended
        self.stop_signal: Stop | None = None
        self.stopping: bool | None = None  # None: go on; False: stop when in-flight calls end; True: now
        self.buffer = _RecordBuffer(lambda: self.ready.set())
        self.ready = asyncio.Event()
        self.stack = AsyncExitStack()

    async def connect(self, plan: ReleasePlan) -> dict[str, dict[str, str]]:
        """Take the plan, assume the targets' roles, resolve and check their accounts: where each points."""
        self.plan = plan
        self._watch_driver()
        if self.clients is None:
            from fleetrel.credentials import target_clients

            specs = [spec for spec in self.plan.target_specs() if spec.name in self.targets]
            self.clients, self.identities = await self.stack.enter_async_context(target_clients(
                specs, run_name=self.plan.plan, endpoint_url=self.endpoint_url,
                concurrency=self.options.limits(self.plan)[2]))
        return self.identities

    async def run(self, generation: int, run_id: str, todo: list[str], tokens: dict[str, str],
                  done: list[str] = ()) -> dict[str, Any]:
        """Send the steps `todo` with the driver's `tokens`. `done`: the version steps of
        default steps in `todo` that the run finished earlier (a resume, or this actor's
        earlier life): their default steps may go."""
        assert self.plan is not None and self.clients is not None, "connect(plan) first"
        session = Session.delegated(self.plan, run_id=run_id, todo=set(todo), tokens=tokens, journal=self.buffer,
                                    only=set(self.targets))
        if done:
            session.prior = RunState(self.buffer.path, {}, {k: StepRecord(k, outcome=Outcome.SUCCEEDED) for k in done})
        clients = {target: _JournalFirst(client, self.buffer) for target, client in self.clients.items()}
        self.stop_signal = Stop()
        if self.stopping is not None:  # the driver's stop came before this call
            self.stop_signal.now() if self.stopping else self.stop_signal.request("interrupted")
        try:
            result = await execute(session, clients, self.options, waves=[len(session.steps)],
                                   stop=self.stop_signal)
        finally:
            self.finished = generation
            self.ready.set()
        return {"attempts": result.attempts, "stopped_by": result.stopped_by, "setup_error": result.setup_error,
                "final_rate": result.final_rate}

    async def drain(self, generation: int) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        """The records written since the last drain, and whether run `generation` has ended
        (then they are its last). Being called again says the driver journalled the last ones."""
        self.buffer.taken_were_journalled()
        if not self.buffer.records and self.finished < generation:
            try:
                await asyncio.wait_for(self.ready.wait(), DRAIN_WAIT)
            except asyncio.TimeoutError:
                pass
        self.ready.clear()
        done = self.finished >= generation
        return self.buffer.take(), done

    async def stop(self, forced: bool) -> None:
        self.stopping = forced or bool(self.stopping)
        if self.stop_signal is not None:
            self.stop_signal.now() if forced else self.stop_signal.request("interrupted")

    def _watch_driver(self) -> None:
        """On the driver's machine, stop sending the moment the driver's process ends (a
        `kill -9` of `fleetrel run --ray`): Ray would end this actor only a second or two
        later, and a run started again at once would share the quota with it meanwhile."""
        if self.watching or self.driver is None:
            return
        fd = self.driver.open()
        if fd is not None:
            self.watching = True
            asyncio.get_running_loop().add_reader(fd, self._driver_gone, fd)

    def _driver_gone(self, fd: int) -> None:
        asyncio.get_running_loop().remove_reader(fd)  # readable from now on: once is enough
        os.close(fd)
        self.stopping = True
        if self.stop_signal is not None:
            self.stop_signal.now()  # calls in flight cancelled: the steps stay open for the resume

    async def close(self) -> None:
        await self.stack.aclose()
        self.clients = None
