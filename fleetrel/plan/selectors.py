"""`select:` entries: versions chosen by rule instead of listed, and the pure matching.

    versions:
      - select: {package: "thermostat-*", status: PUBLISHED, below: "4.0", keep_newest: 2}
        action: DEPRECATE

    facts = [VersionFacts("4.9", "PUBLISHED"), VersionFacts("4.10", "PUBLISHED"), ...]
    found = match_package(entry.select, "thermostat-fw", facts, default_version="4.10")
    found.matched, found.compared        # ['3.0', '3.1'], 'release numbers'

A selector is expanded against the catalog (`fleetrel.expansion`, the I/O) at `fleetrel
plan` and at a run's start; the result is a `Selection`, frozen in the run's journal so a
resume sends exactly what the run started with. Everything here is pure.

Choices made for the user:

- One order of version names, per version (`version_key`; the preview says which kinds
  of name a package had). A *release number* is `[v]N(.N)*`, optionally followed by a
  suffix (`-rc1`, `rc1`, `.smoke`, `_beta.2`): its numbers compare as numbers and
  trailing zeros do not count (4.10 > 4.9; 4.0, 4.0.0 and v4.0 are one release). A
  suffix makes it a *pre-release* of that release, below it, as SemVer 2.0.0 says of
  anything after `-`: 4.3.0-smoke < 4.3.0, and 1.0.0-hotfix1 < 1.0.0 too (a team that
  means "after 1.0.0" numbers it 1.0.1 or 1.0.0.1, which needs no list of words).
  Pre-releases of one release compare as SemVer's dot-separated identifiers (numeric
  ones as numbers and below words, fewer before more: rc < rc.1 < rc.2), except that
  digit runs inside a word compare as numbers too (rc9 < rc10; SemVer's ASCII order
  would put rc10 first).
- Any other name (build-10, nightly) compares by natural sort (digit runs as numbers:
  build-9 < build-10), and comes before every release number in the same package: a
  name that states no release is never the newest, so `keep_newest` keeps numbered
  releases. A bound matches only names of its own kind: `below: "4.0"` never matches
  nightly (a DEPRECATE by release range must not reach a name that states no release),
  and `below: "build-9"` never matches 1.0.
- A bound compares by the same key: names the key holds equal (4.0 and 4.0.0, v2.0.0
  and 2.0.0) are the same version to `below`/`above` (strict) and `from`/`to`
  (inclusive). Only sorting breaks such a tie, by the name's text, so it is repeatable.
- `keep_newest` is applied last, per package: of what the other filters matched, the
  newest N by that order are left alone.
- `below`/`above` are strict, `from`/`to` inclusive. `created_before` is strict,
  `created_after` inclusive; a date without a time is midnight UTC.

Why our own ~30 lines and not a library: `packaging` (PEP 440) refuses 4.3.0-smoke and
1.0.0-hotfix1 outright and reads 1.0.0-1 and 1.0.0-post1 as post-releases, above 1.0.0,
the opposite of SemVer; `semver` (python-semver 3) refuses v2.0.0 and the four-number
4.3.0.1234 that firmware uses, and orders rc10 before rc9. Both would still need a
rule for the names they refuse; one rule for every name is easier to state and check.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, WithJsonSchema, model_validator

from fleetrel.plan.rules import (
    Action,
    Attributes,
    Description,
    PlanModel,
    Recipe,
    TargetName,
    VersionName,
    as_list,
    plan_rule,
    show,
)
from fleetrel.service import MAX_PACKAGE_NAME, STATUSES

# How a package's versions (and a selector's bounds) were compared, for the preview.
RELEASE_NUMBERS, NATURAL_SORT = "release numbers", "natural sort"
MIXED = "release numbers, other names before them by natural sort"
# pydantic names the branch of `versions:` an error is in; diagnostics drop these.
LIST_ENTRY_TAG, SELECT_ENTRY_TAG = "versions:list", "versions:select"
ENTRY_TAGS = frozenset({LIST_ENTRY_TAG, SELECT_ENTRY_TAG})

_PATTERN_RE = re.compile(r"[a-zA-Z0-9_.\-*?\[\]!]+")
_GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    return any(char in _GLOB_CHARS for char in pattern)


def _package_pattern(value: Any) -> str:
    if not isinstance(value, str):
        raise plan_rule(f"must be a package name or a glob like \"thermostat-*\" (quoted), got {show(value)}")
    if not (1 <= len(value) <= MAX_PACKAGE_NAME and _PATTERN_RE.fullmatch(value)):
        raise plan_rule(f"{show(value)} is not a package name or glob: 1-{MAX_PACKAGE_NAME} of "
                        "[a-zA-Z0-9-_.] and the glob characters * ? [ ] !")
    return value


def _status(value: Any) -> str:
    if isinstance(value, str) and value.strip().upper() in STATUSES:
        return value.strip().upper()
    raise plan_rule(f"{show(value)} is not a status: use {', '.join(STATUSES)}")


def _moment(value: Any) -> datetime:
    """A date or a date and time (ISO 8601), as an aware datetime; no zone means UTC.
    YAML has already made an unquoted 2026-01-01 a date: that is what was meant here."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value or " " in value.strip() else date.fromisoformat(value)
        except ValueError:
            raise plan_rule(f"{show(value)} is not a date: write 2026-01-01 or 2026-01-01T12:00:00Z") from None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=timezone.utc)
    raise plan_rule(f"must be a date like 2026-01-01, got {show(value)}")


