"""Expanding a plan's `select:` entries against the catalog, and freezing what they matched.

    plan = load("plans/deprecate-below-4.yaml")
    selection = await expand(plan, {None: client}, rate=10, burst=1)   # {target name: client} with targets:
    plan = plan.expanded(selection)          # its steps now include every matched version
    problems = duplicate_problems(plan)      # a version a selector and a listed entry both name

The reads are ListPackages (only for a glob), ListPackageVersions (paged, filtered by
status on the service's side), GetPackage (only for `except_default`) and
GetPackageVersion (only for an `attributes` filter: the listing has no attributes; its
creation date is in the listing). Each operation goes through a read bucket of its own per
target, at the plan's rate: reads have their own quotas in AWS, and each target its own
account.

A run expands at its start and writes the `Selection` into its journal's header; a resume
takes it from there (`frozen_selection`) and sends exactly those steps, even if the
catalog changed since. `fleetrel plan` expands afresh every time.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn

import anyio

from fleetrel.fleet import OPERATION as FLEET_OPERATION
from fleetrel.fleet import Distribution, FleetCounts, FleetUnavailable, distribution, fleet_buckets
from fleetrel.fleetcheck import devices_filtered
from fleetrel.plan import PlanError, ReleasePlan
from fleetrel.plan.rules import plural
from fleetrel.plan.selectors import (
    PackageMatch,
    Select,
    Selection,
    SelectorEntry,
    SelectorMatch,
    VersionFacts,
    is_glob,
    match_package,
    packages_matching,
)
from fleetrel.reads import ReadBuckets, ReadError, bounded, first_error, pages, read


class ExpansionError(Exception):
    """A selector could not be expanded: the catalog could not be read (not: matched nothing)."""


async def expand(plan: ReleasePlan, clients: Mapping[str | None, Any], *, rate: float = 10.0, burst: int = 1,
                 concurrency: int = 16, fleet_check: bool = True, counts: FleetCounts | None = None) -> Selection:
    """What every selector of `plan` matches, per target in `clients` (the key None for a
    plan without `targets:`). Targets are read at once, each through its own bucket.

    A `devices:` filter reads the package's fleet distribution (`fleetrel.fleet`, one
    aggregation per target and package); FleetUnavailable when it cannot. With
    `fleet_check` False nothing is read from the fleet, and a `devices:` filter matches no
    version (an unknown count is never within bounds). The distributions read are left in
    `counts` ({target: {package: Distribution}}), so that a preview or the guard after it
    reads each (target, package) once."""
    counts = {} if counts is None else counts
    matches: dict[tuple[int, str | None], SelectorMatch] = {}

    async def expand_target(target: str | None, client: Any) -> None:
        reader = _Reader(client, ReadBuckets(rate=rate, burst=burst), target, concurrency, fleet_check,
                         counts.setdefault(target, {}))
        for index, entry in plan.selectors():
            if target is not None and entry.targets is not None and target not in entry.targets:
                continue
            packages = await reader.packages(entry.select.package)
            found: list[PackageMatch] = []

            async def one(package: str) -> None:
                result = await reader.match(entry.select, package)
                if result is not None:
                    found.append(result)

            await bounded(packages, concurrency, one)
            matches[(index, target)] = SelectorMatch(index, target, sorted(found, key=lambda p: p.package))

    with first_error():
        async with anyio.create_task_group() as tg:
            for target, client in clients.items():
                tg.start_soon(expand_target, target, client)
    # target-major, entries in plan order: the order the steps are in
    order = {name: position for position, name in enumerate([spec.name for spec in plan.target_specs()] or [None])}
    return Selection([matches[key] for key in sorted(matches, key=lambda key: (order[key[1]], key[0]))])


class _Reader:
    """One target's catalog reads, each through the target's bucket for its operation, retried as the
    preview's reads are."""

    def __init__(self, client: Any, buckets: ReadBuckets, target: str | None, concurrency: int,
                 fleet_check: bool = True, distributions: dict[str, Distribution] | None = None) -> None:
        self.client, self.buckets, self.target, self.concurrency = client, buckets, target, concurrency
        self.fleet_check = fleet_check
        self.fleet_buckets = fleet_buckets()
        self._package_names: list[str] | None = None
        # one aggregation per package, whatever the selectors (shared with the caller's preview or guard)
        self._distributions = {} if distributions is None else distributions

    async def _call(self, call: str, **request: Any) -> dict[str, Any] | None:
        """The answer, or None when what was asked for does not exist."""
        answer = await read(self.client, self.buckets[call], call, **request)
        if isinstance(answer, ReadError):
            return None if answer.missing else self._refused(call, answer, request)
        return answer

    def _refused(self, call: str, answer: ReadError, request: dict[str, Any]) -> NoReturn:
        where = f"target {self.target}: " if self.target else ""
        raise ExpansionError(f"{where}cannot expand select: entries: {call} "
                             f"{request.get('packageName', '')} answered {answer.code}: {answer.message}")

    async def _pages(self, call: str, items: str, **request: Any) -> list[dict[str, Any]] | None:
        """Every item of a listing; None when what was listed does not exist."""
        answer = await pages(self.client, self.buckets[call], call, items, **request)
        if isinstance(answer, ReadError):
            return None if answer.missing else self._refused(call, answer, request)
        return answer[0]

    async def packages(self, pattern: str) -> list[str]:
        """The package names `pattern` names: itself, or for a glob those ListPackages has."""
        if not is_glob(pattern):
            return [pattern]
        if self._package_names is None:  # listed once per target, whatever the number of globs
            listed = await self._pages("list_packages", "packageSummaries")
            self._package_names = [p["packageName"] for p in listed or []]
        return packages_matching(pattern, self._package_names)

    async def match(self, select: Select, package: str) -> PackageMatch | None:
        """What `select` matches in `package`; None when the package does not exist."""
        listed = await self._pages("list_package_versions", "packageVersionSummaries", packageName=package,
                                   **({"status": select.status} if select.status else {}))
        if listed is None:
            return None
        versions = [VersionFacts(v["versionName"], v["status"], v.get("creationDate")) for v in listed]
        default = None
        if select.except_default:
            described = await self._call("get_package", packageName=package)
            default = (described or {}).get("defaultVersionName")
        if select.needs_details():
            # Details only for the versions every other filter already chose.
            rough = match_package(select.model_copy(update={"attributes": None, "keep_newest": None}),
                                  package, versions, default)
            wanted = set(rough.matched)
            details: dict[str, dict[str, str]] = {}

            async def detail(name: str) -> None:
                got = await self._call("get_package_version", packageName=package, versionName=name)
                details[name] = dict((got or {}).get("attributes") or {})

            await bounded(sorted(wanted), self.concurrency, detail)
            versions = [VersionFacts(v.name, v.status, v.created, details.get(v.name)) for v in versions]
        if select.devices is not None and self.fleet_check:
            counts = await self.distribution(package)
            versions = [replace(v, devices=counts.count(v.name)) for v in versions]
        return match_package(select, package, versions, default)

    async def distribution(self, package: str) -> Distribution:
        if package not in self._distributions:
            try:
                self._distributions[package] = await distribution(
                    self.client, self.fleet_buckets[FLEET_OPERATION], package, target=self.target)
            except FleetUnavailable as exc:
                raise exc.needed_for("a devices: filter needs them") from None
        return self._distributions[package]


