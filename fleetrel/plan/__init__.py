"""The release plan: read a file, check every rule the service would enforce (botocore
checks almost none of them), expand it into the UpdatePackageVersion requests to send::

    plan = load("plans/demo.yaml")       # raises PlanError listing every problem
    for step in plan.steps():
        print(step.key, step.request())

The package, one idea per module:

- `rules`: what one value must be (names, description, recipe, attributes, actions,
  waves), as annotated types; the limits themselves are in `fleetrel.service`.
- `targets`: a plan's many `targets:` (a list, or a matrix of accounts and regions),
  their expansion and the rules across them.
- `selectors`: `select:` entries (versions chosen by rule) and their pure matching; the
  catalog reads that expand them are `fleetrel.expansion`.
- `entries`: the entries of `versions:` and `defaults:` (their models, the defaults
  merged in) and the rules across entries (duplicates, merged sizes, waves).
- `steps`: `Step`, one request of a plan: its key, request, digests; `canonical_json`.
- `models`: `ReleasePlan` with `target:`, `limits:`, `abort:`; its steps and digest.
- `loading`: YAML (with line numbers), JSON and TOML files into data; `load`.
- `diagnostics`: pydantic's errors into 'file:line: entry: message' lines; `PlanError`.

Choices made for the user:

- Numbers, booleans and dates where text is expected (`min_hw: 3`, `version: 1.10`)
  are refused with a hint to quote them, never coerced: YAML has already turned
  `1.10` into `1.1` and `on` into `true`, so a coercion would send a value the user
  did not write.
- Text must be encodable as UTF-8: a lone surrogate from a "\\ud800" escape is refused
  here rather than crash the run that sends it.
- `action` is accepted in any case (`publish`) and normalised to upper case.
- An entry may leave `action` out (a field-only update of a draft) but must then
  change at least one field; an explicit `null` in an entry clears a default.
- A mapping that gives the same key twice is refused (PyYAML and json keep the last).
- The digest a run's journal pins covers the requests in (package, version) order:
  reordering a plan does not make it another run.
- A plan has one `target:` or many `targets:`; with many, a (package, version) may
  appear once per target, each step names its target (key `target:package/version`),
  and the steps are target-major, so the first wave can be the first target. A plan
  without `targets:` has the steps, keys and digest it had before targets existed.
- An entry with `select:` stands for the versions it matches in the catalog: the plan
  must be expanded (`plan.expanded(selection)`) before its steps are known, and its
  digest covers the selectors' definitions, so a run's journal (which freezes the
  matches) is found again before anything is listed.
"""
from fleetrel.plan.diagnostics import PlanError
from fleetrel.plan.loading import PLAN_SUFFIXES, load
from fleetrel.plan.entries import Artifact, Defaults, S3Location, VersionEntry
from fleetrel.plan.models import Abort, Limits, ReleasePlan, Target
from fleetrel.plan.steps import Step, canonical_json, digest
from fleetrel.plan.targets import TargetMatrix, TargetSpec

__all__ = [
    "PLAN_SUFFIXES",
    "Abort",
    "Artifact",
    "Defaults",
    "Limits",
    "PlanError",
    "ReleasePlan",
    "S3Location",
    "Step",
    "Target",
    "TargetMatrix",
    "TargetSpec",
    "VersionEntry",
    "canonical_json",
    "digest",
    "load",
]
