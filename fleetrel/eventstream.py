"""The event stream: a run's events as newline-delimited JSON, for watchers, as they happen.

    with EventStream.open("-") as stream:            # or a file path
        result = await run(plan, listeners=[stream])

    {"schema_version": 1, "seq": 7, "time": "2026-12-07T00:31:02.118204Z", "event": "step_finished",
     "step": "fw/4.2.0", "outcome": "succeeded", "attempts": 1}

The journal stays the record; this is for whoever watches (a CI step, a chat bot, a
dashboard), and a watcher never slows or stops the run: `on_event` (on the engine's
path) only appends the record to a bounded buffer; a writer thread wakes every
`FLUSH_INTERVAL` seconds, turns what is buffered into lines and writes them in one go (no
wake-up per record: a thread switch per record cost more than the rest of it). A reader that falls behind fills the buffer, and what does not fit is
dropped and counted (the `run_ended` event says how many, when it gets through); a
reader that goes away (a closed pipe) switches the stream off. Either way the run, its
journal and its exit code are what they would have been.

The events and their fields are in `EVENT_FIELDS` (`fleetrel schema --events` prints
them as a JSON Schema); `schema_version` changes when a field changes meaning or goes.
"""
from __future__ import annotations

import collections
import os
import stat
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, BinaryIO, Callable, Iterator

import orjson

from fleetrel.events import OUTCOME_OF, Event, Record

SCHEMA_VERSION = 1
#: Records held for a slow reader before new ones are dropped (a few seconds of a fast run).
BUFFER = 10_000
#: Seconds between the writer's looks at the buffer: how late a watcher may see an event.
FLUSH_INTERVAL = 0.1

#: Every stream event and its fields beyond schema_version, seq, time and event (None: may be absent).
EVENT_FIELDS: dict[str, dict[str, str]] = {
    "run_started": {"run_id": "string", "plan": "string", "resumed": "boolean", "steps": "integer",
                    "to_do": "integer", "done_before": "integer", "pid": "integer", "host": "string"},
    "run_ended": {"run_id": "string", "ending": "string", "succeeded": "integer", "skipped": "integer",
                  "failed": "integer", "unfinished": "integer", "elapsed": "number", "dropped": "integer"},
    "wave_started": {"wave": "integer", "waves": "integer", "steps": "integer"},
    "wave_ended": {"wave": "integer", "waves": "integer", "succeeded": "integer", "skipped": "integer",
                   "failed": "integer"},
    "wave_stopped": {"wave": "integer", "waves": "integer", "failed": "integer"},
    "gate_decided": {"wave": "integer", "waves": "integer", "decision": "string", "by": "string", "who": "string"},
    "step_started": {"step": "string", "target": "string", "attempt": "integer"},
    "step_finished": {"step": "string", "target": "string", "outcome": "string", "attempts": "integer",
                      "code": "string", "message": "string"},
    "throttled": {"step": "string", "target": "string", "attempt": "integer"},
    "attempt_failed": {"step": "string", "target": "string", "attempt": "integer", "code": "string"},
    "rate_changed": {"target": "string", "old": "number", "new": "number", "reason": "string"},
    "target_aborted": {"target": "string", "failed": "integer", "finished": "integer"},
}
#: Fields every event has (the rest may be absent: `target` only in a plan with `targets:`, ...).
REQUIRED = {"run_started": ["run_id", "plan", "resumed"], "run_ended": ["ending"],
            "wave_started": ["wave", "waves"], "wave_ended": ["wave", "waves"], "wave_stopped": ["wave", "waves"],
            "gate_decided": ["wave", "decision", "by"], "step_started": ["step"],
            "step_finished": ["step", "outcome", "attempts"], "throttled": ["step"], "attempt_failed": ["step"],
            "rate_changed": ["new"], "target_aborted": ["target"]}

_ENDINGS = {Event.RUN_FINISHED: "finished", Event.RUN_ABORTED: "aborted", Event.RUN_INTERRUPTED: "interrupted"}
_STEP_STARTED, _ATTEMPT_FAILED = str(Event.STEP_STARTED), str(Event.ATTEMPT_FAILED)
_COPY = {Event.WAVE_STOPPED: ("wave_stopped", ("wave", "waves", "failed")),
         Event.WAVE_GATE: ("gate_decided", ("wave", "waves", "decision", "by", "who", "exit_code", "timed_out",
                                            "reason")),
         Event.RATE_CHANGED: ("rate_changed", ("target", "old", "new", "reason")),
         Event.TARGET_ABORTED: ("target_aborted", ("target", "failed", "finished"))}


def schema() -> dict[str, Any]:
    """The JSON Schema of one line of the stream."""
    variants = []
    for name, fields in EVENT_FIELDS.items():
        properties: dict[str, Any] = {"event": {"const": name}}
        properties.update({field: {"type": kind} for field, kind in fields.items()})
        variants.append({"title": name, "properties": properties, "required": ["event", *REQUIRED[name]]})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "fleetrel run --events line",
            "type": "object", "required": ["schema_version", "seq", "time", "event"],
            "properties": {"schema_version": {"const": SCHEMA_VERSION}, "seq": {"type": "integer"},
                           "time": {"type": "string", "format": "date-time"},
                           "event": {"enum": list(EVENT_FIELDS)}},
            "oneOf": variants}


