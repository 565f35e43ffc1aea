"""One ``rl-train`` run (``regym.rl.train.train``) of a cheap game, for the multi-process tests.

    accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 2 tests/support/rl_step_worker.py SPEC
    python tests/support/rl_step_worker.py SPEC            # one process

SPEC is a JSON file: ``{"config": RLConfig fields, "played": folder, "replay": folder or null}``. Every
process writes the episodes it played, in full token view, to ``played/rank-<R>.jsonl``. With ``replay``,
episodes are not played but read back from that folder's files by task seed, so a run can train on exactly
the episodes another run played (sampling draws depend on which episodes share a generate call, so two
process layouts cannot draw the same tokens).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import gymnasium as gym

from games import VowelGame  # tests/support/ is the script's folder, so first on sys.path
from regym.trajectory import Trajectory, read_jsonl

ENV_ID = "regym-test/LetterE-v0"


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=VowelGame)


def recording_play_groups(original, played: Path, replay: Path | None):
    """``trl_bridge.play_groups`` that appends what this process plays to ``played/rank-<R>.jsonl``; with
    ``replay``, it plays nothing and returns the episodes recorded there for the asked task seeds."""
    recorded: dict[int, list[dict]] = {}
    if replay is not None:
        for path in sorted(replay.glob("rank-*.jsonl")):
            for row in read_jsonl(path):
                recorded.setdefault(row["seed"], []).append(row)
    rank = int(os.environ.get("RANK", "0"))
    played.mkdir(parents=True, exist_ok=True)

    def play_groups(policy, envs, *, seeds, group_size, **kwargs):
        if replay is None:
            trajectories = original(policy, envs, seeds=seeds, group_size=group_size, **kwargs)
        else:
            trajectories = [Trajectory.from_dict(row) for seed in seeds for row in recorded[seed]]
        with (played / f"rank-{rank}.jsonl").open("a", encoding="utf-8") as handle:
            for trajectory in trajectories:
                handle.write(json.dumps(trajectory.to_dict()) + "\n")
        return trajectories

    return play_groups


def main(spec_path: str) -> None:
    from regym.rl import trl_bridge
    from regym.rl.config import RLConfig
    from regym.rl.train import train

    spec = json.loads(Path(spec_path).read_text())
    trl_bridge.play_groups = recording_play_groups(trl_bridge.play_groups, Path(spec["played"]),
                                                   Path(spec["replay"]) if spec.get("replay") else None)
    train(RLConfig(**spec["config"]))


if __name__ == "__main__":
    main(sys.argv[1])
