"""Sharding an organisation-wide run by hand (issue 13): the split rule, shard journals,
and `fleetrel status` merging them, over real HTTP against the multi-account emulator."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, strategies as st

from fleetrel.events import TERMINAL, ExitCode
from fleetrel.plan import ReleasePlan
from fleetrel.shards import Shard, ShardError, assign, shard_journal_path, shard_of_path, target_sizes
from support import journal_records
from test_targets import ACCOUNTS, REGIONS, fleetrel, org_plan, seed, statuses, tokens_per_target_version


def test_targets_go_to_the_least_loaded_shard_largest_first():
    # a(5) → 1; b(3) → 2; c(3) → 2 (3 < 5); d(1) → 1 (5 < 6): six steps each
    assert assign({"d": 1, "c": 3, "a": 5, "b": 3}, 2) == {"d": 1, "c": 2, "a": 1, "b": 2}
    # equal sizes: by name, round robin; more shards than targets leaves some empty
    assert assign({"x": 2, "y": 2, "z": 2}, 4) == {"x": 1, "y": 2, "z": 3}
    # no steps known (a plan of selectors): by target count, round robin
    assert assign(dict.fromkeys("abcde", 0), 2) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1}


def test_the_split_counts_listed_steps_so_a_selector_never_moves_a_target():
    plan = ReleasePlan.model_validate({
        "plan": "org", "targets": [{"name": n, "region": "us-east-1"} for n in ("a", "b", "c")],
        "versions": [
            {"package": "fw", "versions": ["1.0", "1.1"], "action": "PUBLISH", "targets": ["a"]},
            {"package": "fw", "version": "2.0", "action": "DEPRECATE"},
            {"select": {"package": "fw", "status": "PUBLISHED"}, "action": "DEPRECATE", "targets": ["b"]},
        ]})
    assert target_sizes(plan) == {"a": 3, "b": 1, "c": 1}
    assert Shard(1, 2).targets(plan) == ["a"] and Shard(2, 2).targets(plan) == ["b", "c"]


@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=4), st.integers(1, 50), min_size=1, max_size=30),
       st.integers(1, 8))
def test_every_target_in_one_shard_and_the_shards_balanced(sizes, count):
    shard_of = assign(sizes, count)
    assert set(shard_of) == set(sizes) and set(shard_of.values()) <= set(range(1, count + 1))
    assert shard_of == assign(dict(reversed(sizes.items())), count)  # plan order does not matter
    loads = [sum(n for t, n in sizes.items() if shard_of[t] == i) for i in range(1, count + 1)]
    # greedy onto the lightest: no shard exceeds the lightest by more than one target's steps
    assert max(loads) - min(loads) <= max(sizes.values())


def test_shard_names_and_parsing():
    assert shard_journal_path(Path("/x/org.journal.jsonl"), Shard(2, 4)) == Path("/x/org.shard-2-of-4.journal.jsonl")
    assert shard_journal_path(Path("run.log"), Shard(1, 2)) == Path("run.shard-1-of-2.log")
    assert shard_of_path(Path("/x/org.shard-2-of-4.journal.jsonl")) == (Path("/x/org.journal.jsonl"), Shard(2, 4))
    assert shard_of_path(Path("org.journal.jsonl")) is None
    assert Shard.parse(" 3/4 ") == Shard(3, 4)
    for bad in ("0/4", "5/4", "1-4", "a/b", "1/0"):
        with pytest.raises(ShardError):
            Shard.parse(bad)
    with pytest.raises(ShardError, match="no `targets:`"):
        target_sizes(ReleasePlan.model_validate(
            {"plan": "one", "target": {"region": "us-east-1"},
             "versions": [{"package": "fw", "version": "1.0.0", "action": "PUBLISH"}]}))


def test_two_shards_by_hand_then_one_merged_status(emulator, tmp_path):
    versions = ["6.0.0", "6.0.1"]
    seed(emulator.url, versions)
    plan = org_plan(tmp_path / "org.yaml", versions)
    first = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--shard", "1/2", "--json")
    assert first.returncode == 0, first.stderr
    shard1 = tmp_path / "org.shard-1-of-2.journal.jsonl"
    header = journal_records(shard1)[0]
    assert header["shard"]["index"] == 1 and len(header["shard"]["targets"]) == 3
    assert set(json.loads(first.stdout)["targets"]) == set(header["shard"]["targets"])
    assert not (tmp_path / "org.journal.jsonl").exists()

    # the run's journal path names the sharded run: shard 2 is missing, so it is not finished
    half = fleetrel("status", str(tmp_path / "org.journal.jsonl"), "--json")
    assert half.returncode == ExitCode.INTERRUPTED, half.stderr
    doc = json.loads(half.stdout)
    assert doc["missing_shards"] == [2] and doc["counts"] == {"succeeded": 6, "skipped": 0, "failed": 0,
                                                              "unfinished": 6}
    mismatched = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--shard", "1/3")
    assert mismatched.returncode == ExitCode.INVALID and "(--shard 1/2)" in mismatched.stderr

    second = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--shard", "2/2", "--json")
    assert second.returncode == 0, second.stderr
    shard2 = tmp_path / "org.shard-2-of-2.journal.jsonl"
    assert set(journal_records(shard2)[0]["shard"]["targets"]).isdisjoint(header["shard"]["targets"])
    for paths in ([str(tmp_path / "org")], [str(shard1), str(shard2)]):
        merged = fleetrel("status", *paths, "--json")
        assert merged.returncode == 0, merged.stderr
        doc = json.loads(merged.stdout)
        assert doc["status"] == "complete" and doc["missing_shards"] == [] and doc["counts"]["succeeded"] == 12
        assert len(doc["targets"]) == 6
    text = fleetrel("status", str(tmp_path / "org.journal.jsonl"))
    assert "2 shards" in text.stdout and "1/2" in text.stdout and "2/2" in text.stdout
    # one token and one terminal record per (target, version), across the two journals
    tokens = {**tokens_per_target_version(shard1), **tokens_per_target_version(shard2)}
    assert len(tokens) == 12 and all(len(t) == 1 for t in tokens.values())
    terminal = [r["step"] for j in (shard1, shard2) for r in journal_records(j) if r["event"] in TERMINAL]
    assert len(terminal) == len(set(terminal)) == 12
    for account in ACCOUNTS.values():
        for region in REGIONS:
            assert set(statuses(emulator.url, account, region, versions).values()) == {"PUBLISHED"}
    again = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--shard", "2/2", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["attempts"] == 0  # resumes itself: nothing left


def test_a_shard_journal_is_not_resumed_as_another_shard(emulator, tmp_path):
    seed(emulator.url, ["6.1.0"])
    plan = org_plan(tmp_path / "org.yaml", ["6.1.0"])
    shard = tmp_path / "org.shard-1-of-2.journal.jsonl"
    assert fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--shard", "1/2").returncode == 0
    whole = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--journal", str(shard))
    assert whole.returncode == ExitCode.INVALID and "holds shard 1/2" in whole.stderr
    both = fleetrel("run", str(tmp_path / "org.yaml"), "--shard", "1/2", "--target", "dev-us-east-1")
    assert both.returncode == ExitCode.INVALID and "do not go together" in both.stderr
    single = tmp_path / "single.yaml"
    single.write_text("plan: single\nversions: [{package: fw, version: 1.0.0, action: PUBLISH}]\n")
    for how in (["--shard", "1/2"], ["--ray"]):  # one quota: nothing to shard, refused before anything starts
        out = fleetrel("run", str(single), "--endpoint-url", emulator.url, *how)
        assert out.returncode == ExitCode.INVALID and "nothing to shard" in out.stderr, out.stderr
    assert not (tmp_path / "single.journal.jsonl").exists()


def selector_org_plan(path: Path, versions: list[str]) -> Path:
    """The six-target organisation plan with one selector: every DRAFT thermostat version."""
    doc = yaml.safe_load(org_plan(path, versions).read_text())
    doc["versions"] = [{"select": {"package": "thermostat-*", "status": "DRAFT"}, "action": "PUBLISH"}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_plan_of_selectors_in_shards_each_selects_its_own_targets(emulator, tmp_path):
    versions = ["7.0.0", "7.0.1"]
    seed(emulator.url, versions)
    plan = selector_org_plan(tmp_path / "org.yaml", versions)
    seen: set[str] = set()
    for index in (1, 2):
        out = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--shard", f"{index}/2", "--json")
        assert out.returncode == 0, out.stderr
        header = journal_records(tmp_path / f"org.shard-{index}-of-2.journal.jsonl")[0]
        mine = set(header["shard"]["targets"])
        assert len(mine) == 3 and not mine & seen  # six targets of no listed steps: three a shard
        assert {match["target"] for match in header["selection"]} == mine  # frozen for its own targets only
        seen |= mine
    for account in ACCOUNTS.values():
        for region in REGIONS:
            assert set(statuses(emulator.url, account, region, versions).values()) == {"PUBLISHED"}
    merged = fleetrel("status", str(tmp_path / "org.journal.jsonl"), "--json")
    assert merged.returncode == 0 and json.loads(merged.stdout)["counts"]["succeeded"] == 12, merged.stderr
    assert json.loads(merged.stdout)["steps"] == 12  # every shard's own selection counted, not the first's


def test_a_shard_of_a_selector_plan_missing_makes_its_steps_unknown_not_zero(emulator, tmp_path):
    """Issue 21.8: the merged status of a sharded selector plan said "3 steps: 6 succeeded"."""
    versions = ["7.1.0", "7.1.1"]
    seed(emulator.url, versions)
    plan = selector_org_plan(tmp_path / "org.yaml", versions)
    assert fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--shard", "1/2").returncode == 0
    half = fleetrel("status", str(tmp_path / "org.journal.jsonl"), "--json")
    doc = json.loads(half.stdout)
    assert half.returncode == ExitCode.INTERRUPTED and doc["missing_shards"] == [2]
    assert doc["counts"]["succeeded"] == 6 and doc["steps"] is None  # shard 2's selection is not known yet
    text = fleetrel("status", str(tmp_path / "org.journal.jsonl"))
    said = " ".join(text.stdout.split())  # the console wraps at its width
    assert "6 succeeded" in said and "steps of shard 2 not known" in said, text.stdout


def test_a_plan_of_selectors_runs_over_ray_expanded_once_and_frozen(emulator, tmp_path):
    """Issue 21: `--ray` refused a plan with `select:`; the driver now expands it and
    freezes the selection in the run's one journal, as a single process does."""
    versions = ["7.2.0", "7.2.1"]
    seed(emulator.url, versions)
    plan = selector_org_plan(tmp_path / "org.yaml", versions)
    ray = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--ray", "--json")
    assert ray.returncode == 0, ray.stderr
    header = journal_records(tmp_path / "org.journal.jsonl")[0]
    assert len({match["target"] for match in header["selection"]}) == 6
    for account in ACCOUNTS.values():
        for region in REGIONS:
            assert set(statuses(emulator.url, account, region, versions).values()) == {"PUBLISHED"}
    again = fleetrel("run", str(plan), "--endpoint-url", emulator.url, "--json")  # the same run, without Ray
    assert again.returncode == 0 and json.loads(again.stdout)["done_before"] == 12, again.stderr
