"""`fleetrel status --watch` and the live fields of `status --json`, on a run held between waves."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from fleetrel.events import ExitCode
from fleetrel.gates import HOLD, set_gate
from fleetrel.watch import LiveJournal
from support import journal_records, write_plan

PKG = "door-sensor-app"


def fleetrel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetrel", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_a_held_run_is_watched_until_it_ends(emulator, tmp_path):
    versions = [f"1.9.{i}" for i in range(6)]
    emulator.seed([(PKG, v) for v in versions])
    plan = write_plan(tmp_path / "p.yaml", versions, package=PKG, name="watched", waves=[2])
    journal = tmp_path / "j.jsonl"
    set_gate(journal, HOLD)  # the run stays live, between its waves, until promoted
    runner = subprocess.Popen([sys.executable, "-m", "fleetrel", "run", str(plan), "--journal", str(journal),
                               "--endpoint-url", emulator.url], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watcher = None
    try:
        for _ in range(600):  # bounded: until the run journals its hold
            if any(r["event"] == "wave_gate" for r in journal_records(journal)) or runner.poll() is not None:
                break
            time.sleep(0.1)  # polling the journal another process writes
        assert runner.poll() is None, runner.stderr.read()

        out = fleetrel("status", str(journal), "--json")
        assert out.returncode == ExitCode.RUNNING == 75  # not 130, a run that stopped
        status = json.loads(out.stdout)
        live = status["live"]
        assert status["status"] == "running"
        assert (live["pid"], live["host"]) == (runner.pid, socket.gethostname())
        assert (live["done"], live["to_do"], live["wave"], live["waves"]) == (2, 6, 1, 2)
        assert live["elapsed_s"] >= 0 and live["last_record_age_s"] >= 0 and live["rate"] > 0
        assert live["eta_s"] is not None and live["steps_per_s"] > 0

        text = fleetrel("status", str(journal)).stdout  # people see the same
        assert f"pid {runner.pid} on {socket.gethostname()}" in text and "wave 1/2" in text

        watcher = subprocess.Popen([sys.executable, "-m", "fleetrel", "status", str(journal), "--watch", "--json",
                                    "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = json.loads(watcher.stdout.readline())
        assert first["status"] == "running" and first["live"]["pid"] == runner.pid
        assert fleetrel("promote", str(journal)).returncode == 0
        assert runner.wait(timeout=120) == 0
        rest = watcher.stdout.read().splitlines()
        assert watcher.wait(timeout=60) == ExitCode.OK, watcher.stderr.read()
        last = json.loads(rest[-1])
        assert last["status"] == "complete" and last["counts"]["succeeded"] == 6
        assert last["live"]["done"] == 6  # one session: held at the boundary, then on to the end
    finally:
        for process in (runner, watcher):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_the_watch_display_reads_only_complete_lines(tmp_path):
    journal = tmp_path / "j.jsonl"
    header = {"event": "run_started", "format": 1, "run_id": "r" * 8, "plan": "p", "steps": 2, "to_do": 2,
              "rate": 5.0, "pid": 1, "host": "h", "step_digests": {"a/1": "x", "a/2": "y"},
              "ts": "2026-12-07T00:00:00Z"}
    journal.write_text(json.dumps(header) + "\n" + '{"event": "step_succ')
    live = LiveJournal(journal)
    state = live.refresh()
    assert state.counts()["unfinished"] == 2 and live.fields(now=0)["rate"] == 5.0
    with journal.open("a") as f:
        f.write('eeded", "step": "a/1", "attempt": 1, "ts": "2026-12-07T00:00:10Z"}\n')
    state = live.refresh()
    assert state.counts()["succeeded"] == 1
    from datetime import datetime
    now = datetime.fromisoformat("2026-12-07T00:00:20+00:00").timestamp()
    fields = live.fields(now=now)
    assert (fields["done"], fields["elapsed_s"], fields["last_record_age_s"], fields["eta_s"]) == (1, 20.0, 10.0, 20.0)


def test_a_sharded_run_is_watched_as_one(tmp_path):
    from fleetrel import run
    from fleetrel.plan import ReleasePlan
    from fleetrel.shards import Shard
    from fleetrel.testing import FakeIoT, run_virtual
    from fleetrel.watch import watch_command
    from fleetrel.where import Where

    names = ["1", "2", "3"]
    plan = ReleasePlan.model_validate({
        "plan": "org", "targets": [{"name": "a", "region": "us-east-1"}, {"name": "b", "region": "eu-west-1"}],
        "versions": [{"package": "fw", "versions": names, "action": "PUBLISH"}]})
    for index in (1, 2):
        clients = {t: FakeIoT({f"fw/{n}": "DRAFT" for n in names}) for t in ("a", "b")}
        run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "org.journal.jsonl", shard=Shard(index, 2)),
                                client=clients))
    lines = []
    import click.testing

    runner = click.testing.CliRunner()
    with runner.isolation() as (out, _err, *_):
        code = watch_command(tmp_path / "org.journal.jsonl", json_output=True, interval=0.1)
        lines = out.getvalue().decode().splitlines()
    assert code == ExitCode.OK
    [look] = [json.loads(line) for line in lines]  # finished: one look, then the end
    assert look["status"] == "complete" and look["counts"]["succeeded"] == 6
    assert {index: fields["done"] for index, fields in look["live"]["shards"].items()} == {"1": 3, "2": 3}