PackagePattern = Annotated[str, PlainValidator(_package_pattern), WithJsonSchema({"type": "string", "minLength": 1})]
Status = Annotated[str, PlainValidator(_status), WithJsonSchema({"enum": list(STATUSES)})]
Moment = Annotated[datetime, BeforeValidator(_moment), WithJsonSchema({"type": "string", "format": "date-time"})]


class Devices(PlanModel):
    """How many things may report a version (fleet indexing's `$package` shadow): both bounds inclusive."""

    max: Annotated[int, Field(ge=0, strict=True, description="at most this many things report it")] | None = None
    min: Annotated[int, Field(ge=0, strict=True, description="at least this many things report it")] | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> Devices:
        if self.max is None and self.min is None:
            raise plan_rule("give max, min or both: devices: {max: 0} selects versions no thing runs")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise plan_rule(f"min {self.min} is above max {self.max}: no version could match")
        return self

    def admits(self, count: int | None) -> bool:
        """Whether `count` things is within the bounds; an unknown count never is."""
        if count is None:
            return False
        return (self.max is None or count <= self.max) and (self.min is None or count >= self.min)

    def describe(self) -> str:
        if self.max is not None and self.min is not None:
            return f"on {self.min}-{self.max} devices"
        return f"on at most {self.max} devices" if self.max is not None else f"on at least {self.min} devices"


class Select(PlanModel):
    """Which versions a `select:` entry chooses; every filter given must hold."""

    package: PackagePattern = Field(description="a package name or a glob (thermostat-*)")
    status: Status | None = None
    below: VersionName | None = Field(default=None, description="versions before this one")
    above: VersionName | None = Field(default=None, description="versions after this one")
    from_: VersionName | None = Field(default=None, alias="from", description="this version and later")
    to: VersionName | None = Field(default=None, description="this version and earlier")
    except_default: Annotated[bool, Field(strict=True)] = False
    keep_newest: Annotated[int, Field(ge=1, strict=True, description="applied last: leave the newest N of the matches alone")] | None = None
    attributes: Attributes | None = Field(default=None, description="only versions whose attributes have these values")
    created_before: Moment | None = None
    created_after: Moment | None = None
    devices: Devices | None = Field(default=None, description="only versions this many things report "
                                    "(fleet indexing's $package shadow; the counts are frozen with the selection)")

    def bounds(self) -> list[str]:
        return [b for b in (self.below, self.above, self.from_, self.to) if b is not None]

    def needs_details(self) -> bool:
        """Whether a GetPackageVersion per candidate is needed (attributes are not listed)."""
        return self.attributes is not None

    def describe(self) -> str:
        """One line for people: `thermostat-* PUBLISHED below 4.0, keep newest 2`."""
        parts = [self.package] + ([self.status] if self.status else [])
        parts += [f"{name} {value}" for name, value in (("below", self.below), ("above", self.above),
                                                        ("from", self.from_), ("to", self.to)) if value]
        if self.attributes:
            parts.append("attributes " + ",".join(f"{k}={v}" for k, v in sorted(self.attributes.items())))
        for name, value in (("created before", self.created_before), ("created from", self.created_after)):
            if value is not None:
                parts.append(f"{name} {value.isoformat()}")
        if self.devices is not None:
            parts.append(self.devices.describe())
        if self.except_default:
            parts.append("except default")
        if self.keep_newest:
            parts.append(f"keep newest {self.keep_newest}")
        return " ".join(parts)


class SelectorEntry(PlanModel):
    """An entry of `versions:` that selects: the versions `select` matches, each one step
    with the fields below (merged over `defaults:` as a listed entry's are)."""

    select: Select
    action: Action | None = None
    description: Description | None = None
    attributes: Attributes | None = None
    recipe: Recipe | None = None
    targets: Annotated[list[TargetName], BeforeValidator(as_list), Field(min_length=1)] | None = Field(
        default=None, description="names of the plan's targets this entry applies to; default: all")

    @property
    def artifact(self) -> None:
        return None  # an artifact belongs to one version: a selector cannot give one

    def version_count(self) -> int:
        return 0  # unknown until expanded

    def step_count(self) -> int:
        return 0  # unknown until expanded (and a selector changes no default)


