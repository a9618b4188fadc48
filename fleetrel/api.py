"""The Python API: run a plan the way `fleetrel run` does, without the command line.

    import anyio
    from fleetrel import RunOptions, load_plan, run

    plan = load_plan("plans/demo.yaml")
    result = anyio.run(lambda: run(plan, endpoint_url="http://127.0.0.1:5000"))
    print(result.status, result.succeeded, result.failed)   # complete 200 0

`run` builds the IoT client (or takes yours), opens the plan's journal (resuming the run
it holds) and executes the plan's waves, as the CLI does; a resume with nothing left to
send (the same command again after the run finished) builds no client. For control over
each part, use `fleetrel.session.open_session` and `fleetrel.engine.execute` directly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from fleetrel.aws import AwsSetupError, client_identity, iot_client, resolve_identity, target_settings, without_userinfo
from fleetrel.credentials import target_clients
from fleetrel.engine import BeforeWave, RunOptions, Stop, execute
from fleetrel.result import RunResult
from fleetrel.events import Listener
from fleetrel.journal import default_journal_path
from fleetrel.expansion import frozen_selection, select_for_run
from fleetrel.plan import ReleasePlan
from fleetrel.session import Session, open_session
from fleetrel.shards import Shard, ShardError, refuse_another_count, shard_journal_path


async def run(plan: ReleasePlan, *, journal_path: Path | str | None = None, endpoint_url: str | None = None,
              region: str | None = None, profile: str | None = None, options: RunOptions | None = None,
              listeners: Iterable[Listener] = (), client: Any = None, before_wave: BeforeWave | None = None,
              stop: Stop | None = None, targets: Iterable[str] | None = None,
              notice: Callable[[str], None] | None = None, shard: Shard | None = None) -> RunResult:
    """Run (or resume) a release plan; see the module docstring.

    `endpoint_url`, `region` and `profile` override the plan's `target:`; `options` its
    `limits:` (and say whether to start a new run, retry failed steps, ...). The journal is
    `fleetrel.journal.default_journal_path(plan)` unless `journal_path` is given. With
    `client` (e.g. `fleetrel.testing.FakeIoT`; for a plan with `targets:`, a mapping of
    target name to client), no AWS client is built.

    A plan with `targets:` gets a client per target (its role assumed, refreshed before it
    expires) and every target's account is resolved and checked before anything is sent;
    `targets` runs (or resumes) only the named ones.

    A plan with `select:` entries is expanded once its clients are built (for every
    target, whatever `targets` says: the selection is frozen for the whole run; for a
    shard, its own targets, since it has a journal of its own), and the result is written
    into the journal's header. A resume takes the frozen selection from the journal and
    sends exactly that; when it builds a client it lists the catalog again only to tell
    `notice` what would be selected now. `notice` also gets the warnings of selectors that
    matched nothing. Raises PlanError when a selector matches a version that another entry
    names.

    `shard` runs (or resumes) one shard of the run (`fleetrel.shards`): its targets, in a
    journal of its own named after the run's (`org.shard-2-of-4.journal.jsonl`).
    """
    options = options or RunOptions()
    path = Path(journal_path) if journal_path else default_journal_path(plan)
    shard_header = None
    if shard is not None:
        if targets:
            raise ShardError("--shard and --target do not go together: a shard's targets are chosen by the "
                             "shard rule (see `fleetrel.shards`); run one target with --target alone")
        if not options.new_run:
            refuse_another_count(path, shard)
        shard_header = shard.header(plan)
        targets = shard_header["targets"]
        path = shard_journal_path(path, shard)
    settings = target_settings(plan.target, endpoint_url, region, profile)
    overrides = {k: v for k, v in {"endpoint_url": endpoint_url, "region": region, "profile": profile}.items() if v}
    if endpoint_url:  # never a password in a journal (iot_client refuses one anyway)
        overrides["endpoint_url"] = without_userinfo(endpoint_url)

    specs = plan.target_specs()
    chosen = set(targets or ())
    only = chosen if chosen or shard is not None else None
    unknown = chosen - {spec.name for spec in specs}
    if unknown:
        raise AwsSetupError(f"no target named {', '.join(sorted(unknown))} in plan {plan.plan!r}"
                            + (f" (its targets: {', '.join(s.name for s in specs)})" if specs else " (it has no `targets:`)"))
    if specs and (region or profile):
        raise AwsSetupError("a plan with `targets:` sets region and profile per target: give them in the plan")

    frozen = frozen_selection(path, plan) if plan.needs_expansion and not options.new_run else None
    if frozen is not None:
        plan = plan.expanded(frozen)

    async def select(clients: dict[str | None, Any]) -> ReleasePlan:
        return await select_for_run(plan, clients, frozen=frozen is not None, notice=notice)

    def session_for(plan: ReleasePlan, identity: dict[str, Any]):
        return open_session(plan, path, new_run=options.new_run, retry_failed=options.retry_failed,
                            identity=identity, target=overrides, only=only, shard=shard_header)

    async def execute_with(session: Session, client: Any) -> RunResult:
        return await execute(session, client, options, listeners=listeners, before_wave=before_wave, stop=stop)

    if client is not None:
        plan = await select(dict(client) if specs else {None: client})
        with session_for(plan, {} if specs else client_identity(client, settings["profile"])) as session:
            return await execute_with(session, client)
    concurrency = options.limits(plan)[2]
    if specs:
        # every target's role assumed and account checked before the journal is touched
        # (a plan to expand: every target, since its selection is frozen for the whole run,
        # unless this is a shard, whose journal holds its own targets' selection only)
        everyone = plan.needs_expansion and shard is None
        selected = [spec for spec in specs if only is None or spec.name in only or everyone]
        async with target_clients(selected, run_name=plan.plan, endpoint_url=endpoint_url,
                                  concurrency=concurrency) as (clients, identities):
            plan = await select(clients)
            if chosen:
                identities = {name: where for name, where in identities.items() if name in chosen}
            with session_for(plan, identities) as session:
                return await execute_with(session, clients)
    if options.new_run or not _holds_a_run(path) or plan.needs_expansion:
        # the client first: region and credentials are settled before anything is written
        async with iot_client(**settings, concurrency=concurrency) as built:
            plan = await select({None: built})
            with session_for(plan, client_identity(built, settings["profile"])) as session:
                return await execute_with(session, built)
    # A resume. Opening it writes nothing, so the client can wait until it is known to be
    # needed: the same command run again on a finished run sends nothing and builds no
    # client (aiohttp and aiobotocore are half a second of start-up). Its identity is
    # resolved as the client would resolve it, and checked against the client's own once
    # one is built.
    with session_for(plan, resolve_identity(**settings)) as session:
        if not session.todo:
            return await execute_with(session, None)
        async with iot_client(**settings, concurrency=concurrency) as built:
            identity = client_identity(built, settings["profile"])
            if identity != session.identity:
                raise RuntimeError(f"fleetrel resolved this run's target as {session.identity}, "
                                   f"but its client sends to {identity}: nothing was sent")
            await select({None: built})  # a frozen selection: only to say what changed
            return await execute_with(session, built)


def _holds_a_run(journal: Path) -> bool:
    """Whether `journal` holds a run to resume (not missing, not empty)."""
    try:
        return journal.stat().st_size > 0
    except OSError:
        return False
