"""The progress journal: one JSON object per line, appended as events happen.

    journal = Journal.open(Path("spring.journal.jsonl"))      # takes an exclusive lock
    journal.write(Event.RUN_STARTED, format=FORMAT_VERSION, run_id=..., ...)   # the header
    journal.write(Event.STEP_SUCCEEDED, step="fw/1.0", client_token=..., attempt=1)
    journal.close()                                           # fsync, unlock

Reading it back is `fleetrel.replay.replay(path)` → RunState.

As an engine listener it takes `on_event(record)`; `write` is the same for callers
that have no `Record` at hand.

Guarantees, as the code below keeps them:
- Every record is flushed to the OS as it is written, so a killed process (SIGKILL) loses
  nothing it wrote.
- A session's first record (the header, or `run_resumed`) is fsynced, with the folder
  after the file was created or renamed, before the engine sends its first call: a power
  cut cannot lose the run's id, hence its clientTokens. Later records are fsynced by the
  engine every `SYNC_INTERVAL` seconds, before any pause between waves, and on close; a
  record lost to a power cut costs at most a re-send with the same clientToken.
- A file that is not empty and is not a fleetrel journal is refused and never changed;
  only a torn last line of a real journal (a crash mid-write) is cut.
- Journals, and their run keys, are created readable by their owner only (0600).
- Sensitive request fields (description, attributes, recipe) are stored as HMAC digests
  keyed with the run's key (`<journal>.key`), unless the user opts in to clear text.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

import orjson

from fleetrel.events import SESSION_STARTS, Event, Record

FORMAT_VERSION = 1
SENSITIVE_FIELDS = ("description", "attributes", "recipe")
SYNC_INTERVAL = 0.5  # seconds between fsyncs of a running journal
PRIVATE = 0o600  # journals and run keys: the owner's alone
# The header names every step with its digest (about 45 bytes a step: 4.5 MB at 100k
# steps); a first line longer than this is no header of ours.
MAX_HEADER_BYTES = 256 << 20


# One encoder for every record: json.dumps given any keyword builds a new JSONEncoder per
# call, which was a sixth of what writing a record costs. Records in insertion order,
# non-ASCII text as it is, and repr() for what JSON cannot hold (as structlog's own
# fallback does for objects that do not describe themselves).
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=repr)


def _encode_record(event_dict: dict[str, Any], **_: Any) -> str:
    return _ENCODER.encode(event_dict)


class JournalError(Exception):
    """A journal the user pointed us at cannot be used (locked, corrupt, another plan's)."""


def fields_for_journal(request: dict[str, Any], *, sensitive: bool, key: bytes | None = None) -> dict[str, Any]:
    """The request as the journal stores it: sensitive fields (per the AWS model) as
    digests keyed with the run's key unless the user opted in with --journal-sensitive."""
    from fleetrel.tokens import keyed_digest

    out = {k: v for k, v in request.items() if k not in ("packageName", "versionName")}
    if not sensitive:
        prefix = "hmac:" if key is not None else "sha256:"
        for name in SENSITIVE_FIELDS:
            if name in out:
                out[name] = prefix + keyed_digest(key, out[name])[:16]
    return out


def run_key_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".key")


def write_run_key(journal: Path, key: bytes) -> None:
    """Keep the run's key beside its journal, owner-only, durable before the header."""
    path = run_key_path(journal)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def read_run_key(journal: Path) -> bytes:
    path = run_key_path(journal)
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        raise JournalError(f"{path}: this run's key is missing. Without it the run's clientTokens cannot be "
                           "computed again, so resuming could apply steps twice: restore the file, or start "
                           "a new run") from None
    except (OSError, ValueError) as exc:
        raise JournalError(f"{path}: this run's key cannot be read ({exc})") from None


