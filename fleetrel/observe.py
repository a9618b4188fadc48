"""What watches and steers a run from outside, wired for `fleetrel run`.

    observers = Observers(journal=path, wave_gate="./healthy.sh", events="-", metrics_port=9464)
    with observers:
        result = await run(plan, listeners=[display, *observers.listeners],
                           before_wave=observers.gate(before_wave))

Each piece is a module of its own and an engine listener (the engine knows none of
them): gates between waves (`fleetrel.gates`), the event stream (`fleetrel.eventstream`),
Prometheus metrics (`fleetrel.metrics`). This module only builds the ones asked for and
closes them when the run ends.
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Awaitable, Callable

from fleetrel.events import Listener


class ObserveError(Exception):
    """An observer asked for cannot start (its extra missing, its port taken, its file unwritable)."""


class Observers:
    def __init__(self, *, journal: Path, wave_gate: str | None = None, wave_gate_timeout: float = 600.0,
                 gate_poll: float = 1.0, events: str | None = None, metrics_port: int | None = None,
                 metrics_host: str = "127.0.0.1", metrics_linger: float = 0.0, plan: str | None = None) -> None:
        self.journal = journal
        self.listeners: list[Listener] = []
        self._stack = ExitStack()
        self._wave_gate, self._timeout, self._poll = wave_gate, wave_gate_timeout, gate_poll
        self._events = events
        self._metrics = (metrics_port, metrics_host, metrics_linger, plan)

    def gate(self, then: Callable[[int, int], Awaitable[bool]] | None, *, by: str = "operator") -> Any:
        """The run's `before_wave`: the hold file, `--wave-gate`, then `then` (the CLI's pause or prompt)."""
        from fleetrel.gates import WaveGates

        gates = WaveGates(journal=self.journal, command=self._wave_gate, timeout=self._timeout, poll=self._poll,
                          then=then, then_by=by)
        self.listeners.append(gates)
        return gates

    def __enter__(self) -> "Observers":
        try:
            if self._events is not None:
                from fleetrel.eventstream import EventStream

                try:
                    self.listeners.append(self._stack.enter_context(EventStream.open(self._events)))
                except OSError as exc:
                    raise ObserveError(f"--events {self._events}: cannot write: {exc.strerror or exc}") from None
            port, host, linger, plan = self._metrics
            if port is not None:
                from fleetrel.extras import missing_extra

                problem = missing_extra("observe", "--metrics-port")
                if problem:
                    raise ObserveError(problem)
                from fleetrel.metrics import MetricsServer

                try:
                    self.listeners.append(self._stack.enter_context(MetricsServer(port=port, host=host, linger=linger,
                                                                                  plan=plan)))
                except OSError as exc:
                    raise ObserveError(f"--metrics-port {port}: cannot serve on {host}:{port}: "
                                       f"{exc.strerror or exc}") from None
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def journal_of(plan: Any, journal_path: Path | None, shard: Any) -> Path:
    """The journal `fleetrel run` writes (a shard's own, with --shard)."""
    from fleetrel.journal import default_journal_path

    path = journal_path or default_journal_path(plan)
    if shard is not None:
        from fleetrel.shards import shard_journal_path

        path = shard_journal_path(path, shard)
    return path
