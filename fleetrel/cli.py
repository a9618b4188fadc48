"""The `fleetrel` command line. It knows plans, journals and terminals; never HTTP.

Each command is a thin shell over a module: parse flags, call, render, choose the exit code.
Exit codes: 0 success, 1 some steps failed / drift found, 2 invalid input, 3 aborted by
threshold, 130 interrupted.
"""
from __future__ import annotations

import sys

import click

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fleetrel")
def main() -> None:
    """fleetrel: batch releases for the AWS IoT Software Package Catalog.

    Publish or deprecate hundreds of package versions from one release plan,
    as fast as the service allows, resumable after any crash.
    """
