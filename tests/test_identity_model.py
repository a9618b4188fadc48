"""The model test of "one run, one identity" (issue 21): a Hypothesis state machine over
runs in every layout, kills, stops, plan edits and undos, on `fleetrel.testing`'s fakes
and virtual clock, checking after every step what must always hold:

1. one clientToken per (run, account, region, package, version), whatever layout sent it;
2. every call lands where the journal of the session that sent it says its target is
   ("2": the place the journal first recorded for the target; "2n": the journal records
   one at all; "2r": one place per target for the whole run, across journals and layouts);
3. at most one terminal record per step in each journal file;
4. an undo changes only places and versions that its run changed;
5. a run that finished complete leaves every place in the state its plan says (its
   listed entries; what a selector matched is checked by 1 to 4 only);
6. the fleet guard (issue 24): no session of a plan with `guard: {deprecate_max_devices:
   N}` sends a DEPRECATE of a version more than N things ran in that place when it started
   (the devices each place's fake reports; a refused session sends nothing at all).

The world is a few places (account, region), each one `FakeIoT`. A plan's `targets:`
name places; the client mapping a run gets is built from the plan it is given (target
name → the fake of the target's place), so an undo plan, or a plan whose target moved,
acts wherever its targets point *now*: the hazard this test is about. A "run" is what
the model started: the first run, or a `new_run`, until the next `new_run`.

Refusals (JournalError and its PlanChanged/TargetChanged/ShardMismatch, ShardError,
AwsSetupError, UndoError, PlanError) are allowed and noted; sending wrongly is not.

Every call into fleetrel is in the adapters at the top (`run_layout`, `undo_plan`,
`places_named`, `layout_journal`, `layout_targets`): the API is changing under this test
(issue 21 turns `run(plan, client=..., targets=..., shard=...)` into
`run(plan, where=Where(...), ...)`); only they should need to change.

    FLEETREL_MODEL_EXAMPLES=300          examples (default 100: well under a minute when it passes)
    FLEETREL_MODEL_INVARIANTS=1,2,2n,2r,3,4,5,6   the invariants checked (default: all)
    FLEETREL_MODEL_LAYOUTS=whole,subset,shard    the layouts runs take (default: all)
    FLEETREL_MODEL_STEPS=16              rules per example, at most
    FLEETREL_MODEL_RULES_OFF=add_target,add_entry   rules made no-ops (to look past a known violation)
    python benchmarks/model.py           10,000 examples, timed (the nightly run)
"""
from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from hypothesis import HealthCheck, event, note, settings, strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fleetrel import RunOptions, Stop, load_plan, run
from fleetrel.aws import AwsSetupError
from fleetrel.events import SESSION_STARTS, TERMINAL, Status
from fleetrel.fleetcheck import FleetRefused
from fleetrel.journal import JournalError
from fleetrel.plan import ReleasePlan
from fleetrel.plan.diagnostics import PlanError
from fleetrel.service import TARGET_STATUS
from fleetrel.shards import Shard, ShardError, shard_journal_path
from fleetrel.testing import DROP, HANG, FakeIoT, run_virtual
from fleetrel.undo import UndoError, build_undo
from support import journal_records

Place = tuple[str, str]  # (account, region)

# ---------------------------------------------------------------------------------------
# Adapters: every call into fleetrel's run/undo API is here (issue 21 changes the API).
# ---------------------------------------------------------------------------------------

if "where" in inspect.signature(run).parameters:  # issue 21's API: run(plan, Where(...), client=..., ...)
    from fleetrel.where import Where, WhereError
else:  # the API before it: run(plan, client=..., journal_path=..., targets=..., shard=...)
    Where, WhereError = None, ShardError

#: What a layout or an undo may refuse with: allowed, and noted.
REFUSALS = (JournalError, ShardError, AwsSetupError, UndoError, PlanError, WhereError, FleetRefused)


def clients_for(plan: ReleasePlan, world: dict[Place, FakeIoT]) -> dict[str, FakeIoT]:
    """Each target of `plan` → the fake of the place it points at now."""
    return {spec.name: world[(spec.account, spec.region)] for spec in plan.target_specs()}


