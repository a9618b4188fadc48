"""Gates between waves: a command that says go or stop, and a hold another process sets.

    gates = WaveGates(journal=Path("org.journal.jsonl"), command="./canary-healthy.sh", timeout=300)
    result = await run(plan, listeners=[gates], before_wave=gates)

Before every wave after the first (a resumed session's first wave included: a resume asks
again), in this order:

1. **The hold file** `<journal>.gate`. `fleetrel hold JOURNAL` writes `{"state": "hold", ...}`
   into it, `fleetrel promote JOURNAL` `{"state": "promote", ...}` (each written beside it
   and renamed over it: a reader never sees half a file). A run that finds a hold at a wave
   boundary journals `held`, then reads the file again every `poll` seconds until it says
   anything else, and journals who let it go. A hold set mid-wave is seen at the next
   boundary. Ctrl-C (or SIGTERM) while held stops the run as interrupted.
2. **The gate command** (`--wave-gate CMD`, run by the shell with the run's facts in its
   environment, see `gate_environment`). Exit 0 lets the wave start; any other exit, or
   running past `timeout` seconds (its process group is killed), stops the run as
   interrupted (exit 130); a resume asks it again.
3. **`then`**: the CLI's own pause or prompt, asked only when a wave ran in this session,
   as before gates existed.

Every decision is a `wave_gate` journal record: `decision` (`held`, `go`, `stop`), `by`
(`hold-file`, `command`, `operator`, `pause`), `who` (user@host of whoever held or
promoted, or of this run), the command's `exit_code`, `timed_out` and `seconds`.
"""
from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

import anyio

from fleetrel.events import SESSION_STARTS, TERMINAL, Event, Outcome, Record, SessionView

#: The hold file's name beside the journal.
GATE_SUFFIX = ".gate"
HOLD, PROMOTE = "hold", "promote"


def gate_file(journal: Path | str) -> Path:
    journal = Path(journal)
    return journal.with_name(journal.name + GATE_SUFFIX)


def who() -> str:
    """user@host: who decided, as a journal record names them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def set_gate(journal: Path | str, state: str, *, reason: str | None = None) -> dict[str, Any]:
    """Write `state` (HOLD or PROMOTE) into the journal's hold file, atomically; returns what was written."""
    content = {"state": state, "who": who(), "pid": os.getpid(), "at": _now()}
    if reason:
        content["reason"] = reason
    path = gate_file(journal)
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    partial.write_text(json.dumps(content) + "\n", encoding="utf-8")
    partial.replace(path)
    return content


