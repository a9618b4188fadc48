"""The plan as a whole: `ReleasePlan`, with its `target:`, `limits:` and `abort:`, and its
expansion into steps and digest.

    plan = ReleasePlan.model_validate({"plan": "p", "versions": [{"package": "fw", "version": "1.0", "action": "PUBLISH"}]})
    plan.steps()      # [Step(package='fw', version='1.0', action='PUBLISH', ...)]
    plan.digest       # what a run's journal pins

`fleetrel.plan.load` adds the file: every problem then names the file, line and entry.
The entries of `versions:`, `defaults:` and the rules across entries are in
`fleetrel.plan.entries`; `Step` and the digests are in `fleetrel.plan.steps`.
With `targets:` (see `fleetrel.plan.targets`) each step also names its target.
A plan is frozen once validated, so its steps and digest are computed once, on first
use, and kept (a 50,000-step plan would otherwise rebuild its steps on every
`summary`, `digest` and `wave_ends`).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, PrivateAttr, model_validator
from pydantic_core import PydanticCustomError

from fleetrel.plan.rules import (
    AccountId,
    EndpointUrl,
    NonEmptyText,
    PlanModel,
    PlanName,
    Wave,
    as_list,
    plural,
    resolve_waves,
)
from fleetrel.plan.defaults import (
    DEFAULT_ACTIONS,
    changes_default,
    default_problems,
    default_step_fields,
)
from fleetrel.plan.entries import (
    Defaults,
    Entry,
    VersionEntry,
    cross_entry_problems,
    duplicate_problems,
    merged_fields,
    targets_of_entry,
)
from fleetrel.plan.selectors import Selection, SelectorEntry
from fleetrel.plan.steps import Step, digest, requests_json
from fleetrel.plan.targets import (
    Targets,
    TargetSpec,
    entry_target_problems,
    expand_targets,
    target_problems,
)
from fleetrel.service import ACTIONS


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


class Guard(PlanModel):
    """What a run refuses before it sends anything (`--allow-in-use` overrides it, journalled)."""

    deprecate_max_devices: Annotated[int, Field(ge=0, strict=True, description=(
        "refuse to DEPRECATE a version that more than this many things report in the $package "
        "shadow (fleet indexing); 0: only versions no thing runs"))] | None = None


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
    guard: Guard = Field(default_factory=Guard)
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
