"""Run the benchmark of issue #6: fleetrel and its baselines against one local emulator.

    python benchmarks/run.py --quick                                  # ~5 min: (a), (b), (d), (f), (g), (h), overhead
    python benchmarks/run.py                                          # N=500, every scenario
    python benchmarks/run.py --full --json out.json --plot out        # N=2000; out-a.png, …
    python benchmarks/run.py --scenario a,e --contender fleetrel,aiolimiter
    python benchmarks/run.py --scenario f --contender fleetrel,boto3-adaptive --stagger 0,0.1,0.5,1 --repeat 10
    python benchmarks/run.py --scenario f --stagger 0,0.1,0.5,1 --repeat 10 --apart   # as if on two hosts

One emulator process (throttling UpdatePackageVersion, 50 ms latency) serves every run,
and every contender of a scenario runs in the same invocation, one after the other, so
their ratios compare on the same machine state. Each contender publishes drafts seeded
for it alone, starting against a full bucket.

`--stagger S[,S...]` starts the second run of a scenario of several runs (f) S seconds
after the first (once both processes are ready), once per S; `--repeat K` runs each
scenario K times. Every repetition prints its own row (combined E, θ, both walls and
fairness for (f)); with several, a summary per scenario, stagger and contender gives
min / mean / max and how many repetitions met the targets, which hold in every one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `fleetrel` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.contenders import CONTENDERS  # noqa: E402
from benchmarks.scenarios import Scenario, scenarios_for  # noqa: E402
from benchmarks.together import run_together  # noqa: E402
from fleetrel.bench import Measurement, seed_versions  # noqa: E402

LATENCY_MS = 50.0
CONCURRENCY = 16

MIN_CALLS_PER_CPU_S = 500.0
MAX_OVERHEAD = 0.10

COLUMNS = ("scenario", "contender", "N", "wall s", "ideal s", "E", "θ %", "θ % client", "calls/CPU-s", "sending", "failed", "notes")
WIDTHS = (8, 16, 6, 8, 8, 6, 7, 10, 11, 8, 6, 0)


def deadline_for(scenario: Scenario, ideal_s: float) -> float:
    """How long a contender may take before its unfinished calls count as failed."""
    if scenario.quota.rate is None:
        return 60.0 + scenario.calls / 50
    return 4 * ideal_s + 30.0


def run_freed(emu: Any, scenario: Scenario, name: str, repeat: int, journal_dir: Path,
              deadline_s: float) -> Measurement:
    """Scenario (i): one run of `name` beside a foreign caller (a process) that sends from
    1 s before the run until `foreign_until` s into it. E is against every call the
    quota admitted while the run lasted, the foreign caller's included; θ over every
    attempt the emulator received; `extra["recovered_s"]`: how long after the caller
    stopped the run's answers came at 90 % of the quota again."""
    import multiprocessing
    import threading

    from benchmarks.contenders import foreign_caller
    from benchmarks.simulate import recovery
    from fleetrel.bench import efficiency, operation_counts, prepare

    quota = scenario.quota
    versions = seed_versions(emu, f"{scenario.key}-{name}-{repeat}", scenario.calls)
    drafts = seed_versions(emu, f"{scenario.key}-{name}-{repeat}-foreign", 20)
    prepare(emu, quota)
    ctx = multiprocessing.get_context("spawn")
    ready, stop, counting = ctx.Event(), ctx.Event(), ctx.Event()
    admitted = ctx.Value("i", 0)
    proc = ctx.Process(target=foreign_caller, daemon=True,
                       args=(emu.url, scenario.foreign_rate, drafts, ready, stop, counting, admitted))
    proc.start()
    try:
        if not ready.wait(120.0):
            raise RuntimeError("the foreign caller did not start")
        time.sleep(1.0)  # a steady load: the run starts into it
        kwargs: dict[str, Any] = {"concurrency": CONCURRENCY, "deadline_s": deadline_s, "shared": True}
        if name == "fleetrel":
            kwargs.update(ceiling=scenario.fleetrel_ceiling, told_burst=scenario.fleetrel_burst,
                          journal_dir=journal_dir)
        emu.reset_record()
        timer = threading.Timer(scenario.foreign_until or 0.0, stop.set)
        counting.set()
        timer.start()
        m = CONTENDERS[name](emu, versions, quota, **kwargs)
        counting.clear()
        timer.cancel()
    finally:
        stop.set()
        proc.join(10.0)
        if proc.is_alive():
            proc.kill()
    foreign = admitted.value
    attempts, throttled = operation_counts(emu.record())
    m.ideal_s = round(scenario.ideal_s(foreign), 4)
    m.efficiency = efficiency(m.wall_s, m.ideal_s)
    m.attempts, m.throttled = attempts, throttled
    m.throttle_ratio = round(throttled / attempts, 5) if attempts else 0.0
    m.extra.update(foreign_rate=scenario.foreign_rate, foreign_admitted=foreign,
                   recovered_s=round(recovery(m.completions, scenario.foreign_until or 0.0, quota.rate or 0.0), 2))
    return m


