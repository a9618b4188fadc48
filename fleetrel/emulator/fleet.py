"""The fleet of one (account, region): what each thing's `$package` shadow reports, and
how many things report each package version, kept as the shadows change.

Devices report the software they run in the reserved named shadow `$package`:

    {"state": {"reported": {"thermostat-fw": {"version": "4.2.0",
                                              "attributes": {"packageID": "1111"}}}}}

    fleet = Fleet()
    fleet.update("device-000001", json.loads(payload), now=time.time())
    fleet.index()        # {"thermostat-fw": {"4.2.0": 1}}

The count per (package, version) changes with every write, delete and thing deletion, so
a count of the fleet per version costs O(versions), never O(things). No moto and no HTTP
here: `moto_glue` says which things exist and turns `FleetError` into an answer.

The document rules (sources in `fleetrel.emulator`'s docstring): the shadow service's
own checks and messages (Device Shadow error messages page); `$package` holds only
`reported`, each package an object of `version` (a string) and `attributes`, nothing
else; `null` removes a package or an attribute, as a shadow update removes a field;
updates merge into what was reported; no metadata is kept (the page on the reserved
named shadow); `version` in a request is the shadow's optimistic lock (409 on mismatch).
"""
from __future__ import annotations

import json
import re
import threading
from typing import Any, Iterable

from fleetrel.emulator.rules import CatalogError

PACKAGE_SHADOW = "$package"
# The catalog's PackageName (botocore: 1-128 of [a-zA-Z0-9-_.]).
PACKAGE_NAME = re.compile(r"^[a-zA-Z0-9\-_.]{1,128}$")
PACKAGE_KEYS = frozenset({"version", "attributes"})
MAX_CLIENT_TOKEN_BYTES = 64      # "A client token that is longer than 64 bytes" is refused
MAX_DOCUMENT_BYTES = 8 * 1024    # a named shadow's document (IoT Core quotas)


class FleetError(CatalogError):
    """An AWS error answer of a shadow call or a fleet-indexing read (the catalog's shape:
    `code`, HTTP `status`, `message`)."""


def invalid(message: str) -> FleetError:
    return FleetError("InvalidRequestException", 400, message)


def no_shadow() -> FleetError:
    return FleetError("ResourceNotFoundException", 404,
                      f"No shadow exists with name: {PACKAGE_SHADOW}")


class PackageShadow:
    """One thing's `$package` shadow: package -> (version, attributes or None)."""

    __slots__ = ("reported", "version", "timestamp")

    def __init__(self, reported: dict[str, tuple[str, dict[str, str] | None]], version: int,
                 timestamp: int) -> None:
        self.reported, self.version, self.timestamp = reported, version, timestamp

    def reported_json(self) -> dict[str, Any]:
        return {package: {"version": version, **({"attributes": dict(attributes)}
                                                  if attributes is not None else {})}
                for package, (version, attributes) in self.reported.items()}

    def document(self) -> dict[str, Any]:
        """The GetThingShadow answer: no metadata (the reserved shadow keeps none)."""
        return {"state": {"reported": self.reported_json()}, "version": self.version,
                "timestamp": self.timestamp}


def parse_update(payload: bytes | str) -> tuple[dict[str, Any | None], int | None, str | None]:
    """(reported changes, expected shadow version, clientToken) of an UpdateThingShadow
    body for `$package`, or FleetError as the shadow service answers a bad document."""
    if len(payload) > MAX_DOCUMENT_BYTES:
        raise FleetError("RequestEntityTooLargeException", 413,
                         "The payload exceeds the maximum size allowed")
    try:
        request = json.loads(payload)
    except ValueError:
        raise invalid("Invalid JSON") from None
    if not isinstance(request, dict):
        raise invalid("Invalid JSON")
    version = request.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise invalid("Invalid version")
    token = request.get("clientToken")
    if token is not None and (not isinstance(token, str)
                              or len(token.encode()) > MAX_CLIENT_TOKEN_BYTES):
        raise invalid("Invalid clientToken")
    if "state" not in request:
        raise invalid("Missing required node: state")
    state = request["state"]
    if not isinstance(state, dict):
        raise invalid("State node must be an object")
    if set(state) - {"reported", "desired"} or not state:
        raise invalid("State contains an invalid node")
    if "desired" in state:
        raise invalid("State contains an invalid node: the reserved named shadow "
                      f"{PACKAGE_SHADOW} holds only reported package versions")
    reported = state["reported"]
    if not isinstance(reported, dict):
        raise invalid("Reported node must be an object")
    for package, entry in reported.items():
        if not PACKAGE_NAME.match(package):
            raise invalid(f"{PACKAGE_SHADOW}: {package!r} is not a package name "
                          "(1-128 characters of a-z, A-Z, 0-9, -, _ and .)")
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise invalid(f"{PACKAGE_SHADOW}: reported.{package} must be an object "
                          "of version and attributes")
        extra = set(entry) - PACKAGE_KEYS
        if extra:
            raise invalid(f"{PACKAGE_SHADOW}: reported.{package} may hold only version and "
                          f"attributes, not {', '.join(sorted(extra))}")
        if "version" in entry and not isinstance(entry["version"], str):
            raise invalid(f"{PACKAGE_SHADOW}: reported.{package}.version must be a string")
        attributes = entry.get("attributes")
        if attributes is not None and not (
                isinstance(attributes, dict)
                and all(value is None or isinstance(value, str) for value in attributes.values())):
            raise invalid(f"{PACKAGE_SHADOW}: reported.{package}.attributes must be an "
                          "object of strings")
    return reported, version, token


