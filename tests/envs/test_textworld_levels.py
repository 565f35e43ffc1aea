"""TextWorld's difficulty levels: sizes read off its generator, old splits' games unchanged (issue 30)."""

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest

from regym.envs import list_envs
from regym.envs.textworld import TextWorldEnv
from regym.envs.textworld.games import POOL_SPECS, SPLIT_SPECS, game_settings
from regym.envs.textworld.levels import TEXTWORLD_LEVELS

OLD_SPLIT_HASHES = {"in_distribution": "33ac7ed979651b0b", "near_out_of_distribution": "b259d5b7dc5f85a1",
                    "out_of_distribution": "5ae58a7c1c7e6b52"}
"""The first 40 seeded task ids of each split and their games' generator settings, hashed before levels."""


@pytest.mark.parametrize("split", sorted(OLD_SPLIT_HASHES))
def test_old_splits_play_the_same_games(split):
    env = TextWorldEnv(split=split)
    ids = [env._task_id_for(np.random.default_rng(seed)) for seed in range(40)]
    settings = [[task_id, asdict(game_settings(split, int(task_id.rsplit("-", 1)[1]), {}))] for task_id in ids]
    assert hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16] == OLD_SPLIT_HASHES[split]


def test_levels_grow_in_every_size_and_map_the_splits():
    assert list(TEXTWORLD_LEVELS.levels) == ["house.1", "house.2", "house.3", "house.4"]
    specs = [POOL_SPECS[level.settings["pool"]] for level in TEXTWORLD_LEVELS.levels.values()]
    for smaller, larger in zip(specs, specs[1:], strict=False):
        for field in ("rooms", "objects", "quest_length"):
            assert getattr(smaller, field)[0] <= getattr(larger, field)[0]
            assert getattr(smaller, field)[1] < getattr(larger, field)[1]
    assert specs[1] == SPLIT_SPECS["in_distribution"] and specs[3] == SPLIT_SPECS["out_of_distribution"]
    assert TEXTWORLD_LEVELS.split_levels() == {"in_distribution": ("house.2",),
                                               "near_out_of_distribution": ("house.2",),
                                               "out_of_distribution": ("house.4",)}
    listing = next(listing for listing in list_envs() if listing.short_name == "textworld")
    assert dict(listing.levels)["house.3"] == "5-6 rooms, 8-12 objects, quests of 4-5 steps"


@pytest.mark.parametrize("level", ["house.1", "house.3"])
def test_a_level_pool_plays_games_of_its_own_size_that_the_expert_wins(level, tmp_path):
    env = TextWorldEnv(level=level, cache=tmp_path, max_turns=30)
    _, info = env.reset(seed=1)
    assert info["task_id"].startswith(f"tw-{level}-") and info["task_level"] == level
    spec = POOL_SPECS[level]
    settings = game_settings(level, int(info["task_id"].rsplit("-", 1)[1]), {})
    assert spec.rooms[0] <= settings.rooms <= spec.rooms[1]
    while True:
        _, _, terminated, truncated, info = env.step(info["expert_action"])
        if terminated or truncated:
            break
    assert info["won"]
    env.close()


def test_split_play_reports_its_level_and_unknown_levels_are_refused(tmp_path):
    env = TextWorldEnv(split="near", cache=tmp_path, num_tasks=1)
    _, info = env.reset(seed=0)
    assert info["task_id"] == "tw-near-00000" and info["task_level"] == "house.2"
    env.close()
    with pytest.raises(ValueError, match="unknown TextWorld level 'house.9'; known levels: house.1"):
        TextWorldEnv(level="house.9")


@pytest.mark.slow
def test_two_rl_steps_on_the_embedded_default_move_the_policy_on_a_nonzero_dense_reward(tmp_path):
    """A few minutes on 2 cores once the tiny TextWorld pipeline and its games are cached."""
    from two_rl_steps import check_two_rl_steps

    check_two_rl_steps("textworld", tmp_path)


def test_envs_command_lists_every_split_a_level_plays(capsys, monkeypatch):
    from regym.cli.envs import main

    monkeypatch.setenv("COLUMNS", "200")
    assert main([]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if "house.2" in line]
    assert "in_distribution, near_out_of_distribution" in row