def read_gate(journal: Path | str) -> dict[str, Any] | None:
    """The hold file's content; None when there is none (or it cannot be read as ours)."""
    try:
        content = json.loads(gate_file(journal).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def gate_environment(facts: Mapping[str, Any]) -> dict[str, str]:
    """The gate command's environment: ours, plus FLEETREL_<FACT> for every fact
    (FLEETREL_RUN_ID, FLEETREL_JOURNAL, FLEETREL_PLAN, FLEETREL_STEPS, FLEETREL_WAVE,
    FLEETREL_WAVES; the whole run's FLEETREL_SUCCEEDED, FLEETREL_SKIPPED, FLEETREL_FAILED,
    FLEETREL_UNFINISHED, FLEETREL_THROTTLES; this session's FLEETREL_SESSION_SUCCEEDED and
    FLEETREL_SESSION_FAILED; FLEETREL_DONE_BEFORE)."""
    env = dict(os.environ)
    env.update({f"FLEETREL_{name.upper()}": str(value) for name, value in facts.items() if value is not None})
    return env


async def run_gate_command(command: str, env: Mapping[str, str], timeout: float) -> tuple[int | None, bool, float]:
    """Run `command` with the shell; (exit code or None, timed out, seconds). Its output goes
    to our stderr (stdout may be --json's). Past `timeout`, or when the run is cancelled, its
    whole process group is killed."""
    started = anyio.current_time()
    process = await anyio.open_process(command, stdin=subprocess.DEVNULL, stdout=2, stderr=2,
                                       env=dict(env), start_new_session=True)
    code: int | None = None
    try:
        with anyio.move_on_after(timeout):
            code = await process.wait()
    finally:
        if code is None:
            _kill_group(process.pid)
            with anyio.CancelScope(shield=True):
                await process.wait()
    return code, code is None, anyio.current_time() - started


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class WaveGates:
    """The engine's gate between waves (`fleetrel.engine.WaveGate`) and a listener that
    keeps the facts a gate command is given. Pass it as both `listeners=[gates]` and
    `before_wave=gates`."""

    def __init__(self, *, journal: Path | str, command: str | None = None, timeout: float = 600.0,
                 poll: float = 1.0, then: Callable[[int, int], Awaitable[bool]] | None = None,
                 then_by: str = "operator") -> None:
        self.journal = Path(journal)
        self.command = command
        self.timeout = timeout
        self.poll = poll
        self.then = then
        self.then_by = then_by
        self.facts: dict[str, Any] = {"journal": str(self.journal)}
        self.counts = {o.value: 0 for o in Outcome if o is not Outcome.UNFINISHED}
        self.throttles = 0
        self._live: Any = None  # the journal as read so far (a gate command's facts)

    # -- as a listener: the facts -----------------------------------------------------

    def on_start(self, view: SessionView) -> None:
        pass

    def on_event(self, record: Record) -> None:
        event = record.event
        if event in TERMINAL:
            self.counts[Outcome.of(event).value] += 1
        elif event == Event.ATTEMPT_FAILED and record.get("throttled"):
            self.throttles += 1
        elif event in SESSION_STARTS:
            self.facts.update(run_id=record.get("run_id"), plan=record.get("plan"), steps=record.get("steps"),
                              done_before=record.get("done_before", 0))

    # -- as the gate --------------------------------------------------------------------

    async def __call__(self, wave: int, waves: int) -> bool:
        """As a plain `before_wave` (drivers that journal no gate records: `run --ray`)."""
        return await self.decide(wave, waves, first_in_session=False, record=lambda **fields: None)

    async def decide(self, wave: int, waves: int, *, first_in_session: bool,
                     record: Callable[..., None]) -> bool:
        if not await self._wait_while_held(record):
            return False
        if self.command is not None:
            facts = {**self.facts, "wave": wave, "waves": waves, **await self._run_so_far()}
            code, timed_out, seconds = await run_gate_command(self.command, gate_environment(facts), self.timeout)
            go = code == 0
            record(decision="go" if go else "stop", by="command", who=who(), command=self.command,
                   exit_code=code, timed_out=timed_out, seconds=round(seconds, 3))
            if not go:
                return False
        if self.then is not None and not first_in_session:
            go = bool(await self.then(wave, waves))
            record(decision="go" if go else "stop", by=self.then_by, who=who())
            return go
        return True

    async def _run_so_far(self) -> dict[str, Any]:
        """The whole run's counts from its journal (every session's: the record, not this
        session's listener), read in a worker thread: the whole journal before the first
        gate, then only what was appended since (`fleetrel.watch.LiveJournal`)."""
        from fleetrel.journal import JournalError
        from fleetrel.watch import LiveJournal

        if self._live is None:
            self._live = LiveJournal(self.journal)
        try:
            state = await anyio.to_thread.run_sync(self._live.refresh)
        except JournalError:  # not where we were told: this session's own counts
            return {**self.counts, "throttles": self.throttles}
        return {**state.counts(), "throttles": state.throttles, "session_" + Outcome.SUCCEEDED.value:
                self.counts[Outcome.SUCCEEDED.value], "session_" + Outcome.FAILED.value: self.counts[Outcome.FAILED.value]}

    async def _wait_while_held(self, record: Callable[..., None]) -> bool:
        """True once no hold stands (at once when there is none). Held: journalled once,
        then the file is read every `poll` seconds (cancelled by a stop)."""
        content = read_gate(self.journal)
        if content is None or content.get("state") != HOLD:
            return True
        record(decision="held", by="hold-file", **_from_file(content))
        while True:
            await anyio.sleep(self.poll)  # the operator's hold: poll the file, nothing to synchronise with
            content = read_gate(self.journal)
            if content is None or content.get("state") != HOLD:
                record(decision="go", by="hold-file", **(_from_file(content) if content else {"who": None}))
                return True


def _from_file(content: Mapping[str, Any]) -> dict[str, Any]:
    return {"who": content.get("who"), "state": content.get("state"), "set_at": content.get("at"),
            **({"reason": content["reason"]} if content.get("reason") else {})}

