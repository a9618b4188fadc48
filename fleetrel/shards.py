"""Shards of an organisation-wide run: which targets each runs, and where it journals.

    shard = Shard.parse("2/4")                         # the second of four (1-based)
    assign(target_sizes(plan), 4)                      # {'prod-eu-west-1': 1, 'dev-us-east-1': 2, ...}
    shard.targets(plan)                                # the target names shard 2/4 runs
    shard_journal_path(Path("org.journal.jsonl"), shard)   # org.shard-2-of-4.journal.jsonl

Each (account, region) has its own quota, so a plan's targets split into shards that never
share a bucket: a shard is the plan run on some of its targets (`only=`), with a journal
of its own, under any scheduler (cron, a CI matrix, a Kubernetes indexed Job) or as a Ray
actor (`fleetrel.raydriver`).

The rule (deterministic: every shard of one plan computes the same split on its own, with
nothing shared): targets in order of step count, most first, ties by name; each goes to the
shard with the fewest steps so far, ties to the one with the fewest targets, then the
lowest shard number. That is greedy longest-processing-time scheduling: the largest shard
has at most 4/3 of the optimum's steps, and with equal targets the shards differ by at
most one target. The split depends on the plan file alone, so a resumed shard runs the
same targets: a `select:` entry counts no steps, since what it matches is known only once
a shard has listed its own targets' catalogs (a plan of selectors alone is split by
target count).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from fleetrel.plan import ReleasePlan

JOURNAL_SUFFIX = ".journal.jsonl"
#: The most shards (and Ray actors) a run is split into: more shards than a plan's targets
#: run nothing, and the split keeps a counter per shard.
MAX_SHARDS = 10_000
_SHARD_NAME = re.compile(r"^(?P<stem>.*)\.shard-(?P<index>\d+)-of-(?P<count>\d+)(?P<suffix>(\.[^.]+)*)$")


class ShardError(ValueError):
    """A shard the user asked for cannot be run (`--shard 5/4`, a plan without targets)."""


@dataclass(frozen=True, slots=True, order=True)
class Shard:
    """Shard `index` of `count`, 1-based as people and CI matrices count."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not found:
            raise ShardError(f"--shard {text!r}: give it as I/N, e.g. 2/4 (the second of four shards)")
        index, count = int(found.group(1)), int(found.group(2))
        if count > MAX_SHARDS:
            raise ShardError(f"--shard {text}: at most {MAX_SHARDS} shards (a shard runs whole targets, "
                             "so more shards than targets run nothing)")
        if count < 1 or not 1 <= index <= count:
            raise ShardError(f"--shard {text}: I must be between 1 and N (shards are numbered 1 to {max(count, 1)})")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def targets(self, plan: ReleasePlan) -> list[str]:
        """The targets this shard runs, in plan order."""
        return [t for t, shard in assign(target_sizes(plan), self.count).items() if shard == self.index]

    def header(self, plan: ReleasePlan) -> dict[str, object]:
        """The journal header's `shard` field: a mismatched resume is refused by it."""
        return {"index": self.index, "count": self.count, "targets": self.targets(plan)}


def target_sizes(plan: ReleasePlan) -> dict[str, int]:
    """Each target's listed steps, in plan order: what the shard rule balances (a
    `select:` entry counts none, expanded or not, so the split never moves)."""
    names = [spec.name for spec in plan.target_specs()]
    if not names:
        raise ShardError("this plan has no `targets:`: it has one quota, so there is nothing to shard. "
                         "List its accounts and regions under `targets:` to run them in shards")
    sizes = dict.fromkeys(names, 0)
    for entry in plan.versions:
        for name in entry.targets if entry.targets is not None else names:
            sizes[name] += entry.step_count()
    return sizes


def assign(sizes: Mapping[str, int], count: int) -> dict[str, int]:
    """Each target's shard (1..count) by the rule in the module docstring, from each
    target's step count (`target_sizes`); the targets' order kept."""
    load, members = [0] * count, [0] * count
    shard_of: dict[str, int] = {}
    for target in sorted(sizes, key=lambda t: (-sizes[t], t)):
        lightest = min(range(count), key=lambda i: (load[i], members[i], i))
        load[lightest] += sizes[target]
        members[lightest] += 1
        shard_of[target] = lightest + 1
    return {target: shard_of[target] for target in sizes}


def shard_journal_path(journal: Path, shard: Shard) -> Path:
    """`org.journal.jsonl` → `org.shard-2-of-4.journal.jsonl` (other names: before the last suffix)."""
    name = journal.name
    if name.endswith(JOURNAL_SUFFIX):
        stem, suffix = name[: -len(JOURNAL_SUFFIX)], JOURNAL_SUFFIX
    else:
        dot = name.rfind(".")
        stem, suffix = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    return journal.with_name(f"{stem}.shard-{shard.index}-of-{shard.count}{suffix}")


def shard_of_path(path: Path) -> tuple[Path, Shard] | None:
    """(the unsharded journal path, the shard) a shard journal's name tells; None otherwise."""
    found = _SHARD_NAME.match(path.name)
    if not found or not 1 <= int(found.group("index")) <= int(found.group("count")):
        return None
    return (path.with_name(found.group("stem") + found.group("suffix")),
            Shard(int(found.group("index")), int(found.group("count"))))


def shard_journals(journal: Path) -> dict[Shard, Path]:
    """The shard journals beside `journal` (the run's unsharded journal path), any shard count."""
    out: dict[Shard, Path] = {}
    if not journal.parent.is_dir():
        return out
    for candidate in journal.parent.iterdir():
        parsed = shard_of_path(candidate)
        if parsed is not None and parsed[0].name == journal.name and candidate.is_file():
            out[parsed[1]] = candidate
    return dict(sorted(out.items()))


def run_journals(journal: Path) -> list[Path]:
    """Every journal of the run that `journal` (its whole-run journal or one of its shards')
    belongs to, that holds anything: the whole run's, then its shards' of any count."""
    parsed = shard_of_path(journal)
    base = parsed[0] if parsed else journal
    found = [base] if base.is_file() and base.stat().st_size else []
    return found + [path for path in shard_journals(base).values() if path.stat().st_size]


def layout_of(journal: Path, shard: dict | None) -> int | None:
    """A session's layout: its shard count, or None for the whole run."""
    return int(shard["count"]) if shard else None


def other_layouts(journal: Path, layout: int | None) -> set[Path]:
    """The run's journals (`run_journals`) written in another layout than `layout`: for the
    whole run, every shard's; for N shards, the whole run's and those of another count."""
    out: set[Path] = set()
    for path in run_journals(journal):
        parsed = shard_of_path(path)
        count = parsed[1].count if parsed else None
        if count != layout:
            out.add(path)
    return out
