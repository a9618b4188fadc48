"""A plan's `targets:`: the accounts and regions its steps go to, each a named target.

    plan = load("plans/org-release.yaml")
    [t.name for t in plan.target_specs()]    # ['dev-us-east-1', 'dev-eu-west-1', 'staging-us-east-1', ...]
    plan.steps()[0].key                      # 'dev-us-east-1:thermostat-fw/4.2.0'

Two forms. A list of `TargetSpec`, each named, with a region and optionally the account it
must resolve to, a role to assume, a profile or an endpoint. Or a `TargetMatrix`, the
common organisation layout (the same role in every account, the same regions everywhere),
which expands to one `TargetSpec` per (account, region) named `{account}-{region}`.

Choices made here:

- Account IDs are text (12 digits, quoted): YAML reads an unquoted 012345670123 as an
  octal number, so a number is refused with a hint to quote it, like everywhere else.
- A matrix's role ARNs are in the partition of their region (`arn:aws-cn:...` for
  cn-north-1): an account lives in one partition, so a matrix whose regions span two is
  refused; list such targets one by one.
- Two targets that pin the same account and region (and endpoint) are refused: every
  step would be applied twice to one catalog.
- `external_id` is left out of the model's repr and never repeated in a message.
"""
from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, Tag, model_validator

from fleetrel.plan.rules import (
    MAX_TARGET_NAME,
    AccountId,
    EndpointUrl,
    ExternalId,
    NonEmptyText,
    PlanModel,
    Region,
    RoleArn,
    RoleName,
    TargetName,
    as_list,
    did_you_mean,
    plan_rule,
)
from fleetrel.service import ROLE_ARN_RE, partition_of

# pydantic puts the name of the union's branch into an error's location; diagnostics
# drop these (and use them to tell a matrix's unknown key from a target's).
TARGET_LIST_TAG, TARGET_MATRIX_TAG = "targets:list", "targets:matrix"
ACCOUNT_IDS_TAG, ACCOUNT_NAMES_TAG = "accounts:ids", "accounts:named"
UNION_TAGS = frozenset({TARGET_LIST_TAG, TARGET_MATRIX_TAG, ACCOUNT_IDS_TAG, ACCOUNT_NAMES_TAG})
# The error of a value that is neither form; its message is the problem. (A Discriminator
# cannot carry a context: it must stay hashable inside `Targets | None`.)
FORM_ERROR = "plan_form"


def role_arn_parts(role_arn: str) -> tuple[str, str]:
    """The partition and account of a (valid) role ARN."""
    found = ROLE_ARN_RE.fullmatch(role_arn)
    assert found is not None, role_arn  # RoleArn has checked it
    return found.group(1), found.group(2)


class TargetSpec(PlanModel):
    """One account and region the plan's steps go to. Unset fields fall back to the AWS
    configuration, as `target:` does; `account` pins the account the target's
    credentials must resolve to (checked before anything is sent)."""

    name: TargetName = Field(description="names the target in step keys, the journal and the display")
    region: Region
    account: AccountId | None = None
    role_arn: RoleArn | None = Field(default=None, description="an IAM role to assume for this target")
    external_id: ExternalId | None = Field(default=None, repr=False, description="the ExternalId the role's trust policy asks for")
    profile: NonEmptyText | None = None
    endpoint_url: EndpointUrl | None = None

    @model_validator(mode="after")
    def _role_agrees_with_account_and_region(self) -> TargetSpec:
        if self.role_arn is None:
            return self
        problems = []
        partition, account = role_arn_parts(self.role_arn)
        if self.account is not None and account != self.account:
            problems.append(f"role_arn is a role in account {account} but account is {self.account}: "
                            "the role must be in the account the target pins")
        region_partition = partition_of(self.region)
        if partition != region_partition:
            problems.append(f"role_arn is in partition {partition} but region {self.region} is in "
                            f"{region_partition}: write arn:{region_partition}:iam::...")
        if problems:
            raise plan_rule("; ".join(problems))
        return self


