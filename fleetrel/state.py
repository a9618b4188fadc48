"""The fleet as it is, against the plan: a preview before a run, a check for drift after.

    preview = await read_preview(plan, endpoint_url="http://127.0.0.1:5000")
    for step in preview.blocked:
        print(step.key, step.reason)
    report = await read_drift(plan)
    assert report.matches

Both read every planned version with `fleetrel.reads.read_versions`, concurrently,
through read buckets of their own at the plan's rate, one per read operation: reads have
their own quotas in AWS, and a preview that throttles the account would be a poor way to
start a release; a version whose status is all a step needs is listed, 100 a call.
`diff_step` and `drift_of` are pure, so the rules are tested without a network. Plain dataclasses out;
the CLI and `fleetrel.report` turn them into tables.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import anyio

from fleetrel.plan import Step, digest
from fleetrel.reads import PackageState, ReadError, VersionState, first_error, read_versions
# The lifecycle (what each action leaves a version in, the transitions allowed, the
# DRAFT-only fields) is the service's: defined once, with its sources, in fleetrel.service.
from fleetrel.service import ALLOWED_TRANSITIONS
from fleetrel.service import DRAFT_ONLY, TARGET_STATUS

# Preview outcomes. `apply`: the call will change something; `unchanged`: the version is
# already as planned (the engine records the step as skipped, or its call is a no-op);
# `blocked`: the call will be refused.
APPLY, UNCHANGED, BLOCKED = "apply", "unchanged", "blocked"

# Why a step is blocked.
MISSING_PACKAGE = "package-missing"
MISSING_VERSION = "version-missing"
DRAFT_TO_DEPRECATED = "draft-to-deprecate"
IN_USE = "in-use"  # a DEPRECATE the fleet guard refuses: more things run the version than it allows
REFUSED_TRANSITION = "refused-transition"
DRAFT_ONLY_FIELDS = "fields-need-draft"
ALREADY_WITH_CHANGES = "already-in-status"
UNREADABLE = "unreadable"


@dataclass
class StepPreview:
    """One step of a preview: where the version is, where the step takes it, what changes."""

    key: str
    action: str | None
    current: str | None  # status now; None when the version is missing or unreadable
    planned: str | None  # status after the step
    outcome: str  # apply | unchanged | blocked
    changes: list[str] = field(default_factory=list)  # e.g. "attributes +channel", "description"
    blocked: str | None = None  # one of the reason codes above
    reason: str | None = None  # for people: why it is blocked or unchanged
    warning: str | None = None  # it will be applied, but look: e.g. it deprecates the package's default
    devices: int | None = None  # things that report this version (fleet indexing); None: not read or unknown


@dataclass
class Preview:
    """Every step of a plan, previewed. `can_apply`: no step will be refused. `fleet`:
    whether device counts were read, and if not why (`fleet_note`)."""

    plan: str
    steps: list[StepPreview]
    fleet: bool = False
    fleet_note: str | None = None

    def _with(self, outcome: str) -> list[StepPreview]:
        return [s for s in self.steps if s.outcome == outcome]

    @property
    def to_apply(self) -> list[StepPreview]:
        return self._with(APPLY)

    @property
    def unchanged(self) -> list[StepPreview]:
        return self._with(UNCHANGED)

    @property
    def blocked(self) -> list[StepPreview]:
        return self._with(BLOCKED)

    @property
    def can_apply(self) -> bool:
        return not self.blocked

    def totals(self) -> dict[str, Any]:
        by_reason: dict[str, int] = {}
        for s in self.blocked:
            by_reason[s.blocked or "unknown"] = by_reason.get(s.blocked or "unknown", 0) + 1
        return {"steps": len(self.steps), "apply": len(self.to_apply), "unchanged": len(self.unchanged),
                "blocked": len(self.blocked), "blocked_by_reason": by_reason}

    @property
    def warnings(self) -> list[StepPreview]:
        return [s for s in self.steps if s.warning]

    def to_dict(self) -> dict[str, Any]:
        out = {"plan": self.plan, "can_apply": self.can_apply, "totals": self.totals(),
               "steps": [asdict(s) for s in self.steps], "fleet": self.fleet}
        if self.fleet_note:
            out["fleet_note"] = self.fleet_note
        return out


@dataclass
class StepDrift:
    """One planned version read back: `differences` is empty when it is as planned."""

    key: str
    differences: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.differences


@dataclass
class DriftReport:
    plan: str
    steps: list[StepDrift]

    @property
    def drifted(self) -> list[StepDrift]:
        return [s for s in self.steps if not s.matches]

    @property
    def matches(self) -> bool:
        return not self.drifted

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan, "matches": self.matches, "steps": len(self.steps),
                "drifted": [asdict(s) for s in self.drifted]}


# -- the rules (pure) ------------------------------------------------------------------

def attribute_changes(current: dict[str, str], planned: dict[str, str]) -> list[str]:
    """`+key` added, `~key` changed, `-key` removed: the service replaces the whole map."""
    out = [f"+{k}" for k in planned if k not in current]
    out += [f"~{k}" for k in planned if k in current and current[k] != planned[k]]
    out += [f"-{k}" for k in current if k not in planned]
    return out


def field_changes(step: Step, current: VersionState) -> list[str]:
    """The fields the step would change on this version, for people."""
    changes: list[str] = []
    if step.attributes is not None:
        attrs = attribute_changes(current.attributes, step.attributes)
        if attrs:
            changes.append("attributes " + " ".join(attrs))
    if step.description is not None and step.description != current.description:
        changes.append("description")
    if step.artifact is not None and step.artifact != current.artifact:
        changes.append("artifact")
    if step.recipe is not None and step.recipe != current.recipe:
        changes.append("recipe")
    return changes


DEPRECATES_DEFAULT = ("deprecates the package's default version: the package keeps a deprecated default (the "
                      "service allows it); add then_default: VERSION or unset_default: true to the entry to change it")


def diff_default(step: Step, current: PackageState | ReadError) -> StepPreview:
    """What a default step would do to its package's default version."""
    want = step.default_version
    if isinstance(current, ReadError):
        reason, why = (MISSING_PACKAGE, f"package {step.package} does not exist") if current.missing else \
            (UNREADABLE, f"cannot read it: {current.code}: {current.message}")
        return StepPreview(step.key, step.action, None, want, BLOCKED, blocked=reason, reason=why)
    now = current.default_version
    if now == want:
        why = f"already the default ({now})" if want else "the package already has no default"
        return StepPreview(step.key, step.action, now, want, UNCHANGED, reason=why + " (will be skipped)")
    return StepPreview(step.key, step.action, now, want, APPLY, changes=[f"default {now or '(none)'} -> {want or '(none)'}"])


