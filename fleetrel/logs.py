"""Structured logs: `fleetrel --log-format json ...` writes one JSON object per line on stderr.

    configure("json")                       # once, from the command line's group
    log().info("notice", message="wave 2/3: 40 steps")
    # {"ts": "2026-12-07T00:51:02.118204Z", "level": "info", "logger": "fleetrel", "event": "notice", "message": "..."}

Every line goes through one structlog pipeline (a timestamp, the level, the logger's
name, then a JSON renderer), and carries these keys, stable across releases:

- `ts` (ISO 8601, UTC), `level` (`info`, `warning`, `error`), `logger` (`fleetrel`), `event`: what the line is:
  - `progress`: a run's progress, as the plain log's lines (every 5 s or 10 % of the steps):
    `done`, `total`, `done_before`, `succeeded`, `skipped`, `failed`, `throttles`, `retries`,
    `rate`, `ceiling`, `elapsed_s`, `eta_s`, `stopping`; per target of a plan with
    `targets:`, one `target_progress` line: `target`, `done`, `total`, `rate`, `ceiling`, `throttles`
  - `notice`: a one-off line for the operator (a wave starts, a selection, a hint): `message`
  - `summary`: how a run's session ended: `ending`, `succeeded`, `skipped`, `failed`,
    `unfinished`, `attempts`, `throttles`, `elapsed_s`, `run_id`, `plan`
  - `error`: the command failed: `message`, `exit_code`
- `run_id` and `plan` on every line of a run once it started (bound, not retyped).

The console format (the default) is what fleetrel always printed.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

import orjson
import structlog

from fleetrel.events import SESSION_STARTS, Event, Record
from fleetrel.progress import PlainLog

JSON, CONSOLE = "json", "console"
_format = CONSOLE
_ENDINGS = {Event.RUN_FINISHED: "finished", Event.RUN_ABORTED: "aborted", Event.RUN_INTERRUPTED: "interrupted"}


def _render(_: Any, __: str, event_dict: dict[str, Any]) -> str:
    return orjson.dumps(event_dict, default=str).decode()


def configure(fmt: str = CONSOLE, *, file: Any = None) -> None:
    """Choose the log format for this process (JSON lines on `file`, default stderr)."""
    global _format
    _format = fmt
    if fmt == JSON:
        structlog.configure(
            processors=[structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                        structlog.processors.add_log_level,
                        structlog.processors.format_exc_info,
                        _render],
            logger_factory=structlog.WriteLoggerFactory(file=file or sys.stderr),
            cache_logger_on_first_use=False)
    else:
        structlog.reset_defaults()


def json_enabled() -> bool:
    return _format == JSON


def log(**context: Any) -> Any:
    """The `fleetrel` logger, `context` bound."""
    return structlog.get_logger().bind(logger="fleetrel", **context)


def error(message: str, exit_code: int) -> None:
    log().error("error", message=message, exit_code=int(exit_code))


class JsonProgress(PlainLog):
    """`fleetrel run`'s progress as `progress`, `notice` and `summary` lines (see the module docstring)."""

    def __init__(self, *, every_seconds: float = 5.0, every_fraction: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(write=self._notice, every_seconds=every_seconds, every_fraction=every_fraction, clock=clock)
        self._log = log()

    def _notice(self, line: str) -> None:
        self._log.info("notice", message=line)

    def on_event(self, record: Record) -> None:
        event = record.event
        if event in SESSION_STARTS:
            self._log = log(run_id=record.get("run_id"), plan=record.get("plan"))
        super().on_event(record)
        if event in _ENDINGS:
            get = record.get
            self._log.info("summary", ending=_ENDINGS[event], succeeded=get("succeeded", self.succeeded),
                           skipped=get("skipped", self.skipped), failed=get("failed", self.failed),
                           unfinished=get("unfinished"), attempts=get("attempts"), throttles=get("throttles"),
                           elapsed_s=get("elapsed"))

    def _emit(self, now: float) -> None:
        if not self.total:
            return
        s = self.snapshot()
        self._log.info("progress", done=s.done, total=s.total, done_before=s.done_before, succeeded=s.succeeded,
                       skipped=s.skipped, failed=s.failed, throttles=s.throttles, retries=s.retries,
                       rate=None if s.rate is None else round(s.rate, 3), ceiling=s.ceiling,
                       elapsed_s=round(s.elapsed, 3), eta_s=None if s.eta is None else round(s.eta, 1),
                       stopping=s.stopping)
        if self._view is not None:
            for name, (total, rate, ceiling) in sorted(self._view.targets().items()):
                self._log.info("target_progress", target=name, done=self.done_by_target.get(name, 0), total=total,
                               rate=round(rate, 3), ceiling=ceiling, throttles=self.throttles_by_target.get(name, 0))
        self._written = self.done
        self._next_time = now + self.every_seconds
        self._next_done = self._step_mark(self.done)


class JsonConsole:
    """Stands in for the CLI's console under `--log-format json`: text becomes `notice`
    lines, tables (the summary's, which `summary` lines carry as fields) are left out."""

    is_terminal = False

    def __init__(self, console: Any) -> None:
        self._console = console
        self._log = log()

    def print(self, *objects: Any, **_: Any) -> None:
        text = " ".join(o for o in objects if isinstance(o, str))
        if text:
            self._log.info("notice", message=text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._console, name)