# --- matching (pure) --------------------------------------------------------------------


@dataclass(frozen=True)
class VersionFacts:
    """What the catalog says of one version: listed (name, status, creation date), and
    its attributes when a filter needed them (GetPackageVersion)."""

    name: str
    status: str
    created: datetime | None = None
    attributes: dict[str, str] | None = None
    devices: int | None = None  # things that report it (fleet indexing), when a filter needed it; None: unknown


# A release number's numbers, with an optional leading v; what follows is its suffix.
_RELEASE_NUMBER = re.compile(r"[vV]?([0-9]+(?:\.[0-9]+)*)")
_DIGIT_RUNS = re.compile(r"[0-9]+|[^0-9]+")


def natural_key(name: str) -> tuple:
    """Digit runs compare as numbers, the rest as text: fw-9 < fw-10."""
    return tuple((0, int(run), "") if "0" <= run[0] <= "9" else (1, 0, run) for run in _DIGIT_RUNS.findall(name))


def _identifier_key(identifier: str) -> tuple:
    # SemVer 11.4: numeric identifiers as numbers, below alphanumeric ones; those by
    # natural sort rather than SemVer's ASCII, so that rc10 follows rc9.
    if identifier.isascii() and identifier.isdigit():
        return 0, int(identifier), ()
    return 1, 0, natural_key(identifier)


def _release_key(name: str) -> tuple | None:
    """(numbers without trailing zeros, (1,) for a release or (0, identifiers) for a
    pre-release of it), or None when `name` is no release number."""
    found = _RELEASE_NUMBER.match(name)
    if found is None:
        return None
    numbers = [int(part) for part in found.group(1).split(".")]
    while numbers and numbers[-1] == 0:
        numbers.pop()  # 4.0 == 4.0.0 == 4
    suffix = name[found.end():]
    if not suffix:
        return tuple(numbers), (1,)
    if suffix[0] in "-_.":
        suffix = suffix[1:]  # the separator: 1.0.0-rc1, 1.0.0.rc1, 1.0.0_rc1 and 1.0.0rc1 are one
    identifiers = suffix.split(".")
    if not all(identifiers):
        return None  # 1.0., 1.0.0-, 1.0.0-rc..1: not SemVer's shape, so natural sort
    return tuple(numbers), (0, tuple(_identifier_key(identifier) for identifier in identifiers))


def version_key(name: str) -> tuple:
    """Where `name` stands in the one order of version names (the module's docstring has
    the rule): names that are no release number first, by natural sort, then release
    numbers. Equal keys are one version written two ways (4.0, 4.0.0, v4.0); bounds
    compare keys alone, sorting breaks the tie by the name (`sort_key`).

        sorted(["2.0.0", "build-7", "2.0.0-rc1", "1.10", "1.9"], key=sort_key)
        # ['build-7', '1.9', '1.10', '2.0.0-rc1', '2.0.0']
    """
    release = _release_key(name)
    return (0, natural_key(name)) if release is None else (1, *release)


def sort_key(name: str) -> tuple:
    """`version_key`, then the name's text: a total order of distinct names."""
    return version_key(name), name


def is_release_number(name: str) -> bool:
    return _release_key(name) is not None


def comparison(names: list[str]) -> str:
    """How these names compare with each other, in the preview's words."""
    releases = [is_release_number(name) for name in names]
    if all(releases):
        return RELEASE_NUMBERS
    return MIXED if any(releases) else NATURAL_SORT


@dataclass
class PackageMatch:
    """What one selector matched in one package: `matched` is what the steps are made of;
    `kept` what keep_newest left alone; `compared` how versions were ordered."""

    package: str
    compared: str
    matched: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    default_version: str | None = None
    # {version: things that report it} for every version listed, when a `devices:` filter
    # read them: the evidence of what was decided, frozen with the selection (None: unknown)
    devices: dict[str, int | None] | None = None
    outside_devices: list[str] = field(default_factory=list)  # matched every filter but `devices:`

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"package": self.package, "compared": self.compared, "matched": list(self.matched)}
        if self.kept:
            out["kept"] = list(self.kept)
        if self.default_version is not None:
            out["default_version"] = self.default_version
        if self.devices is not None:
            out["devices"] = dict(self.devices)
        if self.outside_devices:
            out["outside_devices"] = list(self.outside_devices)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PackageMatch:
        return cls(data["package"], data["compared"], list(data["matched"]), list(data.get("kept", [])),
                   data.get("default_version"), data.get("devices"), list(data.get("outside_devices", [])))


