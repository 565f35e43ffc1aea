"""Latency of one trivial sandboxed call: warm pool versus a cold interpreter start.

Rows: the local sandbox with a warm pool (a worker is already started inside its own
bubblewrap sandbox; the pool refills between calls, as it does while a policy
generates), the same sandbox with no pool (bubblewrap and the interpreter start inside
the call), and a bare ``subprocess.run([python, "-c", ...])`` with no isolation at all.
Rounds alternate between the methods so machine noise hits all alike, and each timing
starts with the warm pool full, so that no worker start in the background overlaps any
of them. Goal: warm >= 5x faster than cold.

    python benchmarks/sandbox.py [--calls 30] [--pool-size 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from regym.envs.sandbox import LocalSandbox, SandboxLimits

CODE = "print(6 * 7)"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="timed calls per method")
    parser.add_argument("--pool-size", type=int, default=2, help="warm workers kept by the pool")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    limits = SandboxLimits()
    warm_sandbox = LocalSandbox(limits, pool_size=args.pool_size)
    cold_sandbox = LocalSandbox(limits, pool_size=0)
    timings: dict[str, list[float]] = {"sandbox, warm pool": [], "sandbox, no pool": [], "subprocess.run (cold)": []}
    try:
        for _ in range(args.calls):
            warm_sandbox.warm()
            started = time.perf_counter()
            result = warm_sandbox.run(CODE)
            timings["sandbox, warm pool"].append(time.perf_counter() - started)
            assert result.output.strip() == "42", result

            warm_sandbox.warm()
            started = time.perf_counter()
            result = cold_sandbox.run(CODE)
            timings["sandbox, no pool"].append(time.perf_counter() - started)
            assert result.output.strip() == "42", result

            warm_sandbox.warm()
            started = time.perf_counter()
            completed = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
            timings["subprocess.run (cold)"].append(time.perf_counter() - started)
            assert completed.stdout.strip() == "42"
        protections = warm_sandbox.protections()
    finally:
        warm_sandbox.close()
        cold_sandbox.close()

    cold_median = statistics.median(timings["subprocess.run (cold)"])
    rows = []
    for method, values in timings.items():
        median = statistics.median(values)
        rows.append({"method": method, "median_ms": 1000 * median, "p90_ms": 1000 * _percentile(values, 0.9),
                     "speedup_vs_cold": cold_median / median})
    print(f"{args.calls} calls of {CODE!r} per method (python {sys.version.split()[0]})")
    print(f"| {'method':<24} | {'median ms':>9} | {'p90 ms':>8} | {'cold / method':>13} |")
    print(f"|{'-' * 26}|{'-' * 11}|{'-' * 10}|{'-' * 15}|")
    for row in rows:
        print(f"| {row['method']:<24} | {row['median_ms']:>9.1f} | {row['p90_ms']:>8.1f} | "
              f"{row['speedup_vs_cold']:>12.1f}x |")
    warm_ratio = rows[0]["speedup_vs_cold"]
    print(f"warm pool is {warm_ratio:.1f}x faster than a cold subprocess.run (goal >= 5x): "
          f"{'PASS' if warm_ratio >= 5 else 'FAIL'}")
    print("active protections:")
    for name, description in protections.items():
        print(f"  {name:<20} {description}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "protections": protections, "calls": args.calls}, handle, indent=2)
    return 0 if warm_ratio >= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
