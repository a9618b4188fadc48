"""Every problem of a plan as one line the user can act on: 'file:line: entry: message'.

    try:
        plan = validate(path, data, root)     # root: the YAML node tree, for line numbers
    except PlanError as exc:
        print(exc)   # plan.yaml:7: versions[1] (thermostat-fw/3.0.0 …, 3 versions): action: 'PUBLSH' is not an action: ...

pydantic reports field errors; the rules across entries (duplicates, merged attribute
size, waves against the step count) run in the model's own validator only when every
field is valid. So that a type error in one entry does not hide a duplicate elsewhere,
they are then run here over the parts that are valid on their own. Either way they run
once: when the model's validator found problems, they travel in its error.
"""
from __future__ import annotations

import os
from typing import Any, get_args

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from fleetrel.plan.entries import Defaults, VersionEntry, cross_entry_problems, duplicate_problems
from fleetrel.plan.models import ReleasePlan
from fleetrel.plan.selectors import ENTRY_TAGS, SELECT_ENTRY_TAG, SelectorEntry
from fleetrel.plan.rules import VERSION_CHOICE, as_wave, did_you_mean, plural, show
from fleetrel.plan.targets import (
    FORM_ERROR,
    TARGET_LIST_TAG,
    TARGET_MATRIX_TAG,
    UNION_TAGS,
    TargetMatrix,
    both_forms_problems,
    Targets,
    TargetSpec,
    entry_target_problems,
    expand_targets,
    target_problems,
)

_TARGETS = TypeAdapter(Targets)
_TAGS = UNION_TAGS | ENTRY_TAGS  # the branches of unions pydantic names in a location


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


def validate(path: os.PathLike[str], data: dict[Any, Any], root: yaml.Node | None) -> ReleasePlan:
    """The plan `data` read from `path`, or PlanError with every problem, in file order."""
    try:
        return ReleasePlan.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    problems: list[tuple[tuple, str]] = []
    across_entries_checked = False
    for error in errors:
        if error["type"] == "plan_rules":  # the model's validator ran: every field is valid
            problems += error["ctx"]["problems"]
            across_entries_checked = True
        else:
            problems.append(_problem_from_error(error))
    if not across_entries_checked:
        problems += _salvaged_cross_entry_problems(data)
    raw_entries = data.get("versions")
    located = [(_line_of(root, loc), where(loc, raw_entries, data.get("targets")), message) for loc, message in problems]
    located.sort(key=lambda item: item[0] or 0)  # stable: file order for YAML, as found otherwise
    lines = [f"{path}{f':{line}' if line else ''}: {place}: {message}" for line, place, message in located]
    raise PlanError(path, list(dict.fromkeys(lines)))  # a nested error can surface twice


def _salvaged_cross_entry_problems(data: dict[Any, Any]) -> list[tuple[tuple, str]]:
    """Cross-entry rules over the parts that are valid on their own, so that a type
    error in one entry does not hide a duplicate elsewhere."""
    try:
        defaults: Defaults | None = Defaults.model_validate(data.get("defaults") or {})
    except ValidationError:
        defaults = None
    # The targets, if valid on their own: an entry's unknown target is then still found.
    targets: Any = None
    target_names: list[str] | None = None
    targets_known = data.get("targets") is None
    problems: list[tuple[tuple, str]] = []
    if not targets_known:
        try:
            targets = _TARGETS.validate_python(data["targets"])
        except ValidationError:
            problems += both_forms_problems("target" in data, True)
        else:
            targets_known = True
            target_names = [spec.name for spec in expand_targets(targets)]
            problems += target_problems(targets, "target" in data)
    raw_entries = data.get("versions")
    if not isinstance(raw_entries, list):
        return problems
    valid: list[tuple[int, VersionEntry | SelectorEntry]] = []
    all_valid = True
    for index, raw in enumerate(raw_entries):
        if isinstance(raw, dict) and "select" in raw:
            try:
                valid.append((index, SelectorEntry.model_validate(raw)))
            except ValidationError:
                all_valid = False
            continue
        try:
            valid.append((index, VersionEntry.model_validate(raw)))
        except ValidationError as exc:
            all_valid = False
            kinds = {error["type"] for error in exc.errors()}
            # The "one of version/versions" check runs after the fields; say it anyway.
            if isinstance(raw, dict) and "version_choice" not in kinds and (("version" in raw) == ("versions" in raw)):
                problems.append((("versions", index), VERSION_CHOICE))
    # Waves are checked against the step count only when every entry (hence the count) is known.
    if targets_known:
        entry_problems = entry_target_problems(target_names, valid)
        problems += entry_problems
        all_valid = all_valid and not entry_problems
    waves: list[int | str] | None = None
    selects = any(isinstance(entry, SelectorEntry) for _, entry in valid)
    if all_valid and targets_known and not selects and isinstance(data.get("waves"), list):
        try:
            waves = [as_wave(wave) for wave in data["waves"]]
        except PydanticCustomError:
            waves = None
    return problems + duplicate_problems(raw_entries, target_names) + cross_entry_problems(defaults, valid, waves, target_names)


