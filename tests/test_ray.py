"""`fleetrel run --ray` (issue 13): shards as Ray actors, the driver writing the one journal.

One local Ray for the module (started here, in this process, loopback only, stopped at the
end); the actors take no CPU (num_cpus=0), so two cores are enough. Against the
multi-account emulator over real HTTP, six targets over three actors.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pytest
import yaml

from fleetrel.where import Where
from fleetrel.api import run
from fleetrel.engine import Stop
from fleetrel.events import PREVIOUS_DEFAULT, TERMINAL, Event
from fleetrel.plan import load
from fleetrel.shards import assign, target_sizes
from support import journal_records, kill_after_successes, update_calls
from test_targets import ACCOUNTS, ENV, PKG, REGIONS, catalog, org_plan, seed, statuses, tokens_per_target_version

ray = pytest.importorskip("ray")
from fleetrel.raydriver import actor_name, ray_cluster, run_on_ray  # noqa: E402


@pytest.fixture(scope="module")
def credentials_file(tmp_path_factory):
    """A shared credentials file the actors read when they build a profile's client (a test
    rewrites it to make a restarted actor's profile act in another account)."""
    return tmp_path_factory.mktemp("aws") / "credentials"


@pytest.fixture(scope="module")
def ray_address(credentials_file):
    for name, value in ENV.items():
        if name.startswith("AWS_"):
            os.environ.setdefault(name, value)
    credentials_file.write_text("")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials_file)  # the cluster's workers inherit it
    with ray_cluster(None) as started:
        address = started.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:")  # loopback only
        # Ray's token authentication, with a token of this cluster's own in its private folder
        token = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
        assert os.environ["RAY_AUTH_MODE"] == "token" and token.parent.name.startswith(f"fleetrel-ray-{os.getpid()}-")
        assert (token.stat().st_mode & 0o777, token.parent.stat().st_mode & 0o777) == (0o600, 0o700)
        yield address


def cli_env() -> dict[str, str]:
    """A command's environment: the emulator's keys, and Ray's settings for this module's cluster."""
    return {**ENV, **{k: v for k, v in os.environ.items() if k.startswith("RAY_")}}


def terminal_counts(journal) -> dict[str, int]:
    out: dict[str, int] = {}
    for record in journal_records(journal):
        if record["event"] in TERMINAL:
            out[record["step"]] = out.get(record["step"], 0) + 1
    return out


def accepted_tokens(emulator) -> list[list[str]]:
    """Per (account, region, package version): the tokens the emulator accepted."""
    return [tokens for regions in emulator.record()["accounts"].values() for place in regions.values()
            for tokens in place["tokens"].values()]


def everywhere(url: str, versions: list[str]) -> dict[tuple[str, str], dict[str, str]]:
    return {(a, r): statuses(url, a, r, versions) for a in ACCOUNTS.values() for r in REGIONS}


class StopAfter:
    """A listener that stops the run once `n` steps have ended."""

    def __init__(self, stop: Stop, n: int) -> None:
        self.stop, self.n, self.seen = stop, n, 0

    def on_event(self, record) -> None:
        if record.event in TERMINAL:
            self.seen += 1
            if self.seen == self.n:
                self.stop.request("interrupted")


def test_six_targets_over_three_actors_end_as_one_process_does(ray_address, emulator, tmp_path):
    versions = ["8.0.0", "8.0.1"]
    missing = ("222222222222", "eu-west-1")  # one target's versions do not exist: its steps fail there
    ends = {}
    for how in ("ray", "one process"):
        emulator.reset()
        seed(emulator.url, versions, skip={missing})
        (tmp_path / how).mkdir()
        plan = load(org_plan(tmp_path / how / "org.yaml", versions))
        if how == "ray":
            result = anyio.run(lambda: run_on_ray(plan, endpoint_url=emulator.url, actors=3))
        else:
            result = anyio.run(lambda: run(plan, Where(endpoint_url=emulator.url)))
        journal = tmp_path / how / "org.journal.jsonl"
        ends[how] = (result.status, result.targets, everywhere(emulator.url, versions),
                     sorted((o.key, o.outcome) for o in result.outcomes))
        assert set(terminal_counts(journal).values()) == {1} and len(terminal_counts(journal)) == 12
        tokens = tokens_per_target_version(journal)
        assert len(tokens) == 12 and all(len(t) == 1 for t in tokens.values())
        assert all(len(set(t)) == 1 for t in accepted_tokens(emulator))
    assert ends["ray"] == ends["one process"]
    assert ends["ray"][1]["staging-eu-west-1"]["failed"] == 2 and ends["ray"][0] == "failed"


