"""Progress of a run for the operator: a live display on a terminal, log lines in CI.

    with LiveDisplay(console) as display:          # or PlainLog(write=print)
        result = await run(plan, listeners=[display])

Both are engine listeners over the same counters (`RunProgress`): they receive the
engine's `Record`s and, at the start, a read-only `SessionView` for the live rate. `on_event` sits on the
engine's per-event path, so it only counts: the live display is redrawn by rich's own
refresh thread a few times a second, and the plain log checks one clock reading and one
comparison per finished step before it writes anything.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from fleetrel.events import SESSION_STARTS, TERMINAL, Event, Record, SessionView


@dataclass(frozen=True)
class Snapshot:
    """The counters at one moment, as a display shows them."""

    done: int  # steps finished in this session
    total: int  # steps this session set out to finish
    done_before: int
    succeeded: int
    skipped: int
    failed: int
    throttles: int
    retries: int
    rate: float | None  # calls/s the controllers of the targets running now admit
    ceiling: float | None  # ... and the most they would (their limits.rate)
    elapsed: float
    eta: float | None  # seconds (see `RunProgress.eta`); None before a rate or a finished step is known
    stopping: str | None  # "aborted" / "interrupted" once the engine stops starting steps

    def line(self) -> str:
        """One log line, no escape codes: `[12s] 40/200 (20%) ok 38 skipped 1 failed 1 ...`."""
        pct = f"{self.done / self.total:.0%}" if self.total else "100%"
        parts = [f"[{self.elapsed:5.0f}s] {self.done}/{self.total} ({pct})",
                 f"ok {self.succeeded} skipped {self.skipped} failed {self.failed}"]
        if self.rate is not None:
            parts.append(f"rate {self.rate:.1f}/{self.ceiling:g} per s")
        parts.append(f"throttles {self.throttles} retries {self.retries}")
        parts.append(f"ETA {format_seconds(self.eta)}")
        if self.stopping:
            parts.append(f"stopping: {self.stopping}")
        return " | ".join(parts)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class RunProgress:
    """Counts the engine's events. A listener on its own (tests use it so); the displays
    below add rendering. `on_start` receives the session's read-only view, for the live
    rate and ceiling."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.total = 0
        self.done_before = 0
        self.succeeded = self.skipped = self.failed = 0
        self.throttles = self.retries = 0
        self.stopping: str | None = None
        self._view: SessionView | None = None
        self.done_by_target: dict[str, int] = {}
        self.throttles_by_target: dict[str, int] = {}
        self.in_flight_by_target: dict[str, int] = {}  # started, not finished: the targets running now

    def on_start(self, view: SessionView) -> None:
        self._view = view
        self.total = view.to_do
        self.started = self.clock()

    def on_event(self, record: Record) -> None:
        event = record.event
        target = record.get("target")
        if target is not None:
            if event in TERMINAL:
                self.done_by_target[target] = self.done_by_target.get(target, 0) + 1
                self.in_flight_by_target[target] = max(0, self.in_flight_by_target.get(target, 0) - 1)
            elif event == Event.STEP_STARTED:
                self.in_flight_by_target[target] = self.in_flight_by_target.get(target, 0) + 1
            elif event == Event.ATTEMPT_FAILED and record.get("throttled"):
                self.throttles_by_target[target] = self.throttles_by_target.get(target, 0) + 1
        if event == Event.STEP_SUCCEEDED:
            self.succeeded += 1
        elif event == Event.STEP_SKIPPED:
            self.skipped += 1
        elif event == Event.STEP_FAILED:
            self.failed += 1
        elif event == Event.ATTEMPT_FAILED:
            self.retries += 1
            if record.get("throttled"):
                self.throttles += 1
        elif event in SESSION_STARTS:
            self.total = int(record.get("to_do", self.total))
            self.done_before = int(record.get("done_before", 0))
        elif event == Event.RUN_ABORTED:
            self.stopping = "aborted"
        elif event == Event.RUN_INTERRUPTED:
            self.stopping = "interrupted"
        elif event == Event.WAVE_STARTED:
            self.note(f"wave {record['wave']}/{record['waves']}: {record['steps']} steps, "
                      f"up to step {record['end']} of the plan")
        elif event == Event.WAVE_STOPPED:
            self.note(f"not starting wave {record['wave']}/{record['waves']}: "
                      f"{record['failed']} step(s) failed in the waves before it")

    def note(self, line: str) -> None:
        """A one-off line for the operator (a wave starts or is held back)."""

    def target_lines(self, *, most: int = 6) -> list[str]:
        """Lines for the targets of a plan with `targets:` (done/total, rate, throttles):
        the `most` furthest behind, then one line for the rest, so 20 targets do not
        bury the run's own line."""
        if self._view is None:
            return []
        targets = self._view.targets()
        behind = sorted(targets, key=lambda name: (self.done_by_target.get(name, 0) / max(1, targets[name][0]), name))
        lines = [f"  {name}: {self.done_by_target.get(name, 0)}/{targets[name][0]} | "
                 f"rate {targets[name][1]:.1f}/{targets[name][2]:g} per s | "
                 f"throttles {self.throttles_by_target.get(name, 0)}" for name in behind[:most]]
        rest = behind[most:]
        if rest:
            finished = sum(1 for name in rest if self.done_by_target.get(name, 0) >= targets[name][0])
            lines.append(f"  ... and {len(rest)} more target(s), {finished} of them finished")
        return lines

    @property
    def done(self) -> int:
        return self.succeeded + self.skipped + self.failed

    @contextmanager
    def paused(self) -> Iterator[None]:
        """While the operator answers a prompt (the live display stops redrawing)."""
        yield

    def __enter__(self) -> "RunProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def running(self) -> dict[str, tuple[int, float, float]]:
        """The targets running now, as `SessionView.targets()` gives them (to do, rate,
        ceiling): those with a step started and not finished, else (between waves, before
        the first step) those with steps left. A wave of one target in a plan of six is
        one target's rate, not six."""
        if self._view is None:
            return {}
        targets = self._view.targets()
        running = {name: t for name, t in targets.items() if self.in_flight_by_target.get(name, 0) > 0}
        return running or {name: t for name, t in targets.items() if self.done_by_target.get(name, 0) < t[0]}

    def eta(self, elapsed: float) -> float | None:
        """Seconds left: the later of two estimates, each of which can only be early.
        Paced: steps left over the rate the controller admits now (per target, the
        slowest target's), at least one call a step; it leaves out the first burst, which
        is spent at once and would make the first seconds' throughput promise 8/89 steps
        in 0.1 s at 10/s an ETA of 1 s. Observed: steps left at the throughput so far,
        which is the slower of the two when latency, not the bucket, holds the run back."""
        remaining = max(0, self.total - self.done)
        if not remaining:
            return 0.0
        estimates = []
        if self.done and elapsed > 0:
            estimates.append(remaining * elapsed / self.done)
        view = self._view
        if view is not None:
            targets = view.targets()
            if targets:
                left = {name: t[0] - self.done_by_target.get(name, 0) for name, t in targets.items()}
                paced = [n / targets[name][1] for name, n in left.items() if n > 0 and targets[name][1] > 0]
                if paced:
                    estimates.append(max(paced))
            elif view.rate > 0:
                estimates.append(remaining / view.rate)
        return max(estimates) if estimates else None

    def snapshot(self) -> Snapshot:
        elapsed = self.clock() - self.started
        done = self.done
        view = self._view
        rate = ceiling = None
        if view is not None:
            running = self.running()
            rate, ceiling = ((sum(t[1] for t in running.values()), sum(t[2] for t in running.values())) if running
                             else (view.rate, view.ceiling))
        return Snapshot(done=done, total=self.total, done_before=self.done_before, succeeded=self.succeeded,
                        skipped=self.skipped, failed=self.failed, throttles=self.throttles, retries=self.retries,
                        rate=rate, ceiling=ceiling, elapsed=elapsed, eta=self.eta(elapsed), stopping=self.stopping)


