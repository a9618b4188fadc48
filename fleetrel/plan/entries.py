"""The entries of a plan's `versions:` and the `defaults:` merged into them: their
models, and the rules across entries (duplicates, merged attribute size, entries that
change nothing, waves against the step count).

    fields = merged_fields(plan.defaults, entry)      # the request fields, defaults under the entry's
    problems = duplicate_problems(entries, target_names) + cross_entry_problems(defaults, entries, waves)

`ReleasePlan`'s validator runs the rules when every field is valid; otherwise
`fleetrel.plan.diagnostics` runs them over the parts that are. A `select:` entry is
`fleetrel.plan.selectors`'s.
"""
from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError

from fleetrel.plan.rules import (
    VERSION_CHOICE,
    Action,
    Attributes,
    Description,
    NonEmptyText,
    PackageName,
    PlanModel,
    Recipe,
    TargetName,
    VersionName,
    as_list,
    attributes_bytes,
    resolve_waves,
)
from fleetrel.plan.defaults import changes_default
from fleetrel.plan.selectors import LIST_ENTRY_TAG, SELECT_ENTRY_TAG, SelectorEntry
from fleetrel.service import MAX_ATTRIBUTES_BYTES


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