async def run_layout(plan: ReleasePlan, world: dict[Place, FakeIoT], journal: Path, *,
                     targets: list[str] | None = None, shard: tuple[int, int] | None = None,
                     new_run: bool = False, stop: Stop | None = None) -> Any:
    """Run (or resume) `plan` in one layout: the whole run, `targets` (a --target
    subset) or `shard` (index, count); its clients are the places its targets point at."""
    clients, options = clients_for(plan, world), RunOptions(new_run=new_run)
    if Where is not None:
        where = Where(targets=frozenset(targets or ()), shard=Shard(*shard) if shard else None, journal_path=journal)
        return await run(plan, where, client=clients, options=options, stop=stop)
    return await run(plan, client=clients, journal_path=journal, targets=targets,
                     shard=Shard(*shard) if shard else None, options=options, stop=stop)


def layout_journal(journal: Path, shard: tuple[int, int] | None) -> Path:
    """The journal file a session of that layout writes."""
    return shard_journal_path(journal, Shard(*shard)) if shard else journal


def layout_targets(plan: ReleasePlan, targets: list[str] | None, shard: tuple[int, int] | None) -> list[str]:
    """The targets a session of that layout answers for."""
    if shard:
        return Shard(*shard).targets(plan)
    return list(targets) if targets else [spec.name for spec in plan.target_specs()]


def undo_plan(journal: Path, into: Path) -> ReleasePlan | None:
    """The undo of the run journalled at `journal`, as `fleetrel undo` writes it (its
    targets from the run's plan file as it is now), loaded as a plan; None: nothing to undo."""
    undo = build_undo(journal)
    if undo.plan is None:
        return None
    into.write_text(undo.text())
    return load_plan(into)


def places_named(records: list[dict[str, Any]]) -> dict[str, Place]:
    """The place a journal records for each target: the first session record that
    names the target's account and region (later sessions of a run that moved a target
    do not move the run)."""
    named: dict[str, Place] = {}
    for record in records:
        if record.get("event") not in SESSION_STARTS:
            continue
        for target, where in (record.get("identity") or {}).items():
            if isinstance(where, dict) and where.get("account") and where.get("region") and target not in named:
                named[target] = (str(where["account"]), str(where["region"]))
    return named


# ---------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------

ACCOUNTS = ("111111111111", "222222222222", "333333333333")
REGIONS = ("us-east-1", "eu-west-1")
PLACES: list[Place] = [(a, r) for r in REGIONS for a in ACCOUNTS]
KEYS = ("fw/1", "fw/2", "app/1")
# None: the version does not exist there (one chance in seven)
STATUSES = ("DRAFT", "PUBLISHED", "DEPRECATED", "DRAFT", "PUBLISHED", "DEPRECATED", None)
NAMES = "abcdef"
ACTIONS = ("PUBLISH", "DEPRECATE")
INVARIANTS = set(os.environ.get("FLEETREL_MODEL_INVARIANTS", "1,2,2n,2r,3,4,5,6").split(","))
#: Rules made no-ops, to look past a violation already known (e.g. add_target,add_entry,add_selector)
RULES_OFF = set(filter(None, os.environ.get("FLEETREL_MODEL_RULES_OFF", "").split(",")))


def _note(text: str) -> None:
    """Hypothesis's note (printed with a falsifying example); nothing outside a test run."""
    try:
        note(text)
    except InvalidArgument:
        pass


def _event(text: str) -> None:
    try:
        event(text)
    except InvalidArgument:
        pass


def _scratch_root() -> str | None:
    shm = Path("/dev/shm")  # tmpfs: the journal's fsyncs cost nothing there
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@dataclass(frozen=True)
class Fault:
    """The run's `at`-th update call (counted across every place) hangs or drops (is
    applied, and its answer lost); there the run is stopped (Stop: cancelled calls stay
    unfinished) or crashes (the journal is left as a killed process leaves it)."""

    at: int
    kind: str  # "hang" | "drop"
    ending: str  # "stop" | "crash"


@dataclass(frozen=True)
class Whole:
    def __repr__(self) -> str:
        return "Whole()"


@dataclass(frozen=True)
class Subset:
    """`targets=`: the plan's targets whose bit is set in `mask` (in plan order)."""

    mask: int


@dataclass(frozen=True)
class ShardOf:
    index: int
    count: int


_LAYOUTS = {"whole": st.just(Whole()), "subset": st.builds(Subset, st.integers(1, 7)),
            "shard": st.integers(1, 4).flatmap(lambda n: st.builds(ShardOf, st.integers(1, n), st.just(n)))}
LAYOUTS = st.one_of(*(_LAYOUTS[name] for name in os.environ.get("FLEETREL_MODEL_LAYOUTS", "whole,subset,shard").split(",")))
FAULTS = st.one_of(st.none(), st.builds(Fault, st.integers(1, 6), st.sampled_from(("hang", "drop")),
                                        st.sampled_from(("stop", "crash"))))


