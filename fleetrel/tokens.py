"""Deterministic clientTokens: the same step of the same run always sends the same token.

    key = new_run_key()                          # per run, kept beside the journal (0600)
    client_token("5f0c...", step, key)           # '0b6a7a52-6c1e-5d83-9e3b-8f1a2c3d4e5f'

The service treats a repeated token with the same request as the same call and answers
with the first result, so a step re-sent after a crash or a lost response is applied
once. The run id is part of the name: a later run (a new release that publishes the same
version again after a deprecation) gets new tokens and is not swallowed by the service's
idempotency cache.

The request enters the token (and the journal's digests of sensitive fields) through an
HMAC keyed with the run's own secret, which is not in the journal: an unkeyed sha256 of
a low-entropy description or attribute, written next to the run id, would let anyone who
reads the journal confirm a guess of the text. Runs journalled before the key existed
(no `token_scheme` in their header) keep their unkeyed tokens, so they resume unchanged.

Where the step is applied enters as its place (`fleetrel.where.place_id`: the account and
region its target resolved to, recorded in the journal), not its target's name
(`PLACE_SCHEME`): the same step has the same token in one process, in any shard, over
Ray, and after the plan's targets are reordered or renamed. Runs journalled under the
name scheme (`token_scheme` 2) keep it, so they resume unchanged.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Any

from fleetrel.plan import Step, canonical_json

# Fixed namespace so tokens are stable across machines and fleetrel versions.
NAMESPACE = uuid.UUID("6f1d7c1e-3b9a-5c57-9a55-2d1e0b4f7a10")
#: The journal header's `token_scheme` for keyed tokens by target name (absent: the unkeyed first scheme).
KEYED_SCHEME = 2
#: ... keyed tokens by place (account and region): what new runs use.
PLACE_SCHEME = 3
KEY_BYTES = 32


def new_run_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def keyed_digest(key: bytes | None, value: Any) -> str:
    """HMAC-SHA256 of the canonical JSON of `value` (plain sha256 for an unkeyed run)."""
    data = canonical_json(value).encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest() if key is not None else hashlib.sha256(data).hexdigest()


def client_token(run_id: str, step: Step, key: bytes | None = None, place: str | None = None) -> str:
    """uuid5 over (run_id, place or target, package, version, keyed digest of the
    request): 36 characters, inside the API's `[\\S]{36,64}` pattern. `place`
    (`fleetrel.where.place_id`) makes the same version in two accounts two calls with two
    tokens; without it (runs of the earlier schemes) the target's name does."""
    if place is not None:
        where: tuple[str, ...] = (place, step.package, step.version)
    else:
        where = (step.target, step.package, step.version) if step.target else (step.package, step.version)
    name = "\n".join((run_id, *where, keyed_digest(key, step.request())))
    return str(uuid.uuid5(NAMESPACE, name))
