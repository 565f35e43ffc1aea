"""WebShop's difficulty levels, its near-OOD split, task id checks and its dense training reward (issue 30)."""

import hashlib
import json

import pytest

from regym.envs import list_envs
from regym.envs.webshop import WebShopEnv
from regym.envs.webshop.catalog import build_catalog
from regym.envs.webshop.instructions import make_goal, parse_task_id, task_ids
from regym.envs.webshop.levels import WEBSHOP_LEVELS
from regym.envs.webshop.reward import get_reward

OLD_SPLIT_HASHES = {"in_distribution": "6871d0f38b798497", "out_of_distribution": "ef0708c2756f4a6f"}
"""The first 40 seeded tasks of the splits that existed before levels (page, target, instruction, expert action),
hashed before the levels were added."""


def _play(env: WebShopEnv, seed: int) -> tuple[list[float], dict]:
    _, info = env.reset(seed=seed)
    rewards = []
    while True:
        _, reward, terminated, truncated, info = env.step(info["expert_action"])
        rewards.append(reward)
        if terminated or truncated:
            return rewards, info


@pytest.mark.parametrize("split", sorted(OLD_SPLIT_HASHES))
def test_old_splits_play_the_same_tasks(split):
    env, digest = WebShopEnv(split=split), hashlib.sha256()
    for seed in range(40):
        observation, info = env.reset(seed=seed)
        goal = make_goal(info["task_id"])
        digest.update(json.dumps([info["task_id"], observation, goal.asin, goal.instruction,
                                  info["expert_action"]]).encode())
    env.close()
    assert digest.hexdigest()[:16] == OLD_SPLIT_HASHES[split]


def test_levels_map_the_three_splits_and_are_listed():
    assert list(WEBSHOP_LEVELS.levels) == ["title.1", "attributes.1", "options.1", "options.2", "unseen.1"]
    assert WEBSHOP_LEVELS.split_levels() == {"in_distribution": ("options.1",),
                                             "near_out_of_distribution": ("options.2",),
                                             "out_of_distribution": ("unseen.1",)}
    listing = next(listing for listing in list_envs() if listing.short_name == "webshop")
    assert "near_out_of_distribution" in listing.splits and dict(listing.levels)["title.1"].startswith("the product")


def test_each_level_writes_the_instructions_it_says():
    title = make_goal("title.1-00004")
    assert title.instruction.endswith(build_catalog().get(title.asin).title.lower()) and title.options == {}
    assert all(make_goal(t).options == {} for t in task_ids("attributes.1")[:50])
    near = [make_goal(t) for t in task_ids("near_out_of_distribution")[:50]]
    ids = [make_goal(t) for t in task_ids("in_distribution")[:50]]
    assert all(len(goal.attributes) == 3 for goal in near)
    assert sum(len(goal.attributes) for goal in ids) < sum(len(goal.attributes) for goal in near)
    assert parse_task_id("near-00003") == ("near_out_of_distribution", 3)
    assert parse_task_id("title.1-00003") == ("title.1", 3)


@pytest.mark.parametrize("level", list(WEBSHOP_LEVELS.levels))
def test_the_expert_wins_every_level(level):
    env = WebShopEnv(level=level)
    for seed in range(4):
        rewards, info = _play(env, seed)
        assert info["won"] and info["task_level"] == level and sum(rewards) == 1.0
    env.close()


def test_unknown_or_foreign_task_ids_are_refused_with_what_exists():
    env = WebShopEnv()
    with pytest.raises(ValueError, match=r"unknown WebShop task id 'shop-7'; task ids are 'id-<n>' \(n < 2000\)"):
        env.reset(options={"task_id": "shop-7"})
    with pytest.raises(ValueError, match="'id' has tasks 0 to 1999"):
        env.reset(options={"task_id": "id-02000"})
    with pytest.raises(ValueError, match="belongs to another split or level, not split 'in_distribution'"):
        env.reset(options={"task_id": "near-00001"})
    with pytest.raises(ValueError, match="unknown WebShop level 'title.7'"):
        WebShopEnv(level="title.7")
    env.close()


def test_dense_reward_pays_the_score_as_it_rises_and_a_win_sums_to_one():
    env = WebShopEnv(dense_reward=True)
    rewards, info = _play(env, seed=2)
    assert info["won"] and sum(rewards) == pytest.approx(1.0)
    assert all(reward >= 0 for reward in rewards) and 0 < sum(rewards[:-1]) <= 0.5
    env.reset(seed=2)
    assert env.step("click[nothing here]")[1] == 0.0  # an invalid action earns nothing
    env.step(f"search[{env.goal.search_query}]")
    _, item_reward, *_ = env.step(env.unchanged_info()["expert_action"])  # open the target: options not chosen
    assert item_reward == 0.0  # the results page already paid that product's score without options
    plain = WebShopEnv()
    plain_rewards, _ = _play(plain, seed=2)
    assert plain_rewards[:-1] == [0.0] * (len(plain_rewards) - 1) and plain_rewards[-1] == 1.0
    env.close()
    plain.close()


def test_dense_reward_keeps_a_partial_purchase_below_a_win_and_never_below_zero():
    env = WebShopEnv(dense_reward=True)
    env.reset(seed=2)
    rewards = [env.step(f"search[{env.goal.search_query}]")[1], env.step(env.unchanged_info()["expert_action"])[1]]
    _, last, terminated, _, info = env.step("click[buy now]")  # the target, bought without choosing its options
    score = get_reward(env.catalog.get(env.goal.asin), env.goal, {}).total
    assert terminated and not info["won"] and 0 < score < 1 and last >= 0
    assert sum(rewards) + last == pytest.approx(score)  # the purchase pays the rest of its own score
    env.close()


@pytest.mark.slow
def test_two_rl_steps_on_the_embedded_default_move_the_policy_on_a_nonzero_dense_reward(tmp_path):
    """A few minutes on 2 cores once the tiny WebShop pipeline is cached."""
    from two_rl_steps import check_two_rl_steps

    check_two_rl_steps("webshop", tmp_path)
