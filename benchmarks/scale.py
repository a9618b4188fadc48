"""Memory and time of big plans: a run, its resume, `status` and `validate`, per plan size.

    python benchmarks/scale.py                                  # 1k, 10k, 50k, 100k steps
    python benchmarks/scale.py --sizes 1000,10000 --json out.json --plot out.png

For each size, a plan of that many PUBLISH steps (`benchmarks/plan_load.py`'s shape:
entries of 100 versions) is run with `fleetrel run` against a fresh, unthrottled emulator
in its own process, then, on the finished run:

- resume: the same command again; it must send nothing (checked on the emulator's record);
- status: `fleetrel status JOURNAL`;
- validate: `fleetrel validate PLAN`.

Every command is a process of its own, so one size's memory does not pollute the next:
its peak RSS is its own `ru_maxrss` (`os.wait4`), start-up and imports included, as a user
meets them; a small launcher process starts them (see `LAUNCHER`). Resume, status and validate are timed `--repeat` times;
the fastest is shown with its RSS. Issue 11's targets, at 50k steps (a 100k-line
journal): resume ≤ 1 s and ≤ 150 MB, status ≤ 0.5 s, validate ≤ 0.5 s; a 100k-step run
≤ 200 MB. The emulator serves about 400-1000 calls/s on two cores, so the 100k run takes
minutes: pass `--sizes` for a quick look. The machines are shared: say how loaded it was.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `fleetrel` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.plan_load import plan_data  # noqa: E402
from fleetrel.emulator import start_emulator  # noqa: E402

SEED_CHUNK = 10_000  # versions per seed request: one JSON body stays a few MB
# The run is not paced: the client's ceiling is far above what the emulator serves.
LIMITS = {"rate": 1_000_000.0, "burst": 1000, "concurrency": 16}
COMMANDS = ("run", "resume", "status", "validate")


@dataclass
class Figure:
    """One command's cost: wall time, CPU time (user + system: less moved by other load on
    the machine than wall time) and the peak RSS of its process."""

    wall_s: float
    cpu_s: float
    rss_mb: float


# Why a launcher: a child's ru_maxrss is never below its parent's size when it was
# spawned (Linux keeps the high-water mark of the address space a process had before its
# exec, and fork, vfork and posix_spawn all start from the parent's), and this process holds
# a plan and its seed list: 90 MB at 50k steps, more than `fleetrel status` itself needs.
# So the measured commands are started by a bare Python process (~10 MB), started first.
LAUNCHER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    started = time.perf_counter()
    with open(job["log"], "ab") as out:
        process = subprocess.Popen(job["command"], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own usage, not all children's
    print(json.dumps({"code": os.waitstatus_to_exitcode(status), "wall": time.perf_counter() - started,
                      "cpu": usage.ru_utime + usage.ru_stime, "rss_kb": usage.ru_maxrss}), flush=True)
"""


class Launcher:
    """Runs `python -m fleetrel ARGS` in a child of a small process; see LAUNCHER."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def run(self, args: list[str], *, log: Path) -> tuple[int, Figure]:
        """Its exit code, wall and CPU time, and peak RSS (Linux reports KiB)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        job = {"command": [sys.executable, "-m", "fleetrel", *args], "log": str(log)}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        done = json.loads(self.process.stdout.readline())
        return done["code"], Figure(done["wall"], done["cpu"], done["rss_kb"] / 1024)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


def best(launcher: Launcher, repeat: int, args: list[str], *, log: Path, expect: int = 0) -> Figure:
    figures = []
    for _ in range(repeat):
        code, figure = launcher.run(args, log=log)
        if code != expect:
            raise SystemExit(f"fleetrel {' '.join(args)} exited {code} (expected {expect}); see {log}")
        figures.append(figure)
    return min(figures, key=lambda f: f.wall_s)


def updates_received(record: dict) -> int:
    return sum(record["operations"].get("UpdatePackageVersion", {}).values())


