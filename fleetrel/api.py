"""The Python API: run a plan the way `fleetrel run` does, without the command line.

    import anyio
    from fleetrel import RunOptions, Where, load_plan, run

    plan = load_plan("plans/demo.yaml")
    result = anyio.run(lambda: run(plan, Where(endpoint_url="http://127.0.0.1:5077")))
    print(result.status, result.succeeded, result.failed)   # complete 200 0

`run` builds the IoT clients (or takes yours), opens the plan's journal (resuming the run
it holds) and executes the plan's waves, as the CLI does; a resume with nothing left to
send (the same command again after the run finished) builds no client. For control over
each part, use `fleetrel.session.open_session` and `fleetrel.engine.execute` directly.

One path for every plan (`fleetrel.where`): a single-target plan is a plan with one
target, named None. Its targets' clients are built and their accounts resolved
(`fleetrel.credentials.target_clients`) before the journal is touched; a resume takes
the places its journal recorded and checks the clients against them before it sends.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Mapping

from fleetrel.aws import AwsSetupError, client_identity
from fleetrel.engine import BeforeWave, RunOptions, Stop, execute
from fleetrel.events import Listener
from fleetrel.expansion import frozen_selection, select_for_run
from fleetrel.fleetcheck import guard
from fleetrel.journal import default_journal_path
from fleetrel.plan import ReleasePlan
from fleetrel.result import RunResult
from fleetrel.session import check_identity, open_session
from fleetrel.shards import shard_journal_path
from fleetrel.where import Destination, Where, WhereError, chosen_targets, destinations


async def run(plan: ReleasePlan, where: Where | None = None, *, options: RunOptions | None = None,
              listeners: Iterable[Listener] = (), client: Any = None, before_wave: BeforeWave | None = None,
              stop: Stop | None = None, notice: Callable[[str], None] | None = None) -> RunResult:
    """Run (or resume) a release plan; see the module docstring.

    `where` (`fleetrel.where.Where`) says where to send over the plan's `target:`/`targets:`
    (an endpoint, a region, some targets, a shard, the journal); `options` overrides its
    `limits:` (and says whether to start a new run, retry failed steps, ...). With
    `client` (e.g. `fleetrel.testing.FakeIoT`; for a plan with `targets:`, a mapping of
    target name to client), no AWS client is built.

    A plan with `targets:` gets a client per target (its role assumed, refreshed before it
    expires) and every target's account is resolved and checked before anything is sent;
    `where.targets` runs (or resumes) only the named ones, `where.shard` one shard of them
    (`fleetrel.shards`), in a journal of its own named after the run's.

    A plan with `select:` entries is expanded once its clients are built (for every
    target, whatever `where.targets` says: the selection is frozen for the whole run; for
    a shard, its own targets, since it has a journal of its own), and the result is
    written into the journal's header. A resume takes the frozen selection from the
    journal and sends exactly that; when it builds a client it lists the catalog again only
    to tell `notice` what would be selected now. `notice` also gets the warnings of
    selectors that matched nothing. Raises PlanError when a selector matches a version
    that another entry names; WhereError when `where` does not fit the plan.
    """
    where = where or Where()
    options = options or RunOptions()
    everywhere = destinations(plan, where)
    only = chosen_targets(plan, where)
    path = where.journal_path or default_journal_path(plan)
    shard_header = None
    if where.shard is not None:
        shard_header = where.shard.header(plan)
        path = shard_journal_path(path, where.shard)
    frozen = frozen_selection(path, plan) if plan.needs_expansion and not options.new_run else None
    if frozen is not None:
        plan = plan.expanded(frozen)

    def session_for(plan: ReleasePlan, identity: dict[str, Any] | None):
        return open_session(plan, path, new_run=options.new_run, retry_failed=options.retry_failed,
                            identity=identity, target=where.overrides(), only=only, shard=shard_header)

    def executing(session, clients):
        return execute(session, clients, options, listeners=listeners, before_wave=before_wave, stop=stop)

    concurrency = options.limits(plan)[2]
    in_scope = [d for d in everywhere if only is None or d.name in only]
    if not options.new_run and _holds_a_run(path) and not plan.needs_expansion:
        # A resume. Opening it writes nothing and takes the places its journal recorded, so
        # the clients wait until they are known to be needed: the same command run again on
        # a finished run sends nothing and builds none (aiohttp, aiobotocore and an STS call
        # per target are most of a second). Once built, they must point where the run went.
        with session_for(plan, None) as session:
            check_identity(session, declared_places(in_scope))
            if not session.todo:
                return await executing(session, None)
            needed = {step.target for step in session.todo}
            async with target_clients_for([d for d in in_scope if d.name in needed], where, client,
                                          run_name=plan.plan, concurrency=concurrency) as (clients, identities):
                check_identity(session, session_identity(identities))
                counts: dict = {}  # the fleet's, read once for the selection and the guard
                await select_for_run(plan, clients, frozen=frozen is not None, notice=notice,  # only to say what changed
                                     fleet_check=options.fleet_check, counts=counts)
                session.fleet_check = await guard(plan, session.todo, clients, options, counts, notice)
                return await executing(session, clients)
    # A new run: every target of its scope set up and its account checked before the
    # journal is touched (a plan to expand: every target, since its selection is frozen
    # for the whole run, unless this is a shard, whose journal holds its own targets' only).
    setting_up = everywhere if plan.needs_expansion and where.shard is None else in_scope
    async with target_clients_for(setting_up, where, client, run_name=plan.plan,
                                  concurrency=concurrency) as (clients, identities):
        counts: dict = {}  # the fleet's, read once for the selection and the guard
        plan = await select_for_run(plan, clients, frozen=frozen is not None, notice=notice,
                                    fleet_check=options.fleet_check, counts=counts)
        if only is not None:
            identities = {name: place for name, place in identities.items() if name in only}
        # the guard counts what this session sends: its targets' steps
        fleet_check = await guard(plan, [s for s in plan.steps() if only is None or s.target in only],
                                  clients, options, counts, notice)
        with session_for(plan, session_identity(identities)) as session:
            session.fleet_check = fleet_check
            return await executing(session, clients)


@asynccontextmanager
async def target_clients_for(chosen: list[Destination], where: Where, client: Any, *, run_name: str,
                             concurrency: int) -> AsyncIterator[tuple[dict[str | None, Any], dict[str | None, dict]]]:
    """(clients, identities) by target name (None for a single-target plan's): `client`'s
    (a fake, or clients built elsewhere) checked against the plan's account pins, or
    built for `chosen` (`fleetrel.credentials.target_clients`)."""
    if client is None:
        from fleetrel.credentials import target_clients

        async with target_clients(chosen, run_name=run_name, endpoint_url=where.endpoint_url,
                                  concurrency=concurrency) as built:
            yield built
        return
    given = dict(client) if isinstance(client, Mapping) else {None: client}
    clients: dict[str | None, Any] = {}
    identities: dict[str | None, dict] = {}
    problems = []
    for target in chosen:
        if target.name not in given:
            raise WhereError(f"no client given for target {target.name}")
        clients[target.name] = given[target.name]
        # a given client is taken to serve the region its target names (a fake's own
        # region stands only where the plan names none)
        identities[target.name] = {**client_identity(given[target.name], target.profile),
                                   **({"region": target.region} if target.region else {})}
        account = identities[target.name].get("account")
        if target.account and account and account != target.account:
            problems.append(f"target {target.name} pins account {target.account}, but its client acts in "
                            f"account {account}" if target.name else
                            f"the plan's target pins account {target.account}, but its client acts in account {account}")
    if problems:
        raise AwsSetupError("; ".join(problems) + ". Nothing was sent to any target.")
    yield clients, identities


def declared_places(chosen: list[Destination]) -> dict[str, Any]:
    """Where the plan and the command line say the targets are, before any client is
    built: region and endpoint as far as they are given (the account only a client's
    credentials can tell). A resume checks these against its journal's places at once."""
    from fleetrel.aws import configured_region, without_userinfo

    declared: dict[str | None, dict] = {}
    for target in chosen:
        try:
            region = target.region or configured_region(target.profile, target.endpoint_url)
        except AwsSetupError:  # said when a client is built, if one is needed at all
            region = None
        place = {"region": region, "account": target.account,
                 "endpoint": without_userinfo(target.endpoint_url) if target.endpoint_url else None}
        declared[target.name] = {name: value for name, value in place.items() if value}
    return session_identity(declared) if declared else {}


def session_identity(identities: Mapping[str | None, dict]) -> dict[str, Any]:
    """The identity a session records: a single-target plan's one place, flat; a plan
    with targets, {name: place}."""
    if list(identities) == [None]:
        return dict(identities[None])
    return {name: dict(place) for name, place in identities.items() if name is not None}


def _holds_a_run(journal: Path) -> bool:
    """Whether `journal` holds a run to resume (not missing, not empty)."""
    try:
        return journal.stat().st_size > 0
    except OSError:
        return False
