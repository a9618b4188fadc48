"""Reading a journal back: the run it tells, from its lines alone.

    state = replay(Path("spring.journal.jsonl"))     # → RunState
    state.status, state.counts(), state.steps["fw/1.0"].outcome

One line at a time (a 100k-step journal is never held whole). A torn last line (a crash
mid-write) is tolerated and reported; a line that does not parse anywhere else is an
error. `fleetrel.journal` writes what this reads.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

from fleetrel.events import SESSION_STARTS, TERMINAL, Ending, Event, Outcome, Status, run_status
from fleetrel.journal import FORMAT_VERSION, JournalError, is_locked, parse_line


@dataclass(slots=True)
class StepRecord:
    """What the journal says about one step."""

    key: str
    client_token: str | None = None
    attempts: int = 0
    throttles: int = 0
    outcome: Outcome | None = None  # SUCCEEDED | SKIPPED | FAILED; None: not finished
    code: str | None = None
    message: str | None = None
    permanent: bool | None = None
    terminal_records: int = 0


@dataclass
class RunState:
    """A run as replayed from its journal alone."""

    path: Path
    header: dict[str, Any]
    steps: dict[str, StepRecord] = field(default_factory=dict)
    sessions: int = 0  # how many times the run was started or resumed
    started: str | None = None
    ended: str | None = None
    ending: Ending | None = None  # None: killed (or still running)
    rate_changes: list[dict[str, Any]] = field(default_factory=list)
    throttles: int = 0
    retries: int = 0
    torn_tail: bool = False
    running: bool = False  # a fleetrel run holds the journal's lock right now
    target: dict[str, str] = field(default_factory=dict)  # the last session's --endpoint-url/--region/--profile
    identity: dict[str, Any] | None = None  # where the calls went: {endpoint, region, ...}, or per target
    scope: set[str] | None = None  # the targets its sessions were run for (`--target`); None: all of them
    gate_decisions: list[dict[str, Any]] = field(default_factory=list)  # `wave_gate` records (fleetrel.gates)
    fleet_checks: list[dict[str, Any]] = field(default_factory=list)  # each session's `fleet_check` (fleetrel.fleetcheck)

    @property
    def run_id(self) -> str:
        return self.header["run_id"]

    @property
    def plan_digest(self) -> str:
        return self.header["plan_digest"]

    def finished_keys(self, *, include_failed: bool) -> set[str]:
        done = {Outcome.SUCCEEDED, Outcome.SKIPPED} | ({Outcome.FAILED} if include_failed else set())
        return {k for k, s in self.steps.items() if s.outcome in done}

    @property
    def shard(self) -> dict[str, Any] | None:
        """{index, count, targets} for a shard's own journal (`fleetrel run --shard`); None otherwise."""
        return self.header.get("shard")

    def planned_keys(self) -> list[str]:
        """The steps this journal answers for: the plan's, or a shard's targets' own, or
        those of the targets its sessions were run for (`--target`)."""
        keys = list(self.header.get("step_digests", {}))
        targets = set(self.shard.get("targets", ())) if self.shard is not None else self.scope
        if targets is None:
            return keys
        return [k for k in keys if k.split(":", 1)[0] in targets]

    def targets_not_run(self) -> list[str]:
        """Targets of the plan that no session of a `--target` run was run for."""
        if self.scope is None or self.shard is not None:
            return []
        named = dict.fromkeys(k.split(":", 1)[0] for k in self.header.get("step_digests", {}) if ":" in k)
        return [t for t in named if t not in self.scope]

    def counts(self) -> dict[str, int]:
        out = {outcome.value: 0 for outcome in Outcome}
        steps, unfinished = self.steps, Outcome.UNFINISHED.value
        for key in self.planned_keys():
            rec = steps.get(key)
            out[rec.outcome if rec is not None and rec.outcome else unfinished] += 1
        return out

    def counts_per_target(self) -> dict[str, dict[str, int]]:
        """`counts()` per target, for a plan with `targets:` (step keys `target:package/version`)."""
        out: dict[str, dict[str, int]] = {}
        for key in self.planned_keys():
            if ":" not in key:
                return {}
            rec = self.steps.get(key)
            counts = out.setdefault(key.split(":", 1)[0], {outcome.value: 0 for outcome in Outcome})
            counts[rec.outcome if rec and rec.outcome else Outcome.UNFINISHED] += 1
        return out

    @property
    def status(self) -> Status:
        """The run's status by `fleetrel.events.run_status`, the rule the engine applies live."""
        return run_status(self.ending, self.counts(), running=self.running)


def replay(path: Path) -> RunState:
    """Read a journal back (see the module docstring)."""
    with open_journal(path) as file, collector_paused():
        state = _replay_lines(path, file)
    if state is None:
        raise JournalError(f"{path}: not a fleetrel journal (format {FORMAT_VERSION}): the first line is not its header")
    return state


