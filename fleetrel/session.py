"""Opening a run before executing it: the journal, what it already holds, what is left.

    with open_session(plan, Path("spring.journal.jsonl"), new_run=False) as session:
        print(session.run_id, len(session.todo), "steps to send")
        result = await execute(session, client, options)      # fleetrel.engine

Opening takes the journal's exclusive lock, replays it, and decides whether this is a
new run, the resume of the run the journal holds, or a refusal: a journal written for
another version of the plan is refused (`PlanChanged`) unless `new_run`, in which case the
old journal is kept beside the new one under its run id. Nothing here sends a call or
knows the terminal; the CLI chooses the journal's path, the engine executes.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from fleetrel.events import Outcome
from fleetrel.journal import Journal, JournalError, RunState, replay
from fleetrel.plan import ReleasePlan, Step

STEP_DIGEST_CHARS = 16  # of a step's request digest, kept in the header to tell what changed


class PlanChanged(JournalError):
    """The journal belongs to a different version of the plan."""


@dataclass
class Session:
    """A run opened on its journal: who it is and what is left to send. Read-only to
    everything but the engine that executes it."""

    plan: ReleasePlan
    steps: list[Step]
    journal: Journal
    run_id: str
    prior: RunState | None  # what earlier sessions of this run journalled; None for a new run
    todo: list[Step]  # steps this session sends
    failed_before: set[str] = field(default_factory=set)  # failed earlier and not retried now
    target: dict[str, str] = field(default_factory=dict)  # where the calls go (never credentials)

    @property
    def path(self) -> Path:
        return self.journal.path

    @property
    def resumed(self) -> bool:
        return self.prior is not None

    @property
    def done_before(self) -> int:
        return len(self.steps) - len(self.todo)

    def header(self, **extra: Any) -> dict[str, Any]:
        """The fields of this session's first record (`run_started` or `run_resumed`)."""
        fields: dict[str, Any] = {"run_id": self.run_id, "plan": self.plan.plan, "plan_digest": self.plan.digest,
                                  "steps": len(self.steps), "to_do": len(self.todo), **extra, "pid": os.getpid()}
        if self.plan.source is not None:  # so `fleetrel status` can print the command that resumes
            fields["plan_file"] = str(self.plan.source)
        if self.target:
            fields["target"] = dict(self.target)
        if self.prior is None:
            fields["step_digests"] = step_digests(self.steps)
        else:
            fields["done_before"] = self.done_before
        return fields


def step_digests(steps: list[Step]) -> dict[str, str]:
    return {s.key: s.request_digest()[:STEP_DIGEST_CHARS] for s in steps}


def plan_differences(state: RunState, steps: list[Step]) -> list[str]:
    """What changed between the plan a journal was written for and this one."""
    old: dict[str, str] = state.header.get("step_digests", {})
    new = step_digests(steps)
    diffs = [f"added: {k}" for k in new if k not in old]
    diffs += [f"removed: {k}" for k in old if k not in new]
    diffs += [f"changed: {k}" for k in new if k in old and old[k] != new[k]]
    if not diffs and list(old) != list(new):
        diffs.append("the steps are in a different order")
    return diffs


@contextmanager
def open_session(plan: ReleasePlan, journal_path: Path, *, new_run: bool = False, retry_failed: bool = False,
                 target: dict[str, str] | None = None) -> Iterator[Session]:
    """Lock and read the journal, and say what this session of the run has to do.

    A journal that holds this plan's run resumes it: its run id (hence its clientTokens)
    is kept and the steps it finished are left out (failed ones too, unless
    `retry_failed`). A journal of another plan raises `PlanChanged`, unless `new_run`.
    """
    steps = plan.steps()
    journal = Journal.open(journal_path)
    try:
        state = _prior_state(journal_path, plan, steps, new_run=new_run)
        if new_run and journal_path.stat().st_size:
            # keep the old run's journal under its run id; renamed while we hold its lock
            kept = journal_path.with_name(f"{journal_path.name}.{state.run_id if state else uuid.uuid4()}")
            os.replace(journal_path, kept)
            journal.close()
            journal = Journal.open(journal_path)
            state = None
        done = state.finished_keys(include_failed=not retry_failed) if state else set()
        todo = [s for s in steps if s.key not in done]
        retried = {s.key for s in todo}
        failed_before = ({k for k, r in state.steps.items() if r.outcome == Outcome.FAILED} - retried
                         if state else set())
        yield Session(plan=plan, steps=steps, journal=journal, run_id=state.run_id if state else str(uuid.uuid4()),
                      prior=state, todo=todo, failed_before=failed_before, target=dict(target or {}))
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
            "Start a new run (the old journal is kept, renamed), or restore the plan to resume."
        )
    return state
