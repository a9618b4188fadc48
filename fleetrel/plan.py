"""The release plan: pydantic models, loading, validation and expansion into steps.

A plan is a YAML (or JSON, or TOML) file; `load` reads it, checks every rule the
service would enforce (botocore checks almost none of them) and returns a
`ReleasePlan`, whose `steps()` are the UpdatePackageVersion requests to send::

    plan = load("plans/demo.yaml")       # raises PlanError listing every problem
    for step in plan.steps():
        print(step.key, step.request())

The `Step` contract below is fixed and used by the engine, the emulator and the state
reader. Choices made here:

- Numbers, booleans and dates where text is expected (`min_hw: 3`, `version: 1.10`)
  are refused with a hint to quote them, never coerced: YAML has already turned
  `1.10` into `1.1` and `on` into `true`, so a coercion would send a value the user
  did not write.
- `action` is accepted in any case (`publish`) and normalised to upper case.
- An entry may leave `action` out (a field-only update of a draft) but must then
  change at least one field; an explicit `null` in an entry clears a default.
- A YAML mapping that gives the same key twice is refused (PyYAML keeps the last).
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import reprlib
import tomllib
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError


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


# --- the rules ------------------------------------------------------------------------
# From the botocore model of UpdatePackageVersion and the service documentation.

NAME_PATTERN = "^[a-zA-Z0-9_.-]+$"  # the model's [a-zA-Z0-9-_.]+, written unambiguously
ATTRIBUTE_KEY_PATTERN = "^[a-zA-Z0-9:_-]+$"
MAX_PACKAGE_NAME = 128
MAX_VERSION_NAME = 64
MAX_PLAN_NAME = 128
MAX_DESCRIPTION = 1024
MAX_RECIPE = 3072
MAX_ATTRIBUTE_KEY = 128
MAX_ATTRIBUTES_BYTES = 3072  # keys and values together, UTF-8
ACTIONS = ("PUBLISH", "DEPRECATE")
PLAN_SUFFIXES = (".yaml", ".yml", ".json", ".toml")

_NAME_RE = re.compile(NAME_PATTERN)
_ATTRIBUTE_KEY_RE = re.compile(ATTRIBUTE_KEY_PATTERN)
_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
# Values are echoed back in messages; keep them short even for huge or cyclic input.
_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 60
_short_repr.maxlist = _short_repr.maxdict = _short_repr.maxtuple = _short_repr.maxset = 4
_short_repr.maxlevel = 2


class PlanError(Exception):
    """A plan the user wrote cannot be used. `problems` lists every one, each line
    naming the file, the entry and the rule; `str()` is those lines.

        try:
            plan = load("plans/demo.yaml")
        except PlanError as exc:
            print(exc, file=sys.stderr)     # one problem per line, no traceback
    """

    def __init__(self, path: str | os.PathLike[str], problems: list[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _rule(problem: str) -> PydanticCustomError:
    # The message travels as context so that braces in user values are never formatted.
    return PydanticCustomError("plan_rule", "{problem}", {"problem": problem})


def _show(value: Any) -> str:
    return _short_repr.repr(value)


def _did_you_mean(word: Any, choices: list[str]) -> str:
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(str(word).lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[match[0]]!r}?)" if match else ""


def _as_text(value: Any) -> str:
    """Accept text only. YAML turns unquoted 1.10, 0x1F, yes, 2024-05-01 into other
    types before we see them; converting back could not restore what was written."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        kind = "a boolean (YAML reads true/false/yes/no/on/off that way)"
    elif isinstance(value, (int, float)):
        kind = "a number (YAML reads 1.10 as 1.1 and 010 as 8)"
    elif isinstance(value, (date, datetime, time)):
        raise _rule(f"{value.isoformat()} was read as a date or time, not text: put it in quotes")
    elif value is None:
        raise _rule("is empty (null): give a value or remove the key")
    elif isinstance(value, dict):
        raise _rule(f"expected text, got a mapping {_show(value)}")
    elif isinstance(value, (list, tuple, set)):
        raise _rule(f"expected text, got a list {_show(value)}")
    else:
        raise _rule(f"expected text, got {type(value).__name__} {_show(value)}")
    raise _rule(f"{_show(value)} was read as {kind}, not text: put it in quotes so it is kept exactly as written")


def _as_list(value: Any) -> Any:
    # pydantic would also take a set (e.g. YAML !!set), whose order is random: the step
    # order and the plan digest must not depend on hash seeds.
    if not isinstance(value, list):
        raise _rule(f"must be a list, got {_show(value)}")
    return value


