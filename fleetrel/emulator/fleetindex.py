"""Fleet indexing's reads over a `Fleet`: GetBucketsAggregation, GetStatistics and
SearchIndex on the AWS_Things index, for the query subset fleetrel needs.

    reads = IndexReads(fleet, things, configuration)
    reads.buckets({"indexName": "AWS_Things", "queryString": "thingName:*",
                   "aggregationField": "shadow.name.$package.reported.fw.version",
                   "bucketsAggregationType": {"termsAggregation": {"maxBuckets": 10000}}})
    # {"totalCount": 1000, "buckets": [{"keyValue": "2.0", "count": 450}, ...]}

Queries served: `*`, `thingName:*`, `thingName:NAME`,
`shadow.name.$package.reported.PACKAGE.version:*` and `...version:VERSION`, and any of
those joined by ` AND `. Lucene's backslash escapes are read (AWS's workshops escape the
`-` of a package name, `telemetry\\-agent`; unescaped is read the same), a value may be
double-quoted. Anything else is InvalidQueryException (400) saying what is served.

Aggregations (`shadow.name.$package.reported.PACKAGE.version`, a String custom field):
buckets by count, most first, then by keyValue; at most maxBuckets (default 10, the
model's 1-10000); totalCount is the number of things the query matches. The common forms
(everything, one package, one version) are answered from the fleet's counts, O(versions);
other conjunctions scan the things.

The index rules (sources in `fleetrel.emulator`'s docstring): thing indexing OFF: the
AWS_Things index does not exist (ResourceNotFoundException, 404, "Index AWS_Things does
not exist"); an aggregation on a field that is not a custom field of the configuration,
or on the `$package` shadow while it is not indexed (thingIndexingMode
REGISTRY_AND_SHADOW, namedShadowIndexingMode ON, "$package" in filter.namedShadowNames):
InvalidAggregationException (400); a query on `$package` while it is not indexed:
InvalidQueryException (400), our choice (a search would find nothing, and a release guard
would read "no device runs it").
"""
from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from fleetrel.emulator.fleet import PACKAGE_SHADOW, Fleet, FleetError, PackageShadow

INDEX_NAME = "AWS_Things"
FIELD_PREFIX = f"shadow.name.{PACKAGE_SHADOW}.reported."
VERSION_FIELD = re.compile(r"^shadow\.name\.\$package\.reported\.([a-zA-Z0-9\-_.]{1,128})\.version$")
MAX_BUCKETS = 10000          # TermsAggregation.maxBuckets: 1..10000 (botocore's model)
DEFAULT_BUCKETS = 10         # "The number of buckets to return in the response. Default to 10."
MAX_SEARCH_RESULTS = 100     # SearchIndex: "This maximum number cannot exceed 100."
REGISTRY_VERSION = "registry.version"  # GetStatistics' field when none is given
SERVED = ("*, thingName:*, thingName:NAME, shadow.name.$package.reported.PACKAGE.version:* "
          "and shadow.name.$package.reported.PACKAGE.version:VERSION, joined by AND")


def version_field(package: str) -> str:
    return f"{FIELD_PREFIX}{package}.version"


class Things(Protocol):
    """The registry's things of the place (moto's, through `moto_glue`)."""

    def count(self) -> int: ...
    def names(self) -> Iterable[str]: ...
    def exists(self, name: str) -> bool: ...
    def document(self, name: str) -> dict[str, Any]: ...   # thingName, thingId, attributes...
    def version(self, name: str) -> int: ...               # registry.version


@dataclass(frozen=True)
class Clause:
    """One term of a query: kind "all", "name" (value), "has" (package) or "version"
    (package, value)."""

    kind: str
    package: str = ""
    value: str = ""

    def matches(self, name: str, shadow: PackageShadow | None) -> bool:
        if self.kind == "all":
            return True
        if self.kind == "name":
            return name == self.value
        reported = shadow.reported.get(self.package) if shadow is not None else None
        if reported is None:
            return False
        return self.kind == "has" or reported[0] == self.value


def invalid_query(query: str, why: str = "") -> FleetError:
    return FleetError("InvalidQueryException", 400,
                      f"The query {query!r} is not one fleetrel's emulator serves"
                      f"{': ' + why if why else ''} (it serves {SERVED})")


def _unescape(text: str, query: str) -> str:
    """Lucene's backslash escapes read; an unescaped special character is not served."""
    out, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
            continue
        if char in ' +!(){}[]^"~*?:\\/&|':
            raise invalid_query(query, f"{char!r} in {text!r}")
        out.append(char)
        index += 1
    return "".join(out)


