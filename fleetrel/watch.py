"""Watching a live run from its journal: `fleetrel status --watch JOURNAL`, and the live
fields of `fleetrel status --json`.

    live = LiveJournal(Path("org.journal.jsonl"))
    live.refresh()                      # reads the lines written since the last refresh
    live.fields()                       # {"elapsed_s": ..., "eta_s": ..., "wave": ..., ...}

The journal is the only channel: any process that can read the file can watch, from the
same machine or a shared volume. `refresh` reads only what was appended since it last
looked (a complete line at a time: a line being written is read next time), applying
each record to a `RunState` as `fleetrel.replay` does and keeping what a watcher wants
beside it: the session's first record (pid, host, its start), the wave, the rate each
target's controller admits, and the last record's time.
"""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from fleetrel.events import SESSION_STARTS, TERMINAL, Event
from fleetrel.journal import JournalError, is_locked, parse_line
from fleetrel.replay import RunState, _apply, is_header, open_journal

_TERMINAL = frozenset(str(e) for e in TERMINAL)
_SESSION_STARTS = frozenset(str(e) for e in SESSION_STARTS)


def _seconds(ts: str | None) -> float | None:
    """A journal timestamp (ISO 8601, UTC) as epoch seconds."""
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class LiveJournal:
    """A journal read as it grows (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.state: RunState | None = None
        self._offset = 0
        self.session: dict[str, Any] = {}  # the session's first record
        self.done_in_session = 0
        self.wave: tuple[int, int] | None = None
        self.rates: dict[str, float] = {}
        self.last_ts: str | None = None

    def refresh(self) -> RunState:
        with open_journal(self.path) as file:
            file.seek(self._offset)
            data = file.read()
        end = data.rfind(b"\n") + 1  # complete lines only
        for line in data[:end].splitlines():
            if line.strip():
                self._apply(parse_line(line))
        self._offset += end
        if self.state is None:
            raise JournalError(f"{self.path}: not a fleetrel journal (yet): no header line")
        self.state.running = is_locked(self.path)
        self.state.torn_tail = end < len(data) and not self.state.running
        return self.state

    def _apply(self, record: dict[str, Any]) -> None:
        if self.state is None:
            if not is_header(record):
                raise JournalError(f"{self.path}: not a fleetrel journal: the first line is not its header")
            self.state = RunState(path=self.path, header=record)
            self.state.started = record.get("ts")
        _apply(self.state, record)
        event = record.get("event")
        self.last_ts = record.get("ts", self.last_ts)
        if event in _TERMINAL:
            self.done_in_session += 1
        elif event in _SESSION_STARTS:
            self.session, self.done_in_session, self.wave = record, 0, None
            rate = record.get("rate")
            self.rates = {"": float(rate)} if rate is not None else {}
        elif event == Event.WAVE_STARTED:
            self.wave = (int(record["wave"]), int(record["waves"]))
        elif event == Event.RATE_CHANGED:
            self.rates.pop("", None)  # the header's rate, until a controller says what it admits
            self.rates[record.get("target", "")] = float(record["new"])

    def fields(self, now: float | None = None) -> dict[str, Any]:
        """What a watcher wants of the session now: elapsed, rate, ETA, wave, pid, host, the last record's age."""
        now = time.time() if now is None else now
        session = self.session
        started = _seconds(session.get("ts"))
        ended = _seconds(self.state.ended) if self.state is not None and self.state.ending is not None else None
        elapsed = (ended or now) - started if started is not None else None  # a session that ended: its length
        to_do = int(session.get("to_do", 0))
        done = self.done_in_session
        throughput = done / elapsed if elapsed and done else None
        remaining = max(0, to_do - done)
        last = _seconds(self.last_ts)
        return {
            "pid": session.get("pid"),
            "host": session.get("host"),
            "session_started": session.get("ts"),
            "elapsed_s": None if elapsed is None else round(elapsed, 1),
            "done": done,
            "to_do": to_do,
            "steps_per_s": None if throughput is None else round(throughput, 3),
            "eta_s": 0.0 if not remaining else (round(remaining / throughput, 1) if throughput else None),
            "rate": round(sum(self.rates.values()), 3) if self.rates else None,
            "rate_by_target": {t: r for t, r in self.rates.items() if t},
            "wave": self.wave[0] if self.wave else None,
            "waves": self.wave[1] if self.wave else None,
            "last_record_age_s": None if last is None else round(now - last, 1),
        }


