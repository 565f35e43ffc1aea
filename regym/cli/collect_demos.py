"""``regym collect-demos``: play an agent and save its episodes as a ``datasets.Dataset``.

    regym collect-demos --env textworld --expert --episodes 200 --out demos/textworld
    regym collect-demos --env math --agent random --episodes 50 --split ood --out demos/math-random

The folder loads with ``datasets.load_from_disk``; its ``messages`` column is THE
prompt format, ready for ``regym.rl.sft.sft`` / TRL's ``SFTTrainer``.
"""

from __future__ import annotations

import argparse
import json
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regym collect-demos",
        description="Play an agent and save its episodes as a datasets.Dataset (SFT data in THE prompt format).",
    )
    parser.add_argument("--env", required=True, help="env id or short name (e.g. textworld, regym/ALFWorld-v0)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--expert", action="store_const", const="expert", dest="agent",
                     help="play the env's expert (the default)")
    who.add_argument("--agent", choices=("expert", "random"), dest="agent", help="which agent plays")
    parser.set_defaults(agent="expert")
    parser.add_argument("--episodes", type=int, default=200, help="episodes to play (default 200)")
    parser.add_argument("--split", default="in_distribution", help="in_distribution/id or out_of_distribution/ood")
    parser.add_argument("--seed", type=int, default=0, help="first reset seed; episode i uses seed+i (default 0)")
    parser.add_argument("--max-turns", type=int, default=None, help="turn limit per episode (default: the env's)")
    parser.add_argument("--task-pool", type=int, default=None,
                        help="envs with a num_tasks option draw from this many tasks (default: the env's)")
    parser.add_argument("--only-successes", action="store_true", help="keep won episodes only")
    parser.add_argument("--num-envs", type=int, default=1, help="envs stepped in lock-step (default 1)")
    parser.add_argument("--out", required=True, help="output folder (datasets.save_to_disk format)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from regym.envs import normalize_split, resolve_env_id
    from regym.rl.demos import collect_demos, success_rate

    if args.episodes < 1:
        print("regym collect-demos: --episodes must be >= 1", file=sys.stderr)
        return 2
    try:
        env_id = resolve_env_id(args.env)
        split = normalize_split(args.split)
    except ValueError as error:
        print(f"regym collect-demos: {error}", file=sys.stderr)
        return 2
    try:
        dataset = collect_demos(env_id, agent=args.agent, episodes=args.episodes, split=split, seed=args.seed,
                                out_dir=args.out, max_turns=args.max_turns, task_pool=args.task_pool,
                                only_successes=args.only_successes, num_envs=args.num_envs, progress=True)
    except RuntimeError as error:
        print(f"regym collect-demos: {error}", file=sys.stderr)
        return 1
    summary = {"env_id": env_id, "agent": args.agent, "split": split, "episodes": len(dataset),
               "success_rate": round(success_rate(dataset), 4),
               "mean_turns": round(sum(dataset["num_turns"]) / len(dataset), 2), "out": args.out}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
