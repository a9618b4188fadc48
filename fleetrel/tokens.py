"""Deterministic clientTokens: the same step of the same run always sends the same token.

    >>> client_token("5f0c...", step)          # doctest: +SKIP
    '0b6a7a52-6c1e-5d83-9e3b-8f1a2c3d4e5f'

The service treats a repeated token with the same request as the same call and answers
with the first result, so a step re-sent after a crash or a lost response is applied
once. The run id is part of the name: a later run (a new release that publishes the same
version again after a deprecation) gets new tokens and is not swallowed by the service's
idempotency cache.
"""
from __future__ import annotations

import uuid

from fleetrel.plan import Step

# Fixed namespace so tokens are stable across machines and fleetrel versions.
NAMESPACE = uuid.UUID("6f1d7c1e-3b9a-5c57-9a55-2d1e0b4f7a10")


def client_token(run_id: str, step: Step) -> str:
    """uuid5 over (run_id, package, version, digest of the request): 36 characters,
    inside the API's `[\\S]{36,64}` pattern."""
    name = "\n".join((run_id, step.package, step.version, step.request_digest()))
    return str(uuid.uuid5(NAMESPACE, name))
