"""Opening a run before executing it: the journal, what it already holds, what is left.

    with open_session(plan, Path("spring.journal.jsonl"), new_run=False) as session:
        print(session.run_id, len(session.todo), "steps to send")
        result = await execute(session, client, options)      # fleetrel.engine

Opening takes the journal's exclusive lock, replays it, and decides whether this is a
new run, the resume of the run the journal holds, or a refusal: a journal written for
another version of the plan is refused (`PlanChanged`) unless `new_run`, in which case the
old journal is kept beside the new one under its run id. Nothing here sends a call or
knows the terminal; the CLI chooses the journal's path, the engine executes.
"""
from __future__ import annotations

import functools
import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from fleetrel.events import Outcome
from fleetrel.journal import Journal, JournalError, is_locked, read_run_key, run_key_path, write_run_key
from fleetrel.replay import RunState, merged_places, read_header, replay
from fleetrel.plan import ReleasePlan, Step
from fleetrel.plan.steps import parse_step_key
from fleetrel.shards import layout_of, other_layouts, run_journals
from fleetrel.tokens import KEYED_SCHEME, PLACE_SCHEME, client_token, new_run_key
from fleetrel.where import place_id, place_key, place_of, same_place

STEP_DIGEST_CHARS = 16  # of a step's request digest, kept in the header to tell what changed


class PlanChanged(JournalError):
    """The journal belongs to a different version of the plan."""


class TargetChanged(JournalError):
    """The journal's run was sent somewhere else than this session would send it."""


class ShardMismatch(JournalError):
    """The journal holds another shard of the run (or the whole run) than this session's."""


class LayoutChanged(JournalError):
    """The run was started in another layout (whole, or N shards): its steps' tokens and
    outcomes are in other journals, which this session would not read."""


def _shard_mismatch(path: Path, before: dict[str, Any] | None, now: dict[str, Any] | None) -> str | None:
    """Why a journal's shard is not this session's; None when it is (the same index and
    count and the same targets, in any order: a plan whose targets were reordered splits
    the same way)."""
    def show(shard: dict[str, Any] | None) -> str:
        return f"shard {shard['index']}/{shard['count']}" if shard else "the whole run (no --shard)"

    if (before or None) is None and (now or None) is None:
        return None
    if before and now and (before["index"], before["count"]) == (now["index"], now["count"]):
        had, has = set(before.get("targets", ())), set(now.get("targets", ()))
        if had == has:
            return None
        moved = sorted(had ^ has)
        return (f"{path}: this journal holds shard {show(before)[6:]} of targets {', '.join(sorted(had)) or 'none'}, "
                f"but shard {show(now)[6:]} of this plan is now targets {', '.join(sorted(has)) or 'none'} "
                f"({', '.join(moved)} moved). Restore the plan's targets to resume, or start a new run (--new-run: "
                "unfinished steps keep their clientTokens)")
    return (f"{path}: this journal holds {show(before)}, but this session is {show(now)}. A shard's targets "
            "are its own: run it with the same --shard (or without one) and its own journal, or start a new run")


