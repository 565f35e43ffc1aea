"""On-policy plasticity diagnostics: measured on exactly the tokens the policy sampled, and ASAM's
sharpness is blind to function-preserving rescalings that move the Hessian."""

from __future__ import annotations

import copy
import math
from collections import defaultdict

import gymnasium as gym
import pytest
import torch

from games import CountingGame, VowelGame
from regym.agents.llm import chat_token_ids
from regym.agents.prompts import build_messages
from regym.eval.plasticity import (
    OnPolicySettings,
    adaptive_sharpness,
    calibration_from_env,
    calibration_loss,
    collapsed_group_share,
    greedy_success,
    hessian_max_abs_eigenvalue,
    on_policy_metrics,
    play_on_policy,
    token_statistics,
)
from regym.models.testing import tiny_llama, tiny_tokenizer
from regym.rejuvenation import encode_calibration
from regym.trajectory import Trajectory, Turn
from tiny_chat import tiny_chat_model

VOWELS = "regym-test/OnPolicyVowels-v0"
COUNTING = "regym-test/OnPolicyCounting-v0"
if VOWELS not in gym.registry:
    gym.register(id=VOWELS, entry_point=VowelGame)
if COUNTING not in gym.registry:
    gym.register(id=COUNTING, entry_point=CountingGame)

SETTINGS = OnPolicySettings(tasks=4, samples=4, max_new_tokens=6, sharpness_examples=3, hessian_iterations=3,
                            perturbation_samples=2, num_envs=8)


@pytest.fixture(scope="module")
def policy():
    torch.set_num_threads(1)
    return tiny_chat_model(seed=0)


@pytest.fixture(scope="module")
def run(policy):
    return play_on_policy(*policy, VOWELS, SETTINGS)


def turn_prompt(trajectory: Trajectory, index: int) -> list[dict[str, str]]:
    """The messages the policy answered at turn ``index``, rebuilt from the logged trajectory."""
    before = trajectory.turns[:index]
    partial = copy.copy(trajectory)
    partial.turns = [Turn(**vars(turn)) for turn in before]
    partial.observation = trajectory.turns[index].observation
    partial.info = before[-1].info if before else trajectory.reset_info
    return build_messages(partial)


def test_scored_tokens_are_exactly_the_sampled_actions(run, policy):
    tokenizer = policy[1]
    by_turn = {(turn.key, turn.turn): turn.example for turn in run.turns}
    played = [(record["key"], index, Trajectory.from_dict(record["trajectory"]))
              for record in run.records for index in range(record["turns"])]
    assert len(run.records) == 16 and sorted(by_turn) == sorted((key, index) for key, index, _ in played)
    for key, index, trajectory in played:
        example = by_turn[(key, index)]
        ids, mask = example.input_ids[0], example.loss_mask[0]
        start = int(mask.long().argmax())
        assert bool(mask[start:].all()) and not bool(mask[:start].any())  # one scored span: the reply
        assert tokenizer.decode(ids[mask], skip_special_tokens=True) == trajectory.turns[index].action
        # The context is the prompt the policy was given, token for token (rebuilt here from the log).
        assert ids[:start].tolist() == chat_token_ids(tokenizer, turn_prompt(trajectory, index))
    tokens = sum(example.num_scored for example in by_turn.values())
    assert tokens == sum(record["tokens_generated"] for record in run.records)


def test_on_policy_metrics_match_their_episodes(run, policy):
    model, tokenizer = policy
    heldout = calibration_from_env(COUNTING, tokenizer, episodes=2)
    metrics = on_policy_metrics(model, tokenizer, VOWELS, SETTINGS, heldout=heldout)
    assert set(metrics) == {
        "sampled_success", "zero_signal_groups", "saturated_groups", "collapsed_groups", "onpolicy_entropy", "onpolicy_top1_prob", "onpolicy_loss",
        "onpolicy_tokens", "onpolicy_hessian_max_abs_eigenvalue", "onpolicy_hessian_converged",
        "onpolicy_hessian_relative_change", "onpolicy_perturbation_sharpness", "onpolicy_adaptive_sharpness",
        "heldout_loss", "heldout_entropy", "heldout_hessian_max_abs_eigenvalue", "heldout_hessian_converged",
        "heldout_hessian_relative_change", "heldout_adaptive_sharpness"}
    assert all(math.isfinite(value) for value in metrics.values())
    groups, wins = defaultdict(set), defaultdict(list)
    for record in run.records:  # the same seeds play the same episodes
        groups[record["task_seed"]].add(record["reward"])
        wins[record["task_seed"]].append(record["success"])
    assert metrics["saturated_groups"] == pytest.approx(sum(all(w) for w in wins.values()) / len(wins))
    assert metrics["zero_signal_groups"] == pytest.approx(sum(len(g) == 1 for g in groups.values()) / len(groups))
    assert metrics["collapsed_groups"] == collapsed_group_share(run.records) <= metrics["zero_signal_groups"]
    assert metrics["sampled_success"] == pytest.approx(sum(r["success"] for r in run.records) / len(run.records))
    examples = [turn.example for turn in run.turns]
    stats = token_statistics(model, examples)
    assert metrics["onpolicy_tokens"] == stats["tokens"]
    assert metrics["onpolicy_entropy"] == pytest.approx(stats["entropy"], rel=1e-6)
    assert 0 < metrics["onpolicy_entropy"] <= math.log(len(tokenizer)) + 1e-4
    assert 0 < metrics["onpolicy_top1_prob"] <= 1
    # First-order ASAM step goes uphill: a positive increase, on samples and on held-out text.
    assert metrics["onpolicy_adaptive_sharpness"] > 0 and metrics["heldout_adaptive_sharpness"] > 0
    with torch.no_grad():
        assert metrics["heldout_loss"] == pytest.approx(float(calibration_loss(model, heldout)), rel=1e-5)


