"""A step: one request of a plan, the `Step` the engine, the journal and the clientTokens
work from, its key, and the canonical JSON and digests taken over requests.

    step = Step("fw", "1.0", action="PUBLISH")
    step.key                # 'fw/1.0' ('target:fw/1.0' in a plan with `targets:`)
    step.request()          # {'packageName': 'fw', 'versionName': '1.0', 'action': 'PUBLISH'}
    step.request_digest()   # sha256 of its canonical JSON
    parse_step_key("fw/1.0#default")   # (None, 'fw', '1.0', True)

The `Step` contract is fixed and used by the engine, the emulator and the state reader.
A plan's steps are built by `ReleasePlan.steps()` (`fleetrel.plan.models`).
"""
from __future__ import annotations

import hashlib
import json
import json.encoder
from dataclasses import dataclass, field
from typing import Any

from fleetrel.plan.defaults import DEFAULT_ACTIONS, DEFAULT_KEY_SUFFIX, UNSET_DEFAULT


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every digest is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(value: Any) -> str:
    """sha256 hex of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def requests_json(steps: list[Step]) -> str:
    """`canonical_json([step.request() for step in steps])`, built about twice as fast: the
    steps of one entry share every field but their names, so the shared fields are encoded
    once per entry and only package and version per step. (A 50,000-step plan's digest is
    a tenth of a second of every resume; tests/test_plan.py holds the two equal.)

    Canonical JSON sorts keys, and the request's keys sort as action, artifact, attributes,
    description, packageName, recipe, versionName: the shared fields go before the package
    name, except the recipe, which goes between package and version.
    """
    encoded: dict[tuple, tuple[str, str]] = {}
    parts: list[str] = []
    for step in steps:
        if step.action in DEFAULT_ACTIONS:  # an UpdatePackage request: another shape
            parts.append(canonical_json(step.request()))
            continue
        # the dicts by identity: one entry's steps share them (a Step is never changed)
        shared = (step.action, id(step.artifact), id(step.attributes), step.description, step.recipe)
        around = encoded.get(shared)
        if around is None:
            before = {name: value for name, value in (("action", step.action), ("artifact", step.artifact),
                                                      ("attributes", step.attributes),
                                                      ("description", step.description)) if value is not None}
            head = canonical_json(before)[1:-1]
            recipe = canonical_json({"recipe": step.recipe})[1:-1] if step.recipe is not None else ""
            around = encoded[shared] = ("{" + head + "," if head else "{", "," + recipe if recipe else "")
        parts.append(f'{around[0]}"packageName":{_json_text(step.package)}{around[1]},'
                     f'"versionName":{_json_text(step.version)}}}')
    return "[" + ",".join(parts) + "]"


_json_text = json.encoder.encode_basestring  # a str as json.dumps(ensure_ascii=False) writes it


@dataclass(frozen=True, slots=True)
class Step:
    """One UpdatePackageVersion request: a (package, version), in a plan with
    `targets:` also the target it goes to, and the fields to send.

    Fields left as None are not sent. `action` is "PUBLISH", "DEPRECATE" or None
    (a field-only update of a draft). The steps of one plan entry share their
    `attributes` and `artifact` dicts: read them, do not change them.

    A default step (`action` "SET_DEFAULT" or "UNSET_DEFAULT", see
    `fleetrel.plan.defaults`) is one UpdatePackage request instead: it makes
    `default_version` the package's default (or unsets it), after the step of
    (package, version) it follows; its key ends with `#default`.
    """

    package: str
    version: str
    action: str | None = None
    description: str | None = None
    attributes: dict[str, str] | None = None
    artifact: dict[str, Any] | None = None
    recipe: str | None = None
    index: int = field(default=0, compare=False)  # position in the expanded plan
    target: str | None = None  # the target's name in a plan with `targets:`; None otherwise
    default_version: str | None = None  # a SET_DEFAULT step's new default

    @property
    def key(self) -> str:
        """`package/version`, or `target:package/version` in a plan with `targets:`;
        a default step's with `#default` after it."""
        key = f"{self.package}/{self.version}" if self.target is None else f"{self.target}:{self.package}/{self.version}"
        return key + DEFAULT_KEY_SUFFIX if self.action in DEFAULT_ACTIONS else key

    @property
    def is_default(self) -> bool:
        """An UpdatePackage step that changes the package's default version."""
        return self.action in DEFAULT_ACTIONS

    def request(self) -> dict[str, Any]:
        """The UpdatePackageVersion keyword arguments, without clientToken (UpdatePackage's
        for a default step)."""
        if self.action in DEFAULT_ACTIONS:
            if self.action == UNSET_DEFAULT:
                return {"packageName": self.package, "unsetDefaultVersion": True}
            return {"packageName": self.package, "defaultVersionName": self.default_version}
        # Spelled out, not a loop over the names: a plan digest builds one per step (100k).
        req: dict[str, Any] = {"packageName": self.package, "versionName": self.version}
        if self.description is not None:
            req["description"] = self.description
        if self.attributes is not None:
            req["attributes"] = self.attributes
        if self.artifact is not None:
            req["artifact"] = self.artifact
        if self.action is not None:
            req["action"] = self.action
        if self.recipe is not None:
            req["recipe"] = self.recipe
        return req

    def request_digest(self) -> str:
        return digest(self.request())


def parse_step_key(key: str) -> tuple[str | None, str, str, bool]:
    """(target or None, package, version, whether it is a default step) of a step key:
    `package/version`, `target:package/version`, either with `#default`. Names hold no
    `:`, `/` or `#`, so the split is exact."""
    is_default = key.endswith(DEFAULT_KEY_SUFFIX)
    if is_default:
        key = key[: -len(DEFAULT_KEY_SUFFIX)]
    target, _, rest = key.rpartition(":")
    package, _, version = rest.partition("/")
    return target or None, package, version, is_default
