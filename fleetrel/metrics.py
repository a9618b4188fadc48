"""Prometheus metrics of a run, served over HTTP for the run's lifetime.

    with MetricsServer(port=9464, plan="spring-release") as metrics:    # loopback by default
        result = await run(plan, listeners=[metrics])
    # curl http://127.0.0.1:9464/metrics

An engine listener that counts in plain dicts on the engine's path (one or two dict
updates per record, no lock) and a `prometheus_client` collector that turns the counts
into metric families when Prometheus scrapes, on the HTTP server's own thread. The
metrics (every name once, here):

- `fleetrel_calls_total{target,operation,outcome}`: calls sent (attempts, retries included);
  outcome `success`, `throttled` or `error`; operation `UpdatePackageVersion` or `UpdatePackage`
- `fleetrel_throttles_total{target}`
- `fleetrel_rate_limit{target}`: calls per second the rate controller admits now
- `fleetrel_steps{target,state}`: state `to_do` (left in this session), `succeeded`, `skipped`, `failed`
- `fleetrel_wave`: the wave running now (0 before the first)
- `fleetrel_run_info{plan,run_id}`: 1
- `fleetrel_run_ended`: 0 while running, 1 once the session's end is journalled
- `fleetrel_events_total`: records the listener counted (a heartbeat)

`target` is the plan's target name, `default` for a plan without `targets:`. With
`linger`, the server stays up after the run until one scrape has read the final numbers
(or `linger` seconds pass), so that a short run's end is never missed by its scraper.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from fleetrel.events import OUTCOME_OF, SESSION_STARTS, Event, Record, SessionView
from fleetrel.plan.defaults import DEFAULT_KEY_SUFFIX

DEFAULT_TARGET = "default"
UPDATE_VERSION, UPDATE_PACKAGE = "UpdatePackageVersion", "UpdatePackage"
_ENDINGS = frozenset({Event.RUN_FINISHED, Event.RUN_ABORTED, Event.RUN_INTERRUPTED})
_STEP_STARTED, _ATTEMPT_FAILED = str(Event.STEP_STARTED), str(Event.ATTEMPT_FAILED)


class RunMetrics:
    """The counts (an engine listener) and their Prometheus collector."""

    def __init__(self, *, plan: str | None = None) -> None:
        self.plan = plan or ""
        self.run_id = ""
        self.calls: dict[tuple[str, str, str], int] = {}
        self.throttles: dict[str, int] = {}
        self.steps: dict[tuple[str, str], int] = {}
        self.rates: dict[str, float] = {}
        self.wave = 0
        self.ended = False
        self.events = 0
        self._view: SessionView | None = None
        self.scraped_after_end = threading.Event()  # set once a scrape that read the end was answered
        self._local = threading.local()  # per scrape: whether it read the end

    # -- the engine's path -------------------------------------------------------------

    def on_start(self, view: SessionView) -> None:
        self._view = view
        targets = view.targets()
        if targets:
            for name, (to_do, rate, _) in targets.items():
                self.steps[(name, "to_do")] = to_do
                self.rates[name] = rate
        else:
            self.steps[(DEFAULT_TARGET, "to_do")] = view.to_do
            self.rates[DEFAULT_TARGET] = view.rate

    def on_event(self, record: Record) -> None:
        self.events += 1
        event = str(record.event)  # plain str: a StrEnum's == is slow, and this is the engine's path
        if event == _STEP_STARTED:
            return
        fields = record.fields
        target = fields.get("target") or DEFAULT_TARGET
        state = OUTCOME_OF.get(event)
        if state is not None:
            steps = self.steps
            steps[(target, "to_do")] = steps.get((target, "to_do"), 0) - 1
            steps[(target, state)] = steps.get((target, state), 0) + 1
            if fields.get("attempt"):  # 0: decided without a call (a default already set)
                self._call(target, fields, "success" if state == "succeeded" else "error")
        elif event == _ATTEMPT_FAILED:
            throttled = fields.get("throttled")
            if throttled:
                self.throttles[target] = self.throttles.get(target, 0) + 1
            self._call(target, fields, "throttled" if throttled else "error")
        elif event == Event.RATE_CHANGED:
            self.rates[target] = float(fields["new"])
        elif event == Event.WAVE_STARTED:
            self.wave = int(fields["wave"])
        elif event in SESSION_STARTS:
            self.run_id = str(fields.get("run_id", ""))
            self.plan = str(fields.get("plan", self.plan))
        elif event in _ENDINGS:
            self.ended = True

    def _call(self, target: str, fields: Any, outcome: str) -> None:
        operation = UPDATE_PACKAGE if str(fields.get("step", "")).endswith(DEFAULT_KEY_SUFFIX) else UPDATE_VERSION
        key = (target, operation, outcome)
        self.calls[key] = self.calls.get(key, 0) + 1

    # -- the scrape, on the server's thread ---------------------------------------------

    def collect(self) -> Iterator[Metric]:
        ended = self.ended  # read first: what follows is at least as new as the end
        calls = CounterMetricFamily("fleetrel_calls", "Calls sent to the service (attempts, retries included)",
                                    labels=["target", "operation", "outcome"])
        for (target, operation, outcome), count in dict(self.calls).items():
            calls.add_metric([target, operation, outcome], count)
        yield calls
        throttles = CounterMetricFamily("fleetrel_throttles", "ThrottlingException answers", labels=["target"])
        for target, count in dict(self.throttles).items():
            throttles.add_metric([target], count)
        yield throttles
        rates = GaugeMetricFamily("fleetrel_rate_limit", "Calls per second the rate controller admits now",
                                  labels=["target"])
        for target, rate in dict(self.rates).items():
            rates.add_metric([target], rate)
        yield rates
        steps = GaugeMetricFamily("fleetrel_steps", "Steps by state: to_do (left in this session), succeeded, "
                                  "skipped, failed", labels=["target", "state"])
        for (target, state), count in dict(self.steps).items():
            steps.add_metric([target, state], count)
        yield steps
        yield GaugeMetricFamily("fleetrel_wave", "The wave running now (0: before the first)", value=self.wave)
        info = GaugeMetricFamily("fleetrel_run_info", "The run: its plan and run id", labels=["plan", "run_id"])
        if self.run_id:  # one series per run: none before its session opened (a run id is known then)
            info.add_metric([self.plan, self.run_id], 1)
        yield info
        yield GaugeMetricFamily("fleetrel_run_ended", "1 once the session's end is journalled", value=int(ended))
        yield CounterMetricFamily("fleetrel_events", "Engine records counted", value=self.events)
        self._local.read_the_end = ended


class MetricsServer(RunMetrics):
    """`RunMetrics` served at http://HOST:PORT/metrics from `__enter__` to `__exit__`
    (port 0: any free port, then `self.port`)."""

    def __init__(self, *, port: int, host: str = "127.0.0.1", linger: float = 0.0, plan: str | None = None) -> None:
        super().__init__(plan=plan)
        self.host, self.port, self.linger = host, port, linger
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._server: Any = None

    def __enter__(self) -> "MetricsServer":
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                metrics._local.read_the_end = False
                encode, content_type = choose_encoder(self.headers.get("Accept", ""))
                body = encode(metrics.registry)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                if metrics._local.read_the_end:  # answered in full: the run may end now
                    metrics.scraped_after_end.set()

            def log_message(self, *args: Any) -> None:  # no line on stderr per scrape
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, name="fleetrel-metrics", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.linger and self.ended:
            self.scraped_after_end.wait(self.linger)  # the scraper's last look at the final numbers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