class Crashed(Exception):
    """A run the model killed."""


class Trip:
    """Counts one run's update calls across every place, and springs its fault."""

    def __init__(self, fault: Fault | None, stop: Stop, on_crash: Any) -> None:
        self.fault, self.stop, self.on_crash = fault, stop, on_crash
        self.count = 0
        self.scope: anyio.CancelScope | None = None
        self.crashed = False

    def due(self) -> bool:
        self.count += 1
        return self.fault is not None and self.count == self.fault.at

    def spring(self) -> None:
        assert self.fault is not None
        if self.fault.ending == "crash":
            self.crashed = True
            self.on_crash()  # the journal as it is now is what a killed process leaves
            assert self.scope is not None
            self.scope.cancel()
        elif self.fault.kind == "hang":
            self.stop.now()  # a stop that waited for the hanging call would wait forever
        else:
            self.stop.request("interrupted")


class PlaceIoT(FakeIoT):
    """A place's fake, its faults sprung by the run's Trip."""

    trip: Trip | None = None

    async def update_package_version(self, **request: Any) -> dict[str, Any]:
        trip = self.trip
        if trip is None or not trip.due():
            return await super().update_package_version(**request)
        key = f"{request['packageName']}/{request['versionName']}"
        assert trip.fault is not None
        if trip.fault.kind == "hang":
            self.script(key, HANG)
            trip.spring()
            return await super().update_package_version(**request)
        if trip.fault.ending == "stop":
            self.script(key, DROP)
            trip.spring()
            return await super().update_package_version(**request)
        try:  # applied (or refused), and the process dies before it hears the answer
            await super().update_package_version(**request)
        except Exception:  # noqa: BLE001 - the answer is lost either way
            pass
        trip.spring()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


@dataclass
class CallSeen:
    rule: int
    run: str  # the model's run
    journal: str  # the journal file the session wrote
    run_id: str | None  # that journal's run id
    target: str | None
    place: Place
    key: str
    token: str | None
    applied: bool
    named: Place | None  # the place the journal records for the target


class IdentityModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="fleetrel-model-", dir=_scratch_root()))
        self.plan_path = self.dir / "org.yaml"
        self.journal = self.dir / "org.journal.jsonl"
        self.world: dict[Place, PlaceIoT] = {}
        self.targets: list[dict[str, str]] = []
        self.entries: list[dict[str, Any]] = []
        self.run_no = 1  # the model's run
        self.rules = 0
        self.undos = 0
        self.calls: list[CallSeen] = []
        self.binding: dict[tuple[str, str], Place] = {}  # (model run, target) -> place of its first call
        self.changed_by: dict[str, set[tuple[Place, str]]] = {}  # run id -> (place, key) it applied
        self.applied_by: dict[tuple[Place, str | None], str] = {}  # (place, token) -> the key it applied
        self.undone: set[tuple[Place, str]] = set()  # changed by an undo or by hand: invariant 5 leaves them
        self.violations: dict[str, list[str]] = {name: [] for name in ("2n", "4", "5", "6")}
        self.guard: int | None = None  # the plan's guard.deprecate_max_devices

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the plan ------------------------------------------------------------------------

    def plan_data(self) -> dict[str, Any]:
        data = {"plan": "org", "limits": {"rate": 100, "burst": 10, "concurrency": 2},
                "targets": [dict(t) for t in self.targets], "versions": [dict(e) for e in self.entries]}
        if self.guard is not None:
            data["guard"] = {"deprecate_max_devices": self.guard}
        return data

    def write_plan(self) -> ReleasePlan | None:
        """Write the plan file; None (and the file left as it was) if fleetrel refuses it."""
        before = self.plan_path.read_text() if self.plan_path.exists() else None
        self.plan_path.write_text(yaml.safe_dump(self.plan_data(), sort_keys=False))
        try:
            return load_plan(self.plan_path)
        except PlanError as exc:
            _note(f"  plan refused: {str(exc).splitlines()[0]}")
            if before is not None:
                self.plan_path.write_text(before)
            return None

    def place_of(self, name: str) -> Place:
        target = next(t for t in self.targets if t["name"] == name)
        return (target["account"], target["region"])

    @initialize(seed=st.lists(st.sampled_from(STATUSES), min_size=len(PLACES) * len(KEYS),
                              max_size=len(PLACES) * len(KEYS)),
                places=st.lists(st.integers(0, len(PLACES) - 1), min_size=1, max_size=3, unique=True),
                entries=st.lists(st.tuples(st.integers(0, len(KEYS) - 1), st.sampled_from(ACTIONS)),
                                 min_size=1, max_size=3, unique_by=lambda e: e[0]))
    def start(self, seed: list[str | None], places: list[int], entries: list[tuple[int, str]]) -> None:
        statuses = iter(seed)
        for account, region in PLACES:
            versions = {key: status for key in KEYS if (status := next(statuses)) is not None}
            self.world[(account, region)] = PlaceIoT(versions, account=account, region=region, devices={},
                                                     endpoint_url=f"https://iot.{region}.fake.invalid")
        self.targets = [{"name": NAMES[i], "region": PLACES[p][1], "account": PLACES[p][0]}
                        for i, p in enumerate(places)]
        for key_index, action in entries:
            package, version = KEYS[key_index].split("/")
            self.entries.append({"package": package, "version": version, "action": action})
        for fake in self.world.values():
            fake.versions.setdefault("app/0", {"status": "PUBLISHED", "attributes": {}})  # only a selector sends it
        assert self.write_plan() is not None

    # -- edits ---------------------------------------------------------------------------

    def _edit(self, change: Any) -> None:
        targets, entries = [dict(t) for t in self.targets], [dict(e) for e in self.entries]
        change()
        if self.write_plan() is None:
            self.targets, self.entries = targets, entries

    @rule(by=st.integers(1, 2))
    def rotate_targets(self, by: int) -> None:
        if "rotate_targets" in RULES_OFF:
            return
        self._edit(lambda: self.targets.__setitem__(slice(None), self.targets[by:] + self.targets[:by]))

    @rule(place=st.integers(0, len(PLACES) - 1))
    def add_target(self, place: int) -> None:
        if "add_target" in RULES_OFF:
            return
        used = {(t["account"], t["region"]) for t in self.targets}
        names = [n for n in NAMES if n not in {t["name"] for t in self.targets}]
        if PLACES[place] in used or not names:
            return
        self._edit(lambda: self.targets.append({"name": names[0], "region": PLACES[place][1],
                                                "account": PLACES[place][0]}))

    @rule(key=st.integers(0, len(KEYS) - 1), action=st.sampled_from(ACTIONS),
          only=st.none() | st.integers(0, 5))
    def add_entry(self, key: int, action: str, only: int | None) -> None:
        """A new entry, for every target or `only` one (its index in the plan's targets)."""
        if "add_entry" in RULES_OFF:
            return
        package, version = KEYS[key].split("/")
        if any((e.get("package"), e.get("version")) == (package, version) for e in self.entries):
            return
        entry: dict[str, Any] = {"package": package, "version": version, "action": action}
        if only is not None:
            entry["targets"] = [self.targets[only % len(self.targets)]["name"]]
        self._edit(lambda: self.entries.append(entry))

    @rule(which=st.integers(0, 5), account=st.integers(0, len(ACCOUNTS) - 1))
    def move_target(self, which: int, account: int) -> None:
        """Point a target (its index in the plan) at another account, same region."""
        if "move_target" in RULES_OFF:
            return
        moved = self.targets[which % len(self.targets)]
        place = (ACCOUNTS[account], moved["region"])
        if place in {(t["account"], t["region"]) for t in self.targets}:
            return
        self._edit(lambda: moved.__setitem__("account", ACCOUNTS[account]))

    @rule(package=st.sampled_from(("app", "fw")), status=st.sampled_from(("PUBLISHED", "DEPRECATED", "DRAFT")))
    def add_selector(self, package: str, status: str) -> None:
        """A `select:` entry: the package's versions in `status`, moved on (DRAFT and
        DEPRECATED are published, PUBLISHED deprecated)."""
        if "add_selector" in RULES_OFF:
            return
        if any("select" in e for e in self.entries):
            return
        action = "DEPRECATE" if status == "PUBLISHED" else "PUBLISH"
        self._edit(lambda: self.entries.append({"select": {"package": package, "status": status}, "action": action}))

    @rule(place=st.integers(0, len(PLACES) - 1), key=st.integers(0, len(KEYS) - 1),
          status=st.sampled_from(("PUBLISHED", "DEPRECATED", "DRAFT")))
    def change_catalog(self, place: int, key: int, status: str) -> None:
        """Someone else changes a version's status (or creates it) under the plan."""
        if "change_catalog" in RULES_OFF:
            return
        fake = self.world[PLACES[place]]
        fake.versions.setdefault(KEYS[key], {"status": status, "attributes": {}})["status"] = status
        self.undone.add((PLACES[place], KEYS[key]))
        _note(f"  by hand: {KEYS[key]} is {status} at {PLACES[place]}")

    @rule(limit=st.none() | st.integers(0, 1))
    def set_guard(self, limit: int | None) -> None:
        """The plan's guard: refuse a DEPRECATE of a version more than `limit` things run."""
        if "set_guard" in RULES_OFF:
            return
        before = self.guard
        self.guard = limit
        if self.write_plan() is None:
            self.guard = before

    @rule(place=st.integers(0, len(PLACES) - 1), key=st.integers(0, len(KEYS) - 1), things=st.integers(0, 2))
    def change_fleet(self, place: int, key: int, things: int) -> None:
        """Devices in a place start or stop running a version (its `$package` shadow)."""
        if "change_fleet" in RULES_OFF:
            return
        self.world[PLACES[place]].devices[KEYS[key]] = things
        _note(f"  fleet: {things} thing(s) run {KEYS[key]} at {PLACES[place]}")

    @rule(limit=st.integers(0, 1), things=st.integers(0, 2), pick=st.integers(0, 7), layout=LAYOUTS,
          fault=FAULTS)
    def busy_then_run(self, limit: int, things: int, pick: int, layout: Whole | Subset | ShardOf,
                      fault: Fault | None) -> None:
        """The guard's hazard as one rule, so that sequences meet it often: a version an
        entry deprecates runs on `things` devices in one target's place, the plan guards
        at most `limit`, then the same command (in any layout)."""
        deprecating = [e for e in self.entries if e.get("action") == "DEPRECATE" and "package" in e]
        if deprecating:
            entry = deprecating[pick % len(deprecating)]
            target = self.targets[pick % len(self.targets)]
            self.world[(target["account"], target["region"])].devices[f"{entry['package']}/{entry['version']}"] = things
        self.set_guard(limit)
        self.run_plan(layout, False, fault)

    # -- runs ----------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.dir.iterdir() if p.is_file()}

    def _restore(self, snapshot: dict[str, bytes]) -> None:
        for path in self.dir.iterdir():
            if path.is_file() and path.name not in snapshot:
                path.unlink()
        for name, data in snapshot.items():
            path = self.dir / name
            if not path.exists() or path.read_bytes() != data:
                path.write_bytes(data)

    def _go(self, plan: ReleasePlan, journal: Path, *, run: str, targets: list[str] | None = None,
            shard: tuple[int, int] | None = None, new_run: bool = False, fault: Fault | None = None) -> Any:
        """One session, its calls recorded; returns its result, "crashed" or the refusal."""
        self.rules += 1
        written = layout_journal(journal, shard)
        clients = clients_for(plan, self.world)
        target_at = {(fake.account, fake.meta.region_name): name for name, fake in clients.items()}
        marks = {place: len(fake.log) for place, fake in self.world.items()}
        fleet = {place: dict(fake.devices or {}) for place, fake in self.world.items()}  # as the session starts
        limit = plan.guard.deprecate_max_devices
        stop, snapshot = Stop(), {}
        trip = Trip(fault, stop, lambda: snapshot.update(self._snapshot()))
        for fake in self.world.values():
            fake.trip = trip

        async def main() -> Any:
            with anyio.CancelScope() as scope:
                trip.scope = scope
                return await run_layout(plan, self.world, journal, targets=targets, shard=shard,
                                        new_run=new_run, stop=stop)
            return "crashed"

        try:
            outcome: Any = run_virtual(main)
        except REFUSALS as exc:
            outcome = exc
        finally:
            for fake in self.world.values():
                fake.trip = None
        if trip.crashed:
            self._restore(snapshot)
            outcome = "crashed"
        records = journal_records(written)
        run_id = records[0].get("run_id") if records else None
        named = places_named(records)
        for place, fake in self.world.items():
            for call in fake.log[marks[place]:]:
                target = target_at.get(place)
                seen = CallSeen(self.rules, run, str(written.name), run_id, target, place, call["key"],
                                call["token"], call["applied"], named.get(target) if target else None)
                self.calls.append(seen)
                if target is not None:
                    self.binding.setdefault((run, target), place)
                    if named.get(target) is None:
                        self.violations["2n"].append(
                            f"rule {self.rules}: {written.name} (run {run_id}) records no place for target "
                            f"{target}, yet a call for {call['key']} went to {place}")
                # what a run changed: what its calls applied, and what a call with a token it
                # carried (a new run's, or a resend's) had applied under that token before
                if call["applied"] and call["token"]:
                    self.applied_by[(place, call["token"])] = call["key"]
                devices = fleet[place].get(call["key"], 0)
                if limit is not None and call["request"].get("action") == "DEPRECATE" and devices > limit:
                    self.violations["6"].append(
                        f"rule {self.rules}: {plan.plan} guards at most {limit} device(s), yet sent a DEPRECATE of "
                        f"{call['key']} to {place}, which {devices} thing(s) ran")
                if run_id is not None and (call["applied"] or (place, call["token"]) in self.applied_by):
                    self.changed_by.setdefault(run_id, set()).add((place, call["key"]))
        shown = outcome if isinstance(outcome, str) else (
            f"{type(outcome).__name__}: {str(outcome).splitlines()[0][:160]}" if isinstance(outcome, Exception)
            else f"{outcome.status} (succeeded {outcome.succeeded}, skipped {outcome.skipped}, failed {outcome.failed})")
        sent = sum(len(fake.log) - marks[p] for p, fake in self.world.items())
        # the outcomes' spread (--hypothesis-show-statistics): a model whose runs are all refused proves nothing
        _event(("undo" if run.startswith("undo") else "run") + ": " + (outcome if isinstance(outcome, str) else type(outcome).__name__
                                if isinstance(outcome, Exception) else f"{outcome.status}"
                                + (", sent" if sent else ", nothing sent")))
        _note(f"  [{self.rules}] {run} -> {written.name}: {shown}; {sent} call(s)")
        return outcome

    @rule(layout=LAYOUTS, new_run=st.booleans(), fault=FAULTS)
    def run_plan(self, layout: Whole | Subset | ShardOf, new_run: bool, fault: Fault | None) -> None:
        plan = load_plan(self.plan_path)
        targets = shard = None
        if isinstance(layout, Subset):
            names = [t["name"] for i, t in enumerate(self.targets) if layout.mask >> i & 1] or [self.targets[0]["name"]]
            targets = names
        elif isinstance(layout, ShardOf):
            shard = (layout.index, layout.count)
        run_name = f"run{self.run_no + 1}" if new_run else f"run{self.run_no}"
        outcome = self._go(plan, self.journal, run=run_name, targets=targets, shard=shard,
                           new_run=new_run, fault=fault)
        if new_run and not isinstance(outcome, Exception):
            self.run_no += 1
        if getattr(outcome, "status", None) == Status.COMPLETE:
            self._check_complete(plan, layout_targets(plan, targets, shard), self.rules)

    @rule(layout=LAYOUTS, fault=FAULTS)
    def resume(self, layout: Whole | Subset | ShardOf, fault: Fault | None) -> None:
        """The same command again (or in another layout): run_plan without new_run, a rule
        of its own so that sequences hold more resumes."""
        self.run_plan(layout, False, fault)

    @rule(which=st.integers(0, 5), account=st.integers(0, len(ACCOUNTS) - 1), layout=LAYOUTS, fault=FAULTS)
    def move_then_resume(self, which: int, account: int, layout: Whole | Subset | ShardOf,
                         fault: Fault | None) -> None:
        """The hazard itself, as one rule so that sequences meet it often: a target
        pointed elsewhere, then the same command again."""
        self.move_target(which, account)
        self.run_plan(layout, False, fault)

    @rule(which=st.integers(0, 5), account=st.integers(0, len(ACCOUNTS) - 1), pick=st.integers(0, 7))
    def move_then_undo(self, which: int, account: int, pick: int) -> None:
        """A target pointed elsewhere, then an undo built from the plan file as it is now."""
        self.move_target(which, account)
        self.undo(pick)

    def _check_complete(self, plan: ReleasePlan, scope: list[str], rule_no: int) -> None:
        """Invariant 5, at the moment the run finished."""
        where = {spec.name: (spec.account, spec.region) for spec in plan.target_specs()}
        if plan.needs_expansion:  # what its selectors matched is the journal's: check the listed entries
            plan = ReleasePlan.model_validate({**self.plan_data(), "versions": [
                e for e in self.plan_data()["versions"] if "select" not in e]})
        for step in plan.steps():
            if step.target not in scope or step.action not in TARGET_STATUS:
                continue
            place = where[step.target]
            key = f"{step.package}/{step.version}"
            if (place, key) in self.undone:
                continue
            now = self.world[place].status(key)
            if now != TARGET_STATUS[step.action]:
                self.violations["5"].append(
                    f"rule {rule_no}: {plan.plan} finished complete, but {key} is {now} at {place} "
                    f"(target {step.target}), not {TARGET_STATUS[step.action]}")

    @rule(pick=st.integers(0, 7))
    def undo(self, pick: int) -> None:
        if "undo" in RULES_OFF:
            return
        journals = sorted(p for p in self.dir.iterdir()
                          if ".journal.jsonl" in p.name and not p.name.startswith("undo") and not p.name.endswith(".key"))
        if not journals:
            return
        source = journals[pick % len(journals)]
        records = journal_records(source)
        run_id = records[0].get("run_id") if records else None
        self.undos += 1
        try:
            plan = undo_plan(source, self.dir / f"undo-{self.undos}.yaml")
        except REFUSALS as exc:
            _note(f"  undo of {source.name} refused: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            _event(f"undo refused: {type(exc).__name__}")
            return
        if plan is None:
            _note(f"  undo of {source.name}: nothing to undo")
            return
        first = len(self.calls)
        outcome = self._go(plan, self.dir / f"undo-{self.undos}.journal.jsonl", run=f"undo{self.undos}")
        if getattr(outcome, "status", None) == Status.COMPLETE:
            self._check_complete(plan, layout_targets(plan, None, None), self.rules)
        changed = self.changed_by.get(run_id, set()) if run_id else set()
        for call in self.calls[first:]:
            if call.applied:
                self.undone.add((call.place, call.key))
                if (call.place, call.key) not in changed:
                    self.violations["4"].append(
                        f"rule {call.rule}: the undo of {source.name} (run {run_id}) changed {call.key} at "
                        f"{call.place} (target {call.target}), which that run never changed "
                        f"(it changed: {sorted(changed)})")

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def one_token_per_run_and_step(self) -> None:
        if "1" not in INVARIANTS:
            return
        tokens: dict[tuple[str, Place, str], dict[str, int]] = {}
        for call in self.calls:
            if call.token:
                tokens.setdefault((call.run, call.place, call.key), {}).setdefault(call.token, call.rule)
        twice = {k: v for k, v in tokens.items() if len(v) > 1}
        assert not twice, "invariant 1: more than one clientToken for one (run, place, step): " + "; ".join(
            f"{run} {place} {key}: {len(seen)} tokens (first sent in rules {sorted(seen.values())})"
            for (run, place, key), seen in twice.items())

    @invariant()
    def calls_land_where_the_journal_says(self) -> None:
        if "2" in INVARIANTS:
            wrong = [c for c in self.calls if c.named is not None and c.named != c.place]
            assert not wrong, "invariant 2: calls sent where their journal does not put their target: " + "; ".join(
                f"rule {c.rule}: {c.key} for target {c.target} went to {c.place}, but {c.journal} (run {c.run_id}) "
                f"records {c.named}" for c in wrong)
        if "2n" in INVARIANTS:
            assert not self.violations["2n"], "invariant 2n: " + "; ".join(self.violations["2n"][:3])
        if "2r" in INVARIANTS:
            moved = [c for c in self.calls if c.target is not None and self.binding[(c.run, c.target)] != c.place]
            assert not moved, "invariant 2r: one run, one place per target: " + "; ".join(
                f"rule {c.rule}: {c.run} sent {c.key} for target {c.target} to {c.place}, but that run sent the "
                f"target's first call to {self.binding[(c.run, c.target)]} ({c.journal})" for c in moved)

    @invariant()
    def one_terminal_record_per_step_per_journal(self) -> None:
        if "3" not in INVARIANTS:
            return
        for path in sorted(self.dir.iterdir()):
            if ".journal.jsonl" not in path.name or path.name.endswith(".key"):
                continue
            counts: dict[str, int] = {}
            for record in journal_records(path):
                if record.get("event") in TERMINAL:
                    counts[record["step"]] = counts.get(record["step"], 0) + 1
            twice = {k: n for k, n in counts.items() if n > 1}
            assert not twice, f"invariant 3: {path.name} has more than one terminal record for {twice}"

    @invariant()
    def undo_changes_only_what_the_run_changed(self) -> None:
        if "4" in INVARIANTS:
            assert not self.violations["4"], "invariant 4: " + "; ".join(self.violations["4"][:3])

    @invariant()
    def a_complete_run_leaves_its_plan_done(self) -> None:
        if "5" in INVARIANTS:
            assert not self.violations["5"], "invariant 5: " + "; ".join(self.violations["5"][:3])

    @invariant()
    def the_guard_holds_in_every_layout(self) -> None:
        if "6" in INVARIANTS:
            assert not self.violations["6"], "invariant 6: " + "; ".join(self.violations["6"][:3])


EXAMPLES = int(os.environ.get("FLEETREL_MODEL_EXAMPLES", "100"))

IdentityModel.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=int(os.environ.get("FLEETREL_MODEL_STEPS", "16")),
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True)

