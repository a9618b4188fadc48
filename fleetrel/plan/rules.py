"""The rules a single value of a plan must pass, as annotated types for the models.

    from fleetrel.plan.rules import PackageName
    class Entry(BaseModel):
        package: PackageName      # text only, 1–128 of [a-zA-Z0-9-_.], else a plain-words error

Each rule raises `plan_rule(message)`; `fleetrel.plan.diagnostics` turns those into
'file:line: entry: message' lines. The limits come from `fleetrel.service`; what is
ours (the plan name, waves, the refusal of numbers where text is expected) is here.
Each rule checks the common case (a valid value) first, cheaply: a 50,000-step plan
runs the name rule 50,000 times.
"""
from __future__ import annotations

import difflib
import math
import re
import reprlib
import unicodedata
from datetime import date, datetime, time
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from fleetrel.service import (
    ACCOUNT_ID_PATTERN,
    ACCOUNT_ID_RE,
    ACTIONS,
    ATTRIBUTE_KEY_CHARS,
    ATTRIBUTE_KEY_PATTERN,
    ATTRIBUTE_KEY_RE,
    MAX_ATTRIBUTE_KEY,
    MAX_ATTRIBUTES_BYTES,
    MAX_DESCRIPTION,
    MAX_PACKAGE_NAME,
    MAX_RECIPE,
    MAX_VERSION_NAME,
    MIN_ATTRIBUTE_KEY,
    NAME_CHARS,
    NAME_PATTERN,
    NAME_RE,
    EXTERNAL_ID_CHARS,
    EXTERNAL_ID_PATTERN,
    EXTERNAL_ID_RE,
    MAX_EXTERNAL_ID,
    MAX_ROLE_NAME,
    MAX_ROLE_PATH,
    MIN_EXTERNAL_ID,
    REGION_PATTERN,
    ROLE_ARN_PATTERN,
    ROLE_ARN_RE,
    ROLE_NAME_CHARS,
    ROLE_TAIL_RE,
    partition_of,
)

MAX_PLAN_NAME = 128  # ours: the plan name names the journal file, so it follows the package-name rule
# ours: a target's name is in every step key ("prod-eu-west-1:fw/1.0"), journal record and
# display line; the package-name characters keep the ":" of the key unambiguous.
MAX_TARGET_NAME = 64

_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
# Values are echoed back in messages; keep them short even for huge or cyclic input.
_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 60
_short_repr.maxlist = _short_repr.maxdict = _short_repr.maxtuple = _short_repr.maxset = 4
_short_repr.maxlevel = 2

VERSION_CHOICE = "give exactly one of 'version: X' or 'versions: [X, Y, ...]'"


class PlanModel(BaseModel):
    """The base of every model of a plan."""

    # Frozen: a plan is read once and its digest must not drift under the engine.
    model_config = ConfigDict(extra="forbid", frozen=True)


def plan_rule(problem: str) -> PydanticCustomError:
    # The message travels as context so that braces in user values are never formatted.
    return PydanticCustomError("plan_rule", "{problem}", {"problem": problem})


def show(value: Any) -> str:
    """A short repr of a user's value, for messages (escapes what cannot be printed)."""
    return _short_repr.repr(value)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def did_you_mean(word: Any, choices: list[str]) -> str:
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(str(word).lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[match[0]]!r}?)" if match else ""


