"""Executing a session: every step sent once, as fast as the service allows, resumable.

    with open_session(plan, journal_path) as session:              # fleetrel.session
        result = await execute(session, client, RunOptions(), listeners=[display])
    print(result.status, result.succeeded, result.failed)

Per step: wait for the rate controller's bucket (every attempt, retries included), call
UpdatePackageVersion with the step's deterministic clientToken, classify the answer,
retry or finish, and tell the listeners (the journal first, then displays). The engine
knows nothing of YAML, terminals, signals or how the client was built: the client is an
argument (`fleetrel.testing.FakeIoT` in behaviour tests), and a `Stop` lets its caller
end the run early.

Guarantees kept here:
- each step ends in exactly one terminal journal record (succeeded, skipped, failed) or
  none when the run is stopped before it finished, so a resume re-sends it;
- a resumed run reuses the journal's run_id, hence the same clientTokens;
- a step the service rejected for good is not retried, neither now nor on resume
  (unless `retry_failed`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Iterator, Mapping, Protocol, runtime_checkable

import anyio
from botocore.exceptions import ClientError

from fleetrel import defaultsteps, errors
from fleetrel.events import Event, Listener, Outcome, Record, StartListener, terminal_event
from fleetrel.journal import SYNC_INTERVAL, fields_for_journal
from fleetrel.neighbours import Neighbours, quota_of
from fleetrel.neighbours import directory as neighbours_directory
from fleetrel.plan import ReleasePlan, Step
from fleetrel.ratecontrol import RateController, bucket
from fleetrel.reads import read_version
from fleetrel.result import RunResult, StepOutcome
from fleetrel.session import Session
from fleetrel.sessionrecords import end_record, session_result, start_record
from fleetrel.state import drift_of
from fleetrel.where import place_of

#: `await before_wave(wave, waves)` between waves: True to go on, False to stop (interrupted).
BeforeWave = Callable[[int, int], Awaitable[bool]]


@runtime_checkable
class WaveGate(Protocol):
    """A `before_wave` whose decisions are journalled (`fleetrel.gates.WaveGates`).

    The engine asks it before every wave after the first, a resumed session's first wave
    included, and `record(**fields)` writes a `wave_gate` record (wave and waves added)
    each time it decides something. `first_in_session`: no wave ran yet in this session.
    """

    async def decide(self, wave: int, waves: int, *, first_in_session: bool,
                     record: Callable[..., None]) -> bool: ...


@dataclass(frozen=True)
class RunOptions:
    """How to run, beside the plan. Limits left as None come from the plan's `limits:`.

    :param retry_failed: on resume, send again the steps that failed in earlier sessions.
    :param journal_sensitive: keep description, attributes and recipe in clear in the journal.
    :param policy: attempts and backoff per kind of failure.
    :param guard_max_devices: refuse to DEPRECATE a version more things run (over the plan's
        `guard.deprecate_max_devices`); `allow_in_use` lets it go, `fleet_check` False reads
        no fleet counts at all (`fleetrel.fleetcheck`). Both decisions are journalled.
    """

    rate: float | None = None
    burst: int | None = None
    concurrency: int | None = None
    adaptive: bool | None = None
    new_run: bool = False
    retry_failed: bool = False
    journal_sensitive: bool = False
    policy: errors.RetryPolicy = field(default_factory=errors.RetryPolicy)
    total_concurrency: int | None = None  # calls in flight across all targets (default: concurrency per target)
    guard_max_devices: int | None = None
    allow_in_use: bool = False
    fleet_check: bool = True

    def limits(self, plan: ReleasePlan) -> tuple[float, int, int, bool]:
        """(rate, burst, concurrency, adaptive) with the plan's limits under these options."""
        limits = plan.limits
        return (float(limits.rate if self.rate is None else self.rate),
                int(limits.burst if self.burst is None else self.burst),
                int(limits.concurrency if self.concurrency is None else self.concurrency),
                limits.adaptive if self.adaptive is None else self.adaptive)


class Stop:
    """Ends a running session early, from outside it (a signal handler, a UI).

        stop = Stop()
        ...  stop.request("interrupted")   # no new step or attempt starts; calls in flight finish
        ...  stop.now()                    # and cancel the calls in flight (they stay unfinished)

    Call it from the event loop's thread (an anyio signal receiver, a task).
    """

    __slots__ = ("reason", "forced", "_callbacks")

    def __init__(self) -> None:
        self.reason: str | None = None
        self.forced = False
        self._callbacks: list[Callable[[], None]] = []

    def request(self, reason: str = "interrupted") -> None:
        if self.reason is None:
            self.reason = reason
            for callback in list(self._callbacks):
                callback()

    def now(self) -> None:
        self.forced = True
        self.request()
        for callback in list(self._callbacks):
            callback()

    def _subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)