def _as_mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _rule(f"must be a mapping of keys to values, got {_show(value)}")
    return value


def _name_rule(what: str, max_len: int):
    def check(value: str) -> str:
        if not value:
            raise _rule(f"{what} is empty: it must be 1–{max_len} characters of [a-zA-Z0-9-_.]")
        if len(value) > max_len:
            raise _rule(f"{what} {_show(value)} is {len(value)} characters: at most {max_len} allowed")
        bad = sorted(set(re.sub(r"[a-zA-Z0-9_.\-]", "", value)))
        if bad:
            raise _rule(f"{what} {_show(value)} has characters outside [a-zA-Z0-9-_.]: {_show(''.join(bad))}")
        return value

    return check


def _control_character(value: str) -> tuple[int, str] | None:
    """Position and U+ code of the first character in Unicode category C (\\p{C})."""
    for position, char in enumerate(value):
        if unicodedata.category(char).startswith("C"):
            return position, f"U+{ord(char):04X}"
    return None


def _description_rule(value: str) -> str:
    if not value:
        raise _rule("description is empty: leave the key out to keep the current one")
    if len(value) > MAX_DESCRIPTION:
        raise _rule(f"description is {len(value)} characters: at most {MAX_DESCRIPTION} allowed")
    found = _control_character(value)
    if found:
        raise _rule(
            f"has a control character {found[1]} at position {found[0]}: the service refuses "
            "control characters, line breaks included (a YAML '|' block keeps them; use a plain or '>-' string)"
        )
    return value


def _recipe_rule(value: str) -> str:
    if len(value) > MAX_RECIPE:
        raise _rule(f"recipe is {len(value)} characters: at most {MAX_RECIPE} allowed")
    return value


def _attribute_key_rule(value: str) -> str:
    if not 1 <= len(value) <= MAX_ATTRIBUTE_KEY:
        raise _rule(f"attribute key {_show(value)} must be 1–{MAX_ATTRIBUTE_KEY} characters")
    bad = sorted(set(re.sub(r"[a-zA-Z0-9:_\-]", "", value)))
    if bad:
        raise _rule(f"attribute key {_show(value)} has characters outside [a-zA-Z0-9:_-]: {_show(''.join(bad))}")
    return value


def _attribute_value_rule(value: str) -> str:
    if not value:
        raise _rule("attribute value is empty: the service needs at least one character")
    found = _control_character(value)
    if found:
        raise _rule(f"attribute value has a control character {found[1]} at position {found[0]}: not allowed")
    return value


def _non_empty_rule(value: str) -> str:
    if not value.strip():
        raise _rule("is empty: give a value or remove the key")
    return value