class PlainLog(RunProgress):
    """Log lines for a log file or CI: one every `every_seconds`, or each time another
    `every_fraction` of the steps has finished, whichever comes first, and one at the end.

        log = PlainLog(write=lambda line: print(line, file=sys.stderr))
    """

    def __init__(self, write: Callable[[str], None], *, every_seconds: float = 5.0, every_fraction: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock=clock)
        self.write = write
        self.every_seconds = every_seconds
        self.every_fraction = every_fraction
        self._next_time = self.started + every_seconds
        self._next_done = 1
        self._written = -1  # steps done at the last line written

    def on_start(self, view: SessionView) -> None:
        super().on_start(view)
        self._next_time = self.started + self.every_seconds
        self._next_done = self._step_mark(0)

    def _step_mark(self, done: int) -> int:
        return done + max(1, int(self.total * self.every_fraction))

    def on_event(self, record: Record) -> None:
        super().on_event(record)
        event = record.event
        if event in TERMINAL or event == Event.ATTEMPT_FAILED:
            now = self.clock()
            if self.done >= self._next_done or now >= self._next_time:
                self._emit(now)
        elif event in (Event.RUN_ABORTED, Event.RUN_INTERRUPTED) or (
                event == Event.RUN_FINISHED and self.done != self._written):
            self._emit(self.clock())
        elif event in SESSION_STARTS:
            self._next_done = self._step_mark(0)  # now that the session's size is known

    def note(self, line: str) -> None:
        self.write(line)

    def _emit(self, now: float) -> None:
        if not self.total:
            return  # a session with nothing to do (a wave finished earlier): no noise
        self.write(self.snapshot().line())
        for line in self.target_lines():
            self.write(line)
        self._written = self.done
        self._next_time = now + self.every_seconds
        self._next_done = self._step_mark(self.done)


