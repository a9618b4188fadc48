"""The run: every planned step sent once, as fast as the service allows, resumable.

    result = await run(load_plan("plans/demo.yaml"), endpoint_url="http://127.0.0.1:5000")
    print(result.succeeded, result.failed)

Per step: wait for the rate controller's bucket (every attempt, retries included), call
UpdatePackageVersion with the step's deterministic clientToken, classify the answer,
retry or finish, and tell the listeners (the journal, a progress display). The engine
knows nothing of YAML or terminals.

Guarantees kept here:
- each step ends in exactly one terminal journal record (succeeded, skipped, failed) or
  none when the run is stopped before it finished, so a resume re-sends it;
- a resumed run reuses the journal's run_id, hence the same clientTokens;
- a step the service rejected for good is not retried, neither now nor on resume
  (unless `retry_failed`).
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import anyio
from aiolimiter import AsyncLimiter
from botocore.exceptions import ClientError

from fleetrel import errors
from fleetrel.aws import iot_client
from fleetrel.journal import FORMAT_VERSION, Journal, JournalError, RunState, fields_for_journal, replay
from fleetrel.plan import ReleasePlan, Step
from fleetrel.ratecontrol import RateController
from fleetrel.state import VersionState, drift_of
from fleetrel.tokens import client_token


class Listener(Protocol):
    """Anything that wants the run's events: the journal, a progress display, a test."""

    def on_event(self, event: str, **fields: Any) -> None: ...


class PlanChanged(JournalError):
    """The journal belongs to a different version of the plan."""


@dataclass
class StepOutcome:
    key: str
    outcome: str  # succeeded | skipped | failed | unfinished | done-before
    attempts: int = 0
    code: str | None = None
    message: str | None = None


@dataclass
class RunResult:
    """What a run (or a resume) did. `status`: complete, failed, aborted, interrupted."""

    run_id: str
    plan: str
    journal: str
    status: str
    steps: int
    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    unfinished: int = 0
    done_before: int = 0  # finished in an earlier session of this run
    attempts: int = 0  # UpdatePackageVersion calls sent in this session
    throttles: int = 0
    retries: int = 0
    elapsed: float = 0.0
    final_rate: float = 0.0
    failures_by_code: dict[str, int] = field(default_factory=dict)
    outcomes: list[StepOutcome] = field(default_factory=list)

    @property
    def calls_per_second(self) -> float:
        return self.attempts / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def throttled_fraction(self) -> float:
        return self.throttles / self.attempts if self.attempts else 0.0

    @property
    def exit_code(self) -> int:
        return {"complete": 0, "failed": 1, "aborted": 3, "interrupted": 130}[self.status]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(calls_per_second=self.calls_per_second, throttled_fraction=self.throttled_fraction)
        return out


def default_journal_path(plan: ReleasePlan) -> Path:
    """`<plan file stem>.journal.jsonl` in the current directory (the plan name for a
    plan built in code)."""
    source = getattr(plan, "source", None)
    stem = Path(source).stem if source else plan.plan
    return Path.cwd() / f"{stem}.journal.jsonl"


def plan_differences(state: RunState, steps: list[Step]) -> list[str]:
    """What changed between the plan a journal was written for and this one."""
    old: dict[str, str] = state.header.get("step_digests", {})
    new = {s.key: s.request_digest()[:16] for s in steps}
    diffs = [f"added: {k}" for k in new if k not in old]
    diffs += [f"removed: {k}" for k in old if k not in new]
    diffs += [f"changed: {k}" for k in new if k in old and old[k] != new[k]]
    if not diffs and list(old) != list(new):
        diffs.append("the steps are in a different order")
    return diffs