def run_one(emu: Any, scenario: Scenario, name: str, repeat: int, journal_dir: Path,
            stagger: float = 0.0) -> Measurement:
    deadline_s = deadline_for(scenario, scenario.ideal_s())
    if scenario.foreign_until is not None:
        measurement = run_freed(emu, scenario, name, repeat, journal_dir, deadline_s)
        measurement.extra["scenario"] = scenario.key
        measurement.extra["repeat"] = repeat
        return measurement
    if scenario.runs > 1 or scenario.foreign_rate:
        measurement = run_together(emu, scenario, name, repeat=repeat, journal_dir=journal_dir,
                                   concurrency=CONCURRENCY, deadline_s=deadline_s, stagger=stagger)
        measurement.extra["scenario"] = scenario.key
        measurement.extra["repeat"] = repeat
        measurement.extra["stagger"] = stagger
        return measurement
    versions = seed_versions(emu, f"{scenario.key}-{name}-{repeat}", scenario.calls)
    kwargs: dict[str, Any] = {"concurrency": CONCURRENCY, "deadline_s": deadline_s}
    if name == "fleetrel":
        kwargs.update(ceiling=scenario.fleetrel_ceiling, told_burst=scenario.fleetrel_burst, journal_dir=journal_dir)
    measurement = CONTENDERS[name](emu, versions, scenario.quota, **kwargs)
    measurement.extra["scenario"] = scenario.key
    measurement.extra["repeat"] = repeat
    return measurement


def notes(m: Measurement) -> str:
    out = []
    extra = m.extra
    if "walls" in extra and len(extra["walls"]) > 1:
        out.append("walls " + " / ".join(f"{w:.1f}" for w in extra["walls"]) + f" s, fairness {extra['fairness']:.2f}")
    if extra.get("foreign_rate"):
        out.append(f"θ and attempts include the foreign caller's ({extra['foreign_rate']:g}/s)")
    if "recovered_s" in extra:
        out.append(f"foreign caller admitted {extra['foreign_admitted']}; back at 90 % of the quota "
                   f"{extra['recovered_s']:g} s after it stopped")
    if extra.get("give_ups"):
        out.append(
            f"botocore gave up {extra['give_ups']}× on {extra['calls_given_up_once']} calls, "
            f"resubmitted in {extra.get('rounds', '?')} rounds"
        )
    if m.failed:
        out.append("E over an incomplete run")
    errors = {k: v for k, v in (extra.get("errors") or {}).items() if k != "ThrottlingException"}
    if errors:
        out.append("errors " + ", ".join(f"{k}={v}" for k, v in errors.items()))
    accepted = extra.get("emulator_accepted")
    if accepted is not None and accepted != m.succeeded:
        out.append(f"emulator accepted {accepted} calls, client counted {m.succeeded} successes")
    if m.client_attempts is not None and m.client_attempts != m.attempts:
        out.append(f"client counted {m.client_attempts} attempts, emulator {m.attempts}")
    return "; ".join(out)