@dataclass
class Session:
    """A run opened on its journal: who it is and what is left to send. Read-only to
    everything but the engine that executes it."""

    plan: ReleasePlan
    steps: list[Step]
    journal: Journal
    run_id: str
    prior: RunState | None  # what earlier sessions of this run journalled; None for a new run
    todo: list[Step]  # steps this session sends
    failed_before: set[str] = field(default_factory=set)  # failed earlier and not retried now
    target: dict[str, str] = field(default_factory=dict)  # the command line's overrides of the plan's target
    identity: dict[str, str] = field(default_factory=dict)  # where the calls go: endpoint, region, profile
    key: bytes | None = None  # the run's secret for tokens and digests; None for runs from before it existed
    carried: dict[str, str] = field(default_factory=dict)  # tokens a --new-run keeps from the run it replaced
    only: set[str] | None = None  # the targets this session is about (None: all)
    shard: dict[str, Any] | None = None  # a shard's journal: {index, count, targets} (fleetrel.shards)
    scheme: int | None = PLACE_SCHEME  # the journal's token_scheme (fleetrel.tokens)
    fleet_check: dict[str, Any] | None = None  # what the fleet guard found and decided (fleetrel.fleetcheck)

    @functools.cached_property
    def todo_by_target(self) -> dict[str, int]:
        """Steps this session sends, per target ("" for a single-target plan's). Counted once:
        `todo` does not change once the session is open, and the progress display asks for
        these four times a second (a walk of 100k steps each time)."""
        counts: dict[str, int] = {}
        for step in self.todo:
            counts[step.target or ""] = counts.get(step.target or "", 0) + 1
        return counts

    @property
    def in_scope(self) -> list[Step]:
        """The steps this session answers for: all of them, or those of its targets."""
        return self.steps if self.only is None else [s for s in self.steps if s.target in self.only]

    @classmethod
    def delegated(cls, plan: ReleasePlan, *, run_id: str, todo: set[str], tokens: dict[str, str], journal: Any,
                  only: set[str]) -> "Session":
        """A session opened by another process that holds the journal, its lock and the run's
        key (`fleetrel.raydriver`'s driver), executed here on some targets: it sends the steps
        named in `todo` with the driver's `tokens` and writes its records to `journal` (a
        buffer the driver drains into the run's one journal). It holds no key: the driver
        digests the request fields it journals itself."""
        steps = plan.steps()
        return cls(plan=plan, steps=steps, journal=journal, run_id=run_id, prior=None,
                   todo=[s for s in steps if s.key in todo], carried=dict(tokens), only=set(only))

    def token(self, step: Step) -> str:
        """The step's clientToken in this run: carried from the run this one replaced, or
        derived from the run, the step's place (`fleetrel.where`) and its request."""
        if self.scheme != PLACE_SCHEME:  # a run journalled before places: by target name, as it was sent
            return self.carried.get(step.key) or client_token(self.run_id, step, self.key)
        place = place_of(self.identity, step.target)
        if not place:
            raise RuntimeError(f"step {step.key}: its target's place is not resolved (a fleetrel bug)")
        if self.carried:
            filed = carried_key(place, step, step.request_digest()[:STEP_DIGEST_CHARS])
            carried = self.carried.get(filed) or self.carried.get(step.key)
            if carried:
                return carried
        return client_token(self.run_id, step, self.key, place=place_id(place))

    def place_unresolved(self, clients: dict[str | None, Any]) -> None:
        """Record, for each target this session sends to whose place neither the caller nor
        the journal named (a session opened directly, `open_session` without `identity`),
        where its client sends (`fleetrel.aws.client_identity`)."""
        from fleetrel.aws import client_identity

        found = {target: client_identity(client, None) for target, client in clients.items()
                 if client is not None and not place_of(self.identity, target)}
        if found:
            self.identity = merged_places(self.identity, found[None] if list(found) == [None] else found)

    @property
    def path(self) -> Path:
        return self.journal.path

    @property
    def resumed(self) -> bool:
        return self.prior is not None

    @property
    def done_before(self) -> int:
        return len(self.in_scope) - len(self.todo)

    def header(self, **extra: Any) -> dict[str, Any]:
        """The fields of this session's first record (`run_started` or `run_resumed`)."""
        fields: dict[str, Any] = {"run_id": self.run_id, "plan": self.plan.plan, "plan_digest": self.plan.digest,
                                  "steps": len(self.steps), "to_do": len(self.todo), **extra, "pid": os.getpid(),
                                  "host": socket.gethostname()}  # who is running it, for `status --watch`
        if self.plan.source is not None:  # so `fleetrel status` can print the command that resumes
            fields["plan_file"] = str(self.plan.source)
        if self.target:
            fields["target"] = dict(self.target)
        if self.identity:
            fields["identity"] = dict(self.identity)
        if self.fleet_check is not None:  # journalled: --allow-in-use, --no-fleet-check, and the counts seen
            fields["fleet_check"] = dict(self.fleet_check)
        if self.shard is not None:
            fields["shard"] = dict(self.shard)
        elif self.only is not None:  # `--target`: what this session answers for (status, its resume command)
            fields["only"] = sorted(self.only)
        if self.prior is None:
            fields["step_digests"] = step_digests(self.steps)
            if self.plan.selection is not None:  # frozen: a resume sends these, whatever the catalog says then
                fields["selection"] = self.plan.selection.to_json()
            if self.key is not None:
                fields["token_scheme"] = self.scheme
            if self.carried:
                fields["carried_tokens"] = dict(self.carried)
        else:
            fields["done_before"] = self.done_before
        return fields


