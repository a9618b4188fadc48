"""The nightly run of the identity model (tests/test_identity_model.py, issue 21): many
more examples than the test suite's, timed.

    python benchmarks/model.py [--examples 10000] [--steps 12] [--invariants 1,2,2n,2r,3,4,5] [--seed N]

It runs the same state machine (runs in every layout, kills, stops, plan edits, undos on
`fleetrel.testing`'s fakes and virtual clock) with `--examples` examples of up to
`--steps` rules each, prints the first violation Hypothesis finds with its shrunk
sequence of rules, and how long it took. Exit code 0: no violation; 1: one found.
On these shared 2-core machines, loaded, about 2 examples a second: 10,000 take about
an hour and a half.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=16, help="rules per example, at most")
    parser.add_argument("--invariants", default=None, help="the invariants to check (default: all)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.invariants:
        os.environ["FLEETREL_MODEL_INVARIANTS"] = args.invariants  # read when the model is imported
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

    from hypothesis import HealthCheck, Phase, seed, settings
    from hypothesis.stateful import run_state_machine_as_test
    from test_identity_model import IdentityModel

    chosen = settings(max_examples=args.examples, stateful_step_count=args.steps, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), print_blob=True,
                      phases=[Phase.generate, Phase.target, Phase.shrink, Phase.explain])
    machine = IdentityModel if args.seed is None else seed(args.seed)(IdentityModel)
    started = time.perf_counter()
    try:
        run_state_machine_as_test(machine, settings=chosen)
    except Exception as exc:  # noqa: BLE001 - a violation: report it with its time
        elapsed = time.perf_counter() - started
        traceback.print_exception(exc)  # with Hypothesis's notes: the shrunk sequence of rules
        print(f"identity model: violation found after {elapsed:.1f} s", flush=True)
        return 1
    elapsed = time.perf_counter() - started
    print(f"identity model: {args.examples} examples, no violation, {elapsed:.1f} s "
          f"({args.examples / elapsed:.1f} examples/s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