class Fleet:
    """The `$package` shadows of one (account, region) and their count per version.
    Thread-safe; which things exist is the caller's business (`moto_glue`)."""

    def __init__(self) -> None:
        self.shadows: dict[str, PackageShadow] = {}
        # package -> version -> things reporting it (no zero entries)
        self.counts: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    # -- the index ------------------------------------------------------------------

    def _count(self, reported: dict[str, tuple[str, Any]], step: int) -> None:
        for package, (version, _) in reported.items():
            versions = self.counts.setdefault(package, {})
            left = versions.get(version, 0) + step
            if left:
                versions[version] = left
            else:
                del versions[version]
                if not versions:
                    del self.counts[package]

    def index(self, package: str | None = None) -> dict[str, dict[str, int]]:
        """{package: {version: things reporting it}} (one package if named): the ground
        truth an aggregation must equal."""
        with self._lock:
            if package is not None:
                return {package: dict(self.counts[package])} if package in self.counts else {}
            return {name: dict(versions) for name, versions in sorted(self.counts.items())}

    def versions_of(self, package: str) -> dict[str, int]:
        with self._lock:
            return dict(self.counts.get(package, {}))

    # -- the shadow calls -----------------------------------------------------------

    def update(self, thing: str, payload: bytes | str, now: float) -> dict[str, Any]:
        """UpdateThingShadow of `thing`'s `$package`: the answer, or FleetError."""
        reported, expected, token = parse_update(payload)
        with self._lock:
            shadow = self.shadows.get(thing)
            if expected is not None and expected != (shadow.version if shadow else 0):
                raise FleetError("ConflictException", 409, "Version conflict")
            merged = dict(shadow.reported) if shadow else {}
            for package, entry in reported.items():
                if entry is None:
                    merged.pop(package, None)
                    continue
                old_version, old_attributes = merged.get(package, (None, None))
                version = entry.get("version", old_version)
                if version is None:
                    raise invalid(f"{PACKAGE_SHADOW}: reported.{package} needs a version")
                attributes = old_attributes
                if "attributes" in entry:
                    changes = entry["attributes"]
                    attributes = None if changes is None else {
                        **(old_attributes or {}), **changes}
                    if attributes is not None:
                        attributes = {key: value for key, value in attributes.items()
                                      if value is not None}
                merged[package] = (version, attributes)
            if shadow is not None:
                self._count(shadow.reported, -1)
            self._count(merged, +1)
            new = self.shadows[thing] = PackageShadow(
                merged, (shadow.version if shadow else 0) + 1, int(now))
        answer: dict[str, Any] = {"state": {"reported": reported}, "version": new.version,
                                  "timestamp": new.timestamp}
        if token is not None:
            answer["clientToken"] = token
        return answer

    def get(self, thing: str) -> dict[str, Any]:
        with self._lock:
            shadow = self.shadows.get(thing)
            if shadow is None:
                raise no_shadow()
            return shadow.document()

    def delete(self, thing: str, now: float) -> dict[str, Any]:
        with self._lock:
            shadow = self.shadows.pop(thing, None)
            if shadow is None:
                raise no_shadow()
            self._count(shadow.reported, -1)
            return {"version": shadow.version, "timestamp": int(now)}

    def forget(self, thing: str) -> None:
        """The thing was deleted: its shadow goes, and out of the counts."""
        with self._lock:
            shadow = self.shadows.pop(thing, None)
            if shadow is not None:
                self._count(shadow.reported, -1)

    def clear(self) -> None:
        with self._lock:
            self.shadows.clear()
            self.counts.clear()

    # -- seeding ----------------------------------------------------------------------

    def report(self, reports: Iterable[tuple[str, dict[str, str]]], now: float) -> None:
        """Set many things' shadows at once ((thing, {package: version}) pairs), as if
        each had written them: the seeding path, without the per-document checks."""
        timestamp = int(now)
        with self._lock:
            for thing, packages in reports:
                shadow = self.shadows.get(thing)
                if shadow is not None:
                    self._count(shadow.reported, -1)
                reported = {package: (version, None) for package, version in packages.items()}
                self._count(reported, +1)
                self.shadows[thing] = PackageShadow(
                    reported, (shadow.version if shadow else 0) + 1, timestamp)
