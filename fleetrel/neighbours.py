"""Runs on this host that send to one quota: how many there are now.

    neighbours = Neighbours.join(directory(), quota_of({"account": "123456789012", "region": "eu-west-1"}))
    neighbours.count()       # runs live on this quota, this one included (one stat if nothing changed)
    neighbours.leave()

Two runs that cannot see each other learn of each other only through throttles: the
late run's first burst goes into a bucket the other keeps empty, and each run then
reads its share from the throttles it meets (`fleetrel.quota`), at 4-5 % of calls
throttled (`benchmarks/simulate.py --scenario f --stagger ...`). Runs on one host can
simply look: each run's lane holds a lock on a file of its own in a directory per
quota, and counts the files whose lock is held. Each then sends at its ceiling divided
by that count from the start (`RateController.share`), which `simulate.py` puts at
0.2-0.4 % throttled, E 1.00-1.01, fairness 0.97.

Why a lock and not a heartbeat: the kernel releases a dead process's lock (`flock`),
so a run killed with SIGKILL stops counting at the next look, with no timeout to tune
and nothing to clean up by hand. A file is created under a hidden name, locked, then
renamed into place, so nobody ever sees it unlocked. Why not the `filelock` package:
it takes and releases one's own lock; counting the *other* holders of a directory of
locks is what is needed here, and that is `fcntl.flock(LOCK_NB)` on each.

Nothing secret is written: the files are empty, their names a process id and a random
suffix, the directory's a digest of the quota (endpoint, account, region).
Best effort: a directory that cannot be written (a read-only home, another user's
`/tmp/fleetrel-…`) means no neighbours are seen, and the run goes on as before.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

#: Environment variable: the directory of quota locks, or "off" to neither look nor be seen.
ENV = "FLEETREL_NEIGHBOURS"
#: Seconds between two looks at the runs on a quota (`RateController.watch`, at its
#: admissions): a run sending notices a neighbour about this late. simulate.py (f, ten
#: seeds at each stagger) with runs told of each other 0.1-0.25 s late: every seed meets
#: E <= 1.05, θ <= 3 % and fairness >= 0.9; 0.5 s late, 3 of 10 at 0.25 s apart. One
#: look is a `stat`.
LOOK_EVERY = 0.1
#: Seconds between two full counts even if the directory did not change: a run killed
#: with SIGKILL leaves its file (unlocked) and changes nothing the directory's time shows.
RECOUNT_EVERY = 2.0


def directory() -> Path | None:
    """Where the quota locks live: `$FLEETREL_NEIGHBOURS`, else a directory of this user's
    in `$XDG_RUNTIME_DIR` or the temporary directory. None when switched off."""
    chosen = os.environ.get(ENV, "").strip()
    if chosen.lower() in ("off", "0", "false", "no"):
        return None
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"fleetrel-{os.getuid()}" / "quotas"


def quota_of(place: Mapping[str, Any]) -> str | None:
    """The name of a target's quota directory: a digest of its endpoint (an emulator's
    account 123456789012 is not AWS's), account and region, as a run's journal records
    them (`fleetrel.where`). None if its account is not known (a fake client's, an actor's
    of `--ray`): two accounts' runs share nothing, so no guess."""
    if not place.get("account") or not place.get("region"):
        return None
    where = f"{place.get('endpoint') or 'aws'}\n{place['account']}|{place['region']}"
    return hashlib.sha256(where.encode()).hexdigest()[:24]


class Neighbours:
    """One run's membership of a quota's directory (see the module's docstring)."""

    __slots__ = ("folder", "_fd", "_name", "_count", "_stamp", "_next_recount")

    def __init__(self, folder: Path, fd: int, name: str) -> None:
        self.folder = folder
        self._fd: int | None = fd
        self._name = name
        self._count = 1
        self._stamp: int | None = None
        self._next_recount = 0.0

    @classmethod
    def join(cls, base: Path | None, key: str) -> "Neighbours | None":
        """Become one of the runs on quota `key`; None if `base` is None or unusable."""
        if base is None:
            return None
        folder = base / key
        name = f"{os.getpid()}-{secrets.token_hex(6)}"
        hidden = folder / f".{name}"
        for _ in range(3):  # the last run of the quota may remove the folder meanwhile (`leave`)
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileNotFoundError:
                continue
            except OSError:
                return None
        else:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
            os.rename(hidden, folder / name)
        except OSError:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            return None
        member = cls(folder, fd, name)
        member.count(force=True)
        return member

    def count(self, *, force: bool = False) -> int:
        """Runs live on this quota now, this one included: one `stat` of the directory,
        whose locks are counted again only when it changed (a run came or left) or every
        RECOUNT_EVERY seconds (a run died); otherwise the last count."""
        if self._fd is None:
            return 1
        now = time.monotonic()
        try:
            stamp = os.stat(self.folder).st_mtime_ns
        except OSError:
            return self._count
        if force or stamp != self._stamp or now >= self._next_recount:
            self._stamp = stamp
            self._next_recount = now + RECOUNT_EVERY
            self._count = 1 + self._others()
        return self._count

    def _others(self) -> int:
        """Files in the folder whose lock someone holds, ours left out; an unlocked one
        is a dead run's, and goes."""
        live = 0
        try:
            names = os.listdir(self.folder)
        except OSError:
            return 0
        for name in names:
            if name == self._name or name.startswith("."):
                continue
            path = self.folder / name
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue  # gone meanwhile: its run left
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                live += exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
            else:
                path.unlink(missing_ok=True)  # nobody holds it: its run died
            finally:
                os.close(fd)
        return live

    def leave(self) -> None:
        """Stop being counted (idempotent). The process's exit does the same."""
        if self._fd is None:
            return
        (self.folder / self._name).unlink(missing_ok=True)
        os.close(self._fd)  # releases the lock
        self._fd = None
        try:
            self.folder.rmdir()  # the last run of this quota: leave no folder behind (a
        except OSError:          # port of an emulator's endpoint names a new one each time)
            pass
