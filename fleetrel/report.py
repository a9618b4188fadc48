"""Summaries of a run for people (text) and for programs (JSON)."""
from __future__ import annotations

import click

from fleetrel.engine import RunResult


def summary_lines(result: RunResult) -> list[str]:
    lines = [
        f"plan {result.plan} run {result.run_id}: {result.status}",
        f"  steps {result.steps}: succeeded {result.succeeded}, skipped {result.skipped}, "
        f"failed {result.failed}, unfinished {result.unfinished}"
        + (f" ({result.done_before} finished in earlier sessions)" if result.done_before else ""),
        f"  calls {result.attempts} in {result.elapsed:.1f}s ({result.calls_per_second:.1f}/s), "
        f"throttled {result.throttles} ({result.throttled_fraction:.1%}), retries {result.retries}, "
        f"final rate {result.final_rate:.1f}/s",
    ]
    for code, count in sorted(result.failures_by_code.items()):
        lines.append(f"  failed with {code}: {count}")
    if result.status in ("interrupted", "aborted"):
        lines.append(f"  resume with the same command (journal: {result.journal})")
    return lines


def print_summary(result: RunResult) -> None:
    for line in summary_lines(result):
        click.echo(line)