def _endpoint_rule(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise _rule(f"endpoint_url {_show(value)} must start with http:// or https://")
    return value


def _as_action(value: Any) -> str:
    # Lower case is accepted and normalised: `action: publish` has one obvious meaning.
    if isinstance(value, str) and value.strip().upper() in ACTIONS:
        return value.strip().upper()
    hint = _did_you_mean(value, list(ACTIONS)) if isinstance(value, str) else ""
    raise _rule(
        f"{_show(value)} is not an action: use PUBLISH or DEPRECATE{hint}, "
        "or leave action out for a field-only update of a draft"
    )


def _as_wave(value: Any) -> int | str:
    """A cumulative wave end: a step count (int ≥ 1) or a share of the plan ("25%")."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise _rule(f"wave {value} must be a step count of at least 1, or a percentage like \"25%\"")
        return value
    if isinstance(value, str):
        match = _PERCENT_RE.match(value)
        if match and 0 < float(match.group(1)) <= 100:
            return f"{match.group(1)}%"
        raise _rule(f"wave {_show(value)} must be a percentage in (0%, 100%] like \"25%\", or a step count")
    raise _rule(f"wave {_show(value)} must be a step count (an integer) or a percentage like \"25%\"")


def _name_schema(max_len: int) -> dict[str, Any]:
    return {"type": "string", "pattern": NAME_PATTERN, "minLength": 1, "maxLength": max_len}


PlanName = Annotated[str, BeforeValidator(_as_text), AfterValidator(_name_rule("plan name", MAX_PLAN_NAME)), WithJsonSchema(_name_schema(MAX_PLAN_NAME))]
PackageName = Annotated[str, BeforeValidator(_as_text), AfterValidator(_name_rule("package name", MAX_PACKAGE_NAME)), WithJsonSchema(_name_schema(MAX_PACKAGE_NAME))]
VersionName = Annotated[str, BeforeValidator(_as_text), AfterValidator(_name_rule("version name", MAX_VERSION_NAME)), WithJsonSchema(_name_schema(MAX_VERSION_NAME))]
Description = Annotated[str, BeforeValidator(_as_text), AfterValidator(_description_rule), WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_DESCRIPTION, "pattern": "^[^\\p{C}]+$"})]
Recipe = Annotated[str, BeforeValidator(_as_text), AfterValidator(_recipe_rule), WithJsonSchema({"type": "string", "maxLength": MAX_RECIPE})]
NonEmptyText = Annotated[str, BeforeValidator(_as_text), AfterValidator(_non_empty_rule), WithJsonSchema({"type": "string", "minLength": 1})]
EndpointUrl = Annotated[str, BeforeValidator(_as_text), AfterValidator(_endpoint_rule), WithJsonSchema({"type": "string", "pattern": "^https?://"})]
AttributeKey = Annotated[str, BeforeValidator(_as_text), AfterValidator(_attribute_key_rule)]
AttributeValue = Annotated[str, BeforeValidator(_as_text), AfterValidator(_attribute_value_rule)]
Attributes = Annotated[
    dict[AttributeKey, AttributeValue],
    BeforeValidator(_as_mapping),
    WithJsonSchema({
        "type": "object",
        "propertyNames": {"pattern": ATTRIBUTE_KEY_PATTERN, "minLength": 1, "maxLength": MAX_ATTRIBUTE_KEY},
        "additionalProperties": {"type": "string", "minLength": 1},
        "description": f"at most {MAX_ATTRIBUTES_BYTES} bytes of keys and values together (UTF-8); "
        "numbers must be quoted",
    }),
]
Action = Annotated[str, PlainValidator(_as_action), WithJsonSchema({"enum": [*ACTIONS, "publish", "deprecate"], "description": "any case; normalised to upper case"})]
Wave = Annotated[int | str, PlainValidator(_as_wave), WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^\\d+(\\.\\d+)?%$"}]})]


# --- the models -----------------------------------------------------------------------


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
    versions: Annotated[list[VersionName], BeforeValidator(_as_list), Field(min_length=1)] | None = None
    action: Action | None = None
    description: Description | None = None
    attributes: Attributes | None = None
    artifact: Artifact | None = None
    recipe: Recipe | None = None

    @model_validator(mode="after")
    def _one_version_or_a_list(self) -> VersionEntry:
        if (self.version is None) == (self.versions is None):
            raise PydanticCustomError("version_choice", "{problem}", {"problem": _VERSION_CHOICE})
        return self

    def version_names(self) -> list[str]:
        return [self.version] if self.version is not None else list(self.versions or [])


_VERSION_CHOICE = "give exactly one of 'version: X' or 'versions: [X, Y, ...]'"


class ReleasePlan(_PlanModel):
    """A validated release plan. Build it with `load(path)` (which names the file in
    every problem) or `ReleasePlan.model_validate(data)`:

        plan = load("plans/demo.yaml")
        plan.summary()     # '200 steps, 4 packages, PUBLISH 200'
        plan.steps()[0]    # Step(package='thermostat-fw', version='4.0.0', ...)
        plan.digest        # sha256 of the expanded requests: what the journal pins
    """

    plan: PlanName = Field(description="names the run and its journal")
    target: Target = Field(default_factory=Target)
    limits: Limits = Field(default_factory=Limits)
    abort: Abort = Field(default_factory=Abort)
    defaults: Defaults = Field(default_factory=Defaults)
    versions: Annotated[list[VersionEntry], BeforeValidator(_as_list), Field(min_length=1)]
    waves: Annotated[list[Wave], BeforeValidator(_as_list), Field(min_length=1)] | None = Field(
        default=None, description="cumulative wave ends: step counts or percentages; the rest is a last wave"
    )

    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _rules_across_entries(self) -> ReleasePlan:
        problems = _duplicate_problems(self.versions)
        problems += _cross_entry_problems(self.defaults, list(enumerate(self.versions)), self.waves)
        if problems:
            lines = [f"{_where(loc, self.versions)}: {message}" for loc, message in problems]
            raise PydanticCustomError("plan_rules", "{problem}", {"problem": "\n".join(lines)})
        return self

    @property
    def source(self) -> Path | None:
        """The file the plan was loaded from, if any."""
        return self._source

    def steps(self) -> list[Step]:
        """Every (package, version) of the plan in order, defaults merged in."""
        steps: list[Step] = []
        for entry in self.versions:
            for version in entry.version_names():
                steps.append(Step(package=entry.package, version=version, index=len(steps), **_merged_fields(self.defaults, entry)))
        return steps

    @property
    def digest(self) -> str:
        """sha256 over the canonical JSON of the expanded requests (limits and target
        are not part of it: changing the rate does not make a new run)."""
        return digest([step.request() for step in self.steps()])

    def wave_ends(self) -> list[int]:
        """Cumulative step counts at which each wave ends; the last is always the
        number of steps (one wave when `waves` is unset)."""
        ends, _ = _resolve_waves(self.waves or [], len(self.steps()))
        return ends

    def summary(self) -> str:
        """One line: steps, packages and how many of each action."""
        steps = self.steps()
        actions = Counter(step.action or "field-only" for step in steps)
        packages = len({step.package for step in steps})
        parts = [_plural(len(steps), "step"), _plural(packages, "package")]
        parts += [f"{name} {actions[name]}" for name in (*ACTIONS, "field-only") if actions[name]]
        return ", ".join(parts)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# --- rules across entries (after defaults are merged) ---------------------------------


def _merged_fields(defaults: Defaults, entry: VersionEntry) -> dict[str, Any]:
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


def _attributes_bytes(attributes: dict[str, str] | None) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in (attributes or {}).items())


def _resolve_waves(waves: list[int | str], total: int) -> tuple[list[int], list[tuple[tuple, str]]]:
    ends: list[int] = []
    problems: list[tuple[tuple, str]] = []
    for i, wave in enumerate(waves):
        end = math.ceil(total * float(wave[:-1]) / 100) if isinstance(wave, str) else wave
        if end > total:
            problems.append((("waves", i), f"wave {wave!r} ends at step {end} but the plan has {_plural(total, 'step')}"))
        elif ends and end <= ends[-1]:
            problems.append((("waves", i), f"wave {wave!r} ends at step {end}, not after the previous wave's "
                             f"{ends[-1]}: waves are cumulative and must grow"))
        else:
            ends.append(end)
    if not ends or ends[-1] < total:
        ends.append(total)
    return ends, problems


def _cross_entry_problems(
    defaults: Defaults | None,
    entries: list[tuple[int, VersionEntry]],
    waves: list[int | str] | None,
) -> list[tuple[tuple, str]]:
    """Rules that need more than one field: merged attribute size, entries
    that change nothing, waves against the step count. `defaults` is None when it is
    itself invalid (then the checks that depend on it are skipped, not guessed);
    `waves` is None when some entries are invalid (the step count is unknown)."""
    problems: list[tuple[tuple, str]] = []
    defaults_too_big = defaults is not None and _attributes_bytes(defaults.attributes) > MAX_ATTRIBUTES_BYTES
    if defaults_too_big:
        size = _attributes_bytes(defaults.attributes)
        problems.append((("defaults", "attributes"), f"attributes are {size} bytes (keys and values, UTF-8): at most {MAX_ATTRIBUTES_BYTES} allowed"))
    total = 0
    for index, entry in entries:
        total += len(entry.version_names())
        if defaults is None:
            continue
        merged = _merged_fields(defaults, entry)
        size = _attributes_bytes(merged["attributes"])
        if size > MAX_ATTRIBUTES_BYTES and not defaults_too_big:
            problems.append((("versions", index, "attributes"), f"attributes are {size} bytes with the defaults merged in "
                             f"(keys and values, UTF-8): at most {MAX_ATTRIBUTES_BYTES} allowed"))
        if all(value is None for value in merged.values()):
            problems.append((("versions", index), "changes nothing: give an action (PUBLISH or DEPRECATE) or a field to "
                             "update (description, attributes, artifact, recipe)"))
    if waves:
        problems += _resolve_waves(waves, total)[1]
    return problems


def _duplicate_problems(entries: list[Any]) -> list[tuple[tuple, str]]:
    """(package, version) pairs given twice, naming both entries. Works on raw entries
    too, so a duplicate is reported even beside an entry's type errors."""
    first_seen: dict[tuple[str, str], int] = {}
    problems: list[tuple[tuple, str]] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, VersionEntry):
            entry = entry.model_dump(exclude_none=True)
        if not isinstance(entry, dict) or not isinstance(entry.get("package"), str):
            continue
        package, version, versions = entry["package"], entry.get("version"), entry.get("versions")
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