def parse_query(query: str) -> list[Clause]:
    """The clauses of `query` (a conjunction), or InvalidQueryException."""
    if not isinstance(query, str) or not query.strip():
        raise invalid_query(str(query), "it is empty")
    clauses = []
    for term in re.split(r"\s+AND\s+", query.strip()):
        if term == "*":
            clauses.append(Clause("all"))
            continue
        match = re.match(r"^((?:[^:\\\s]|\\.)+):(.+)$", term)
        if match is None:
            raise invalid_query(query, f"{term!r} is not FIELD:VALUE")
        field, value = _unescape(match.group(1), query), match.group(2)
        if len(value) > 1 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1].replace('\\"', '"')
        elif value != "*":
            value = _unescape(value, query)
        if field == "thingName":
            clauses.append(Clause("all") if value == "*" else Clause("name", value=value))
            continue
        found = VERSION_FIELD.match(field)
        if found is None:
            raise invalid_query(query, f"the field {field} is not served")
        clauses.append(Clause("has", found.group(1)) if value == "*"
                       else Clause("version", found.group(1), value))
    return clauses


@dataclass(frozen=True)
class IndexingState:
    """What the indexing configuration (GetIndexingConfiguration's thingIndexingConfiguration)
    lets the reads see."""

    on: bool
    package_indexed: bool
    custom_fields: frozenset[str]

    @classmethod
    def of(cls, configuration: dict[str, Any]) -> IndexingState:
        mode = configuration.get("thingIndexingMode", "OFF")
        names = (configuration.get("filter") or {}).get("namedShadowNames") or []
        return cls(on=mode != "OFF",
                   package_indexed=(mode == "REGISTRY_AND_SHADOW"
                                    and configuration.get("namedShadowIndexingMode") == "ON"
                                    and PACKAGE_SHADOW in names),
                   custom_fields=frozenset(item.get("name", "") for item in
                                           configuration.get("customFields") or []
                                           if isinstance(item, dict)))


def package_not_indexed() -> str:
    return (f"the named shadow {PACKAGE_SHADOW} is not indexed: fleet indexing needs "
            "thingIndexingMode REGISTRY_AND_SHADOW, namedShadowIndexingMode ON and "
            f"\"{PACKAGE_SHADOW}\" in filter.namedShadowNames (UpdateIndexingConfiguration)")


