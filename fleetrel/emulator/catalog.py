"""The Software Package Catalog as plain Python: packages, versions, lifecycle, idempotency.

No HTTP and no moto here: `moto_glue` maps the REST operations onto these methods and
`CatalogError` onto AWS-shaped error responses. Every method takes and returns the
botocore field names (camelCase) so the glue is a thin copy.

    catalog = PackageCatalog(region="us-east-1", account="123456789012")
    catalog.create_package({"packageName": "fw"})
    catalog.create_package_version({"packageName": "fw", "versionName": "1.0.0"})
    catalog.update_package_version({"packageName": "fw", "versionName": "1.0.0",
                                    "action": "PUBLISH"}, client_token="t" * 36)

The rules themselves (limits, lifecycle, field checks, errors) are in
`fleetrel.emulator.rules`, with their sources. Rules neither the model nor the docs state
are our choices, listed in `fleetrel.emulator`'s docstring and settable through
`CatalogRules`.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from fleetrel.emulator.rules import (DEPRECATED, DRAFT, ERROR_STATUS, MAX_PACKAGE_NAME, MAX_VERSION_NAME,
                                     PUBLISHED, STATUSES, CatalogError, CatalogRules, allowed, can_be_default, check_attributes,
                                     check_description, check_name, check_recipe, check_token, conflict, not_found,
                                     paginate, validation)

__all__ = ["CatalogError", "CatalogRules", "PackageCatalog", "PackageVersion", "Package"]

@dataclass
class PackageVersion:
    package: str
    version: str
    arn: str
    status: str = DRAFT
    description: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    artifact: dict[str, Any] | None = None
    recipe: str | None = None
    tags: dict[str, str] | None = None
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        """The GetPackageVersion answer (absent fields left out, as AWS does)."""
        out: dict[str, Any] = {
            "packageVersionArn": self.arn,
            "packageName": self.package,
            "versionName": self.version,
            "status": self.status,
            "attributes": dict(self.attributes),
            "creationDate": self.created,
            "lastModifiedDate": self.modified,
        }
        for name, value in (("description", self.description), ("artifact", self.artifact),
                            ("recipe", self.recipe)):
            if value is not None:
                out[name] = value
        return out

    def summary(self) -> dict[str, Any]:
        return {"packageName": self.package, "versionName": self.version, "status": self.status,
                "creationDate": self.created, "lastModifiedDate": self.modified}


@dataclass
class Package:
    name: str
    arn: str
    description: str | None = None
    default_version: str | None = None
    tags: dict[str, str] | None = None
    versions: dict[str, PackageVersion] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"packageName": self.name, "packageArn": self.arn,
                               "creationDate": self.created, "lastModifiedDate": self.modified}
        if self.description is not None:
            out["description"] = self.description
        if self.default_version is not None:
            out["defaultVersionName"] = self.default_version
        return out

    def summary(self) -> dict[str, Any]:
        out = {"packageName": self.name, "creationDate": self.created,
               "lastModifiedDate": self.modified}
        if self.default_version is not None:
            out["defaultVersionName"] = self.default_version
        return out


@dataclass
class _Remembered:
    request_digest: str
    answer: dict[str, Any]
    at: float  # when first answered; the window is applied on use, so changing it counts


class PackageCatalog:
    """One account-region's packages. Thread-safe: every operation holds one lock.

    Operations take the request as botocore field names and return the response body.
    `client_token` gives the create/update/delete operations AWS's idempotency: the same
    token with the same request within the window returns the first answer and changes
    nothing; the same token with a different request is a ConflictException.
    """

    def __init__(self, region: str = "us-east-1", account: str = "123456789012",
                 rules: CatalogRules | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.region, self.account = region, account
        self.rules = rules if rules is not None else CatalogRules()
        self.clock = clock
        self.packages: dict[str, Package] = {}
        self._remembered: dict[tuple[str, str], _Remembered] = {}
        self._lock = threading.RLock()

    # -- idempotency ----------------------------------------------------------------

    def _idempotent(self, operation: str, request: dict[str, Any], client_token: str | None,
                    apply: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            if client_token is None:
                return apply()
            check_token(client_token)
            now = self.clock()
            key = (operation, client_token)
            digest = json.dumps(request, sort_keys=True, default=str)
            seen = self._remembered.get(key)
            if seen is not None and now - seen.at < self.rules.idempotency_window_s:
                if seen.request_digest != digest:
                    # docs (API reference, clientToken): a token reused with different
                    # parameters is refused rather than silently applied.
                    raise conflict(f"clientToken {client_token} was already used with a "
                                   f"different {operation} request")
                return dict(seen.answer)
            # Only answers that succeeded are remembered: a failed call changed nothing,
            # so running it again is what a retry should do.
            answer = apply()
            self._remembered[key] = _Remembered(digest, dict(answer), now)
            if len(self._remembered) > 100_000:
                self._forget_expired(now)
            return answer

    def _forget_expired(self, now: float) -> None:
        window = self.rules.idempotency_window_s
        self._remembered = {key: seen for key, seen in self._remembered.items()
                            if now - seen.at < window}

    # -- packages -------------------------------------------------------------------

    def _package(self, name: str) -> Package:
        package = self.packages.get(name)
        if package is None:
            raise not_found(f"Package {name} does not exist")
        return package

    def create_package(self, request: dict[str, Any],
                       client_token: str | None = None) -> dict[str, Any]:
        name = check_name(request.get("packageName"), "packageName", MAX_PACKAGE_NAME)
        description = check_description(request.get("description"))

        def apply() -> dict[str, Any]:
            if name in self.packages:
                raise conflict(f"Package {name} already exists", resource_id=name)
            package = Package(name, self.package_arn(name), description,
                              tags=request.get("tags"), created=self.clock(),
                              modified=self.clock())
            self.packages[name] = package
            out = {"packageName": name, "packageArn": package.arn}
            if description is not None:
                out["description"] = description
            return out

        return self._idempotent("CreatePackage", request, client_token, apply)

    def get_package(self, request: dict[str, Any]) -> dict[str, Any]:
        name = check_name(request.get("packageName"), "packageName", MAX_PACKAGE_NAME)
        with self._lock:
            return self._package(name).describe()

    def update_package(self, request: dict[str, Any],
                       client_token: str | None = None) -> dict[str, Any]:
        name = check_name(request.get("packageName"), "packageName", MAX_PACKAGE_NAME)
        description = check_description(request.get("description"))
        default = request.get("defaultVersionName")
        unset = bool(request.get("unsetDefaultVersion"))
        if default is not None:
            check_name(default, "defaultVersionName", MAX_VERSION_NAME)
            if unset:
                # model, UpdatePackage: "You cannot name a defaultVersion and set
                # unsetDefaultVersion equal to true at the same time."
                raise validation("defaultVersionName and unsetDefaultVersion cannot both be set")

        def apply() -> dict[str, Any]:
            package = self._package(name)
            if default is not None:
                version = package.versions.get(default)
                if version is None:
                    raise not_found(f"Package version {name}/{default} does not exist")
                if not can_be_default(version.status):
                    # docs: a PUBLISHED or a DEPRECATED version can be the default; not a DRAFT.
                    raise validation(f"Package version {name}/{default} is in DRAFT "
                                     "status and cannot be the default version")
                package.default_version = default
            if unset:
                package.default_version = None
            if description is not None:
                package.description = description
            package.modified = self.clock()
            return {}

        return self._idempotent("UpdatePackage", request, client_token, apply)

    def delete_package(self, request: dict[str, Any],
                       client_token: str | None = None) -> dict[str, Any]:
        name = check_name(request.get("packageName"), "packageName", MAX_PACKAGE_NAME)

        def apply() -> dict[str, Any]:
            package = self.packages.get(name)
            if package is None:
                return {}  # model: DeletePackage has no ResourceNotFound; deleting is idempotent
            if package.versions:
                # docs: "All package versions must be deleted before deleting the package."
                raise validation(f"Package {name} still has {len(package.versions)} "
                                 "version(s); delete them first")
            del self.packages[name]
            return {}

        return self._idempotent("DeletePackage", request, client_token, apply)

    def list_packages(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            items = sorted(self.packages.values(), key=lambda p: p.name)
            page, token = paginate(items, lambda p: p.name, request)
            out: dict[str, Any] = {"packageSummaries": [p.summary() for p in page]}
        if token:
            out["nextToken"] = token
        return out

    # -- versions -------------------------------------------------------------------

    def _version(self, package: str, version: str) -> PackageVersion:
        found = self.packages.get(package)
        item = found.versions.get(version) if found is not None else None
        if item is None:
            raise not_found(f"Package version {package}/{version} does not exist")
        return item

    def create_package_version(self, request: dict[str, Any],
                               client_token: str | None = None) -> dict[str, Any]:
        package_name = check_name(request.get("packageName"), "packageName", MAX_PACKAGE_NAME)
        version_name = check_name(request.get("versionName"), "versionName", MAX_VERSION_NAME)
        description = check_description(request.get("description"))
        attributes = check_attributes(request.get("attributes"))
        recipe = check_recipe(request.get("recipe"))

        def apply() -> dict[str, Any]:
            package = self.packages.get(package_name)
            if package is None:
                # model: CreatePackageVersion lists no ResourceNotFound, so a missing
                # package is a validation error (our choice of the listed errors).
                raise validation(f"Package {package_name} does not exist")
            if version_name in package.versions:
                raise conflict(f"Package version {package_name}/{version_name} already exists",
                               resource_id=f"{package_name}/{version_name}")
            now = self.clock()
            item = PackageVersion(package_name, version_name,
                                  self.version_arn(package_name, version_name),
                                  description=description, attributes=attributes or {},
                                  artifact=request.get("artifact"), recipe=recipe,
                                  tags=request.get("tags"), created=now, modified=now)
            package.versions[version_name] = item  # docs: a new version starts in DRAFT
            out = {"packageVersionArn": item.arn, "packageName": package_name,
                   "versionName": version_name, "attributes": dict(item.attributes),
                   "status": item.status}
            if description is not None:
                out["description"] = description
            return out

        return self._idempotent("CreatePackageVersion", request, client_token, apply)

    def get_package_version(self, request: dict[str, Any]) -> dict[str, Any]:
        package = check_name(request.get("packageName"), "packageName", MAX_PACKAGE_NAME)
        version = check_name(request.get("versionName"), "versionName", MAX_VERSION_NAME)
        with self._lock:
            return self._version(package, version).describe()

    def update_package_version(self, request: dict[str, Any],
                               client_token: str | None = None) -> dict[str, Any]:
        package_name = check_name(request.get("packageName"), "packageName", MAX_PACKAGE_NAME)
        version_name = check_name(request.get("versionName"), "versionName", MAX_VERSION_NAME)
        description = check_description(request.get("description"))
        attributes = check_attributes(request.get("attributes"))
        recipe = check_recipe(request.get("recipe"))
        artifact = request.get("artifact")
        action = request.get("action")
        if action is not None and action not in ("PUBLISH", "DEPRECATE"):
            raise validation(f"action must be PUBLISH or DEPRECATE, not {action!r}")  # model enum

        def apply() -> dict[str, Any]:
            item = self._version(package_name, version_name)
            target = {"PUBLISH": PUBLISHED, "DEPRECATE": DEPRECATED, None: None}[action]
            # The action is judged before the fields: a replayed PUBLISH of a published
            # version reports "already published" whatever else it carries.
            skip_action = False
            if target is not None:
                if item.status == target:
                    if self.rules.already_in_state is None:
                        skip_action = True
                    else:
                        raise self._rule_error(self.rules.already_in_state,
                                               f"Package version {package_name}/{version_name} "
                                               f"is already {target}")
                elif not allowed(item.status, target):
                    raise self._rule_error(self.rules.refused_transition,
                                           f"Cannot {action} package version "
                                           f"{package_name}/{version_name} in {item.status} "
                                           "status")
            edits = [name for name, value in (("attributes", attributes), ("artifact", artifact),
                                              ("recipe", recipe)) if value is not None]
            if edits and item.status != DRAFT:
                # docs: attributes, artifact and recipe can be changed only in DRAFT.
                raise validation(f"{', '.join(edits)} can be updated only while the package "
                                 f"version is in DRAFT status; {package_name}/{version_name} "
                                 f"is {item.status}")
            if attributes is not None:
                item.attributes = attributes
            if artifact is not None:
                item.artifact = artifact
            if recipe is not None:
                item.recipe = recipe
            if description is not None:
                item.description = description  # docs: description is editable in any status
            if target is not None and not skip_action:
                item.status = target
            item.modified = self.clock()
            return {}

        return self._idempotent("UpdatePackageVersion", request, client_token, apply)

    def _rule_error(self, code: str, message: str) -> CatalogError:
        return CatalogError(code, ERROR_STATUS.get(code, 400), message)

    def delete_package_version(self, request: dict[str, Any],
                               client_token: str | None = None) -> dict[str, Any]:
        package_name = check_name(request.get("packageName"), "packageName", MAX_PACKAGE_NAME)
        version_name = check_name(request.get("versionName"), "versionName", MAX_VERSION_NAME)

        def apply() -> dict[str, Any]:
            package = self.packages.get(package_name)
            if package is None or version_name not in package.versions:
                return {}  # model: no ResourceNotFound listed; deleting is idempotent
            if package.default_version == version_name:
                # docs: remove the default designation with UpdatePackage first.
                raise validation(f"{package_name}/{version_name} is the package's default "
                                 "version; unset it with UpdatePackage first")
            del package.versions[version_name]
            return {}

        return self._idempotent("DeletePackageVersion", request, client_token, apply)

    def list_package_versions(self, request: dict[str, Any]) -> dict[str, Any]:
        package_name = check_name(request.get("packageName"), "packageName", MAX_PACKAGE_NAME)
        status = request.get("status")
        if status is not None and status not in STATUSES:
            raise validation(f"status must be one of {', '.join(STATUSES)}")  # model enum
        with self._lock:
            package = self.packages.get(package_name)
            items = sorted(package.versions.values(), key=lambda v: v.version) if package else []
            if status is not None:
                items = [v for v in items if v.status == status]
            page, token = paginate(items, lambda v: v.version, request)
            out: dict[str, Any] = {"packageVersionSummaries": [v.summary() for v in page]}
        if token:
            out["nextToken"] = token
        return out

    # -- seeding (no API call, no idempotency, never throttled) ---------------------

    def seed(self, package: str, version: str, status: str | None = None,
             attributes: dict[str, str] | None = None, description: str | None = None,
             artifact: dict[str, Any] | None = None, recipe: str | None = None,
             created: float | None = None) -> bool:
        """Make sure `package/version` exists; set the fields given. True if it was created.

        `status` is set directly (seeding describes a state, not a transition); `created`
        (seconds since the epoch) back-dates the version's creationDate, for selectors.
        """
        check_name(package, "package", MAX_PACKAGE_NAME)
        check_name(version, "version", MAX_VERSION_NAME)
        if status is not None and status not in STATUSES:
            raise validation(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        attributes = check_attributes(attributes)
        description = check_description(description)
        with self._lock:
            owner = self.packages.get(package)
            if owner is None:
                owner = self.packages[package] = Package(package, self.package_arn(package),
                                                         created=self.clock(),
                                                         modified=self.clock())
            item = owner.versions.get(version)
            is_new = item is None
            if item is None:
                now = self.clock()
                item = owner.versions[version] = PackageVersion(
                    package, version, self.version_arn(package, version), created=now,
                    modified=now)
            for name, value in (("status", status), ("attributes", attributes),
                                ("description", description), ("artifact", artifact),
                                ("recipe", recipe)):
                if value is not None:
                    setattr(item, name, value)
            if created is not None:
                item.created = float(created)
            return is_new

    def package_arn(self, name: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account}:package/{name}"

    def version_arn(self, package: str, version: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account}:package/{package}/version/{version}"