async def expand_plan(plan: ReleasePlan, *, endpoint_url: str | None = None, region: str | None = None,
                      profile: str | None = None, targets: set[str] | None = None,
                      fleet_check: bool = True, counts: FleetCounts | None = None) -> ReleasePlan:
    """`plan` with its selectors expanded afresh (as `fleetrel plan` does), through clients
    built as the preview builds them (a plan with `targets:`: those in `targets`, or all)."""
    from fleetrel.credentials import plan_clients

    limits = plan.limits
    reads = {"rate": float(limits.rate), "burst": int(limits.burst), "concurrency": int(limits.concurrency),
             "fleet_check": fleet_check, "counts": counts}
    async with plan_clients(plan, endpoint_url=endpoint_url, region=region, profile=profile, targets=targets,
                            concurrency=reads["concurrency"]) as clients:
        return plan.expanded(await expand(plan, clients, **reads))


async def select_for_run(plan: ReleasePlan, clients: Mapping[str | None, Any], *, frozen: bool,
                         notice: Callable[[str], None] | None = None, fleet_check: bool = True,
                         counts: FleetCounts | None = None) -> ReleasePlan:
    """At a run's start: `plan` expanded through `clients` (PlanError when the result
    names a version twice or its waves do not fit), or, when its selection was `frozen` in
    the journal, the plan as it is, the catalog listed again only to tell `notice` what
    would be selected now. `notice` also hears of selectors that matched nothing."""
    tell = notice or (lambda line: None)
    limits = plan.limits
    reads = {"rate": float(limits.rate), "burst": int(limits.burst), "concurrency": int(limits.concurrency),
             "fleet_check": fleet_check, "counts": counts}
    if plan.needs_expansion:
        expanded = plan.expanded(await expand(plan, clients, **reads))
        problems = selection_problems(expanded)
        if problems:
            where = plan.source or plan.plan
            raise PlanError(where, [f"{where}: {problem}" for problem in problems])
        for line in empty_warnings(expanded):
            tell(line)
        if not fleet_check and devices_filtered(plan):
            tell("--no-fleet-check: a devices: filter matched no version (the fleet's counts were not read)")
        return expanded
    if not frozen or plan.selection is None:
        return plan
    try:
        now = await expand(plan, clients, **reads)
    except (ExpansionError, FleetUnavailable) as exc:
        tell(f"the selection is frozen in the journal; listing the catalog again failed ({exc})")
        return plan
    changes = plan.selection.differences(now)
    if changes:
        tell(f"the catalog changed since this run started; the run sends the selection frozen in its journal "
             f"({plural(len(plan.steps()), 'step')}), not what the selectors match now:")
        for line in changes[:20]:
            tell(f"  {line}")
        if len(changes) > 20:
            tell(f"  ... and {len(changes) - 20} more")
    return plan


