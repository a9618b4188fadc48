"""What a session says of itself: the record that opens it in its journal, the one that
closes it, and the result it reached.

    event, fields = start_record(session, options)     # run_started (the header) or run_resumed
    result = session_result(session, outcomes, elapsed=..., ...)
    end_record(result)                                 # run_finished / run_interrupted, or None

One rule for the engine (`fleetrel.engine`) and for a driver that executes a session
elsewhere and journals its actors' records (`fleetrel.raydriver`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from fleetrel.events import Ending, Event, Outcome, ending_for, run_status
from fleetrel.journal import FORMAT_VERSION
from fleetrel.plan import Step
from fleetrel.result import RunResult, StepOutcome
from fleetrel.session import Session

if TYPE_CHECKING:
    from fleetrel.engine import RunOptions


def session_result(session: Session, outcomes_now: Mapping[str, StepOutcome], *, elapsed: float, attempts: int,
                   throttles: int, retries: int, final_rate: float, stop_reason: str | None,
                   setup_error: str | None, per_target: bool) -> RunResult:
    """What a session did: its steps' outcomes now (`outcomes_now`, by step key) over what
    earlier sessions journalled. One rule for the engine and for a driver that executes a
    session elsewhere (`fleetrel.raydriver`)."""
    prior = session.prior.steps if session.prior else {}
    sent_now = {s.key for s in session.todo}
    outcomes: list[StepOutcome] = []
    counts = {o.value: 0 for o in Outcome}
    done_before = 0
    unfinished, failed = Outcome.UNFINISHED, Outcome.FAILED
    by_code: dict[str, int] = {}
    scope = session.in_scope
    for step in scope:
        key = step.key
        outcome = outcomes_now.get(key)
        if outcome is None:
            rec = prior.get(key)
            if rec is not None and rec.outcome is not None and key not in sent_now:
                done_before += 1
                outcome = StepOutcome(key, rec.outcome, rec.attempts, rec.code, rec.message)
            else:
                outcome = StepOutcome(key, unfinished)
        counts[outcome.outcome] += 1
        outcomes.append(outcome)
        if outcome.outcome == failed:
            by_code[outcome.code or "unknown"] = by_code.get(outcome.code or "unknown", 0) + 1
    # a failed wave ends the session as finished: the run is failed, not interrupted
    if stop_reason in ("interrupted", "setup") and not counts[unfinished]:
        stop_reason = None  # a stop (SIGTERM, a declined wave) that came after every step ended changed nothing
    ending = {"aborted": Ending.ABORTED, "interrupted": Ending.INTERRUPTED,
              "setup": Ending.INTERRUPTED}.get(stop_reason or "", Ending.FINISHED)
    return RunResult(
        run_id=session.run_id, plan=session.plan.plan, journal=str(session.path),
        status=run_status(ending, counts), steps=len(scope), done_before=done_before,
        attempts=attempts, throttles=throttles, retries=retries, elapsed=elapsed,
        final_rate=final_rate, failures_by_code=by_code,
        outcomes=outcomes, targets=per_target_counts(scope, outcomes) if per_target else {},
        stopped_by=stop_reason, setup_error=setup_error, **counts,
    )


def start_record(session: Session, options: "RunOptions") -> tuple[Event, dict[str, Any]]:
    """The record that opens a session in its journal: `run_started` (the header) or `run_resumed`."""
    rate, burst, concurrency, _ = options.limits(session.plan)
    header = session.header(rate=rate, burst=burst, concurrency=concurrency)
    if session.resumed:
        return Event.RUN_RESUMED, header
    from fleetrel import __version__

    return Event.RUN_STARTED, {"format": FORMAT_VERSION, "fleetrel_version": __version__, **header}


def end_record(result: RunResult) -> tuple[Event, dict[str, Any]] | None:
    """The record that closes a session that reached `result` (None: `run_aborted` was
    journalled when the threshold tripped)."""
    ending = ending_for(result.status)
    if ending is Ending.ABORTED:
        return None
    reason = {"reason": result.stopped_by} if ending is Ending.INTERRUPTED and result.stopped_by else {}
    return Event(ending.value), dict(succeeded=result.succeeded, skipped=result.skipped, failed=result.failed,
                                     unfinished=result.unfinished, attempts=result.attempts,
                                     throttles=result.throttles, elapsed=round(result.elapsed, 3), **reason)




def per_target_counts(steps: list[Step], outcomes: list[StepOutcome]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for step, outcome in zip(steps, outcomes):
        counts = out.setdefault(step.target or "", {o.value: 0 for o in Outcome})
        counts[outcome.outcome] += 1
    return out
