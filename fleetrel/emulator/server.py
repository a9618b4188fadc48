"""Serving the emulator: a threaded werkzeug server around `EmulatorApp`.

`serve()` is what `fleetrel emulator` runs: it prints the URL as the first stdout line,
serves until SIGINT/SIGTERM and returns 0. `serve_in_thread()` is the cheap in-process
variant for tests that do not need a separate process.

    server = EmulatorServer(EmulatorSettings(rate=10))
    print(server.url)            # http://127.0.0.1:PORT
    server.serve_forever()       # or server.start() for a background thread
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Iterable, TextIO

from werkzeug.serving import make_server

from fleetrel.emulator import moto_glue
from fleetrel.emulator.middleware import EmulatorApp, seed
from fleetrel.emulator.settings import EmulatorSettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")
PARENT_PID_ENV = "FLEETREL_EMULATOR_PARENT_PID"


def _quiet_handler() -> type:
    base = moto_glue.moto_request_handler()

    class QuietHandler(base):  # type: ignore[misc, valid-type]
        """moto's handler without the per-request log line (it costs CPU at 500 calls/s)."""

        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    return QuietHandler


class EmulatorServer:
    """A bound (not yet serving) emulator; `url` is known as soon as it is created."""

    def __init__(self, settings: EmulatorSettings | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        moto_glue.install()
        self.app = EmulatorApp(moto_glue.moto_server_app(), moto_glue.iot_server_app(), settings)
        self._server = make_server(host, port, self.app, threaded=True,
                                   request_handler=_quiet_handler())
        # Room for a burst of concurrent connects: werkzeug closes every connection after
        # one answer, so each call is a fresh connect.
        # (listen() again on a listening socket only raises its backlog.)
        self._server.socket.listen(1024)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self._warm_up()

    def _warm_up(self) -> None:
        """Send moto one package call before serving. Its first call loads the botocore
        model and compiles a router for all of IoT; when 32 first calls arrive at once,
        every thread does that work (moto's caches are not locked): seconds of CPU."""
        from werkzeug.test import EnvironBuilder

        credential = "Credential=warmup/20260101/us-east-1/iot/aws4_request"
        for method in ("GET", "PATCH"):
            environ = EnvironBuilder(
                path="/packages/fleetrel-warm-up/versions/0", method=method,
                headers={"Authorization": f"AWS4-HMAC-SHA256 {credential}, "
                                          "SignedHeaders=host, Signature=0",
                         "Content-Type": "application/json"}, data="{}").get_environ()
            for _ in self.app.iot_app(environ, lambda status, headers, exc_info=None: None):
                pass

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fleetrel-emulator",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def serve(settings: EmulatorSettings | None = None, host: str = "127.0.0.1", port: int = 0,
          versions: Iterable[dict[str, Any]] = (), out: TextIO = sys.stdout,
          err: TextIO = sys.stderr) -> int:
    """Serve until SIGINT or SIGTERM; print the URL first. Returns the exit code (0).

    `versions` are seeded (as for POST /_fleetrel/seed) before the URL is printed, so a
    client that reads the URL finds them.
    """
    server = EmulatorServer(settings, host, port)
    seeded = seed(list(versions))
    print(server.url, file=out, flush=True)
    scope = ("loopback only: not reachable from other machines" if host in LOOPBACK
             else f"{host}: REACHABLE FROM OTHER MACHINES, with no authentication")
    print(f"fleetrel emulator: listening on {server.url} ({scope}); "
          f"{seeded['created']} package version(s) seeded; Ctrl-C or SIGTERM stops it",
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
        # The main thread only waits, so the signal handler runs promptly; shutting the
        # server down from the handler itself would deadlock serve_forever.
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