def _fsync_dir(folder: Path) -> None:
    """Make a file's creation or rename durable: fsync the folder that names it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Append-only JSON-lines writer (structlog, JSON renderer) holding an exclusive lock.

    It is an engine listener: the engine calls `on_event(event, **fields)`.
    """

    __slots__ = ("path", "_file", "_log", "unsynced")

    def __init__(self, path: Path, file: IO[str]) -> None:
        import structlog  # here, not at the top: `fleetrel status` only reads (a tenth of a second saved)

        self.path = path
        self._file = file
        self.unsynced = 0  # records written since the last fsync
        self._log = structlog.wrap_logger(
            structlog.WriteLogger(file),  # writes one line and flushes it
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                structlog.processors.JSONRenderer(serializer=_encode_record),
            ],
            wrapper_class=structlog.BoundLogger,
            context_class=dict,
            cache_logger_on_first_use=True,
        ).bind()  # the bound logger itself, not the lazy proxy that would rebuild it per record

    @classmethod
    def open(cls, path: Path, **kwargs: Any) -> "Journal":
        """Open for appending (created 0600), lock it, check it is a fleetrel journal, and
        cut a torn last line left by a crash so that the next record starts on a line of
        its own. Anything else in the file is refused, untouched."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            created = not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, PRIVATE)
        except OSError as exc:
            raise JournalError(f"{path}: cannot open the journal: {_why(exc)}") from None
        file = os.fdopen(fd, "a+", encoding="utf-8")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise JournalError(
                f"{path}: another fleetrel run holds this journal; wait for it to finish "
                "(or stop it) before running the plan again"
            ) from None
        try:
            _check_is_journal(path)
            _truncate_torn_tail(file, path)
            if created:
                _fsync_dir(path.parent)
        except BaseException:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
            file.close()
            raise
        return cls(path, file, **kwargs)

    def on_event(self, record: Record) -> None:
        self.write(record.event, **record.fields)

    def write(self, event: Event, **fields: Any) -> None:
        self._log.info(str(event), **fields)
        self.unsynced += 1
        if event in SESSION_STARTS:
            self.sync()  # the run's identity is durable before its first call

    def sync(self) -> None:
        """fsync what was written since the last sync (the engine calls it on a timer)."""
        if self.unsynced:
            os.fsync(self._file.fileno())
            self.unsynced = 0

    def close(self) -> None:
        if not self._file.closed:
            self.unsynced += 1  # at least the folder's and the OS's view, once more
            self.sync()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_journal_path(plan: Any) -> Path:
    """`<plan file stem>.journal.jsonl` beside the plan file, so the journal follows the
    plan's absolute path: the same plan run from another folder is the same run, and two
    plans with one name in two folders are two runs. (A plan built in code: its name, in
    the current folder.)

    A journal that an earlier fleetrel kept in the current folder for this very plan (its
    header names the same plan file) is still found, so an upgrade does not lose a run.
    """
    if plan.source is None:
        return Path.cwd() / f"{plan.plan}.journal.jsonl"
    source = Path(plan.source).absolute()
    beside = source.with_name(f"{source.stem}.journal.jsonl")
    legacy = Path.cwd() / beside.name
    if not beside.exists() and legacy != beside and legacy.is_file():
        try:
            with open(legacy, "rb") as file:
                header = json.loads(file.readline())
            if Path(str(header.get("plan_file", ""))).absolute() == source:
                return legacy
        except (OSError, ValueError, AttributeError):
            pass
    return beside


def is_locked(path: Path) -> bool:
    """Whether a fleetrel run holds this journal now (it keeps an exclusive lock)."""
    try:
        with open(path, "rb") as file:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def _why(exc: OSError) -> str:
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a part of its folder path is a file, not a folder"
    return exc.strerror or str(exc)


def _check_is_journal(path: Path) -> None:
    """Refuse a non-empty file whose first line is not a fleetrel journal header."""
    with open(path, "rb") as raw:
        first = raw.readline(MAX_HEADER_BYTES)
    if not first:
        return
    try:
        header = parse_line(first)
        ok = isinstance(header, dict) and header.get("event") == Event.RUN_STARTED \
            and header.get("format") == FORMAT_VERSION
    except ValueError:
        ok = False
    if not ok:
        raise JournalError(f"{path}: this file is not a fleetrel journal (its first line is not a journal "
                           "header); it was left untouched. Choose another --journal path.")


def _truncate_torn_tail(file: IO[str], path: Path) -> None:
    file.seek(0, os.SEEK_END)
    size = file.tell()
    if size == 0:
        return
    with open(path, "rb") as raw:  # by path: file.name of an fdopen()ed file is its fd
        raw.seek(max(0, size - 65536))
        tail = raw.read()
    if tail.endswith(b"\n"):
        return
    cut = tail.rfind(b"\n")
    keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size)
    file.truncate(keep)
    file.seek(0, os.SEEK_END)


def parse_line(line: bytes) -> Any:
    """One journal line. orjson reads a record three times as fast as json (replay is most
    of what a resume or `status` of a 100k-step run costs); what orjson refuses and json
    accepts (NaN and Infinity, which json.dumps writes) is read by json, so the two
    never disagree about what is corrupt."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)
