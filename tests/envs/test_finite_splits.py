"""Finite splits are played as benchmarks count them: each task once, in a fixed order.

A split that is a list of tasks (``TextEnv.task_ids``: ALFWorld's downloaded games, WebShop's goals)
is played by ``reset(options={"task_index": i})``; eval suites plan one episode per task (per sample),
where seeded resets drawn with replacement would repeat some games and miss others.
"""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest

import regym  # noqa: F401  (registers the env ids)
from regym.agents import RandomAgent
from regym.envs.alfworld import ALFWorldEnv, tasks
from regym.eval.episodes import Episode, plan_episodes
from regym.eval.log import read_log
from regym.eval.run_dir import TRAJECTORIES
from regym.eval.runner import evaluate
from regym.eval.suites import suite_entries

ALFWORLD = "regym/ALFWorld-v0"
VALID_UNSEEN_GAMES = 134
"""ALFWorld's valid_unseen (eval_out_of_distribution) games in the downloaded json_2.1.1."""


@pytest.fixture(scope="module")
def valid_unseen_data(generated_alfworld_cache, tmp_path_factory):
    """A downloaded-layout data folder with 134 valid_unseen games (three generated games, copied into
    134 trial folders: distinct game files, as ALFWorld's own are)."""
    root = tmp_path_factory.mktemp("alfworld-data")
    sources = [tasks.generate_task("out_of_distribution", index) for index in range(3)]
    for index in range(VALID_UNSEEN_GAMES):
        source = sources[index % len(sources)]
        traj = json.loads((source / "traj_data.json").read_text())
        trial = root / "json_2.1.1" / "valid_unseen" / f"{traj['task_type']}-Obj-None-Recep-{index}" / "trial_T1"
        shutil.copytree(source, trial)
    return root


def test_a_finite_split_is_played_by_index_and_says_its_size(valid_unseen_data):
    env = ALFWorldEnv(split="valid_unseen", data_path=valid_unseen_data, expert=False)
    ids = env.task_ids
    assert len(ids) == len(set(ids)) == VALID_UNSEEN_GAMES and ids == sorted(ids)
    _, info = env.reset(seed=5, options={"task_index": 7})
    assert env.task_id == ids[7] and info["task_id"] == ids[7] and info["split_size"] == VALID_UNSEEN_GAMES
    with pytest.raises(ValueError, match="outside"):
        env.reset(options={"task_index": VALID_UNSEEN_GAMES})
    with pytest.raises(ValueError, match="not both"):
        env.reset(options={"task_index": 0, "task_id": ids[0]})
    with pytest.raises(TypeError, match="task_index must be an int"):
        env.reset(options={"task_index": "3"})

    generated = ALFWorldEnv(split="valid_unseen", expert=False)
    assert generated.task_ids is None
    assert generated.reset(seed=0)[1]["split_size"] is None
    with pytest.raises(ValueError, match="not a finite list"):
        generated.reset(options={"task_index": 0})


def test_eval_suite_plans_each_of_134_valid_unseen_games_once_in_order(valid_unseen_data, tmp_path):
    """Seeded draws with replacement cover about 83 of 134 games (1 - 1/e); the suite plans all 134, once each."""
    seeded = {int(np.random.default_rng(seed).integers(VALID_UNSEEN_GAMES)) for seed in range(VALID_UNSEEN_GAMES)}
    assert len(seeded) < 100  # what sampling with seeds would have played

    env_kwargs = {"data_path": str(valid_unseen_data), "expert": False, "max_turns": 1}
    (entry,) = suite_entries("alfworld-valid_unseen", env_kwargs=env_kwargs)
    assert (entry.num_tasks, entry.split_size) == (VALID_UNSEEN_GAMES, VALID_UNSEEN_GAMES)
    episodes = plan_episodes([entry], k=1)
    assert [episode.task_index for episode in episodes] == list(range(VALID_UNSEEN_GAMES))
    assert Episode.from_key(episodes[5].key) == episodes[5]
    env = ALFWorldEnv(split="valid_unseen", data_path=valid_unseen_data)
    assert len({env.task_at(episode.reset_options["task_index"]) for episode in episodes}) == VALID_UNSEEN_GAMES

    first = suite_entries("alfworld-valid_unseen", env_kwargs=env_kwargs, num_tasks=12)[0]
    assert [e.task_index for e in plan_episodes([first], k=2)] == [i for i in range(12) for _ in range(2)]
    played = play_suite(plan_episodes([first], k=1), env_kwargs, tmp_path)
    assert played == env.task_ids[:12]
    with pytest.raises(ValueError, match="holds 134 tasks"):
        suite_entries("alfworld-valid_unseen", env_kwargs=env_kwargs, num_tasks=135)


@pytest.mark.slow
def test_eval_suite_plays_all_134_valid_unseen_games_once(valid_unseen_data, tmp_path):
    env_kwargs = {"data_path": str(valid_unseen_data), "expert": False, "max_turns": 1}
    played = play_suite(plan_episodes(suite_entries("alfworld-valid_unseen", env_kwargs=env_kwargs), k=1),
                        env_kwargs, tmp_path)
    assert played == ALFWorldEnv(split="valid_unseen", data_path=valid_unseen_data).task_ids
    assert len(set(played)) == VALID_UNSEEN_GAMES


def play_suite(episodes, env_kwargs, tmp_path) -> list[str]:
    """The task each episode played, by task index, through rl-eval's evaluator."""
    evaluate(tmp_path / "run", episodes, RandomAgent(0), num_envs=8, env_kwargs=env_kwargs)
    records = read_log(tmp_path / "run" / TRAJECTORIES)
    assert len(records) == len(episodes)
    played = {record["task_index"]: record["task_id"] for record in records}
    return [played[index] for index in sorted(played)]


def test_generated_splits_keep_seeded_tasks_and_webshop_plays_its_fixed_goals():
    (alfworld,) = suite_entries("alfworld-ood")
    assert alfworld.split_size is None and alfworld.task_indices is None and alfworld.num_tasks == 8
    (webshop,) = suite_entries("webshop-ood")
    assert webshop.split_size == webshop.num_tasks == 500
    env = gym.make("regym/WebShop-v0", split="out_of_distribution")
    _, info = env.reset(options={"task_index": 499})
    assert info["task_id"] == "ood-00499" and info["split_size"] == 500