class _Lane:
    """One target's share of a run. Its quota is its own (per account and region), so it
    has its own client, rate controller and read bucket, and its own failure count: a
    target throttled hard, or failing, slows and stops itself, not the others."""

    __slots__ = ("target", "client", "quota", "controller", "read_limiter", "failed", "finished", "aborted",
                 "neighbours")

    def __init__(self, target: str | None, client: Any, rate: float, burst: int, adaptive: bool,
                 on_rate_change: Callable[[str | None, float, float, str], None], quota: str | None = None) -> None:
        self.target = target
        self.client = client
        self.quota = quota  # its quota's name among the runs on this host (`fleetrel.neighbours`)
        self.neighbours: Neighbours | None = None
        # its clock: the event loop's, which the bucket reads too (virtual under fleetrel.testing.run_virtual)
        self.controller = RateController(rate=rate, burst=burst, adaptive=adaptive, floor=min(0.5, rate))
        self.controller.on_rate_change = lambda old, new, reason: on_rate_change(target, old, new, reason)
        # Read-backs (GetPackageVersion) have their own quota in AWS: their own bucket.
        self.read_limiter = bucket(rate=max(1.0, rate), burst=max(1, int(rate)))
        self.failed = self.finished = 0
        self.aborted = False

    def join(self) -> None:
        """Be counted among the runs sending to this quota from this host while the lane
        sends, and share its ceiling with them (`fleetrel.neighbours`)."""
        if self.quota is not None and self.controller.adaptive and self.neighbours is None:
            self.neighbours = Neighbours.join(neighbours_directory(), self.quota)
            self.controller.watch(self.neighbours)

    def leave(self) -> None:
        """Stop being counted: the wave's steps are done (a held run sends nothing). The
        part stays until the next wave looks again."""
        if self.neighbours is not None:
            self.controller.watch(None)
            self.neighbours.leave()
            self.neighbours = None