class Run:
    """One session of a run. Use `run()`; this class holds the state it shares."""

    def __init__(
        self,
        plan: ReleasePlan,
        steps: list[Step],
        todo: list[Step],
        run_id: str,
        listeners: list[Listener],
        *,
        rate: float,
        burst: int,
        concurrency: int,
        adaptive: bool,
        policy: errors.RetryPolicy,
        journal_sensitive: bool,
    ) -> None:
        self.plan = plan
        self.steps = steps
        self.todo = todo
        self.run_id = run_id
        self.listeners = listeners
        self.concurrency = concurrency
        self.policy = policy
        self.journal_sensitive = journal_sensitive
        self.controller = RateController(rate=rate, burst=burst, adaptive=adaptive, floor=min(0.5, rate))
        self.controller.on_rate_change = self._rate_changed
        # Read-backs (GetPackageVersion) have their own quota in AWS: their own bucket.
        self.read_limiter = AsyncLimiter(max(1.0, rate), 1.0)
        self.stopping = False
        self.stop_reason: str | None = None
        self.outcomes: dict[str, StepOutcome] = {}
        self.attempts = 0
        self.throttles = 0
        self.retries = 0
        self.failed = 0
        self.finished = 0

    def emit(self, event: str, **fields: Any) -> None:
        for listener in self.listeners:
            listener.on_event(event, **fields)

    def _rate_changed(self, old: float, new: float, reason: str) -> None:
        self.emit("rate_changed", old=round(old, 3), new=round(new, 3), reason=reason)

    def request_stop(self, reason: str) -> None:
        if not self.stopping:
            self.stopping = True
            self.stop_reason = reason

    # -- the loop ---------------------------------------------------------------------

    async def execute_waves(self, client: Any, ends: list[int], before_wave: Callable[[int, int], bool] | None,
                            failed_before: set[str]) -> None:
        """Send the steps wave by wave: `ends` are cumulative step counts. A wave starts
        only when the ones before it have no failure, and, when `before_wave` is given
        and a wave already ran in this session, when it says yes (it runs in a worker
        thread, so it may block on a prompt or a soak-time pause)."""
        start, ran = 0, False
        for number, end in enumerate(ends, 1):
            wave = [s for s in self.todo if start <= s.index < end]
            failed_earlier = self.failed + sum(1 for s in self.steps[:start] if s.key in failed_before)
            start = end
            if not wave:
                continue  # finished in an earlier session
            if failed_earlier:
                self.request_stop("wave_failed")
                self.emit("wave_stopped", wave=number, waves=len(ends), failed=failed_earlier)
                return
            if ran and before_wave is not None:
                if not await anyio.to_thread.run_sync(before_wave, number, len(ends), abandon_on_cancel=True):
                    self.request_stop("interrupted")
                    return
            if len(ends) > 1:
                self.emit("wave_started", wave=number, waves=len(ends), end=end, steps=len(wave))
            await self.execute(client, wave)
            ran = True
            if self.stopping:
                return

    async def execute(self, client: Any, steps: list[Step]) -> None:
        queue = iter(steps)

        async def worker() -> None:
            for step in queue:
                if self.stopping:
                    return
                await self.run_step(client, step)

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.concurrency, len(steps))):
                tg.start_soon(worker)

    async def run_step(self, client: Any, step: Step) -> None:
        token = client_token(self.run_id, step)
        request = step.request()
        base = {"step": step.key, "client_token": token}
        self.emit("step_started", **base, attempt=1,
                  request=fields_for_journal(request, sensitive=self.journal_sensitive))
        attempt = 0
        while True:
            attempt += 1
            await self.controller.acquire()
            if self.stopping:
                # admitted after the stop: leave the step open, a resume sends it
                return self._unfinished(step, attempt - 1)
            self.attempts += 1
            try:
                await client.update_package_version(**request, clientToken=token)
            except Exception as exc:  # every failure is classified, none is lost
                kind = errors.classify(exc)
                code = errors.error_code(exc)
                if kind is errors.Kind.THROTTLED:
                    self.throttles += 1
                    self.controller.on_throttle()
                elif isinstance(exc, ClientError):
                    self.controller.on_success()  # an answer: it reached the service and used quota
                if kind in (errors.Kind.CONFLICT, errors.Kind.PERMANENT) and await self._already_done(client, step):
                    return self._finish(step, "skipped", attempt, base, code=code,
                                        message="already in the desired state")
                if self.policy.should_retry(kind, attempt) and not self.stopping:
                    self.retries += 1
                    self.emit("attempt_failed", **base, attempt=attempt, code=code,
                              throttled=kind is errors.Kind.THROTTLED, kind=kind.name.lower())
                    await anyio.sleep(self.policy.retry_delay(kind, attempt) or 0.0)
                    if self.stopping:
                        return self._unfinished(step, attempt)
                    continue
                if self.stopping and kind is not errors.Kind.PERMANENT:
                    return self._unfinished(step, attempt)
                return self._finish(step, "failed", attempt, base, code=code, message=errors.error_message(exc),
                                    permanent=kind is errors.Kind.PERMANENT)
            else:
                self.controller.on_success()
                return self._finish(step, "succeeded", attempt, base)

    async def _already_done(self, client: Any, step: Step) -> bool:
        """After a refusal: is the version already as the step wants it (PUBLISH on a
        PUBLISHED version, or an earlier session's call that went through)?"""
        if step.action is None:
            return False
        async with self.read_limiter:
            try:
                current = await client.get_package_version(packageName=step.package, versionName=step.version)
            except Exception:
                return False
        # the same rules `fleetrel verify` applies: skipped means verify will agree
        return not drift_of(step, VersionState.from_response(current))

    def _finish(self, step: Step, outcome: str, attempt: int, base: dict[str, Any], **detail: Any) -> None:
        self.emit(f"step_{outcome}", **base, attempt=attempt, **{k: v for k, v in detail.items() if v is not None})
        self.outcomes[step.key] = StepOutcome(step.key, outcome, attempt, detail.get("code"), detail.get("message"))
        self.finished += 1
        if outcome == "failed":
            self.failed += 1
            self._check_abort()

    def _unfinished(self, step: Step, attempts: int) -> None:
        self.outcomes[step.key] = StepOutcome(step.key, "unfinished", attempts)

    def _check_abort(self) -> None:
        abort = self.plan.abort
        if self.finished >= abort.min_finished and self.failed / self.finished > abort.max_failure_ratio:
            if not self.stopping:
                self.request_stop("aborted")
                self.emit("run_aborted", failed=self.failed, finished=self.finished,
                          max_failure_ratio=abort.max_failure_ratio)


