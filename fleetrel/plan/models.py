"""The plan as pydantic models, the rules across its entries, and its expansion into steps.

    plan = ReleasePlan.model_validate({"plan": "p", "versions": [{"package": "fw", "version": "1.0", "action": "PUBLISH"}]})
    plan.steps()      # [Step(package='fw', version='1.0', action='PUBLISH', ...)]
    plan.digest       # what a run's journal pins

`fleetrel.plan.load` adds the file: every problem then names the file, line and entry.
A plan is frozen once validated, so its steps and digest are computed once, on first
use, and kept (a 50,000-step plan would otherwise rebuild its steps on every
`summary`, `digest` and `wave_ends`).

The `Step` contract is fixed and used by the engine, the emulator and the state reader.
"""
from __future__ import annotations

import hashlib
import json
import json.encoder
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator
from pydantic_core import PydanticCustomError

from fleetrel.plan.rules import (
    VERSION_CHOICE,
    Action,
    Attributes,
    Description,
    EndpointUrl,
    NonEmptyText,
    PackageName,
    PlanName,
    Recipe,
    VersionName,
    Wave,
    as_list,
    attributes_bytes,
    plural,
    resolve_waves,
)
from fleetrel.service import ACTIONS, MAX_ATTRIBUTES_BYTES


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
    """One UpdatePackageVersion request: a (package, version) and the fields to send.

    Fields left as None are not sent. `action` is "PUBLISH", "DEPRECATE" or None
    (a field-only update of a draft). The steps of one plan entry share their
    `attributes` and `artifact` dicts: read them, do not change them.
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


class _PlanModel(BaseModel):
    # Frozen: a plan is read once and its digest must not drift under the engine.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_PlanModel):
    """Where the calls go. Unset fields fall back to the AWS configuration; the CLI
    passes `endpoint_url` (e.g. the emulator's) rather than the plan."""

    region: NonEmptyText | None = None
    profile: NonEmptyText | None = None
    endpoint_url: EndpointUrl | None = None


class Limits(_PlanModel):
    """How hard to push the service: a token bucket (`rate` per second, `burst`
    capacity), at most `concurrency` calls in flight, and whether to back off
    adaptively on throttling."""

    rate: Annotated[float, Field(gt=0, strict=True, allow_inf_nan=False, description="sustained calls per second")] = 10.0
    burst: Annotated[int, Field(ge=1, strict=True, description="token bucket capacity")] = 10
    concurrency: Annotated[int, Field(ge=1, strict=True, description="calls in flight at most")] = 16
    adaptive: Annotated[bool, Field(strict=True, description="back off on ThrottlingException, probe back up")] = True


class Abort(_PlanModel):
    """Stop starting new steps once `min_finished` steps have finished and more than
    `max_failure_ratio` of them failed."""

    max_failure_ratio: Annotated[float, Field(gt=0, le=1, strict=True, allow_inf_nan=False)] = 0.10
    min_finished: Annotated[int, Field(ge=0, strict=True)] = 20


class S3Location(_PlanModel):
    bucket: NonEmptyText
    key: NonEmptyText
    version: NonEmptyText | None = None


class Artifact(_PlanModel):
    """`{s3Location: {bucket, key, version?}}`, exactly as the API takes it."""

    s3Location: S3Location


class Defaults(_PlanModel):
    """Fields merged into every entry; an entry's own value wins, attributes merge key
    by key. (No artifact: an artifact belongs to one version.)"""

    action: Action | None = None
    description: Description | None = None
    attributes: Attributes | None = None
    recipe: Recipe | None = None


class VersionEntry(_PlanModel):
    """One entry of `versions:`: a package and either one `version` or a list of
    `versions` (shorthand for one entry per version), with the fields to send."""

    package: PackageName
    version: VersionName | None = None
    versions: Annotated[list[VersionName], BeforeValidator(as_list), Field(min_length=1)] | None = None
    action: Action | None = None
    description: Description | None = None
    attributes: Attributes | None = None
    artifact: Artifact | None = None
    recipe: Recipe | None = None

    @model_validator(mode="after")
    def _one_version_or_a_list(self) -> VersionEntry:
        if (self.version is None) == (self.versions is None):
            raise PydanticCustomError("version_choice", "{problem}", {"problem": VERSION_CHOICE})
        return self

    def version_names(self) -> list[str]:
        return [self.version] if self.version is not None else list(self.versions or [])

    def version_count(self) -> int:
        return 1 if self.versions is None else len(self.versions)


class ReleasePlan(_PlanModel):
    """A validated release plan. Build it with `load(path)` (which names the file in
    every problem) or `ReleasePlan.model_validate(data)`:

        plan = load("plans/demo.yaml")
        plan.summary()     # '200 steps, 4 packages, PUBLISH 200'
        plan.steps()[0]    # Step(package='thermostat-fw', version='4.0.0', ...)
        plan.digest        # sha256 of the requests: what the journal pins
    """

    plan: PlanName = Field(description="names the run and its journal")
    target: Target = Field(default_factory=Target)
    limits: Limits = Field(default_factory=Limits)
    abort: Abort = Field(default_factory=Abort)
    defaults: Defaults = Field(default_factory=Defaults)
    versions: Annotated[list[VersionEntry], BeforeValidator(as_list), Field(min_length=1)]
    waves: Annotated[list[Wave], BeforeValidator(as_list), Field(min_length=1)] | None = Field(
        default=None, description="cumulative wave ends: step counts or percentages; the rest is a last wave"
    )

    _source: Path | None = PrivateAttr(default=None)
    _steps: list[Step] | None = PrivateAttr(default=None)  # filled on first use: the model is frozen
    _digest: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _rules_across_entries(self) -> ReleasePlan:
        problems = duplicate_problems(self.versions)
        problems += cross_entry_problems(self.defaults, list(enumerate(self.versions)), self.waves)
        if problems:
            from fleetrel.plan.diagnostics import where  # diagnostics names entries through these models

            lines = [f"{where(loc, self.versions)}: {message}" for loc, message in problems]
            # The structured problems travel too, so `load` lists them without working them out again.
            raise PydanticCustomError("plan_rules", "{problem}", {"problem": "\n".join(lines), "problems": problems})
        return self

    @property
    def source(self) -> Path | None:
        """The file the plan was loaded from, if any."""
        return self._source

    def steps(self) -> list[Step]:
        """Every (package, version) of the plan in order, defaults merged in."""
        if self._steps is None:
            steps: list[Step] = []
            for entry in self.versions:
                fields = merged_fields(self.defaults, entry)  # once per entry, shared by its versions
                package, first = entry.package, len(steps)
                steps.extend(Step(package, version, index=first + i, **fields)
                             for i, version in enumerate(entry.version_names()))
            self._steps = steps
        return list(self._steps)  # a copy: a caller's sort or append must not reach the cache

    @property
    def digest(self) -> str:
        """sha256 over the canonical JSON of the requests, in (package, version) order:
        a reordered plan is the same run, as its clientTokens already are. Limits and
        target are not part of it: changing the rate does not make a new run."""
        if self._digest is None:
            in_key_order = sorted(self.steps(), key=lambda step: (step.package, step.version))
            self._digest = hashlib.sha256(requests_json(in_key_order).encode()).hexdigest()
        return self._digest

    def wave_ends(self) -> list[int]:
        """Cumulative step counts at which each wave ends; the last is always the
        number of steps (one wave when `waves` is unset)."""
        ends, _ = resolve_waves(self.waves or [], self.step_count())
        return ends

    def step_count(self) -> int:
        return len(self._steps) if self._steps is not None else sum(entry.version_count() for entry in self.versions)

    def summary(self) -> str:
        """One line: steps, packages and how many of each action."""
        # Counted per entry, without expanding the steps: `fleetrel validate` prints
        # this and needs nothing else.
        actions: Counter[str] = Counter()
        for entry in self.versions:
            action = entry.action if "action" in entry.model_fields_set else self.defaults.action
            actions[action or "field-only"] += entry.version_count()
        packages = len({entry.package for entry in self.versions})
        parts = [plural(self.step_count(), "step"), plural(packages, "package")]
        parts += [f"{name} {actions[name]}" for name in (*ACTIONS, "field-only") if actions[name]]
        return ", ".join(parts)


# --- rules across entries (after defaults are merged) ---------------------------------


def merged_fields(defaults: Defaults, entry: VersionEntry) -> dict[str, Any]:
    """The request fields of `entry` with `defaults` under it. A key the entry sets,
    even to null, wins; attributes merge key by key."""
    given = entry.model_fields_set
    merged: dict[str, Any] = {
        name: getattr(entry, name) if name in given else getattr(defaults, name)
        for name in ("action", "description", "recipe")
    }
    if "attributes" in given and entry.attributes is None:
        merged["attributes"] = None
    else:
        merged["attributes"] = {**(defaults.attributes or {}), **(entry.attributes or {})} or None
    merged["artifact"] = entry.artifact.model_dump(exclude_none=True) if entry.artifact else None
    return merged


def cross_entry_problems(
    defaults: Defaults | None,
    entries: list[tuple[int, VersionEntry]],
    waves: list[int | str] | None,
) -> list[tuple[tuple, str]]:
    """Rules that need more than one field: merged attribute size, entries
    that change nothing, waves against the step count. `defaults` is None when it is
    itself invalid (then the checks that depend on it are skipped, not guessed);
    `waves` is None when some entries are invalid (the step count is unknown)."""
    problems: list[tuple[tuple, str]] = []
    defaults_too_big = defaults is not None and attributes_bytes(defaults.attributes) > MAX_ATTRIBUTES_BYTES
    if defaults_too_big:
        size = attributes_bytes(defaults.attributes)
        problems.append((("defaults", "attributes"), f"attributes are {size} bytes (keys and values, UTF-8): at most {MAX_ATTRIBUTES_BYTES} allowed"))
    total = 0
    for index, entry in entries:
        total += entry.version_count()
        if defaults is None:
            continue
        merged = merged_fields(defaults, entry)
        size = attributes_bytes(merged["attributes"])
        if size > MAX_ATTRIBUTES_BYTES and not defaults_too_big:
            problems.append((("versions", index, "attributes"), f"attributes are {size} bytes with the defaults merged in "
                             f"(keys and values, UTF-8): at most {MAX_ATTRIBUTES_BYTES} allowed"))
        if all(value is None for value in merged.values()):
            problems.append((("versions", index), "changes nothing: give an action (PUBLISH or DEPRECATE) or a field to "
                             "update (description, attributes, artifact, recipe)"))
    if waves:
        problems += resolve_waves(waves, total)[1]
    return problems


def duplicate_problems(entries: list[Any]) -> list[tuple[tuple, str]]:
    """(package, version) pairs given twice, naming both entries. Works on raw entries
    too, so a duplicate is reported even beside an entry's type errors."""
    first_seen: dict[tuple[str, str], int] = {}
    problems: list[tuple[tuple, str]] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, VersionEntry):
            package, version, versions = entry.package, entry.version, entry.versions
        elif isinstance(entry, dict) and isinstance(entry.get("package"), str):
            package, version, versions = entry["package"], entry.get("version"), entry.get("versions")
        else:
            continue
        if isinstance(version, str) and versions is None:
            named = [(("versions", index, "version"), version)]
        elif version is None and isinstance(versions, list):
            named = [(("versions", index, "versions", i), v) for i, v in enumerate(versions) if isinstance(v, str)]
        else:
            continue
        for loc, version in named:
            key = (package, version)
            if key in first_seen:
                problems.append((loc, f"{package}/{version} already appears in versions[{first_seen[key]}]: "
                                 "a (package, version) may appear once per plan, so merge the two entries"))
            else:
                first_seen[key] = index
    return problems
