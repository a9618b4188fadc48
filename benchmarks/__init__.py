"""fleetrel's throughput benchmarks: contenders, scenarios, the runner and its plots.

    python benchmarks/run.py --quick                # table on stdout
    python benchmarks/run.py --scenario a,e --json out.json --plot out

The measure itself (ideal time, E, θ, CPU accounting, one fleetrel run) lives in
`fleetrel.bench`, which `fleetrel bench` uses too.
"""