def check_identity(session: Session, identity: dict[str, Any]) -> None:
    """Refuse (`TargetChanged`) to resume a run where its targets now point elsewhere, for a
    session opened before its targets' identities were resolved (open_session checks it
    when they are given), and a target whose clients were built again mid-session (a
    restarted Ray actor) pointing elsewhere than this session recorded, in a new run as in
    a resume: `session.identity` holds the journal's places with what this session resolved."""
    recorded = session.identity
    if identity and recorded:
        moved = _moved(recorded, identity)
        if moved:
            raise TargetChanged(_target_changed(session.path, session.run_id, session.plan.plan, recorded, moved,
                                                identity, resuming=session.prior is not None))
    session.identity = merged_places(session.identity, identity)


def step_digests(steps: list[Step]) -> dict[str, str]:
    return {s.key: s.request_digest()[:STEP_DIGEST_CHARS] for s in steps}


def plan_differences(state: RunState, steps: list[Step]) -> list[str]:
    """What changed between the plan a journal was written for and this one."""
    old: dict[str, str] = state.header.get("step_digests", {})
    new = step_digests(steps)
    diffs = [f"added: {k}" for k in new if k not in old]
    diffs += [f"removed: {k}" for k in old if k not in new]
    diffs += [f"changed: {k}" for k in new if k in old and old[k] != new[k]]
    return diffs