# --- where a problem is ---------------------------------------------------------------


def _entry_label(index: int, entry: Any) -> str:
    """`versions[3] (thermostat-fw/4.2.0)`, from raw data or a VersionEntry."""
    if isinstance(entry, VersionEntry):
        entry = entry.model_dump()
    if not isinstance(entry, dict):
        return f"versions[{index}]"

    def text(value: Any) -> str:
        return value if isinstance(value, str) and value.isprintable() and len(value) <= 60 else _show(value)

    package = text(entry["package"]) if "package" in entry else "?"
    version, versions = entry.get("version"), entry.get("versions")
    if version is not None:
        return f"versions[{index}] ({package}/{text(version)})"
    if isinstance(versions, list) and versions:
        return f"versions[{index}] ({package}/{text(versions[0])}{' …' if len(versions) > 1 else ''}, {_plural(len(versions), 'version')})"
    return f"versions[{index}] ({package})"


def _where(loc: tuple, raw_entries: Any) -> str:
    """Render a pydantic location, naming the entry by index and package/version."""
    parts: list[str] = []
    rest = list(loc)
    if len(rest) >= 2 and rest[0] == "versions" and isinstance(rest[1], int):
        index = rest[1]
        entry = raw_entries[index] if isinstance(raw_entries, list) and index < len(raw_entries) else None
        parts.append(_entry_label(index, entry))
        rest = rest[2:]
    path = ""
    for item in rest:
        if item == "[key]":
            continue
        path += f"[{item}]" if isinstance(item, int) else (f".{item}" if path else str(item))
    if path:
        parts.append(path)
    return ": ".join(parts) if parts else "(top level)"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the last key of `loc` (for 'did you mean')."""
    model: Any = ReleasePlan
    for item in loc:
        if isinstance(item, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or item not in model.model_fields:
            return None
        model = _inner_model(model.model_fields[item].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


_MISSING_HINTS = {
    "plan": "it names the run and its journal, e.g. plan: spring-release",
    "versions": "list the package versions to change",
    "package": "name the package this entry changes",
}


def _problem_from_error(error: dict[str, Any]) -> tuple[tuple, str] | None:
    """One pydantic error as (location, message in plain words), or None to drop it."""
    loc, kind = tuple(error["loc"]), error["type"]
    if kind == "plan_rules":  # recomputed separately so that they show beside field errors
        return None
    if kind in ("plan_rule", "version_choice"):
        return loc, error["ctx"]["problem"]
    if kind == "extra_forbidden":
        key, model = loc[-1], _model_at(loc[:-1])
        if model is Defaults and key in VersionEntry.model_fields:
            return loc, f"unknown key {_show(key)}: {key} belongs to each entry, not to defaults"
        allowed = sorted(model.model_fields) if model else []
        return loc, f"unknown key {_show(key)}{_did_you_mean(key, allowed)}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        hint = _MISSING_HINTS.get(loc[-1] if loc else "", "")
        return loc, f"required key is missing{': ' + hint if hint else ''}"
    if kind == "invalid_key":
        return loc[:-1], f"key {_show(loc[-1])} must be text"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"must be a mapping of keys to values, got {_show(error['input'])}"
    if kind == "too_short":
        return loc, "is empty: list at least one item"
    message = error["msg"].replace("Input should", "should")
    return loc, f"{message} (got {_show(error['input'])})"


# --- reading files --------------------------------------------------------------------


class _PlanYamlLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: PyYAML would keep the
    last silently, and a second `version:` or `limits:` is always a mistake."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            try:
                first = seen.get(key)
            except TypeError:
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {_show(key)} appears twice in one mapping (first at line {first.line + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """The line (1-based) of the YAML node a location points to, or of its nearest parent."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for item in loc:
        child = None
        if isinstance(node, yaml.MappingNode) and isinstance(item, str):
            child = next((v if item != loc[-1] else k for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == item), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(item, int) and item < len(node.value):
            child = node.value[item]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PlanError(path, [f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise PlanError(path, [f"{path}: is a directory, not a plan file"]) from None
    except PermissionError:
        raise PlanError(path, [f"{path}: cannot be read: permission denied"]) from None
    except OSError as exc:
        raise PlanError(path, [f"{path}: cannot be read: {exc.strerror or exc}"]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PlanError(path, [f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): save the plan as UTF-8"]) from None


def _parse(path: Path, text: str) -> tuple[Any, yaml.Node | None]:
    """The document's data and, for YAML, its node tree (for line numbers)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            loader = _PlanYamlLoader(text)
            try:
                node = loader.get_single_node()
                return (loader.construct_document(node) if node is not None else None), node
            finally:
                loader.dispose()
        if suffix == ".json":
            return json.loads(text, object_pairs_hook=_json_object_without_duplicates), None
        return tomllib.loads(text), None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PlanError(path, [f"{path}{where}: YAML syntax error{at}: {what}"]) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise PlanError(path, [f"{path}:{line}:{column}: YAML syntax error at line {line}, column {column}: "
                               f"character {exc.character!r} is not allowed in YAML"]) from None
    except json.JSONDecodeError as exc:
        raise PlanError(path, [f"{path}:{exc.lineno}:{exc.colno}: JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f":{found.group(1)}:{found.group(2)}" if found else ""
        raise PlanError(path, [f"{path}{where}: TOML syntax error: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise PlanError(path, [f"{path}: YAML error: {exc}"]) from None
    except RecursionError:
        raise PlanError(path, [f"{path}: nested too deeply to read"]) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # e.g. PyYAML's timestamp constructor on 2024-13-45, or a duplicate JSON key
        raise PlanError(path, [f"{path}: cannot be read as {suffix[1:].upper()}: {exc}"]) from None


def _json_object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"key {twice[0]!r} appears twice in one object")
    return dict(pairs)


def load(path: str | os.PathLike[str]) -> ReleasePlan:
    """Read and validate a plan (.yaml/.yml, .json or .toml).

        plan = load("plans/demo.yaml")

    Raises PlanError, and only PlanError, for anything wrong with the file, listing
    every problem at once.
    """
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() not in PLAN_SUFFIXES:
        raise PlanError(path, [f"{path}: unknown plan format {path.suffix or '(no extension)'!r}: name it .yaml, .yml, .json or .toml"])
    data, root = _parse(path, text)
    if data is None:
        raise PlanError(path, [f"{path}: the plan is empty: it needs at least 'plan:' and 'versions:'"])
    if not isinstance(data, dict):
        raise PlanError(path, [f"{path}: the top level must be a mapping with 'plan:', 'versions:' and so on, got {_show(data)}"])
    plan = _validate(path, data, root)
    plan._source = path
    return plan


def _validate(path: Path, data: dict[Any, Any], root: yaml.Node | None) -> ReleasePlan:
    try:
        return ReleasePlan.model_validate(data)
    except ValidationError as exc:
        problems = [p for p in map(_problem_from_error, exc.errors()) if p is not None]
    problems += _salvaged_cross_entry_problems(data)
    raw_entries = data.get("versions")
    located = [(_line_of(root, loc), _where(loc, raw_entries), message) for loc, message in problems]
    located.sort(key=lambda item: item[0] or 0)  # stable: file order for YAML, as found otherwise
    lines = [f"{path}{f':{line}' if line else ''}: {where}: {message}" for line, where, message in located]
    raise PlanError(path, list(dict.fromkeys(lines)))  # a nested error can surface twice


def _salvaged_cross_entry_problems(data: dict[Any, Any]) -> list[tuple[tuple, str]]:
    """Cross-entry rules over the parts that are valid on their own, so that a type
    error in one entry does not hide a duplicate elsewhere."""
    try:
        defaults: Defaults | None = Defaults.model_validate(data.get("defaults") or {})
    except ValidationError:
        defaults = None
    raw_entries = data.get("versions")
    if not isinstance(raw_entries, list):
        return []
    valid: list[tuple[int, VersionEntry]] = []
    problems: list[tuple[tuple, str]] = []
    all_valid = True
    for index, raw in enumerate(raw_entries):
        try:
            valid.append((index, VersionEntry.model_validate(raw)))
        except ValidationError as exc:
            all_valid = False
            kinds = {error["type"] for error in exc.errors()}
            # The "one of version/versions" check runs after the fields; say it anyway.
            if isinstance(raw, dict) and "version_choice" not in kinds and (("version" in raw) == ("versions" in raw)):
                problems.append((("versions", index), _VERSION_CHOICE))
    # Waves are checked against the step count only when every entry (hence the count) is known.
    waves: list[int | str] | None = None
    if all_valid and isinstance(data.get("waves"), list):
        try:
            waves = [_as_wave(wave) for wave in data["waves"]]
        except PydanticCustomError:
            waves = None
    return problems + _duplicate_problems(raw_entries) + _cross_entry_problems(defaults, valid, waves)
