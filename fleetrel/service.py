"""What the AWS IoT Software Package Catalog accepts, in one place, each fact with its source.

    from fleetrel import service

    service.NAME_RE.fullmatch("thermostat-fw")               # a valid package or version name
    service.TARGET_STATUS["PUBLISH"]                         # 'PUBLISHED'
    ("DRAFT", "DEPRECATED") in service.ALLOWED_TRANSITIONS   # False: publish it first
    service.partition_of("cn-north-1")                       # 'aws-cn': its role ARNs are arn:aws-cn:...

Sources, as noted beside each fact: "model" is botocore 1.40.61's service model for IoT
(botocore/data/iot/2015-05-28/service-2.json, the version aioboto3 15.5.0 pins; botocore
itself checks only the minimum lengths it states); "docs" is the AWS IoT developer
guide ("Package version lifecycle") and the UpdatePackageVersion reference
(/work/shared/reference/update_package_version.rst). A value neither states is marked
"ours". The account, region, role and ExternalId facts of a plan's `targets:` are
compared with botocore's IAM and STS models and its partitions.json by
`tests/test_plan_targets.py`. `tests/test_service.py` compares every fact the model states with the model.

The plan's validation (`fleetrel.plan`) and the preview/verify rules (`fleetrel.state`)
import these. The emulator keeps its own copy (`fleetrel.emulator.catalog`) on purpose:
two independent readings, both checked against the model by the same test, so a mistake
here is not silently agreed with by the service we test against.
"""
from __future__ import annotations

import re

# --- names ----------------------------------------------------------------------------
# model: PackageName and VersionName, pattern [a-zA-Z0-9-_.]+ (written here with the
# hyphen last, where no reader can take it for a range).
NAME_PATTERN = "^[a-zA-Z0-9_.-]+$"
NAME_CHARS = "[a-zA-Z0-9-_.]"  # as the model writes it, for messages
NAME_RE = re.compile(NAME_PATTERN)
MIN_NAME = 1  # model: PackageName and VersionName min 1
MAX_PACKAGE_NAME = 128  # model: PackageName max 128
MAX_VERSION_NAME = 64  # model: VersionName max 64

# --- the fields of UpdatePackageVersion -----------------------------------------------
# model: ResourceDescription min 0, max 1024, pattern [^\p{C}]+ (so in effect at least
# one character, none of Unicode category C: control, format, surrogate, private use,
# unassigned).
MAX_DESCRIPTION = 1024
MAX_RECIPE = 3072  # model: PackageVersionRecipe max 3072 (no minimum, no pattern)
# model: ResourceAttributeKey min 1, pattern [a-zA-Z0-9:_-]+ (no maximum stated).
ATTRIBUTE_KEY_PATTERN = "^[a-zA-Z0-9:_-]+$"
ATTRIBUTE_KEY_CHARS = "[a-zA-Z0-9:_-]"
ATTRIBUTE_KEY_RE = re.compile(ATTRIBUTE_KEY_PATTERN)
MIN_ATTRIBUTE_KEY = 1
MAX_ATTRIBUTE_KEY = 128  # ours: the model states no maximum; a longer key is surely a mistake
MIN_ATTRIBUTE_VALUE = 1  # model: ResourceAttributeValue min 1, pattern [^\p{C}]+
# docs: "The combined size of all the attributes on a package version is limited to
# 3KB"; we count keys and values together in UTF-8 bytes, as the emulator does.
MAX_ATTRIBUTES_BYTES = 3072
MIN_S3_BUCKET = MIN_S3_KEY = 1  # model: S3Bucket min 1, S3Key min 1 (S3Version: none)
ACTIONS = ("PUBLISH", "DEPRECATE")  # model: PackageVersionAction enum
# model: ClientToken min 36, max 64, pattern \S{36,64}. botocore fills a random uuid4
# when none is given, which is why fleetrel always passes its own (`fleetrel.tokens`).
MIN_CLIENT_TOKEN, MAX_CLIENT_TOKEN = 36, 64
CLIENT_TOKEN_RE = re.compile(r"^\S{36,64}$")