# --- where a problem is ---------------------------------------------------------------


def _entry_label(index: int, entry: Any) -> str:
    """`versions[3] (thermostat-fw/4.2.0)`, from raw data or a VersionEntry."""
    if isinstance(entry, (VersionEntry, SelectorEntry)):
        entry = entry.model_dump(by_alias=True)
    if not isinstance(entry, dict):
        return f"versions[{index}]"
    if "select" in entry:
        package = entry["select"].get("package") if isinstance(entry["select"], dict) else None
        return f"versions[{index}] (select {package})" if isinstance(package, str) and len(package) <= 60 else f"versions[{index}] (select)"

    def text(value: Any) -> str:
        return value if isinstance(value, str) and value.isprintable() and len(value) <= 60 else show(value)

    package = text(entry["package"]) if "package" in entry else "?"
    version, versions = entry.get("version"), entry.get("versions")
    if version is not None:
        return f"versions[{index}] ({package}/{text(version)})"
    if isinstance(versions, list) and versions:
        return f"versions[{index}] ({package}/{text(versions[0])}{' …' if len(versions) > 1 else ''}, {plural(len(versions), 'version')})"
    return f"versions[{index}] ({package})"


def _target_label(index: int, target: Any) -> str:
    """`targets[2] (prod-eu-west-1)`, from raw data or a TargetSpec."""
    name = target.name if isinstance(target, TargetSpec) else target.get("name") if isinstance(target, dict) else None
    if isinstance(name, str) and name.isprintable() and len(name) <= 64:
        return f"targets[{index}] ({name})"
    return f"targets[{index}]"


def where(loc: tuple, raw_entries: Any, raw_targets: Any = None) -> str:
    """Render a pydantic location, naming the entry by index and package/version, and a
    target by index and name."""
    parts: list[str] = []
    rest = [item for item in loc if item not in _TAGS]
    if len(rest) >= 2 and rest[0] == "versions" and isinstance(rest[1], int):
        index = rest[1]
        entry = raw_entries[index] if isinstance(raw_entries, list) and index < len(raw_entries) else None
        parts.append(_entry_label(index, entry))
        rest = rest[2:]
    elif len(rest) >= 2 and rest[0] == "targets" and isinstance(rest[1], int) and isinstance(raw_targets, list):
        index = rest[1]
        parts.append(_target_label(index, raw_targets[index] if index < len(raw_targets) else None))
        rest = rest[2:]
    path = ""
    for item in rest:
        if item == "[key]":
            continue
        path += f"[{item}]" if isinstance(item, int) else (f".{item}" if path else str(item))
    if path:
        parts.append(path)
    return ": ".join(parts) if parts else "(top level)"


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


# --- pydantic's errors in plain words -------------------------------------------------


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the last key of `loc` (for 'did you mean')."""
    model: Any = ReleasePlan
    for item in loc:
        if isinstance(item, int):
            continue
        if item in (TARGET_LIST_TAG, TARGET_MATRIX_TAG):  # the branch of `targets` the error is in
            model = TargetSpec if item == TARGET_LIST_TAG else TargetMatrix
            continue
        if item in ENTRY_TAGS:  # the branch of a `versions:` entry
            model = SelectorEntry if item == SELECT_ENTRY_TAG else VersionEntry
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
    "name": "name the target, e.g. name: prod-eu-west-1",
    "region": "give the target's AWS region, e.g. region: us-east-1",
    "accounts": "list the account IDs, e.g. accounts: [\"111111111111\"]",
    "regions": "list the regions, e.g. regions: [us-east-1, eu-west-1]",
}


def _problem_from_error(error: dict[str, Any]) -> tuple[tuple, str]:
    """One pydantic error as (location, message in plain words)."""
    raw_loc, kind = tuple(error["loc"]), error["type"]
    loc = tuple(item for item in raw_loc if item not in _TAGS)
    if kind in ("plan_rule", "version_choice"):
        return loc, error["ctx"]["problem"]
    if kind == FORM_ERROR:
        return loc, f"{error['msg']}, got {show(error['input'])}"
    if kind == "extra_forbidden":
        key, model = loc[-1], _model_at(raw_loc[:-1])
        if model is Defaults and key in VersionEntry.model_fields:
            return loc, f"unknown key {show(key)}: {key} belongs to each entry, not to defaults"
        allowed = sorted(field.alias or name for name, field in model.model_fields.items()) if model else []
        return loc, f"unknown key {show(key)}{did_you_mean(key, allowed)}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        hint = _MISSING_HINTS.get(loc[-1] if loc else "", "")
        return loc, f"required key is missing{': ' + hint if hint else ''}"
    if kind == "invalid_key":
        return loc[:-1], f"key {show(loc[-1])} must be text"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"must be a mapping of keys to values, got {show(error['input'])}"
    if kind == "too_short":
        return loc, "is empty: list at least one item"
    message = error["msg"].replace("Input should", "should")
    return loc, f"{message} (got {show(error['input'])})"
