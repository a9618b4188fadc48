"""The plan that reverses what a run changed, from its journal.

    undo = build_undo(Path("spring.journal.jsonl"))     # → Undo
    undo.plan          # {"plan": "spring-release-undo", "versions": [...], ...}: an ordinary plan
    undo.not_undone    # ["fw/1.2: attributes were changed ...", ...]
    print(undo.text())                                 # YAML, what cannot be undone as comments

`fleetrel undo JOURNAL -o undo.yaml` is this. Per step the run finished:

- a succeeded PUBLISH → DEPRECATE; a succeeded DEPRECATE → PUBLISH;
- a changed default (a `#default` step) → the default it replaced (the journal's
  `previous_default`, read before the change), or unset when there was none. The plan
  language carries a default change on a PUBLISH (`default: true`, when the old default
  is the version published again) or a DEPRECATE (`then_default`, `unset_default`) of the
  same package; when the undo plan has neither, the change is listed with the command
  that makes it by hand;
- skipped, failed and unfinished steps are left alone: they changed nothing.

What cannot be undone is listed, in the plan as comments: a version published from
DRAFT cannot return to DRAFT (the journal does not say whether it was DRAFT or
DEPRECATED before, so every undone PUBLISH says so, and DEPRECATE is as far back as it
goes); description, attributes, artifact and recipe sent by the run (the journal holds
digests, not the earlier values; attributes change only in DRAFT anyway).

Targets: the undo acts where the run acted, from the journal alone. Its header (and each
session's first record) names the place every target resolved to (`fleetrel.where`:
region, account, endpoint, profile, role), and the undo plan pins exactly those, accounts
included, whatever the plan file says now. The run's plan file (the header's `plan_file`,
or `--plan`) gives `limits:` and a role's external id; where it points a target elsewhere
than the journal says (another account or region, a single target where the run had
many, or the reverse), the undo is refused, naming the difference, rather than written for
either place. Journals from before places were recorded fall back to the plan file's
`target:`/`targets:`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleetrel.events import PREVIOUS_DEFAULT, SESSION_STARTS, TERMINAL, Event, Outcome
from fleetrel.journal import FORMAT_VERSION, JournalError, is_locked
from fleetrel.plan.steps import parse_step_key
from fleetrel.plan.rules import MAX_PLAN_NAME
from fleetrel.replay import JournalLines, collector_paused, is_header, merged_places, open_journal

REVERSE = {"PUBLISH": "DEPRECATE", "DEPRECATE": "PUBLISH"}
DATA_FIELDS = ("description", "attributes", "artifact", "recipe")
_OUTCOME_OF = {str(e): str(e).removeprefix("step_") for e in TERMINAL}
_STARTED = str(Event.STEP_STARTED)
_UNSET = object()  # a default step whose earlier default was never read


class UndoError(Exception):
    """The journal cannot be undone as asked (locked, unreadable, its targets unknown)."""


class _StepSeen:
    """What undo keeps of one step while the journal streams past."""

    __slots__ = ("action", "fields", "outcome", "previous_default", "new_default")

    def __init__(self) -> None:
        self.action: str | None = None
        self.fields: tuple[str, ...] = ()
        self.outcome: str | None = None
        self.previous_default: Any = _UNSET
        self.new_default: str | None = None


@dataclass
class Undo:
    """The reverse of a run: `plan` (data for `ReleasePlan`), and what it cannot reverse."""

    plan: dict[str, Any] | None  # None: nothing to undo
    not_undone: list[str] = field(default_factory=list)  # "fw/1.2: why", one per step or package
    _by_reason: dict[str, list[str]] = field(default_factory=dict)
    left_alone: dict[str, int] = field(default_factory=dict)  # skipped / failed / unfinished steps
    source: str = ""

    def cannot(self, name: str, reason: str) -> None:
        """Say that `name` (a step or package) is not undone, and why."""
        self.not_undone.append(f"{name}: {reason}")
        self._by_reason.setdefault(reason, []).append(name)

    def text(self) -> str:
        lines = [f"# Undo of {self.source}, written by `fleetrel undo`.",
                 "# An ordinary plan: `fleetrel validate`, `plan` (preview), `run`, `verify` it as any other."]
        if self.left_alone:
            counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.left_alone.items()))
            lines.append(f"# Left alone (the run changed nothing there): {counts}.")
        if self.not_undone:
            lines.append("# Not undone by this plan:")
            # one line a reason: a clean-up of 10,000 versions gives one line, not 10,000
            for reason, names in self._by_reason.items():
                lines.append(f"#   - {names[0]}: {reason}" if len(names) == 1
                             else f"#   - {reason}: {len(names)} steps: {', '.join(names)}")
        if self.plan is None:
            lines.append("# Nothing to undo: the run changed no version and no default.")
            return "\n".join(lines) + "\n"
        body = yaml.safe_dump(self.plan, sort_keys=False, allow_unicode=True, width=10_000, default_flow_style=None)
        return "\n".join(lines) + "\n" + body


def read_journal(path: Path) -> tuple[dict[str, Any], dict[str, _StepSeen]]:
    """The header and what each step did, in one pass over the journal's lines. The
    header's `identity` is every session's places merged, and `target` the command line's
    overrides of the session that first recorded them."""
    if is_locked(path):
        raise UndoError(f"{path}: a fleetrel run holds this journal now: undo it once the run has stopped")
    steps: dict[str, _StepSeen] = {}
    with open_journal(path) as file, collector_paused():
        records = iter(JournalLines(path, file))
        header = next(records, None)
        if header is None or not is_header(header):
            raise JournalError(f"{path}: not a fleetrel journal (format {FORMAT_VERSION}): the first line is not its header")
        header.pop("step_digests", None)
        for record in records:
            if record["event"] in SESSION_STARTS:
                header["identity"] = merged_places(header.get("identity"), record.get("identity")) or None
                continue
            key = record.get("step")
            if key is None:
                continue
            seen = steps.get(key)
            if seen is None:
                seen = steps[key] = _StepSeen()
            event = record["event"]
            if event == _STARTED:
                request = record.get("request") or {}
                seen.action = request.get("action")
                seen.fields = tuple(name for name in DATA_FIELDS if name in request)
                seen.new_default = request.get("defaultVersionName")
                if PREVIOUS_DEFAULT in record and seen.previous_default is _UNSET:
                    seen.previous_default = record[PREVIOUS_DEFAULT]  # the first read: before any change
            elif event in _OUTCOME_OF:
                seen.outcome = _OUTCOME_OF[event]
    return header, steps


def _default_changed(seen: _StepSeen) -> bool:
    """A default step changed the default if it succeeded, or if it was skipped as
    already done while the first read (before anything was sent) showed another default:
    a session that sent it and died before journalling the answer."""
    if seen.outcome == Outcome.SUCCEEDED:
        return True
    return seen.outcome == Outcome.SKIPPED and seen.previous_default is not _UNSET \
        and seen.previous_default != seen.new_default


def build_undo(path: Path, original: Any = None) -> Undo:
    """The undo of the run journalled at `path`. `original` is the run's plan
    (`ReleasePlan`, for its limits and external ids, and checked against the journal's
    places), or None to load the header's `plan_file` if it is there."""
    header, steps = read_journal(path)
    has_targets = any(parse_step_key(key)[0] is not None for key in steps)
    if original is None:
        original = _original_plan(header, needed=has_targets and not header.get("identity"), journal=path)
    undo = Undo(plan=None, source=str(path))
    # (target, package, version) -> undo action; (target, package) -> the default to restore
    actions: dict[tuple, str] = {}
    restore: dict[tuple, str | None] = {}
    for key, seen in steps.items():
        target, package, version, is_default = parse_step_key(key)
        if is_default:
            if _default_changed(seen):
                if seen.previous_default is _UNSET:
                    undo.cannot(key, "the default it replaced was not journalled: check it by hand")
                else:
                    restore[(target, package)] = seen.previous_default
            elif seen.outcome != Outcome.SUCCEEDED:
                undo.left_alone[seen.outcome or Outcome.UNFINISHED.value] = \
                    undo.left_alone.get(seen.outcome or Outcome.UNFINISHED.value, 0) + 1
            continue
        if seen.outcome != Outcome.SUCCEEDED:
            outcome = seen.outcome or Outcome.UNFINISHED.value
            undo.left_alone[outcome] = undo.left_alone.get(outcome, 0) + 1
            continue
        name = key
        if seen.fields:
            undo.cannot(name, f"{', '.join(seen.fields)} sent by the run cannot be restored (the journal keeps "
                              "no earlier values; attributes change only in DRAFT)")
        if seen.action in REVERSE:
            actions[(target, package, version)] = REVERSE[seen.action]
            if seen.action == "PUBLISH":
                undo.cannot(name, "published by the run; if it was a DRAFT before, it cannot return to DRAFT: "
                                  "DEPRECATE is as far back as it goes")
        elif not seen.fields:
            undo.cannot(name, "a field-only update: nothing the journal can reverse")
    entries = _entries(actions, restore, undo)
    if entries:
        plan: dict[str, Any] = {"plan": _undo_name(str(header.get("plan", "run")))}
        used = {target for entry in entries for target in entry.get("targets", ())}
        plan.update(where_the_run_acted(header, original, has_targets, used, path))
        if original is not None:
            plan["limits"] = original.limits.model_dump(mode="json")
            if original.guard.deprecate_max_devices is not None:  # an undone PUBLISH is a DEPRECATE like any other
                plan["guard"] = original.guard.model_dump(mode="json", exclude_none=True)
        plan["versions"] = entries
        undo.plan = plan
    return undo


