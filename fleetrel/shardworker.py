"""One shard of a `fleetrel run --ray`, on its actor: the engine on its targets, records buffered.

    worker = ShardWorker(["prod-eu-west-1", "prod-us-east-1"], endpoint_url, options)
    identities = await worker.connect(plan)             # roles assumed, accounts resolved
    summary = await worker.run(1, run_id, keys, tokens) # meanwhile the driver calls drain(1)

Plain Python, no Ray: `fleetrel.raydriver` makes it a Ray actor (an async one, so `run`
and `drain` interleave on its event loop) and is the only module that imports Ray.
"""
from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from fleetrel.engine import RunOptions, Stop, execute
from fleetrel.events import SESSION_STARTS, Ending, Event, Record
from fleetrel.plan import ReleasePlan
from fleetrel.session import Session

DRAIN_WAIT = 0.2  # seconds an actor holds a poll for records: batches them, bounds the display's lag
#: Records only the driver writes, for the whole run; an actor's session's own are dropped.
DRIVER_EVENTS = frozenset({*SESSION_STARTS, *(Event(e.value) for e in Ending), Event.WAVE_STARTED,
                           Event.WAVE_STOPPED})


class _RecordBuffer:
    """The actor session's journal: records wait here until the driver drains them."""

    def __init__(self, wake: Any) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.path = Path("ray-actor")
        self._wake = wake

    def on_event(self, record: Record) -> None:
        if record.event not in DRIVER_EVENTS:
            self.records.append((str(record.event), dict(record.fields)))
            self._wake()

    def sync(self) -> None:
        pass  # the driver's journal is the durable one


class ShardWorker:
    """One shard of a run: its targets' clients, running the engine on what the driver hands
    it. Made a Ray actor by `fleetrel.raydriver`; a restart builds it again from these arguments."""

    def __init__(self, targets: list[str], endpoint_url: str | None, options: RunOptions) -> None:
        # the plan comes with `connect`, not here: a restart builds the actor again from
        # these arguments, and a large plan would have to outlive the run in Ray's object
        # store for that (Ray warns so); the driver connects a restarted actor again instead
        self.targets, self.endpoint_url, self.options = targets, endpoint_url, options
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
        if self.clients is None:
            from fleetrel.credentials import target_clients

            specs = [spec for spec in self.plan.target_specs() if spec.name in self.targets]
            self.clients, self.identities = await self.stack.enter_async_context(target_clients(
                specs, run_name=self.plan.plan, endpoint_url=self.endpoint_url,
                concurrency=self.options.limits(self.plan)[2]))
        return self.identities

    async def run(self, generation: int, run_id: str, todo: list[str], tokens: dict[str, str]) -> dict[str, Any]:
        assert self.plan is not None and self.clients is not None, "connect(plan) first"
        session = Session.delegated(self.plan, run_id=run_id, todo=set(todo), tokens=tokens, journal=self.buffer,
                                    only=set(self.targets))
        self.stop_signal = Stop()
        if self.stopping is not None:  # the driver's stop came before this call
            self.stop_signal.now() if self.stopping else self.stop_signal.request("interrupted")
        try:
            result = await execute(session, self.clients, self.options, waves=[len(session.steps)],
                                   stop=self.stop_signal)
        finally:
            self.finished = generation
            self.ready.set()
        return {"attempts": result.attempts, "stopped_by": result.stopped_by, "setup_error": result.setup_error,
                "final_rate": result.final_rate}

    async def drain(self, generation: int) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        """The records written since the last drain, and whether run `generation` has ended
        (then they are its last)."""
        if not self.buffer.records and self.finished < generation:
            try:
                await asyncio.wait_for(self.ready.wait(), DRAIN_WAIT)
            except asyncio.TimeoutError:
                pass
        self.ready.clear()
        done = self.finished >= generation
        records, self.buffer.records = self.buffer.records, []
        return records, done

    async def stop(self, forced: bool) -> None:
        self.stopping = forced or bool(self.stopping)
        if self.stop_signal is not None:
            self.stop_signal.now() if forced else self.stop_signal.request("interrupted")

    async def close(self) -> None:
        await self.stack.aclose()
        self.clients = None
