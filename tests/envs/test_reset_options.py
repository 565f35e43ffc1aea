"""reset() with bad arguments: a clear error naming the argument, and an env that still works after."""

import gymnasium as gym
import numpy as np
import pytest

import regym  # noqa: F401 - registers the env ids
from games import CountingGame

ENV_IDS = ["regym/TextWorld-v0", "regym/ALFWorld-v0", "regym/Math-v0", "regym/ToolUse-v0", "regym/WebShop-v0"]
BAD_OPTIONS = ["x", ["task_id"], 3, ("task_id", "x"), b"task_id"]


@pytest.fixture
def make_env():
    made = []

    def make(env_id):
        made.append(gym.make(env_id))
        return made[-1]

    yield make
    for env in made:
        env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_options_that_are_not_a_mapping_raise_type_error_naming_options(make_env, env_id):
    env = make_env(env_id)
    for options in BAD_OPTIONS:
        with pytest.raises(TypeError, match=r"\boptions\b"):
            env.reset(options=options)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_bad_seeds_raise_an_error_naming_seed(make_env, env_id):
    env = make_env(env_id)
    for seed, error in [("1", TypeError), (1.5, TypeError), (True, TypeError), ([1], TypeError), (-1, ValueError)]:
        with pytest.raises(error, match=r"\bseed\b"):
            env.reset(seed=seed)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_numpy_integer_seeds_play_the_same_task_as_int_seeds(make_env, env_id):
    env = make_env(env_id)
    assert env.reset(seed=np.int64(3)) == env.reset(seed=3)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_a_failed_reset_leaves_the_env_working(make_env, env_id):
    env = make_env(env_id)
    first, info = env.reset(seed=0)
    task_id = info["task_id"]
    env.step(info["expert_action"])

    with pytest.raises(TypeError, match="options"):  # refused before anything changed: the episode goes on
        env.reset(options="x")
    _, _, _, _, info = env.step(info["expert_action"])
    assert info["turn"] == 2 and info["task_id"] == task_id

    with pytest.raises(ValueError):  # the family's own hook fails: no half-started episode to step
        env.reset(options={"task_id": "no-such-task"})
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        env.step("look")

    again, info = env.reset(seed=0)
    assert again == first and info["task_id"] == task_id
    _, _, _, _, info = env.step(info["expert_action"])
    assert info["turn"] == 1 and not info["invalid_action"]


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("bad_reset", [{"options": "x"}, {"options": {"task_id": "no-such-task"}}, {"seed": "0"}],
                         ids=["options not a dict", "unknown task id", "seed not an int"])
def test_a_failed_first_reset_leaves_the_env_working(make_env, env_id, bad_reset):
    """The first reset of a ``gym.make`` env goes through Gymnasium's PassiveEnvChecker."""
    env = make_env(env_id)
    with pytest.raises((TypeError, ValueError)):
        env.reset(**bad_reset)
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        env.step("look")
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(info["expert_action"])
    assert info["turn"] == 1 and not info["invalid_action"]


def test_a_reset_whose_hook_fails_starts_no_episode():
    env = CountingGame()
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.reset(options={"task_id": "count-many"})
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        env.step("1")
    _, info = env.reset(options={"task_id": "count-2"})
    assert env.step("1")[4]["turn"] == 1
