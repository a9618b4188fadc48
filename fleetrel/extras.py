"""Whether an optional extra (`pip install 'fleetrel[emulator]'`) is installed.

    from fleetrel.extras import missing_extra

    problem = missing_extra("emulator", "`fleetrel demo`")   # None, or what to install

What each extra holds is pyproject.toml's `[project.optional-dependencies]`, read back
from the installed metadata: this module names none of their packages. It asks the
metadata rather than importing, so `fleetrel demo` can refuse before it starts an
emulator process (which would otherwise fail in the child, with two tracebacks), and
without paying for moto's import in the parent.
"""
from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement


def missing_extra(extra: str, needer: str) -> str | None:
    """None when every package of `extra` is installed at a version it allows; otherwise
    one sentence: `needer` needs the extra, the pip command, what is missing."""
    try:
        requirements = metadata.requires("fleetrel") or []
    except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed: let the imports speak
        return None
    missing = []
    for text in requirements:
        requirement = Requirement(text)
        marker = requirement.marker
        # A requirement of the extra holds with `extra` and not without it (a base one
        # may carry a marker too, `python_version < "3.12"`).
        if marker is None or not marker.evaluate({"extra": extra}) or marker.evaluate({"extra": ""}):
            continue
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(requirement.name)
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{requirement.name}{requirement.specifier} (installed: {version})")
    if not missing:
        return None
    return f"{needer} needs the {extra} extra: pip install 'fleetrel[{extra}]' (missing: {', '.join(missing)})"