def test_an_actor_killed_mid_run_loses_nothing_and_doubles_nothing(ray_address, emulator, tmp_path):
    versions = [f"8.1.{i}" for i in range(12)]
    seed(emulator.url, versions)
    # 72 steps: each target's burst of 5 at once, its next 7 at 4/s: the kill, on the
    # victim's first step to end, comes with most of its shard's steps still to send
    plan = load(org_plan(tmp_path / "org.yaml", versions, rate=4, concurrency=2))
    victim_target = "prod-us-east-1"
    killed = {}

    class KillOnce:
        def on_event(self, record) -> None:
            if record.event in TERMINAL and record.get("target") == victim_target and not killed:
                killed["shard"] = shard = assign(target_sizes(plan), 3)[victim_target]
                ray.kill(ray.get_actor(actor_name(plan, shard, 3)), no_restart=False)  # Ray restarts it

    result = anyio.run(lambda: run_on_ray(plan, endpoint_url=emulator.url, actors=3, listeners=[KillOnce()]))
    assert killed, "no actor was killed"
    journal = tmp_path / "org.journal.jsonl"
    assert result.status == "complete" and result.succeeded == 72
    counts = terminal_counts(journal)
    assert len(counts) == 72 and set(counts.values()) == {1}
    tokens = tokens_per_target_version(journal)
    assert all(len(t) == 1 for t in tokens.values())
    accepted = accepted_tokens(emulator)
    assert len(accepted) == 72 and all(len(set(t)) == 1 for t in accepted)
    restarts = [r for r in journal_records(journal) if r["event"] == Event.SHARD_RESTARTED]
    assert len(restarts) == 1 and restarts[0]["shard"] == killed["shard"] and restarts[0]["left"] > 0


