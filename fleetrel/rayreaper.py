"""A local Ray's folder and processes, gone when the run that started them is.

    folder = private_folder()                     # /tmp/fleetrel-ray-<pid>-xxxxxxxx, 0700
    reaper = start_reaper(folder)                 # a process of its own, holding a pipe to us
    ...                                           # ray.init(_temp_dir=str(folder / "r")), the run
    reaper.close()                                # or this process dies, however: the same

Ray fate-shares the processes `ray.init` starts itself (GCS, raylet, dashboard head, log
monitor: killed by the kernel when the driver dies, PR_SET_PDEATHSIG), but not the
raylet's own children: its dashboard and runtime-env agents notice the raylet gone after
five polls, then try to report it to the dead GCS and linger, listening on the loopback,
for up to two minutes; its workers (a run's actors) go on sending for a second or two. A
`kill -9` of the driver runs none of its clean-up, so the clean-up lives in another
process: the reaper, started in a session of its own, reads a pipe whose only writer is
the driver; the pipe ends when the driver does, however it ends, and the reaper then kills
every process that holds a file in the run's folder (every Ray process does: its logs and
sockets are there) and removes the folder. A folder whose reaper was killed too is
removed at the next local run's start (`clean_stale_folders`: its name holds the pid of
the process that made it).

Every Ray process keeps its logs and sockets in the folder, so it is the driver's user's
alone (0700); Ray makes its own temp folder 0777, so Ray is given a folder inside it.

Only the standard library: the reaper starts at once, and imports nothing of fleetrel.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

PREFIX = "fleetrel-ray-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-")
REAP_ROUNDS = 50  # passes over /proc: a process may start another while it is being killed


def private_folder() -> Path:
    """A new folder for one local Ray, named with this process's pid, readable by its user only."""
    # short: Ray's socket paths under it must stay within AF_UNIX's 107 bytes
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))  # mkdtemp: mode 0700


def holders(folder: Path, *, spare: int | None = None) -> set[int]:
    """The processes (not this one, nor `spare`) with a file, socket or working directory in `folder`."""
    inside = str(folder.resolve())
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), spare):
            continue
        try:
            links = [os.readlink(f"/proc/{entry.name}/cwd")]
            links += [os.readlink(fd.path) for fd in os.scandir(f"/proc/{entry.name}/fd")]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if any(link == inside or link.startswith(inside + "/") for link in links):
            found.add(int(entry.name))
    return found


def reap(folder: Path, *, spare: int | None = None) -> None:
    """Kill every process (but `spare`: a driver that closes its reaper itself) that holds
    something in `folder`, then remove it."""
    for _ in range(REAP_ROUNDS):
        pids = holders(folder, spare=spare)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    shutil.rmtree(folder, ignore_errors=True)


class Reaper:
    """The reaper process of one folder; `close()` (or this process's end) sets it off."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def close(self, timeout: float = 30.0) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass  # it goes on without us


def start_reaper(folder: Path) -> Reaper:
    # its own session: a Ctrl-C or a kill of the terminal's process group does not reach
    # it; the pipe's write end is this process's alone (not inherited: O_CLOEXEC)
    process = subprocess.Popen([sys.executable, "-S", __file__, str(folder), str(os.getpid())], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               close_fds=True)
    return Reaper(process)


def clean_stale_folders(under: Path | None = None) -> list[Path]:
    """Reap the folders of local Rays whose process is gone (its reaper killed with it):
    the ones removed. A folder whose process still runs, or is not named by one, is left."""
    removed = []
    for folder in Path(under or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        found = _NAME.match(folder.name)
        if not found or not folder.is_dir() or folder.stat().st_uid != os.getuid() or _alive(int(found[1])):
            continue
        reap(folder)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _main(folder: str, driver: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(65536):
        pass  # nothing is written: the read ends when the driver does
    reap(Path(folder), spare=int(driver))  # a driver that closed the pipe itself is alive, and spared


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
