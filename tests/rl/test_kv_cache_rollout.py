"""Keeping each episode's KV cache across turns changes no token and no log-prob beyond float rounding.

For context "full" the whole sequence so far is reused; for context "window" the prefix a
rebuilt prompt shares with the previous one.

Both paths feed the model the same token sequences; with the cache, the keys and values of
earlier turns come from earlier forward passes of other shapes, so logits differ by float32
rounding only (observed <= 1e-6 here). Log-probs are compared at 1e-4, the tolerance of the
fresh-forward-pass test (tests/rl/test_rl_rollout.py), and sampled tokens exactly: the private
generator draws once per step over the same batch in both paths.
"""

import pytest
import torch

from games import CountingGame
from regym.agents.hf_policy import HFPolicy
from regym.rl.rollout import RolloutLimits, TokenPolicyAgent, WindowPolicyAgent, play_groups
from regym.rollout import rollout
from tiny_chat import tiny_chat_model

torch.set_num_threads(1)
LIMITS = RolloutLimits(max_turns=5, max_new_tokens=6, max_episode_tokens=400)


@pytest.fixture(scope="module")
def tiny():
    return tiny_chat_model(seed=0)


def play(model, tokenizer, temperature, top_p, kv_cache):
    """6 episodes on 3 envs, so episodes start while others are mid-way (cached rows beside fresh ones)."""
    policy = HFPolicy(model, tokenizer, temperature=temperature, top_p=top_p, max_new_tokens=6, seed=3)
    agent = TokenPolicyAgent(policy, LIMITS, kv_cache=kv_cache)
    envs = [CountingGame(max_turns=5) for _ in range(3)]
    trajectories = rollout(envs, agent, seeds=[0, 0, 1, 1, 2, 2], on_reset=agent.on_reset, on_step=agent.on_step)
    return trajectories, agent


# Sampled runs raise the end-of-turn logit so replies stop at different lengths: rows that
# finished early (and feed padding) then sit beside rows still sampling.
@pytest.mark.parametrize(("temperature", "top_p", "stop_bias"), [(0.0, 1.0, 0.0), (0.8, 1.0, 3.0), (1.0, 0.9, 3.0)])
def test_rollout_with_the_kv_cache_equals_the_rollout_without(tiny, temperature, top_p, stop_bias):
    model, tokenizer = tiny
    bias = torch.zeros(len(tokenizer))
    bias[tokenizer.convert_tokens_to_ids("<|im_end|>")] = stop_bias
    handle = model.lm_head.register_forward_hook(lambda module, inputs, output: output + bias)
    try:
        full, _ = play(model, tokenizer, temperature, top_p, kv_cache=False)
        cached, agent = play(model, tokenizer, temperature, top_p, kv_cache=True)
    finally:
        handle.remove()
    assert agent.cache.reused_tokens > 2 * agent.cache.prefilled_tokens  # the cache did serve the later turns
    assert len(agent.cache) == 0  # ended episodes leave nothing behind
    if stop_bias:
        cut = [turn.info.get("reply_truncated", False) for t in full for turn in t.turns]
        assert any(cut) and not all(cut)  # some replies stopped early, some ran out of budget
    for before, after in zip(full, cached, strict=True):
        assert after.token_ids == before.token_ids and after.loss_mask == before.loss_mask
        assert [turn.action for turn in after.turns] == [turn.action for turn in before.turns]
        assert torch.allclose(torch.tensor(after.logprobs), torch.tensor(before.logprobs), atol=1e-4)


def test_cached_generate_prefills_only_the_new_tokens_and_survives_a_diverged_entry(tiny):
    model, tokenizer = tiny
    first = [tokenizer.encode("Count to 3.", add_special_tokens=False),
             tokenizer.encode("go north, open door, take key", add_special_tokens=False)]
    policy = HFPolicy(model, tokenizer, temperature=0, max_new_tokens=5, batch_size=1)
    cache = policy.prefix_cache()
    replies = policy.generate(first, cache=cache, keys=["a", "b"])
    assert cache.prefilled_tokens == sum(map(len, first)) and cache.reused_tokens == 0
    env_text = tokenizer.encode(" Wrong number.", add_special_tokens=False)
    second = [first[0] + replies[0].token_ids + env_text,
              first[1][:3] + env_text,  # "b" diverges after 3 tokens: only those can be reused
              env_text]  # a new conversation, batched with cached ones
    with_cache = policy.generate(second, cache=cache, keys=["a", "b", "c"])
    without = HFPolicy(model, tokenizer, temperature=0, max_new_tokens=5).generate(second)
    assert [g.token_ids for g in with_cache] == [g.token_ids for g in without]
    for cached, fresh in zip(with_cache, without, strict=True):
        assert torch.allclose(torch.tensor(cached.logprobs), torch.tensor(fresh.logprobs), atol=1e-4)
    # "a" held its prompt and its reply but the last sampled token (never fed back), "b" its first 3 tokens.
    assert cache.reused_tokens == len(first[0]) + len(replies[0].token_ids) - 1 + 3
    cache.keep_only(["a"])
    assert "a" in cache and "b" not in cache and len(cache) == 1