class IndexReads:
    """The three reads on one place's AWS_Things index."""

    def __init__(self, fleet: Fleet, things: Things, configuration: dict[str, Any]) -> None:
        self.fleet, self.things = fleet, things
        self.state = IndexingState.of(configuration)

    # -- common checks ----------------------------------------------------------------

    def _query(self, request: dict[str, Any]) -> list[Clause]:
        index = request.get("indexName") or INDEX_NAME
        if index != INDEX_NAME or not self.state.on:
            raise FleetError("ResourceNotFoundException", 404, f"Index {index} does not exist")
        query = request.get("queryString")
        clauses = parse_query(query)  # type: ignore[arg-type]
        if not self.state.package_indexed and any(c.kind in ("has", "version") for c in clauses):
            raise FleetError("InvalidQueryException", 400,
                             f"The query {query!r} reads {package_not_indexed()}")
        # "everything" terms narrow nothing.
        return [clause for clause in clauses if clause.kind != "all"]

    def _aggregated_package(self, field: Any) -> str:
        found = VERSION_FIELD.match(field) if isinstance(field, str) else None
        if found is None:
            raise FleetError("InvalidAggregationException", 400,
                             f"The aggregation field {field!r} is not one fleetrel's emulator "
                             f"serves (it serves {version_field('PACKAGE')})")
        if not self.state.package_indexed:
            raise FleetError("InvalidAggregationException", 400,
                             f"The aggregation field {field} reads {package_not_indexed()}")
        if field not in self.state.custom_fields:
            raise FleetError("InvalidAggregationException", 400,
                             f"The aggregation field {field} is not a managed field or a custom "
                             "field of the indexing configuration: define it in "
                             "thingIndexingConfiguration.customFields (type String)")
        return found.group(1)

    def _matching(self, clauses: list[Clause]) -> list[tuple[str, PackageShadow | None]]:
        """The things `clauses` match, with their shadows (a scan, for the rare forms)."""
        shadows = self.fleet.shadows
        names = [c.value for c in clauses if c.kind == "name"]
        if names:
            candidates: Iterable[str] = [names[0]] if self.things.exists(names[0]) else []
        elif any(c.kind in ("has", "version") for c in clauses):
            candidates = list(shadows)   # only things with a shadow can match
        else:
            candidates = self.things.names()
        return [(name, shadows.get(name)) for name in candidates
                if all(clause.matches(name, shadows.get(name)) for clause in clauses)]

    # -- the reads ----------------------------------------------------------------------

    def buckets(self, request: dict[str, Any]) -> dict[str, Any]:
        clauses = self._query(request)
        package = self._aggregated_package(request.get("aggregationField"))
        kind = (request.get("bucketsAggregationType") or {})
        if "termsAggregation" not in kind:
            raise FleetError("InvalidAggregationException", 400,
                             "bucketsAggregationType must give termsAggregation")
        limit = (kind.get("termsAggregation") or {}).get("maxBuckets", DEFAULT_BUCKETS)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_BUCKETS:
            raise FleetError("InvalidRequestException", 400,
                             f"maxBuckets must be between 1 and {MAX_BUCKETS}, not {limit!r}")
        if not clauses:
            counts, total = self.fleet.versions_of(package), self.things.count()
        elif all(clause.package == package for clause in clauses):
            # Only terms on the aggregated package: its counts, narrowed to a version.
            counts = narrowed(self.fleet.versions_of(package), clauses)
            total = sum(counts.values())
        else:
            matching = self._matching(clauses)
            counts = {}
            for _, shadow in matching:
                reported = shadow.reported.get(package) if shadow is not None else None
                if reported is not None:
                    counts[reported[0]] = counts.get(reported[0], 0) + 1
            total = len(matching)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return {"totalCount": total,
                "buckets": [{"keyValue": value, "count": count} for value, count in ranked]}

    def statistics(self, request: dict[str, Any]) -> dict[str, Any]:
        clauses = self._query(request)
        field = request.get("aggregationField")
        if field is not None and field != REGISTRY_VERSION:
            # A String field: GetStatistics answers only the count of things that have it.
            package = self._aggregated_package(field)
            clauses = clauses + [Clause("has", package)]
            return {"statistics": {"count": self._count(clauses)}}
        # No field: registry.version, a Number, over the things the query matches.
        if not clauses:
            versions = [self.things.version(name) for name in self.things.names()]
        else:
            versions = [self.things.version(name) for name, _ in self._matching(clauses)]
        return {"statistics": number_statistics(versions)}

    def _count(self, clauses: list[Clause]) -> int:
        packages = {clause.package for clause in clauses}
        if len(packages) == 1 and "" not in packages:
            return sum(narrowed(self.fleet.versions_of(packages.pop()), clauses).values())
        return len(self._matching(clauses))

    def search(self, request: dict[str, Any]) -> dict[str, Any]:
        clauses = self._query(request)
        size = request.get("maxResults") or MAX_SEARCH_RESULTS
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise FleetError("InvalidRequestException", 400,
                             f"maxResults must be a whole number >= 1, not {size!r}")
        size = min(size, MAX_SEARCH_RESULTS)  # "The response might contain fewer results"
        names = sorted(name for name, _ in self._matching(clauses)) if clauses \
            else sorted(self.things.names())
        token = request.get("nextToken")
        start = 0
        if token:
            start = bisect.bisect_right(names, token)
        page = names[start:start + size]
        answer: dict[str, Any] = {"things": [self._document(name) for name in page],
                                  "thingGroups": []}
        if start + size < len(names):
            answer["nextToken"] = page[-1]
        return answer

    def _document(self, name: str) -> dict[str, Any]:
        document = self.things.document(name)
        shadow = self.fleet.shadows.get(name)
        if shadow is not None and self.state.package_indexed:
            document["shadow"] = json.dumps({"name": {PACKAGE_SHADOW: {
                "reported": shadow.reported_json(), "version": shadow.version,
                "hasDelta": False}}})
        return document


def narrowed(counts: dict[str, int], clauses: list[Clause]) -> dict[str, int]:
    """`counts` ({version: things}) of one package, kept to the version terms ask for."""
    values = {clause.value for clause in clauses if clause.kind == "version"}
    if not values:
        return counts
    value = values.pop()
    return {value: counts[value]} if not values and value in counts else {}


def number_statistics(values: list[int | float]) -> dict[str, Any]:
    """GetStatistics of a Number field: count, average, sum, minimum, maximum,
    sumOfSquares, variance, stdDeviation (only the count when nothing matches)."""
    count = len(values)
    if not count:
        return {"count": 0}
    total = float(sum(values))
    squares = float(sum(value * value for value in values))
    average = total / count
    variance = max(0.0, squares / count - average * average)
    return {"count": count, "average": average, "sum": total, "minimum": float(min(values)),
            "maximum": float(max(values)), "sumOfSquares": squares, "variance": variance,
            "stdDeviation": variance ** 0.5}