async def run(
    plan: ReleasePlan,
    *,
    journal_path: Path | str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    rate: float | None = None,
    burst: int | None = None,
    concurrency: int | None = None,
    adaptive: bool | None = None,
    new_run: bool = False,
    retry_failed: bool = False,
    journal_sensitive: bool = False,
    listeners: Iterable[Listener] = (),
    policy: errors.RetryPolicy | None = None,
    handle_signals: bool = False,
    stop_grace: float = 10.0,
    on_start: Callable[["Run"], None] | None = None,
    waves: list[int] | None = None,
    before_wave: Callable[[int, int], bool] | None = None,
) -> RunResult:
    """Run (or resume) a release plan. Arguments left as None come from the plan.

    The journal is `<plan stem>.journal.jsonl` in the current directory unless
    `journal_path` is given. If it holds this plan's run, the run resumes: finished steps
    are skipped and the others are re-sent with their original clientTokens. If it holds
    a different plan, `PlanChanged` is raised unless `new_run` (the old journal is kept,
    renamed). `waves` (cumulative step counts, as `plan.wave_ends()`) sends the steps
    in waves: see `Run.execute_waves`. With `handle_signals`, SIGINT/SIGTERM stop the run gracefully: no new step starts,
    in-flight calls get `stop_grace` seconds, the result's status is interrupted.
    """
    steps = plan.steps()
    path = Path(journal_path) if journal_path else default_journal_path(plan)
    limits = plan.limits
    target = plan.target
    rate = float(rate if rate is not None else limits.rate)
    burst = int(burst if burst is not None else limits.burst)
    concurrency = int(concurrency if concurrency is not None else limits.concurrency)
    adaptive = limits.adaptive if adaptive is None else adaptive

    journal = Journal.open(path)
    try:
        state = _prior_state(path, plan, steps, new_run=new_run)
        if new_run and path.stat().st_size:
            # keep the old run's journal under its run id; renamed while we hold its lock
            kept = path.with_name(f"{path.name}.{state.run_id if state else time.time_ns()}")
            os.replace(path, kept)
            journal.close()
            journal = Journal.open(path)
            state = None
        run_id = state.run_id if state else str(uuid.uuid4())
        done = state.finished_keys(include_failed=not retry_failed) if state else set()
        todo = [s for s in steps if s.key not in done]
        session = Run(plan, steps, todo, run_id, [journal, *listeners], rate=rate, burst=burst,
                      concurrency=concurrency, adaptive=adaptive, policy=policy or errors.RetryPolicy(),
                      journal_sensitive=journal_sensitive)
        header = {"run_id": run_id, "plan": plan.plan, "plan_digest": plan.digest, "steps": len(steps),
                  "to_do": len(todo), "rate": rate, "burst": burst, "concurrency": concurrency, "pid": os.getpid()}
        if getattr(plan, "source", None):  # so `fleetrel status` can print the command that resumes
            header["plan_file"] = str(plan.source)
        overrides = {"endpoint_url": endpoint_url, "region": region, "profile": profile}
        if any(overrides.values()):  # where the plan's own target was overridden (no secrets here)
            header["target"] = {k: v for k, v in overrides.items() if v}
        if state is None:
            from fleetrel import __version__

            session.emit("run_started", format=FORMAT_VERSION, fleetrel_version=__version__, **header,
                         step_digests={s.key: s.request_digest()[:16] for s in steps})
        else:
            session.emit("run_resumed", **header, done_before=len(done))
        if on_start:
            on_start(session)
        started = time.monotonic()
        async with iot_client(region=region or target.region, profile=profile or target.profile,
                              endpoint_url=endpoint_url or target.endpoint_url, concurrency=concurrency) as client:
            async with anyio.create_task_group() as tg:
                if handle_signals:
                    tg.start_soon(_watch_signals, session, tg.cancel_scope, stop_grace)
                # failures of earlier sessions that are not being retried now hold back later waves
                retried = {s.key for s in todo}
                failed_before = {k for k, r in state.steps.items() if r.outcome == "failed"} - retried if state else set()
                await session.execute_waves(client, list(waves or [len(steps)]), before_wave, failed_before)
                tg.cancel_scope.cancel()
        result = _result(session, state, steps, path, time.monotonic() - started)
        ending = {"aborted": "run_aborted", "interrupted": "run_interrupted"}.get(result.status, "run_finished")
        if ending != "run_aborted":  # run_aborted was journalled when the threshold tripped
            session.emit(ending, succeeded=result.succeeded, skipped=result.skipped, failed=result.failed,
                         unfinished=result.unfinished, attempts=result.attempts, throttles=result.throttles,
                         elapsed=round(result.elapsed, 3))
        return result
    finally:
        journal.close()