_AWS_HOSTS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


def _own_endpoint(place: dict[str, Any]) -> dict[str, str]:
    """The endpoint a place names, for the undo plan, unless it is AWS's own for the
    region (which the region already says)."""
    from urllib.parse import urlsplit

    endpoint = place.get("endpoint")
    host = urlsplit(endpoint).hostname or "" if endpoint else ""
    return {"endpoint_url": endpoint} if endpoint and not host.endswith(_AWS_HOSTS) else {}


def where_the_run_acted(header: dict[str, Any], original: Any, has_targets: bool, used: set[str],
                        journal: Path) -> dict[str, Any]:
    """The undo plan's `target:` or `targets:`: the places the journal recorded (see the
    module docstring). UndoError where the plan file points a target elsewhere."""
    identity = header.get("identity") or {}
    if not identity:  # a journal from before places were recorded: the plan file's blocks
        return _blocks(original)
    plan_file = str(original.source) if original is not None and original.source else "the run's plan"
    specs = {spec.name: spec for spec in original.target_specs()} if original is not None else {}
    if not has_targets:
        if original is not None and specs:
            raise UndoError(f"{journal}: the run had one target ({_show(identity)}), but {plan_file} has `targets:` "
                            f"({', '.join(specs)}): the undo acts where the run acted; pass --plan with the plan "
                            "as it was run, or leave --plan out")
        if original is not None:
            overrides = header.get("target") or {}
            declared = {"region": overrides.get("region") or original.target.region,
                        "account": original.target.account,
                        "endpoint": overrides.get("endpoint_url") or original.target.endpoint_url}
            _refuse_elsewhere(journal, None, identity, declared, plan_file)
        target = {"region": identity.get("region"), "account": identity.get("account"),
                  "profile": identity.get("profile"), **_own_endpoint(identity)}
        return {"target": {k: v for k, v in target.items() if v}}
    if original is not None and not specs:
        raise UndoError(f"{journal}: the run had targets ({', '.join(sorted(used))}), but {plan_file} has one "
                        "`target:`: the undo acts where the run acted; pass --plan with the plan as it was run, "
                        "or leave --plan out")
    targets = []
    for name in [n for n in identity if n in used] + sorted(used - set(identity)):  # the run's order
        place = identity.get(name)
        if not isinstance(place, dict) or not place.get("region"):
            raise UndoError(f"{journal}: the journal records no place for target {name}: pass --plan with the plan "
                            "as it was run")
        spec = specs.get(name)
        if spec is not None:
            _refuse_elsewhere(journal, name, place, {"region": spec.region, "account": spec.account}, plan_file)
        target = {"name": name, "region": place["region"], "account": place.get("account"),
                  "role_arn": place.get("role_arn"), "profile": place.get("profile"), **_own_endpoint(place)}
        if spec is not None and spec.external_id and spec.role_arn == place.get("role_arn"):
            target["external_id"] = spec.external_id
        targets.append({k: v for k, v in target.items() if v})
    return {"targets": targets}