def measure(launcher: Launcher, steps: int, directory: Path, repeat: int) -> dict[str, Figure]:
    data = plan_data(steps)
    data["limits"] = LIMITS
    plan = directory / f"scale-{steps}.yaml"
    plan.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=10_000))
    journal = directory / f"scale-{steps}.journal.jsonl"
    for old in (journal, journal.with_name(journal.name + ".key")):  # a --keep folder's earlier run
        old.unlink(missing_ok=True)
    log = directory / f"scale-{steps}.log"
    with start_emulator() as emulator:  # unthrottled, and fresh for each size
        versions = [(entry["package"], v) for entry in data["versions"] for v in entry["versions"]]
        for start in range(0, steps, SEED_CHUNK):
            emulator.seed(versions[start:start + SEED_CHUNK])
        run = ["run", str(plan), "--journal", str(journal), "--endpoint-url", emulator.url, "--yes"]
        code, ran = launcher.run(run, log=log)
        if code != 0:
            raise SystemExit(f"the {steps}-step run exited {code}; see {log}")
        sent = updates_received(emulator.record())
        if sent != steps:
            raise SystemExit(f"the {steps}-step run sent {sent} updates, not {steps}; see {log}")
        emulator.reset_record()
        resumed = best(launcher, repeat, run, log=log)
        if updates_received(emulator.record()):
            raise SystemExit(f"the resume of the finished {steps}-step run sent updates; see {log}")
    return {"run": ran, "resume": resumed, "status": best(launcher, repeat, ["status", str(journal)], log=log),
            "validate": best(launcher, repeat, ["validate", str(plan)], log=log)}


HEADER = f"{'steps':>7}  {'run: wall, peak RSS':>19}  " + "  ".join(f"{c + ': wall (CPU), RSS':>27}" for c in COMMANDS[1:])


def print_row(steps: int, figures: dict[str, Figure]) -> None:
    ran = figures["run"]
    cells = [f"{steps:>7}", f"{ran.wall_s:>8.1f} s {ran.rss_mb:>6.0f} MB"]
    cells += [f"{f.wall_s:>9.2f} s ({f.cpu_s:4.2f}) {f.rss_mb:>4.0f} MB" for f in (figures[c] for c in COMMANDS[1:])]
    print("  ".join(cells), flush=True)


def plot(results: dict[int, dict[str, Figure]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a CI box or over ssh
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    fig, (rss, wall) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80)
    for command, color in zip(COMMANDS, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        rss.plot(sizes, [results[s][command].rss_mb for s in sizes], marker="o", color=color, label=command)
        if command != "run":
            wall.plot(sizes, [results[s][command].wall_s for s in sizes], marker="o", color=color, label=command)
    rss.axhline(150, color="grey", linestyle=":", linewidth=0.8)  # the resume's target
    rss.axhline(200, color="grey", linestyle="--", linewidth=0.8)  # the 100k run's target
    for ax, label in ((rss, "peak RSS (MB)"), (wall, "wall time (s)")):
        ax.set_xscale("log")
        ax.set_xlabel("plan steps")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    wall.set_title("on the finished run", fontsize=9)
    rss.set_title("peak RSS per process", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000,100000", help="step counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs of resume, status and validate; the fastest is shown")
    parser.add_argument("--json", dest="json_path", type=Path, help="write every figure as JSON here")
    parser.add_argument("--plot", dest="plot_path", type=Path, help="write a PNG plot here")
    parser.add_argument("--keep", type=Path, help="keep plans, journals and logs in this folder")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    load = os.getloadavg()
    print(f"{platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.2f} at start; "
          f"Python {platform.python_version()}")
    print(HEADER)
    results: dict[int, dict[str, Figure]] = {}
    launcher = Launcher()
    try:
        with tempfile.TemporaryDirectory(prefix="fleetrel-scale-") as tmp:
            directory = args.keep or Path(tmp)
            directory.mkdir(parents=True, exist_ok=True)
            for steps in sizes:
                results[steps] = measure(launcher, steps, directory, args.repeat)
                print_row(steps, results[steps])
    finally:
        launcher.close()
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.json_path:
        args.json_path.write_text(json.dumps(
            {"load_average": [load[0], os.getloadavg()[0]], "cpus": os.cpu_count(),
             "sizes": {str(s): {c: asdict(f) for c, f in r.items()} for s, r in results.items()}}, indent=2))
    if args.plot_path:
        plot(results, args.plot_path)


if __name__ == "__main__":
    main()
