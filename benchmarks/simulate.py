"""Benchmark: simulate cohorts of growing size; report rows/s and peak memory.

Run: make bench-simulate   (or .venv/bin/python benchmarks/simulate.py --sizes 100000 1000000)
Each size runs in a fresh process so peak memory (ru_maxrss) is its own; medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = """
import json, resource, time
from features.simulator import load_simulator_config, simulate_cohort
config = load_simulator_config()
simulate_cohort(config, "{profile}", 1000, 0)  # warm-up: solves the profile's intercepts once
started = time.perf_counter()
frame = simulate_cohort(config, "{profile}", {n}, 1)
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--profile", default="care-ms1")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| patients | median seconds | rows/s | peak memory (MiB) |")
    print("|---|---|---|---|")
    for n in args.sizes:
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", CHILD.format(profile=args.profile, n=n)],
                                 check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak_mib"] for r in runs)
        print(f"| {n:,} | {seconds:.2f} | {n / seconds:,.0f} | {peak:,.0f} |")


if __name__ == "__main__":
    main()