class _Execution:
    """The mutable state of one session being executed. Nothing outside this module holds it;
    displays get `_View`, a read-only window on it."""

    def __init__(self, session: Session, options: RunOptions, listeners: list[Listener],
                 clients: Mapping[str | None, Any]) -> None:
        rate, burst, self.concurrency, adaptive = options.limits(session.plan)
        self.session = session
        self.options = options
        self.listeners = listeners
        self.lanes = {target: _Lane(target, client, rate, burst, adaptive, self._rate_changed,
                                    quota_of(place_of(session.identity, target)))
                      for target, client in clients.items()}
        # calls in flight across every target; each target has `concurrency` of its own
        # fast_acquire: a free slot is taken without a trip through the event loop; the
        # call right after it yields anyway (one loop iteration less per call)
        self.slots = anyio.Semaphore(options.total_concurrency or self.concurrency * len(self.lanes),
                                     fast_acquire=True)
        self.stop_reason: str | None = None
        self._waits: set[anyio.CancelScope] = set()  # tasks waiting for the bucket or a wave's go
        self.outcomes: dict[str, StepOutcome] = {}
        self.attempts = self.throttles = self.retries = self.failed = self.finished = 0
        self.setup_error: str | None = None

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None

    def emit(self, event: Event, **fields: Any) -> None:
        record = Record.of(event, **fields)
        self.session.journal.on_event(record)  # the journal's failure is the run's: it propagates
        for listener in list(self.listeners):
            try:
                listener.on_event(record)
            except Exception:  # a display must never cost the journal a record
                self._drop_listener(listener)

    def _drop_listener(self, listener: Listener) -> None:
        """Switch a failing listener (a display whose pipe closed) off; the run goes on."""
        if listener in self.listeners:
            self.listeners.remove(listener)

    def _rate_changed(self, target: str | None, old: float, new: float, reason: str) -> None:
        self.emit(Event.RATE_CHANGED, old=round(old, 3), new=round(new, 3), reason=reason, **_target(target))

    def request_stop(self, reason: str) -> None:
        if not self.stopping:
            self.stop_reason = reason
            for scope in self._waits:  # a task waiting for a token or a go would start a call
                scope.cancel()

    async def _until_stopped(self, waiting: Awaitable[Any], lane: _Lane | None = None) -> tuple[bool, Any]:
        """Await `waiting` unless the run (or `lane`) stops first: (True, its value) or (False, None)."""
        if self.stopping or (lane is not None and lane.aborted):
            getattr(waiting, "close", lambda: None)()  # never awaited: say so to nobody
            return False, None
        with anyio.CancelScope() as scope:
            self._waits.add(scope)
            try:
                value = await waiting
            finally:
                self._waits.discard(scope)
            # A wait released in the same instant as the stop (the answer that ends a
            # lane's first wave both opens its gate and trips the failure threshold): anyio
            # does not cancel a task whose awaited future is already done, so look again.
            if not (self.stopping or (lane is not None and lane.aborted)):
                return True, value
        return False, None

    # -- the loop ---------------------------------------------------------------------

    async def execute_waves(self, ends: list[int], before_wave: BeforeWave | None) -> None:
        """Send the steps wave by wave: `ends` are cumulative step counts. A wave starts
        only when the ones before it have no failure, and, when `before_wave` is given
        and a wave already ran in this session, when it says yes."""
        start, ran = 0, False
        steps, failed_before = self.session.steps, self.session.failed_before
        for number, end in enumerate(ends, 1):
            wave = [s for s in self.session.todo if start <= s.index < end]
            failed_earlier = self.failed + sum(1 for s in steps[:start] if s.key in failed_before)
            start = end
            if not wave:
                continue  # finished in an earlier session
            if failed_earlier:
                self.request_stop("wave_failed")
                self.emit(Event.WAVE_STOPPED, wave=number, waves=len(ends), failed=failed_earlier)
                return
            if isinstance(before_wave, WaveGate) and number > 1:  # asked on a resume too
                self.session.journal.sync()  # a pause may last: what was written is made durable first
                record = lambda **fields: self.emit(Event.WAVE_GATE, wave=number, waves=len(ends), **fields)  # noqa: E731
                went_on, go = await self._until_stopped(before_wave.decide(number, len(ends), first_in_session=not ran,
                                                                           record=record))
                if not (went_on and go):
                    self.request_stop("interrupted")
                    return
            elif ran and before_wave is not None:
                self.session.journal.sync()  # a pause may last: what was written is made durable first
                went_on, go = await self._until_stopped(before_wave(number, len(ends)))
                if not (went_on and go):
                    self.request_stop("interrupted")
                    return
            if len(ends) > 1:
                self.emit(Event.WAVE_STARTED, wave=number, waves=len(ends), end=end, steps=len(wave))
            await self.execute(wave)
            ran = True
            if self.stopping:
                return

    async def execute(self, steps: list[Step]) -> None:
        """Every target's steps at once, each target with its own workers (its share of
        the concurrency) behind its own bucket: one target's throttles never hold another's.
        Default steps go once the version steps are done: each waits for its version's.
        Each target with steps in the wave is counted among the runs on its quota
        (`_Lane.join`) while the wave lasts, not while a held run waits between waves."""
        sending = list(dict.fromkeys(self.lanes[s.target] for s in steps))
        try:
            for lane in sending:
                lane.join()
            await self._execute_lanes([s for s in steps if not s.is_default])
            if not self.stopping:
                await self._execute_lanes([s for s in steps if s.is_default])
        finally:
            for lane in sending:
                lane.leave()

    async def _execute_lanes(self, steps: list[Step]) -> None:
        by_target: dict[str | None, list[Step]] = {}
        for step in steps:
            by_target.setdefault(step.target, []).append(step)

        async def worker(lane: _Lane, queue: Iterator[Step]) -> None:
            for step in queue:
                if self.stopping or lane.aborted:
                    return
                await self.run_step(lane, step)

        # Workers start round-robin over the targets, a loop turn between rounds, so every
        # target's first call leaves first: a worker runs until its call's first real I/O
        # (~1.5 ms of botocore's CPU), and started target by target, 20 targets' first bursts
        # (200 calls) put the last target's first call ~0.3 s after the first one's. Its
        # quota refills from its first call, so that was 0.3 s of its run (E 1.027 -> 1.017
        # while sending, benchmarks/targets.py). One target: no turn, the burst at once.
        async with anyio.create_task_group() as tg:
            lanes = [(self.lanes[target], iter(lane_steps), min(self.concurrency, len(lane_steps)))
                     for target, lane_steps in by_target.items()]
            for round_ in range(max((n for _, _, n in lanes), default=0)):
                for lane, queue, workers in lanes:
                    if round_ < workers:
                        tg.start_soon(worker, lane, queue)
                if len(lanes) > 1:
                    await anyio.sleep(0)

    async def run_step(self, lane: _Lane, step: Step) -> None:
        token = self.session.token(step)
        request = step.request()
        base = {"step": step.key, "client_token": token, **_target(step.target)}
        send = lane.client.update_package_version
        previous: dict[str, Any] = {}
        if step.is_default:
            send = lane.client.update_package
            current, previous = await defaultsteps.read_previous(lane.client, lane.read_limiter, step)
        self.emit(Event.STEP_STARTED, **base, attempt=1, **previous,
                  request=fields_for_journal(request, sensitive=self.options.journal_sensitive, key=self.session.key))
        if step.is_default:
            verdict = defaultsteps.before_sending(step, current, previous, self.outcomes, self.session.prior)
            if verdict is not None and verdict.setup_error:
                # as for an update: nothing is wrong with the step; resume with fresh credentials
                self.request_stop("setup")
                self.setup_error = self.setup_error or verdict.setup_error
                return self._unfinished(step, 0)
            if verdict is not None:
                return self._finish(lane, step, verdict.outcome, 0, base, **verdict.detail)
        policy = self.options.policy
        attempt = 0
        while True:
            attempt += 1
            if self.stopping or lane.aborted:
                return self._unfinished(step, attempt - 1)
            if not lane.controller.try_acquire():  # no room in the bucket now: wait for it
                admitted, _ = await self._until_stopped(lane.controller.acquire(), lane)
                if not admitted:
                    # stopped while waiting for the bucket: leave the step open, a resume sends it
                    return self._unfinished(step, attempt - 1)
            first_burst = lane.controller.in_first_burst  # read before anything else is admitted
            self.attempts += 1
            try:
                async with self.slots:
                    await send(**request, clientToken=token)
            except Exception as exc:  # every failure is classified, none is lost
                kind = errors.classify(exc)
                code = errors.error_code(exc)
                if kind in (errors.Kind.CREDENTIALS, errors.Kind.SETUP):
                    # nothing is wrong with the step: leave it (and every other) for a resume
                    # with fresh credentials or a mended setup
                    self.request_stop("setup")
                    self.setup_error = self.setup_error or f"{code}: {errors.error_message(exc)}"
                    return self._unfinished(step, attempt)
                if kind is errors.Kind.THROTTLED:
                    self.throttles += 1
                    lane.controller.on_throttle(first_burst=first_burst)
                elif isinstance(exc, ClientError):
                    lane.controller.on_success()  # an answer: it reached the service and used quota
                if kind in (errors.Kind.CONFLICT, errors.Kind.PERMANENT) and await self._already_done(lane, step):
                    return self._finish(lane, step, Outcome.SKIPPED, attempt, base, code=code,
                                        message="already in the desired state", **previous)
                if policy.should_retry(kind, attempt) and not (self.stopping or lane.aborted):
                    self.retries += 1
                    self.emit(Event.ATTEMPT_FAILED, **base, attempt=attempt, code=code,
                              throttled=kind is errors.Kind.THROTTLED, kind=kind.name.lower())
                    slept, _ = await self._until_stopped(anyio.sleep(policy.retry_delay(kind, attempt) or 0.0), lane)
                    if not slept:
                        return self._unfinished(step, attempt)
                    continue
                if (self.stopping or lane.aborted) and kind is not errors.Kind.PERMANENT:
                    return self._unfinished(step, attempt)
                return self._finish(lane, step, Outcome.FAILED, attempt, base, code=code,
                                    message=errors.error_message(exc), permanent=kind is errors.Kind.PERMANENT)
            else:
                lane.controller.on_success()
                return self._finish(lane, step, Outcome.SUCCEEDED, attempt, base, **previous)

    async def _already_done(self, lane: _Lane, step: Step) -> bool:
        """After a refusal: is the version already as the step wants it (PUBLISH on a
        PUBLISHED version, or an earlier session's call that went through)?"""
        if step.is_default:
            return await defaultsteps.is_default_already(lane.client, lane.read_limiter, step)
        if step.action is None:
            return False
        # the same read and the same rules `fleetrel verify` applies: skipped means verify agrees
        return not drift_of(step, await read_version(lane.client, lane.read_limiter, step))

    def _finish(self, lane: _Lane, step: Step, outcome: Outcome, attempt: int, base: dict[str, Any],
                **detail: Any) -> None:
        self.emit(terminal_event(outcome), **base, attempt=attempt, **{k: v for k, v in detail.items() if v is not None})
        key = base["step"]
        self.outcomes[key] = StepOutcome(key, outcome, attempt, detail.get("code"), detail.get("message"))
        self.finished += 1
        lane.finished += 1
        if outcome is Outcome.FAILED:
            self.failed += 1
            lane.failed += 1
            self._check_abort(lane)

    def _unfinished(self, step: Step, attempts: int) -> None:
        self.outcomes[step.key] = StepOutcome(step.key, Outcome.UNFINISHED, attempts)

    def _check_abort(self, lane: _Lane) -> None:
        """The plan's `abort:` threshold, per target: a target whose own failure ratio
        passes it starts no more steps (its others stay unfinished); the other targets go
        on. With one target, that stops the run: it is aborted."""
        abort = self.session.plan.abort
        if lane.aborted or lane.finished < abort.min_finished or lane.failed / lane.finished <= abort.max_failure_ratio:
            return
        if lane.target is None:
            if not self.stopping:
                self.request_stop("aborted")
                self.emit(Event.RUN_ABORTED, failed=self.failed, finished=self.finished,
                          max_failure_ratio=abort.max_failure_ratio)
            return
        lane.aborted = True
        self.emit(Event.TARGET_ABORTED, target=lane.target, failed=lane.failed, finished=lane.finished,
                  max_failure_ratio=abort.max_failure_ratio)

    def result(self, elapsed: float) -> RunResult:
        return session_result(self.session, self.outcomes, elapsed=elapsed, attempts=self.attempts,
                              throttles=self.throttles, retries=self.retries,
                              final_rate=sum(lane.controller.rate for lane in self.lanes.values()),
                              stop_reason=self.stop_reason, setup_error=self.setup_error,
                              per_target=None not in self.lanes)


