"""What the emulator received: counts per operation and status, throttles, faults,
refusals, clientTokens per package version, and a timeline, in total and per (account,
region), so tests and benchmarks can assert on what reached the service rather than on
what the client believes it sent.

    record = Record()
    record.answered("UpdatePackageVersion", 200, place=("111111111111", "eu-west-1"))
    record.snapshot()["operations"]  # {"UpdatePackageVersion": {"200": 1}}
    record.snapshot()["accounts"]["111111111111"]["eu-west-1"]["operations"]  # the same
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

Place = tuple[str, str]  # (account, region)


class Tally:
    """Counts of one scope (everything, or one account and region); not locked itself."""

    __slots__ = ("operations", "throttled", "injected", "refused", "tokens", "tokens_sent",
                 "_token_sets")

    def __init__(self) -> None:
        self.operations: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.throttled: dict[str, int] = defaultdict(int)
        self.injected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        # error code -> operation -> count: calls refused before the quota (expired or
        # unrecognised credentials, see `access`).
        self.refused: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        # clientTokens per "package/version", distinct, in first-seen order: `tokens` of
        # calls that reached the backend, `tokens_sent` of every call that arrived
        # (throttled, refused and 500-failed ones too).
        self.tokens: dict[str, list[str]] = {}
        self.tokens_sent: dict[str, list[str]] = {}
        self._token_sets: dict[tuple[bool, str], set[str]] = defaultdict(set)

    def answered(self, operation: str, status: int | str, throttled: bool,
                 injected: str | None, refused: str | None) -> None:
        self.operations[operation][str(status)] += 1
        if throttled:
            self.throttled[operation] += 1
        if injected is not None:
            self.injected[injected][operation] += 1
        if refused is not None:
            self.refused[refused][operation] += 1

    def token(self, key: str, client_token: str, reached_backend: bool) -> None:
        seen = self._token_sets[(reached_backend, key)]
        if client_token not in seen:
            seen.add(client_token)
            target = self.tokens if reached_backend else self.tokens_sent
            target.setdefault(key, []).append(client_token)

    def snapshot(self) -> dict[str, Any]:
        return {
            "operations": {op: dict(by_status) for op, by_status in self.operations.items()},
            "throttled": dict(self.throttled),
            "injected": {kind: dict(by_op) for kind, by_op in self.injected.items()},
            "refused": {code: dict(by_op) for code, by_op in self.refused.items()},
            "tokens": {key: list(tokens) for key, tokens in self.tokens.items()},
            "tokens_sent": {key: list(tokens) for key, tokens in self.tokens_sent.items()},
        }


class Record:
    """Thread-safe tallies; `snapshot()` is the JSON the control endpoint serves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.started = time.time()
            self.total = Tally()
            self.places: dict[Place, Tally] = {}
            # (wall time, operation, status or "dropped"): wall time so a client in another
            # process can line it up with its own clock when plotting.
            self.events: list[tuple[float, str, int | str]] = []
            # Client (address, port) pairs that carried package calls: one per TCP
            # connection, so calls / connections says how well keep-alive works.
            self._connections: set[tuple[str, str]] = set()

    def _tallies(self, place: Place | None) -> tuple[Tally, ...]:
        if place is None:
            return (self.total,)
        tally = self.places.get(place)
        if tally is None:
            tally = self.places[place] = Tally()
        return self.total, tally

    def answered(self, operation: str, status: int | str, *, place: Place | None = None,
                 throttled: bool = False, injected: str | None = None,
                 refused: str | None = None) -> None:
        """Count one call's outcome as the client saw it (`status` "dropped": no answer),
        in the total and in `place`'s tally. `refused`: the error code of a call turned
        away before the quota."""
        now = time.time()
        with self._lock:
            for tally in self._tallies(place):
                tally.answered(operation, status, throttled, injected, refused)
            self.events.append((now, operation, status))

    def connection(self, address: str, port: str) -> None:
        """Note the client end of the TCP connection a package call came on."""
        with self._lock:
            self._connections.add((address, port))

    def token(self, key: str, client_token: str | None, *, reached_backend: bool,
              place: Place | None = None) -> None:
        """Note an UpdatePackageVersion clientToken for `package/version` (call once when
        the call arrives, and again with reached_backend=True if it gets past the checks,
        the throttle and the 500 dice)."""
        if client_token is None:
            return
        with self._lock:
            for tally in self._tallies(place):
                tally.token(key, client_token, reached_backend)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            accounts: dict[str, dict[str, Any]] = {}
            for (account, region), tally in sorted(self.places.items()):
                accounts.setdefault(account, {})[region] = tally.snapshot()
            return {
                "started": self.started,
                **self.total.snapshot(),
                "accepted_times": [t for t, op, status in self.events
                                   if op == "UpdatePackageVersion" and status == 200],
                "events": [list(event) for event in self.events],
                "connections": len(self._connections),
                "accounts": accounts,
            }
