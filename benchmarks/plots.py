"""Completed calls over time, one line per contender, beside the ideal client's line.

    plot_scenario(scenario, measurements, Path("bench-a.png"))
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI box or over ssh
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.scenarios import Scenario  # noqa: E402
from fleetrel.bench import Measurement, delivered_ideal  # noqa: E402


def plot_path(target: str, scenario_key: str) -> Path:
    """`--plot out` or `--plot out.png` → out-a.png, out-b.png, …"""
    stem = target[:-4] if target.endswith(".png") else target
    return Path(f"{stem}-{scenario_key}.png")


def plot_scenario(scenario: Scenario, measurements: Sequence[Measurement], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    seen: set[str] = set()
    end = 0.0
    for m in measurements:
        if m.contender in seen:  # repeated runs: the first one is drawn
            continue
        seen.add(m.contender)
        times = [0.0, *m.completions]
        ax.step(times, range(len(times)), where="post", label=f"{m.contender} (E={m.efficiency:.2f})", linewidth=1.4)
        end = max(end, m.wall_s)
    quota = scenario.quota
    if quota.rate is not None:
        steps = 400
        ts = [end * i / steps for i in range(steps + 1)]
        calls, rate = scenario.calls * scenario.runs, quota.rate - scenario.foreign_rate  # every run's, on what is left
        ideal = [min(calls, delivered_ideal(t, rate=rate, burst=quota.burst, changes=quota.changes)) for t in ts]
        ax.plot(ts, ideal, "k--", linewidth=1.0, label="ideal (bucket kept empty)")
        for change in quota.changes:
            ax.axvline(change.at_s, color="grey", linestyle=":", linewidth=0.8)
    ax.set_title(f"({scenario.key}) {scenario.title}, N={scenario.calls}")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("calls completed")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
