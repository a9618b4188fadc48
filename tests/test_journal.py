"""The journal on disk: torn tails, corrupt lines, the lock, sensitive fields."""
import json

import pytest

from fleetrel.journal import FORMAT_VERSION, Journal, JournalError, fields_for_journal
from fleetrel.replay import replay


def write_run(path, events):
    with Journal.open(path) as journal:
        journal.write("run_started", format=FORMAT_VERSION, run_id="r1", plan="p", plan_digest="d",
                         steps=2, step_digests={"a/1": "x", "a/2": "y"})
        for event, fields in events:
            journal.write(event, **fields)


def test_replay_counts_outcomes(tmp_path):
    path = tmp_path / "j.jsonl"
    write_run(path, [
        ("step_started", {"step": "a/1", "client_token": "t1", "attempt": 1}),
        ("attempt_failed", {"step": "a/1", "client_token": "t1", "attempt": 1, "throttled": True}),
        ("step_succeeded", {"step": "a/1", "client_token": "t1", "attempt": 2}),
        ("step_started", {"step": "a/2", "client_token": "t2", "attempt": 1}),
    ])
    state = replay(path)
    assert state.run_id == "r1"
    assert state.counts() == {"succeeded": 1, "skipped": 0, "failed": 0, "unfinished": 1}
    assert state.steps["a/1"].attempts == 2 and state.throttles == 1
    assert state.status == "interrupted"


def test_torn_last_line_is_tolerated_and_cut_on_reopen(tmp_path):
    path = tmp_path / "j.jsonl"
    write_run(path, [("step_succeeded", {"step": "a/1", "client_token": "t1", "attempt": 1})])
    with open(path, "a") as f:
        f.write('{"event": "step_succ')  # the process died mid-write
    state = replay(path)
    assert state.torn_tail and state.steps["a/1"].outcome == "succeeded"
    with Journal.open(path) as journal:  # a resume appends after cutting the torn line
        journal.write("step_succeeded", step="a/2", client_token="t2", attempt=1)
    state = replay(path)
    assert not state.torn_tail and state.counts()["succeeded"] == 2


def test_corrupt_middle_line_is_reported(tmp_path):
    path = tmp_path / "j.jsonl"
    write_run(path, [("step_succeeded", {"step": "a/1", "client_token": "t1", "attempt": 1})])
    lines = path.read_text().splitlines()
    lines.insert(1, "not json at all")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JournalError, match=r"j.jsonl:2: corrupt"):
        replay(path)


def test_not_a_journal(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps({"event": "hello"}) + "\n")
    with pytest.raises(JournalError, match="not a fleetrel journal"):
        replay(path)


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path):
        with pytest.raises(JournalError, match="another fleetrel run holds this journal"):
            Journal.open(path)
    Journal.open(path).close()  # free again once the first one closed


def test_sensitive_fields_are_digests_unless_opted_in():
    request = {"packageName": "p", "versionName": "1", "description": "SECRET-DESC",
               "attributes": {"k": "SECRET-ATTR"}, "recipe": "SECRET-RECIPE", "action": "PUBLISH"}
    hidden = json.dumps(fields_for_journal(request, sensitive=False))
    assert "SECRET" not in hidden and "PUBLISH" in hidden
    shown = json.dumps(fields_for_journal(request, sensitive=True))
    assert "SECRET-DESC" in shown and "SECRET-ATTR" in shown


def test_a_journal_in_use_reads_as_running(tmp_path):
    path = tmp_path / "j.jsonl"
    write_run(path, [("step_started", {"step": "a/1", "client_token": "t1", "attempt": 1})])
    assert replay(path).status == "interrupted"  # nobody holds it: killed or stopped
    with Journal.open(path):
        assert replay(path).status == "running"


def test_a_big_run_header_is_a_journal(tmp_path):
    """The header of a 50,000-step run is megabytes long (a digest per step): reopening
    the journal to resume it must read it whole, not refuse it as a stranger's file."""
    path = tmp_path / "j.jsonl"
    digests = {f"pkg-{i // 100:05d}/1.{i % 100}.0": f"{i:016x}" for i in range(50_000)}
    with Journal.open(path) as journal:
        journal.write("run_started", format=FORMAT_VERSION, run_id="r1", plan="p", plan_digest="d",
                      steps=len(digests), step_digests=digests)
    assert path.stat().st_size > 1 << 20
    with Journal.open(path) as journal:
        journal.write("run_resumed", run_id="r1")
    assert replay(path).sessions == 2


def test_replay_reads_what_json_writes_even_where_orjson_would_refuse(tmp_path):
    """json.dumps writes NaN and Infinity; orjson refuses both. Replay must read such a
    record as json does, not call the journal corrupt."""
    path = tmp_path / "j.jsonl"
    write_run(path, [("rate_changed", {"old": float("inf"), "new": float("nan"), "reason": "test"}),
                     ("step_succeeded", {"step": "a/1", "client_token": "t1", "attempt": 1})])
    assert "NaN" in path.read_text()
    state = replay(path)
    change = state.rate_changes[0]
    assert change["old"] == float("inf") and change["new"] != change["new"]  # NaN
    assert state.steps["a/1"].outcome == "succeeded"
