"""What a run did: per step and in total, for summaries, `--json` and the Python API.

    result = await run(plan)
    result.status, result.exit_code          # Status.COMPLETE, ExitCode.OK
    result.succeeded, result.failed, result.throttled_fraction
    [o for o in result.outcomes if o.outcome is Outcome.FAILED]
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from fleetrel.events import ExitCode, Outcome, Status


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
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "outcomes"}
        out["failures_by_code"] = dict(self.failures_by_code)
        # asdict() would deep-copy every field of every outcome: seconds at 100k steps
        names = [f.name for f in fields(StepOutcome)]
        out["outcomes"] = [{name: getattr(o, name) for name in names} for o in self.outcomes]
        out.update(calls_per_second=self.calls_per_second, throttled_fraction=self.throttled_fraction)
        return out
