"""Is the ALFWorld planner shortest? Its plan from each game's opening state next to a BFS-shortest one.

``regym.envs.alfworld.shortest`` searches ALFWorld's operators breadth-first and plays the plan it finds
on ALFWorld's engine (it must win); a game where that plan is shorter is a game where the planner
(``regym.envs.alfworld.expert``) detours. Games: the first ``--games`` generated games of each split.

Run: ``.venv/bin/python benchmarks/alfworld_shortest.py --games 30``
"""

from __future__ import annotations

import argparse

from regym.envs.alfworld import engine as alfworld_engine
from regym.envs.alfworld import shortest, tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=30, help="generated games per split")
    parser.add_argument("--splits", nargs="+", default=["in_distribution", "out_of_distribution"],
                        help="generator pools (out_of_distribution: the held_out_rooms split's games)")
    args = parser.parse_args()
    engine = alfworld_engine.make_engine()
    longer, total = [], 0
    for split in args.splits:
        for index in range(args.games):
            game = tasks.generate_task(split, index) / "game.tw-pddl"
            planned, best = shortest.plan_lengths(game, engine)
            total += 1
            if planned > best:
                longer.append((split, index, tasks.task_type_for(index), planned, best))
    for split, index, task_type, planned, best in longer:
        print(f"{split} {index:3d} {task_type:32s} planner {planned:2d}  shortest {best:2d}")
    print(f"{len(longer)} of {total} games have a plan shorter than the planner's")


if __name__ == "__main__":
    main()
