"""TextWorld on the real engine: determinism, the Gymnasium contract, expert vs random, fuzzing."""

import string

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import regym
from regym.agents import ExpertAgent, RandomAgent
from regym.envs.textworld import clean_feedback


@pytest.fixture(scope="module")
def env():
    environment = gym.make("regym/TextWorld-v0")
    yield environment
    environment.close()


def test_opening_is_a_real_game(env):
    observation, info = env.reset(seed=0)
    assert "$$$$" not in observation and not observation.rstrip().endswith("/1")
    assert info["objective"] in observation
    assert info["expert_action"] in info["admissible_actions"]
    assert info["task_id"].startswith("tw-id-") and info["split"] == "in_distribution"


def test_check_env_passes(env):
    check_env(env.unwrapped, skip_render_check=True)


def test_same_seed_same_game_and_observations(env):
    first = env.reset(seed=3)
    steps = [env.step(first[1]["admissible_actions"][0])[0] for _ in range(2)]
    second = env.reset(seed=3)
    assert first[0] == second[0] and first[1]["task_id"] == second[1]["task_id"]
    assert [env.step(first[1]["admissible_actions"][0])[0] for _ in range(2)] == steps
    assert env.reset(seed=4)[1]["task_id"] != first[1]["task_id"]


def test_task_id_option_picks_the_game(env):
    _, info = env.reset(seed=123, options={"task_id": "tw-ood-00007"})
    assert info["task_id"] == "tw-ood-00007"
    with pytest.raises(ValueError, match="TextWorld task id"):
        env.reset(options={"task_id": "nonsense"})


def test_expert_wins_in_distribution_random_does_not():
    envs = [gym.make("regym/TextWorld-v0") for _ in range(2)]
    expert = regym.rollout(envs, ExpertAgent(), episodes=12)
    assert sum(t.success for t in expert) / len(expert) >= 0.95
    assert all(abs(t.total_reward - 1.0) < 1e-9 for t in expert)
    assert sum(t.invalid_actions for t in expert) == 0  # every expert move is admissible (case included)
    random = regym.rollout([gym.make("regym/TextWorld-v0", max_turns=15)], RandomAgent(seed=0), episodes=12)
    assert sum(t.success for t in random) < sum(t.success for t in expert)


def test_out_of_distribution_games_are_larger():
    sizes = {}
    for split in ("id", "ood"):
        env = gym.make("regym/TextWorld-v0", split=split)
        lengths = []
        for seed in range(3):
            _, info = env.reset(seed=seed)
            trajectory = regym.rollout(env, ExpertAgent(), seeds=[seed])[0]
            assert trajectory.success
            lengths.append(trajectory.num_turns)
        sizes[split] = np.mean(lengths)
        env.close()
    assert sizes["ood"] > sizes["id"]


def test_max_turns_truncates():
    env = gym.make("regym/TextWorld-v0", max_turns=2)
    env.reset(seed=0)
    assert env.step("look")[3] is False
    _, _, terminated, truncated, _ = env.step("look")
    assert truncated and not terminated


def test_fuzz_garbage_actions_never_raise_or_hang(env):
    rng = np.random.default_rng(0)
    alphabet = string.printable + "é漢字🙂\u202e\x00\x1b\x7f"
    garbage = ["", " ", "\n\n", "a" * 10_000, "Action:", "{}", "{\"content\": 3}", "x" * 100_000, "\x00" * 50]
    while len(garbage) < 1_000:
        length = int(rng.integers(0, 300))
        garbage.append("".join(rng.choice(list(alphabet), size=length)))
    env.reset(seed=1)
    for action in garbage:
        observation, reward, terminated, truncated, info = env.step(action)
        assert isinstance(observation, str) and np.isfinite(reward)
        if terminated or truncated:
            env.reset(seed=1)
    assert info["invalid_action"] in (True, False)


def test_clean_feedback_strips_banner_and_status():
    raw = "\n\n  ________\n |  $$$$ |\n\nWelcome home!\n\n-= Kitchen =-\nA kitchen.\n\n>   -= Kitchen =-0/1"
    assert clean_feedback(raw) == "Welcome home!\n\n-= Kitchen =-\nA kitchen."


def test_dense_reward_pays_walkthrough_progress_and_telescopes():
    env = gym.make("regym/TextWorld-v0", dense_reward=True, max_turns=20)
    expert = regym.rollout(env, ExpertAgent(), seeds=[0])[0]
    assert expert.success and abs(expert.total_reward - 1.0) < 1e-9
    assert all(turn.reward > 0 for turn in expert.turns)  # every expert move is progress
    for seed in range(20):  # a game whose first room has an exit off the walkthrough
        _, info = env.reset(seed=seed)
        exits = [a for a in info["admissible_actions"] if a.startswith("go ") and a != info["expert_action"]]
        if exits:
            break
    away = exits[0]
    _, detour, *_ = env.step(away)
    assert detour < 0  # moving off the walkthrough costs
    _, back, *_ = env.step({"north": "go south", "south": "go north", "east": "go west", "west": "go east"}[away[3:]])
    assert abs(detour + back) < 1e-9  # and undoing it pays the cost back
    sparse = regym.rollout(gym.make("regym/TextWorld-v0"), ExpertAgent(), seeds=[0])[0]
    assert [turn.reward for turn in sparse.turns][:-1] == [0.0] * (len(sparse.turns) - 1)