def diff_step(step: Step, current: VersionState | ReadError | PackageState, *, package_exists: bool = True,
              default_handled: bool = False) -> StepPreview:
    """What the step would do to the version as it is now, and whether the service takes it.

    The order follows the service's: the action is judged first (an action to the status
    the version already has is refused, so fields sent with it are not applied), then the
    DRAFT-only fields (refused on a non-DRAFT version even when their values are equal).
    A DEPRECATE of the package's default version is flagged (`warning`) unless the plan
    changes that package's default too (`default_handled`).
    """
    if step.is_default:
        return diff_default(step, current)  # type: ignore[arg-type]
    preview = _diff_version(step, current, package_exists)  # type: ignore[arg-type]
    if (step.action == "DEPRECATE" and isinstance(current, VersionState) and not default_handled
            and current.package_default == step.version and preview.outcome == APPLY):
        preview.warning = DEPRECATES_DEFAULT
    return preview


def _diff_version(step: Step, current: VersionState | ReadError, package_exists: bool) -> StepPreview:
    planned_status = TARGET_STATUS.get(step.action or "")
    if isinstance(current, ReadError):
        if current.missing:
            reason, why = ((MISSING_VERSION, "the version does not exist: create it first") if package_exists
                           else (MISSING_PACKAGE, f"package {step.package} does not exist"))
            return StepPreview(step.key, step.action, None, planned_status, BLOCKED, blocked=reason, reason=why)
        return StepPreview(step.key, step.action, None, planned_status, BLOCKED, blocked=UNREADABLE,
                           reason=f"cannot read it: {current.code}: {current.message}")
    now = current.status
    changes = field_changes(step, current)
    after = planned_status or now
    preview = StepPreview(step.key, step.action, now, after, APPLY, changes=changes)
    if planned_status is not None and planned_status == now:
        if changes:
            preview.outcome, preview.blocked = BLOCKED, ALREADY_WITH_CHANGES
            preview.reason = (f"already {now}: the service refuses the action, so {', '.join(c.split()[0] for c in changes)} "
                              "would not change; drop `action` from the entry to change only the fields")
        else:
            preview.outcome, preview.reason = UNCHANGED, f"already {now} as planned (will be skipped)"
        return preview
    if planned_status is not None and (now, planned_status) not in ALLOWED_TRANSITIONS:
        preview.outcome = BLOCKED
        if now == "DRAFT" and planned_status == "DEPRECATED":
            preview.blocked, preview.reason = DRAFT_TO_DEPRECATED, "a DRAFT version cannot be deprecated: publish it first"
        else:
            preview.blocked, preview.reason = REFUSED_TRANSITION, f"{now} cannot become {planned_status}"
        return preview
    sent_draft_only = [name for name in DRAFT_ONLY if getattr(step, name) is not None]
    if sent_draft_only and now != "DRAFT":
        preview.outcome, preview.blocked = BLOCKED, DRAFT_ONLY_FIELDS
        preview.reason = (f"{', '.join(sent_draft_only)} can be set only while DRAFT and the version is {now}; "
                          "remove them from the entry")
        return preview
    if planned_status is None and not changes:
        preview.outcome, preview.reason = UNCHANGED, "no field differs from the plan"
    return preview