# --- the lifecycle --------------------------------------------------------------------
STATUSES = ("DRAFT", "PUBLISHED", "DEPRECATED")  # model: PackageVersionStatus enum
# What each action leaves the version in (model: the action's enum; docs: lifecycle).
TARGET_STATUS = {"PUBLISH": "PUBLISHED", "DEPRECATE": "DEPRECATED"}
# docs: DRAFT -> PUBLISHED -> DEPRECATED -> PUBLISHED; nothing returns to DRAFT, and a
# DRAFT cannot be deprecated.
ALLOWED_TRANSITIONS = frozenset({("DRAFT", "PUBLISHED"), ("PUBLISHED", "DEPRECATED"), ("DEPRECATED", "PUBLISHED")})
# Fields the service accepts only while a version is DRAFT. docs: "Attributes can be
# updated only when the package version is in a draft state" (the model's own text);
# artifact and recipe likewise per the lifecycle page. The description is editable in
# any status.
DRAFT_ONLY = ("attributes", "artifact", "recipe")
# Every field UpdatePackageVersion sets besides the action (model: its request shape,
# less names, clientToken and action). GetPackageVersion returns them;
# ListPackageVersions only names and statuses.
VERSION_FIELDS = ("description", *DRAFT_ONLY)

# --- the operations -------------------------------------------------------------------
# model: the ten operations on /packages, a package and its versions. (The model has
# more about packages, which fleetrel does not call: SBOM association and validation
# results under a version's /sbom, and the account's /package-configuration.)
PACKAGE_OPERATIONS = (
    "CreatePackage", "GetPackage", "UpdatePackage", "DeletePackage", "ListPackages",
    "CreatePackageVersion", "GetPackageVersion", "UpdatePackageVersion",
    "DeletePackageVersion", "ListPackageVersions",
)

# --- where the calls go: accounts, regions, roles (a plan's `targets:`) ----------------
# docs (IAM User Guide, "AWS account identifiers"): an account ID is a 12-digit number,
# leading zeros included, so a plan writes it as text.
ACCOUNT_ID_PATTERN = "^[0-9]{12}$"
ACCOUNT_ID_RE = re.compile(ACCOUNT_ID_PATTERN)
# botocore: data/partitions.json, each partition's regionRegex, for the partitions whose
# role ARNs a plan may name (below). Narrowed from \w+ to [a-z]+: botocore's \w would
# admit 'us-EAST_1', which is no region, and a signature scoped to it fails.
REGION_PATTERNS = {
    "aws": "^(?:us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-[0-9]+$",
    "aws-cn": "^cn-[a-z]+-[0-9]+$",
    "aws-us-gov": "^us-gov-[a-z]+-[0-9]+$",
}
PARTITIONS = tuple(REGION_PATTERNS)
REGION_PATTERN = "^(?:" + "|".join(p[1:-1] for p in REGION_PATTERNS.values()) + ")$"
_REGION_RES = {partition: re.compile(pattern) for partition, pattern in REGION_PATTERNS.items()}


def partition_of(region: str) -> str | None:
    """The partition a region belongs to (`aws`, `aws-cn`, `aws-us-gov`), or None when
    `region` is not a region name."""
    return next((partition for partition, regex in _REGION_RES.items() if regex.fullmatch(region)), None)


# model (iam, botocore 1.40.61): roleNameType 1-64 of [\w+=,.@-]; pathType "/" or
# "/" [\u0021-\u007E]+ "/", at most 512 characters. docs (IAM identifiers): a role's ARN is
# arn:<partition>:iam::<account>:role/<path without its leading "/"><name>. The model's
# patterns are Java's, where \w is ASCII only: hence re.ASCII.
MAX_ROLE_NAME = 64
MAX_ROLE_PATH = 512
ROLE_NAME_CHARS = "[a-zA-Z0-9_+=,.@-]"  # the model's [\w+=,.@-], for messages
# The part after "role/": an optional path (printable ASCII, "/" included) and a name.
ROLE_TAIL_RE = re.compile(r"^(?:([!-~]+)/)?([\w+=,.@-]{1,%d})$" % MAX_ROLE_NAME, re.ASCII)
ROLE_ARN_PATTERN = "^arn:(aws|aws-cn|aws-us-gov):iam::([0-9]{12}):role/(.+)$"
ROLE_ARN_RE = re.compile(ROLE_ARN_PATTERN, re.DOTALL)
# model (sts): externalIdType 2-1224 characters of [\w+=,.@:\/-] (Java's \w: ASCII).
MIN_EXTERNAL_ID, MAX_EXTERNAL_ID = 2, 1224
EXTERNAL_ID_CHARS = "[a-zA-Z0-9_+=,.@:/-]"
EXTERNAL_ID_PATTERN = "^[a-zA-Z0-9_+=,.@:/-]{%d,%d}$" % (MIN_EXTERNAL_ID, MAX_EXTERNAL_ID)
EXTERNAL_ID_RE = re.compile(EXTERNAL_ID_PATTERN)
