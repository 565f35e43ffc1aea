"""ToolUse's difficulty levels, its near-OOD split and its dense training reward (issue 30)."""

import hashlib
import json

import pytest

from regym.envs import list_envs
from regym.envs.tool_use import ToolUseEnv
from regym.envs.tool_use.levels import TOOL_USE_LEVELS
from regym.envs.tool_use.tasks import ID_TEMPLATES, OOD_TEMPLATES, make_task

OLD_SPLIT_HASHES = {"in_distribution": "bba43ec2272f853e", "out_of_distribution": "365f21ea47c4b6d0"}
"""The first 40 seeded tasks of the splits that existed before levels (question, first expert call, tools), hashed
before the levels were added: levels must not change a task a user has already played."""


def _split_hash(split: str) -> str:
    env, digest = ToolUseEnv(split=split), hashlib.sha256()
    for seed in range(40):
        observation, info = env.reset(seed=seed)
        digest.update(json.dumps([info["task_id"], observation, info["expert_action"], info["required_tools"]]).encode())
    env.close()
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("split", sorted(OLD_SPLIT_HASHES))
def test_old_splits_play_the_same_tasks(split):
    assert _split_hash(split) == OLD_SPLIT_HASHES[split]


def test_levels_map_the_three_splits_and_are_listed():
    assert list(TOOL_USE_LEVELS.levels) == ["single_call.1", "chained_calls.1", "composed_calls.1", "composed_calls.2",
                                            "unseen_combinations.1"]
    assert TOOL_USE_LEVELS.levels["composed_calls.1"].settings["templates"] == tuple(ID_TEMPLATES)
    assert TOOL_USE_LEVELS.levels["unseen_combinations.1"].settings["templates"] == tuple(OOD_TEMPLATES)
    assert TOOL_USE_LEVELS.split_of("composed_calls.2") == "near_out_of_distribution"
    listing = next(listing for listing in list_envs() if listing.short_name == "tooluse")
    assert "near_out_of_distribution" in listing.splits
    assert dict(listing.level_splits)["in_distribution"] == ("composed_calls.1",)
    assert dict(listing.levels)["single_call.1"].startswith("one tool call")


@pytest.mark.parametrize("level", list(TOOL_USE_LEVELS.levels))
def test_each_level_is_played_and_won_by_the_expert_in_as_many_calls_as_it_says(level):
    env = ToolUseEnv(level=level)
    calls = []
    for seed in range(6):
        _, info = env.reset(seed=seed)
        assert info["task_level"] == level
        turns = 0
        while True:
            _, _, terminated, truncated, info = env.step(info["expert_action"])
            turns += 1
            if terminated or truncated:
                break
        assert info["won"], info["task_id"]
        calls.append(turns - 1)
    env.close()
    if level == "single_call.1":
        assert set(calls) == {1}
    elif level == "chained_calls.1":
        assert set(calls) == {2}
    else:
        assert min(calls) >= 2


def test_near_ood_offers_every_tool_family_on_worlds_of_its_own():
    near = make_task("kv_calendar_all_tools-00007", distractor_families=0)
    same_question = make_task("kv_calendar-00007", distractor_families=0)
    assert len(near.offered) == 6 and len(same_question.offered) == 2
    assert near.question != same_question.question  # its own task id: its own world
    env = ToolUseEnv(split="near")
    _, info = env.reset(seed=3)
    assert info["task_id"].split("-")[0].endswith("_all_tools") and info["task_level"] == "composed_calls.2"
    with pytest.raises(ValueError, match="another split or level"):
        env.reset(options={"task_id": "kv_calendar-00001"})
    env.close()


def test_unknown_level_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown ToolUse level 'single_call.9'; known levels: single_call.1"):
        ToolUseEnv(level="single_call.9")


def _rewards(env: ToolUseEnv, replies: list[str]) -> list[float]:
    return [env.step(reply)[1] for reply in replies]


def test_dense_reward_orders_invalid_wrong_tool_right_tool_right_arguments_below_a_win():
    env = ToolUseEnv(level="single_call.1", dense_reward=True, distractor_families=5)  # every tool offered
    _, info = env.reset(options={"task_id": "kv_price-00011"})
    right_call = info["expert_action"]
    arguments = json.loads(right_call)["arguments"]
    assert _rewards(env, ["{not json"]) == [0.0]  # an invalid call earns nothing
    wrong_tool = _rewards(env, ['{"name": "final_answer_typo", "arguments": {}}',
                                '{"name": "calculate", "arguments": {"expression": "1 + 1"}}'])
    assert wrong_tool == [0.0, pytest.approx(0.10)]  # unknown tool: invalid; a valid call of the wrong tool: 0.10
    env.reset(options={"task_id": "kv_price-00011"})
    right_tool = _rewards(env, [json.dumps({"name": "kv_get", "arguments": {"key": "product/none/price_usd"}})])
    assert right_tool == [pytest.approx(0.25)]  # valid and the right tool, but not the right result
    env.reset(options={"task_id": "kv_price-00011"})
    right_arguments = _rewards(env, [json.dumps({"name": "kv_get", "arguments": arguments})] * 2)
    assert right_arguments == [pytest.approx(0.5), 0.0]  # paid once; the plan is worth 0.5 at most
    _, win, terminated, _, info = env.step(env.unchanged_info()["expert_action"])  # "Answer: <the answer>"
    assert terminated and info["won"] and 0.5 + win == pytest.approx(1.0)  # a win sums to exactly 1
    env.reset(options={"task_id": "kv_price-00011"})
    assert sum(_rewards(env, [right_call, "Answer: -1"])) == pytest.approx(0.5)  # a wrong answer keeps the credit
    env.close()


def test_dense_reward_splits_its_half_across_a_longer_plan_and_never_goes_negative():
    env = ToolUseEnv(level="composed_calls.1", dense_reward=True)
    _, info = env.reset(seed=5)
    rewards = []
    while True:
        _, reward, terminated, truncated, info = env.step(info["expert_action"])
        rewards.append(reward)
        if terminated or truncated:
            break
    assert all(reward > 0 for reward in rewards) and sum(rewards[:-1]) == pytest.approx(0.5)
    assert sum(rewards) == pytest.approx(1.0)
    plain = ToolUseEnv(level="composed_calls.1")
    _, info = plain.reset(seed=5)
    assert plain.step(info["expert_action"])[1] == 0.0  # off by default: evaluation pays only the answer
    env.close()
    plain.close()


@pytest.mark.slow
def test_two_rl_steps_on_the_embedded_default_move_the_policy_on_a_nonzero_dense_reward(tmp_path):
    """About 2 minutes on 2 cores once the tiny ToolUse pipeline is cached (seed 0 measured rewards 0.125, 0.061)."""
    from two_rl_steps import check_two_rl_steps

    check_two_rl_steps("tool_use", tmp_path)
