"""Runs on one host that send to one quota see each other (`fleetrel.neighbours`), and
share its ceiling from their first call (`RateController.share`, the engine's lanes).

What two runs that cannot see each other do is in test_quota_sharing.py; how much
seeing each other buys is measured in benchmarks/ (`simulate.py --scenario f` with and
without `--apart`)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetrel import load_plan, run
from fleetrel.neighbours import ENV, Neighbours, directory, quota_of
from fleetrel.ratecontrol import RateController
from fleetrel.testing import FakeIoT, run_virtual
from fleetrel.where import Where
from support import journal_records, write_plan

KEY = quota_of({"account": "123456789012", "region": "eu-west-1", "endpoint": "https://iot.eu-west-1.amazonaws.com"})


def test_members_of_one_quota_count_each_other_and_stop_when_they_leave(tmp_path):
    first = Neighbours.join(tmp_path, KEY)
    second = Neighbours.join(tmp_path, KEY)
    elsewhere = Neighbours.join(tmp_path, quota_of({"account": "123456789012", "region": "us-east-1"}))
    assert first is not None and second is not None and elsewhere is not None
    assert (first.count(force=True), second.count(force=True), elsewhere.count(force=True)) == (2, 2, 1)
    second.leave()
    second.leave()  # idempotent
    assert first.count(force=True) == 1
    first.leave()
    elsewhere.leave()
    assert list(tmp_path.iterdir()) == []  # nothing left behind, folders included


def test_the_count_follows_the_directory_without_being_forced(tmp_path):
    first = Neighbours.join(tmp_path, KEY)
    assert first.count() == 1
    second = Neighbours.join(tmp_path, KEY)  # a new file: the directory's time changes
    assert first.count() == 2
    second.leave()
    assert first.count() == 1
    first.leave()


def test_a_killed_run_stops_counting_and_its_file_goes(tmp_path):
    code = ("import sys; from pathlib import Path; from fleetrel.neighbours import Neighbours; "
            f"n = Neighbours.join(Path({str(tmp_path)!r}), {KEY!r}); print(n.count(force=True), flush=True); "
            "sys.stdin.read()")
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "1"  # it has joined (and holds its lock)
        me = Neighbours.join(tmp_path, KEY)
        assert me.count(force=True) == 2
    finally:
        other.kill()  # SIGKILL: no `leave`, its file stays; the kernel drops its lock
        other.wait()
    assert len(list((tmp_path / KEY).iterdir())) == 2
    assert me.count(force=True) == 1
    assert len(list((tmp_path / KEY).iterdir())) == 1
    me.leave()


def test_a_file_being_created_is_not_taken_for_a_dead_run(tmp_path):
    (tmp_path / KEY).mkdir()
    (tmp_path / KEY / ".123-abc").touch()  # `join` locks it under this name, then renames it
    me = Neighbours.join(tmp_path, KEY)
    assert me.count(force=True) == 1 and (tmp_path / KEY / ".123-abc").exists()
    me.leave()


def test_switched_off_or_unusable_means_no_neighbours(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "off")
    assert directory() is None and Neighbours.join(directory(), KEY) is None
    monkeypatch.setenv(ENV, str(tmp_path / "q"))
    assert directory() == tmp_path / "q"
    monkeypatch.delenv(ENV)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert directory().name == "quotas" and directory().parent.name == f"fleetrel-{os.getuid()}"
    (tmp_path / "a-file").write_text("")
    assert Neighbours.join(tmp_path / "a-file", KEY) is None  # not a directory: the run goes on alone


def test_only_a_target_whose_account_is_known_has_a_quota_to_share():
    assert quota_of({"account": "123456789012", "region": "us-east-1",
                     "endpoint": "https://iot.eu-west-1.amazonaws.com"}) != KEY  # another region's
    assert quota_of({"region": "eu-west-1", "endpoint": "https://iot.eu-west-1.amazonaws.com"}) is None
    # an emulator's account is not AWS's
    assert quota_of({"account": "123456789012", "region": "eu-west-1", "endpoint": "http://127.0.0.1:5000"}) != KEY


def test_a_run_that_starts_beside_another_sends_at_its_part_with_no_burst():
    async def main():
        control = RateController(rate=10.0, burst=10)
        changes = []
        control.on_rate_change = lambda old, new, why: changes.append((old, new, why))
        control.share(2)
        assert control.rate == 5.0 and changes == [(10.0, 5.0, "neighbours")]
        # no burst of 10: its first call an interval of 5/s later (the other run slows down
        # meanwhile), then one every 0.2 s
        assert control.try_acquire() is False
        loop = asyncio.get_running_loop()
        times = []
        for _ in range(3):
            await control.acquire()
            times.append(loop.time())
        assert times == pytest.approx([0.2, 0.4, 0.6], abs=0.01)

    run_virtual(main)


def test_a_run_takes_a_neighbours_part_when_it_leaves_and_gives_it_when_it_comes():
    async def main():
        control = RateController(rate=10.0, burst=10)
        control.share(1)
        assert control.rate == 10.0
        for _ in range(10):  # its burst
            assert control.try_acquire()
        control.share(2)
        assert control.rate == 5.0 and control.limiter.max_rate == 1
        control.share(1)
        assert control.rate == 10.0 and control.limiter.max_rate == 10
        # the bucket of ten it has again saves from now on: no burst into the service's
        # bucket, which the neighbour kept empty
        assert control.try_acquire() is False

    run_virtual(main)


class Count:
    def __init__(self, n: int) -> None:
        self.n = n

    def count(self) -> int:
        return self.n


def test_calls_queued_at_a_part_see_the_neighbour_leave():
    """The run looks at its admissions, queued ones included: a run whose last calls all
    wait in its bucket at half the quota takes the whole once the other run has gone."""
    async def main():
        control = RateController(rate=10.0, burst=10)
        neighbours = Count(2)
        control.watch(neighbours)
        assert control.rate == 5.0
        waiting = [asyncio.ensure_future(control.acquire()) for _ in range(8)]
        await waiting[0]
        neighbours.n = 1
        await asyncio.gather(*waiting)
        assert control.rate == 10.0
        control.watch(None)
        neighbours.n = 3
        await control.acquire()
        assert control.rate == 10.0  # no longer looking

    run_virtual(main)


def test_a_fixed_rate_is_not_shared():
    control = RateController(rate=10.0, burst=10, adaptive=False)
    control.share(2)
    assert control.rate == 10.0


def versions_plan(tmp_path: Path, name: str, versions: list[str]):
    return load_plan(write_plan(tmp_path / f"{name}.yaml", versions, package=name, rate=10, burst=5, concurrency=4))


def test_two_runs_on_one_account_split_its_ceiling_and_each_step_ends_once(tmp_path):
    one = FakeIoT({f"a/{i}": "DRAFT" for i in range(30)}, account="123456789012")
    two = FakeIoT({f"b/{i}": "DRAFT" for i in range(30)}, account="123456789012")
    other_account = FakeIoT({f"c/{i}": "DRAFT" for i in range(30)}, account="210987654321")

    async def main():
        return await asyncio.gather(
            run(versions_plan(tmp_path, "a", [str(i) for i in range(30)]), Where(journal_path=tmp_path / "a.jsonl"),
                client=one),
            run(versions_plan(tmp_path, "b", [str(i) for i in range(30)]), Where(journal_path=tmp_path / "b.jsonl"),
                client=two),
            run(versions_plan(tmp_path, "c", [str(i) for i in range(30)]), Where(journal_path=tmp_path / "c.jsonl"),
                client=other_account))

    results = run_virtual(main)
    assert [r.succeeded for r in results] == [30, 30, 30]
    for name in "abc":
        records = journal_records(tmp_path / f"{name}.jsonl")
        finished = [r["step"] for r in records if r["event"] == "step_succeeded"]
        assert len(finished) == len(set(finished)) == 30
        shared = [(r["old"], r["new"]) for r in records if r["event"] == "rate_changed" and r["reason"] == "neighbours"]
        if name == "c":
            assert shared == []  # another account's quota
        else:
            assert (10.0, 5.0) in shared
    assert [p for p in Path(os.environ[ENV]).rglob("*") if p.is_file()] == []  # every lane left


def test_in_the_simulation_runs_that_see_each_other_share_evenly_and_are_rarely_throttled():
    """simulate.py (f), the second run 0.5 s after the first: on one host the late run
    takes no burst into the bucket the other keeps empty, and both hold half."""
    from dataclasses import replace

    from benchmarks.scenarios import scenarios_for
    from benchmarks.simulate import simulate

    (f,) = scenarios_for("default", ["f"])
    f = replace(f, calls=150)
    apart = simulate(f, seed=2, stagger=0.5, apart=True)
    together = simulate(f, seed=2, stagger=0.5)
    assert together.throttled * 4 < apart.throttled
    assert together.fairness >= 0.95 and together.fairness > apart.fairness
    assert all(s["min_rate"] >= 4.75 for s in together.stats)  # each at its part, a touch under at worst