def drift_of(step: Step, current: VersionState | ReadError | PackageState) -> list[str]:
    """How the version differs from what the plan says it should be after the run.

    Attributes are compared by digest (the whole map), so their values never reach a
    report; a field the step does not set is not checked. A default step: whether the
    package's default is the planned one.
    """
    if isinstance(current, ReadError):
        return ["missing" if current.missing else f"unreadable ({current.code})"]
    if isinstance(current, PackageState):
        if current.default_version == step.default_version:
            return []
        return [f"default {current.default_version or '(none)'} (planned {step.default_version or '(none)'})"]
    out: list[str] = []
    want = TARGET_STATUS.get(step.action or "")
    if want is not None and current.status != want:
        out.append(f"status {current.status} (planned {want})")
    if step.description is not None and current.description != step.description:
        out.append("description")
    if step.attributes is not None and digest(current.attributes) != digest(step.attributes):
        keys = attribute_changes(current.attributes, step.attributes)
        out.append("attributes (digest " + digest(current.attributes)[:12] + ", planned "
                   + digest(step.attributes)[:12] + (": " + " ".join(keys) if keys else "") + ")")
    if step.artifact is not None and current.artifact != step.artifact:
        out.append("artifact")
    if step.recipe is not None and current.recipe != step.recipe:
        out.append("recipe")
    return out


def _limits(plan: Any) -> dict[str, Any]:
    limits = plan.limits
    return {"rate": float(limits.rate), "burst": int(limits.burst), "concurrency": int(limits.concurrency)}


async def _read_plan(plan: Any, endpoint_url: str | None, region: str | None, profile: str | None,
                     targets: set[str] | None, *, warn_default: bool = True, fleet: bool = False,
                     known: dict | None = None) -> tuple[list[Step], dict[str, VersionState | ReadError], set[tuple], Any]:
    """Every planned version as it is, the (target, package) pairs found missing, and with
    `fleet` the things on each version ({target: {package: Distribution}}, one aggregation
    per target and package, and the FleetUnavailable that said why not, if one did). A plan with
    `targets:` is read target by target, all at once, each through its own client (its
    role, its account checked) and its own read bucket."""
    from fleetrel.credentials import plan_clients

    limits = _limits(plan)
    counts: dict[str | None, Any] = {}
    unavailable: list[Any] = []  # FleetUnavailable, one per (target, package) not counted

    async def read_fleet(name: str | None, client: Any, steps: list[Step]) -> None:
        from fleetrel.fleet import distributions

        if not fleet:
            return
        # a package fleet indexing cannot count (no custom field for it yet) leaves the others' counts
        counts[name] = await distributions(client, {s.package for s in steps if not s.is_default}, target=name,
                                           known=(known or {}).get(name), failures=unavailable)

    steps = [s for s in plan.steps() if not targets or not plan.target_specs() or s.target in targets]
    found: dict[str, VersionState | ReadError] = {}
    missing_pairs: set[tuple] = set()
    async with plan_clients(plan, endpoint_url=endpoint_url, region=region, profile=profile, targets=targets,
                            concurrency=limits["concurrency"]) as clients:
        async def read_target(name: str | None) -> None:
            mine = [s for s in steps if s.target == name]
            got, missing = await read_versions(clients[name], mine, warn_default=warn_default, **limits)
            found.update(got)
            missing_pairs.update((name, package) for package in missing)
            await read_fleet(name, clients[name], mine)

        with first_error():
            async with anyio.create_task_group() as tg:
                for name in clients:
                    tg.start_soon(read_target, name)
    return steps, found, missing_pairs, (counts, unavailable[0] if unavailable else None)


