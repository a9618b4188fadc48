"""Reading a plan file (YAML, JSON or TOML) into data and, for YAML, the lines it came from.

    plan = load("plans/demo.yaml")       # raises PlanError, and only PlanError, listing every problem

Choices made here:

- YAML is read with PyYAML's C parser (libyaml) when it is installed: on a 50,000-step
  plan the pure-Python parser alone takes seconds. The C parser builds the same node
  tree with the same line marks, so problems found later still name their line. When it
  refuses a file, the file is read again with the pure-Python parser, whose error is
  the one reported. Where both accept a file they give the same data (a property test
  holds them to it); libyaml accepts a few files PyYAML refuses (a tab after a value,
  a comment straight after a block scalar's `|`), and those now load.
- A YAML mapping or JSON object that gives the same key twice is refused (PyYAML and
  json keep the last).
- A file name that is not UTF-8 is refused before anything else: it would be printed
  in every message and written into the run's journal, and neither can encode it.
"""
from __future__ import annotations

import json
import os
import re
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from fleetrel.plan.diagnostics import PlanError, validate
from fleetrel.plan.models import ReleasePlan
from fleetrel.plan.rules import lone_surrogate, show

PLAN_SUFFIXES = (".yaml", ".yml", ".json", ".toml")


def load(path: str | os.PathLike[str]) -> ReleasePlan:
    """Read and validate a plan (.yaml/.yml, .json or .toml).

        plan = load("plans/demo.yaml")

    Raises PlanError, and only PlanError, for anything wrong with the file, listing
    every problem at once.
    """
    path = Path(path)
    _refuse_a_name_that_is_not_utf8(path)
    text = _read_text(path)
    if path.suffix.lower() not in PLAN_SUFFIXES:
        raise PlanError(path, [f"{path}: unknown plan format {path.suffix or '(no extension)'!r}: name it .yaml, .yml, .json or .toml"])
    data, root = _parse(path, text)
    if data is None:
        raise PlanError(path, [f"{path}: the plan is empty: it needs at least 'plan:' and 'versions:'"])
    if not isinstance(data, dict):
        raise PlanError(path, [f"{path}: the top level must be a mapping with 'plan:', 'versions:' and so on, got {show(data)}"])
    plan = validate(path, data, root)
    plan._source = path
    return plan


def _refuse_a_name_that_is_not_utf8(path: Path) -> None:
    # Python decodes such a name with surrogate escapes (b'\xff' -> '\udcff'); show the
    # bytes as escapes instead, so the message itself can be printed.
    found = lone_surrogate(str(path))
    if found:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        byte = ord(str(path)[found[0]]) - 0xDC00
        byte_text = f"byte 0x{byte:02x}" if 0 <= byte <= 0xFF else f"character {found[1]}"
        raise PlanError(shown, [f"{shown}: the file name is not UTF-8 ({byte_text}): rename the plan file; "
                                "its name is printed in messages and written into the run's journal"])


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


class _RefuseDuplicateKeys:
    """Refuse a key given twice in one mapping: PyYAML would keep the last silently,
    and a second `version:` or `limits:` is always a mistake."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)  # type: ignore[attr-defined]
            try:
                first = seen.get(key)
            except TypeError:
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {show(key)} appears twice in one mapping (first at line {first.line + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)  # type: ignore[misc]


class _QuickScalars:
    """The bulk of a big plan is plain text scalars (names, versions, keys): resolve
    each distinct one once per file, and construct text without PyYAML's per-node
    bookkeeping. Both give what SafeLoader gives (a property test holds them to it)."""

    def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit == (False, False):
            # Only a scalar tagged with the non-specific "!" gets here. PyYAML resolves
            # every such scalar as if it were plain; libyaml reports the empty one (`key: !`)
            # as not implicit, which would make it '' instead of null.
            implicit = (True, False)
        if kind is not yaml.ScalarNode or not implicit[0]:
            return super().resolve(kind, value, implicit)  # type: ignore[misc]
        # Resolving runs up to three regular expressions in Python for every scalar that
        # starts with a digit (int, float, timestamp?). The answer depends on the text
        # alone: SafeLoader has no path-dependent resolvers.
        try:
            known = self._known_tags  # type: ignore[has-type]
        except AttributeError:
            known = self._known_tags = {}
        tag = known.get(value)
        if tag is None:
            tag = known[value] = super().resolve(kind, value, implicit)  # type: ignore[misc]
        return tag

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # SafeConstructor's str constructor returns node.value; a scalar cannot be recursive,
        # and an alias to it yields the same (immutable) string.
        if node.tag == "tag:yaml.org,2002:str" and type(node) is yaml.ScalarNode:
            return node.value
        return super().construct_object(node, deep)  # type: ignore[misc]


class _PlanYamlLoader(_RefuseDuplicateKeys, yaml.SafeLoader):
    """The pure-Python SafeLoader: its errors are the ones reported."""


# libyaml is optional in PyYAML (a wheel without it has no CSafeLoader): then every file
# takes the pure-Python path, with the same results, slower.
_FastPlanYamlLoader = (
    type("_FastPlanYamlLoader", (_QuickScalars, _RefuseDuplicateKeys, yaml.CSafeLoader), {})
    if hasattr(yaml, "CSafeLoader") else None
)


def _yaml_document(text: str) -> tuple[Any, yaml.Node | None]:
    """The document's data and its node tree (for line numbers)."""
    if _FastPlanYamlLoader is not None:
        try:
            return _compose_and_construct(_FastPlanYamlLoader(text))
        except Exception:  # noqa: BLE001 - any refusal: read again below for the exact error
            pass
    return _compose_and_construct(_PlanYamlLoader(text))


def _compose_and_construct(loader: Any) -> tuple[Any, yaml.Node | None]:
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def _parse(path: Path, text: str) -> tuple[Any, yaml.Node | None]:
    """The document's data and, for YAML, its node tree (for line numbers)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            return _yaml_document(text)
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
    # One pass to build, one to count only when a key repeats: linear in the object's
    # size (a count per key was quadratic: 23 s for 60,000 keys).
    mapping = dict(pairs)
    if len(mapping) < len(pairs):
        twice = sorted(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
        raise ValueError(f"key {twice[0]!r} appears twice in one object")
    return mapping
