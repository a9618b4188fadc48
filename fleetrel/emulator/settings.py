"""The emulator's knobs: throttling, faults, latency and the undocumented behaviours.

One frozen value; a change makes a new one (`updated`), checked before it takes effect,
so a bad `configure` call leaves the running emulator as it was.

    settings = EmulatorSettings(rate=10, burst=10)
    settings = settings.updated(operations={"GetPackageVersion": {"rate": 50}})
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

# The ten Software Package Catalog operations: the only calls throttled and faulted.
OPERATIONS = (
    "CreatePackage", "GetPackage", "UpdatePackage", "DeletePackage", "ListPackages",
    "CreatePackageVersion", "GetPackageVersion", "UpdatePackageVersion",
    "DeletePackageVersion", "ListPackageVersions",
)
# The fleet's calls: fleet indexing's reads and configuration, and the device shadow
# data plane. Each has a token bucket per (account, region) at AWS's default rate (calls
# per second; burst the same), whatever `rate` says (that is the catalog's);
# `operations` overrides them as it does the catalog's. Sources: AWS IoT Device
# Management quotas, fleet indexing (https://docs.aws.amazon.com/general/latest/gr/
# iot_device_management.html#fleet-indexing-limits) and AWS IoT Core quotas, Device
# Shadow (https://docs.aws.amazon.com/general/latest/gr/iot-core.html#device-shadow-limits;
# 4,000 is the large regions' figure, smaller regions have less). The stored copies
# searched for this work did not reach those tables' rows: the figures are the pages' as
# remembered, to be checked against them.
FLEET_RATES: dict[str, float] = {
    "SearchIndex": 15.0,
    "GetStatistics": 5.0,
    "GetBucketsAggregation": 5.0,
    "GetIndexingConfiguration": 20.0,
    "UpdateIndexingConfiguration": 1.0,
    "UpdateThingShadow": 4000.0,
    "GetThingShadow": 4000.0,
    "DeleteThingShadow": 4000.0,
}
ERROR_CHOICES = ("ValidationException", "ConflictException")
# The shapes AWS gives account ids and region names (us-east-1, eu-central-2,
# us-gov-west-1, cn-north-1): a typo is refused when the emulator starts, not at the
# first call that misses.
ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


class SettingsError(ValueError):
    """A setting that cannot be applied; the message names it."""


@dataclass(frozen=True)
class EmulatorSettings:
    """rate/burst: token bucket per catalog operation, in each (account, region) (rate None
    or 0: no throttling; burst None: same as rate, at least 1). operations: per-operation
    {"rate", "burst"} overrides, of the catalog's operations and of the fleet's (which
    otherwise have AWS's rates, `FLEET_RATES`, whatever `rate` says).
    fail_rate: share of calls answered 500 InternalServerException before reaching the
    backend. drop_rate: share of calls applied by the backend whose connection is then
    closed with no answer (the response is lost, as when a load balancer resets).
    latency_ms + uniform(0, jitter_ms): added before every package call is answered.
    seed: seeds the fault dice for repeatable runs. refused_transition, already_in_state,
    idempotency_window_s: see `fleetrel.emulator.catalog.CatalogRules`.
    accounts, regions: the emulated accounts and regions (empty: any); a package call from
    another is refused, as is an STS AssumeRole into another account (see `access`).
    A comma-separated string is split. session_seconds: STS sessions (AssumeRole,
    GetSessionToken) last at most this long (None: as long as the caller asks).
    places: per-(account, region) quotas, {"111111111111/us-east-1": {"rate", "burst"}}:
    in that place every catalog operation has these limits instead of the ones above
    (rate None or 0: not throttled there), as one account may have a quota of its own.
    """

    rate: float | None = None
    burst: float | None = None
    operations: dict[str, dict[str, float | None]] = field(default_factory=dict)
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int | None = None
    refused_transition: str = "ValidationException"
    already_in_state: str | None = "ConflictException"
    idempotency_window_s: float = 8 * 3600.0
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    session_seconds: int | None = None
    places: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # JSON (configure) and the CLI give lists and "a,b" strings; keep one shape.
        for name in ("accounts", "regions"):
            value = getattr(self, name) or ()
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            # dict.fromkeys: drop repeats, keep the order (the first is the default).
            object.__setattr__(self, name, tuple(dict.fromkeys(str(item) for item in value)))

    def updated(self, **changes: Any) -> EmulatorSettings:
        """A copy with `changes` applied; `operations` merges per operation (None removes)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise SettingsError(f"unknown setting(s) {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(names))}")
        for name in ("operations", "places"):
            if name in changes:
                merged = dict(getattr(self, name))
                for key, limits in (changes[name] or {}).items():
                    if limits is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = dict(limits)
                changes[name] = merged
        new = dataclasses.replace(self, **changes)
        new.check()
        return new

    def check(self) -> None:
        check_limits("rate/burst", self.rate, self.burst)
        for operation, limits in self.operations.items():
            if operation not in OPERATIONS and operation not in FLEET_RATES:
                raise SettingsError(f"operations: unknown operation {operation!r}; "
                                    f"known: {', '.join((*OPERATIONS, *FLEET_RATES))}")
            extra = set(limits) - {"rate", "burst"}
            if extra:
                raise SettingsError(f"operations.{operation}: only rate and burst can be "
                                    f"set, not {', '.join(sorted(extra))}")
            check_limits(f"operations.{operation}", limits.get("rate"), limits.get("burst"))
        for place, limits in self.places.items():
            account, _, region = str(place).partition("/")
            if not (ACCOUNT_ID.match(account) and REGION_NAME.match(region)):
                raise SettingsError(f"places: {place!r} is not ACCOUNT/REGION (like 111111111111/eu-west-1)")
            if (self.accounts and account not in self.accounts) or (self.regions and region not in self.regions):
                raise SettingsError(f"places: {place} is not an emulated account and region "
                                    "(see accounts and regions)")
            extra = set(limits) - {"rate", "burst"}
            if extra:
                raise SettingsError(f"places.{place}: only rate and burst can be set, not {', '.join(sorted(extra))}")
            check_limits(f"places.{place}", limits.get("rate"), limits.get("burst"))
        for name in ("fail_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SettingsError(f"{name} must be between 0 and 1, got {value}")
        if self.fail_rate + self.drop_rate > 1.0:
            raise SettingsError("fail_rate + drop_rate must be at most 1")
        for name in ("latency_ms", "jitter_ms", "idempotency_window_s"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative")
        if self.refused_transition not in ERROR_CHOICES:
            raise SettingsError(f"refused_transition must be one of {', '.join(ERROR_CHOICES)}")
        if self.already_in_state is not None and self.already_in_state not in ERROR_CHOICES:
            raise SettingsError("already_in_state must be one of "
                                f"{', '.join(ERROR_CHOICES)} or null (a successful no-op)")
        for name, pattern, example in (("accounts", ACCOUNT_ID, "111111111111"),
                                       ("regions", REGION_NAME, "eu-west-1")):
            bad = [item for item in getattr(self, name) if not pattern.match(item)]
            if bad:
                raise SettingsError(f"{name}: {', '.join(map(repr, bad))} "
                                    f"{'is' if len(bad) == 1 else 'are'} not "
                                    f"{'an account id' if name == 'accounts' else 'a region name'}"
                                    f" (like {example})")
        if self.session_seconds is not None and (
                not isinstance(self.session_seconds, int) or isinstance(self.session_seconds, bool)
                or self.session_seconds < 1):
            raise SettingsError("session_seconds must be a whole number of seconds >= 1 "
                                "(or null: sessions last as long as the caller asks)")

    def limits_for(self, operation: str, account: str | None = None,
                   region: str | None = None) -> tuple[float, float] | None:
        """(rate, burst) of `operation`'s bucket in (account, region), or None when it is
        not throttled there."""
        if operation in FLEET_RATES:
            # AWS's rate unless `operations` says otherwise; `rate` and `places` are the
            # catalog's quotas.
            limits = self.operations.get(operation, {})
            rate = limits.get("rate", FLEET_RATES[operation])
            if not rate:
                return None
            burst = limits.get("burst")
            return float(rate), float(burst if burst else max(1.0, rate))
        place = self.places.get(f"{account}/{region}") if self.places else None
        if place is not None:
            rate = place.get("rate")
            return (float(rate), float(place.get("burst") or max(1.0, rate))) if rate else None
        limits = self.operations.get(operation, {})
        rate = limits.get("rate", self.rate)
        if not rate:
            return None
        burst = limits.get("burst", self.burst if "rate" not in limits else None)
        return float(rate), float(burst if burst else max(1.0, rate))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def place_limits(text: str) -> tuple[str, dict[str, float]]:
    """`ACCOUNT/REGION=RATE[:BURST]` (the command line's --place-rate) as a `places` entry.

        place_limits("111111111111/us-east-1=2")     # ('111111111111/us-east-1', {'rate': 2.0})
    """
    place, equals, limits = text.partition("=")
    rate, _, burst = limits.partition(":")
    try:
        out = {"rate": float(rate), **({"burst": float(burst)} if burst else {})}
    except ValueError:
        out = {}
    if not equals or not out:
        raise SettingsError(f"--place-rate {text!r}: give ACCOUNT/REGION=RATE or ACCOUNT/REGION=RATE:BURST "
                            "(like 111111111111/us-east-1=2)")
    return place.strip(), out


def check_limits(where: str, rate: Any, burst: Any) -> None:
    if rate is not None and (not isinstance(rate, (int, float)) or rate < 0):
        raise SettingsError(f"{where}: rate must be a number >= 0 (0 or null: no throttling)")
    if burst is not None and (not isinstance(burst, (int, float)) or burst < 1):
        raise SettingsError(f"{where}: burst must be a number >= 1")
