"""A made-up fleet that looks like a real one: which packages each thing runs, at which
version, skewed as fleets are. Deterministic: the same seed and place give the same fleet.

    plan = fleet_plan(things=1000, versions={"fw": ["1.0", "1.1", "2.0"]}, seed=7,
                      place=("123456789012", "us-east-1"))
    plan[0]      # ("device-000000", {"fw": "2.0"})

The shape (our choice; AWS publishes no fleet): per package, versions newest first
(`fleetrel.plan.selectors.sort_key`, the order the selectors use); most things run the
newest two (45% and 30% of the package's things), the rest fall off geometrically (each
next version half the one before), and the oldest fifth of the versions (at least one
once a package has three) runs on no device at all, as versions nobody runs any more do.
A thing runs 1-3 packages (50% one, 35% two, 15% three, at most as many as there are),
chosen uniformly: no package is on every thing.
"""
from __future__ import annotations

import random
from itertools import accumulate
from typing import Iterable

from fleetrel.plan.selectors import sort_key

NEWEST_SHARES = (0.45, 0.30)   # the newest two versions' share of a package's things
TAIL_RATIO = 0.5               # each older version: this much of the one before
UNUSED_SHARE = 0.2             # the oldest fifth of the versions: on no device
PACKAGES_PER_THING = ((1, 0.50), (2, 0.35), (3, 0.15))
THING_NAME = "device-{:06d}"


def version_weights(count: int) -> list[float]:
    """The share of a package's things on each of `count` versions, newest first."""
    if count <= 0:
        return []
    if count == 1:
        return [1.0]
    if count == 2:
        return [0.6, 0.4]
    unused = max(1, int(count * UNUSED_SHARE))
    used = count - unused
    weights = list(NEWEST_SHARES[:used])
    tail = used - len(weights)
    if tail > 0:
        rest = 1.0 - sum(weights)
        shape = [TAIL_RATIO ** (step + 1) for step in range(tail)]
        weights += [rest * share / sum(shape) for share in shape]
    else:
        weights = [weight / sum(weights) for weight in weights]
    return weights + [0.0] * unused


def newest_first(names: Iterable[str]) -> list[str]:
    return sorted(names, key=sort_key, reverse=True)


def fleet_plan(things: int, versions: dict[str, list[str]], seed: int,
               place: tuple[str, str]) -> list[tuple[str, dict[str, str]]]:
    """[(thing name, {package: version})] for `things` things over `versions`
    ({package: [version, ...]}, any order), deterministic per (seed, place)."""
    packages = sorted(name for name, names in versions.items() if names)
    if things <= 0 or not packages:
        return [(THING_NAME.format(index), {}) for index in range(max(things, 0))]
    # A string seed is hashed with SHA-512 by random.Random: stable across runs and
    # machines, unlike hash().
    dice = random.Random(f"fleetrel-fleet/{seed}/{place[0]}/{place[1]}")
    ordered = {package: newest_first(versions[package]) for package in packages}
    cumulative = {package: list(accumulate(version_weights(len(names))))
                  for package, names in ordered.items()}
    sizes = [size for size, _ in PACKAGES_PER_THING if size <= len(packages)]
    size_weights = list(accumulate(share for size, share in PACKAGES_PER_THING
                                   if size <= len(packages)))
    plan = []
    for index in range(things):
        size = dice.choices(sizes, cum_weights=size_weights)[0]
        chosen = dice.sample(packages, size)
        plan.append((THING_NAME.format(index), {
            package: dice.choices(ordered[package], cum_weights=cumulative[package])[0]
            for package in chosen}))
    return plan
