"""Small things several test modules need: plan files, journal lines, a fake clock.

    from support import write_plan, journal_records, update_calls, FakeClock
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from fleetrel.events import Event
from fleetrel.testing import FakeClock  # noqa: F401  (re-exported for the tests)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`fleetrel ARGS` in a process of its own, as a user runs it (no terminal on stdin)."""
    return subprocess.run([sys.executable, "-m", "fleetrel", *args], capture_output=True, text=True, timeout=300,
                          env=env, stdin=subprocess.DEVNULL)


def plan_file(path: Path, name: str, versions: list, *, rate: float, burst: int, **top: Any) -> Path:
    """A plan file named `name` with these `versions:` entries and other top-level keys."""
    path.write_text(yaml.safe_dump({"plan": name, "limits": {"rate": rate, "burst": burst}, **top,
                                    "versions": versions}, sort_keys=False))
    return path


def write_plan(path: Path, versions: list[str] | list[dict], *, package: str = "thermostat-fw",
               name: str = "test-plan", rate: float = 100, burst: int = 5, concurrency: int = 4,
               abort: dict | None = None, waves: list | None = None) -> Path:
    """A plan file. `versions`: version names (one PUBLISH entry for `package`) or entries."""
    entries = versions if versions and isinstance(versions[0], dict) else \
        [{"package": package, "versions": list(versions), "action": "PUBLISH"}]
    doc: dict[str, Any] = {"plan": name, "limits": {"rate": rate, "burst": burst, "concurrency": concurrency},
                           "versions": entries}
    if abort:
        doc["abort"] = abort
    if waves:
        doc["waves"] = waves
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def journal_records(path: Path) -> list[dict]:
    """Complete lines only: a run being written (or killed) may have a torn last line."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


def update_calls(emulator: Any) -> int:
    """UpdatePackageVersion requests the emulator received, whatever it answered."""
    return sum(emulator.record()["operations"].get("UpdatePackageVersion", {}).values())


def kill_after_successes(args: list[str], journal: Path, successes: int, env: dict[str, str] | None = None) -> None:
    """`python -m fleetrel ARGS`, killed (SIGKILL: no clean-up) once its journal holds
    `successes` succeeded steps. The journal is read at each progress line the run prints,
    so the kill lands mid-run with no sleep."""
    proc = subprocess.Popen([sys.executable, "-m", "fleetrel", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    for _ in proc.stdout:
        if sum(1 for r in journal_records(journal) if r["event"] == Event.STEP_SUCCEEDED) >= successes:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
