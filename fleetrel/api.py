"""The Python API: run a plan the way `fleetrel run` does, without the command line.

    import anyio
    from fleetrel import RunOptions, load_plan, run

    plan = load_plan("plans/demo.yaml")
    result = anyio.run(lambda: run(plan, endpoint_url="http://127.0.0.1:5000"))
    print(result.status, result.succeeded, result.failed)   # complete 200 0

`run` builds the IoT client (or takes yours), opens the plan's journal (resuming the run
it holds) and executes the plan's waves, as the CLI does. For control over each part, use
`fleetrel.session.open_session` and `fleetrel.engine.execute` directly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from fleetrel.aws import AwsSetupError, client_identity, iot_client, target_settings, without_userinfo
from fleetrel.credentials import target_clients
from fleetrel.engine import BeforeWave, RunOptions, Stop, execute
from fleetrel.result import RunResult
from fleetrel.events import Listener
from fleetrel.journal import default_journal_path
from fleetrel.plan import ReleasePlan
from fleetrel.session import open_session


async def run(plan: ReleasePlan, *, journal_path: Path | str | None = None, endpoint_url: str | None = None,
              region: str | None = None, profile: str | None = None, options: RunOptions | None = None,
              listeners: Iterable[Listener] = (), client: Any = None, before_wave: BeforeWave | None = None,
              stop: Stop | None = None, targets: Iterable[str] | None = None) -> RunResult:
    """Run (or resume) a release plan; see the module docstring.

    `endpoint_url`, `region` and `profile` override the plan's `target:`; `options` its
    `limits:` (and say whether to start a new run, retry failed steps, ...). The journal is
    `fleetrel.journal.default_journal_path(plan)` unless `journal_path` is given. With
    `client` (e.g. `fleetrel.testing.FakeIoT`; for a plan with `targets:`, a mapping of
    target name to client), no AWS client is built.

    A plan with `targets:` gets a client per target (its role assumed, refreshed before it
    expires) and every target's account is resolved and checked before anything is sent;
    `targets` runs (or resumes) only the named ones.
    """
    options = options or RunOptions()
    path = Path(journal_path) if journal_path else default_journal_path(plan)
    settings = target_settings(plan.target, endpoint_url, region, profile)
    overrides = {k: v for k, v in {"endpoint_url": endpoint_url, "region": region, "profile": profile}.items() if v}
    if endpoint_url:  # never a password in a journal (iot_client refuses one anyway)
        overrides["endpoint_url"] = without_userinfo(endpoint_url)

    specs = plan.target_specs()
    chosen = set(targets or ())
    unknown = chosen - {spec.name for spec in specs}
    if unknown:
        raise AwsSetupError(f"no target named {', '.join(sorted(unknown))} in plan {plan.plan!r}"
                            + (f" (its targets: {', '.join(s.name for s in specs)})" if specs else " (it has no `targets:`)"))
    if specs and (region or profile):
        raise AwsSetupError("a plan with `targets:` sets region and profile per target: give them in the plan")

    async def with_client(client: Any, identity: dict[str, Any]) -> RunResult:
        # the clients exist, so regions, credentials and accounts are settled: nothing was written before
        with open_session(plan, path, new_run=options.new_run, retry_failed=options.retry_failed,
                          identity=identity, target=overrides, only=chosen or None) as session:
            return await execute(session, client, options, listeners=listeners, before_wave=before_wave, stop=stop)

    if client is not None:
        return await with_client(client, {} if specs else client_identity(client, settings["profile"]))
    if specs:
        selected = [spec for spec in specs if not chosen or spec.name in chosen]
        async with target_clients(selected, run_name=plan.plan, endpoint_url=endpoint_url,
                                  concurrency=options.limits(plan)[2]) as (clients, identities):
            return await with_client(clients, identities)
    concurrency = options.limits(plan)[2]
    async with iot_client(**settings, concurrency=concurrency) as built:
        return await with_client(built, client_identity(built, settings["profile"]))
