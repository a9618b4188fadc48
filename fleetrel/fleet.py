"""What the fleet runs: how many things report each package version, from fleet indexing.

    counts = await distributions(client, ["thermostat-fw"], rate=5.0)
    counts["thermostat-fw"].count("3.0.0")     # 1234 things report 3.0.0
    counts["thermostat-fw"].share("3.0.0")     # 0.12 of the things that report the package

Devices (or jobs with `versionUpdateByJobsConfig`) report the versions they run in the
`$package` reserved named shadow, `{"state": {"reported": {"<package>": {"version":
"1.0.0"}}}}`. With fleet indexing on and `$package` among its named shadows, one
GetBucketsAggregation (a terms aggregation over `shadow.name.$package.reported.<package>.version`)
counts the things on every version of a package: one call per (target, package), never
one per version, whatever the number of versions or things. The AWS console draws the
same aggregation as its version distribution chart.

A version no bucket names is run by no thing, as long as the answer holds every bucket
(fewer than `MAX_BUCKETS`, the model's maximum). If it holds that many, the versions left
out are unknown (`count` is None), and neither a `devices:` filter nor the guard treats an
unknown count as zero.

Sources: AWS IoT developer guide, "Preparing fleet indexing" (the `$package` shadow as
a fleet-indexing source, its field names) and "Querying for aggregate data"
(GetBucketsAggregation); botocore's IoT model for the request and TermsAggregation's
maxBuckets range (1-10000).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from fleetrel.reads import ReadBuckets, ReadError, bounded, read

PACKAGE_SHADOW = "$package"
INDEX = "AWS_Things"  # the things index fleet indexing keeps
QUERY = "thingName:*"  # every indexed thing; the buckets then count those reporting the package
MAX_BUCKETS = 10_000  # model: TermsAggregation maxBuckets, 1-10000
OPERATION = "get_buckets_aggregation"
# The read bucket for the aggregation: AWS throttles fleet-indexing reads apart from the
# catalog's, and lower: 5 GetBucketsAggregation a second per account and region (AWS IoT
# Device Management quotas, as the emulator's settings.FLEET_RATES note), paced one at a time.
FLEET_READ_RATE = 5.0
FLEET_READ_BURST = 1


def version_field(package: str) -> str:
    """The indexed field that holds the version of `package` a thing reports."""
    return f"shadow.name.{PACKAGE_SHADOW}.reported.{package}.version"


#: How a run goes on without the fleet's counts: said wherever they are needed and missing.
NO_FLEET_CHECK_HINT = ("pass --no-fleet-check to go on without the fleet's counts (the guard is then not "
                       "applied, a devices: filter matches nothing, and the run's journal says so)")
#: AWS's codes for an index that is not there at all (fleet indexing off), not one package's field.
INDEX_OFF = ("ResourceNotFoundException", "IndexNotReadyException")


class FleetUnavailable(Exception):
    """The fleet's counts cannot be read: indexing off, `$package` not indexed, no
    permission, or the reads failed. The message says which and how to go on; `code`,
    `detail` (AWS's) and `package` say it for a one-line summary (`short`)."""

    def __init__(self, message: str, *, code: str = "", detail: str = "", package: str = "") -> None:
        super().__init__(message)
        self.code, self.detail, self.package = code, detail, package

    def needed_for(self, why: str) -> FleetUnavailable:
        """The same failure, saying what needed the counts and how to go on without them."""
        return FleetUnavailable(f"{self}; {why}: {NO_FLEET_CHECK_HINT}", code=self.code, detail=self.detail,
                                package=self.package)

    def short(self) -> str:
        """One line: fleet indexing is off, or which package cannot be counted and why."""
        if self.code in INDEX_OFF:
            return "fleet indexing is off (see docs/fleet.md)"
        return f"{self.package}: {self.code}: {self.detail}; docs/fleet.md"


@dataclass(frozen=True)
class Distribution:
    """How many things report each version of one package (in one target)."""

    package: str
    counts: dict[str, int] = field(default_factory=dict)
    complete: bool = True  # False: the answer was cut at MAX_BUCKETS; versions left out are unknown

    @property
    def total(self) -> int:
        """Things that report this package, whatever version."""
        return sum(self.counts.values())

    def count(self, version: str) -> int | None:
        """Things that report `version`; None when the answer was cut and left it out."""
        if version in self.counts:
            return self.counts[version]
        return 0 if self.complete else None

    def share(self, version: str) -> float | None:
        count = self.count(version)
        if count is None or not self.total:
            return None if count is None else 0.0
        return count / self.total


def unavailable_message(where: str, package: str, failure: ReadError) -> str:
    """What went wrong and what turns the counts on, by AWS's error code."""
    said = f"{where}cannot count the devices on {package}'s versions: GetBucketsAggregation answered " \
           f"{failure.code}: {failure.message}"
    if failure.code == "InvalidAggregationException":
        how = (f"fleet indexing must index the $package named shadow and have {version_field(package)} as a "
               "String custom field (aws iot update-indexing-configuration; docs/fleet.md)")
    elif failure.code in INDEX_OFF:
        how = ("turn fleet indexing on with the $package named shadow (AWS IoT console: Settings, Manage "
               "indexing, Add named shadows, Add device software packages and versions; docs/fleet.md)")
    elif failure.code in ("AccessDeniedException", "UnauthorizedException"):
        how = "the credentials need iot:GetBucketsAggregation"
    else:
        how = "try again later"
    return f"{said}. To count them, {how}"


async def distribution(client: Any, limiter: Any, package: str, *, target: str | None = None) -> Distribution:
    """One GetBucketsAggregation: the things on each version of `package`."""
    answer = await read(client, limiter, OPERATION, indexName=INDEX, queryString=QUERY,
                        aggregationField=version_field(package),
                        bucketsAggregationType={"termsAggregation": {"maxBuckets": MAX_BUCKETS}})
    if isinstance(answer, ReadError):
        raise FleetUnavailable(unavailable_message(f"target {target}: " if target else "", package, answer),
                               code=answer.code, detail=answer.message, package=package)
    buckets = answer.get("buckets") or []
    counts = {str(b["keyValue"]): int(b["count"]) for b in buckets if b.get("keyValue") is not None}
    return Distribution(package, counts, complete=len(buckets) < MAX_BUCKETS)


async def distributions(client: Any, packages: Iterable[str], *, target: str | None = None,
                        buckets: ReadBuckets | None = None, concurrency: int = 2,
                        known: dict[str, Distribution] | None = None,
                        failures: list[FleetUnavailable] | None = None) -> dict[str, Distribution]:
    """Each package's distribution, one aggregation each, through the fleet read bucket (two
    in flight: the bucket paces them at 5/s anyway, and an index that is not there costs
    at most two failed calls); those in `known` (read earlier in this command) are not
    read again. With `failures`, a
    package that cannot be counted is left out and its FleetUnavailable added there;
    without, the first one is raised."""
    limiter = (buckets or fleet_buckets())[OPERATION]
    wanted = set(packages)
    found: dict[str, Distribution] = {name: known[name] for name in wanted if known and name in known}
    packages = wanted - set(found)

    index_off: list[FleetUnavailable] = []

    async def one(package: str) -> None:
        if index_off:  # no index at all: no other package can be counted either, so ask no more
            return
        try:
            found[package] = await distribution(client, limiter, package, target=target)
        except FleetUnavailable as exc:
            if failures is None:
                raise
            failures.append(exc)
            if exc.code in INDEX_OFF:
                index_off.append(exc)

    await bounded(sorted(packages), concurrency, one)
    return found


#: Distributions already read, {target: {package: Distribution}}: passed from a plan's
#: expansion to its preview or guard, so each (target, package) costs one aggregation.
FleetCounts = dict  # dict[str | None, dict[str, Distribution]]


def fleet_buckets() -> ReadBuckets:
    """A target's read buckets for fleet indexing (a bucket per operation, at its rate)."""
    return ReadBuckets(rate=FLEET_READ_RATE, burst=FLEET_READ_BURST)


# --- the version distribution of packages, as `fleetrel fleet` shows it ---------------------

@dataclass(frozen=True)
class VersionRow:
    version: str
    devices: int | None
    share: float | None
    status: str | None  # the catalog's; None: things report a version the catalog does not have
    default: bool = False


@dataclass(frozen=True)
class PackageFleet:
    """One package in one target: every version the catalog or the fleet knows, newest first."""

    target: str | None
    package: str
    things: int  # things that report the package
    complete: bool
    rows: list[VersionRow]
    exists: bool = True  # False: the catalog has no such package

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "package": self.package, "things": self.things, "complete": self.complete,
                "exists": self.exists, "versions": [vars(row) for row in self.rows]}


