"""The base class's contract, on a tiny counting game defined here."""

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from games import CountingGame
from regym.agents import ExpertAgent, RandomAgent
from regym.envs.actions import MAX_REPLY_CHARS
from regym.rollout import rollout


def test_check_env_passes():
    check_env(CountingGame(), skip_render_check=True)


def test_same_seed_same_task():
    env = CountingGame()
    first = env.reset(seed=7)
    assert env.reset(seed=7) == first


def test_truncation_at_max_turns_and_penalty():
    env = CountingGame(max_turns=2, invalid_action_penalty=0.5)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step("wrong")
    assert reward == -0.5 and info["invalid_action"] and not truncated
    _, _, terminated, truncated, info = env.step("")
    assert truncated and not terminated and "Nothing happens" in env.render()
    with pytest.raises(RuntimeError, match="reset"):
        env.step("1")


def test_reply_over_the_cap_is_a_clean_invalid_step():
    env = CountingGame(invalid_action_penalty=0.5)
    env.reset(options={"task_id": "count-2"})
    observation, reward, terminated, truncated, info = env.step("1" + " " * MAX_REPLY_CHARS)
    assert info["invalid_action"] and reward == -0.5 and not (terminated or truncated)
    assert f"{MAX_REPLY_CHARS:,}" in observation and info["turn"] == 1
    assert not env.step("1")[4]["invalid_action"]


def test_rollout_expert_wins_random_rarely_and_batches():
    envs = [CountingGame(max_turns=6) for _ in range(3)]
    expert = rollout(envs, ExpertAgent(), episodes=8)
    assert all(t.success for t in expert) and [t.seed for t in expert] == list(range(8))
    assert all(t.turns[0].observation.startswith("Count to") for t in expert)
    randoms = rollout(envs, RandomAgent(seed=1), episodes=20)
    assert sum(t.success for t in randoms) < 20


def test_env_error_ends_only_that_episode():
    class Boom:
        name = "boom"

        def act(self, trajectories):
            return ["boom" if t.seed == 1 else t.info["expert_action"] for t in trajectories]

    results = rollout([CountingGame(), CountingGame()], Boom(), episodes=4)
    assert results[1].error and not results[1].success
    assert all(results[i].success for i in (0, 2, 3))


def test_registered_ids_are_known_to_gymnasium():
    import regym  # noqa: F401

    assert "regym/TextWorld-v0" in gym.registry


CONTROL_REPLIES = [
    ("\x1b[31mred\x1b[0m text", "red text"),
    ("clear\x1b[2J\x1b[H screen", "clear screen"),
    ("\x1b]0;owned title\x07title", "title"),
    ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
    ("over\rwrite", "overwrite"),
    ("nul\x00bell\x07back\x08del\x7fc1\x9bend", "nulbellbackdelc1end"),
    ("keeps\ttabs\nand lines, é and 日本", "keeps\ttabs\nand lines, é and 日本"),
]


@pytest.mark.parametrize("reply,shown", CONTROL_REPLIES)
def test_observations_carry_no_control_characters_but_newline_and_tab(reply, shown):
    from games import EchoGame

    env = EchoGame()
    observation, _ = env.reset(seed=0)
    assert observation == "Say anything.\n"
    observation = env.step(reply)[0]
    assert observation == shown and env.render() == shown
