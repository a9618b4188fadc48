"""A package's default version in a plan: `default: true` on a PUBLISH entry, and
`then_default: <version>` or `unset_default: true` on a DEPRECATE entry.

    - {package: fw, version: 4.2.0, action: PUBLISH, default: true}
    - {package: fw, version: 4.1.0, action: DEPRECATE, then_default: 4.0.0}

Each becomes a step of its own (`fw/4.2.0#default`): one UpdatePackage call
(`defaultVersionName`, or `unsetDefaultVersion`), sent after the entry's version step
has succeeded, with its own clientToken. What the service documents, and the choices
made here:

- AWS IoT developer guide, "Package version lifecycle": a PUBLISHED version can be named
  the default ("While in this state, you can choose to identify the package version as
  the default version ... through the UpdatePackage API operation"), and so can a
  DEPRECATED one ("You can also name a deprecated package version as the default
  version"); a DRAFT cannot. So deprecating the current default is allowed and leaves a
  deprecated default: the preview flags it, and the plan can say what the default becomes
  instead. The default step therefore goes after the deprecation (not before: nothing
  forces it first, and then a failed deprecation leaves the default alone).
- botocore model, UpdatePackage: "You cannot name a defaultVersion and set
  unsetDefaultVersion equal to true at the same time": hence `then_default` or
  `unset_default`, not both.
- One entry names one version (`version:`, not a list), and a package's default changes
  at most once per plan (per target): two different defaults would race.
"""
from __future__ import annotations

from typing import Any

SET_DEFAULT, UNSET_DEFAULT = "SET_DEFAULT", "UNSET_DEFAULT"
#: A default step's `Step.action`: the step sends UpdatePackage, not UpdatePackageVersion.
DEFAULT_ACTIONS = frozenset({SET_DEFAULT, UNSET_DEFAULT})
#: What a default step's key ends with (`fw/4.2.0#default`): `#` is in no package or
#: version name, so the key never meets a version step's.
DEFAULT_KEY_SUFFIX = "#default"
#: The entry fields that add a default step.
DEFAULT_FIELDS = ("default", "then_default", "unset_default")


def changes_default(entry: Any) -> bool:
    """Whether a (validated) entry adds a default step."""
    # getattr: a `select:` entry has none of these fields (it changes no default)
    return (bool(getattr(entry, "default", None)) or getattr(entry, "then_default", None) is not None
            or bool(getattr(entry, "unset_default", None)))


def default_step_fields(entry: Any, version: str) -> dict[str, Any]:
    """`Step` keyword arguments of the default step an entry adds after `version`'s step."""
    if entry.unset_default:
        return {"action": UNSET_DEFAULT, "default_version": None}
    return {"action": SET_DEFAULT, "default_version": entry.then_default or version}


def default_problems(entries: list[tuple[int, Any]], actions: dict[int, str | None],
                     target_names: list[str] | None) -> list[tuple[tuple, str]]:
    """The rules of the default fields across entries; `actions` is each entry's action
    with the plan's defaults merged in."""
    problems: list[tuple[tuple, str]] = []
    by_package: dict[str, list[tuple[int, Any, str]]] = {}
    for index, entry in entries:
        given = [name for name in DEFAULT_FIELDS if getattr(entry, name, None) not in (None, False)]
        if not given:
            continue
        action = actions.get(index)
        if entry.default and action != "PUBLISH":
            problems.append((("versions", index), "default: true goes on a PUBLISH entry (the version "
                             "becomes the package's default once published)"))
        for name in ("then_default", "unset_default"):
            if name in given and action != "DEPRECATE":
                problems.append((("versions", index), f"{name} goes on a DEPRECATE entry (what the package's "
                                 "default becomes when the deprecated version was the default)"))
        if entry.then_default is not None and entry.unset_default:
            problems.append((("versions", index), "then_default and unset_default cannot both be given (UpdatePackage "
                             "refuses a defaultVersionName with unsetDefaultVersion): choose one"))
        if entry.default and (entry.then_default is not None or entry.unset_default):
            problems.append((("versions", index), "default: true cannot go with then_default or unset_default"))
        if entry.versions is not None:
            problems.append((("versions", index, given[0]), f"needs one version: give `version:`, not a "
                             "list (a package has one default)"))
        if entry.then_default is not None and entry.then_default == entry.version:
            problems.append((("versions", index, "then_default"), f"names the version this entry "
                             f"deprecates ({entry.version}): name another version, or use unset_default: true"))
        by_package.setdefault(entry.package, []).append((index, entry, given[0]))
    for package, changing in by_package.items():
        for later, (index, entry, name) in enumerate(changing[1:], 1):
            for other, other_entry, _ in changing[:later]:
                if _targets_meet(entry, other_entry, target_names):
                    problems.append((("versions", index, name), f"package {package}'s default is already changed by "
                                     f"versions[{other}]: a package's default changes once per plan"))
                    break
    return problems


def _targets_meet(one: Any, other: Any, target_names: list[str] | None) -> bool:
    if target_names is None or one.targets is None or other.targets is None:
        return True
    return bool(set(one.targets) & set(other.targets))
