"""The guard before a run sends: no DEPRECATE of a version more things run than the plan allows.

    check = await check_fleet(session_steps, clients, limit=0, allow_in_use=False)
    check.refused      # [InUse(target=None, package='fw', version='3.0.0', devices=12)]
    check.record()     # the `fleet_check` journal record's fields

The limit is the plan's `guard: {deprecate_max_devices: N}` or `--guard-max-devices N`.
Every DEPRECATE step a session would send is counted against it, one GetBucketsAggregation
per (target, package) (`fleetrel.fleet`), before anything is sent: a step over it stops
the run (`FleetRefused`, exit 2), each version named with its count, and nothing is sent.
An unknown count (an answer cut at the model's bucket limit) is over any limit.
`--allow-in-use` lets them go; `--no-fleet-check` reads no counts at all (for a fleet
without indexing). Either decision is journalled (`fleet_check`), with the counts seen, as
the evidence of what the run was told. Without a limit, a run reads nothing from the fleet.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import anyio

from fleetrel.fleet import Distribution, FleetCounts, FleetUnavailable, distributions
from fleetrel.plan import ReleasePlan, Step
from fleetrel.reads import first_error


class FleetRefused(Exception):
    """A DEPRECATE the guard refuses; the message names each version and its count."""


@dataclass(frozen=True)
class InUse:
    """A DEPRECATE step of a version more things run than the limit (None: unknown)."""

    target: str | None
    package: str
    version: str
    devices: int | None

    def describe(self) -> str:
        where = f"{self.target}: " if self.target else ""
        return f"{where}{self.package}/{self.version} is {run_by(self.devices)}"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "package": self.package, "version": self.version, "devices": self.devices}


@dataclass
class FleetCheck:
    """What the guard found for one session's DEPRECATE steps, and what was decided."""

    limit: int
    allow_in_use: bool = False
    skipped: bool = False  # --no-fleet-check: no counts were read
    counts: dict[str | None, dict[str, Distribution]] = field(default_factory=dict)
    in_use: list[InUse] = field(default_factory=list)
    checked: int = 0  # DEPRECATE steps counted

    @property
    def refused(self) -> list[InUse]:
        return [] if self.allow_in_use else list(self.in_use)

    def record(self) -> dict[str, Any]:
        """The `fleet_check` journal record's fields: the decision and the counts it saw
        (for the versions deprecated, per target), never anything sensitive."""
        out: dict[str, Any] = {"limit": self.limit, "allow_in_use": self.allow_in_use, "skipped": self.skipped}
        if not self.skipped:
            out["in_use"] = [item.to_json() for item in self.in_use]
            out["checked"] = self.checked
            # the distributions seen (versions on no thing left out): what `fleetrel report
            # --format html` draws
            out["counts"] = [{"target": target, "package": package, "counts": dict(dist.counts)}
                             for target, packages in self.counts.items() for package, dist in packages.items()]
        return out

    def message(self) -> str:
        lines = [f"refused: {len(self.in_use)} DEPRECATE step(s) of versions more than {self.limit} "
                 f"device(s) run (the plan's guard.deprecate_max_devices or --guard-max-devices):"]
        lines += [f"  {item.describe()}" for item in self.in_use[:50]]
        if len(self.in_use) > 50:
            lines.append(f"  ... and {len(self.in_use) - 50} more")
        lines.append("Nothing was sent. Leave those versions out, raise the limit, or pass --allow-in-use "
                     "(journalled) to deprecate them anyway.")
        return "\n".join(lines)


def over_limit(devices: int | None, limit: int) -> bool:
    """The guard's rule: more things than `limit` run it, or nobody can say how many."""
    return devices is None or devices > limit


def run_by(devices: int | None) -> str:
    """'run by 3 devices', as every message of the guard says it."""
    count = "an unknown number of" if devices is None else str(devices)
    return f"run by {count} device{'' if devices == 1 else 's'}"


def devices_filtered(plan: ReleasePlan) -> bool:
    """Whether a `select:` entry of `plan` filters by the devices that run a version."""
    return any(entry.select.devices is not None for _, entry in plan.selectors())


def guard_limit(plan: ReleasePlan, override: int | None) -> int | None:
    """The limit in force: the command line's over the plan's; None: no guard."""
    return override if override is not None else plan.guard.deprecate_max_devices


def deprecations(steps: Iterable[Step]) -> list[Step]:
    return [step for step in steps if step.action == "DEPRECATE" and not step.is_default]


async def check_fleet(steps: Iterable[Step], clients: Mapping[str | None, Any], *, limit: int | None,
                      allow_in_use: bool = False, fleet_check: bool = True,
                      known: FleetCounts | None = None) -> FleetCheck | None:
    """Count the things on each version `steps` deprecate, through each target's client,
    against `limit`. None when there is no limit (nothing read). Raises FleetUnavailable
    (with the way on) when the counts cannot be read. `known`: distributions the run's
    expansion already read (not read again)."""
    if limit is None:
        return None
    if not fleet_check:
        return FleetCheck(limit, allow_in_use, skipped=True)
    wanted = deprecations(steps)
    by_target: dict[str | None, set[str]] = {}
    for step in wanted:
        by_target.setdefault(step.target, set()).add(step.package)
    counts: dict[str | None, dict[str, Distribution]] = {}

    async def count_target(target: str | None) -> None:
        try:
            counts[target] = await distributions(clients[target], by_target[target], target=target,
                                                 known=(known or {}).get(target))
        except FleetUnavailable as exc:
            raise exc.needed_for("the guard needs them") from None

    with first_error():
        async with anyio.create_task_group() as tg:
            for target in by_target:
                tg.start_soon(count_target, target)
    in_use = []
    for step in wanted:
        devices = counts[step.target][step.package].count(step.version)
        if over_limit(devices, limit):
            in_use.append(InUse(step.target, step.package, step.version, devices))
    return FleetCheck(limit, allow_in_use, counts=counts, in_use=in_use, checked=len(wanted))


def fleet_record(plan: ReleasePlan, check: FleetCheck | None, *, fleet_check: bool = True) -> dict[str, Any] | None:
    """What a session's first record says of the fleet (None: nothing to say): the guard's
    decision and counts, and that a `devices:` filter went without counts (--no-fleet-check)."""
    out = check.record() if check is not None else None
    if not fleet_check and devices_filtered(plan):
        out = {**(out or {"skipped": True}), "devices_filter_unread": True}
    return out


async def guard(plan: ReleasePlan, steps: list[Step], clients: Mapping[str | None, Any], options: Any,
                counts: FleetCounts | None = None,
                notice: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The guard before a session sends `steps` (its DEPRECATE steps counted through
    `clients`, `options` a `RunOptions`): FleetRefused when one of a version in use is not
    allowed; else what the session's first record says of the fleet (None: nothing).
    `notice` hears what was let through."""
    check = await check_fleet(steps, clients, limit=guard_limit(plan, options.guard_max_devices),
                              allow_in_use=options.allow_in_use, fleet_check=options.fleet_check, known=counts)
    if check is not None and check.refused:
        raise FleetRefused(check.message())
    if check is not None and notice is not None:
        if check.skipped and deprecations(steps):
            notice(f"--no-fleet-check: the fleet guard (at most {check.limit} devices) is not applied to this "
                   "run's DEPRECATE steps")
        elif check.in_use:
            notice(f"--allow-in-use: {len(check.in_use)} DEPRECATE step(s) of versions in use go ahead: "
                   + ", ".join(item.describe() for item in check.in_use[:5]))
    return fleet_record(plan, check, fleet_check=options.fleet_check)
