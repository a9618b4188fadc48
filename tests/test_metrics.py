"""`run --metrics-port`: the counts on virtual time, and a real Prometheus scraping a run."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from fleetrel import load_plan, run
from fleetrel.metrics import RunMetrics
from fleetrel.testing import THROTTLE, FakeIoT, run_virtual
from fleetrel.where import Where
from support import journal_records, write_plan

PKG = "door-sensor-app"


def samples(metrics: RunMetrics) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in metrics.collect() for s in family.samples}


def test_the_counts_follow_the_run(tmp_path):
    versions = [str(i) for i in range(5)]
    plan = load_plan(write_plan(tmp_path / "p.yaml", versions, package="fw", waves=[2], rate=10))
    iot = FakeIoT({f"fw/{v}": "DRAFT" for v in versions if v != "4"})  # fw/4 does not exist: it fails
    iot.script("fw/1", THROTTLE, THROTTLE)
    metrics = RunMetrics(plan="p")
    result = run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot,
                                     listeners=[metrics]))
    got = samples(metrics)
    calls = {labels: value for (name, labels), value in got.items() if name == "fleetrel_calls_total"}
    by_outcome = {dict(labels)["outcome"]: value for labels, value in calls.items()}
    assert by_outcome == {"success": 4, "throttled": 2, "error": 1}
    assert sum(calls.values()) == result.attempts
    assert got[("fleetrel_throttles_total", (("target", "default"),))] == 2
    steps = {dict(labels)["state"]: value for (name, labels), value in got.items() if name == "fleetrel_steps"}
    assert steps == {"to_do": 0, "succeeded": 4, "failed": 1}
    assert got[("fleetrel_wave", ())] == 2
    assert got[("fleetrel_run_ended", ())] == 1
    run_id = journal_records(tmp_path / "j.jsonl")[0]["run_id"]
    assert got[("fleetrel_run_info", (("plan", "test-plan"), ("run_id", run_id)))] == 1
    assert got[("fleetrel_rate_limit", (("target", "default"),))] <= 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def query(prometheus: str, expr: str) -> list[dict]:
    return get_json(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["data"]["result"]


def until(check, *, tries: int = 300, pause: float = 0.2):
    """Poll `check()` until it returns something true, at most `tries` times (a bounded wait
    for another process, never a synchronisation by time)."""
    for _ in range(tries):
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"gave up waiting for {check}")


@pytest.fixture
def prometheus(tmp_path):
    """A real Prometheus (Debian's `prometheus` package) on loopback, scraping a port every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus binary: apt-get install prometheus (.ci/run does)")
    target = free_port()
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
                      f"  - job_name: fleetrel\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n")
    process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{web}"
    try:
        until(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200)
        yield url, target
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_prometheus_scrapes_the_runs_final_numbers(emulator, prometheus, tmp_path):
    url, port = prometheus
    versions = [f"1.9.{i}" for i in range(40)]
    emulator.seed([(PKG, v) for v in versions])
    emulator.configure(operations={"UpdatePackageVersion": {"rate": 40, "burst": 2}})  # some throttles
    plan = write_plan(tmp_path / "p.yaml", versions, package=PKG, name="metrics", rate=100, burst=10)
    journal = tmp_path / "j.jsonl"
    out = subprocess.run([sys.executable, "-m", "fleetrel", "run", str(plan), "--journal", str(journal),
                          "--endpoint-url", emulator.url, "--metrics-port", str(port), "--metrics-linger", "60"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    records = journal_records(journal)
    attempts = sum(1 for r in records if r["event"] == "attempt_failed") + \
        sum(1 for r in records if r["event"] == "step_succeeded")
    throttles = sum(1 for r in records if r["event"] == "attempt_failed" and r["throttled"])
    # The run ended after a scrape that read its end: Prometheus has (or is storing) the final
    # numbers. Its next scrape finds the run gone and marks the series stale, so every query
    # reads the last sample over a range (range selections skip staleness markers).
    until(lambda: query(url, "up == 0"))  # the scrape after the run: the same case, however slow the machine
    assert query(url, "last_over_time(fleetrel_run_ended[10m]) == 1")
    calls = {r["metric"]["outcome"]: float(r["value"][1])
             for r in query(url, "sum by (outcome) (last_over_time(fleetrel_calls_total[10m]))")}
    assert sum(calls.values()) == attempts == 40 + calls.get("throttled", 0)
    assert calls["success"] == 40
    assert calls.get("throttled", 0) == throttles
    [succeeded] = query(url, 'last_over_time(fleetrel_steps{state="succeeded"}[10m])')
    assert float(succeeded["value"][1]) == 40
    [info] = query(url, "last_over_time(fleetrel_run_info[10m])")
    assert (info["metric"]["plan"], info["metric"]["run_id"]) == ("metrics", records[0]["run_id"])
    assert query(url, "last_over_time(fleetrel_rate_limit[10m])")


def test_a_port_in_use_is_refused_before_anything_is_sent(tmp_path):
    plan = write_plan(tmp_path / "p.yaml", ["1.0"], package=PKG, name="busy")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "fleetrel", "run", str(plan), "--journal", str(tmp_path / "j.jsonl"),
                              "--endpoint-url", "http://127.0.0.1:9", "--metrics-port", str(port)],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"--metrics-port {port}: cannot serve" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "j.jsonl").exists()


def test_each_target_has_its_own_labels(tmp_path):
    from fleetrel.plan import ReleasePlan

    names = [str(i) for i in range(8)]
    plan = ReleasePlan.model_validate({
        "plan": "two", "limits": {"rate": 10, "burst": 5, "concurrency": 2},
        "targets": [{"name": "us", "region": "us-east-1"}, {"name": "eu", "region": "eu-west-1"}],
        "versions": [{"package": "fw", "versions": names, "action": "PUBLISH"}]})
    us, eu = FakeIoT({f"fw/{n}": "DRAFT" for n in names}), FakeIoT({f"fw/{n}": "DRAFT" for n in names[:6]})
    us.script("fw/0", THROTTLE, THROTTLE, THROTTLE)
    metrics = RunMetrics()
    run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client={"us": us, "eu": eu},
                            listeners=[metrics]))
    got = samples(metrics)
    steps = {(dict(l)["target"], dict(l)["state"]): v for (name, l), v in got.items() if name == "fleetrel_steps"}
    assert steps == {("us", "to_do"): 0, ("us", "succeeded"): 8, ("eu", "to_do"): 0, ("eu", "succeeded"): 6,
                     ("eu", "failed"): 2}
    assert got[("fleetrel_throttles_total", (("target", "us"),))] == 3
    assert ("fleetrel_throttles_total", (("target", "eu"),)) not in got
    rates = {dict(l)["target"] for (name, l) in got if name == "fleetrel_rate_limit"}
    assert rates == {"us", "eu"}