def match_package(select: Select, package: str, versions: list[VersionFacts],
                  default_version: str | None = None) -> PackageMatch:
    """The versions of `package` that `select` chooses, oldest first. `versions` are all
    the package's listed versions (of `select.status`, when the listing filtered by it)."""
    compared = comparison([v.name for v in versions] + select.bounds())
    ordered = sorted(versions, key=lambda v: sort_key(v.name))
    bound = {name: version_key(value) for name, value in (("below", select.below), ("above", select.above),
                                                  ("from", select.from_), ("to", select.to)) if value is not None}

    def chosen(version: VersionFacts, devices: bool = True) -> bool:
        if select.status is not None and version.status != select.status:
            return False
        at = version_key(version.name)  # no tie-break on the text: 4.0.0 is not above 4.0
        if any(at[0] != limit[0] for limit in bound.values()):  # a bound matches names of its own kind only
            return False
        if "below" in bound and not at < bound["below"]:
            return False
        if "above" in bound and not at > bound["above"]:
            return False
        if "from" in bound and not at >= bound["from"]:
            return False
        if "to" in bound and not at <= bound["to"]:
            return False
        if select.except_default and version.name == default_version:
            return False
        if select.created_before is not None and (version.created is None or not version.created < select.created_before):
            return False
        if select.created_after is not None and (version.created is None or not version.created >= select.created_after):
            return False
        if select.attributes is not None:
            have = version.attributes or {}
            if any(have.get(k) != v for k, v in select.attributes.items()):
                return False
        if devices and select.devices is not None and not select.devices.admits(version.devices):
            return False
        return True

    matched = [v.name for v in ordered if chosen(v)]
    # what the devices: filter alone left out, with its count: the preview names them
    outside = ({v.name: v.devices for v in ordered if chosen(v, devices=False) and v.name not in matched}
               if select.devices is not None else {})
    kept: list[str] = []
    if select.keep_newest:
        matched, kept = matched[:-select.keep_newest], matched[-select.keep_newest:]
    devices = {v.name: v.devices for v in ordered} if select.devices is not None else None
    return PackageMatch(package, compared, matched, kept, default_version if select.except_default else None, devices,
                        sorted(outside, key=sort_key))


def packages_matching(pattern: str, names: list[str]) -> list[str]:
    """The package names a selector's `package` names, in name order (case-sensitive, as
    the catalog's names are)."""
    return sorted(name for name in names if fnmatch.fnmatchcase(name, pattern))


# --- the frozen result ----------------------------------------------------------------


@dataclass
class SelectorMatch:
    """What the selector of entry `entry` matched for one target (None: the plan has one)."""

    entry: int
    target: str | None
    packages: list[PackageMatch] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(p.matched) for p in self.packages)

    def to_json(self) -> dict[str, Any]:
        return {"entry": self.entry, "target": self.target, "packages": [p.to_json() for p in self.packages]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SelectorMatch:
        return cls(data["entry"], data.get("target"), [PackageMatch.from_json(p) for p in data["packages"]])


@dataclass
class Selection:
    """Every selector's matches, per target: what a run's steps are made of. Stored in
    the run's journal header (`selection`), so a resume sends what the run started with."""

    matches: list[SelectorMatch] = field(default_factory=list)

    def versions(self, entry: int, target: str | None) -> list[tuple[str, str]]:
        """(package, version) of entry `entry` for `target`, package by package, oldest first."""
        for found in self.matches:
            if found.entry == entry and found.target == target:
                return [(p.package, v) for p in found.packages for v in p.matched]
        return []

    def to_json(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in self.matches]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> Selection:
        return cls([SelectorMatch.from_json(m) for m in data])

    def differences(self, now: Selection) -> list[str]:
        """What `now` (the catalog listed again) would select that this does not, and back,
        for the (entry, target) pairs `now` covers (a resume of some targets lists only those)."""
        out: list[str] = []
        listed_again = {(m.entry, m.target) for m in now.matches}
        for before in self.matches:
            if (before.entry, before.target) not in listed_again:
                continue
            where = f"{before.target}: " if before.target else ""
            after = set(now.versions(before.entry, before.target))
            had = set(self.versions(before.entry, before.target))
            out += [f"{where}versions[{before.entry}] now also matches {p}/{v}" for p, v in sorted(after - had)]
            out += [f"{where}versions[{before.entry}] no longer matches {p}/{v}" for p, v in sorted(had - after)]
        return out