def test_play_groups_keeps_the_cache_by_default_and_matches_a_fresh_forward_pass(tiny):
    model, tokenizer = tiny
    policy = HFPolicy(model, tokenizer, temperature=0.7, max_new_tokens=6, seed=3)
    [trajectory] = play_groups(policy, CountingGame(max_turns=5), seeds=[4], limits=LIMITS)
    assert trajectory.num_turns >= 2
    ids = torch.tensor([trajectory.token_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].float() / 0.7
    fresh = torch.log_softmax(logits, -1)[:-1].gather(-1, ids[0, 1:, None])[:, 0]
    mask = torch.tensor(trajectory.loss_mask[1:], dtype=torch.bool)
    assert torch.allclose(torch.tensor(trajectory.logprobs[1:])[mask], fresh[mask], atol=1e-4)


def play_window(model, tokenizer, kv_cache):
    """4 window-context episodes on 3 envs: every training row in job order, and the agent."""
    policy = HFPolicy(model, tokenizer, temperature=0.8, max_new_tokens=6, seed=5)
    agent = WindowPolicyAgent(policy, history_turns=1, limits=LIMITS, kv_cache=kv_cache)
    rows = {}

    def done(job, trajectory):
        rows[job] = agent.release(trajectory)

    rollout([CountingGame(max_turns=50) for _ in range(3)], agent, seeds=[0, 0, 1, 1], on_reset=agent.on_reset,
            on_step=agent.on_step, on_done=done)
    return [row for job in sorted(rows) for row in rows[job]], agent


def test_window_rollout_reuses_the_shared_prefix_and_equals_the_rollout_without(tiny):
    model, tokenizer = tiny
    full, _ = play_window(model, tokenizer, kv_cache=False)
    cached, agent = play_window(model, tokenizer, kv_cache=True)
    assert len(full) == 4 * LIMITS.max_turns  # random text is wrong: every episode runs to max_turns
    assert agent.cache.reused_tokens > agent.cache.prefilled_tokens and len(agent.cache) == 0
    for before, after in zip(full, cached, strict=True):
        assert (after.prompt_ids, after.completion_ids) == (before.prompt_ids, before.completion_ids)
        assert torch.allclose(torch.tensor(after.logprobs), torch.tensor(before.logprobs), atol=1e-4)
        ids = torch.tensor([after.prompt_ids + after.completion_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(after.prompt_ids) - 1:-1].float() / 0.8
        fresh = torch.log_softmax(logits, -1).gather(-1, ids[0, len(after.prompt_ids):, None])[:, 0]
        assert torch.allclose(torch.tensor(after.logprobs), fresh, atol=1e-4)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_chat_with_reused_prefixes_plays_the_same_episodes_and_prefills_less(tiny, temperature):
    """``HFPolicy(reuse_prefixes=True)`` (rl-eval's and rl-train's evaluations): the evaluator's chat path
    plays the same episodes, with same-opening episodes side by side, and each later turn prefills only its new text."""
    from regym.agents.llm import LLMAgent

    model, tokenizer = tiny
    played = {}
    for reuse in (False, True):
        policy = HFPolicy(model, tokenizer, temperature=temperature, max_new_tokens=6, seed=3, reuse_prefixes=reuse)
        envs = [CountingGame(max_turns=5) for _ in range(3)]
        trajectories = rollout(envs, LLMAgent(policy), seeds=[0, 0, 1, 1, 2, 2])
        played[reuse] = ([[turn.action for turn in t.turns] for t in trajectories], policy.conversations)
    assert played[True][0] == played[False][0] and played[False][1] is None
    cache = played[True][1]
    assert cache.reused_tokens > cache.prefilled_tokens  # later turns extend their last prompt
    assert len(cache) <= 3  # only the conversations of the last call are kept
