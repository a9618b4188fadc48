"""The plan as pydantic models, the rules across its entries, and its expansion into steps.

    plan = ReleasePlan.model_validate({"plan": "p", "versions": [{"package": "fw", "version": "1.0", "action": "PUBLISH"}]})
    plan.steps()      # [Step(package='fw', version='1.0', action='PUBLISH', ...)]
    plan.digest       # what a run's journal pins

`fleetrel.plan.load` adds the file: every problem then names the file, line and entry.
With `targets:` (see `fleetrel.plan.targets`) each step also names its target.
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
from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Discriminator, Field, PrivateAttr, Tag, model_validator
from pydantic_core import PydanticCustomError

from fleetrel.plan.rules import (
    VERSION_CHOICE,
    AccountId,
    Action,
    Attributes,
    Description,
    EndpointUrl,
    NonEmptyText,
    PackageName,
    PlanModel,
    PlanName,
    Recipe,
    TargetName,
    VersionName,
    Wave,
    as_list,
    attributes_bytes,
    plural,
    resolve_waves,
)
from fleetrel.plan.defaults import (
    DEFAULT_ACTIONS,
    DEFAULT_KEY_SUFFIX,
    UNSET_DEFAULT,
    changes_default,
    default_problems,
    default_step_fields,
)
from fleetrel.plan.selectors import LIST_ENTRY_TAG, SELECT_ENTRY_TAG, Selection, SelectorEntry
from fleetrel.plan.targets import (
    Targets,
    TargetSpec,
    entry_target_problems,
    expand_targets,
    target_problems,
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


class Target(PlanModel):
    """Where the calls go. Unset fields fall back to the AWS configuration; the CLI
    passes `endpoint_url` (e.g. the emulator's) rather than the plan."""

    region: NonEmptyText | None = None
    profile: NonEmptyText | None = None
    endpoint_url: EndpointUrl | None = None
    account: AccountId | None = Field(default=None, description="the account the credentials must resolve to "
                                      "(checked before anything is sent)")


class Limits(PlanModel):
    """How hard to push the service: a token bucket (`rate` per second, `burst`
    capacity), at most `concurrency` calls in flight, and whether to back off
    adaptively on throttling."""

    rate: Annotated[float, Field(gt=0, strict=True, allow_inf_nan=False, description="sustained calls per second")] = 10.0
    burst: Annotated[int, Field(ge=1, strict=True, description="token bucket capacity")] = 10
    concurrency: Annotated[int, Field(ge=1, strict=True, description="calls in flight at most")] = 16
    adaptive: Annotated[bool, Field(strict=True, description="back off on ThrottlingException, probe back up")] = True


class Abort(PlanModel):
    """Stop starting new steps once `min_finished` steps have finished and more than
    `max_failure_ratio` of them failed."""

    max_failure_ratio: Annotated[float, Field(gt=0, le=1, strict=True, allow_inf_nan=False)] = 0.10
    min_finished: Annotated[int, Field(ge=0, strict=True)] = 20


class S3Location(PlanModel):
    bucket: NonEmptyText
    key: NonEmptyText
    version: NonEmptyText | None = None


class Artifact(PlanModel):
    """`{s3Location: {bucket, key, version?}}`, exactly as the API takes it."""

    s3Location: S3Location


class Defaults(PlanModel):
    """Fields merged into every entry; an entry's own value wins, attributes merge key
    by key. (No artifact: an artifact belongs to one version.)"""

    action: Action | None = None
    description: Description | None = None
    attributes: Attributes | None = None
    recipe: Recipe | None = None


class VersionEntry(PlanModel):
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
    targets: Annotated[list[TargetName], BeforeValidator(as_list), Field(min_length=1)] | None = Field(
        default=None, description="names of the plan's targets this entry applies to; default: all")
    default: Annotated[bool, Field(strict=True)] | None = Field(
        default=None, description="PUBLISH only: make this version the package's default once published")
    then_default: VersionName | None = Field(
        default=None, description="DEPRECATE only: the version that becomes the package's default afterwards")
    unset_default: Annotated[bool, Field(strict=True)] | None = Field(
        default=None, description="DEPRECATE only: leave the package without a default version afterwards")

    @model_validator(mode="after")
    def _one_version_or_a_list(self) -> VersionEntry:
        if (self.version is None) == (self.versions is None):
            raise PydanticCustomError("version_choice", "{problem}", {"problem": VERSION_CHOICE})
        return self

    def version_names(self) -> list[str]:
        return [self.version] if self.version is not None else list(self.versions or [])

    def version_count(self) -> int:
        return 1 if self.versions is None else len(self.versions)

    def step_count(self) -> int:
        """Steps per target: one per version, and the default step if the entry has one."""
        return self.version_count() + (1 if changes_default(self) else 0)


def _entry_form(value: Any) -> str:
    # An entry with `select:` selects; anything else is a listed entry (whose own
    # errors then say what is wrong with it).
    if isinstance(value, SelectorEntry) or (isinstance(value, dict) and "select" in value):
        return SELECT_ENTRY_TAG
    return LIST_ENTRY_TAG


Entry = Annotated[
    Union[Annotated[VersionEntry, Tag(LIST_ENTRY_TAG)], Annotated[SelectorEntry, Tag(SELECT_ENTRY_TAG)]],
    Discriminator(_entry_form),
]


class ReleasePlan(PlanModel):
    """A validated release plan. Build it with `load(path)` (which names the file in
    every problem) or `ReleasePlan.model_validate(data)`:

        plan = load("plans/demo.yaml")
        plan.summary()     # '200 steps, 4 packages, PUBLISH 200'
        plan.steps()[0]    # Step(package='thermostat-fw', version='4.0.0', ...)
        plan.digest        # sha256 of the requests: what the journal pins

    A plan has one `target:` (the default) or many `targets:`. With `targets:`, each
    entry applies to every target unless it names some, and `steps()` is target-major:
    the first target's steps, then the next target's, so `waves: [N]` with N the first
    target's step count makes the first target a canary.
    """

    plan: PlanName = Field(description="names the run and its journal")
    target: Target = Field(default_factory=Target)
    targets: Targets | None = Field(default=None, description="many targets: a list of {name, region, ...} or a "
                                    "matrix {accounts, regions, role_name}; not beside 'target'")
    limits: Limits = Field(default_factory=Limits)
    abort: Abort = Field(default_factory=Abort)
    defaults: Defaults = Field(default_factory=Defaults)
    versions: Annotated[list[Entry], BeforeValidator(as_list), Field(min_length=1)]
    waves: Annotated[list[Wave], BeforeValidator(as_list), Field(min_length=1)] | None = Field(
        default=None, description="cumulative wave ends: step counts or percentages; the rest is a last wave"
    )

    _source: Path | None = PrivateAttr(default=None)
    _steps: list[Step] | None = PrivateAttr(default=None)  # filled on first use: the model is frozen
    _digest: str | None = PrivateAttr(default=None)
    _target_specs: list[TargetSpec] | None = PrivateAttr(default=None)
    _selection: Selection | None = PrivateAttr(default=None)  # what `select:` entries matched, once expanded

    @model_validator(mode="after")
    def _rules_across_entries(self) -> ReleasePlan:
        entries = list(enumerate(self.versions))
        names = [spec.name for spec in expand_targets(self.targets)] if self.targets is not None else None
        problems = target_problems(self.targets, "target" in self.model_fields_set)
        problems += entry_target_problems(names, entries)
        # The step count is unknown while an entry names a target that is not there.
        # ... and while a selector's match is (until expansion; then `fleetrel.expansion` checks them).
        waves = self.waves if not problems and not self.selectors() else None
        problems += duplicate_problems(self.versions, names)
        problems += cross_entry_problems(self.defaults, entries, waves, names)
        actions = {index: merged_fields(self.defaults, entry)["action"] for index, entry in entries}
        problems += default_problems(entries, actions, names)
        if problems:
            from fleetrel.plan.diagnostics import where  # diagnostics names entries through these models

            lines = [f"{where(loc, self.versions, self.targets)}: {message}" for loc, message in problems]
            # The structured problems travel too, so `load` lists them without working them out again.
            raise PydanticCustomError("plan_rules", "{problem}", {"problem": "\n".join(lines), "problems": problems})
        return self

    @property
    def source(self) -> Path | None:
        """The file the plan was loaded from, if any."""
        return self._source

    def target_specs(self) -> list[TargetSpec]:
        """The plan's targets, a matrix expanded (accounts, then regions); [] without `targets:`."""
        if self._target_specs is None:
            self._target_specs = expand_targets(self.targets)
        return list(self._target_specs)

    def selectors(self) -> list[tuple[int, SelectorEntry]]:
        """The `select:` entries, with their index in `versions:`."""
        return [(index, entry) for index, entry in enumerate(self.versions) if isinstance(entry, SelectorEntry)]

    @property
    def selection(self) -> Selection | None:
        """What the `select:` entries matched (set by `expanded`); None until then."""
        return self._selection

    @property
    def needs_expansion(self) -> bool:
        return self._selection is None and bool(self.selectors())

    def expanded(self, selection: Selection) -> ReleasePlan:
        """This plan with its selectors' matches: its steps include them. The digest is
        the same (it covers the selectors' definitions, not their matches)."""
        plan = self.model_copy()
        plan._selection, plan._steps, plan._source = selection, None, self._source
        return plan

    def steps(self) -> list[Step]:
        """Every step of the plan in order, defaults merged in: the entries' versions in
        file order (a selector's matches, package by package, oldest first), and with
        `targets:` that for each target in turn. A plan with `select:` entries must be
        expanded first (`fleetrel.expansion`)."""
        if self.needs_expansion:
            raise RuntimeError(f"plan {self.plan!r} has select: entries: expand it first (fleetrel.expansion)")
        if self._steps is None:
            fields = [merged_fields(self.defaults, entry) for entry in self.versions]  # shared by an entry's steps
            steps: list[Step] = []
            for target in [spec.name for spec in self.target_specs()] or [None]:
                for position, (entry, entry_fields) in enumerate(zip(self.versions, fields)):
                    if target is not None and entry.targets is not None and target not in entry.targets:
                        continue
                    first = len(steps)
                    if isinstance(entry, SelectorEntry):
                        assert self._selection is not None
                        names = self._selection.versions(position, target)
                    else:
                        names = [(entry.package, version) for version in entry.version_names()]
                    steps.extend(Step(package, version, index=first + i, target=target, **entry_fields)
                                 for i, (package, version) in enumerate(names))
                    if changes_default(entry):  # after the version step it waits for
                        steps.append(Step(entry.package, steps[-1].version, index=len(steps), target=target,
                                          **default_step_fields(entry, steps[-1].version)))
            self._steps = steps
        return list(self._steps)  # a copy: a caller's sort or append must not reach the cache

    @property
    def digest(self) -> str:
        """sha256 over the canonical JSON of the requests (with their target's name in a
        plan with `targets:`), in (target, package, version) order: a reordered plan is
        the same run, as its clientTokens already are. Limits and where a target points
        are not part of it: changing the rate or a role does not make a new run."""
        if self._digest is None and self.selectors():
            # Over the listed steps and the selectors' definitions, not their matches: a
            # resume finds its run (and the matches frozen in its journal) before listing
            # anything, and a changed selector or listed entry is still another plan.
            listed = [entry for entry in self.versions if not isinstance(entry, SelectorEntry)]
            plan = self.model_copy(update={"versions": listed}) if listed else None
            if plan is not None:
                plan._steps = plan._digest = plan._selection = None
            fields = {index: merged_fields(self.defaults, entry) for index, entry in self.selectors()}
            self._digest = digest({
                "listed": plan.digest if plan is not None else None,
                "selectors": [{"select": entry.select.model_dump(mode="json", by_alias=True, exclude_none=True),
                               "fields": fields[index], "targets": entry.targets,
                               "position": index} for index, entry in self.selectors()],
                "targets": [spec.name for spec in self.target_specs()] or None})
        if self._digest is None:
            in_key_order = sorted(self.steps(), key=lambda step: (step.target or "", step.package, step.version,
                                                                  step.is_default))
            if not self.targets:
                # A plan without targets hashes exactly what it did before targets existed, so
                # the journals of earlier runs keep resuming (encoded once per entry: fast).
                self._digest = hashlib.sha256(requests_json(in_key_order).encode()).hexdigest()
            else:
                self._digest = digest([{"target": step.target, "request": step.request()} for step in in_key_order])
        return self._digest

    def wave_ends(self) -> list[int]:
        """Cumulative step counts at which each wave ends; the last is always the
        number of steps (one wave when `waves` is unset). With `targets:` the steps are
        target-major, so a wave that ends at the first target's step count is that target."""
        ends, _ = resolve_waves(self.waves or [], self.step_count())
        return ends

    def step_count(self) -> int:
        """The number of steps; before expansion, of the listed ones only."""
        if self._steps is not None or self._selection is not None:
            return len(self.steps())
        names = [spec.name for spec in self.target_specs()] if self.targets is not None else None
        return sum(entry.step_count() * targets_of_entry(entry, names) for entry in self.versions)

    def summary(self) -> str:
        """One line: targets (if many), steps, packages and how many of each action."""
        # Counted per entry, without expanding the steps: `fleetrel validate` prints
        # this and needs nothing else.
        names = [spec.name for spec in self.target_specs()] if self.targets is not None else None
        actions: Counter[str] = Counter()
        if self._selection is not None:  # expanded: the selectors' matches are steps now
            steps = self.steps()
            actions.update(step.action or "field-only" for step in steps)
            packages = len({step.package for step in steps})
        else:
            for entry in self.versions:
                action = entry.action if "action" in entry.model_fields_set else self.defaults.action
                actions[action or "field-only"] += entry.version_count() * targets_of_entry(entry, names)
                if changes_default(entry):
                    actions[default_step_fields(entry, "")["action"]] += targets_of_entry(entry, names)
            packages = len({entry.package for entry in self.versions if isinstance(entry, VersionEntry)})
        parts = [plural(len(names), "target")] if names is not None else []
        parts += [plural(self.step_count(), "step"), plural(packages, "package")]
        parts += [f"{name} {actions[name]}" for name in (*ACTIONS, "field-only", *sorted(DEFAULT_ACTIONS))
                  if actions[name]]
        if self.needs_expansion:
            parts.append(f"{plural(len(self.selectors()), 'selector')} (expanded at preview and run)")
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
    target_names: list[str] | None = None,
) -> list[tuple[tuple, str]]:
    """Rules that need more than one field: merged attribute size, entries
    that change nothing, waves against the step count. `defaults` is None when it is
    itself invalid (then the checks that depend on it are skipped, not guessed);
    `waves` is None when some entries are invalid (the step count is unknown);
    `target_names` are the plan's targets, None without `targets:`."""
    problems: list[tuple[tuple, str]] = []
    defaults_too_big = defaults is not None and attributes_bytes(defaults.attributes) > MAX_ATTRIBUTES_BYTES
    if defaults_too_big:
        size = attributes_bytes(defaults.attributes)
        problems.append((("defaults", "attributes"), f"attributes are {size} bytes (keys and values, UTF-8): at most {MAX_ATTRIBUTES_BYTES} allowed"))
    total = 0
    for index, entry in entries:
        total += entry.step_count() * targets_of_entry(entry, target_names)
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


