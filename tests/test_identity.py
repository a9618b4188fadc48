"""One run, one identity (issue 21): each finding reproduced through the real CLI over
HTTP against the emulator's accounts and regions, where a run, a shard layout or an
undo met another feature and broke a promise. The model of all of them together is
tests/test_identity_model.py; these are its examples, one per finding."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from fleetrel.events import ExitCode
from fleetrel.plan import load
from fleetrel.shards import Shard
from support import journal_records
from test_targets import ENV, PKG, catalog, fleetrel, statuses

A, B, C = "111111111111", "222222222222", "333333333333"


def seed_place(url: str, account: str, region: str, versions: dict[str, str]) -> None:
    """`versions` {name: DRAFT | PUBLISHED} in (account, region)."""
    iot = catalog(url, account, region)
    iot.create_package(packageName=PKG)
    for version, status in versions.items():
        iot.create_package_version(packageName=PKG, versionName=version)
        if status == "PUBLISHED":
            iot.update_package_version(packageName=PKG, versionName=version, action="PUBLISH")


def target(name: str, account: str, region: str = "us-east-1") -> dict:
    return {"name": name, "region": region, "account": account,
            "role_arn": f"arn:aws:iam::{account}:role/fleet-release"}


def write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def tokens_sent(emulator, account: str, region: str = "us-east-1") -> dict[str, list[str]]:
    return emulator.record()["accounts"].get(account, {}).get(region, {}).get("tokens_sent", {})


def killed_in_flight(args: list[str], emulator, account: str) -> None:
    """`fleetrel ARGS`, killed (SIGKILL) once one of its calls has reached `account`'s
    catalog and waits there for its answer (the emulator's latency holds it)."""
    proc = subprocess.Popen([sys.executable, "-m", "fleetrel", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 120
    while not tokens_sent(emulator, account) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before its call arrived"
        time.sleep(0.05)  # polling the emulator's record for the call: the condition, not the time, decides
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert tokens_sent(emulator, account), "no call arrived"


# -- 1: undo acts where the run acted ------------------------------------------------------

def test_undo_of_a_run_sent_elsewhere_by_region_goes_there(emulator, tmp_path):
    """1a: `run rel.yaml --region eu-west-1`, then undo: the undo plan said us-east-1."""
    for region in ("us-east-1", "eu-west-1"):
        seed_place(emulator.url, "123456789012", region, {"1.0": "DRAFT"})
    plan = write(tmp_path / "rel.yaml", {"plan": "rel", "target": {"region": "us-east-1"},
                                         "versions": [{"package": PKG, "version": "1.0", "action": "PUBLISH"}]})
    assert fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--region", "eu-west-1").returncode == 0
    undo = fleetrel("undo", str(tmp_path / "rel.journal.jsonl"), "-o", str(tmp_path / "undo.yaml"))
    assert undo.returncode == 0, undo.stderr
    assert yaml.safe_load((tmp_path / "undo.yaml").read_text())["target"]["region"] == "eu-west-1"
    back = fleetrel("run", str(tmp_path / "undo.yaml"), "--endpoint-url", emulator.url)
    assert back.returncode == 0, back.stderr
    assert statuses(emulator.url, "123456789012", "eu-west-1", ["1.0"]) == {"1.0": "DEPRECATED"}
    assert statuses(emulator.url, "123456789012", "us-east-1", ["1.0"]) == {"1.0": "DRAFT"}  # never touched


def test_undo_refuses_a_plan_whose_target_now_points_at_another_account(emulator, tmp_path):
    """1b: targets A (account 111) and B; run; edit A's account to 333: undo wrote A→333."""
    for account in (A, B, C):
        seed_place(emulator.url, account, "us-east-1", {"1.0": "DRAFT"})
    doc = {"plan": "org", "targets": [target("a", A), target("b", B)],
           "versions": [{"package": PKG, "version": "1.0", "action": "PUBLISH"}]}
    plan = write(tmp_path / "org.yaml", doc)
    assert fleetrel("run", str(plan), "--endpoint-url", emulator.url).returncode == 0
    doc["targets"][0] = target("a", C)
    write(plan, doc)
    undo = fleetrel("undo", str(tmp_path / "org.journal.jsonl"))
    assert undo.returncode == ExitCode.INVALID, undo.stdout
    assert f"target a acted in account {A}" in undo.stderr and f"account {C}" in undo.stderr
    assert "fleetrel bug" not in undo.stderr
    assert statuses(emulator.url, C, "us-east-1", ["1.0"]) == {"1.0": "DRAFT"}


def test_undo_with_a_plan_of_targets_for_a_single_target_journal_is_refused(emulator, tmp_path):
    """1c: `undo J --plan org.yaml` on a single-target journal wrote entries without
    `targets:`, so the undo would run in every org target. 11a: with targets that do not
    match, undo said 'a fleetrel bug'."""
    seed_place(emulator.url, "123456789012", "us-east-1", {"1.0": "DRAFT"})
    single = write(tmp_path / "rel.yaml", {"plan": "rel", "target": {"region": "us-east-1"},
                                           "versions": [{"package": PKG, "version": "1.0", "action": "PUBLISH"}]})
    org = write(tmp_path / "org.yaml", {"plan": "org", "targets": [target("a", A), target("b", B)],
                                        "versions": [{"package": PKG, "version": "1.0", "action": "PUBLISH"}]})
    assert fleetrel("run", str(single), "--endpoint-url", emulator.url).returncode == 0
    undo = fleetrel("undo", str(tmp_path / "rel.journal.jsonl"), "--plan", str(org))
    assert undo.returncode == ExitCode.INVALID and "one target" in undo.stderr, undo.stderr
    assert "fleetrel bug" not in undo.stderr and not undo.stdout


# -- 2: one clientToken per step, whatever layout sends it ---------------------------------

def two_targets(tmp_path: Path, entries: list[dict] | None = None, names=(("t1", A), ("t2", B))) -> Path:
    return write(tmp_path / "org.yaml", {
        "plan": "org", "limits": {"rate": 50, "burst": 5, "concurrency": 2},
        "targets": [target(name, account) for name, account in names],
        "versions": entries or [{"package": PKG, "version": "1.0", "action": "PUBLISH", "targets": [names[0][0]]},
                                {"package": PKG, "version": "2.0", "action": "PUBLISH", "targets": [names[1][0]]}]})


def test_the_whole_run_after_a_killed_shard_is_refused_and_a_new_run_keeps_the_token(emulator, tmp_path):
    """2a: shard 1/2 killed while its call was in flight, then the whole run: it was not
    refused, and a second clientToken reached the service for t1's version."""
    seed_place(emulator.url, A, "us-east-1", {"1.0": "DRAFT"})
    seed_place(emulator.url, B, "us-east-1", {"2.0": "DRAFT"})
    plan = two_targets(tmp_path)
    emulator.configure(latency_ms=3000)
    killed_in_flight(["run", str(plan), "--endpoint-url", emulator.url, "--shard", "1/2"], emulator, A)
    emulator.configure(latency_ms=0)
    whole = fleetrel("run", str(plan), "--endpoint-url", emulator.url)
    assert whole.returncode == ExitCode.INVALID and "org.shard-1-of-2.journal.jsonl" in whole.stderr, whole.stderr
    assert not (tmp_path / "org.journal.jsonl").exists()
    status = fleetrel("status", str(tmp_path / "org"), "--json")  # the sharded run, shard 2 missing
    assert status.returncode == ExitCode.INTERRUPTED and json.loads(status.stdout)["missing_shards"] == [2]

    again = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--new-run", "--json")
    assert again.returncode == 0, again.stderr
    assert [len(tokens) for tokens in tokens_sent(emulator, A).values()] == [1]  # one token for t1's 1.0, ever
    assert statuses(emulator.url, A, "us-east-1", ["1.0"]) == {"1.0": "PUBLISHED"}
    assert not list(tmp_path.glob("org.shard-*.journal.jsonl"))  # kept aside under their run ids
    assert list(tmp_path.glob("org.shard-1-of-2.journal.jsonl.*"))


def test_targets_that_move_between_shards_keep_their_tokens(emulator, tmp_path):
    """2b: three targets; shard 1/2 killed mid-flight; an entry added for t2 alone; then
    `--shard 1/2 --new-run` and `--shard 2/2 --new-run`: t1 and t3 moved to shard 2 and
    their in-flight steps went out again under new tokens."""
    names = (("t1", A), ("t2", B), ("t3", C))
    for _, account in names:
        seed_place(emulator.url, account, "us-east-1", {"1.0": "DRAFT", "9.0": "DRAFT"})
    entries = [{"package": PKG, "version": "1.0", "action": "PUBLISH"}]
    plan = two_targets(tmp_path, entries, names)
    first = Shard(1, 2).targets(load(plan))
    assert len(first) == 2  # three equal targets: shard 1 runs two of them
    emulator.configure(latency_ms=3000)
    killed_in_flight(["run", str(plan), "--endpoint-url", emulator.url, "--shard", "1/2"], emulator,
                     dict(names)[first[0]])
    emulator.configure(latency_ms=0)
    write(plan, {**yaml.safe_load(plan.read_text()),
                 "versions": entries + [{"package": PKG, "version": "9.0", "action": "PUBLISH", "targets": ["t2"]}]})
    for index in (1, 2):
        out = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--shard", f"{index}/2", "--new-run")
        assert out.returncode == 0, out.stderr
    for _, account in names:
        assert all(len(tokens) == 1 for tokens in tokens_sent(emulator, account).values()), tokens_sent(emulator, account)
        assert statuses(emulator.url, account, "us-east-1", ["1.0"]) == {"1.0": "PUBLISHED"}


def test_a_shard_resumes_after_its_plans_targets_are_reordered(emulator, tmp_path):
    """5: reordered targets (the same plan digest) made a shard resume fail with 'this
    journal holds shard 1/2, but this session is shard 1/2'."""
    names = (("t1", A), ("t2", A), ("t3", B), ("t4", B))  # two targets a shard, so their order can differ
    for account in (A, B):
        for region in ("us-east-1", "eu-west-1"):
            seed_place(emulator.url, account, region, {"1.0": "DRAFT"})
    doc = {"plan": "org", "limits": {"rate": 50, "burst": 5, "concurrency": 2},
           "targets": [target(name, account, region) for (name, account), region in
                       zip(names, ("us-east-1", "eu-west-1", "us-east-1", "eu-west-1"))],
           "versions": [{"package": PKG, "version": "1.0", "action": "PUBLISH"}]}
    plan = write(tmp_path / "org.yaml", doc)
    assert fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--shard", "1/2").returncode == 0
    doc["targets"].reverse()
    write(plan, doc)
    again = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--shard", "1/2", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["done_before"] == 2


def test_huge_shard_counts_and_actors_are_refused_not_a_memory_error(tmp_path):
    """7: `--shard 1/1000000000000` (or a huge `--actors`) crashed with MemoryError."""
    plan = two_targets(tmp_path)
    shard = fleetrel("run", str(plan), "--shard", "1/1000000000000")
    assert shard.returncode == ExitCode.INVALID and "at most 10000 shards" in shard.stderr, shard.stderr
    actors = fleetrel("run", str(plan), "--ray", "--actors", "1000000000000")
    assert actors.returncode == ExitCode.INVALID and "MemoryError" not in actors.stderr, actors.stderr


def test_an_empty_shard_previews_nothing(tmp_path):
    """11b: `--shard 5/5` of 3 targets under --dry-run previewed every target."""
    plan = two_targets(tmp_path, names=(("t1", A), ("t2", B), ("t3", C)),
                       entries=[{"package": PKG, "version": "1.0", "action": "PUBLISH"}])
    out = fleetrel("run", str(plan), "--shard", "5/5", "--dry-run", "--endpoint-url", "http://127.0.0.1:9")
    assert out.returncode == 0 and "no targets" in out.stderr and not out.stdout, out.stderr


# -- 9: status of a --target run -----------------------------------------------------------

def test_status_of_a_canary_run_is_its_own_and_resumes_with_its_target(emulator, tmp_path):
    """9: after `run org.yaml --target canary`, status exited 130 and offered a resume
    command without --target: pasting it would release to prod."""
    for account in (A, B):
        seed_place(emulator.url, account, "us-east-1", {"1.0": "DRAFT", "1.1": "DRAFT"})
    plan = two_targets(tmp_path, names=(("canary", A), ("prod", B)),
                       entries=[{"package": PKG, "versions": ["1.0", "1.1"], "action": "PUBLISH"}])
    assert fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--target", "canary").returncode == 0
    status = fleetrel("status", str(tmp_path / "org.journal.jsonl"), "--json")
    doc = json.loads(status.stdout)
    assert status.returncode == ExitCode.OK and doc["status"] == "complete", status.stdout
    assert doc["targets_not_run"] == ["prod"] and doc["counts"]["succeeded"] == 2
    assert statuses(emulator.url, B, "us-east-1", ["1.0", "1.1"]) == {"1.0": "DRAFT", "1.1": "DRAFT"}

    # killed in its second session: the command it offers is the canary's, not prod's
    lines = (tmp_path / "org.journal.jsonl").read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    resumed = {"event": "run_resumed", "run_id": header["run_id"], "plan": "org", "only": ["canary"],
               "identity": header["identity"], "ts": header["ts"]}
    (tmp_path / "org.journal.jsonl").write_text("".join(lines) + json.dumps(resumed) + "\n")
    killed = json.loads(fleetrel("status", str(tmp_path / "org.journal.jsonl"), "--json").stdout)
    assert "--target canary" in killed["resume"] and "prod" not in killed["resume"]
    text = fleetrel("status", str(tmp_path / "org.journal.jsonl"))
    assert any(line.startswith("fleetrel run ") and line.endswith("--target canary") for line in text.stdout.splitlines())


def test_status_of_a_whole_run_journal_names_the_shard_journals_beside_it(emulator, tmp_path):
    """2a: `status org.journal.jsonl` said complete and hid the shard journal beside it."""
    for account in (A, B):
        seed_place(emulator.url, account, "us-east-1", {"1.0": "DRAFT", "2.0": "DRAFT"})
    plan = two_targets(tmp_path)
    assert fleetrel("run", str(plan), "--endpoint-url", emulator.url).returncode == 0
    # a shard journal left beside it (by a fleetrel from before layouts were checked)
    (tmp_path / "org.shard-1-of-2.journal.jsonl").write_bytes((tmp_path / "org.journal.jsonl").read_bytes())
    status = fleetrel("status", str(tmp_path / "org.journal.jsonl"), "--json")
    assert json.loads(status.stdout)["other_journals"] == [str(tmp_path / "org.shard-1-of-2.journal.jsonl")]
    assert "another layout" in fleetrel("status", str(tmp_path / "org.journal.jsonl")).stdout