def test_a_deterministic_policy_has_no_learning_signal(policy):
    model, tokenizer = policy
    sharp = copy.deepcopy(model)
    with torch.no_grad():
        sharp.model.norm.weight.mul_(1e4)  # every logit × 10⁴: sampling at T = 1 is argmax
    settings = OnPolicySettings(tasks=3, samples=4, max_new_tokens=6, hessian_iterations=0, perturbation_samples=0,
                                sharpness_examples=2)
    metrics = on_policy_metrics(sharp, tokenizer, VOWELS, settings)
    assert metrics["zero_signal_groups"] == 1.0
    assert metrics["onpolicy_entropy"] < 1e-3 and metrics["onpolicy_top1_prob"] > 0.999
    assert "onpolicy_hessian_max_abs_eigenvalue" not in metrics and "onpolicy_perturbation_sharpness" not in metrics
    assert greedy_success(sharp, tokenizer, VOWELS, 3, max_new_tokens=6) == metrics["sampled_success"]


def test_hotter_sampling_spreads_the_distribution(run, policy):
    examples = [turn.example for turn in run.turns]
    cold, hot = (token_statistics(policy[0], examples, temperature=t) for t in (1.0, 2.0))
    assert hot["entropy"] > cold["entropy"] and hot["top1_prob"] < cold["top1_prob"]
    assert hot["sft_loss"] == cold["sft_loss"]  # the loss stays the temperature-1 NLL
    with pytest.raises(ValueError, match="temperature"):
        token_statistics(policy[0], examples, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        play_on_policy(*policy, VOWELS, OnPolicySettings(temperature=0.0))


def test_adaptive_sharpness_ignores_function_preserving_rescaling():
    torch.set_num_threads(1)
    calib = encode_calibration(tiny_tokenizer(), [{"prompt": "where is the key", "response": "the key is in the box"},
                                                  {"prompt": "open the door", "response": "go north and open it"}])
    model = tiny_llama(seed=1)
    before = [p.detach().clone() for p in model.parameters()]
    asam = adaptive_sharpness(model, calib, radius=0.2)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # restored exactly
    assert asam == adaptive_sharpness(model, calib, radius=0.2) > 0  # no randomness
    rescaled = copy.deepcopy(model)
    c = 3.0
    with torch.no_grad():  # up rows × c, down columns ÷ c (SwiGLU is linear in up); V ÷ c, O × c (attention is linear in V)
        for layer in rescaled.model.layers:
            layer.mlp.up_proj.weight[:40].mul_(c)
            layer.mlp.down_proj.weight[:, :40].div_(c)
            layer.self_attn.v_proj.weight.div_(c)
            layer.self_attn.o_proj.weight.mul_(c)
        assert float(calibration_loss(rescaled, calib)) == pytest.approx(float(calibration_loss(model, calib)),
                                                                         rel=1e-6)
    assert adaptive_sharpness(rescaled, calib, radius=0.2) == pytest.approx(asam, rel=1e-4)
    hessian, moved = (hessian_max_abs_eigenvalue(m, calib, iterations=8).value for m in (model, rescaled))
    assert abs(moved - hessian) > 0.2 * abs(hessian)


def _record(task: int, won: bool, actions: list[str], reward: float | None = None) -> dict:
    return {"task_seed": task, "success": won, "reward": (1.0 if won else -1.0) if reward is None else reward,
            "trajectory": {"turns": [{"action": action} for action in actions]}}


def test_collapsed_groups_leave_out_tasks_solved_by_varied_samples():
    records = [
        _record(0, True, ["\\boxed{4}"]), _record(0, True, ["2 + 2 = 4, \\boxed{4}"]),    # solved, varied: saturation
        _record(1, True, ["\\boxed{7}"]), _record(1, True, ["\\boxed{7}"]),                # solved, alike: collapse
        _record(2, False, ["\\boxed{1}"]), _record(2, False, ["\\boxed{2}"]),              # none won: collapse
        _record(3, True, ["\\boxed{5}"]), _record(3, False, ["\\boxed{6}"]),               # signal
    ]
    assert collapsed_group_share(records) == 0.5
    with pytest.raises(ValueError, match="no episodes"):
        collapsed_group_share([])
