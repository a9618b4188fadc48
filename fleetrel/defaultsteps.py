"""A default step before it is sent: what the engine reads and decides for an
UpdatePackage step that changes a package's default version (`fleetrel.plan.defaults`).

    current, previous = await read_previous(client, limiter, step)   # journalled with step_started
    verdict = before_sending(step, current, previous, outcomes, prior)
    if verdict is None: ...send it...     # else: finish the step as the verdict says

Why these are apart from the engine's loop: a default step waits for the version step it
follows (its prerequisite, in this session or an earlier one), and the default it
replaces is read and journalled *before* anything is sent, because `fleetrel undo`
restores exactly that first read (a resume reads the new default again: the first
record wins). The engine sends and retries it like any other step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from fleetrel import errors
from fleetrel.events import PREREQUISITE_FAILED, PREVIOUS_DEFAULT, Outcome
from fleetrel.plan import Step
from fleetrel.plan.defaults import DEFAULT_KEY_SUFFIX
from fleetrel.reads import ReadError, read_default

#: A default step's GetPackage read that failed for want of credentials (the read keeps the
#: code, not the exception: the service's codes, and botocore's credential errors by name).
CREDENTIAL_READ_CODES = errors.CREDENTIAL_CODES | {"NoCredentialsError", "CredentialRetrievalError",
                                                   "PartialCredentialsError"}
_DONE = (Outcome.SUCCEEDED, Outcome.SKIPPED)


@dataclass(frozen=True)
class Verdict:
    """A default step that is not sent: finished as `outcome` with `detail` (the terminal
    record's fields), or, with `setup_error`, left open for a resume with fresh credentials."""

    outcome: Outcome = Outcome.UNFINISHED
    detail: dict[str, Any] = field(default_factory=dict)
    setup_error: str | None = None


async def read_previous(client: Any, limiter: Any, step: Step) -> tuple[Any, dict[str, Any]]:
    """The package's default before this step (or the ReadError), and the step_started
    fields that journal it."""
    current = await read_default(client, limiter, step)
    return current, ({} if isinstance(current, ReadError) else {PREVIOUS_DEFAULT: current})


def before_sending(step: Step, current: Any, previous: dict[str, Any], outcomes: Mapping[str, Any],
                   prior: Any) -> Verdict | None:
    """None to send the step; otherwise why not: the read failed (for want of credentials:
    a setup stop), its version step did not succeed, or the default is already the one
    wanted."""
    if isinstance(current, ReadError) and current.code in CREDENTIAL_READ_CODES:
        return Verdict(setup_error=f"{current.code}: {current.message}")
    if isinstance(current, ReadError):
        return Verdict(Outcome.FAILED, {"code": current.code, "message": current.message, "permanent": current.missing})
    waiting_for = unfinished_prerequisite(step, outcomes, prior)
    if waiting_for is not None:
        return Verdict(Outcome.FAILED, {"code": PREREQUISITE_FAILED, "permanent": False,
                                        "message": f"{waiting_for} did not succeed, so the default was left as it is"})
    if current == step.default_version:
        return Verdict(Outcome.SKIPPED, {"message": "already in the desired state", **previous})
    return None


def unfinished_prerequisite(step: Step, outcomes: Mapping[str, Any], prior: Any) -> str | None:
    """A default step's version step, if it has not succeeded (nor was already done), in
    this session (`outcomes`) or an earlier one (`prior`, the replayed journal)."""
    key = step.key.removesuffix(DEFAULT_KEY_SUFFIX)
    outcome = outcomes.get(key)
    if outcome is None and prior is not None and key in prior.steps:
        return None if prior.steps[key].outcome in _DONE else key
    return None if outcome is not None and outcome.outcome in _DONE else key


async def is_default_already(client: Any, limiter: Any, step: Step) -> bool:
    """After a refusal: is the package's default already the one the step wants?"""
    return await read_default(client, limiter, step) == step.default_version
