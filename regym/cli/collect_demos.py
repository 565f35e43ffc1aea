"""``regym collect-demos``: play an agent and save its episodes as a ``datasets.Dataset``.

    regym collect-demos --env textworld --expert --episodes 200 --out demos/textworld
    regym collect-demos --env math --agent random --episodes 50 --split ood --out demos/math-random

The folder loads with ``datasets.load_from_disk``; its ``messages`` column is THE
prompt format, ready for ``regym.rl.sft.sft`` / TRL's ``SFTTrainer``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Literal

from regym.configs import describe_config, parse, report_error


@dataclass
class CollectDemosArgs:
    """Play an agent and save its episodes as a datasets.Dataset (SFT data in THE prompt format)."""

    env: str
    """Env id or short name (e.g. textworld, regym/ALFWorld-v0)."""
    out: str
    """Output folder (datasets.save_to_disk format)."""
    agent: Literal["expert", "random"] = "expert"
    """Which agent plays."""
    expert: bool = False
    """Play the env's expert: the same as --agent expert."""
    episodes: int = 200
    """Episodes to play."""
    split: str = "in_distribution"
    """in_distribution/id or out_of_distribution/ood."""
    seed: int = 0
    """First reset seed; episode i uses seed + i."""
    max_turns: int | None = None
    """Turn limit per episode (None: the env's)."""
    task_pool: int | None = None
    """Envs with a num_tasks option draw from this many tasks (None: the env's)."""
    only_successes: bool = False
    """Keep won episodes only."""
    num_envs: int = 1
    """Envs stepped in lock-step."""

    def __post_init__(self):
        if self.expert and self.agent != "expert":
            raise ValueError(f"--expert and --agent {self.agent} disagree: give one")
        if self.episodes < 1:
            raise ValueError("--episodes must be >= 1")


def main(argv: list[str] | None = None) -> int:
    args = parse(CollectDemosArgs, argv, prog="regym collect-demos", description=__doc__)
    from regym.demos import collect_demos
    from regym.envs import normalize_split, resolve_env_id
    from regym.eval.metrics import success_rate

    try:
        env_id = resolve_env_id(args.env)
        split = normalize_split(args.split)
    except ValueError as error:
        report_error("regym collect-demos", error)
        return 2
    print(f"regym collect-demos: {describe_config(args, always=('env', 'agent', 'episodes', 'split'))}",
          file=sys.stderr, flush=True)
    from regym.progress import library_progress_bars_off

    try:
        with library_progress_bars_off(models=False):  # datasets' "Saving the dataset" bar; ours shows the episodes
            dataset = collect_demos(env_id, agent=args.agent, episodes=args.episodes, split=split, seed=args.seed,
                                    out_dir=args.out, max_turns=args.max_turns, task_pool=args.task_pool,
                                    only_successes=args.only_successes, num_envs=args.num_envs, progress=True)
    except RuntimeError as error:
        report_error("regym collect-demos", error)
        return 1
    summary = {"env_id": env_id, "agent": args.agent, "split": split, "episodes": len(dataset),
               "success_rate": round(success_rate(dataset["success"]), 4),
               "mean_turns": round(sum(dataset["num_turns"]) / len(dataset), 2), "out": args.out}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
