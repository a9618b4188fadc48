"""One vocabulary for a run: its events, step outcomes, run statuses and exit codes.

    from fleetrel.events import Event, Record, Status, ExitCode, run_status

    def on_event(record: Record) -> None:          # every listener's one method
        if record.event in TERMINAL:
            print(record.event.value, record.fields["step"])

    run_status(Ending.FINISHED, {"failed": 0, "unfinished": 0})   # Status.COMPLETE
    ExitCode.for_status(Status.ABORTED)                           # ExitCode.ABORTED (3)

The engine writes these names into the journal, the journal reads them back, the
progress displays count them and the CLI turns statuses into exit codes: each is defined
here once. The enums are `StrEnum`/`IntEnum`, so they compare equal to (and serialise as)
the plain strings and numbers of journals written before they existed.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Protocol, runtime_checkable


class Event(enum.StrEnum):
    """A journal record's `event`: what happened."""

    RUN_STARTED = "run_started"  # the header: first line of a journal
    RUN_RESUMED = "run_resumed"  # a later session of the same run
    WAVE_STARTED = "wave_started"
    WAVE_STOPPED = "wave_stopped"  # a wave held back by failures in the waves before it
    STEP_STARTED = "step_started"
    ATTEMPT_FAILED = "attempt_failed"  # an attempt failed and the step will try again
    STEP_SUCCEEDED = "step_succeeded"
    STEP_SKIPPED = "step_skipped"  # already in the state the step asks for
    STEP_FAILED = "step_failed"
    RATE_CHANGED = "rate_changed"
    RUN_ABORTED = "run_aborted"  # the plan's failure threshold tripped
    TARGET_ABORTED = "target_aborted"  # ... for one target of several: it starts no more steps
    RUN_INTERRUPTED = "run_interrupted"  # a signal, or the operator declined the next wave
    RUN_FINISHED = "run_finished"
    SHARD_RESTARTED = "shard_restarted"  # `run --ray`: a shard's actor died, came back and resends its steps left
    WAVE_GATE = "wave_gate"  # a decision at a wave boundary: who or what held, stopped or let the next wave go


#: A default step's records (`step_started`, `step_succeeded`, `step_skipped`): the
#: package's default version before the step (null: none), read with GetPackage.
PREVIOUS_DEFAULT = "previous_default"
#: The error code of a default step whose version step did not succeed (fleetrel's, not AWS's).
PREREQUISITE_FAILED = "PrerequisiteFailed"

#: A step's last word in a journal: exactly one per step of a run.
TERMINAL = frozenset({Event.STEP_SUCCEEDED, Event.STEP_SKIPPED, Event.STEP_FAILED})
#: The records that open a session of a run.
SESSION_STARTS = frozenset({Event.RUN_STARTED, Event.RUN_RESUMED})


class Outcome(enum.StrEnum):
    """How one step ended, in one session or over the whole run."""

    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNFINISHED = "unfinished"  # no terminal record: a resume sends it again

    @classmethod
    def of(cls, event: Event | str) -> "Outcome":
        """The outcome a terminal event records (`step_failed` → FAILED)."""
        return cls(str(event).removeprefix("step_"))


#: A terminal record's outcome by its event name (a journal line's `event` string), for
#: the readers that go over records one by one.
OUTCOME_OF: Mapping[str, str] = MappingProxyType({str(e): Outcome.of(e).value for e in TERMINAL})


def terminal_event(outcome: Outcome) -> Event:
    return Event(f"step_{outcome.value}")


class Ending(enum.StrEnum):
    """How a session ended, as its last record says (None: killed, or still running)."""

    FINISHED = "run_finished"
    ABORTED = "run_aborted"
    INTERRUPTED = "run_interrupted"


class Status(enum.StrEnum):
    """A run's status, the same whether worked out live or from its journal."""

    COMPLETE = "complete"
    FAILED = "failed"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"
    RUNNING = "running"  # only from a journal whose run holds its lock now


def run_status(ending: Ending | str | None, counts: Mapping[str, int], *, running: bool = False) -> Status:
    """The one rule for a run's status, from how its last session ended and the step counts.

    A finished session with failures is FAILED even with steps left unsent (a failed wave
    holds the later waves back: fix, then resume with --retry-failed); a finished session
    with nothing failed and nothing left is COMPLETE; anything that stopped early is
    ABORTED or INTERRUPTED; a journal whose writer still holds it is RUNNING.
    """
    if ending is None and running:
        return Status.RUNNING
    if ending == Ending.ABORTED:
        return Status.ABORTED
    if ending == Ending.FINISHED and (counts.get("failed", 0) or not counts.get("unfinished", 0)):
        return Status.FAILED if counts.get("failed", 0) else Status.COMPLETE
    return Status.INTERRUPTED


def ending_for(status: Status) -> Ending:
    """The record that closes a session which reached `status`."""
    return {Status.ABORTED: Ending.ABORTED, Status.INTERRUPTED: Ending.INTERRUPTED}.get(status, Ending.FINISHED)


class ExitCode(enum.IntEnum):
    """Every command's exit codes, the emulator's included."""

    OK = 0
    FAILED = 1  # some steps failed; `verify` found drift
    INVALID = 2  # invalid input or setup; nothing was sent
    ABORTED = 3  # the plan's failure threshold stopped the run
    # `status` of a run that holds its journal now: not an outcome yet, ask again later
    # (sysexits.h's EX_TEMPFAIL, "the user is invited to retry"), apart from 130, a run
    # that stopped (or was killed) and waits for its resume
    RUNNING = 75
    INTERRUPTED = 130  # Ctrl-C, SIGTERM, a declined wave (128 + SIGINT, as shells do)

    @classmethod
    def for_status(cls, status: Status | str) -> "ExitCode":
        return {Status.COMPLETE: cls.OK, Status.FAILED: cls.FAILED, Status.ABORTED: cls.ABORTED,
                Status.RUNNING: cls.RUNNING}.get(Status(status), cls.INTERRUPTED)


@dataclass(frozen=True, slots=True)
class Record:
    """What a listener receives: an event and its fields (read-only)."""

    event: Event
    fields: Mapping[str, Any]

    @classmethod
    def of(cls, event: Event, **fields: Any) -> "Record":
        return cls(event, MappingProxyType(fields))

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


class SessionView(Protocol):
    """A read-only view of a running session, for displays: nothing here changes the run."""

    @property
    def rate(self) -> float: ...  # calls per second the rate controller admits now

    @property
    def ceiling(self) -> float: ...  # the most it will ever admit (limits.rate)

    @property
    def to_do(self) -> int: ...  # steps this session set out to finish

    def targets(self) -> dict[str, tuple[int, float, float]]: ...  # per target: (to do, rate, ceiling); {} for one


@runtime_checkable
class Listener(Protocol):
    """Anything that wants the run's events: the journal, a progress display, a test.

    `on_event` is called synchronously on the engine's path: count, do not block.
    """

    def on_event(self, record: Record) -> None: ...


@runtime_checkable
class StartListener(Listener, Protocol):
    """A listener that also wants the session's live view once, when it starts."""

    def on_start(self, view: SessionView) -> None: ...
