"""Each env family's difficulty levels, measured in-process: tasks, expert and random success, expert steps.

For every level of ToolUse, WebShop and TextWorld (``regym envs`` lists them) this plays ``--episodes``
seeded episodes (reset seeds ``regym.eval.suites.TASK_SEED_BASE + i``) with the expert (``ExpertAgent``,
the env's ``info["expert_action"]``) and with ``RandomAgent`` (a uniform admissible action, or a random
word of the observation where the env lists none), at the env's default ``max_turns``, and prints a
Markdown table: tasks in the level's pool, success rates with Wilson 95 % intervals, and the expert's mean
turns (tool calls plus the answer for ToolUse; the purchase included for WebShop).

    python benchmarks/env_levels.py [--families tool_use webshop textworld] [--episodes 20]

TextWorld compiles each new game once (a few seconds each, cached under ``~/.cache/regym/textworld``).
The tables in docs/tool_use.md, docs/webshop.md and docs/textworld.md were made with the defaults.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import regym  # noqa: F401  (registers the env ids)
from regym.agents import ExpertAgent
from regym.agents.random_agent import RandomAgent
from regym.envs import env_class, resolve_env_id
from regym.eval.metrics import wilson_interval
from regym.eval.suites import TASK_SEED_BASE
from regym.rollout import rollout

FAMILIES = ("tool_use", "webshop", "textworld")


def pool_size(env) -> int:
    """Distinct task ids a level's env draws from."""
    if hasattr(env, "templates"):  # ToolUse: templates x 100,000 indices
        return len(env.templates) * 100_000
    if hasattr(env, "task_prefix"):  # WebShop: the goal style's size
        from regym.envs.webshop.instructions import GOAL_STYLES

        return GOAL_STYLES[env.task_prefix].size
    return env.num_tasks  # TextWorld: game indices


def measure(env_id: str, level: str, episodes: int) -> dict:
    env = env_class(env_id)(level=level)
    seeds = [TASK_SEED_BASE + i for i in range(episodes)]
    row: dict = {"env": env_id, "level": level, "tasks": pool_size(env)}
    started = time.perf_counter()
    for name, agent in (("expert", ExpertAgent()), ("random", RandomAgent(seed=0))):
        played = rollout([env], agent, seeds=seeds)
        wins = sum(trajectory.success for trajectory in played)
        row[name] = {"success": wins / episodes, "interval": wilson_interval(wins, episodes),
                     "mean_turns": sum(trajectory.num_turns for trajectory in played) / episodes}
    env.close()
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| family | level | split | tasks | expert success | random success | expert turns (mean) |",
             "|---|---|---|---:|---|---|---:|"]
    for row in rows:
        registered = env_class(row["env"])
        split = ", ".join(split for split, levels in registered.level_splits.items() if row["level"] in levels)
        cells = []
        for name in ("expert", "random"):
            low, high = row[name]["interval"]
            cells.append(f"{row[name]['success']:.2f} [{low:.2f}, {high:.2f}]")
        lines.append(f"| {row['env'].split('/')[1]} | {row['level']} | {split or '-'} | {row['tasks']:,} | "
                     f"{cells[0]} | {cells[1]} | {row['expert']['mean_turns']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per level and agent")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = []
    for family in args.families:
        env_id = resolve_env_id(family)
        for level in env_class(env_id).difficulty_levels:
            rows.append(measure(env_id, level, args.episodes))
            print(f"{env_id} {level}: {rows[-1]['seconds']} s", flush=True)
    print(markdown(rows))
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
