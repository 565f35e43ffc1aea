"""Env step and reset cost: regym's wrappers versus the raw engines, in one process.

For each game the same command sequence (the expert's) is replayed through
``gym.make("regym/...")`` and through the engine's own API with the same requested
infos; rounds alternate between the two so machine noise hits both alike. The ratio
column is regym / raw (goal: <= 1.10 per step).

    python benchmarks/env_step.py [--games 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import gymnasium as gym
import textworld

import regym
from regym.agents import ExpertAgent
from regym.envs.textworld import REQUEST_INFOS, TextWorldEnv

warnings.filterwarnings("ignore")


def _time_regym(env: gym.Env, task_id: str, commands: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    env.reset(options={"task_id": task_id})
    reset = time.perf_counter() - start
    start = time.perf_counter()
    for command in commands:
        env.step(command)
    return reset, (time.perf_counter() - start) / len(commands)


def _time_raw(engine: textworld.Environment, commands: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    engine.reset()
    reset = time.perf_counter() - start
    start = time.perf_counter()
    for command in commands:
        engine.step(command)
    return reset, (time.perf_counter() - start) / len(commands)


def bench_textworld(games: int, rounds: int) -> list[dict]:
    env = gym.make("regym/TextWorld-v0")
    plays = regym.rollout(env, ExpertAgent(), episodes=games)
    rows = {"regym": {"reset": [], "step": []}, "raw engine": {"reset": [], "step": []}}
    cold = time.perf_counter()
    TextWorldEnv().reset(options={"task_id": plays[0].task_id})
    cold_reset = time.perf_counter() - cold
    for play in plays:
        commands = [turn.action for turn in play.turns]
        engine = textworld.start(str(env.unwrapped.game_file(play.task_id)), request_infos=REQUEST_INFOS)
        for _ in range(rounds):
            for backend, (reset, step) in (("regym", _time_regym(env, play.task_id, commands)),
                                           ("raw engine", _time_raw(engine, commands))):
                rows[backend]["reset"].append(reset)
                rows[backend]["step"].append(step)
        engine.close()
    env.close()
    raw_step = statistics.median(rows["raw engine"]["step"])
    raw_reset = statistics.median(rows["raw engine"]["reset"])
    table = []
    for backend, timings in rows.items():
        step, reset = statistics.median(timings["step"]), statistics.median(timings["reset"])
        table.append({
            "env": "TextWorld", "backend": backend,
            "cold_reset_ms": cold_reset * 1e3 if backend == "regym" else None,
            "reset_ms": reset * 1e3, "step_ms": step * 1e3, "steps_per_s": 1 / step,
            "reset_ratio": reset / raw_reset, "step_ratio": step / raw_step,
        })
    return table


def print_table(rows: list[dict]) -> None:
    header = f"{'env':<10} {'backend':<13} {'cold reset ms':>13} {'reset ms':>9} {'step ms':>8} {'steps/s':>8} " \
             f"{'reset ratio':>11} {'step ratio':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        cold = f"{row['cold_reset_ms']:.1f}" if row.get("cold_reset_ms") is not None else "-"
        print(f"{row['env']:<10} {row['backend']:<13} {cold:>13} {row['reset_ms']:>9.2f} {row['step_ms']:>8.3f} "
              f"{row['steps_per_s']:>8.0f} {row['reset_ratio']:>11.2f} {row['step_ratio']:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alfworld-steps", type=int, default=50, help="ALFWorld steps per backend (0: skip)")
    args = parser.parse_args()
    rows = bench_textworld(args.games, args.rounds)
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from env_step_alfworld import bench_alfworld
    except ImportError:
        bench_alfworld = None
    if bench_alfworld is not None and args.alfworld_steps > 0:
        alfworld = bench_alfworld(args.alfworld_steps)
        raw_reset = next(row["reset_ms_cached"] for row in alfworld if row["backend"] == "raw engine")
        rows += [{"env": "ALFWorld", "backend": row["backend"], "cold_reset_ms": row["reset_ms_cold"],
                  "reset_ms": row["reset_ms_cached"], "step_ms": row["step_ms"], "steps_per_s": row["steps_per_s"],
                  "reset_ratio": row["reset_ms_cached"] / raw_reset, "step_ratio": row["ratio"]} for row in alfworld]
    print_table(rows)


if __name__ == "__main__":
    main()
