"""The release plan: pydantic models, loading, validation and expansion into steps.

(Skeleton: the `Step` contract below is fixed and used by the engine, the emulator
and the state reader; the models, `load` and validation are filled in by the plan work.)
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every digest is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(value: Any) -> str:
    """sha256 hex of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Step:
    """One UpdatePackageVersion request: a (package, version) and the fields to send.

    Fields left as None are not sent. `action` is "PUBLISH", "DEPRECATE" or None
    (a field-only update of a draft).
    """

    package: str
    version: str
    action: str | None = None
    description: str | None = None
    attributes: dict[str, str] | None = None
    artifact: dict[str, Any] | None = None
    recipe: str | None = None
    index: int = field(default=0, compare=False)  # position in the expanded plan

    @property
    def key(self) -> str:
        return f"{self.package}/{self.version}"

    def request(self) -> dict[str, Any]:
        """The UpdatePackageVersion keyword arguments, without clientToken."""
        req: dict[str, Any] = {"packageName": self.package, "versionName": self.version}
        for name in ("description", "attributes", "artifact", "action", "recipe"):
            value = getattr(self, name)
            if value is not None:
                req[name] = value
        return req

    def request_digest(self) -> str:
        return digest(self.request())