class EventStream:
    """An engine listener that writes the stream to `out` (a binary file) from its own thread."""

    def __init__(self, out: BinaryIO | Callable[[], BinaryIO], *, buffer: int = BUFFER, close_out: bool = False,
                 flush_interval: float = FLUSH_INTERVAL) -> None:
        # a callable: opened by the writer thread (a FIFO's open waits for its reader, the run must not)
        self._opener = out if callable(out) else None
        self._out: BinaryIO | None = None if callable(out) else out
        self._close_out = close_out
        self._buffer: collections.deque[tuple[float, Record]] = collections.deque()
        self._limit = buffer
        self.dropped = 0  # records that found the buffer full, or the reader gone
        self.gone = False  # the reader closed its end
        self._wake = threading.Event()  # set only to close
        self._flush_interval = flush_interval
        self._thread = threading.Thread(target=self._write_all, name="fleetrel-events", daemon=True)
        # what the writer thread alone touches
        self._seq = 0
        self._wave: dict[str, Any] | None = None
        self._run_id: str | None = None
        self._host = socket.gethostname()
        self._thread.start()

    @classmethod
    def open(cls, where: str, **kwargs: Any) -> "EventStream":
        """`-`: our stdout (a duplicate of its descriptor, so closing it closes nothing else); else a file,
        appended to (each session starts with `run_started`)."""
        if where == "-":
            sys.stdout.flush()
            return cls(os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0), close_out=True, **kwargs)
        if os.path.exists(where) and stat.S_ISFIFO(os.stat(where).st_mode):
            return cls(lambda: open(where, "ab", buffering=0), close_out=True, **kwargs)  # whenever a reader comes
        return cls(open(where, "ab", buffering=0), close_out=True, **kwargs)  # a resume appends its session

    # -- on the engine's path: count, never block --------------------------------------

    def on_event(self, record: Record) -> None:
        if self.gone or len(self._buffer) >= self._limit:
            self.dropped += 1
            return
        self._buffer.append((time.time(), record))

    # -- the writer thread ------------------------------------------------------------

    def _write_all(self) -> None:
        if self._opener is not None:
            try:
                self._out = self._opener()
            except OSError:
                self.gone = True
        buffer = self._buffer
        while True:
            closing = self._wake.wait(self._flush_interval)
            lines: list[bytes] = []
            while buffer:
                at, record = buffer.popleft()
                lines.extend(self._lines(at, record))
            if lines and not self.gone:
                try:
                    self._out.write(b"".join(lines))  # blocks while a slow reader's pipe is full
                except (BrokenPipeError, ValueError, OSError):
                    self.gone = True  # the reader left: nothing more is written, the run goes on
            if closing:
                return

    def _lines(self, at: float, record: Record) -> list[bytes]:
        out = []
        for name, fields in self._translate(record):
            self._seq += 1
            line = {"schema_version": SCHEMA_VERSION, "seq": self._seq,
                    "time": datetime.fromtimestamp(at, timezone.utc), "event": name, **fields}
            out.append(orjson.dumps(line, default=str, option=_ORJSON))
        return out

    def _translate(self, record: Record) -> Iterator[tuple[str, dict[str, Any]]]:
        """The stream's events for one journal record (none, one, or a wave's end before another's start)."""
        event, get = str(record.event), record.fields.get  # plain str: a StrEnum's == is slow
        if event == _STEP_STARTED:
            yield "step_started", _present(step=get("step"), target=get("target"), attempt=get("attempt"))
        elif event in OUTCOME_OF:
            outcome = OUTCOME_OF[event]
            if self._wave is not None:
                self._wave[outcome] += 1
            yield "step_finished", _present(step=get("step"), target=get("target"), outcome=outcome,
                                            attempts=get("attempt"), code=get("code"), message=get("message"))
        elif event == _ATTEMPT_FAILED:
            if get("throttled"):
                yield "throttled", _present(step=get("step"), target=get("target"), attempt=get("attempt"))
            else:
                yield "attempt_failed", _present(step=get("step"), target=get("target"), attempt=get("attempt"),
                                                 code=get("code"))
        elif event == Event.WAVE_STARTED:
            yield from self._wave_ended()
            self._wave = {"wave": get("wave"), "waves": get("waves"), "succeeded": 0, "skipped": 0, "failed": 0}
            yield "wave_started", _present(wave=get("wave"), waves=get("waves"), steps=get("steps"))
        elif event in _COPY:
            name, fields = _COPY[event]
            yield name, _present(**{field: get(field) for field in fields})
        elif event in (Event.RUN_STARTED, Event.RUN_RESUMED):
            self._run_id = get("run_id")
            yield "run_started", _present(run_id=get("run_id"), plan=get("plan"),
                                          resumed=event == Event.RUN_RESUMED, steps=get("steps"),
                                          to_do=get("to_do"), done_before=get("done_before", 0), pid=get("pid"),
                                          host=self._host)
        elif event in _ENDINGS:
            yield from self._wave_ended()
            yield "run_ended", _present(run_id=self._run_id, ending=_ENDINGS[event], succeeded=get("succeeded"),
                                        skipped=get("skipped"), failed=get("failed"), unfinished=get("unfinished"),
                                        elapsed=get("elapsed"), dropped=self.dropped)

    def _wave_ended(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if self._wave is not None:
            yield "wave_ended", self._wave
            self._wave = None

    # -- closing ------------------------------------------------------------------------

    def close(self, *, wait: float = 5.0) -> None:
        """Write what is buffered (for at most `wait` seconds: a stalled reader does not hold
        the run's end), then close."""
        self._wake.set()
        # a FIFO nobody opened for reading: its open never returned, nothing to wait for
        self._thread.join(wait if self._out is not None or self.gone else 0)
        if self._close_out and self._out is not None and not self._thread.is_alive():
            try:
                self._out.close()
            except OSError:
                pass

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: one line each, times as 2026-12-07T00:31:02.118204Z
_ORJSON = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}
