"""A handle on a running emulator: start one in its own process, seed it, configure it,
read what it received, stop it. Talks to the control endpoints over HTTP only, so it can
drive an emulator someone started in another terminal (`Emulator("http://127.0.0.1:5000")`).

    with start_emulator(rate=10, burst=10) as emu:
        emu.seed([("thermostat-fw", "4.2.0")])
        ...  # point boto3/aioboto3 at emu.url
        emu.record()["operations"]["UpdatePackageVersion"]   # {"200": 480, "400": 20}

    with start_emulator(accounts=["111111111111", "222222222222"],
                        regions=["us-east-1", "eu-west-1"], session_seconds=30) as emu:
        emu.seed([("thermostat-fw", "4.2.0")])          # in all four (account, region)
        emu.state("thermostat-fw", "4.2.0", account="222222222222", region="eu-west-1")
        emu.record()["accounts"]["222222222222"]["eu-west-1"]["operations"]

Imports nothing from moto: a client process stays light.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterable, Mapping



class EmulatorError(RuntimeError):
    """The emulator refused a control request or could not be started."""


def version_entry(item: Any) -> dict[str, Any]:
    """A seed entry from a `fleetrel.plan.Step`, a (package, version) pair or a dict.

    A Step seeds only its package and version (as DRAFT): the step says what to *do*,
    not what already exists.
    """
    if isinstance(item, dict):
        if "package" not in item or "version" not in item:
            raise ValueError(f"a seed entry needs 'package' and 'version': {item!r}")
        return {key: value for key, value in item.items() if value is not None}
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return {"package": str(item[0]), "version": str(item[1])}
    if hasattr(item, "package") and hasattr(item, "version"):
        return {"package": item.package, "version": item.version}
    raise TypeError(f"cannot seed from {item!r}: give a Step, (package, version) or a dict")


class Emulator:
    """A running emulator at `url`; `process` is set when this handle started it."""

    def __init__(self, url: str, process: subprocess.Popen[str] | None = None,
                 on_stop: Any = None) -> None:
        self.url = url.rstrip("/")
        self.process = process
        self._on_stop = on_stop

    def _call(self, method: str, action: str, payload: Any = None,
              query: dict[str, str] | None = None, timeout: float = 30.0) -> Any:
        url = f"{self.url}/_fleetrel/{action}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                detail = json.loads(body)
            except ValueError:
                detail = body.decode(errors="replace")
            if action == "state" and error.code == 404:
                return None
            raise EmulatorError(f"{method} /_fleetrel/{action}: {error.code} {detail}") from None

    def seed(self, versions: Iterable[Any], *, accounts: str | Iterable[str] | None = None,
             regions: str | Iterable[str] | None = None) -> dict[str, int]:
        """Create packages and versions (DRAFT unless a dict gives "status"); existing ones
        are kept, with any fields a dict gives set on them. Returns {"created", "existing"}
        summed over the places seeded: every emulated (account, region) unless `accounts`
        and/or `regions` (one name or several) narrow them.
        """
        entries = [version_entry(item) for item in versions]
        return self._call("POST", "seed", {"versions": entries, "accounts": names(accounts),
                                           "regions": names(regions)})

    def seed_fleet(self, things: int, seed: int = 0,
                   accounts: str | Iterable[str] | None = None,
                   regions: str | Iterable[str] | None = None) -> dict[str, Any]:
        """Replace the fleet with `things` things (device-000000, ...) reporting the
        catalog's versions in their `$package` shadow, skewed as fleets are and
        deterministic per seed, and turn on fleet indexing of `$package`; in every
        emulated (account, region) unless narrowed. Returns the exact counts:
        {"things", "seed", "accounts": {account: {region: {package: {version: n}}}}}.

            emu.seed([("fw", "1.0.0"), ("fw", "2.0.0")])
            emu.seed_fleet(1000, seed=7)["accounts"]["123456789012"]["us-east-1"]["fw"]
        """
        return self._call("POST", "fleet", {"things": things, "seed": seed,
                                            "accounts": names(accounts),
                                            "regions": names(regions)},
                          timeout=600.0)

    def fleet(self, account: str | None = None,
              region: str | None = None) -> dict[str, dict[str, int]]:
        """The fleet index of (account, region), unthrottled: {package: {version: things
        reporting it}} (the ground truth GetBucketsAggregation must equal). Default: the
        first emulated account and region."""
        query = {name: value for name, value in (("account", account), ("region", region))
                 if value is not None}
        return self._call("GET", "fleet", query=query)

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings at run time (see `EmulatorSettings`); returns all settings."""
        return self._call("POST", "configure", changes)

    def settings(self) -> dict[str, Any]:
        return self._call("GET", "settings")

    def record(self) -> dict[str, Any]:
        """What the emulator received since the last reset (see `Record.snapshot`)."""
        return self._call("GET", "record")

    def reset_record(self) -> None:
        self._call("POST", "reset-record", {})

    def reset(self) -> None:
        """Forget every package, the fleet (things, `$package` shadows, the indexing
        configuration), the record and setting changes since start-up."""
        self._call("POST", "reset", {})

    def state(self, package: str, version: str, *, account: str | None = None,
              region: str | None = None) -> dict[str, Any] | None:
        """The version as GetPackageVersion in (account, region) would return it
        (unthrottled), or None. Default: the first emulated account and region (moto's
        default account and us-east-1 when none are listed)."""
        query = {"package": package, "version": version}
        for name, value in (("account", account), ("region", region)):
            if value is not None:
                query[name] = value
        return self._call("GET", "state", query=query)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the emulator this handle started (SIGTERM, then kill); no-op otherwise."""
        if self._on_stop is not None:
            self._on_stop()
            self._on_stop = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Emulator({self.url!r})"


def names(value: str | Iterable[str] | None) -> list[str] | None:
    """One name or several as a list (None stays None: the emulator's default)."""
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(item) for item in value]