async def package_fleets(client: Any, packages: Iterable[str], *, target: str | None = None, rate: float = 10.0,
                         burst: int = 10, concurrency: int = 4) -> list[PackageFleet]:
    """For each package: its versions' statuses (ListPackageVersions), its default
    (GetPackage) and the things on each version (one GetBucketsAggregation)."""
    from fleetrel.plan.selectors import sort_key
    from fleetrel.reads import pages

    catalog_reads = ReadBuckets(rate=rate, burst=burst)
    counts = await distributions(client, packages, target=target, concurrency=concurrency)
    out: dict[str, PackageFleet] = {}

    async def one(package: str) -> None:
        listed = await pages(client, catalog_reads["list_package_versions"], "list_package_versions",
                             "packageVersionSummaries", packageName=package)
        described = await read(client, catalog_reads["get_package"], "get_package", packageName=package)
        statuses = {} if isinstance(listed, ReadError) else {v["versionName"]: v["status"] for v in listed[0]}
        default = None if isinstance(described, ReadError) else described.get("defaultVersionName")
        seen = counts[package]
        rows = [VersionRow(name, seen.count(name), seen.share(name), statuses.get(name), name == default)
                for name in sorted(set(statuses) | set(seen.counts), key=sort_key, reverse=True)]
        exists = not (isinstance(described, ReadError) and described.missing)
        out[package] = PackageFleet(target, package, seen.total, seen.complete, rows, exists)

    await bounded(sorted(counts), concurrency, one)
    return [out[name] for name in sorted(out)]
