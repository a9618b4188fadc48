"""A local AWS IoT Software Package Catalog on moto, throttling and failing like AWS.

    from fleetrel.emulator import start_emulator

    with start_emulator(rate=10, burst=10) as emu:      # its own process
        emu.seed([("thermostat-fw", "4.2.0")])          # DRAFT versions
        client = boto3.client("iot", endpoint_url=emu.url, region_name="us-east-1",
                              aws_access_key_id="x", aws_secret_access_key="x")
        client.update_package_version(packageName="thermostat-fw",
                                      versionName="4.2.0", action="PUBLISH")
        emu.record()["operations"]   # {"UpdatePackageVersion": {"200": 1}}

Modules: `catalog` (the service's rules, pure Python), `moto_glue` (the only file that
knows moto), `bucket` (token bucket), `record` (what was received), `settings`,
`middleware` (WSGI: throttle, faults, latency, control endpoints), `server` (cheroot,
HTTP/1.1 keep-alive), `process` (the handle used here), `command` (`fleetrel emulator`).

Behaviours AWS does not document, and what the emulator does (each is a setting):
- A refused transition (DEPRECATE of a DRAFT) is a ValidationException (400)
  (`refused_transition`, or ConflictException).
- PUBLISH of a PUBLISHED version, DEPRECATE of a DEPRECATED one: ConflictException (409)
  saying it is "already PUBLISHED"/"already DEPRECATED" (`already_in_state`; None makes it
  a successful no-op). The action is judged before the fields, so a repeated PUBLISH that
  also carries attributes still says "already PUBLISHED".
- clientTokens are remembered for 8 hours (`idempotency_window_s`), per operation; only
  successful answers are remembered (a failed call changed nothing, so a retry re-runs it).
- UpdatePackageVersion replaces the attribute map rather than merging into it.
- CreatePackageVersion on a missing package: ValidationException (the model lists no
  ResourceNotFound for it); DeletePackage/DeletePackageVersion of something missing: 200.
- Lists are ordered by name; nextToken is opaque (it holds the last name returned);
  the default page size is the model's maximum, 100.
- Faults: `fail_rate` answers 500 before the backend sees the call; `drop_rate` lets the
  backend apply the call, then resets the connection (the answer is lost: the case
  clientTokens exist for). Latency is added before throttling and faults.
- `configure` keeps a bucket's level when its limits do not change; new limits start a
  new, full bucket. `reset` returns to the start-up settings with full buckets.
- The record (`Emulator.record()`): "operations" {operation: {status: count}} (status
  "dropped" when no answer was sent; throttles count as "400" too, refusals as "403"),
  "throttled" {operation: count}, "injected" {"500"|"dropped": {operation: count}},
  "refused" {error code: {operation: count}}, "tokens" and
  "tokens_sent" {"package/version": [clientToken, ...]} (distinct, first-seen order; of
  UpdatePackageVersion calls that reached the backend / that arrived at all),
  "accepted_times" (wall-clock times of UpdatePackageVersion 200s), "events"
  [[time, operation, status], ...], "started", "connections" (TCP connections that carried
  package calls: connections are kept alive, as AWS keeps them).
  The same counts per (account, region) are under "accounts" {account: {region: {...}}}.
- Packages and quotas (one token bucket per operation) live per (account, region), as
  AWS keeps them: the account is the one moto maps the signing access key to (any dummy
  key: moto's default account; a key from the emulator's STS AssumeRole: the role's
  account), the region is the SigV4 signing scope's.
- `accounts`/`regions` (`--accounts`/`--regions`) list the emulated ones (none: any).
  Outside them a package call is refused with 403 UnrecognizedClientException (AWS's
  answer to credentials it does not know, and in an opt-in region not enabled), and an
  STS AssumeRole into another account with 403 AccessDenied: a rehearsal aimed at a
  wrong target fails at once. Refusals and expired credentials are judged before the
  quota and spend no token. Seeds go to every emulated (account, region) unless told
  which; `state()` reads the first listed account and region unless told which.
- STS sessions (AssumeRole, GetSessionToken) last at most `session_seconds`
  (`--session-seconds`; AWS's 900 s floor does not apply); a package call signed with
  them after their Expiration gets 403 ExpiredTokenException, "The security token
  included in the request is expired". Other services (STS itself included) do not check
  expiry. GetSessionToken issues a key per session, in the caller's account.
"""
from fleetrel.emulator.process import (
    Emulator,
    EmulatorError,
    start_emulator,
    start_emulator_in_thread,
)

__all__ = ["Emulator", "EmulatorError", "start_emulator", "start_emulator_in_thread"]