@contextmanager
def open_session(plan: ReleasePlan, journal_path: Path, *, new_run: bool = False, retry_failed: bool = False,
                 identity: dict[str, Any] | None = None, target: dict[str, str] | None = None,
                 only: set[str] | None = None, shard: dict[str, Any] | None = None) -> Iterator[Session]:
    """Lock and read the journal, and say what this session of the run has to do.

    A journal that holds this plan's run resumes it: its run id and key (hence its
    clientTokens) are kept, and the steps it finished are left out — failed ones too when
    the service refused them for good, unless `retry_failed`. Refused, before anything
    is sent: a journal of another plan (`PlanChanged`, unless `new_run`), a run that was
    sent to another `identity` (`TargetChanged`), and tokens that this fleetrel would
    compute differently from the ones the run already sent. For a plan with `targets:`,
    `identity` maps each target to where it points (None: a resume takes the journal's,
    checked by `check_identity` once clients are built), and `only` limits this session
    to some targets (the others' steps are neither sent nor counted as left to do now).
    `shard` (`fleetrel.shards.Shard.header`) marks a shard's own journal: resuming it as
    another shard, or as the whole run, is refused (`ShardMismatch`), and so is the reverse.

    The run's other journals (the whole run's and its shards', `fleetrel.shards.run_journals`)
    are read too. A session that would start a new journal while the run is held in
    another layout's is refused (`LayoutChanged`), naming them, unless `new_run`; a new
    run (first or `new_run`) keeps the clientToken of every step that any of them sent
    without hearing a final answer, when its request is unchanged, and `new_run` sets the
    other layouts' journals aside with its own.
    """
    steps = plan.steps()
    created = not journal_path.exists()
    journal = Journal.open(journal_path)
    opened = False
    try:
        state = _prior_state(journal_path, plan, steps, new_run=new_run)
        layout = layout_of(journal_path, shard)
        # the run's other journals: read whole when this session starts a run (it carries their
        # open steps' tokens), only their headers for a resume (their plan and places), so a
        # shard's resume does not replay every sibling's journal
        read = _replayed if state is None or new_run else _header_only
        others = [(path, read(path)) for path in run_journals(journal_path) if path != journal_path]
        clashing = [path for path, _ in others if path in other_layouts(journal_path, layout)]
        carried: dict[str, str] = {}
        if state is None or new_run:
            earlier = [other for _, other in others if other is not None]
            carried = _tokens_to_carry([s for s in (state, *earlier) if s is not None], steps)
        if new_run:
            running = [str(path) for path in clashing if is_locked(path)]
            if running:
                raise LayoutChanged(f"{journal_path}: a fleetrel run holds {', '.join(running)} now: "
                                    "start a new run once it has stopped")
            # keep the old run's journals (and keys) under their run ids; this one renamed while we hold its lock
            if journal_path.stat().st_size:
                _set_aside(journal_path, state.run_id if state else str(uuid.uuid4()))
            for path, other in others:
                if path in clashing:
                    _set_aside(path, other.run_id if other else str(uuid.uuid4()))
            journal.close()
            journal = Journal.open(journal_path)
            state = None
        elif state is None and clashing:
            raise LayoutChanged(_layout_changed(journal_path, shard, clashing))
        elif state is None:
            # a shard's first session beside its siblings: they hold the run, so its plan is theirs
            changed = [(path, other) for path, other in others if other is not None and other.plan_digest != plan.digest]
            if changed:
                path, other = changed[0]
                diffs = plan_differences(other, steps)
                raise PlanChanged(
                    f"{journal_path}: this run's other shards hold another version of plan {plan.plan!r} "
                    f"({path}, run {other.run_id}): {'; '.join(diffs[:5]) or 'changed'}"
                    f"{f' and {len(diffs) - 5} more' if len(diffs) > 5 else ''}. A shard that started now would "
                    "send what they finished again, under other clientTokens, where targets moved between shards. "
                    "Restore the plan to run it, or start a new run of every shard (--new-run)")
        if state is not None:
            mismatch = _shard_mismatch(journal_path, state.header.get("shard"), shard)
            if mismatch:
                raise ShardMismatch(mismatch)
        if state is not None and identity and state.identity:
            moved = _moved(state.identity, identity)
            if moved:
                raise TargetChanged(_target_changed(journal_path, state.run_id, state.header.get("plan"),
                                                    state.identity, moved, identity))
        if identity and not new_run:
            _refuse_places_of_other_targets(journal_path, plan, identity, others)
        if state is None:
            key = new_run_key()
            write_run_key(journal_path, key)
            scheme: int | None = PLACE_SCHEME
        else:
            scheme = state.header.get("token_scheme")
            key = read_run_key(journal_path) if scheme in (KEYED_SCHEME, PLACE_SCHEME) else None
        done = _finished(state, retry_failed)
        todo = [s for s in steps if s.key not in done and (only is None or s.target in only)]
        retried = {s.key for s in todo}
        failed = Outcome.FAILED
        failed_before = {k for k, r in state.steps.items() if r.outcome == failed} - retried if state else set()
        session = Session(plan=plan, steps=steps, journal=journal, run_id=state.run_id if state else str(uuid.uuid4()),
                          prior=state, todo=todo, failed_before=failed_before, target=dict(target or {}),
                          identity=merged_places(state.identity if state else None, identity), key=key,
                          carried=carried if state is None else dict(state.header.get("carried_tokens", {})),
                          only=only, shard=shard, scheme=scheme)
        if state is not None:
            _check_tokens(session, state)
        opened = True
        yield session
    finally:
        if created and not opened and journal_path.exists() and not journal_path.stat().st_size:
            journal_path.unlink()  # refused before it held anything: leave no empty journal behind
        journal.close()