def targets_of_entry(entry: VersionEntry, target_names: list[str] | None) -> int:
    """How many targets `entry` applies to (1 in a plan without `targets:`)."""
    if target_names is None:
        return 1
    return len(target_names) if entry.targets is None else len(set(entry.targets) & set(target_names))


def duplicate_problems(entries: list[Any], target_names: list[str] | None = None) -> list[tuple[tuple, str]]:
    """(package, version) pairs given twice for one target, naming both entries (in a
    plan without `targets:`, given twice at all). Works on raw entries too, so a
    duplicate is reported even beside an entry's type errors. `target_names` is None
    without `targets:` or when they are unknown (then every entry is taken to apply
    everywhere, unless it names its targets)."""
    # The first entry of each (package, version), and the later ones apart: most versions
    # appear once, and a 50,000-step plan should not build a list for each.
    first_seen: dict[tuple[str, str], tuple[int, frozenset[str] | None]] = {}
    seen_again: dict[tuple[str, str], list[tuple[int, frozenset[str] | None]]] = {}
    problems: list[tuple[tuple, str]] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, VersionEntry):
            package, version, versions, named = entry.package, entry.version, entry.versions, entry.targets
        elif isinstance(entry, dict) and isinstance(entry.get("package"), str):
            package, version, versions, named = entry["package"], entry.get("version"), entry.get("versions"), entry.get("targets")
        else:
            continue
        # None stands for "every target", which meets any other entry of the same version.
        if isinstance(named, list) and all(isinstance(name, str) for name in named):
            applies: frozenset[str] | None = frozenset(named)
        else:
            applies = frozenset(target_names) if target_names is not None and named is None else None
        if isinstance(version, str) and versions is None:
            versions_named = [(("versions", index, "version"), version)]
        elif version is None and isinstance(versions, list):
            versions_named = [(("versions", index, "versions", i), v) for i, v in enumerate(versions) if isinstance(v, str)]
        else:
            continue
        for loc, version in versions_named:
            key = (package, version)
            first = first_seen.get(key)
            if first is None:
                first_seen[key] = (index, applies)
                continue
            earlier = seen_again.setdefault(key, [])
            for other, other_applies in [first, *earlier]:
                shared = None if applies is None or other_applies is None else applies & other_applies
                if shared is None and target_names is None:
                    problems.append((loc, f"{package}/{version} already appears in versions[{other}]: "
                                     "a (package, version) may appear once per plan, so merge the two entries"))
                    break
                if shared is None or shared:
                    on = f" for target {min(shared)!r}" if shared else ""
                    problems.append((loc, f"{package}/{version} already appears in versions[{other}]{on}: a (target, "
                                     "package, version) may appear once per plan, so merge the entries or narrow their targets"))
                    break
            earlier.append((index, applies))
    return problems