class _LiveView:
    """What rich redraws: a bar and two lines of counters, read at redraw time."""

    def __init__(self, progress: RunProgress, title: str) -> None:
        self.progress = progress
        self.title = title

    def __rich__(self) -> Table:
        s = self.progress.snapshot()
        head = Text.assemble((self.title, "bold"), f"  {s.done}/{s.total} steps",
                             (f"  (+{s.done_before} done before)" if s.done_before else ""),
                             f"  ETA {format_seconds(s.eta)}")
        counts = Text.assemble(("ok ", "dim"), (str(s.succeeded), "green"), ("  skipped ", "dim"), str(s.skipped),
                               ("  failed ", "dim"), (str(s.failed), "red" if s.failed else ""),
                               ("  throttles ", "dim"), (str(s.throttles), "yellow" if s.throttles else ""),
                               ("  retries ", "dim"), str(s.retries))
        rate = (Text.assemble(("rate ", "dim"), f"{s.rate:.1f}", ("/", "dim"), f"{s.ceiling:g}", (" calls/s", "dim"),
                              ("  elapsed ", "dim"), format_seconds(s.elapsed))
                if s.rate is not None else Text(""))
        parts: list[Any] = [head, ProgressBar(total=max(1, s.total), completed=s.done, width=60), counts, rate,
                            *(Text(line, style="dim") for line in self.progress.target_lines())]
        if s.stopping:
            parts.append(Text(f"stopping ({s.stopping}): waiting for calls in flight", style="bold red"))
        grid = Table.grid()  # one row each: a ProgressBar does not end its own line
        for part in parts:
            grid.add_row(part)
        return grid


class LiveDisplay(RunProgress):
    """A rich live display on a terminal, redrawn 4 times a second by rich's thread.

        with LiveDisplay(Console(), title="spring-release") as display:
            result = await run(plan, listeners=[display])
    """

    def __init__(self, console: Console, *, title: str = "fleetrel", refresh_per_second: float = 4.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock=clock)
        self._live = Live(_LiveView(self, title), console=console, refresh_per_second=refresh_per_second,
                          transient=False)

    def note(self, line: str) -> None:
        self._live.console.print(line)  # printed above the live display

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing while the operator answers a prompt, then carry on."""
        self._live.stop()
        try:
            yield
        finally:
            self._live.start()

    def __enter__(self) -> "LiveDisplay":
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()
