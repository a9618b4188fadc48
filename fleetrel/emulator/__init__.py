"""A local AWS IoT Software Package Catalog on moto, throttling and failing like AWS.

    from fleetrel.emulator import start_emulator

    with start_emulator(rate=10, burst=10) as emu:      # its own process
        emu.seed([("thermostat-fw", "4.2.0")])          # DRAFT versions
        client = boto3.client("iot", endpoint_url=emu.url, region_name="us-east-1",
                              aws_access_key_id="x", aws_secret_access_key="x")
        client.update_package_version(packageName="thermostat-fw",
                                      versionName="4.2.0", action="PUBLISH")
        emu.record()["operations"]   # {"UpdatePackageVersion": {"200": 1}}

    with start_emulator() as emu:                       # a fleet (issue 24)
        emu.seed([("fw", "1.0.0"), ("fw", "2.0.0")])
        emu.seed_fleet(1000, seed=7)                    # things + their $package shadows
        boto3.client("iot", endpoint_url=emu.url, ...).get_buckets_aggregation(
            indexName="AWS_Things", queryString="thingName:*",
            aggregationField="shadow.name.$package.reported.fw.version",
            bucketsAggregationType={"termsAggregation": {"maxBuckets": 10000}})
        emu.fleet()          # e.g. {"fw": {"2.0.0": 597, "1.0.0": 403}}: what it must equal

Modules: `catalog` (the service's rules, pure Python), `moto_glue` (the only file that
knows moto), `bucket` (token bucket), `record` (what was received), `settings`,
`middleware` (WSGI: throttle, faults, latency, control endpoints), `server` (cheroot,
HTTP/1.1 keep-alive), `process` (the handle used here), `command` (`fleetrel emulator`);
the fleet: `fleet` ($package shadows and their count per version), `fleetindex` (fleet
indexing's reads), `fleetseed` (a made-up, skewed fleet).

The fleet follows these AWS sources:
- the `$package` reserved named shadow, its shape {"state": {"reported": {PACKAGE:
  {"version": "...", "attributes": {...}}}}}, "uses only the version and attributes
  keywords", "doesn't update with metadata": https://docs.aws.amazon.com/iot/latest/
  developerguide/preparing-to-use-software-package-catalog.html#reserved-named-shadow;
- the shadow service's errors and messages (400 "Invalid JSON", "Missing required node:
  state", "State node must be an object", "Reported node must be an object", "Invalid
  version", "Invalid clientToken" (over 64 bytes), "State contains an invalid node"; 404
  "No shadow exists with name: NAME", "Thing not found"; 409 "Version conflict"; 413 "The
  payload exceeds the maximum size allowed"): https://docs.aws.amazon.com/iot/latest/
  developerguide/device-shadow-error-messages.html; codes (InvalidRequestException,
  ResourceNotFoundException, ConflictException, RequestEntityTooLargeException, 429
  ThrottlingException) from botocore's iot-data model;
- fleet indexing of $package (thingIndexingMode, namedShadowIndexingMode ON, "$package"
  in filter.namedShadowNames; queries `shadow.name.$package.reported.PACKAGE.version:V`;
  GetBucketsAggregation on that field once it is a custom field):
  https://docs.aws.amazon.com/iot/latest/developerguide/preparing-fleet-indexing.html;
  "To make aggregation queries on non-managed fields, you must specify a field you
  defined in the customFields argument": https://docs.aws.amazon.com/iot/latest/
  developerguide/fleet-indexing-troubleshooting.html; a shadow field cannot be a custom
  field in REGISTRY mode: https://docs.aws.amazon.com/iot/latest/developerguide/
  managing-index.html;
- GetBucketsAggregation (POST /indices/buckets; termsAggregation.maxBuckets 1-10000,
  "Default to 10"; buckets "a ranked list of the number of occurrences"; totalCount "the
  number of things that fit the query string criteria"), GetStatistics (a String field
  answers only its count; no field: registry.version), SearchIndex ("This maximum number
  cannot exceed 100"), their errors: botocore's iot model and
  https://docs.aws.amazon.com/iot/latest/apireference/API_GetBucketsAggregation.html,
  https://docs.aws.amazon.com/iot/latest/developerguide/index-aggregate.html;
- indexing OFF: 404 ResourceNotFoundException "Index AWS_Things does not exist" (AWS's
  answer as practitioners' code and READMEs quote it for SearchIndex and DescribeIndex;
  AWS's pages do not print it);
- the rates: `settings.FLEET_RATES` (AWS IoT Device Management and IoT Core quotas pages).

Fleet behaviours AWS does not document, and what the emulator does:
- Shadows need a registered thing (moto's rule): else 404 "Thing not found". $package
  takes no `desired` (400 "State contains an invalid node: ..."); a package entry must end
  up with a version; attribute values are strings; `null` removes a package or an
  attribute. The $package messages beyond the shadow service's list are ours.
- A query on the $package shadow while it is not indexed is 400 InvalidQueryException
  (a search index would find nothing, and "no device runs it" would pass a release
  guard); an aggregation then is InvalidAggregationException (AWS: not a custom field).
- Queries outside the subset (OR, NOT, ranges, wildcards in values, other fields) are 400
  InvalidQueryException naming the subset, not AWS's results; other aggregation fields
  InvalidAggregationException. Only AWS_Things exists (another indexName: 404 "Index NAME
  does not exist"). The index is ready at once (no IndexNotReadyException).
- SearchIndex: things sorted by name, maxResults above 100 gives 100, nextToken is the
  last name returned; a thing's `shadow` is {"name": {"$package": {"reported", "version",
  "hasDelta"}}} when $package is indexed.
- The fleet's calls spend their own buckets and are recorded, but take no injected
  faults or latency (those are the catalog's). DeleteThing is moto's, unthrottled.
- Seeding (`--fleet`, POST /_fleetrel/fleet, `seed_fleet`) replaces the place's fleet
  (things it seeded before are deleted, every $package shadow forgotten) with things
  named device-000000.., reporting the catalog's versions as `fleetseed` describes, and
  turns on REGISTRY_AND_SHADOW, named shadows ON, "$package" in the filter and a String
  custom field per catalog package. `reset` forgets every thing, every $package shadow and
  the indexing configuration (back to OFF).

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
