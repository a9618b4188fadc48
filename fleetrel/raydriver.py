"""A run's shards as Ray actors, and the driver that journals them: `fleetrel run --ray`.

    result = await run_on_ray(plan, endpoint_url=url, actors=4)             # a local Ray, for this run
    result = await run_on_ray(plan, address="10.0.0.5:6379", actors=40)    # an existing cluster

The driver (this process) opens the run's one session: its journal, lock, replay, run key
and clientTokens, exactly as `fleetrel run` does. Each actor, an async Ray actor, holds
one shard's targets (`fleetrel.shards.assign`) with their own clients and quotas, and runs
the same engine (`fleetrel.engine.execute`) on the steps the driver hands it, with the
driver's tokens, writing its records to a buffer instead of a journal. The driver drains
the buffers (each actor is polled; a poll waits for records up to `DRAIN_WAIT`) and writes
every record into the run's journal and to the listeners (the display), so the journal is
the one a single process would write, on the driver's disk: a resume needs no shared
filesystem, and a run started with `--ray` resumes without it, and the other way round.

Failures:
- an actor that dies (its node lost, `ray.kill`) is restarted by Ray; the driver sends it
  the steps of its shard that have no terminal record in the journal yet, with the same
  clientTokens, so a call it sent without the driver hearing the answer is answered by the
  service as the same call;
- a default step's change (UpdatePackage) waits until the driver has journalled its
  `step_started`, with the default read before it (`fleetrel.shardworker`): a restarted
  actor never journals the new default as the one it replaced;
- a restarted actor whose targets resolve elsewhere now stops the run (`check_identity`);
- a killed driver takes its actors with it: on its machine they stop sending the moment
  its process ends (a pidfd), and a local Ray's processes and folder are reaped by a
  process of their own (`fleetrel.rayreaper`), `kill -9` included; running the same
  command again resumes from the journal, as any run does.

The engine knows nothing of Ray; only this module imports it (`fleetrel[ray]`).
"""
from __future__ import annotations

import os
import secrets
import time
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import anyio

from fleetrel.aws import AwsSetupError, without_userinfo
from fleetrel.engine import BeforeWave, RunOptions, Stop, execute
from fleetrel.sessionrecords import end_record, session_result, start_record
from fleetrel.events import TERMINAL, Event, Listener, Outcome, Record, StartListener
from fleetrel.journal import SYNC_INTERVAL, default_journal_path, fields_for_journal
from fleetrel.plan import ReleasePlan
from fleetrel.plan.defaults import DEFAULT_KEY_SUFFIX
from fleetrel.rayreaper import clean_stale_folders, private_folder, start_reaper
from fleetrel.result import RunResult, StepOutcome
from fleetrel.session import Session, TargetChanged, check_identity, open_session
from fleetrel.expansion import frozen_selection, select_for_run
from fleetrel.shards import Shard, assign, shard_journal_path, target_sizes
from fleetrel.shardworker import DriverProcess, ShardWorker

RESTART_WAIT = 120.0  # seconds to wait for Ray to bring a dead actor back before the run stops
MAX_RESTARTS = 5  # per actor and run: past it the run stops, its steps left for a resume


class RaySetupError(AwsSetupError):
    """Ray cannot be used for this run (not installed, no cluster at the address)."""


def _actor_class(ray: Any) -> Any:
    # num_cpus=0: an actor waits on the network, it does not compute; SPREAD puts them on
    # as many nodes as there are. Restarted without limit by Ray, bounded by the driver.
    return ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0,
                      scheduling_strategy="SPREAD")(ShardWorker)


# -- Ray itself -----------------------------------------------------------------------------