def _refuse_elsewhere(journal: Path, name: str | None, place: dict[str, Any], declared: dict[str, Any],
                      plan_file: str) -> None:
    from fleetrel.where import same_place

    declared = {k: v for k, v in declared.items() if v}
    if not same_place(place, declared):
        what = f"target {name}" if name else "the run's target"
        raise UndoError(f"{journal}: {what} acted in {_show(place)}, but {plan_file} now points it at "
                        f"{_show(declared)}. The undo acts where the run acted, and will not guess between the "
                        "two: restore the plan's target (or pass --plan with the plan as it was run)")


def _show(place: dict[str, Any]) -> str:
    shown = [f"{key} {place[key]}" for key in ("account", "region", "endpoint") if place.get(key)]
    return ", ".join(shown) or "the default AWS configuration"


def _blocks(original: Any) -> dict[str, Any]:
    if original is None:
        return {}
    data = original.model_dump(mode="json", include={"target", "targets"}, exclude_none=True)
    if "targets" in original.model_fields_set:
        data.pop("target", None)
    return {k: v for k, v in data.items() if v}


def _entries(actions: dict[tuple, str], restore: dict[tuple, str | None], undo: Undo) -> list[dict[str, Any]]:
    """One entry per (package, version, action, default fields), naming its targets."""
    grouped: dict[tuple, list[str | None]] = {}
    placed: set[tuple] = set()  # (target, package) whose default the plan restores
    for (target, package, version), action in actions.items():
        extra: tuple = ()
        wanted = (target, package)
        if wanted in restore and wanted not in placed:
            previous = restore[wanted]
            if action == "DEPRECATE" and previous != version:
                extra = (("then_default", previous),) if previous is not None else (("unset_default", True),)
                placed.add(wanted)
            elif action == "PUBLISH" and previous == version:
                extra = (("default", True),)
                placed.add(wanted)
        grouped.setdefault((package, version, action, extra), []).append(target)
    for (target, package), previous in restore.items():
        if (target, package) not in placed:
            where = f" in target {target}" if target else ""
            how = (f"--default-version-name {previous}" if previous is not None else "--unset-default-version")
            undo.cannot(f"{package}{where}", "its default was changed and no entry of this plan can carry it back: "
                                             f"aws iot update-package --package-name {package} {how}")
    out: list[dict[str, Any]] = []
    for (package, version, action, extra), targets in grouped.items():
        entry: dict[str, Any] = {"package": package, "version": version, "action": action, **dict(extra)}
        if targets != [None]:
            entry["targets"] = sorted(t for t in targets if t is not None)
        out.append(entry)
    return out


def _undo_name(name: str) -> str:
    return name[: MAX_PLAN_NAME - len("-undo")] + "-undo"


def _original_plan(header: dict[str, Any], *, needed: bool, journal: Path) -> Any:
    plan_file = header.get("plan_file")
    if plan_file and Path(plan_file).is_file():
        from fleetrel.plan import load

        return load(Path(plan_file))
    if needed:
        raise UndoError(f"{journal}: the run had targets, and neither its journal nor its plan file "
                        f"({plan_file or 'not recorded'}) says where they point: pass the run's plan with --plan")
    return None
