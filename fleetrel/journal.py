"""The progress journal: one JSON object per line, appended as events happen.

    journal = Journal.open(Path("spring.journal.jsonl"))      # takes an exclusive lock
    journal.write(Event.RUN_STARTED, format=FORMAT_VERSION, run_id=..., ...)   # the header
    journal.write(Event.STEP_SUCCEEDED, step="fw/1.0", client_token=..., attempt=1)
    journal.close()                                           # fsync, unlock
    state = replay(Path("spring.journal.jsonl"))              # → RunState

As an engine listener it takes `on_event(record)`; `write` is the same for callers
that have no `Record` at hand.

Every record is flushed to the OS as it is written, so a killed process (SIGKILL) loses
nothing it wrote. fsync (which only matters if the machine itself dies) is batched: a
terminal record is fsynced at most `fsync_interval` seconds after it is written, and
always on close. Losing a record to a power cut costs at most a re-send, which the
deterministic clientToken makes harmless.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog

from fleetrel.events import SESSION_STARTS, TERMINAL, Ending, Event, Outcome, Record, Status, run_status

FORMAT_VERSION = 1
SENSITIVE_FIELDS = ("description", "attributes", "recipe")


class JournalError(Exception):
    """A journal the user pointed us at cannot be used (locked, corrupt, another plan's)."""


def fields_for_journal(request: dict[str, Any], *, sensitive: bool) -> dict[str, Any]:
    """The request as the journal stores it: sensitive fields (per the AWS model) as
    digests unless the user opted in with --journal-sensitive."""
    from fleetrel.plan import digest

    out = {k: v for k, v in request.items() if k not in ("packageName", "versionName")}
    if not sensitive:
        for name in SENSITIVE_FIELDS:
            if name in out:
                out[name] = "sha256:" + digest(out[name])[:16]
    return out


class Journal:
    """Append-only JSON-lines writer (structlog, JSON renderer) holding an exclusive lock.

    It is an engine listener: the engine calls `on_event(event, **fields)`.
    """

    __slots__ = ("path", "_file", "_log", "_fsync_interval", "_last_fsync", "_dirty")

    def __init__(self, path: Path, file: IO[str], *, fsync_interval: float = 0.5) -> None:
        self.path = path
        self._file = file
        self._fsync_interval = fsync_interval
        self._last_fsync = time.monotonic()
        self._dirty = False
        self._log = structlog.wrap_logger(
            structlog.WriteLogger(file),  # writes one line and flushes it
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                structlog.processors.JSONRenderer(sort_keys=False, ensure_ascii=False),
            ],
            wrapper_class=structlog.BoundLogger,
            context_class=dict,
            cache_logger_on_first_use=True,
        )

    @classmethod
    def open(cls, path: Path, **kwargs: Any) -> "Journal":
        """Open for appending, lock it, and cut a torn last line left by a crash so that
        the next record starts on a line of its own."""
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise JournalError(
                f"{path}: another fleetrel run holds this journal; wait for it to finish "
                "(or stop it) before running the plan again"
            ) from None
        _truncate_torn_tail(file)
        return cls(path, file, **kwargs)

    def on_event(self, record: Record) -> None:
        self.write(record.event, **record.fields)

    def write(self, event: Event, **fields: Any) -> None:
        self._log.info(str(event), **fields)
        if event in TERMINAL or event.startswith("run_"):
            self._dirty = True
            now = time.monotonic()
            if now - self._last_fsync >= self._fsync_interval:
                self.sync()

    def sync(self) -> None:
        if self._dirty:
            os.fsync(self._file.fileno())
            self._dirty = False
        self._last_fsync = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._dirty = True
            self.sync()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_journal_path(plan: Any) -> Path:
    """`<plan file stem>.journal.jsonl` in the current directory (the plan's name for a
    plan built in code)."""
    stem = Path(plan.source).stem if plan.source is not None else plan.plan
    return Path.cwd() / f"{stem}.journal.jsonl"


def is_locked(path: Path) -> bool:
    """Whether a fleetrel run holds this journal now (it keeps an exclusive lock)."""
    try:
        with open(path, "rb") as file:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def _truncate_torn_tail(file: IO[str]) -> None:
    file.seek(0, os.SEEK_END)
    size = file.tell()
    if size == 0:
        return
    with open(file.name, "rb") as raw:
        raw.seek(max(0, size - 65536))
        tail = raw.read()
    if tail.endswith(b"\n"):
        return
    cut = tail.rfind(b"\n")
    keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size)
    file.truncate(keep)
    file.seek(0, os.SEEK_END)


@dataclass
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

    @property
    def run_id(self) -> str:
        return self.header["run_id"]

    @property
    def plan_digest(self) -> str:
        return self.header["plan_digest"]

    def finished_keys(self, *, include_failed: bool) -> set[str]:
        done = {Outcome.SUCCEEDED, Outcome.SKIPPED} | ({Outcome.FAILED} if include_failed else set())
        return {k for k, s in self.steps.items() if s.outcome in done}

    def counts(self) -> dict[str, int]:
        out = {outcome.value: 0 for outcome in Outcome}
        for key in self.header.get("step_digests", {}):
            rec = self.steps.get(key)
            out[rec.outcome if rec and rec.outcome else Outcome.UNFINISHED] += 1
        return out

    @property
    def status(self) -> Status:
        """The run's status by `fleetrel.events.run_status`, the rule the engine applies live."""
        return run_status(self.ending, self.counts(), running=self.running)


def replay(path: Path) -> RunState:
    """Read a journal back. A torn last line (a crash mid-write) is tolerated and
    reported; a line that does not parse anywhere else is an error."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise JournalError(f"{path}: no such journal") from None
    except OSError as exc:
        raise JournalError(f"{path}: cannot read: {exc.strerror}") from None
    lines = raw.split(b"\n")
    torn = False
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        # no final newline: the last record was being written when the process died
        lines.pop()
        torn = True
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "event" not in record:
                raise ValueError("not a journal record")
        except (ValueError, UnicodeDecodeError) as exc:
            raise JournalError(f"{path}:{number}: corrupt journal line ({exc}); the journal was edited or damaged") from None
        records.append(record)
    if not records or records[0].get("event") != Event.RUN_STARTED or records[0].get("format") != FORMAT_VERSION:
        raise JournalError(f"{path}: not a fleetrel journal (format {FORMAT_VERSION}): the first line is not its header")
    state = RunState(path=path, header=records[0], torn_tail=torn, running=is_locked(path))
    state.started = records[0].get("ts")
    for record in records:
        _apply(state, record)
    return state


_ENDINGS = frozenset(Ending)


def _apply(state: RunState, record: dict[str, Any]) -> None:
    event = record["event"]
    if event in SESSION_STARTS:
        state.sessions += 1
        state.ending = None
        state.target = record.get("target", {})
        return
    if event in _ENDINGS:
        state.ending = Ending(event)
        state.ended = record.get("ts")
        return
    if event == Event.RATE_CHANGED:
        state.rate_changes.append(record)
        return
    key = record.get("step")
    if key is None:
        return
    step = state.steps.setdefault(key, StepRecord(key=key))
    step.client_token = record.get("client_token", step.client_token)
    step.attempts = max(step.attempts, int(record.get("attempt", 0)))
    if event == Event.ATTEMPT_FAILED:
        state.retries += 1
        if record.get("throttled"):
            step.throttles += 1
            state.throttles += 1
    elif event in TERMINAL:
        step.terminal_records += 1
        step.outcome = Outcome.of(event)
        step.code = record.get("code")
        step.message = record.get("message")
        step.permanent = record.get("permanent")