# --- what the user is told -------------------------------------------------------------


def duplicate_problems(plan: ReleasePlan) -> list[str]:
    """Versions two entries name for one target, once a selector's matches are known: a
    listed entry's, or another selector's. Each names both entries."""
    assert plan.selection is not None
    problems: list[str] = []
    for target in [spec.name for spec in plan.target_specs()] or [None]:
        owner: dict[tuple[str, str], int] = {}
        for index, entry in enumerate(plan.versions):
            if target is not None and entry.targets is not None and target not in entry.targets:
                continue
            if isinstance(entry, SelectorEntry):
                names = plan.selection.versions(index, target)
            else:
                names = [(entry.package, version) for version in entry.version_names()]
            for key in names:
                first = owner.setdefault(key, index)
                if first != index:
                    on = f" for target {target!r}" if target else ""
                    what = _entry_name(plan, index)
                    problems.append(f"{what}: {key[0]}/{key[1]} is also named by {_entry_name(plan, first)}{on}: "
                                    "a version may appear once per plan, so narrow the selector or remove the entry")
    return problems


def selection_problems(plan: ReleasePlan) -> list[str]:
    """What is wrong with an expanded plan that could not be known before: duplicates,
    and waves that do not fit its step count."""
    from fleetrel.plan.rules import resolve_waves

    waves = resolve_waves(plan.waves, plan.step_count())[1] if plan.waves else []
    return duplicate_problems(plan) + [f"waves[{loc[1]}]: {message} once its selectors are expanded"
                                       for loc, message in waves]


def _entry_name(plan: ReleasePlan, index: int) -> str:
    entry = plan.versions[index]
    if isinstance(entry, SelectorEntry):
        return f"versions[{index}] (select {entry.select.package})"
    return f"versions[{index}] ({entry.package})"


def selection_report(plan: ReleasePlan) -> list[dict[str, Any]]:
    """Per selector and target: its definition, what it matched and how it compared versions."""
    assert plan.selection is not None
    entries = dict(plan.selectors())
    return [{"entry": found.entry, "target": found.target, "select": entries[found.entry].select.describe(),
             "matched": found.count, "packages": [p.to_json() for p in found.packages]}
            for found in plan.selection.matches]



def empty_warnings(plan: ReleasePlan) -> list[str]:
    """A selector that matched nothing is a warning, not an error."""
    assert plan.selection is not None
    entries = dict(plan.selectors())
    return [f"warning: versions[{found.entry}] (select {entries[found.entry].select.describe()})"
            + (f" matched nothing in target {found.target}" if found.target else " matched nothing")
            for found in plan.selection.matches if found.count == 0]


def selection_lines(plan: ReleasePlan) -> list[str]:
    """The report for people: one line per selector and target, one per package matched."""
    lines = []
    for item in selection_report(plan):
        where = f" in {item['target']}" if item["target"] else ""
        lines.append(f"versions[{item['entry']}] select {item['select']}{where}: {item['matched']} version(s)")
        for package in item["packages"]:
            shown = ", ".join(package["matched"][:10]) + (f", … {len(package['matched']) - 10} more"
                                                         if len(package["matched"]) > 10 else "")
            line = f"  {package['package']} (compared as {package['compared']}): {shown or 'none'}"
            if package.get("kept"):
                line += f"; kept newest: {', '.join(package['kept'])}"
            if package.get("default_version"):
                line += f"; default {package['default_version']} left alone"
            devices = package.get("devices")
            if devices is not None:  # what the devices: filter alone left out, with the counts it saw
                outside = [f"{name} ({'?' if devices.get(name) is None else devices.get(name)})"
                           for name in package.get("outside_devices", [])]
                if outside:
                    line += f"; not selected, in use: {', '.join(outside[:10])}" + (
                        f", … {len(outside) - 10} more" if len(outside) > 10 else "")
            lines.append(line)
    return lines


# --- frozen in the journal -------------------------------------------------------------


def frozen_selection(journal: Path, plan: ReleasePlan) -> Selection | None:
    """The selection frozen in `journal`'s header when it holds a run of this very plan
    (same digest: same listed steps and selector definitions); None otherwise."""
    from fleetrel.replay import read_header

    header = read_header(journal)
    if header is None or header.get("plan_digest") != plan.digest or "selection" not in header:
        return None
    return Selection.from_json(header["selection"])