def row(scenario: str, m: Measurement) -> tuple[str, ...]:
    client_theta = ""
    if m.client_attempts:
        client_theta = f"{100 * (m.client_throttles or 0) / m.client_attempts:.1f}"
    e = "" if math.isnan(m.efficiency) else f"{m.efficiency:.3f}"
    return (
        scenario,
        m.contender,
        str(m.calls),
        f"{m.wall_s:.2f}",
        f"{m.ideal_s:.2f}",
        e,
        f"{100 * m.throttle_ratio:.1f}",
        client_theta,
        f"{m.calls_per_cpu_s:.0f}",
        "" if m.calls_per_cpu_s_sending is None else f"{m.calls_per_cpu_s_sending:.0f}",
        str(m.failed),
        notes(m),
    )


def fmt(cells: tuple[str, ...]) -> str:
    return "  ".join(c.ljust(w) if w else c for c, w in zip(cells, WIDTHS)).rstrip()


def overhead(measurements: list[Measurement]) -> dict[str, Any] | None:
    """fleetrel's CPU per call over the raw aiobotocore loop's, best run of each."""
    best: dict[str, float] = {}
    for m in measurements:
        if m.succeeded:
            per_call = m.cpu_s / m.succeeded
            best[m.contender] = min(best.get(m.contender, math.inf), per_call)
    if "fleetrel" not in best or "raw-aiobotocore" not in best:
        return None
    return {
        "fleetrel_cpu_ms_per_call": round(1000 * best["fleetrel"], 4),
        "raw_cpu_ms_per_call": round(1000 * best["raw-aiobotocore"], 4),
        "overhead_per_call": round(best["fleetrel"] / best["raw-aiobotocore"] - 1, 4),
    }


def label(key: str, m: Measurement) -> str:
    """The scenario's key, with the stagger of its runs if they started apart: f@0.5."""
    stagger = m.extra.get("stagger")
    return f"{key}@{stagger:g}" if stagger else key


def meets(scenario: Scenario, m: Measurement) -> bool:
    """Whether one measurement meets the scenario's targets (True if it has none)."""
    ok = m.failed == 0
    if scenario.target is not None:
        e_max, theta_max = scenario.target
        ok = ok and m.efficiency <= e_max and m.throttle_ratio <= theta_max
    if scenario.min_fairness is not None:
        ok = ok and m.extra.get("fairness", 1.0) >= scenario.min_fairness
    if scenario.recovery_s is not None:
        ok = ok and m.extra.get("recovered_s", math.inf) <= scenario.recovery_s
    return ok


def summary(results: dict[str, list[Measurement]], scenarios: dict[str, Scenario]) -> list[str]:
    """Per scenario, stagger and contender, over the repetitions: E, θ and fairness min /
    mean / max, and how many repetitions met the targets (they must hold in every one)."""
    lines = []
    for key, ms in results.items():
        groups: dict[tuple[float, str], list[Measurement]] = {}
        for m in ms:
            groups.setdefault((m.extra.get("stagger") or 0.0, m.contender), []).append(m)
        if all(len(g) < 2 for g in groups.values()):
            continue
        for (stagger, contender), g in groups.items():
            def span(values: list[float], fmt: str) -> str:
                return f"{fmt.format(min(values))} / {fmt.format(sum(values) / len(values))} / {fmt.format(max(values))}"
            line = (f"({label(key, g[0])}) {contender:<15} {len(g):2d} runs  E min/mean/max "
                    f"{span([m.efficiency for m in g], '{:.3f}')}  θ % {span([100 * m.throttle_ratio for m in g], '{:.1f}')}")
            if "fairness" in g[0].extra:
                line += f"  fairness {span([m.extra['fairness'] for m in g], '{:.2f}')}"
            line += f"  targets met {sum(meets(scenarios[key], m) for m in g)}/{len(g)}"
            lines.append(line)
    return lines