def test_a_run_with_ray_resumes_without_it_and_the_other_way(ray_address, emulator, tmp_path):
    versions = [f"8.2.{i}" for i in range(12)]
    seed(emulator.url, versions)
    path = org_plan(tmp_path / "org.yaml", versions, rate=4, concurrency=1)  # 72 steps, 1.75 s a target
    plan = load(path)
    journal = tmp_path / "org.journal.jsonl"
    # --ray from the command line, on this module's cluster; the driver is killed mid-run
    kill_after_successes(["run", str(path), "--endpoint-url", emulator.url, "--ray", ray_address, "--actors", "3"],
                         journal, 6, cli_env())
    first = [r for r in journal_records(journal) if r["event"] == Event.STEP_SUCCEEDED]
    assert 6 <= len(first) < 72
    resumed = anyio.run(lambda: run(plan, Where(endpoint_url=emulator.url)))  # the same run, without Ray
    assert resumed.status == "complete" and resumed.done_before == len(first)
    assert resumed.run_id == journal_records(journal)[0]["run_id"]

    # the other way: one process stopped part-way, then `--ray` finishes it
    emulator.reset()
    seed(emulator.url, versions)
    other = tmp_path / "other"
    other.mkdir()
    plan = load(org_plan(other / "org.yaml", versions, rate=4, concurrency=1))
    stop = Stop()
    part = anyio.run(lambda: run(plan, Where(endpoint_url=emulator.url), listeners=[StopAfter(stop, 10)], stop=stop))
    assert part.status == "interrupted" and 10 <= part.succeeded < 72
    out = subprocess.run([sys.executable, "-m", "fleetrel", "run", str(other / "org.yaml"), "--endpoint-url",
                          emulator.url, "--ray", ray_address, "--json"], capture_output=True, text=True, env=cli_env(),
                         timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["run_id"] == part.run_id and doc["done_before"] == part.succeeded and doc["succeeded"] == 72
    for journal in (tmp_path / "org.journal.jsonl", other / "org.journal.jsonl"):
        assert set(terminal_counts(journal).values()) == {1} and len(terminal_counts(journal)) == 72
        assert all(len(t) == 1 for t in tokens_per_target_version(journal).values())
    assert all(len(set(t)) == 1 for t in accepted_tokens(emulator))
    assert set(v for place in everywhere(emulator.url, versions).values() for v in place.values()) == {"PUBLISHED"}


def test_one_shard_over_ray_and_the_other_by_hand_make_one_run(ray_address, emulator, tmp_path):
    """`--shard I/N --ray`: a run too large for one driver is sharded, and each shard run over Ray."""
    from fleetrel.replay import replay
    from fleetrel.shardreport import find_shard_journals, sharded_status
    from fleetrel.shards import Shard

    seed(emulator.url, ["8.3.0"])
    plan = load(org_plan(tmp_path / "org.yaml", ["8.3.0"]))
    first = anyio.run(lambda: run_on_ray(plan, endpoint_url=emulator.url, actors=2, shard=Shard(1, 2)))
    assert first.status == "complete" and first.succeeded == 3 and first.steps == 3
    second = anyio.run(lambda: run(plan, Where(endpoint_url=emulator.url, shard=Shard(2, 2))))
    assert second.status == "complete" and set(second.targets).isdisjoint(first.targets)
    journals = find_shard_journals(tmp_path / "org.journal.jsonl")
    assert list(journals) == [Shard(1, 2), Shard(2, 2)]
    status = sharded_status([replay(p) for p in journals.values()])
    assert status["status"] == "complete" and status["counts"]["succeeded"] == 6 and not status["missing_shards"]
    assert set(v for place in everywhere(emulator.url, ["8.3.0"]).values() for v in place.values()) == {"PUBLISHED"}


def test_a_ray_run_stopped_part_way_ends_interrupted_and_resumes(ray_address, emulator, tmp_path):
    versions = [f"8.4.{i}" for i in range(10)]
    seed(emulator.url, versions)
    # 60 steps: each target's burst of 5 at once, its next 5 at 4/s; the stop reaches the
    # actors a poll later than the 8th step's end, long before the 1.25 s the rest take
    plan = load(org_plan(tmp_path / "org.yaml", versions, rate=4, concurrency=1))
    stop = Stop()
    part = anyio.run(lambda: run_on_ray(plan, endpoint_url=emulator.url, actors=3,
                                        listeners=[StopAfter(stop, 8)], stop=stop))
    assert part.status == "interrupted" and 8 <= part.succeeded < 60 and part.unfinished == 60 - part.succeeded
    journal = tmp_path / "org.journal.jsonl"
    assert journal_records(journal)[-1]["event"] == Event.RUN_INTERRUPTED
    rest = anyio.run(lambda: run_on_ray(plan, endpoint_url=emulator.url, actors=3))
    assert rest.status == "complete" and rest.done_before == part.succeeded and rest.run_id == part.run_id
    assert set(terminal_counts(journal).values()) == {1} and len(terminal_counts(journal)) == 60
    assert all(len(t) == 1 for t in tokens_per_target_version(journal).values())
    assert all(len(set(t)) == 1 for t in accepted_tokens(emulator))


def place_calls(emulator, account: str, region: str, operation: str) -> int:
    place = emulator.record()["accounts"].get(account, {}).get(region, {})
    return sum(place.get("operations", {}).get(operation, {}).values())


def seed_defaults(url: str, account: str) -> None:
    """In both regions of `account`: 1.0 published and the default, 2.0 a draft."""
    for region in REGIONS:
        iot = catalog(url, account, region)
        iot.create_package(packageName=PKG)
        for version in ("1.0", "2.0"):
            iot.create_package_version(packageName=PKG, versionName=version)
        iot.update_package_version(packageName=PKG, versionName="1.0", action="PUBLISH")
        iot.update_package(packageName=PKG, defaultVersionName="1.0")


def default_plan(path, account: str):
    """Publish 2.0 and make it the default, in both regions of `account`: 4 steps."""
    doc = {"plan": "org-default", "limits": {"rate": 50, "burst": 5, "concurrency": 2},
           "targets": {"accounts": {"dev": account}, "regions": REGIONS, "role_name": "fleet-release"},
           "versions": [{"package": PKG, "version": "2.0", "action": "PUBLISH", "default": True}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load(path)


def test_default_steps_left_by_an_earlier_session_go_over_ray(ray_address, emulator, tmp_path):
    """Their version steps were finished by the session before (here one process, stopped
    after them): the actors let the default steps go, as one process would."""
    account = ACCOUNTS["dev"]
    seed_defaults(emulator.url, account)
    plan = default_plan(tmp_path / "org.yaml", account)
    stop = Stop()
    part = anyio.run(lambda: run(plan, Where(endpoint_url=emulator.url), listeners=[StopAfter(stop, 2)], stop=stop))
    assert part.status == "interrupted" and part.succeeded == 2 and part.unfinished == 2
    rest = anyio.run(lambda: run_on_ray(plan, endpoint_url=emulator.url, actors=2))
    assert rest.status == "complete", [(o.key, o.outcome, o.code) for o in rest.outcomes]
    assert all(catalog(emulator.url, account, r).get_package(packageName=PKG)["defaultVersionName"] == "2.0"
               for r in REGIONS)


def test_an_actor_killed_after_changing_a_default_unjournalled_leaves_undo_the_old_default(
        ray_address, emulator, tmp_path):
    """The actor reads the default (1.0), journals `step_started` into its buffer and changes the
    default to 2.0; it dies before the driver drains that record. Its restarted self must not
    journal 2.0 as the default it replaced (undo would restore it): the change waits for the
    driver to have journalled the read, as one process writes it before sending."""
    from fleetrel.undo import build_undo

    account, region = ACCOUNTS["dev"], "us-east-1"
    victim = f"dev-{region}"
    seed_defaults(emulator.url, account)
    plan = default_plan(tmp_path / "org.yaml", account)
    default_key = f"{victim}:{PKG}/2.0#default"
    name = actor_name(plan, assign(target_sizes(plan), 2)[victim], 2)
    seen: dict = {}

    class KillInTheWindow:
        """On the victim's first record, with the driver held here (so it journals nothing
        more): wait until the actor has changed the default, or holds the change until its
        read is journalled; then kill its process."""

        def on_event(self, record) -> None:
            if record.get("target") != victim or seen.get("killed"):
                return
            actor = ray.get_actor(name)
            seen["pid"] = ray.get(actor.__ray_call__.remote(lambda worker: os.getpid()))
            for _ in range(3000):  # bounded: 30 s of polls for one of the two conditions
                if place_calls(emulator, account, region, "UpdatePackage"):
                    break
                if ray.get(actor.__ray_call__.remote(lambda worker: bool(getattr(worker.buffer, "held", None)))):
                    break
                time.sleep(0.01)  # a poll of the emulator's record, not a synchronisation
            else:
                raise AssertionError("the actor neither changed the default nor held the change")
            os.kill(seen["pid"], signal.SIGKILL)
            seen["killed"] = True

    result = anyio.run(lambda: run_on_ray(plan, endpoint_url=emulator.url, actors=2, listeners=[KillInTheWindow()]))
    assert seen.get("killed")
    journal = tmp_path / "org.journal.jsonl"
    records = journal_records(journal)
    assert [r["event"] for r in records if r["event"] == Event.SHARD_RESTARTED] == [Event.SHARD_RESTARTED], [(r["event"], r.get("step"), r.get(PREVIOUS_DEFAULT), r.get("code")) for r in records]
    started = [r for r in records if r["event"] == Event.STEP_STARTED and r["step"] == default_key]
    assert started and started[0].get(PREVIOUS_DEFAULT) == "1.0", started
    assert result.status == "complete", [(o.key, o.outcome, o.code) for o in result.outcomes]
    assert catalog(emulator.url, account, region).get_package(packageName=PKG)["defaultVersionName"] == "2.0"
    undo = build_undo(journal)
    assert {"package": PKG, "version": "2.0", "action": "DEPRECATE", "then_default": "1.0",
            "targets": [victim]} in undo.plan["versions"] or "1.0" in str(undo.plan), undo.text()


def profile_in(url: str, account: str) -> str:
    """A credentials-file profile `fleet` whose keys (from the emulator's STS) act in `account`."""
    import boto3

    sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/fleet-release", RoleSessionName="test")["Credentials"]
    return (f"[fleet]\naws_access_key_id = {creds['AccessKeyId']}\naws_secret_access_key = {creds['SecretAccessKey']}\n"
            f"aws_session_token = {creds['SessionToken']}\n")


def test_a_restarted_actor_pointing_elsewhere_stops_a_new_run(ray_address, credentials_file, emulator, tmp_path):
    """The target's profile acts in account 111111111111 when the run starts; its actor dies,
    and the profile now acts in 222222222222: the restarted actor's place is checked against
    the one this (new) run recorded, and the run stops, sending nothing to the other account."""
    first, other = ACCOUNTS["dev"], ACCOUNTS["staging"]
    versions = [f"8.5.{i}" for i in range(10)]
    for account in (first, other):
        iot = catalog(emulator.url, account, "us-east-1")
        iot.create_package(packageName=PKG)
        for version in versions:
            iot.create_package_version(packageName=PKG, versionName=version)
    credentials_file.write_text(profile_in(emulator.url, first))
    doc = {"plan": "org-profile", "limits": {"rate": 4, "burst": 2, "concurrency": 1},
           "targets": [{"name": "edge", "region": "us-east-1", "profile": "fleet"}],
           "versions": [{"package": PKG, "versions": versions, "action": "PUBLISH"}]}
    (tmp_path / "org.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    plan = load(tmp_path / "org.yaml")
    killed = {}

    class MoveAndKill:
        def on_event(self, record) -> None:
            if record.event in TERMINAL and not killed:
                credentials_file.write_text(profile_in(emulator.url, other))
                actor = ray.get_actor(actor_name(plan, 1, 1))
                killed["pid"] = ray.get(actor.__ray_call__.remote(lambda worker: os.getpid()))
                os.kill(killed["pid"], signal.SIGKILL)  # Ray restarts it

    try:
        result = anyio.run(lambda: run_on_ray(plan, endpoint_url=emulator.url, actors=1, listeners=[MoveAndKill()]))
    finally:
        credentials_file.write_text("")
    assert killed
    assert result.status == "interrupted" and result.stopped_by == "setup" and result.unfinished > 0
    assert "points elsewhere" in result.setup_error and other in result.setup_error, result.setup_error
    assert place_calls(emulator, other, "us-east-1", "UpdatePackageVersion") == 0
    header = journal_records(tmp_path / "org.journal.jsonl")[0]
    assert header["identity"]["edge"]["account"] == first


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def listening_pids() -> set[int]:
    """The processes with a listening TCP socket, as `ss -ltnp` shows them."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}


def processes_in(folder: Path) -> set[int]:
    """The processes with a file (log, socket) in `folder`: every process of a local Ray."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd).startswith(str(folder)) for fd in (proc / "fd").iterdir()):
                found.add(int(proc.name))
        except OSError:
            continue
    return found


def test_a_killed_drivers_local_ray_goes_with_it_and_its_actors_stop_sending(emulator, tmp_path):
    """`fleetrel run --ray` on a local Ray of its own, killed with -9 mid-run: every process of
    that Ray is gone (none listening on the loopback), its folder with it, and its actors send
    nothing new once the driver is dead; a folder whose reaper died too goes at the next run."""
    versions = [f"8.6.{i}" for i in range(40)]
    seed(emulator.url, versions, skip={(a, r) for a in ACCOUNTS.values() for r in REGIONS if a != ACCOUNTS["dev"]})
    # 2 targets, 80 steps, 10 calls/s each: 4 s of sending, killed after 10 successes
    path = org_plan(tmp_path / "org.yaml", versions, pin={"dev": ACCOUNTS["dev"]}, rate=10, concurrency=2)
    journal = tmp_path / "org.journal.jsonl"
    env = {k: v for k, v in cli_env().items() if k != "RAY_ADDRESS"}  # a local Ray of its own
    args = [sys.executable, "-m", "fleetrel", "run", str(path), "--endpoint-url", emulator.url, "--ray", "local",
            "--actors", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    for _ in proc.stdout:  # a progress line at a time: the journal read in between, no sleep
        if sum(1 for r in journal_records(journal) if r["event"] == Event.STEP_SUCCEEDED) >= 10:
            break
    folders = list(Path(tempfile.gettempdir()).glob(f"fleetrel-ray-{proc.pid}-*"))
    assert len(folders) == 1 and (folders[0].stat().st_mode & 0o777) == 0o700  # the user's alone
    ray_processes = processes_in(folders[0]) - {proc.pid}
    assert len(ray_processes) >= 4 and ray_processes & listening_pids()  # GCS, raylet, agents, actors

    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    calls_at_kill = update_calls(emulator)
    for _ in range(600):  # bounded: a minute of polls for every process of that Ray to be gone
        left = {pid for pid in ray_processes if alive(pid)}
        if not left and not ray_processes & listening_pids() and not folders[0].exists():
            break
        time.sleep(0.1)  # a poll of /proc, not a synchronisation
    else:
        raise AssertionError(f"left behind: processes {sorted(left)}, folder {folders[0].exists()}")
    # what was in flight when the driver died may still land; nothing more is sent
    assert update_calls(emulator) - calls_at_kill <= 2 * 2  # targets x concurrency
    first = sum(1 for r in journal_records(journal) if r["event"] == Event.STEP_SUCCEEDED)
    assert 10 <= first < 80

    # a folder whose reaper was killed too (its process, here one that ran and ended, gone)
    ended = subprocess.Popen(["true"])
    ended.wait()
    stale = Path(tempfile.mkdtemp(prefix=f"fleetrel-ray-{ended.pid}-"))
    (stale / "session.log").write_text("left by a run killed with its reaper\n")
    out = subprocess.run(args + ["--json"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["succeeded"] == 80 and json.loads(out.stdout)["done_before"] == first
    assert not stale.exists() and not folders[0].exists()
    assert not list(Path(tempfile.gettempdir()).glob(f"fleetrel-ray-{proc.pid}-*"))