def _refuse_places_of_other_targets(path: Path, plan: ReleasePlan, identity: dict[str, Any],
                                    others: list[tuple[Path, RunState | None]]) -> None:
    """Refuse (`TargetChanged`) a target that now points where another journal of this run
    (another shard's, same plan) recorded another target: the run already acted there,
    under that target's steps and tokens, and would act again under these."""
    if not all(isinstance(v, dict) for v in identity.values()):
        return  # one target: nothing else of the run can point at its place
    claimed: dict[str, tuple[str, Path]] = {}
    for other_path, other in others:
        if other is None or other.plan_digest != plan.digest or not other.identity:
            continue
        for name, place in other.identity.items():
            if isinstance(place, dict) and place.get("account"):
                claimed.setdefault(place_id(place), (name, other_path))
    for name, place in identity.items():
        found = claimed.get(place_id(place)) if place.get("account") else None
        if found is not None and found[0] != name:
            raise TargetChanged(
                f"{path}: target {name} now points at account {place['account']} in {place.get('region')}, where "
                f"this run already sent target {found[0]}'s steps ({found[1]}). One place, two targets: the same "
                "versions would be sent there again under other clientTokens. Point each target where it went, "
                "or start a new run (--new-run)")


def _replayed(path: Path) -> RunState | None:
    try:
        return replay(path)
    except JournalError:
        return None  # damaged or not a journal: nothing to carry from it


def _header_only(path: Path) -> RunState | None:
    """A journal's header as a RunState (its plan digest and the places its first session
    recorded), without reading its records."""
    header = read_header(path)
    return None if header is None else RunState(path=path, header=header, identity=header.get("identity"))


def _set_aside(path: Path, run_id: str) -> None:
    """Keep a replaced run's journal (and key) beside it, under its run id."""
    for old in (path, run_key_path(path)):
        if old.exists():
            os.replace(old, old.with_name(f"{path.name}.{run_id}{old.name[len(path.name):]}"))


def _layout_changed(path: Path, shard: dict[str, Any] | None, clashing: list[Path]) -> str:
    from fleetrel.shards import shard_of_path

    def layout(p: Path) -> str:
        found = shard_of_path(p)
        return f"--shard {found[1]}" if found else "the whole run (no --shard)"

    held = "; ".join(f"{p} ({layout(p)})" for p in clashing)
    mine = f"--shard {shard['index']}/{shard['count']}" if shard else "the whole run"
    return (f"{path}: this run was started in another layout and is held in {held}. Running it as {mine} now "
            "would send again what those journals finished, and their unfinished steps under other clientTokens. "
            "Resume it as it was started (the same --shard, or none), or start a new run with --new-run "
            "(those journals are kept aside, and every step they left unfinished keeps its clientToken)")


def _finished(state: RunState | None, retry_failed: bool) -> set[str]:
    """Steps a resume does not send: succeeded, skipped, and failed for good (unless
    `retry_failed`). A failure that was not permanent (throttle or server-error retries
    ran out) is sent again by a plain resume."""
    if state is None:
        return set()
    done, failed = {Outcome.SUCCEEDED, Outcome.SKIPPED}, Outcome.FAILED
    return {key for key, rec in state.steps.items()
            if rec.outcome in done or (rec.outcome == failed and not retry_failed and rec.permanent is not False)}


def carried_key(place: dict[str, Any], step: Step, digest: str) -> str:
    """How a carried token is filed: the step's place, package and version, and its
    request's digest, so that only the very same request in the very same place takes it."""
    return f"{place_key(place, step)}@{digest}"


def _tokens_to_carry(states: list[RunState], steps: list[Step]) -> dict[str, str]:
    """A new run keeps, from every earlier journal of this run (`states`: the journal it
    replaces, and the run's other layouts'), the tokens of the steps they left open: sent
    (or carried) without a final answer — no outcome, or a failure that was not final
    (throttles or server errors ran out, a connection dropped). Such a call may have been
    applied, and the same token makes the service answer it as the same call instead of
    applying the step a second time. Filed by place and request (`carried_key`), so a step
    keeps its token when its target moves to another shard or is renamed, and nothing
    else takes it; by step key, with the request compared here, where a journal recorded
    no places. A step that finished is not carried: a later run's same request must be
    applied again, not answered from the service's idempotency cache."""
    if not states:
        return {}  # a run's first journal (and its digests of 100k steps are not free)
    new_digests = step_digests(steps)
    out: dict[str, str] = {}
    for state in states:
        old_digests: dict[str, str] = state.header.get("step_digests", {})
        finished: set[str] = set()
        for key, rec in state.steps.items():
            target, package, version, is_default = parse_step_key(key)
            place = place_of(state.identity, target)  # a step sent has its target's place recorded
            step = Step(package, version, target=target, action="SET_DEFAULT" if is_default else None)
            filed = carried_key(place, step, old_digests.get(key, "")) if place else key
            if rec.outcome is None or (rec.outcome == Outcome.FAILED and rec.permanent is False):
                if rec.client_token and (place or new_digests.get(key) == old_digests.get(key)):
                    out.setdefault(filed, rec.client_token)
            else:
                finished.update((filed, key))
        # what that run carried and did not finish (steps it never sent, in or out of its scope)
        for filed, token in state.header.get("carried_tokens", {}).items():
            by_place = "@" in filed
            if filed not in finished and (by_place or new_digests.get(filed) == old_digests.get(filed)):
                out.setdefault(filed, token)
    return out