def lone_surrogate(value: str) -> tuple[int, str] | None:
    """Position and U+ code of the first character UTF-8 cannot encode. Only a lone
    surrogate is such a character; YAML ("\\ud800") and JSON escapes can make one, the
    file's own bytes cannot (they are decoded strictly)."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start, f"U+{ord(value[exc.start]):04X}"
    return None


def _as_text(value: Any) -> str:
    """Accept text only. YAML turns unquoted 1.10, 0x1F, yes, 2024-05-01 into other
    types before we see them; converting back could not restore what was written."""
    if isinstance(value, str):
        # Every request is sent as UTF-8 (and journalled as UTF-8): refuse here what
        # would otherwise pass validation and fail mid-run with UnicodeEncodeError.
        found = lone_surrogate(value)
        if found:
            raise plan_rule(f"has a lone surrogate {found[1]} at position {found[0]}, which is not text "
                            "(half of an escaped pair like \"\\ud83d\\ude00\"): text must be encodable as "
                            "UTF-8, so write the character itself")
        return value
    if isinstance(value, bool):
        kind = "a boolean (YAML reads true/false/yes/no/on/off that way)"
    elif isinstance(value, (int, float)):
        kind = "a number (YAML reads 1.10 as 1.1 and 010 as 8)"
    elif isinstance(value, (date, datetime, time)):
        raise plan_rule(f"{value.isoformat()} was read as a date or time, not text: put it in quotes")
    elif value is None:
        raise plan_rule("is empty (null): give a value or remove the key")
    elif isinstance(value, dict):
        raise plan_rule(f"expected text, got a mapping {show(value)}")
    elif isinstance(value, (list, tuple, set)):
        raise plan_rule(f"expected text, got a list {show(value)}")
    else:
        raise plan_rule(f"expected text, got {type(value).__name__} {show(value)}")
    raise plan_rule(f"{show(value)} was read as {kind}, not text: put it in quotes so it is kept exactly as written")


def as_list(value: Any) -> Any:
    # pydantic would also take a set (e.g. YAML !!set), whose order is random: the step
    # order and the plan digest must not depend on hash seeds.
    if not isinstance(value, list):
        raise plan_rule(f"must be a list, got {show(value)}")
    return value


def _as_mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise plan_rule(f"must be a mapping of keys to values, got {show(value)}")
    return value


def _name_rule(what: str, max_len: int):
    def check(value: str) -> str:
        if len(value) <= max_len and NAME_RE.fullmatch(value):
            return value
        if not value:
            raise plan_rule(f"{what} is empty: it must be 1–{max_len} characters of {NAME_CHARS}")
        if len(value) > max_len:
            raise plan_rule(f"{what} {show(value)} is {len(value)} characters: at most {max_len} allowed")
        bad = sorted(set(re.sub(r"[a-zA-Z0-9_.\-]", "", value)))
        raise plan_rule(f"{what} {show(value)} has characters outside {NAME_CHARS}: {show(''.join(bad))}")

    return check


def _control_character(value: str) -> tuple[int, str] | None:
    """Position and U+ code of the first character in Unicode category C (\\p{C})."""
    if value.isascii() and value.isprintable():
        return None  # the common case, without a call per character
    for position, char in enumerate(value):
        if unicodedata.category(char).startswith("C"):
            return position, f"U+{ord(char):04X}"
    return None


def _description_rule(value: str) -> str:
    if not value:
        raise plan_rule("description is empty: leave the key out to keep the current one")
    if len(value) > MAX_DESCRIPTION:
        raise plan_rule(f"description is {len(value)} characters: at most {MAX_DESCRIPTION} allowed")
    found = _control_character(value)
    if found:
        raise plan_rule(
            f"has a control character {found[1]} at position {found[0]}: the service refuses "
            "control characters, line breaks included (a YAML '|' block keeps them; use a plain or '>-' string)"
        )
    return value


def _recipe_rule(value: str) -> str:
    if len(value) > MAX_RECIPE:
        raise plan_rule(f"recipe is {len(value)} characters: at most {MAX_RECIPE} allowed")
    return value


def _attribute_key_rule(value: str) -> str:
    if not MIN_ATTRIBUTE_KEY <= len(value) <= MAX_ATTRIBUTE_KEY:
        raise plan_rule(f"attribute key {show(value)} must be 1–{MAX_ATTRIBUTE_KEY} characters")
    if not ATTRIBUTE_KEY_RE.fullmatch(value):
        bad = sorted(set(re.sub(r"[a-zA-Z0-9:_\-]", "", value)))
        raise plan_rule(f"attribute key {show(value)} has characters outside {ATTRIBUTE_KEY_CHARS}: {show(''.join(bad))}")
    return value


def _attribute_value_rule(value: str) -> str:
    if not value:
        raise plan_rule("attribute value is empty: the service needs at least one character")
    found = _control_character(value)
    if found:
        raise plan_rule(f"attribute value has a control character {found[1]} at position {found[0]}: not allowed")
    return value


def _non_empty_rule(value: str) -> str:
    if not value.strip():
        raise plan_rule("is empty: give a value or remove the key")
    return value


def _endpoint_rule(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise plan_rule(f"endpoint_url {show(value)} must start with http:// or https://")
    return value


def _account_rule(value: str) -> str:
    if ACCOUNT_ID_RE.fullmatch(value):
        return value
    digits = re.sub(r"[\s-]", "", value)
    if ACCOUNT_ID_RE.fullmatch(digits):
        raise plan_rule(f"account {show(value)} is not an AWS account ID (12 digits): write it as {digits!r}, without separators")
    raise plan_rule(f"account {show(value)} is not an AWS account ID: 12 digits, in quotes, like \"012345678901\"")


def _region_rule(value: str) -> str:
    if partition_of(value):
        return value
    if value[-1:].isalpha() and partition_of(value[:-1]):
        raise plan_rule(f"region {show(value)} is an availability zone: the region is {value[:-1]!r}")
    if partition_of(value.strip().lower()):
        raise plan_rule(f"region {show(value)} must be written {value.strip().lower()!r}")
    raise plan_rule(f"region {show(value)} is not an AWS region name like us-east-1, eu-west-1, "
                    "us-gov-west-1 or cn-north-1 (a region of the aws, aws-cn or aws-us-gov partition)")


def role_tail_problem(tail: str) -> str | None:
    """What is wrong with the part of a role ARN after "role/" (an optional path, then
    the role's name), or None."""
    found = ROLE_TAIL_RE.fullmatch(tail)
    if found:
        path = found.group(1)
        if path is not None and len(path) + 2 > MAX_ROLE_PATH:  # the path is written with a "/" at each end
            return f"the role's path is {len(path) + 2} characters: at most {MAX_ROLE_PATH} allowed"
        return None
    path, _, name = tail.rpartition("/")
    if not name:
        return f"{show(tail)} ends with '/': give the role's name after its path"
    if path and not re.fullmatch(r"[!-~]+", path):
        return f"the role's path {show(path)} may hold printable ASCII characters only, no spaces"
    if len(name) > MAX_ROLE_NAME:
        return f"the role name {show(name)} is {len(name)} characters: at most {MAX_ROLE_NAME} allowed"
    bad = sorted(set(re.sub(r"[a-zA-Z0-9_+=,.@-]", "", name)))
    return f"the role name {show(name)} has characters outside {ROLE_NAME_CHARS}: {show(''.join(bad))}"


def _role_name_rule(value: str) -> str:
    problem = role_tail_problem(value)
    if problem:
        raise plan_rule(problem)
    return value


def _role_arn_rule(value: str) -> str:
    found = ROLE_ARN_RE.fullmatch(value)
    if found is None:
        raise plan_rule(f"{show(value)} is not an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name> "
                        "(arn:aws-cn:... or arn:aws-us-gov:... in those partitions)")
    problem = role_tail_problem(found.group(3))
    if problem:
        raise plan_rule(problem)
    return value


def _as_text_unshown(value: Any) -> str:
    # An ExternalId is not a secret to AWS, but some treat it as one: no message repeats it.
    if isinstance(value, str):
        return _as_text(value)
    raise plan_rule("external_id must be text: put it in quotes")


def _external_id_rule(value: str) -> str:
    if EXTERNAL_ID_RE.fullmatch(value):
        return value
    if not MIN_EXTERNAL_ID <= len(value) <= MAX_EXTERNAL_ID:
        raise plan_rule(f"external_id is {len(value)} characters: STS takes {MIN_EXTERNAL_ID}–{MAX_EXTERNAL_ID}")
    bad = sorted(set(re.sub(r"[a-zA-Z0-9_+=,.@:/-]", "", value)))
    raise plan_rule(f"external_id has characters outside {EXTERNAL_ID_CHARS}: {show(''.join(bad))}")


def _as_action(value: Any) -> str:
    # Lower case is accepted and normalised: `action: publish` has one obvious meaning.
    if isinstance(value, str) and value.strip().upper() in ACTIONS:
        return value.strip().upper()
    hint = did_you_mean(value, list(ACTIONS)) if isinstance(value, str) else ""
    raise plan_rule(
        f"{show(value)} is not an action: use PUBLISH or DEPRECATE{hint}, "
        "or leave action out for a field-only update of a draft"
    )


def as_wave(value: Any) -> int | str:
    """A cumulative wave end: a step count (int ≥ 1) or a share of the plan ("25%")."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise plan_rule(f"wave {value} must be a step count of at least 1, or a percentage like \"25%\"")
        return value
    if isinstance(value, str):
        match = _PERCENT_RE.match(value)
        if match and 0 < float(match.group(1)) <= 100:
            return f"{match.group(1)}%"
        raise plan_rule(f"wave {show(value)} must be a percentage in (0%, 100%] like \"25%\", or a step count")
    raise plan_rule(f"wave {show(value)} must be a step count (an integer) or a percentage like \"25%\"")


def resolve_waves(waves: list[int | str], total: int) -> tuple[list[int], list[tuple[tuple, str]]]:
    """The cumulative step counts the waves end at (the last is always `total`), and the
    problems of waves that do not fit a plan of `total` steps."""
    ends: list[int] = []
    problems: list[tuple[tuple, str]] = []
    for i, wave in enumerate(waves):
        end = math.ceil(total * float(wave[:-1]) / 100) if isinstance(wave, str) else wave
        if end > total:
            problems.append((("waves", i), f"wave {wave!r} ends at step {end} but the plan has {plural(total, 'step')}"))
        elif ends and end <= ends[-1]:
            problems.append((("waves", i), f"wave {wave!r} ends at step {end}, not after the previous wave's "
                             f"{ends[-1]}: waves are cumulative and must grow"))
        else:
            ends.append(end)
    if not ends or ends[-1] < total:
        ends.append(total)
    return ends, problems


def attributes_bytes(attributes: dict[str, str] | None) -> int:
    """The size the service limits: keys and values together, in UTF-8 bytes."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in (attributes or {}).items())


def _name_schema(max_len: int) -> dict[str, Any]:
    return {"type": "string", "pattern": NAME_PATTERN, "minLength": 1, "maxLength": max_len}


PlanName = Annotated[str, BeforeValidator(_as_text), AfterValidator(_name_rule("plan name", MAX_PLAN_NAME)), WithJsonSchema(_name_schema(MAX_PLAN_NAME))]
PackageName = Annotated[str, BeforeValidator(_as_text), AfterValidator(_name_rule("package name", MAX_PACKAGE_NAME)), WithJsonSchema(_name_schema(MAX_PACKAGE_NAME))]
VersionName = Annotated[str, BeforeValidator(_as_text), AfterValidator(_name_rule("version name", MAX_VERSION_NAME)), WithJsonSchema(_name_schema(MAX_VERSION_NAME))]
Description = Annotated[str, BeforeValidator(_as_text), AfterValidator(_description_rule), WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_DESCRIPTION, "pattern": "^[^\\p{C}]+$"})]
Recipe = Annotated[str, BeforeValidator(_as_text), AfterValidator(_recipe_rule), WithJsonSchema({"type": "string", "maxLength": MAX_RECIPE})]
NonEmptyText = Annotated[str, BeforeValidator(_as_text), AfterValidator(_non_empty_rule), WithJsonSchema({"type": "string", "minLength": 1})]
EndpointUrl = Annotated[str, BeforeValidator(_as_text), AfterValidator(_endpoint_rule), WithJsonSchema({"type": "string", "pattern": "^https?://"})]
AttributeKey = Annotated[str, BeforeValidator(_as_text), AfterValidator(_attribute_key_rule)]
AttributeValue = Annotated[str, BeforeValidator(_as_text), AfterValidator(_attribute_value_rule)]
Attributes = Annotated[
    dict[AttributeKey, AttributeValue],
    BeforeValidator(_as_mapping),
    WithJsonSchema({
        "type": "object",
        "propertyNames": {"pattern": ATTRIBUTE_KEY_PATTERN, "minLength": 1, "maxLength": MAX_ATTRIBUTE_KEY},
        "additionalProperties": {"type": "string", "minLength": 1},
        "description": f"at most {MAX_ATTRIBUTES_BYTES} bytes of keys and values together (UTF-8); "
        "numbers must be quoted",
    }),
]
Action = Annotated[str, PlainValidator(_as_action), WithJsonSchema({"enum": [*ACTIONS, "publish", "deprecate"], "description": "any case; normalised to upper case"})]
Wave = Annotated[int | str, PlainValidator(as_wave), WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^\\d+(\\.\\d+)?%$"}]})]

# --- targets (a plan's `targets:`) ---
TargetName = Annotated[str, BeforeValidator(_as_text), AfterValidator(_name_rule("target name", MAX_TARGET_NAME)), WithJsonSchema(_name_schema(MAX_TARGET_NAME))]
AccountId = Annotated[str, BeforeValidator(_as_text), AfterValidator(_account_rule), WithJsonSchema({"type": "string", "pattern": ACCOUNT_ID_PATTERN, "description": "12 digits, quoted"})]
Region = Annotated[str, BeforeValidator(_as_text), AfterValidator(_region_rule), WithJsonSchema({"type": "string", "pattern": REGION_PATTERN})]
RoleArn = Annotated[str, BeforeValidator(_as_text), AfterValidator(_role_arn_rule), WithJsonSchema({"type": "string", "pattern": ROLE_ARN_PATTERN})]
RoleName = Annotated[str, BeforeValidator(_as_text), AfterValidator(_role_name_rule), WithJsonSchema({"type": "string", "minLength": 1, "description": "[path/]name of an IAM role"})]
ExternalId = Annotated[str, BeforeValidator(_as_text_unshown), AfterValidator(_external_id_rule), WithJsonSchema({"type": "string", "pattern": EXTERNAL_ID_PATTERN})]
