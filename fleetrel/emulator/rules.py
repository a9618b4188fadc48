"""The service's rules as the emulator applies them: limits, lifecycle, checks, errors.

    check_name("fw", "packageName", MAX_PACKAGE_NAME)      # "fw", or raises CatalogError
    allowed(DRAFT, PUBLISHED)                              # True

An independent copy of what `fleetrel.service` states, on purpose: the emulator checks
fleetrel, so it must not share fleetrel's reading of the model. tests/test_service.py
holds both against botocore's service model. Where a rule comes from is noted beside
it: "model" is the botocore service model, "docs" the AWS IoT developer guide.
"""
from __future__ import annotations

import base64
import binascii
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable

DRAFT, PUBLISHED, DEPRECATED = "DRAFT", "PUBLISHED", "DEPRECATED"

STATUSES = (DRAFT, PUBLISHED, DEPRECATED)

# model: PackageName 1-128, VersionName 1-64, both [a-zA-Z0-9-_.]+
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
ATTRIBUTE_KEY_CHARS = NAME_CHARS - {"."} | {":"}  # model: ResourceAttributeKey [a-zA-Z0-9:_-]+
MAX_PACKAGE_NAME, MAX_VERSION_NAME = 128, 64
MAX_DESCRIPTION = 1024  # model: ResourceDescription max 1024
MAX_RECIPE = 3072  # model: PackageVersionRecipe max 3072
MAX_ATTRIBUTES_BYTES = 3072  # docs: "combined size of all the attributes ... limited to 3KB"
MAX_PAGE = 100  # model: PackageCatalogMaxResults 1-100
TOKEN_MIN, TOKEN_MAX = 36, 64  # model: ClientToken \S{36,64}


class CatalogError(Exception):
    """An error the service answers with: `code` is the AWS error code, `status` the HTTP status."""

    def __init__(self, code: str, status: int, message: str, **extra: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.status, self.message, self.extra = code, status, message, extra

    def body(self) -> dict[str, Any]:
        return {"__type": self.code, "message": self.message, **self.extra}


def validation(message: str) -> CatalogError:
    return CatalogError("ValidationException", 400, message)


def not_found(message: str) -> CatalogError:
    return CatalogError("ResourceNotFoundException", 404, message)


def conflict(message: str, resource_id: str | None = None) -> CatalogError:
    extra = {"resourceId": resource_id} if resource_id else {}
    return CatalogError("ConflictException", 409, message, **extra)


@dataclass
class CatalogRules:
    """The behaviours AWS does not document, as settings (defaults are our choices).

    refused_transition: error for a transition the lifecycle forbids (DRAFT -> DEPRECATED).
    already_in_state: error for PUBLISH on PUBLISHED or DEPRECATE on DEPRECATED; None
        makes it a successful no-op instead.
    idempotency_window_s: how long a clientToken is remembered.
    """

    refused_transition: str = "ValidationException"
    already_in_state: str | None = "ConflictException"
    idempotency_window_s: float = 8 * 3600.0


ERROR_STATUS = {"ValidationException": 400, "ConflictException": 409}



def allowed(current: str, target: str) -> bool:
    """docs: DRAFT -> PUBLISHED -> DEPRECATED -> PUBLISHED; nothing goes back to DRAFT."""
    return (current, target) in {(DRAFT, PUBLISHED), (PUBLISHED, DEPRECATED),
                                 (DEPRECATED, PUBLISHED)}


# -- validation (botocore checks only minimum lengths; the service checks the rest) -----

def check_name(value: Any, field_name: str, max_length: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_length \
            or not set(value) <= NAME_CHARS:
        raise validation(f"{field_name} must be 1-{max_length} characters of "
                         f"[a-zA-Z0-9-_.], got {value!r}")
    return value


def has_control(text: str) -> bool:
    # model: pattern [^\p{C}]+ (no control, format, private-use or unassigned characters)
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def check_description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION or has_control(value):
        raise validation(f"description must be at most {MAX_DESCRIPTION} characters "
                         "without control characters")
    return value


def check_recipe(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_RECIPE:
        raise validation(f"recipe must be a string of at most {MAX_RECIPE} characters")
    return value


def check_attributes(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise validation("attributes must be a map of strings")
    size = 0
    for key, item in value.items():
        if not isinstance(key, str) or not key or not set(key) <= ATTRIBUTE_KEY_CHARS:
            raise validation(f"attribute key {key!r} must match [a-zA-Z0-9:_-]+")
        if not isinstance(item, str) or not item or has_control(item):
            raise validation(f"attribute {key!r} must be a non-empty string without "
                             "control characters")
        size += len(key.encode()) + len(item.encode())
    if size > MAX_ATTRIBUTES_BYTES:
        raise validation(f"attributes total {size} bytes; the limit is {MAX_ATTRIBUTES_BYTES} "
                         "bytes (keys and values, UTF-8)")
    return dict(value)


def check_token(token: Any) -> None:
    if not isinstance(token, str) or not TOKEN_MIN <= len(token) <= TOKEN_MAX \
            or any(ch.isspace() for ch in token):
        raise validation(f"clientToken must be {TOKEN_MIN}-{TOKEN_MAX} non-space characters")


def paginate(items: list[Any], name_of: Callable[[Any], str],
             request: dict[str, Any]) -> tuple[list[Any], str | None]:
    """One page of `items` (sorted by name) after the name the nextToken carries.

    The token holds the last name returned rather than an offset, so versions created or
    deleted between pages neither repeat nor vanish. Default page: the model's maximum.
    """
    limit = request.get("maxResults")
    limit = MAX_PAGE if limit is None else int(limit)
    if not 1 <= limit <= MAX_PAGE:
        raise validation(f"maxResults must be between 1 and {MAX_PAGE}")
    token = request.get("nextToken")
    if token:
        try:
            after = base64.urlsafe_b64decode(token.encode()).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise validation("nextToken is not valid") from None
        items = [item for item in items if name_of(item) > after]
    page = items[:limit]
    more = len(items) > limit
    return page, base64.urlsafe_b64encode(name_of(page[-1]).encode()).decode() if more else None


def can_be_default(status: str) -> bool:
    """docs ("Package version lifecycle"): a PUBLISHED version can be identified as the
    default "through the UpdatePackage API operation", and "you can also name a deprecated
    package version as the default version"; a DRAFT, which cannot be deployed, cannot.
    Deprecating the default is therefore allowed: the default stays, deprecated."""
    return status in (PUBLISHED, DEPRECATED)
