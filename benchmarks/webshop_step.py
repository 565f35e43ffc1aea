"""Step latency of regym/WebShop-v0 per backend: in-process WSGI call vs HTTP (vs browser).

    .venv/bin/python benchmarks/webshop_step.py --episodes 100 [--browser-episodes 5] [--json out.json]

Plays the expert (so every step is a real page: search, results, item, options, buy)
and times each ``env.step`` call, which includes rendering, parsing and the expert.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from regym.envs.webshop import WebShopEnv
from regym.envs.webshop.browser import browser_unavailable_reason


def time_backend(backend: str, episodes: int) -> dict:
    env = WebShopEnv(backend=backend)
    env.reset(seed=0)  # warm up: catalog, index, server, browser launch
    latencies, successes = [], 0
    for seed in range(episodes):
        _, info = env.reset(seed=seed)
        while True:
            start = time.perf_counter()
            _, _, terminated, truncated, info = env.step(info["expert_action"])
            latencies.append(time.perf_counter() - start)
            if terminated or truncated:
                successes += int(info["success"])
                break
    env.close()
    latencies.sort()
    return {
        "backend": backend,
        "episodes": episodes,
        "steps": len(latencies),
        "median_ms": 1000 * statistics.median(latencies),
        "p90_ms": 1000 * latencies[int(0.9 * (len(latencies) - 1))],
        "success_rate": successes / episodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--browser-episodes", type=int, default=0, help="also time the Playwright backend")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    rows = [time_backend("inprocess", args.episodes), time_backend("http", args.episodes)]
    if args.browser_episodes:
        reason = browser_unavailable_reason()
        if reason:
            print(f"browser skipped: {reason}")
        else:
            rows.append(time_backend("browser", args.browser_episodes))
    print(f"| {'backend':<10} | episodes | steps | median ms | p90 ms | expert success |")
    print("|------------|----------|-------|-----------|--------|----------------|")
    for row in rows:
        print(
            f"| {row['backend']:<10} | {row['episodes']:>8} | {row['steps']:>5} | {row['median_ms']:>9.2f} "
            f"| {row['p90_ms']:>6.2f} | {row['success_rate']:>14.2f} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
