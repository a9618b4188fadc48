"""Where a run sends its calls: one identity model for every layout.

    where = Where(endpoint_url="http://127.0.0.1:5077", shard=Shard(1, 2))
    [d.name for d in destinations(plan, where)]       # the targets shard 1/2 runs
    place_key({"account": "111111111111", "region": "eu-west-1"}, step)
                                                       # '111111111111|eu-west-1:fw/1.0'

A run has one identity whatever layout sends it (one process, `--target`, `--shard i/N`,
`--ray`). A step is a (place, package, version), its place the (account, region) its
target resolved to when the run first sent there, recorded in the journal's header. So:

- a step's clientToken derives from the run, its place and its request
  (`fleetrel.tokens`), never from a target's name or position: reordering or renaming
  targets, or moving a target to another shard, does not change it;
- every command that acts from a journal (a resume, `undo`, `status`'s resume command)
  uses the places the journal names, and refuses when the plan file now points a target
  elsewhere (`fleetrel.session.TargetChanged`);
- a single-target plan is a plan with one target, named None: the same path from plan
  to clients to session, its account resolved and recorded like any target's.

`Where` is the command line's (or a Python caller's) choice of where to send, beside
`fleetrel.engine.RunOptions` (how to send).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from fleetrel.plan import ReleasePlan, Step
from fleetrel.plan.defaults import DEFAULT_KEY_SUFFIX
from fleetrel.shards import Shard


class WhereError(ValueError):
    """The choice of where to send does not fit the plan (an unknown target, --region for
    a plan with `targets:`, --shard with --target)."""


@dataclass(frozen=True)
class Where:
    """Where to send, over the plan's `target:`/`targets:`.

    :param endpoint_url: every target's endpoint (a rehearsal against `fleetrel emulator`).
    :param region: the single target's region (a plan with `targets:` sets its own).
    :param profile: the single target's AWS profile.
    :param targets: run only these targets of a plan with `targets:` (`--target`).
    :param shard: run only this shard of the plan's targets, in a journal of its own.
    :param journal_path: the journal (default: `fleetrel.journal.default_journal_path(plan)`).
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    targets: frozenset[str] = field(default_factory=frozenset)
    shard: Shard | None = None
    journal_path: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", frozenset(self.targets or ()))
        if self.journal_path is not None:
            object.__setattr__(self, "journal_path", Path(self.journal_path))
        if self.shard is not None and self.targets:
            raise WhereError("--shard and --target do not go together: a shard's targets are chosen by the "
                             "shard rule; run one target with --target alone")

    def overrides(self) -> dict[str, str]:
        """What the command line set over the plan's target, as the journal records it
        (never a password in an endpoint)."""
        from fleetrel.aws import without_userinfo

        given = {"endpoint_url": self.endpoint_url, "region": self.region, "profile": self.profile}
        out = {name: value for name, value in given.items() if value}
        if self.endpoint_url:
            out["endpoint_url"] = without_userinfo(self.endpoint_url)
        return out


@dataclass(frozen=True)
class Destination:
    """One target as a run sends to it: the plan's settings with the command line's on top.
    `name` is None for a single-target plan."""

    name: str | None
    region: str | None
    profile: str | None = None
    endpoint_url: str | None = None
    account: str | None = None
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)


def destinations(plan: ReleasePlan, where: Where) -> list[Destination]:
    """Every target of the plan as it is sent to, in plan order (one, named None, for a
    single-target plan). Raises WhereError when `where` does not fit the plan."""
    specs = plan.target_specs()
    if not specs:
        if where.targets:
            raise WhereError(f"no target named {', '.join(sorted(where.targets))} in plan {plan.plan!r} "
                             "(it has no `targets:`)")
        if where.shard is not None:
            raise WhereError("this plan has no `targets:`: it has one quota, so there is nothing to shard. "
                             "List its accounts and regions under `targets:` to run them in shards")
        target = plan.target
        return [Destination(name=None, region=where.region or target.region, profile=where.profile or target.profile,
                            endpoint_url=where.endpoint_url or target.endpoint_url, account=target.account)]
    unknown = where.targets - {spec.name for spec in specs}
    if unknown:
        raise WhereError(f"no target named {', '.join(sorted(unknown))} in plan {plan.plan!r} "
                         f"(its targets: {', '.join(s.name for s in specs)})")
    if where.region or where.profile:
        raise WhereError("a plan with `targets:` sets region and profile per target: give them in the plan")
    return [Destination(name=spec.name, region=spec.region, profile=spec.profile,
                        endpoint_url=where.endpoint_url or spec.endpoint_url, account=spec.account,
                        role_arn=spec.role_arn, external_id=spec.external_id) for spec in specs]


def chosen_targets(plan: ReleasePlan, where: Where) -> set[str] | None:
    """The targets this session answers for: `--target`'s, a shard's, or None (all)."""
    if where.shard is not None:
        return set(where.shard.targets(plan))
    return set(where.targets) if where.targets else None


# -- places -------------------------------------------------------------------------------

def place_of(identity: Mapping[str, Any] | None, target: str | None) -> dict[str, Any]:
    """Where `target` points in a run's recorded `identity` ({} when not recorded): a plan
    with targets records {name: place}, a single-target run its one place."""
    if not identity:
        return {}
    if target is None:
        return dict(identity) if not _per_target(identity) else {}
    found = identity.get(target)
    return dict(found) if isinstance(found, Mapping) else {}


def _per_target(identity: Mapping[str, Any]) -> bool:
    return bool(identity) and all(isinstance(v, Mapping) for v in identity.values())


def place_id(place: Mapping[str, Any]) -> str:
    """`account|region` of a place (the endpoint stands in for an account not resolved,
    as a fake client's): the part of a step's identity that says where it is applied."""
    return f"{place.get('account') or place.get('endpoint') or ''}|{place.get('region') or ''}"


def place_key(place: Mapping[str, Any], step: Step) -> str:
    """A step's identity across layouts and plan edits: its place, package and version
    (`#default` for a default step), never its target's name."""
    return f"{place_id(place)}:{step.package}/{step.version}{DEFAULT_KEY_SUFFIX if step.is_default else ''}"


def same_place(before: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether two places are one catalog: the same account, region and endpoint, each
    compared where both say it (a resume checks what the command line and plan declare
    before any client resolves the account). A profile is how we get there, not where."""
    return all(before[name] == now[name] for name in ("account", "region", "endpoint")
               if before.get(name) and now.get(name))