TestIdentityModel = pytest.mark.timeout(900)(IdentityModel.TestCase)


# ---------------------------------------------------------------------------------------
# The sequences the model found, as example tests (issue 21's report): each replays the
# shrunk rules on a fresh world, every version DRAFT, and checks every invariant.
# ---------------------------------------------------------------------------------------

ALL_DRAFT = ["DRAFT"] * (len(PLACES) * len(KEYS))


def replay_rules(places: list[int], entries: list[tuple[int, str]], *rules: tuple[str, dict[str, Any]],
                 seed: list[str | None] | None = None) -> IdentityModel:
    model = IdentityModel()
    try:
        model.start(seed=seed or ALL_DRAFT, places=places, entries=entries)
        for name, arguments in rules:
            getattr(model, name)(**arguments)
        for check in (model.one_token_per_run_and_step, model.calls_land_where_the_journal_says,
                      model.one_terminal_record_per_step_per_journal,
                      model.undo_changes_only_what_the_run_changed, model.a_complete_run_leaves_its_plan_done,
                      model.the_guard_holds_in_every_layout):
            check()
    finally:
        model.teardown()
    return model


def test_a_run_begun_whole_is_not_sent_again_as_a_shard_under_other_tokens():
    # before issue 21: the shard opened a journal of its own, a new run id, new tokens
    replay_rules([0], [(0, "PUBLISH")], ("run_plan", dict(layout=Whole(), new_run=False, fault=Fault(1, "hang", "crash"))),
                 ("run_plan", dict(layout=ShardOf(1, 1), new_run=False, fault=None)))