def verdicts(results: dict[str, list[Measurement]], overhead_figure: dict[str, Any] | None,
             scenarios: dict[str, Scenario]) -> list[str]:
    """fleetrel's figures against the issue's targets, one line each."""
    lines = []
    for key, ms in results.items():
        scenario = scenarios[key]
        for m in ms:
            if m.contender != "fleetrel":
                continue
            if scenario.target is not None:
                e_max, theta_max = scenario.target
                ok = meets(scenario, m)
                fair = ""
                if scenario.min_fairness is not None:
                    fair = f", fairness {m.extra.get('fairness', 1.0):.2f} (≥ {scenario.min_fairness})"
                if scenario.recovery_s is not None:
                    back = m.extra.get("recovered_s", math.inf)
                    fair = f", back at 90 % after {back:g} s (≤ {scenario.recovery_s:g})"
                lines.append(
                    f"({label(key, m)}) E {m.efficiency:.3f} (≤ {e_max}), θ {100 * m.throttle_ratio:.1f}% "
                    f"(≤ {100 * theta_max:.0f}%){fair}, failed {m.failed}: {'met' if ok else 'MISSED'}"
                )
            ok = m.calls_per_cpu_s >= MIN_CALLS_PER_CPU_S
            sending = "" if m.calls_per_cpu_s_sending is None else f", {m.calls_per_cpu_s_sending:.0f} from the first success on"
            lines.append(f"({label(key, m)}) {m.calls_per_cpu_s:.0f} calls/CPU-s{sending} (≥ {MIN_CALLS_PER_CPU_S:.0f}): "
                         f"{'met' if ok else 'MISSED'}")
    if overhead_figure:
        o = overhead_figure["overhead_per_call"]
        lines.append(
            f"overhead per call {100 * o:+.1f}% over raw aiobotocore "
            f"({overhead_figure['fleetrel_cpu_ms_per_call']:.3f} vs {overhead_figure['raw_cpu_ms_per_call']:.3f} CPU-ms) "
            f"(≤ {100 * MAX_OVERHEAD:.0f}%): {'met' if o <= MAX_OVERHEAD else 'MISSED'}"
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="N=200; scenarios a, b, d, f, g, h and the overhead pair")
    size.add_argument("--full", action="store_true", help="N=2000")
    every = ",".join(s.key for s in scenarios_for("default", None))
    parser.add_argument("--scenario", default="", help=f"comma-separated keys among {every} (default: the mode's)")
    parser.add_argument("--contender", default="", help=f"comma-separated, among {','.join(CONTENDERS)} (default: all)")
    parser.add_argument("--stagger", default="0", metavar="S[,S...]",
                        help="in scenarios of several runs (f), run k starts k × S s after the first, once per S "
                             "(default 0: together)")
    parser.add_argument("--repeat", type=int, default=None, metavar="K",
                        help="run each scenario K times (default: the scenario's own, 1 but for the overhead pair)")
    parser.add_argument("--apart", action="store_true",
                        help="fleetrel's runs of (f) do not see each other (FLEETREL_NEIGHBOURS=off), as runs on "
                             "two hosts: they learn of each other from throttles only")
    parser.add_argument("--json", metavar="OUT", help="write every figure (and completion times) here")
    parser.add_argument("--plot", metavar="PREFIX", help="write PREFIX-<scenario>.png per scenario")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "quick" if args.quick else "full" if args.full else "default"
    keys = [k.strip() for k in args.scenario.split(",") if k.strip()] or None
    try:
        scenarios = scenarios_for(mode, keys)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    chosen = [c.strip() for c in args.contender.split(",") if c.strip()] or list(CONTENDERS)
    unknown_c = set(chosen) - set(CONTENDERS)
    if unknown_c:
        print(f"unknown contender(s) {sorted(unknown_c)}: choose among {', '.join(CONTENDERS)}", file=sys.stderr)
        return 2
    try:
        staggers = [float(x) for x in args.stagger.split(",") if x.strip()] or [0.0]
    except ValueError:
        print(f"--stagger takes seconds, comma-separated, not {args.stagger!r}", file=sys.stderr)
        return 2
    if any(x < 0 for x in staggers) or (args.repeat is not None and args.repeat < 1):
        print("--stagger must be ≥ 0 and --repeat ≥ 1", file=sys.stderr)
        return 2

    if args.apart:
        os.environ["FLEETREL_NEIGHBOURS"] = "off"  # every run's process inherits it
    from fleetrel.emulator import start_emulator

    started = time.time()
    results: dict[str, list[Measurement]] = {}
    failures: list[dict[str, Any]] = []
    print(f"fleetrel benchmark, mode {mode}, latency {LATENCY_MS:g} ms, {CONCURRENCY} in flight; "
          f"CPU: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
          f"{'; runs apart (they do not see each other)' if args.apart else ''}", flush=True)
    print(fmt(COLUMNS), flush=True)
    with start_emulator(latency_ms=LATENCY_MS) as emu, tempfile.TemporaryDirectory(prefix="fleetrel-bench-") as tmp:
        for scenario in scenarios:
            results[scenario.key] = []
            serial = 0  # each repetition's drafts are named apart, staggers included
            for stagger in staggers if scenario.runs > 1 else [0.0]:
                for _ in range(args.repeat or scenario.repeats):
                    repeat, serial = serial, serial + 1
                    for name in scenario.contenders:
                        if name not in chosen:
                            continue
                        key = f"{scenario.key}@{stagger:g}" if stagger else scenario.key
                        try:
                            m = run_one(emu, scenario, name, repeat, Path(tmp), stagger)
                        except Exception as exc:  # one broken contender must not hide the others' figures
                            traceback.print_exc()
                            failures.append({"scenario": scenario.key, "contender": name, "error": repr(exc),
                                             "stagger": stagger})
                            print(fmt((key, name, str(scenario.calls), "", "", "", "", "", "", "ALL",
                                       f"crashed: {exc!r}")), flush=True)
                            # Calls the crashed contender left in flight are still waiting out
                            # the emulator's latency: let them land before the next record starts.
                            time.sleep(2.0)
                            continue
                        results[scenario.key].append(m)
                        print(fmt(row(key, m)), flush=True)

    overhead_figure = overhead(results.get("o", []))
    print()
    by_key = {s.key: s for s in scenarios}
    for line in verdicts(results, overhead_figure, by_key):
        print(line)
    lines = summary(results, by_key)
    if lines:
        print("\nover the repetitions (min / mean / max):")
        for line in lines:
            print(line)
    print(f"\ntotal {time.time() - started:.0f} s; load average now {os.getloadavg()[0]:.2f} "
          "(other work on this machine makes every figure noisier)")

    if args.json:
        by_key = {s.key: s for s in scenarios}
        doc = {
            "mode": mode,
            "latency_ms": LATENCY_MS,
            "concurrency": CONCURRENCY,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "started": started,
            "scenarios": [
                {
                    "key": key,
                    "title": by_key[key].title,
                    "calls": by_key[key].calls,
                    "fleetrel_ceiling": by_key[key].fleetrel_ceiling,
                    "runs": [m.to_dict() for m in ms],
                }
                for key, ms in results.items()
            ],
            "overhead": overhead_figure,
            "crashed": failures,
            "verdicts": verdicts(results, overhead_figure, by_key),
        }
        Path(args.json).write_text(json.dumps(_jsonable(doc), indent=1, allow_nan=False), encoding="utf-8")
        print(f"figures: {args.json}")
    if args.plot:
        from benchmarks.plots import plot_path, plot_scenario

        by_key = {s.key: s for s in scenarios}
        for key, ms in results.items():
            if ms:
                print(f"plot: {plot_scenario(by_key[key], ms, plot_path(args.plot, key))}")
    lost = sum(m.failed for ms in results.values() for m in ms)
    return 1 if failures or lost else 0


def _jsonable(value: Any) -> Any:
    """Strict JSON: NaN and infinities (E with no ideal time, say) become null."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