def import_ray(*, local: bool) -> Any:
    """Ray, set up before its import: no usage stats; for a local cluster, every address on
    the loopback (Ray binds a Linux machine's outward address unless told it has no cluster)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        import ray._private.ray_constants
    except ImportError:
        raise RaySetupError("--ray needs Ray: pip install 'fleetrel[ray]'") from None
    if local:  # the environment is read once, at Ray's import: this process may have imported it before
        ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


@contextmanager
def ray_cluster(address: str | None) -> Iterator[Any]:
    """Ray for a run: the one this process is already connected to, the cluster at
    `address`, or (None) a local one started for the run in a private folder, bound to
    the loopback, stopped after it and reaped however this process ends."""
    ray = import_ray(local=_on_this_machine(address))
    if ray.is_initialized():
        yield ray
        return
    folder, reaper = None, None
    try:
        if address:
            ray.init(address=address, logging_level="warning")
        else:
            # Its folder is private to this user and reaped with its processes when this
            # process ends, even by kill -9 (`fleetrel.rayreaper`); the dashboard is off (its
            # agent cannot be, in Ray 2.60: the reaper ends it).
            clean_stale_folders()
            folder = private_folder()
            reaper = start_reaper(folder)
            _private_token(ray, folder)
            ray.init(include_dashboard=False, _temp_dir=str(folder / "r"), logging_level="warning")
    except Exception as exc:  # noqa: BLE001 - Ray's own errors (connection, authentication, ...) say why
        if folder is not None:
            ray.shutdown()  # what did start of it
        if reaper is not None:
            reaper.close()
        raise RaySetupError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()
        if reaper is not None:
            reaper.close()  # what shutdown left (the raylet's agents), and the folder


def _private_token(ray: Any, folder: Path) -> None:
    """Ray's token authentication (its default for a local cluster since Ray 2.5x: the GCS
    refuses a client without the token) with a token of this run's own, in its private
    folder, rather than the user's shared `~/.ray/auth_token`, which Ray writes readable by
    all. Left off when the user switched it off (RAY_AUTH_MODE=disabled)."""
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return
    token = folder / "auth_token"
    token.touch(mode=0o600)
    token.write_text(secrets.token_hex(32))
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)  # the cluster's processes inherit it, and read it
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")  # Ray read its settings at import: read them again (as Ray does when it turns this on)
    AuthenticationTokenLoader.instance().reset_cache()  # a token this process read before is not this one


def _on_this_machine(address: str | None) -> bool:
    """A local Ray: started for the run, or a cluster on this machine's loopback (a test's,
    or `ray start --node-ip-address 127.0.0.1`)."""
    return address is None or address.rsplit(":", 1)[0] in ("127.0.0.1", "localhost")


# -- the driver -----------------------------------------------------------------------------

async def run_on_ray(plan: ReleasePlan, *, address: str | None = None, actors: int | None = None,
                     journal_path: Path | str | None = None, endpoint_url: str | None = None,
                     options: RunOptions | None = None, listeners: Iterable[Listener] = (),
                     before_wave: BeforeWave | None = None, stop: Stop | None = None,
                     shard: Shard | None = None) -> RunResult:
    """Run (or resume) `plan` over Ray actors, one per shard (see the module docstring).
    `actors`: how many shards (default: one per target, at most the cluster's CPUs).
    `shard` runs one shard of the run over Ray (`--shard I/N --ray`: a run too large for
    one driver), in that shard's journal (`fleetrel.shards`)."""
    options = options or RunOptions()
    path = Path(journal_path) if journal_path else default_journal_path(plan)
    sizes = target_sizes(plan)  # a plan without targets is refused here: nothing to shard
    overrides = {"endpoint_url": without_userinfo(endpoint_url)} if endpoint_url else {}
    only, shard_header = None, None
    if shard is not None:
        shard_header = shard.header(plan)
        only = set(shard_header["targets"])
        path = shard_journal_path(path, shard)
        sizes = {t: n for t, n in sizes.items() if t in only}
    if plan.needs_expansion:
        # expanded here, before the actors get their shards, and frozen in the journal as a
        # single process freezes it: a resume sends that selection, with or without --ray
        frozen = None if options.new_run else frozen_selection(path, plan)
        plan = plan.expanded(frozen) if frozen is not None else await _expanded(plan, only, endpoint_url, options)
    steps = [s for s in plan.steps() if only is None or s.target in only]

    def session_for(identity: dict[str, Any] | None):
        return open_session(plan, path, new_run=options.new_run, retry_failed=options.retry_failed,
                            identity=identity, target=overrides, only=only, shard=shard_header)

    async with AsyncExitStack() as stack:
        session: Session | None = None
        if not options.new_run and path.exists() and path.stat().st_size:
            # a resume: opening it sends nothing, and a finished run starts no Ray at all
            session = stack.enter_context(session_for(None))
            if not session.todo:
                return await execute(session, None, options, listeners=listeners, stop=stop)
        if not steps:  # a shard with no targets (more shards than targets): nothing to send
            session = session or stack.enter_context(session_for({}))
            return await execute(session, {}, options, listeners=listeners, stop=stop)
        # the fleet guard, before any actor starts: nothing is sent when it refuses
        fleet = await _guarded(plan, session.todo if session is not None else steps, endpoint_url, options)
        ray = stack.enter_context(ray_cluster(address))
        count = actors or max(1, min(len(sizes), int(ray.cluster_resources().get("CPU", 1))))
        shard_of = assign(sizes, count)
        # on this machine, each actor stops sending the moment this process ends, however it ends
        driver = DriverProcess.this() if _on_this_machine(address) else None
        pool = _Pool(ray, plan, shard_of, endpoint_url, options, driver)
        stack.push_async_callback(pool.close)
        identities = await pool.connect()  # every target's account resolved and checked first
        if session is None:
            session = stack.enter_context(session_for(identities))
        else:
            check_identity(session, identities)
        session.fleet_check = fleet
        return await _Driver(session, pool, options, list(listeners)).run(before_wave, stop)


async def _expanded(plan: ReleasePlan, only: set[str] | None, endpoint_url: str | None,
                    options: RunOptions) -> ReleasePlan:
    """`plan` with its selectors expanded through the driver's own clients for the run's
    targets (a shard's: its own), as `fleetrel.api.run` expands it."""
    from fleetrel.credentials import target_clients

    chosen = [spec for spec in plan.target_specs() if only is None or spec.name in only]
    async with target_clients(chosen, run_name=plan.plan, endpoint_url=endpoint_url,
                              concurrency=options.limits(plan)[2]) as (clients, _):
        return await select_for_run(plan, clients, frozen=False, fleet_check=options.fleet_check)


async def _guarded(plan: ReleasePlan, steps: list[Any], endpoint_url: str | None,
                   options: RunOptions) -> dict[str, Any] | None:
    """The fleet guard (`fleetrel.fleetcheck.guard`) through the driver's own clients for the
    targets of `steps`, built only when there are counts to read."""
    from fleetrel.fleetcheck import deprecations, guard, guard_limit

    wanted = deprecations(steps)
    if guard_limit(plan, options.guard_max_devices) is None or not options.fleet_check or not wanted:
        return await guard(plan, wanted, {}, options)  # nothing to read: at most the record of a skip
    from fleetrel.credentials import target_clients

    targets = {step.target for step in wanted}
    chosen = [spec for spec in plan.target_specs() if spec.name in targets]
    async with target_clients(chosen, run_name=plan.plan, endpoint_url=endpoint_url,
                              concurrency=options.limits(plan)[2]) as (clients, _):
        return await guard(plan, wanted, clients, options)


def actor_name(plan: ReleasePlan, shard: int, count: int, pid: int | None = None) -> str:
    """The Ray name of a run's shard actor: plan, driver process, shard."""
    return f"fleetrel/{plan.plan}/{pid or os.getpid()}/shard-{shard}-of-{count}"


class _Pool:
    """The run's actors, one per non-empty shard."""

    def __init__(self, ray: Any, plan: ReleasePlan, shard_of: dict[str, int], endpoint_url: str | None,
                 options: RunOptions, driver: DriverProcess | None) -> None:
        self.ray = ray
        self.shard_of = shard_of
        worker = _actor_class(ray)
        self.plan_ref = ray.put(plan)  # in the object store once for every actor and restart
        count = max(shard_of.values())
        # named so that an operator (`ray list actors`) or a test can find one shard's actor
        self.actors = {shard: worker.options(name=actor_name(plan, shard, count)).remote(
            [t for t, s in shard_of.items() if s == shard], endpoint_url, options, driver)
            for shard in sorted(set(shard_of.values()))}

    async def connect(self) -> dict[str, dict[str, str]]:
        """Every shard's targets set up at once; every target's problem reported, nothing sent."""
        identities: dict[str, dict[str, str]] = {}
        problems: list[str] = []
        for ref in [actor.connect.remote(self.plan_ref) for actor in self.actors.values()]:
            try:
                identities.update(await ref)
            except self.ray.exceptions.RayTaskError as exc:
                if not isinstance(exc.cause, AwsSetupError):
                    raise
                problems.append(str(exc.cause).removesuffix(". Nothing was sent to any target."))
        if problems:
            raise AwsSetupError("; ".join(problems) + ". Nothing was sent to any target.")
        return identities

    async def close(self) -> None:
        for actor in self.actors.values():
            self.ray.kill(actor, no_restart=True)


class _Driver:
    """Executes a session over the pool: waves, the actors' records into the journal and the
    listeners, restarts, and the session's result."""

    def __init__(self, session: Session, pool: _Pool, options: RunOptions, listeners: list[Listener]) -> None:
        self.session, self.pool, self.options, self.listeners = session, pool, options, listeners
        self.outcomes: dict[str, StepOutcome] = {}
        self.attempts = self.throttles = self.retries = 0
        self.stop_reason: str | None = None
        self.setup_error: str | None = None
        self.forced = False
        self.generation = 0
        self.restarts: dict[int, int] = {}
        rate = options.limits(session.plan)[0]
        self.rates = {t: rate for t in pool.shard_of}  # per target, as the actors report changes
        self.ceiling = rate
        self.steps = {s.key: s for s in session.steps}

    def emit(self, event: Event, fields: dict[str, Any]) -> None:
        record = Record.of(event, **fields)
        self.session.journal.on_event(record)  # the journal's failure is the run's
        for listener in list(self.listeners):
            try:
                listener.on_event(record)
            except Exception:  # a display must never cost the journal a record
                self.listeners.remove(listener)

    def request_stop(self, reason: str, *, forced: bool = False) -> None:
        self.forced = self.forced or forced
        if self.stop_reason is None or forced:
            self.stop_reason = self.stop_reason or reason
            for actor in self.pool.actors.values():
                actor.stop.remote(self.forced)

    async def run(self, before_wave: BeforeWave | None, stop: Stop | None) -> RunResult:
        self.emit(*start_record(self.session, self.options))
        view = _View(self)
        for listener in list(self.listeners):
            if isinstance(listener, StartListener):
                try:
                    listener.on_start(view)
                except Exception:
                    self.listeners.remove(listener)
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._sync_journal)
            if stop is not None:
                stop._subscribe(lambda: self.request_stop(stop.reason or "interrupted", forced=stop.forced))
                if stop.reason is not None:
                    self.request_stop(stop.reason)
            await self._waves(before_wave)
            tg.cancel_scope.cancel()
        result = session_result(self.session, self.outcomes, elapsed=time.monotonic() - started,
                                attempts=self.attempts, throttles=self.throttles, retries=self.retries,
                                final_rate=sum(self.rates.values()), stop_reason=self.stop_reason,
                                setup_error=self.setup_error, per_target=True)
        closing = end_record(result)
        if closing is not None:
            self.emit(*closing)
        return result

    async def _sync_journal(self) -> None:
        while True:
            await anyio.sleep(SYNC_INTERVAL)
            self.session.journal.sync()

    async def _waves(self, before_wave: BeforeWave | None) -> None:
        """The plan's waves as the engine runs them (`_Execution.execute_waves`), each spread
        over the actors; a wave starts when the ones before it have no failure."""
        ends = self.session.plan.wave_ends()
        start, ran = 0, False
        for number, end in enumerate(ends, 1):
            wave = [s for s in self.session.todo if start <= s.index < end]
            failed_earlier = sum(1 for o in self.outcomes.values() if o.outcome is Outcome.FAILED) + sum(
                1 for s in self.session.steps[:start] if s.key in self.session.failed_before)
            start = end
            if not wave:
                continue
            if failed_earlier:
                self.stop_reason = "wave_failed"
                self.emit(Event.WAVE_STOPPED, {"wave": number, "waves": len(ends), "failed": failed_earlier})
                return
            if ran and before_wave is not None:
                self.session.journal.sync()
                if not await before_wave(number, len(ends)):
                    self.stop_reason = self.stop_reason or "interrupted"
                    return
            if self.stop_reason:
                return
            if len(ends) > 1:
                self.emit(Event.WAVE_STARTED, {"wave": number, "waves": len(ends), "end": end, "steps": len(wave)})
            async with anyio.create_task_group() as tg:
                for shard, actor in self.pool.actors.items():
                    keys = [s.key for s in wave if self.pool.shard_of[s.target] == shard]
                    if keys:
                        tg.start_soon(self._shard, shard, actor, keys)
            ran = True
            if self.stop_reason:
                return

    async def _shard(self, shard: int, actor: Any, keys: list[str]) -> None:
        """One shard's part of a wave, to its end: restarted actors get what is left."""
        ray_errors = self.pool.ray.exceptions.RayActorError
        while keys and not self.stop_reason:
            self.generation += 1
            generation = self.generation
            tokens = {key: self.session.token(self.steps[key]) for key in keys}
            sent_here = 0
            try:
                summary_ref = actor.run.remote(generation, self.session.run_id, keys, tokens, self._done_before(keys))
                done = False
                while not done:
                    records, done = await actor.drain.remote(generation)
                    sent_here += self._write(records)
                summary = await summary_ref
            except ray_errors:
                # lost with the actor: records it had not handed over; its calls in flight
                self.attempts += sent_here
                keys = [k for k in keys if k not in self.outcomes]
                if not keys or self.stop_reason:
                    return
                if not await self._restarted(shard, actor):
                    return
                self.emit(Event.SHARD_RESTARTED, {"shard": shard, "restarts": self.restarts[shard], "left": len(keys),
                                                  "targets": sorted({self.steps[k].target for k in keys})})
                continue
            self.attempts += summary["attempts"]
            if summary["stopped_by"] == "setup":
                self.setup_error = self.setup_error or summary["setup_error"]
                self.request_stop("setup")
            return

    def _done_before(self, keys: list[str]) -> list[str]:
        """The version steps of the default steps in `keys` that the run has finished (in
        this session, or journalled by an earlier one): the actor's engine lets those go."""
        prior = self.session.prior.steps if self.session.prior is not None else {}
        finished = (Outcome.SUCCEEDED, Outcome.SKIPPED)
        out = []
        for key in keys:
            version = key.removesuffix(DEFAULT_KEY_SUFFIX)
            if version == key:
                continue
            now, before = self.outcomes.get(version), prior.get(version)
            if (now is not None and now.outcome in finished) or (before is not None and before.outcome in finished):
                out.append(version)
        return out

    async def _restarted(self, shard: int, actor: Any) -> bool:
        """Wait for Ray to bring the shard's actor back and its targets' clients up again;
        False (and the run stopped, its steps left for a resume) if it does not come back."""
        self.restarts[shard] = self.restarts.get(shard, 0) + 1
        if self.restarts[shard] > MAX_RESTARTS:
            return self._lost(f"the actor of shard {shard} died {self.restarts[shard]} times")
        deadline = time.monotonic() + RESTART_WAIT
        while True:
            try:
                check_identity(self.session, await actor.connect.remote(self.pool.plan_ref))
                return True
            except self.pool.ray.exceptions.RayActorError:
                if time.monotonic() > deadline:
                    return self._lost(f"the actor of shard {shard} did not come back within {RESTART_WAIT:g} s")
                await anyio.sleep(0.2)  # Ray is restarting it: a new process, its clients rebuilt
            except (AwsSetupError, self.pool.ray.exceptions.RayTaskError) as exc:
                cause = getattr(exc, "cause", exc)
                return self._lost(f"the restarted actor of shard {shard} could not set up its targets ({cause})")
            except TargetChanged as exc:  # its clients now act elsewhere than the run's first calls went
                return self._lost(f"the restarted actor of shard {shard} points elsewhere: {exc}")

    def _lost(self, why: str) -> bool:
        """A shard that cannot go on stops the run as a setup problem does: every step not
        journalled as finished stays open, and the same command resumes it."""
        self.setup_error = self.setup_error or why
        self.request_stop("setup")
        return False

    def _write(self, records: list[tuple[str, dict[str, Any]]]) -> int:
        """Journal an actor's records; the calls they show sent."""
        calls = 0
        for name, fields in records:
            event = Event(name)
            key = fields.get("step")
            if event is Event.STEP_STARTED and key in self.steps:
                # digested here, with the run's key, which never leaves the driver
                fields["request"] = fields_for_journal(self.steps[key].request(),
                                                       sensitive=self.options.journal_sensitive, key=self.session.key)
            elif event is Event.ATTEMPT_FAILED:
                calls += 1
                self.retries += 1
                self.throttles += bool(fields.get("throttled"))
            elif event in TERMINAL:
                calls += 1
                self.outcomes[key] = StepOutcome(key, Outcome.of(event), int(fields.get("attempt", 0)),
                                                 fields.get("code"), fields.get("message"))
            elif event is Event.RATE_CHANGED and fields.get("target") in self.rates:
                self.rates[fields["target"]] = float(fields["new"])
            self.emit(event, fields)
        return calls


class _View:
    """What a display may read of the run the driver executes (`fleetrel.events.SessionView`)."""

    def __init__(self, driver: _Driver) -> None:
        self._driver = driver

    @property
    def rate(self) -> float:
        return sum(self._driver.rates.values())

    @property
    def ceiling(self) -> float:
        return self._driver.ceiling * len(self._driver.rates)

    @property
    def to_do(self) -> int:
        return len(self._driver.session.todo)

    def targets(self) -> dict[str, tuple[int, float, float]]:
        to_do = self._driver.session.todo_by_target
        return {t: (to_do.get(t, 0), rate, self._driver.ceiling) for t, rate in self._driver.rates.items()}
