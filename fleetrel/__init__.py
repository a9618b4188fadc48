"""fleetrel: batch releases for the AWS IoT Software Package Catalog.

    import anyio
    from fleetrel import RunOptions, Where, load_plan, run

    plan = load_plan("plans/demo.yaml")
    result = anyio.run(lambda: run(plan, Where(endpoint_url="http://127.0.0.1:5077")))
    print(result.status, result.succeeded, result.failed)   # complete 200 0

`run` resumes from the plan's journal when there is one; see `fleetrel.api.run`. Its parts,
for finer control: `fleetrel.session.open_session` and `fleetrel.engine.execute`;
`fleetrel.testing` has a scripted fake IoT client for testing code that drives them.
"""
from importlib import import_module
from typing import Any

# Imported on first use, so `fleetrel validate` does not pay for aioboto3's import.
_EXPORTS = {
    "run": ("fleetrel.api", "run"),
    "RunOptions": ("fleetrel.engine", "RunOptions"),
    "Where": ("fleetrel.where", "Where"),
    "RunResult": ("fleetrel.result", "RunResult"),
    "Stop": ("fleetrel.engine", "Stop"),
    "Status": ("fleetrel.events", "Status"),
    "load_plan": ("fleetrel.plan", "load"),
    "PlanError": ("fleetrel.plan", "PlanError"),
    "ReleasePlan": ("fleetrel.plan", "ReleasePlan"),
    "Step": ("fleetrel.plan", "Step"),
}
__all__ = [*_EXPORTS, "__version__"]


def _version() -> str:
    # Looked up on first use: importlib.metadata and the search of the installed
    # distributions cost every command a tenth of a second, and only a new run's header
    # and `--version` want the answer.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fleetrel")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()["__version__"] = found = _version()
        return found
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'fleetrel' has no attribute {name!r}")