async def read_preview(plan: Any, *, endpoint_url: str | None = None, region: str | None = None,
                       profile: str | None = None, targets: set[str] | None = None, fleet_check: bool = True,
                       guard: int | None = None, allow_in_use: bool = False, known: dict | None = None) -> Preview:
    """Read every planned version and say what the plan would do to it. Sends no update.

        preview = await read_preview(load_plan("plans/demo.yaml"), endpoint_url=url)
        print(preview.totals())    # {"steps": 200, "apply": 180, "unchanged": 12, "blocked": 8, ...}

    With `fleet_check` (the default) each step also says how many things report its
    version (`devices`, fleet indexing: one aggregation per target and package). When the
    counts cannot be read the preview says why (`fleet_note`), unless a `guard` limit needs
    them: then FleetUnavailable. A DEPRECATE of a version more than `guard` things run is
    blocked (`in-use`), or, with `allow_in_use`, a warning. `known`: distributions the
    plan's expansion read ({target: {package: Distribution}}), not read again.
    """
    steps, found, missing, (counts, unavailable) = await _read_plan(plan, endpoint_url, region, profile, targets,
                                                                    fleet=fleet_check, known=known)
    if unavailable is not None and guard is not None:
        raise unavailable.needed_for("the guard needs them")
    handled = {(s.target, s.package) for s in steps if s.is_default}
    previews = []
    for s in steps:
        step = diff_step(s, found[s.key], package_exists=(s.target, s.package) not in missing,
                         default_handled=(s.target, s.package) in handled)
        if not s.is_default and s.package in counts.get(s.target, {}):
            step.devices = counts[s.target][s.package].count(s.version)
            if guard is not None and s.action == "DEPRECATE" and step.outcome == APPLY:
                in_use(step, guard, allow_in_use)
        previews.append(step)
    note = None
    if not fleet_check:
        note = "no device counts (--no-fleet-check)"
    elif unavailable is not None:  # one line: the whole story is one `fleetrel fleet` away
        note = f"no device counts{'' if not any(counts.values()) else ' for some packages'}: {unavailable.short()}"
    return Preview(plan.plan, previews, fleet=any(counts.values()), fleet_note=note)


def in_use(step: StepPreview, limit: int, allow: bool) -> None:
    """Apply the fleet guard to a DEPRECATE step that would otherwise apply."""
    from fleetrel.fleetcheck import over_limit, run_by

    if not over_limit(step.devices, limit):
        return
    why = f"{run_by(step.devices)}, more than the guard's {limit}"
    if allow:
        step.warning = f"{why} (--allow-in-use)"
    else:
        step.outcome, step.blocked, step.reason = BLOCKED, IN_USE, why + ": --allow-in-use to deprecate it anyway"


async def read_drift(plan: Any, *, endpoint_url: str | None = None, region: str | None = None,
                     profile: str | None = None, targets: set[str] | None = None) -> DriftReport:
    """Read every planned version back and list how each differs from the plan.

        report = await read_drift(load_plan("plans/demo.yaml"), endpoint_url=url)
        print(report.matches, [d.key for d in report.drifted])
    """
    steps, found, _, _ = await _read_plan(plan, endpoint_url, region, profile, targets, warn_default=False)
    return DriftReport(plan.plan, [StepDrift(s.key, drift_of(s, found[s.key])) for s in steps])
