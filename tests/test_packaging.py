"""What a user gets from `pip install fleetrel` without a checkout (issue 22).

The installed wheel itself is exercised by .ci/run: it builds it, installs it into a
fresh venv outside the checkout, checks that `fleetrel emulator` without the extra names
it, and runs `fleetrel demo` from an empty folder. Here, in process: the demo's plan is
package data, and a command whose extra is missing says which one, through
`fleetrel.extras` (the installed metadata, hidden below as a missing package is).
"""
from __future__ import annotations

import importlib.metadata
import sys
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetrel.cli import main
from fleetrel.events import ExitCode
from fleetrel.extras import missing_extra
from fleetrel.rehearsal import DEMO_PLAN

REPO = Path(__file__).resolve().parent.parent


def test_the_demo_plan_is_package_data_that_the_wheel_ships():
    assert Path(str(DEMO_PLAN)).parent == Path(str(files("fleetrel")))
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {DEMO_PLAN.name, "py.typed"} <= set(package_data["fleetrel"])
    assert (Path(str(files("fleetrel"))) / "py.typed").is_file()


def _hide(monkeypatch, *names: str) -> None:
    """As if pip had never installed these distributions: no metadata, no import."""
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name.lower() in names:
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    for name in names:
        monkeypatch.setitem(sys.modules, name.replace("-", "_"), None)  # `import cheroot` raises


@pytest.mark.parametrize("command", [["emulator"], ["demo"], ["bench", "--steps", "20"]])
def test_a_command_without_the_emulator_extra_names_it_and_exits_2(command, monkeypatch, tmp_path):
    _hide(monkeypatch, "cheroot", "moto")
    monkeypatch.chdir(tmp_path)  # a user's folder: no plans/ here
    result = CliRunner().invoke(main, command)
    assert result.exit_code == ExitCode.INVALID, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert f"`fleetrel {command[0]}` needs the emulator extra: pip install 'fleetrel[emulator]'" in result.stderr
    assert "moto" in result.stderr and "cheroot" in result.stderr


def test_the_extras_are_read_from_the_installed_metadata(monkeypatch):
    assert missing_extra("emulator", "it") is None  # the test environment has every extra
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name, real=importlib.metadata.version: "0.0.1" if name == "moto" else real(name))
    problem = missing_extra("emulator", "it")
    assert problem.startswith("it needs the emulator extra: pip install 'fleetrel[emulator]' (missing: moto")
    assert problem.endswith(" (installed: 0.0.1))")  # the version pyproject.toml asks for, between


def test_run_with_ray_but_without_ray_names_the_extra(monkeypatch, tmp_path):
    from test_targets import org_plan

    _hide(monkeypatch, "ray")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    plan = org_plan(tmp_path / "org.yaml", ["1.0.0"])
    result = CliRunner().invoke(main, ["run", str(plan), "--ray", "--endpoint-url", "http://127.0.0.1:9"])
    assert result.exit_code == ExitCode.INVALID, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "pip install 'fleetrel[ray]'" in result.stderr