def _check_tokens(session: Session, state: RunState) -> None:
    """The steps left to send that were sent before must get the token they were sent with."""
    differ = [s.key for s in session.todo
              if (rec := state.steps.get(s.key)) is not None and rec.client_token
              and rec.client_token != session.token(s)]
    if differ:
        raise JournalError(
            f"{session.path}: this fleetrel computes other clientTokens than run {state.run_id} sent for "
            f"{len(differ)} step(s) (first: {differ[0]}); resuming would apply them again under new tokens. "
            f"Finish the run with the fleetrel that started it ({state.header.get('fleetrel_version', '?')}), "
            "or start a new run.")


def _moved(before: dict[str, Any], now: dict[str, Any]) -> list[str | None]:
    """Targets that point elsewhere now ([None] for a single-target run that moved).
    A plan with targets records {name: place}; a session of some targets records only those."""
    if all(isinstance(v, dict) for v in (*before.values(), *now.values())) and (before or now):
        return [name for name in now if name in before and not same_place(before[name], now[name])]
    return [None] if not same_place(before, now) else []


def _target_changed(path: Path, run_id: str, plan: str | None, before: dict[str, Any], moved: list[str | None],
                    identity: dict[str, Any], *, resuming: bool = True) -> str:
    def show(where: dict[str, str]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(where.items()) if v) or "the default AWS configuration"

    before = before or {}
    if moved == [None]:
        what = f"was sent to {show(before)}, but this session would send it to {show(identity)}"
    else:
        name = moved[0]
        what = (f"sent target {name} to {show(before[name])}, but it now points at {show(identity[name])}"
                + (f" (and {len(moved) - 1} more target(s) moved)" if len(moved) > 1 else ""))
    why = ("Resuming would report steps as done that were never sent there" if resuming else
           "Going on would send the rest of its steps to another place than the first ones (its clients were built "
           "again, by a restarted actor)")
    return (f"{path}: run {run_id} of plan {plan!r} {what}. {why}. Point the run at the same target again, or give "
            "the other target its own run with another journal (--journal).")


def _prior_state(path: Path, plan: ReleasePlan, steps: list[Step], *, new_run: bool) -> RunState | None:
    if path.stat().st_size == 0:
        return None
    try:
        state = replay(path)
    except JournalError:
        if new_run:  # a damaged journal is kept aside, not read
            return None
        raise
    # The same run when the same requests are planned, in any order (the clientTokens do not
    # depend on order either). The same plan digest says so at once (one hash over every
    # request; the header's step digests were taken from those very requests); otherwise
    # compared step by step, so that journals of every fleetrel version, whatever their
    # plan digest (an early one hashed the requests in plan order), resume.
    if new_run or state.header.get("plan_digest") == plan.digest:
        return state
    if state.header.get("step_digests") != step_digests(steps):
        diffs = plan_differences(state, steps)
        shown = "\n  ".join(diffs[:20]) + (f"\n  ... and {len(diffs) - 20} more" if len(diffs) > 20 else "")
        raise PlanChanged(
            f"{path}: this journal is for another version of plan {state.header.get('plan')!r} "
            f"(run {state.run_id}):\n  {shown}\n"
            "Start a new run (the old journal is kept, renamed), or restore the plan to resume."
        )
    return state
