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

from fleetrel.aws import client_identity, iot_client, target_settings, without_userinfo
from fleetrel.engine import BeforeWave, RunOptions, Stop, execute
from fleetrel.result import RunResult
from fleetrel.events import Listener
from fleetrel.journal import default_journal_path
from fleetrel.plan import ReleasePlan
from fleetrel.session import open_session


async def run(plan: ReleasePlan, *, journal_path: Path | str | None = None, endpoint_url: str | None = None,
              region: str | None = None, profile: str | None = None, options: RunOptions | None = None,
              listeners: Iterable[Listener] = (), client: Any = None, before_wave: BeforeWave | None = None,
              stop: Stop | None = None) -> RunResult:
    """Run (or resume) a release plan; see the module docstring.

    `endpoint_url`, `region` and `profile` override the plan's `target:`; `options` its
    `limits:` (and say whether to start a new run, retry failed steps, ...). The journal is
    `fleetrel.journal.default_journal_path(plan)` unless `journal_path` is given. With
    `client` (e.g. `fleetrel.testing.FakeIoT`), no AWS client is built.
    """
    options = options or RunOptions()
    path = Path(journal_path) if journal_path else default_journal_path(plan)
    settings = target_settings(plan.target, endpoint_url, region, profile)
    overrides = {k: v for k, v in {"endpoint_url": endpoint_url, "region": region, "profile": profile}.items() if v}
    if endpoint_url:  # never a password in a journal (iot_client refuses one anyway)
        overrides["endpoint_url"] = without_userinfo(endpoint_url)

    async def with_client(client: Any) -> RunResult:
        # the client exists, so region and credentials are settled: nothing was written before
        with open_session(plan, path, new_run=options.new_run, retry_failed=options.retry_failed,
                          identity=client_identity(client, settings["profile"]), target=overrides) as session:
            return await execute(session, client, options, listeners=listeners, before_wave=before_wave, stop=stop)

    if client is not None:
        return await with_client(client)
    concurrency = options.limits(plan)[2]
    async with iot_client(**settings, concurrency=concurrency) as built:
        return await with_client(built)