def _prior_state(path: Path, plan: ReleasePlan, steps: list[Step], *, new_run: bool) -> RunState | None:
    if path.stat().st_size == 0:
        return None
    try:
        state = replay(path)
    except JournalError:
        if new_run:  # a damaged journal is kept aside, not read
            return None
        raise
    if state.plan_digest != plan.digest and not new_run:
        diffs = plan_differences(state, steps)
        shown = "\n  ".join(diffs[:20]) + (f"\n  ... and {len(diffs) - 20} more" if len(diffs) > 20 else "")
        raise PlanChanged(
            f"{path}: this journal is for another version of plan {state.header.get('plan')!r} "
            f"(run {state.run_id}):\n  {shown}\n"
            "Pass --new-run to start a new run (the old journal is kept, renamed), "
            "or restore the plan to resume."
        )
    return state


async def _watch_signals(session: Run, scope: anyio.CancelScope, grace: float) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if session.stopping:
                scope.cancel()  # a second signal: stop now, in-flight steps stay open
                return
            session.request_stop("interrupted")
            with anyio.move_on_after(grace):
                await anyio.sleep_forever()
            scope.cancel()
            return


def _result(session: Run, state: RunState | None, steps: list[Step], path: Path, elapsed: float) -> RunResult:
    prior = state.steps if state else {}
    outcomes: list[StepOutcome] = []
    counts = {"succeeded": 0, "skipped": 0, "failed": 0, "unfinished": 0}
    done_before = 0
    sent_now = {s.key for s in session.todo}
    for step in steps:
        outcome = session.outcomes.get(step.key)
        if outcome is None:
            rec = prior.get(step.key)
            if rec is not None and rec.outcome is not None and step.key not in sent_now:
                done_before += 1
                outcome = StepOutcome(step.key, rec.outcome, rec.attempts, rec.code, rec.message)
            else:
                outcome = StepOutcome(step.key, "unfinished")
        counts[outcome.outcome] += 1
        outcomes.append(outcome)
    by_code: dict[str, int] = {}
    for o in outcomes:
        if o.outcome == "failed":
            by_code[o.code or "unknown"] = by_code.get(o.code or "unknown", 0) + 1
    if session.stop_reason == "aborted":
        status = "aborted"
    elif session.stop_reason == "wave_failed":
        status = "failed"
    elif counts["unfinished"]:
        status = "interrupted"
    else:
        status = "failed" if counts["failed"] else "complete"
    return RunResult(
        run_id=session.run_id, plan=session.plan.plan, journal=str(path), status=status, steps=len(steps),
        done_before=done_before, attempts=session.attempts, throttles=session.throttles, retries=session.retries,
        elapsed=elapsed, final_rate=session.controller.rate, failures_by_code=by_code, outcomes=outcomes, **counts,
    )
