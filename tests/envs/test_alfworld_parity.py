"""regym's generated ALFWorld games play the same through ALFWorld's own loader and through ALFWorldEnv.

ALFWorld's loader is ``textworld.gym`` with ALFWorld's wrappers, as ``AlfredTWEnv.init_env``
builds it for evaluation (no domain randomisation, no expert wrapper). Both play the same
seeded mix of random moves, expert moves and an inadmissible command; every step must give
the same observation, admissible commands, score and end.
"""

from __future__ import annotations

import numpy as np
import pytest

from regym.envs.alfworld import ALFWorldEnv, tasks
from regym.envs.alfworld.engine import WELCOME_BANNER, keep_argv

MAX_STEPS = 50  # ALFWorld's max_nb_steps_per_episode


def alfworld_loader(game_file: str):
    """ALFWorld's evaluation env for one game (``AlfredTWEnv.init_env`` with batch size 1)."""
    import textworld
    import textworld.gym
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    request_infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
    env_id = textworld.gym.register_games([game_file], request_infos, batch_size=1, asynchronous=False,
                                          max_episode_steps=MAX_STEPS,
                                          wrappers=[AlfredDemangler(shuffle=False), AlfredInfos])
    return textworld.gym.make(env_id)


def play_both(split: str, index: int) -> bool:
    """Play one generated game on both stacks, asserting every step matches; whether both won."""
    task_id = tasks.generated_task_id(split, index)
    ours = ALFWorldEnv(split=split, max_turns=MAX_STEPS)
    observation, info = ours.reset(options={"task_id": task_id})
    game_file = info["gamefile"]
    theirs = alfworld_loader(game_file)
    with keep_argv():
        (their_observation,), their_infos = theirs.reset()
    assert their_observation == f"{WELCOME_BANNER}\n\n{observation}"  # the only difference: the banner
    assert their_infos["admissible_commands"][0] == info["admissible_actions"]
    assert their_infos["extra.gamefile"][0] == game_file

    rng = np.random.default_rng([index, len(split)])
    detours = {int(rng.integers(0, 4)), int(rng.integers(4, 12))}
    for step in range(MAX_STEPS):
        if step == 2:
            action = "jump over the fridge"
        elif step in detours or rng.random() < 0.1:
            action = str(rng.choice(info["admissible_actions"]))
        else:
            action = info["expert_action"]
        observation, reward, terminated, truncated, info = ours.step(action)
        with keep_argv():
            (their_observation,), (their_score,), (their_done,), their_infos = theirs.step([action])
        where = f"{task_id} step {step} {action!r}"
        assert their_observation == observation, where
        assert their_infos["admissible_commands"][0] == info["admissible_actions"], where
        assert (their_score, their_infos["won"][0]) == (reward, info["won"]), where
        assert their_done == (terminated or truncated), where
        if their_done:
            return bool(info["won"])
    return False


def check_sample(games: list[tuple[str, int]]) -> None:
    played = {(split, tasks.task_type_for(index)) for split, index in games}
    assert {task_type for _, task_type in played} == set(tasks.TASK_TYPES)
    # The expert finishes every game after the detours, so each comparison runs up to ALFWorld's win.
    assert all([play_both(split, index) for split, index in games])


def test_six_games_of_every_type_are_step_identical_under_alfworlds_loader(generated_alfworld_cache):
    # Task types rotate with the index: even indices from one split, odd from the other, all six types.
    check_sample([("in_distribution" if index % 2 == 0 else "out_of_distribution", index) for index in range(6)])


@pytest.mark.slow
@pytest.mark.timeout(1800)  # generates its games from a cold cache: 10-25 min on 2 busy cores
def test_120_games_of_both_splits_are_step_identical_under_alfworlds_loader(generated_alfworld_cache):
    check_sample([(split, index) for split in ("in_distribution", "out_of_distribution") for index in range(60)])
