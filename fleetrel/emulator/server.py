"""Serving the emulator: cheroot's HTTP/1.1 server (keep-alive) around `EmulatorApp`.

`serve()` is what `fleetrel emulator` runs: it prints the URL as the first stdout line,
serves until SIGINT/SIGTERM and returns 0. `serve_in_thread()` is the cheap in-process
variant for tests that do not need a separate process.

    server = EmulatorServer(EmulatorSettings(rate=10))
    print(server.url)            # http://127.0.0.1:PORT
    server.serve_forever()       # or server.start() for a background thread

Why cheroot: AWS keeps connections alive, and a client that opens a TCP connection per
call spends more CPU on connecting than on calling. cheroot speaks HTTP/1.1 keep-alive,
parks idle connections in a selector (a kept-alive connection holds no thread), answers
from the worker thread that ran the app (so an exception there reaches the socket: how a
dropped connection is made), binds port 0 and runs in any thread (`prepare`/`serve`/
`stop`), with no process manager of its own. waitress writes answers from its I/O loop and
turns any app exception into a 500, so a call cannot be applied and then lose its
connection; gunicorn forks workers and owns the signals, so it cannot serve from a thread
of a test process.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any, Iterable, TextIO

from cheroot import wsgi

from fleetrel.emulator import moto_glue
from fleetrel.emulator.middleware import DroppedConnection, EmulatorApp
from fleetrel.emulator.settings import EmulatorSettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")
PARENT_PID_ENV = "FLEETREL_EMULATOR_PARENT_PID"

# Worker threads: a call holds one while the app runs, including the injected latency
# (a sleep), so this bounds calls in flight: 50 ms of latency at 1000 calls/s is 50.
# cheroot's pool does not grow by itself. Idle kept-alive connections hold none.
WORKER_THREADS = 64
# Kept-alive idle connections (cheroot's default is 10: the 11th client connection would
# be closed after each answer, which is the cost we are here to remove).
KEEP_ALIVE_CONNECTIONS = 512
# An idle connection is closed after this long. Long, so a client rarely races the close
# (it sends on a connection the server is closing); botocore's read timeout is 60 s.
IDLE_TIMEOUT_S = 120
LISTEN_BACKLOG = 1024


class _Gateway(wsgi.Gateway_10):
    """cheroot's WSGI gateway, plus what WSGI cannot say: lose the connection."""

    def respond(self) -> None:
        try:
            super().respond()
        except DroppedConnection:
            # Linger 0: the close that follows is a TCP reset, with no answer written.
            # cheroot's connection loop treats ECONNRESET as the client going away:
            # it closes the socket silently and never reuses it.
            try:
                self.req.conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                struct.pack("ii", 1, 0))
            except OSError:
                pass
            raise ConnectionResetError(errno.ECONNRESET, "dropped by fault injection") \
                from None


class _Server(wsgi.Server):
    """cheroot's server with its per-event stderr chatter kept to warnings and worse."""

    keep_alive_conn_limit = KEEP_ALIVE_CONNECTIONS

    def error_log(self, msg: str = "", level: int = logging.INFO,
                  traceback: bool = False) -> None:
        if level >= logging.WARNING:
            super().error_log(msg, level, traceback)


class EmulatorServer:
    """A bound (not yet serving) emulator; `url` is known as soon as it is created."""

    def __init__(self, settings: EmulatorSettings | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        moto_glue.install()
        self.app = EmulatorApp(moto_glue.moto_server_app(), settings)
        self._server = _Server((host, port), self.app, numthreads=WORKER_THREADS,
                               request_queue_size=LISTEN_BACKLOG, timeout=IDLE_TIMEOUT_S)
        self._server.gateway = _Gateway
        self._server.prepare()  # binds: the port is known from here on
        self.host = host
        self.port = self._server.bind_addr[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.serve()

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fleetrel-emulator",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)


def serve(settings: EmulatorSettings | None = None, host: str = "127.0.0.1", port: int = 0,
          versions: Iterable[dict[str, Any]] = (), out: TextIO = sys.stdout,
          err: TextIO = sys.stderr, fleet: int | None = None, fleet_seed: int = 0) -> int:
    """Serve until SIGINT or SIGTERM; print the URL first. Returns the exit code (0).

    `versions` are seeded (as for POST /_fleetrel/seed: in every emulated account and
    region) before the URL is printed, so a client that reads the URL finds them; then
    `fleet` things over those versions (as POST /_fleetrel/fleet, seeded by `fleet_seed`).
    """
    server = EmulatorServer(settings, host, port)
    versions = list(versions)
    seeded = server.app.seed(versions)
    if fleet is not None:
        started = time.monotonic()
        server.app.seed_fleet(fleet, fleet_seed)
        print(f"fleetrel emulator: {fleet} thing(s) seeded in each account and region "
              f"(seed {fleet_seed}) in {time.monotonic() - started:.1f} s",
              file=err, flush=True)
    print(server.url, file=out, flush=True)
    scope = ("loopback only: not reachable from other machines" if host in LOOPBACK
             else f"{host}: REACHABLE FROM OTHER MACHINES, with no authentication")
    print(f"fleetrel emulator: listening on {server.url} ({scope}); "
          f"{server.app.access.summary()}; {seeded['created']} package version(s) seeded; "
          "Ctrl-C or SIGTERM stops it",
          file=err, flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Set by start_emulator: if the process that started us dies without stopping us
    # (kill -9 of a test run or a benchmark), do not linger eating a shared CPU.
    parent = int(os.environ.get(PARENT_PID_ENV, "0") or 0)
    server.start()
    try:
        # The main thread only waits, so the signal handler runs promptly; stopping the
        # server from the handler itself would join threads inside a signal handler.
        while not stop.wait(timeout=1.0):
            if parent and os.getppid() != parent:
                print("fleetrel emulator: the process that started it is gone; stopping",
                      file=err, flush=True)
                break
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def serve_in_thread(settings: EmulatorSettings | None = None,
                    host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
    """Start an emulator in a daemon thread of this process (shares moto's global state)."""
    return EmulatorServer(settings, host, port).start()