def watch(paths: Path | list[Path], show: Callable[[dict[str, Any], dict[str, Any]], None], *,
          interval: float = 2.0) -> dict[str, Any]:
    """Follow the run in `paths` (one journal, or the journals of a sharded run's shards)
    until none of them is running: `show(status, live)` after each look, every `interval`
    seconds. Returns the final status (`fleetrel.report.journal_status`, or
    `fleetrel.shardreport.sharded_status` for shards, whose `live` is per shard)."""
    from fleetrel.report import journal_status
    from fleetrel.shardreport import sharded_status

    journals = [LiveJournal(path) for path in ([paths] if isinstance(paths, Path) else paths)]
    while True:
        states = [journal.refresh() for journal in journals]
        if len(journals) == 1 and not states[0].shard:
            status, live = journal_status(states[0]), journals[0].fields()
        else:
            status = sharded_status(states)
            live = {"shards": {str(state.shard["index"]): journal.fields()
                               for state, journal in zip(states, journals)}}
        show(status, live)
        if not any(state.running for state in states):
            return status
        time.sleep(interval)  # how often a person's screen is redrawn


def shard_lines(status: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """The watch display of a sharded run: the run's counts, then a line per shard."""
    from fleetrel.progress import format_seconds

    counts = status["counts"]
    lines = [f"{status['plan']} ({status['shard_count']} shards) {status['status']} | ok {counts['succeeded']} "
             f"skipped {counts['skipped']} failed {counts['failed']} left {counts['unfinished']}"]
    for index, fields in sorted(live["shards"].items(), key=lambda item: int(item[0])):
        shard = status["shards"].get(index, {})
        lines.append(f"  shard {index}: {shard.get('status')} | {fields['done']}/{fields['to_do']} | "
                     f"ETA {format_seconds(fields['eta_s'])} | pid {fields['pid']} on {fields['host'] or '?'} | "
                     f"last record {fields['last_record_age_s']}s ago")
    for missing in status.get("missing_shards", ()):
        lines.append(f"  shard {missing}: no journal yet")
    return lines


def live_lines(status: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """The watch display: a few lines, at most 80 columns each (plus one per target)."""
    from fleetrel.progress import format_seconds

    counts = status["counts"]
    lines = [f"{status['plan']} {status['run_id'][:8]} {status['status']}"
             f" | pid {live['pid']} on {live['host'] or '?'} | last record {live['last_record_age_s']}s ago",
             f"session: {live['done']}/{live['to_do']} steps | elapsed {format_seconds(live['elapsed_s'])}"
             f" | ETA {format_seconds(live['eta_s'])}"
             + (f" | wave {live['wave']}/{live['waves']}" if live["wave"] else ""),
             f"run: ok {counts['succeeded']} skipped {counts['skipped']} failed {counts['failed']}"
             f" left {counts['unfinished']} | rate {live['rate'] if live['rate'] is not None else '?'}/s"
             f" | {live['steps_per_s'] or 0:.1f} steps/s | throttles {status['throttles']}"]
    for target, target_counts in sorted(status.get("targets", {}).items()):
        total = sum(target_counts.values())
        finished = total - target_counts.get("unfinished", 0)
        rate = live["rate_by_target"].get(target)
        lines.append(f"  {target}: {finished}/{total}" + (f" | rate {rate}/s" if rate is not None else "")
                     + (f" | failed {target_counts['failed']}" if target_counts.get("failed") else ""))
    return lines


def watch_command(path: Path, *, json_output: bool, interval: float) -> int:
    """`fleetrel status --watch`: the display (a JSON object per look with --json), then
    the final status; returns the run's exit code."""
    import json

    import click

    from fleetrel.events import ExitCode
    from fleetrel.report import print_status
    from fleetrel.shardreport import find_shard_journals, print_sharded_status

    path = Path(path)
    shards = find_shard_journals(path) if not path.exists() else {}  # a sharded run: its shards beside it
    paths: Path | list[Path] = list(shards.values()) or path

    def show(status: dict[str, Any], live: dict[str, Any]) -> None:
        if json_output:
            click.echo(json.dumps({**status, "live": live}, default=str))
        else:
            click.echo("\n".join(shard_lines(status, live) if "shards" in live else live_lines(status, live)) + "\n")

    final = watch(paths, show, interval=interval)
    if not json_output:
        (print_sharded_status if shards else print_status)(final)
    return ExitCode.for_status(final["status"])