def emulator_args(rate: float | None = None, burst: float | None = None,
                  latency_ms: float = 0.0, jitter_ms: float = 0.0, fail_rate: float = 0.0,
                  drop_rate: float = 0.0, random_seed: int | None = None,
                  accounts: Iterable[str] | None = None, regions: Iterable[str] | None = None,
                  session_seconds: int | None = None,
                  place_rates: Mapping[str, float | tuple[float, float]] | None = None) -> list[str]:
    args: list[str] = []
    for place, limits in (place_rates or {}).items():
        rate, burst = limits if isinstance(limits, tuple) else (limits, None)
        args += ["--place-rate", f"{place}={rate:g}" + (f":{burst:g}" if burst else "")]
    for flag, value in (("--rate", rate), ("--burst", burst), ("--latency-ms", latency_ms),
                        ("--jitter-ms", jitter_ms), ("--fail-rate", fail_rate),
                        ("--drop-rate", drop_rate), ("--random-seed", random_seed),
                        ("--accounts", ",".join(names(accounts) or [])),
                        ("--regions", ",".join(names(regions) or [])),
                        ("--session-seconds", session_seconds)):
        if value:
            args += [flag, str(value)]
    return args


def start_emulator(rate: float | None = None, burst: float | None = None,
                   latency_ms: float = 0.0, jitter_ms: float = 0.0, fail_rate: float = 0.0,
                   drop_rate: float = 0.0, seed: Any = None, *,
                   accounts: str | Iterable[str] | None = None,
                   regions: str | Iterable[str] | None = None,
                   session_seconds: int | None = None,
                   place_rates: Mapping[str, float | tuple[float, float]] | None = None,
                   host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 60.0) -> Emulator:
    """Start `python -m fleetrel.emulator` in its own process; return once it answers.

    `seed` is the fault dice's seed when an int; any other iterable is seeded as package
    versions (see `Emulator.seed`, in every emulated account and region) once the
    emulator is up. rate None: no throttling. `accounts`/`regions`: the emulated ones
    (None: any); `session_seconds`: the longest STS session; `place_rates`: a quota of
    its own per "account/region", a rate or (rate, burst) (see `fleetrel emulator --help`;
    at run time: `configure(places={"111111111111/us-east-1": {"rate": 2}})`).

        with start_emulator(rate=10, accounts=["111111111111"], regions="eu-west-1") as emu:
            boto3.client("iot", endpoint_url=emu.url, ...)
    """
    random_seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    command = [sys.executable, "-m", "fleetrel.emulator", "--host", host, "--port", str(port),
               *emulator_args(rate, burst, latency_ms, jitter_ms, fail_rate, drop_rate,
                              random_seed, accounts, regions, session_seconds, place_rates)]
    # The child stops by itself if this process dies without stopping it (see serve()).
    env = dict(os.environ, PYTHONUNBUFFERED="1", FLEETREL_EMULATOR_PARENT_PID=str(os.getpid()))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    url_line: list[str] = []
    got_line = threading.Event()

    def read_stdout() -> None:
        # Keep draining after the URL line so a chatty server can never block on a
        # full pipe.
        assert process.stdout is not None
        for line in process.stdout:
            if not got_line.is_set():
                url_line.append(line.strip())
                got_line.set()
        got_line.set()

    threading.Thread(target=read_stdout, name="fleetrel-emulator-stdout", daemon=True).start()
    if not got_line.wait(startup_timeout) or not url_line:
        process.kill()
        process.wait()
        raise EmulatorError(f"the emulator did not print its URL (exit code "
                            f"{process.returncode}); command: {' '.join(command)}")
    emulator = Emulator(url_line[0], process)
    if seed is not None and random_seed is None:
        emulator.seed(seed)
    return emulator


def start_emulator_in_thread(rate: float | None = None, burst: float | None = None,
                             **settings: Any) -> Emulator:
    """The same handle on an emulator served by a thread of this process (imports moto).

    Cheaper to start, but it shares this process's GIL and moto state: use it for
    functional tests, not for measuring throughput.
    """
    from fleetrel.emulator.server import serve_in_thread
    from fleetrel.emulator.settings import EmulatorSettings

    server = serve_in_thread(EmulatorSettings(rate=rate, burst=burst, **settings))
    return Emulator(server.url, on_stop=server.stop)
