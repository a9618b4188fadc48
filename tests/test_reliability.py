"""Issue 10's findings, each reproduced: a run's identity, the journal's safety,
credentials, signals, output and hostile input. Findings about a run are reproduced over
real HTTP against the emulator; engine decisions also on the fake client (virtual time).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from fleetrel.where import Where
from fleetrel import RunOptions, Stop, load_plan, run
from fleetrel.cli import main
from fleetrel.emulator import start_emulator
from fleetrel.errors import RetryPolicy
from fleetrel.events import TERMINAL, Event, ExitCode, Record, Status
from fleetrel.journal import JournalError
from fleetrel.replay import replay
from fleetrel.session import open_session
from fleetrel.testing import EXPIRED, HANG, THROTTLE, FakeIoT, run_virtual
from support import journal_records, update_calls, write_plan

PKG = "thermostat-fw"
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def names(n: int) -> list[str]:
    return [f"6.0.{i}" for i in range(n)]


def fleetrel(*args: str, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetrel", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=ENV, **kwargs)


# -- a run's identity -------------------------------------------------------------------

def test_two_plans_with_one_name_in_two_folders_are_two_runs(emulator, tmp_path):
    """staging/release.yaml then prod/release.yaml, same steps, run from one folder: the
    prod run used to report 'complete, 0 calls sent' from the staging journal."""
    with start_emulator() as prod:
        for emu in (emulator, prod):
            emu.seed([(PKG, v) for v in names(5)])
        work = tmp_path / "work"
        work.mkdir()
        for folder, emu in (("staging", emulator), ("prod", prod)):
            plan = write_plan(tmp_path / folder / "release.yaml", names(5), package=PKG)
            out = fleetrel("run", str(plan), "--endpoint-url", emu.url, "--json", cwd=work)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["attempts"] == 5  # sent, not 'finished in earlier sessions'
            assert (tmp_path / folder / "release.journal.jsonl").exists()
        assert update_calls(prod) == 5


def test_the_same_plan_from_another_folder_is_the_same_run(emulator, tmp_path):
    emulator.seed([(PKG, v) for v in names(4)])
    plan = write_plan(tmp_path / "plans" / "p.yaml", names(4), package=PKG)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert fleetrel("run", str(plan), "--endpoint-url", emulator.url, cwd=tmp_path / "a").returncode == 0
    again = fleetrel("run", "../plans/p.yaml", "--endpoint-url", emulator.url, "--json", cwd=tmp_path / "b")
    assert again.returncode == 0 and json.loads(again.stdout)["attempts"] == 0
    assert update_calls(emulator) == 4 and all(len(t) == 1 for t in emulator.record()["tokens"].values())


def test_resuming_against_another_endpoint_is_refused(emulator, tmp_path):
    emulator.seed([(PKG, v) for v in names(3)])
    plan = write_plan(tmp_path / "p.yaml", names(3), package=PKG)
    assert fleetrel("run", str(plan), "--endpoint-url", emulator.url).returncode == 0
    with start_emulator() as other:
        other.seed([(PKG, v) for v in names(3)])
        out = fleetrel("run", str(plan), "--endpoint-url", other.url)
        assert out.returncode == ExitCode.INVALID, out.stdout + out.stderr
        assert "was sent to" in out.stderr and other.url in out.stderr and update_calls(other) == 0


def hang_then_stop(stop: Stop, hanging: int):
    """A scripted answer: the call hangs; once `hanging` calls hang, the run is stopped now."""
    waiting: list[int] = []

    async def answer() -> None:
        waiting.append(1)
        if len(waiting) == hanging:
            stop.now()
        await anyio.sleep_forever()

    return answer


def test_a_reordered_plan_resumes_the_same_run(tmp_path):
    iot = FakeIoT({f"fw/{v}": "DRAFT" for v in "1234"})
    stop = Stop()
    hang = hang_then_stop(stop, 2)
    iot.script("fw/3", hang).script("fw/4", hang)
    path = tmp_path / "j.jsonl"
    first = run_virtual(lambda: run(load_plan(write_plan(tmp_path / "p.yaml", list("1234"), package="fw")), Where(journal_path=path), client=iot, stop=stop))
    assert first.status == Status.INTERRUPTED and first.succeeded == 2
    reordered = load_plan(write_plan(tmp_path / "p.yaml", list("4321"), package="fw"))
    second = run_virtual(lambda: run(reordered, Where(journal_path=path), client=iot))
    assert second.status == Status.COMPLETE and second.done_before == 2
    assert all(len(tokens) == 1 for tokens in iot.tokens.values())  # same tokens, in any order


def test_a_new_run_keeps_the_tokens_of_steps_sent_without_an_answer(tmp_path):
    iot = FakeIoT({f"fw/{v}": "DRAFT" for v in "12"})
    stop = Stop()
    iot.script("fw/2", hang_then_stop(stop, 1))
    plan = load_plan(write_plan(tmp_path / "p.yaml", ["1", "2"], package="fw", concurrency=2))
    path = tmp_path / "j.jsonl"
    first = run_virtual(lambda: run(plan, Where(journal_path=path), client=iot, stop=stop))
    assert (first.succeeded, first.unfinished) == (1, 1)
    sent = set(iot.tokens["fw/2"])
    result = run_virtual(lambda: run(plan, Where(journal_path=path), client=iot, options=RunOptions(new_run=True)))
    assert result.status == Status.COMPLETE
    assert iot.tokens["fw/2"] == sent  # the in-flight step of the old run: its token again
    assert len(iot.tokens["fw/1"]) == 2  # a finished step: the new run's own token (skipped: already PUBLISHED)


def test_a_resume_whose_tokens_would_change_is_refused(tmp_path):
    iot = FakeIoT({"fw/1": "DRAFT"})
    iot.script("fw/1", HANG)
    stop = Stop()

    class StopWhenSent:
        def on_event(self, record: Record) -> None:
            if record.event == Event.STEP_STARTED:
                stop.now()

    plan = load_plan(write_plan(tmp_path / "p.yaml", ["1"], package="fw"))
    path = tmp_path / "j.jsonl"
    run_virtual(lambda: run(plan, Where(journal_path=path), client=iot, stop=stop, listeners=[StopWhenSent()]))
    # what an upgrade that derived tokens differently would look like
    text = path.read_text()
    token = next(r["client_token"] for r in journal_records(path) if r["event"] == "step_started")
    path.write_text(text.replace(token, "00000000-0000-5000-8000-000000000000"))
    with pytest.raises(JournalError, match="other clientTokens"):
        run_virtual(lambda: run(plan, Where(journal_path=path), client=iot))


# -- the journal ------------------------------------------------------------------------

def test_a_file_that_is_not_a_journal_is_refused_and_untouched(emulator, tmp_path):
    emulator.seed([(PKG, "6.0.0")])
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"remember: release on friday, not monday")  # 39 bytes, no newline
    plan = write_plan(tmp_path / "p.yaml", ["6.0.0"], package=PKG)
    out = fleetrel("run", str(plan), "--journal", str(notes), "--endpoint-url", emulator.url)
    assert out.returncode == ExitCode.INVALID and "not a fleetrel journal" in out.stderr
    assert notes.read_bytes() == b"remember: release on friday, not monday" and update_calls(emulator) == 0


def test_the_header_is_durable_before_the_first_call_and_records_before_a_pause(tmp_path):
    plan = load_plan(write_plan(tmp_path / "p.yaml", ["1", "2"], package="fw", waves=[1]))
    iot = FakeIoT({"fw/1": "DRAFT", "fw/2": "DRAFT"})
    unsynced: list[int] = []

    async def main():
        from fleetrel.engine import execute

        with open_session(plan, tmp_path / "j.jsonl") as session:
            async def first_call() -> None:
                unsynced.append(session.journal.unsynced)

            async def before_wave(wave: int, waves: int) -> bool:
                unsynced.append(session.journal.unsynced)
                return True

            iot.script("fw/1", first_call)
            return await execute(session, iot, before_wave=before_wave)

    assert run_virtual(main).status == Status.COMPLETE
    # at the first call only wave_started and step_started are unsynced (the header was
    # fsynced before them); before the pause between waves, nothing is
    assert unsynced == [2, 0]


def test_journal_and_key_are_private(tmp_path):
    plan = load_plan(write_plan(tmp_path / "p.yaml", ["1"], package="fw"))
    run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=FakeIoT({"fw/1": "DRAFT"}), options=RunOptions(journal_sensitive=True)))
    assert (tmp_path / "j.jsonl").stat().st_mode & 0o077 == 0
    assert (tmp_path / "j.jsonl.key").stat().st_mode & 0o077 == 0


# -- credentials and errors ---------------------------------------------------------------

def test_expired_credentials_stop_the_run_and_a_resume_sends_the_rest(tmp_path):
    names_ = [str(i) for i in range(10)]
    iot = FakeIoT({f"fw/{v}": "DRAFT" for v in names_})
    for v in names_[3:]:
        iot.script(f"fw/{v}", EXPIRED)
    plan = load_plan(write_plan(tmp_path / "p.yaml", names_, package="fw", concurrency=1))
    first = run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot))
    assert first.status == Status.INTERRUPTED and first.exit_code == ExitCode.INVALID
    assert first.failed == 0 and first.unfinished == 7 and "ExpiredTokenException" in first.setup_error
    for v in names_[3:]:
        iot._script[f"fw/{v}"].clear()  # fresh credentials
    second = run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot))
    assert second.status == Status.COMPLETE and second.failed == 0


def test_steps_whose_throttle_retries_ran_out_are_retried_by_a_plain_resume(tmp_path):
    iot = FakeIoT({"fw/1": "DRAFT"}).script("fw/1", THROTTLE, THROTTLE)
    plan = load_plan(write_plan(tmp_path / "p.yaml", ["1"], package="fw"))
    options = RunOptions(policy=RetryPolicy(max_attempts_throttled=2))
    first = run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot, options=options))
    assert first.status == Status.FAILED and first.failures_by_code == {"ThrottlingException": 1}
    second = run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot))
    assert second.status == Status.COMPLETE and iot.status("fw/1") == "PUBLISHED"


def test_missing_credentials_are_refused_before_anything_is_written(tmp_path):
    plan = write_plan(tmp_path / "p.yaml", ["1"], package="fw")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    out = subprocess.run([sys.executable, "-m", "fleetrel", "run", str(plan), "--region", "eu-west-1"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == ExitCode.INVALID and "no AWS credentials" in out.stderr
    assert not (tmp_path / "p.journal.jsonl").exists()


@pytest.mark.parametrize("endpoint, says", [
    ("127.0.0.1:9", "needs a scheme and a host"),
    ("http://user:hunter2@127.0.0.1:9", "carries a user name or password"),
])
def test_a_bad_endpoint_is_refused_before_anything_is_written(tmp_path, endpoint, says):
    plan = write_plan(tmp_path / "p.yaml", ["1"], package="fw")
    out = fleetrel("run", str(plan), "--endpoint-url", endpoint)
    assert out.returncode == ExitCode.INVALID and says in out.stderr and "Traceback" not in out.stderr
    assert "hunter2" not in out.stderr and not (tmp_path / "p.journal.jsonl").exists()


def test_a_journal_path_under_a_file_is_refused(emulator, tmp_path):
    emulator.seed([(PKG, "6.0.0")])
    (tmp_path / "file").write_text("x")
    plan = write_plan(tmp_path / "p.yaml", ["6.0.0"], package=PKG)
    out = fleetrel("run", str(plan), "--journal", str(tmp_path / "file" / "j.jsonl"), "--endpoint-url", emulator.url)
    assert out.returncode == ExitCode.INVALID and "is a file" in out.stderr and "Traceback" not in out.stderr


# -- signals and output ---------------------------------------------------------------------

def test_sigterm_during_a_wave_pause_stops_at_once_with_130(emulator, tmp_path):
    emulator.seed([(PKG, v) for v in names(4)])
    plan = write_plan(tmp_path / "p.yaml", names(4), package=PKG, waves=[2])
    proc = subprocess.Popen([sys.executable, "-m", "fleetrel", "run", str(plan), "--endpoint-url", emulator.url,
                             "--wave-pause", "600"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ENV)
    for line in proc.stdout:
        if "wave 2 in 600 s" in line:
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == ExitCode.INTERRUPTED  # not after the 600 s pause
    records = journal_records(tmp_path / "p.journal.jsonl")
    assert records[-1]["event"] == Event.RUN_INTERRUPTED and update_calls(emulator) == 2


def test_a_reader_that_leaves_does_not_stop_the_run(emulator, tmp_path):
    """`fleetrel run … | head -n 1`: the display's pipe breaks, the run goes on and ends
    with its own exit code and an end record."""
    emulator.seed([(PKG, v) for v in names(30)])
    plan = write_plan(tmp_path / "p.yaml", names(30), package=PKG, rate=30, burst=1, concurrency=2)
    proc = subprocess.Popen([sys.executable, "-m", "fleetrel", "run", str(plan), "--endpoint-url", emulator.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    proc.stdout.readline()
    proc.stdout.close()  # `head -n 1` exits
    assert proc.wait(timeout=120) == ExitCode.OK, proc.stderr.read().decode()
    records = journal_records(tmp_path / "p.journal.jsonl")
    assert records[-1]["event"] == Event.RUN_FINISHED
    assert sum(1 for r in records if r["event"] in TERMINAL) == 30


def test_paths_with_brackets_print_as_they_are(emulator, tmp_path):
    emulator.seed([(PKG, "6.0.0")])
    folder = tmp_path / "plans" / "[v2]" / "[/]"
    folder.mkdir(parents=True)
    plan = write_plan(folder / "release.yaml", ["6.0.0", "6.0.1"], package=PKG)  # 6.0.1 is missing
    assert fleetrel("run", str(plan), "--endpoint-url", emulator.url).returncode == ExitCode.FAILED
    journal = folder / "release.journal.jsonl"
    text = CliRunner().invoke(main, ["status", str(journal)])
    assert text.exit_code == ExitCode.FAILED and text.exception is None or isinstance(text.exception, SystemExit)
    assert "MarkupError" not in text.output
    doc = json.loads(CliRunner().invoke(main, ["status", str(journal), "--json"]).output)
    assert "/[v2]/[/]/release.yaml" in doc["resume"] and "/[v2]/[/]/" in doc["journal"]


def test_a_password_in_an_old_journal_is_never_shown(tmp_path):
    plan = load_plan(write_plan(tmp_path / "p.yaml", ["1", "2"], package="fw"))
    iot = FakeIoT({"fw/1": "DRAFT"})  # fw/2 missing: the run fails, so status prints a resume command
    run_virtual(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot))
    path = tmp_path / "j.jsonl"
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["target"] = {"endpoint_url": "http://admin:hunter2@127.0.0.1:5000"}  # as fleetrel 0.1 wrote it
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    for args in (["status", str(path)], ["status", str(path), "--json"]):
        out = CliRunner().invoke(main, args)
        assert "hunter2" not in out.output and "127.0.0.1:5000" in out.output


# -- prompts on a terminal (a pseudo-terminal: the command sees a tty) -------------------------

class Terminal:
    """`fleetrel ARGS` on a pseudo-terminal: read what it shows, type, signal it."""

    def __init__(self, *args: str) -> None:
        import pty

        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "fleetrel", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env={**ENV, "COLUMNS": "120", "TERM": "xterm"},
                                     start_new_session=True)
        os.close(slave)
        self.seen = b""

    def wait_for(self, text: str) -> None:
        """Read the screen until `text` shows (no sleeping: blocking reads)."""
        while text.encode() not in self.seen:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the process ended and the terminal closed
                chunk = b""
            if not chunk:
                raise AssertionError(f"never showed {text!r}; showed:\n{self.seen.decode(errors='replace')}")
            self.seen += chunk

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def exit_code(self) -> int:
        code = self.proc.wait(timeout=60)
        os.close(self.master)
        return code


@pytest.mark.parametrize("how", ["ctrl-d", "sigint"])
def test_interrupting_the_between_waves_prompt_exits_130_with_an_end_record(emulator, tmp_path, how):
    emulator.seed([(PKG, v) for v in names(4)])
    plan = write_plan(tmp_path / "p.yaml", names(4), package=PKG, waves=[2])
    term = Terminal("run", str(plan), "--endpoint-url", emulator.url)
    term.wait_for("Start wave 2")
    if how == "ctrl-d":
        term.type(b"\x04")
    else:
        term.proc.send_signal(signal.SIGINT)
    assert term.exit_code() == ExitCode.INTERRUPTED
    assert journal_records(tmp_path / "p.journal.jsonl")[-1]["event"] == Event.RUN_INTERRUPTED
    assert update_calls(emulator) == 2


def test_ctrl_c_at_the_confirmation_exits_130_and_sends_nothing(emulator, tmp_path):
    emulator.seed([(PKG, v) for v in names(25)])
    plan = write_plan(tmp_path / "p.yaml", names(25), package=PKG)  # more than 20 steps: it asks first
    term = Terminal("run", str(plan), "--endpoint-url", emulator.url)
    term.wait_for("Apply 25 steps")
    term.proc.send_signal(signal.SIGINT)
    assert term.exit_code() == ExitCode.INTERRUPTED
    assert "Aborted!" not in term.seen.decode() and update_calls(emulator) == 0