def open_journal(path: Path) -> IO[bytes]:
    """The journal file for reading, or a JournalError that names it."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise JournalError(f"{path}: no such journal") from None
    except OSError as exc:
        raise JournalError(f"{path}: cannot read: {exc.strerror}") from None


@contextmanager
def collector_paused() -> Iterator[None]:
    """The records become a few objects each and no cycles: the collector, run every 700
    allocations, would only walk them again and again (a sixth of a 100k-step replay)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class JournalLines:
    """A journal's records one at a time, as dicts, for any reader that streams a journal
    (replay, `fleetrel report`, `fleetrel undo`):

        lines = JournalLines(path, file)
        for record in lines: ...
        lines.torn_tail      # the last line had no newline (a crash mid-write): ignored

    A first line that does not parse ends the records at once (the reader says "not a
    journal" when it saw no header); any later line that does not parse is an error.
    """

    __slots__ = ("path", "file", "torn_tail")

    def __init__(self, path: Path, file: IO[bytes]) -> None:
        self.path, self.file, self.torn_tail = path, file, False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for number, line in enumerate(self.file, 1):
            if not line.endswith(b"\n"):
                # no final newline: the last record was being written when the process died
                self.torn_tail = number > 1
                return
            try:
                record = parse_line(line)
                if not isinstance(record, dict) or "event" not in record:
                    raise ValueError("not a journal record")
            except (ValueError, UnicodeDecodeError) as exc:
                if number == 1:
                    return  # reported by the reader as not a journal
                raise JournalError(f"{self.path}:{number}: corrupt journal line ({exc}); "
                                   "the journal was edited or damaged") from None
            yield record


def is_header(record: dict[str, Any]) -> bool:
    return record.get("event") == Event.RUN_STARTED and record.get("format") == FORMAT_VERSION


def read_header(path: Path) -> dict[str, Any] | None:
    """A journal's first record, when it is a header; None for no journal (or not one).
    Only the first line is read: what a run's other journals say of their plan and places."""
    try:
        with open(path, "rb") as file:
            header = parse_line(file.readline())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return header if isinstance(header, dict) and is_header(header) else None


def _replay_lines(path: Path, file: IO[bytes]) -> RunState | None:
    """The run a journal's lines tell, or None when its first line is not a header."""
    state: RunState | None = None
    lines = JournalLines(path, file)
    for record in lines:
        if state is None:
            if not is_header(record):
                break
            state = RunState(path=path, header=record, running=is_locked(path))
            state.started = record.get("ts")
        _apply(state, record)
    if state is not None:
        state.torn_tail = lines.torn_tail
    return state


# What replay does per line, a 100k-step journal's 200k times over: the events looked up
# in plain dicts and sets rather than through the enums' class attributes.
_ENDINGS = {str(e): e for e in Ending}
_OUTCOME_OF = {str(e): Outcome(str(e).removeprefix("step_")) for e in TERMINAL}
_SESSION_STARTS = frozenset(str(e) for e in SESSION_STARTS)
_RATE_CHANGED = str(Event.RATE_CHANGED)
_ATTEMPT_FAILED = str(Event.ATTEMPT_FAILED)
_WAVE_GATE = str(Event.WAVE_GATE)


def merged_places(before: dict[str, Any] | None, now: dict[str, Any] | None) -> dict[str, Any]:
    """A run's places (`fleetrel.where`) with a later session's on top: a session of some
    targets records where those point, and the others' stay; a target's own fields merge
    (a resume's declared region and endpoint over the journal's resolved account)."""
    if not now:
        return dict(before or {})
    if not before:
        return dict(now)
    if all(isinstance(v, dict) for v in (*before.values(), *now.values())):
        return {**before, **{name: {**before.get(name, {}), **place} for name, place in now.items()}}
    return {**before, **now}


def _apply(state: RunState, record: dict[str, Any]) -> None:
    event = record["event"]
    if event in _SESSION_STARTS:
        state.sessions += 1
        state.ending = None
        state.target = record.get("target", {})
        state.identity = merged_places(state.identity, record.get("identity")) or None
        if record.get("fleet_check") is not None:
            state.fleet_checks.append({"ts": record.get("ts"), **record["fleet_check"]})
        only = record.get("only")
        if state.sessions == 1 or state.scope is not None:  # a session of every target makes it all
            state.scope = None if only is None else (state.scope or set()) | set(only)
        return
    if event in _ENDINGS:
        state.ending = _ENDINGS[event]
        state.ended = record.get("ts")
        return
    if event == _RATE_CHANGED:
        state.rate_changes.append(record)
        return
    if event == _WAVE_GATE:
        state.gate_decisions.append(record)
        return
    key = record.get("step")
    if key is None:
        return
    step = state.steps.get(key)
    if step is None:
        step = state.steps[key] = StepRecord(key=key)
    step.client_token = record.get("client_token", step.client_token)
    attempt = int(record.get("attempt", 0))
    if attempt > step.attempts:
        step.attempts = attempt
    if event == _ATTEMPT_FAILED:
        state.retries += 1
        if record.get("throttled"):
            step.throttles += 1
            state.throttles += 1
    elif event in _OUTCOME_OF:
        step.terminal_records += 1
        step.outcome = _OUTCOME_OF[event]
        step.code = record.get("code")
        step.message = record.get("message")
        step.permanent = record.get("permanent")
