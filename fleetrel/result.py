"""What a run did: per step and in total, for summaries, `--json` and the Python API.

    result = await run(plan)
    result.status, result.exit_code          # Status.COMPLETE, ExitCode.OK
    result.succeeded, result.failed, result.throttled_fraction
    [o for o in result.outcomes if o.outcome is Outcome.FAILED]

A run's result as JSON has one shape whoever writes it, `run --json` (`RunResult.to_dict`)
or `status --json` (`fleetrel.report.journal_status`, from the journal alone):
`result_document` holds the keys both carry, with one meaning, and `schema_version`, which
changes when one of them changes meaning or goes:

    schema_version  1
    run_id, plan, journal, status, exit_code (what the command exits with), steps
    counts          {succeeded, skipped, failed, unfinished}: over the whole run, every session
    failures        {code: [step keys]}    failures_by_code  {code: how many}
    targets         {target: counts}  ({} for a plan without `targets:`)

Beside them, `run --json` has this session's figures (`attempts`, `throttles`, `retries`,
`elapsed`, `final_rate`, `calls_per_second`, `throttled_fraction`, `done_before`,
`stopped_by`, `setup_error`), every step's outcome (`outcomes`) and, as before, the counts
flat (`succeeded`, `skipped`, `failed`, `unfinished`: the same numbers as `counts`);
`status --json` has the journal's (`sessions`, `started`, `ended`, `throttles` and
`retries` over every session, `rate_changes`, `resume`, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

from fleetrel.events import ExitCode, Outcome, Status


#: The version of a run's result JSON (`run --json`, `status --json`).
RESULT_SCHEMA_VERSION = 1


def result_document(*, run_id: str | None, plan: str | None, journal: str, status: Status | str, exit_code: int,
                    steps: int | None, counts: Mapping[str, int], failures: Mapping[str, Iterable[str]],
                    targets: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """The keys every result JSON of a run holds (see the module docstring)."""
    failed = {code: sorted(keys) for code, keys in sorted(failures.items())}
    return {"schema_version": RESULT_SCHEMA_VERSION, "run_id": run_id, "plan": plan, "journal": journal,
            "status": Status(status), "exit_code": int(exit_code), "steps": steps,
            "counts": {o.value: int(counts.get(o.value, 0)) for o in Outcome},
            "failures": failed, "failures_by_code": {code: len(keys) for code, keys in failed.items()},
            "targets": {name: dict(by_outcome) for name, by_outcome in sorted(targets.items())}}


@dataclass(slots=True)
class StepOutcome:
    """How one step of the plan stands after a session (one per step: slots keep 100k small)."""

    key: str
    outcome: Outcome
    attempts: int = 0
    code: str | None = None
    message: str | None = None


@dataclass
class RunResult:
    """What a run (or a resume) did."""

    run_id: str
    plan: str
    journal: str
    status: Status
    steps: int
    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    unfinished: int = 0
    done_before: int = 0  # finished in an earlier session of this run
    attempts: int = 0  # UpdatePackageVersion calls sent in this session
    throttles: int = 0
    retries: int = 0
    elapsed: float = 0.0
    final_rate: float = 0.0
    failures_by_code: dict[str, int] = field(default_factory=dict)
    # not in the repr: a repr of a result is read by people (and asyncio formats the task's
    # result into an error message when it restores a signal handler: seconds at 100k steps)
    outcomes: list[StepOutcome] = field(default_factory=list, repr=False)
    targets: dict[str, dict[str, int]] = field(default_factory=dict)  # per target: counts per outcome (plans with targets)
    stopped_by: str | None = None  # aborted | interrupted | wave_failed | setup; None: ran to the end
    setup_error: str | None = None  # why the run stopped for its setup: expired or refused credentials, a client that cannot send

    @property
    def calls_per_second(self) -> float:
        return self.attempts / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def throttled_fraction(self) -> float:
        return self.throttles / self.attempts if self.attempts else 0.0

    @property
    def exit_code(self) -> ExitCode:
        if self.stopped_by == "setup":
            return ExitCode.INVALID  # a setup error: fresh credentials, then the same command resumes
        return ExitCode.for_status(self.status)

    def to_dict(self) -> dict[str, Any]:
        failures: dict[str, list[str]] = {}
        for o in self.outcomes:
            if o.outcome is Outcome.FAILED:
                failures.setdefault(o.code or "unknown", []).append(o.key)
        out = result_document(run_id=self.run_id, plan=self.plan, journal=self.journal, status=self.status,
                              exit_code=self.exit_code, steps=self.steps, failures=failures, targets=self.targets,
                              counts={"succeeded": self.succeeded, "skipped": self.skipped, "failed": self.failed,
                                      "unfinished": self.unfinished})
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name not in out and f.name != "outcomes"})
        if not failures:  # outcomes not kept (a result built by hand): the counts it was given
            out["failures_by_code"] = dict(self.failures_by_code)
        # asdict() would deep-copy every field of every outcome: seconds at 100k steps
        names = [f.name for f in fields(StepOutcome)]
        out["outcomes"] = [{name: getattr(o, name) for name in names} for o in self.outcomes]
        out.update(calls_per_second=self.calls_per_second, throttled_fraction=self.throttled_fraction)
        return out