def test_a_target_pointed_elsewhere_is_not_resumed_there():
    # before issue 21: a client mapping recorded no place, so nothing was checked
    replay_rules([1], [(0, "PUBLISH")], ("run_plan", dict(layout=Whole(), new_run=False, fault=Fault(1, "hang", "stop"))),
                 ("move_target", dict(which=0, account=0)),
                 ("run_plan", dict(layout=Whole(), new_run=False, fault=None)))


def test_a_finished_run_is_not_complete_where_its_target_points_now():
    replay_rules([1], [(0, "PUBLISH")], ("run_plan", dict(layout=Whole(), new_run=False, fault=None)),
                 ("move_target", dict(which=0, account=0)),
                 ("run_plan", dict(layout=Whole(), new_run=False, fault=None)))


def test_an_undo_acts_where_the_run_acted_or_not_at_all():
    # before issue 21: the undo plan took the plan file's targets as they are now
    seed = ["DRAFT", "PUBLISHED"] + ["DRAFT"] * (len(PLACES) * len(KEYS) - 2)  # fw/2 PUBLISHED at place 0
    replay_rules([1], [(1, "PUBLISH")], ("run_plan", dict(layout=Whole(), new_run=False, fault=None)),
                 ("move_target", dict(which=0, account=0)), ("undo", dict(pick=0)), seed=seed)