class _View:
    """What a display may read of a running session (see `fleetrel.events.SessionView`)."""

    __slots__ = ("_execution",)

    def __init__(self, execution: _Execution) -> None:
        self._execution = execution

    @property
    def rate(self) -> float:
        return sum(lane.controller.rate for lane in self._execution.lanes.values())

    @property
    def ceiling(self) -> float:
        return sum(lane.controller.ceiling for lane in self._execution.lanes.values())

    @property
    def to_do(self) -> int:
        return len(self._execution.session.todo)

    def targets(self) -> dict[str, tuple[int, float, float]]:
        """Per target of a plan with `targets:`: (steps to do in this session, rate, ceiling)."""
        lanes = self._execution.lanes
        if len(lanes) == 1 and None in lanes:
            return {}
        to_do = self._execution.session.todo_by_target
        return {str(t): (to_do.get(str(t), 0), lane.controller.rate, lane.controller.ceiling)
                for t, lane in lanes.items()}


async def execute(session: Session, client: Any, options: RunOptions | None = None, *,
                  listeners: Iterable[Listener] = (), waves: list[int] | None = None,
                  before_wave: BeforeWave | None = None, stop: Stop | None = None) -> RunResult:
    """Send what `session` has left to do through `client` (an aiobotocore IoT client or
    `fleetrel.testing.FakeIoT`; for a plan with `targets:`, a mapping of target name to
    client) and journal every event.

    `waves` (cumulative step counts; default: the plan's `waves:`) sends the steps in
    waves, asking `before_wave` before each after the first. `stop` ends the run early:
    `stop.request()` starts no new attempt, `stop.now()` also cancels the calls in flight.
    """
    options = options or RunOptions()
    listeners = list(listeners)
    clients = dict(client) if isinstance(client, Mapping) else {None: client}
    session.place_unresolved(clients)
    execution = _Execution(session, options, listeners, clients)
    event, fields = start_record(session, options)
    execution.emit(event, **fields)
    view = _View(execution)
    for listener in list(execution.listeners):
        if isinstance(listener, StartListener):
            try:
                listener.on_start(view)
            except Exception:  # as in emit: the display is switched off
                execution._drop_listener(listener)
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_sync_journal, session)
        if stop is not None:
            stop._subscribe(lambda: execution.request_stop(stop.reason or "interrupted"))
            stop._subscribe(lambda: tg.cancel_scope.cancel() if stop.forced else None)
            if stop.reason is not None:
                execution.request_stop(stop.reason)
        await execution.execute_waves(list(waves or session.plan.wave_ends()), before_wave)
        tg.cancel_scope.cancel()  # the journal's timer
    result = execution.result(time.monotonic() - started)
    closing = end_record(result)
    if closing is not None:
        execution.emit(closing[0], **closing[1])
    return result


def _target(target: str | None) -> dict[str, str]:
    """The `target` field of a record, for a plan with targets (none for a single-target plan)."""
    return {"target": target} if target is not None else {}


async def _sync_journal(session: Session) -> None:
    """fsync the journal's new records every SYNC_INTERVAL seconds while the run goes on."""
    while True:
        await anyio.sleep(SYNC_INTERVAL)
        session.journal.sync()
