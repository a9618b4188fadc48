"""Who may call the emulator: the emulated accounts and regions, and STS session expiry.

    access = Access(EmulatorSettings(accounts="111111111111", session_seconds=30),
                    default_account="123456789012")
    access.session_length(3600)                        # 30: the session a caller gets
    access.issued("ASIA...", expires_at=time.time() + 30)  # moto_glue, when STS hands out a key
    access.refusal("ASIA...", "111111111111", "us-east-1")  # None, or a Refusal once expired

AWS checks the caller before it counts the call against a quota, so a refused call
spends no token and never reaches the catalog. The answers, all HTTP 403 (rest-json):
- credentials past the Expiration STS gave them: ExpiredTokenException, "The security
  token included in the request is expired" (what AWS says, and what botocore's
  refreshing credentials are there to avoid);
- an account outside `accounts`, or a region outside `regions`:
  UnrecognizedClientException, "The security token included in the request is invalid"
  (what AWS answers for credentials it does not know and in an opt-in region the account
  has not enabled), with the emulator's reason appended, so a rehearsal that aims at the
  wrong target fails loudly instead of creating packages in an account nobody watches.
An STS AssumeRole into a role of an account outside `accounts` is refused by moto_glue
(AccessDenied, 403, as AWS refuses a role its trust policy does not open to the caller):
a wrong role ARN is caught at the account guard, before any package call.

Imports nothing from moto (moto_glue hands it what STS issued).
"""
from __future__ import annotations

import threading
import time
from typing import Iterable, NamedTuple

from fleetrel.emulator.settings import EmulatorSettings, SettingsError

DEFAULT_REGION = "us-east-1"
EXPIRED = ("ExpiredTokenException", "The security token included in the request is expired")
UNRECOGNIZED = ("UnrecognizedClientException",
                "The security token included in the request is invalid")


class Refusal(NamedTuple):
    """Why a call is refused: the AWS error code and message (HTTP 403)."""

    code: str
    message: str


class Access:
    """The known (account, region) pairs of the current settings, and the expiry time of
    every access key the emulator's STS issued (kept across `update` and reset: a
    credential does not outlive its Expiration because the emulator was reconfigured)."""

    def __init__(self, settings: EmulatorSettings | None = None, *,
                 default_account: str) -> None:
        self.default_account = default_account
        self._expiry: dict[str, float] = {}  # access key id -> wall-clock expiry
        self._lock = threading.Lock()
        self.update(settings or EmulatorSettings())

    def update(self, settings: EmulatorSettings) -> None:
        # Frozensets for the per-call membership tests; the tuples keep the order.
        self.accounts, self.regions = settings.accounts, settings.regions
        self._accounts, self._regions = frozenset(self.accounts), frozenset(self.regions)
        self.session_seconds = settings.session_seconds

    # -- sessions -----------------------------------------------------------------------

    def session_length(self, requested: int) -> int:
        """The seconds a session asked for `requested` seconds gets: session_seconds caps
        it (AWS's own floor, 900 s, is too long for a test to wait out)."""
        if self.session_seconds is None:
            return requested
        return min(requested, self.session_seconds)

    def issued(self, access_key: str, expires_at: float) -> None:
        """STS handed out `access_key`, valid until `expires_at` (epoch seconds)."""
        with self._lock:
            self._expiry[access_key] = expires_at

    # -- the check on each package call ---------------------------------------------------

    def refusal(self, access_key: str | None, account: str, region: str,
                now: float | None = None) -> Refusal | None:
        """Why a call signed with `access_key`, landing in (account, region), is refused;
        None when it may go on (to the quota)."""
        if access_key is not None:
            expires_at = self._expiry.get(access_key)
            if expires_at is not None and (time.time() if now is None else now) >= expires_at:
                return Refusal(*EXPIRED)
        if self._accounts and account not in self._accounts:
            return Refusal(UNRECOGNIZED[0], f"{UNRECOGNIZED[1]} (fleetrel emulator: account "
                                            f"{account} is not one of the emulated accounts "
                                            f"{', '.join(self.accounts)})")
        if self._regions and region not in self._regions:
            return Refusal(UNRECOGNIZED[0], f"{UNRECOGNIZED[1]} (fleetrel emulator: region "
                                            f"{region} is not one of the emulated regions "
                                            f"{', '.join(self.regions)})")
        return None

    def admits_role_account(self, account: str) -> bool:
        """Whether STS may hand out credentials for a role in `account`."""
        return not self._accounts or account in self._accounts

    def summary(self) -> str:
        """One line for the operator: what is emulated and how long sessions last."""
        accounts = ", ".join(self.accounts) or f"any account ({self.default_account} " \
                                                "for keys moto does not know)"
        regions = ", ".join(self.regions) or "any region"
        sessions = (f"STS sessions last at most {self.session_seconds} s"
                    if self.session_seconds else "STS sessions last as long as asked")
        return f"accounts: {accounts}; regions: {regions}; {sessions}"

    # -- where seeds and state reads go ---------------------------------------------------

    def default_place(self) -> tuple[str, str]:
        """(account, region) of a control request that names neither: the first listed."""
        return (self.accounts[0] if self.accounts else self.default_account,
                self.regions[0] if self.regions else DEFAULT_REGION)

    def places(self, accounts: Iterable[str] | None = None,
               regions: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """Every (account, region) of the given accounts × regions, each defaulting to all
        the emulated ones (moto's default account / us-east-1 when none are listed).
        Naming one the emulator does not emulate is a SettingsError: a seed nobody can
        reach is a mistake."""
        chosen_accounts = list(accounts or self.accounts or [self.default_account])
        chosen_regions = list(regions or self.regions or [DEFAULT_REGION])
        for name, chosen, known in (("account", chosen_accounts, self._accounts),
                                    ("region", chosen_regions, self._regions)):
            unknown = [item for item in chosen if known and item not in known]
            if unknown:
                raise SettingsError(f"{name} {', '.join(unknown)} is not emulated "
                                    f"(emulated: {', '.join(sorted(known))})")
        return [(account, region) for account in chosen_accounts for region in chosen_regions]