def test_a_shard_does_not_send_a_place_another_shard_finished_under_another_token():
    # a (account 222) is shard 1/2, b (111) shard 2/2; shard 1 publishes fw/1 in 222; then a
    # points at 333 and b at 222: shard 2 sends fw/1 to 222 again, with a token of its own
    replay_rules([1, 0], [(0, "PUBLISH")], ("run_plan", dict(layout=ShardOf(1, 2), new_run=False, fault=None)),
                 ("move_target", dict(which=0, account=2)), ("move_target", dict(which=1, account=1)),
                 ("run_plan", dict(layout=ShardOf(2, 2), new_run=False, fault=None)))


def test_a_new_shard_of_a_changed_plan_does_not_send_a_place_another_shard_finished():
    # a (111) is shard 1/3 and publishes fw/1 in 111; a then points at 333 and a new target c
    # takes 111 (the plan changed: no --new-run); shard 3/3 (c) has no journal yet: it opens
    # one for the changed plan and sends fw/1 to 111 again, under a token of its own
    replay_rules([0, 1], [(0, "PUBLISH")], ("run_plan", dict(layout=ShardOf(1, 3), new_run=False, fault=None)),
                 ("move_target", dict(which=0, account=2)), ("add_target", dict(place=0)),
                 ("run_plan", dict(layout=ShardOf(3, 3), new_run=False, fault=None)))