def _distinct_accounts(accounts: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
    ids = list(accounts.values()) if isinstance(accounts, dict) else accounts
    twice = [account for account, count in Counter(ids).items() if count > 1]
    if twice and isinstance(accounts, dict):
        names = [name for name, account in accounts.items() if account == twice[0]]
        raise plan_rule(f"{' and '.join(names)} are both account {twice[0]}: each account once, "
                        "or every step is applied twice to it")
    if twice:
        raise plan_rule(f"account {twice[0]} is listed twice: each account once")
    return accounts


def _distinct_regions_in_one_partition(regions: list[str]) -> list[str]:
    twice = [region for region, count in Counter(regions).items() if count > 1]
    if twice:
        raise plan_rule(f"region {twice[0]} is listed twice: each region once")
    partitions = {partition_of(region): region for region in regions}
    if len(partitions) > 1:
        shown = " and ".join(f"{region} ({partition})" for partition, region in partitions.items())
        raise plan_rule(f"regions {shown} are in different partitions, and an account is in one: "
                        "list those targets one by one instead of as a matrix")
    return regions


def _account_form(value: Any) -> str | None:
    return ACCOUNT_NAMES_TAG if isinstance(value, dict) else ACCOUNT_IDS_TAG if isinstance(value, list) else None


AccountIds = Annotated[
    Union[
        Annotated[list[AccountId], Field(min_length=1), Tag(ACCOUNT_IDS_TAG)],
        Annotated[dict[TargetName, AccountId], Field(min_length=1), Tag(ACCOUNT_NAMES_TAG)],
    ],
    Discriminator(_account_form, custom_error_type=FORM_ERROR, custom_error_message=(
        "must be a list of account IDs, or a mapping of names to account IDs like {prod: \"333333333333\"}")),
    AfterValidator(_distinct_accounts),
]


class TargetMatrix(PlanModel):
    """Every account in every region: one target per (account, region), accounts then
    regions, named `{name or id}-{region}`, with `role_name` as the role to assume in
    each account (`arn:aws:iam::{id}:role/{role_name}`)."""

    accounts: AccountIds = Field(description="account IDs, or a mapping of names to account IDs")
    regions: Annotated[list[Region], BeforeValidator(as_list), Field(min_length=1), AfterValidator(_distinct_regions_in_one_partition)]
    role_name: RoleName | None = Field(default=None, description="the IAM role ([path/]name) to assume in every account")
    external_id: ExternalId | None = Field(default=None, repr=False)
    profile: NonEmptyText | None = None
    endpoint_url: EndpointUrl | None = None

    @model_validator(mode="after")
    def _names_fit(self) -> TargetMatrix:
        longest = max(self.regions, key=len)
        for label in self._labels():
            name = f"{label}-{longest}"
            if len(name) > MAX_TARGET_NAME:
                raise plan_rule(f"target name {name!r} (the account's name, '-', the region) is {len(name)} "
                                f"characters: at most {MAX_TARGET_NAME} allowed, so shorten the account's name")
        return self

    def _labels(self) -> list[str]:
        return list(self.accounts) if isinstance(self.accounts, dict) else list(self.accounts)

    def expand(self) -> list[TargetSpec]:
        """One TargetSpec per (account, region), accounts then regions."""
        pairs = self.accounts.items() if isinstance(self.accounts, dict) else ((a, a) for a in self.accounts)
        shared = {"external_id": self.external_id, "profile": self.profile, "endpoint_url": self.endpoint_url}
        return [
            TargetSpec(name=f"{label}-{region}", region=region, account=account, **shared,
                       role_arn=f"arn:{partition_of(region)}:iam::{account}:role/{self.role_name}" if self.role_name else None)
            for label, account in pairs
            for region in self.regions
        ]


def _targets_form(value: Any) -> str | None:
    return TARGET_LIST_TAG if isinstance(value, list) else TARGET_MATRIX_TAG if isinstance(value, dict) else None


Targets = Annotated[
    Union[
        Annotated[list[TargetSpec], Field(min_length=1), Tag(TARGET_LIST_TAG)],
        Annotated[TargetMatrix, Tag(TARGET_MATRIX_TAG)],
    ],
    Discriminator(_targets_form, custom_error_type=FORM_ERROR, custom_error_message=(
        "must be a list of targets ({name, region, ...}) or a matrix {accounts: [...], regions: [...]}")),
]


def expand_targets(targets: list[TargetSpec] | TargetMatrix | None) -> list[TargetSpec]:
    if targets is None:
        return []
    return targets.expand() if isinstance(targets, TargetMatrix) else list(targets)


# --- rules across targets and entries ---------------------------------------------------


def both_forms_problems(target_given: bool, targets_given: bool) -> list[tuple[tuple, str]]:
    if target_given and targets_given:
        return [(("target",), "give 'target:' (one target) or 'targets:' (many), not both: "
                 "move its settings into the targets")]
    return []


def target_problems(targets: list[TargetSpec] | TargetMatrix | None, target_given: bool) -> list[tuple[tuple, str]]:
    """`target:` beside `targets:`; targets that share a name, or that pin the same
    account, region and endpoint (one catalog, so every step would be applied to it twice)."""
    if targets is None:
        return []
    problems = both_forms_problems(target_given, True)
    specs = expand_targets(targets)
    listed = not isinstance(targets, TargetMatrix)
    first_name: dict[str, int] = {}
    first_place: dict[tuple, int] = {}
    for index, spec in enumerate(specs):
        if spec.name in first_name:
            problems.append((("targets", index, "name") if listed else ("targets",),
                             f"target name {spec.name!r} is also targets[{first_name[spec.name]}]'s: names must be unique"))
        first_name.setdefault(spec.name, index)
        if spec.account is None:
            continue
        place = (spec.account, spec.region, spec.endpoint_url)
        repeated = place in first_place and specs[first_place[place]].name != spec.name  # else said above
        if repeated and listed:  # a matrix has refused its own repeats already
            problems.append((("targets", index), f"{spec.name!r} and {specs[first_place[place]].name!r} are both "
                             f"account {spec.account} in {spec.region}: every step would be applied twice there"))
        first_place.setdefault(place, index)
    return problems


def entry_target_problems(names: list[str] | None, entries: list[tuple[int, Any]]) -> list[tuple[tuple, str]]:
    """Entries' `targets:` that name no target of the plan (`names` is None when the
    plan has no `targets:`)."""
    problems: list[tuple[tuple, str]] = []
    known = set(names or ())
    for index, entry in entries:
        if entry.targets is None:
            continue
        if names is None:
            problems.append((("versions", index, "targets"), "the plan has no 'targets:' to choose from: "
                             "list them at the top level, or remove this key"))
            continue
        for position, name in enumerate(entry.targets):
            if name not in known:
                problems.append((("versions", index, "targets", position),
                                 f"no target is named {name!r}{did_you_mean(name, list(known))}"))
            elif name in entry.targets[:position]:
                problems.append((("versions", index, "targets", position), f"target {name!r} is named twice"))
    return problems
