"""The token view of multi-turn rollouts: masks decode to the right text, log-probs are the policy's."""

import pytest
import torch

from games import BrokenResets, CountingGame
from regym.agents.hf_policy import HFPolicy
from regym.agents.llm import Generation
from regym.agents.prompts import PromptFormat, build_messages
from regym.rl.rollout import ChatTokens, RolloutLimits, play_groups, turn_spans
from regym.trajectory import Trajectory
from tiny_chat import tiny_chat_model

torch.set_num_threads(1)


class ScriptedPolicy:
    """Plays fixed replies (each closed with the end-of-turn token), scored by a real model."""

    name = "scripted"

    def __init__(self, model, tokenizer, replies):
        self.model, self.tokenizer, self.replies = model, tokenizer, replies

    def generate(self, prompt_ids, max_new_tokens=None):
        generations = []
        for ids in prompt_ids:
            turn = sum(1 for _ in turn_spans_of(ids, self.tokenizer))
            reply = self.replies[turn]
            reply_ids = self.tokenizer.encode(reply, add_special_tokens=False) + [self.tokenizer.eos_token_id]
            with torch.no_grad():
                logits = self.model(torch.tensor([ids + reply_ids])).logits[0].float()
            logprobs = torch.log_softmax(logits, -1)[len(ids) - 1:-1].gather(-1, torch.tensor(reply_ids)[:, None])
            generations.append(Generation(reply, reply_ids, logprobs[:, 0].tolist(), "stop"))
        return generations


def turn_spans_of(ids, tokenizer):
    assistant = tokenizer.encode("<|im_start|>assistant", add_special_tokens=False)
    return [i for i in range(len(ids)) if ids[i:i + len(assistant)] == assistant][1:]


@pytest.fixture(scope="module")
def tiny():
    return tiny_chat_model(seed=0)


def test_scripted_two_turn_episode_masks_decode_to_policy_and_env_text(tiny):
    model, tokenizer = tiny
    policy = ScriptedPolicy(model, tokenizer, ["1", "2"])
    [trajectory] = play_groups(policy, CountingGame(), options=[{"task_id": "count-2"}])
    assert trajectory.success and trajectory.num_turns == 2 and trajectory.error is None
    ids, mask = trajectory.token_ids, trajectory.loss_mask
    spans = turn_spans(mask)
    assert len(spans) == 2
    for (start, end), turn in zip(spans, trajectory.turns, strict=True):
        assert tokenizer.decode(ids[start:end], skip_special_tokens=True) == turn.action
        assert tokenizer.decode(ids[start:end]) == turn.action + "<|im_end|>"
    # The masked-out runs are exactly the env's text: the prompt, then the env turn in between.
    prompt = tokenizer.decode(ids[:spans[0][0]])
    first = build_messages(Trajectory("t", None, "", reset_info=trajectory.reset_info,
                                      observation=trajectory.turns[0].observation,
                                      info=trajectory.reset_info))
    assert prompt == tokenizer.apply_chat_template(first, add_generation_prompt=True, tokenize=False)
    env_text = tokenizer.decode(ids[spans[0][1]:spans[1][0]])
    assert env_text.startswith("\n<|im_start|>user\n1.")
    assert env_text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    # The whole sequence is the chat template of the conversation: no token was re-tokenised differently.
    conversation = build_messages(trajectory, PromptFormat())
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert tokenizer.decode(ids) + "\n" == rendered
    assert all(lp == 0.0 for lp, m in zip(trajectory.logprobs, mask, strict=True) if not m)
    assert trajectory.prompt_length == spans[0][0]


def test_sampled_logprobs_match_a_fresh_forward_pass(tiny):
    model, tokenizer = tiny
    policy = HFPolicy(model, tokenizer, temperature=0.7, max_new_tokens=6, seed=3)
    envs = [CountingGame(max_turns=3) for _ in range(3)]
    trajectories = play_groups(policy, envs, seeds=[0, 1], group_size=2,
                               limits=RolloutLimits(max_turns=3, max_new_tokens=6, max_episode_tokens=400))
    assert [t.group for t in trajectories] == [0, 0, 1, 1]
    assert trajectories[0].task_id == trajectories[1].task_id
    for trajectory in trajectories:
        assert trajectory.num_turns >= 2  # random text is invalid, so every episode runs to max_turns
        ids = torch.tensor([trajectory.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0].float() / 0.7
        fresh = torch.log_softmax(logits, -1)[:-1].gather(-1, ids[0, 1:, None])[:, 0]
        mask = torch.tensor(trajectory.loss_mask[1:], dtype=torch.bool)
        recorded = torch.tensor(trajectory.logprobs[1:])
        assert mask.sum() > 0
        assert torch.allclose(recorded[mask], fresh[mask], atol=1e-4)


def test_limits_env_errors_and_truncation(tiny):
    model, tokenizer = tiny
    crash = ScriptedPolicy(model, tokenizer, ["1", "boom", "3"])
    runs = play_groups(crash, [CountingGame(), CountingGame()], options=[{"task_id": "count-5"}], group_size=3)
    assert all(t.error and "engine crashed" in t.error and not t.success for t in runs)
    assert all(t.num_turns == 1 and len(turn_spans(t.loss_mask)) == 2 for t in runs)

    wrong = ScriptedPolicy(model, tokenizer, ["0"] * 10)
    [capped] = play_groups(wrong, CountingGame(max_turns=50), seeds=[0], limits=RolloutLimits(max_turns=4))
    assert capped.num_turns == 4 and capped.turns[-1].truncated
    assert capped.turns[-1].info["truncated_by"] == "max_turns"

    [short] = play_groups(wrong, CountingGame(max_turns=50), seeds=[0],
                          limits=RolloutLimits(max_turns=50, max_episode_tokens=120))
    assert short.turns[-1].info["truncated_by"] == "max_episode_tokens" and len(short.token_ids) <= 120


def test_chat_tokens_env_turn_text_is_template_delta(tiny):
    _, tokenizer = tiny
    chat = ChatTokens(tokenizer)
    assert chat.assistant_suffix == "<|im_end|>\n"
    stopped = tokenizer.encode("go<|im_end|>", add_special_tokens=False)
    assert chat.env_turn_text(stopped, "obs") == "\n<|im_start|>user\nobs<|im_end|>\n<|im_start|>assistant\n"
    cut = tokenizer.encode("go", add_special_tokens=False)
    assert chat.env_turn_text(cut, "obs").startswith("<|im_end|>\n<|im_start|>user\nobs")


def test_failed_resets_and_long_prompts_end_only_their_episode(tiny):
    model, tokenizer = tiny
    policy = ScriptedPolicy(model, tokenizer, ["1", "2", "3", "4", "5"])
    finished = []
    runs = play_groups(policy, [BrokenResets(), BrokenResets()], seeds=[0, 1, 13, 3], group_size=2,
                       limits=RolloutLimits(max_turns=8, max_episode_tokens=200),
                       on_done=lambda job, trajectory: finished.append(job))
    assert [t.group for t in runs] == [0, 0, 1, 1, 2, 2, 3, 3] and sorted(finished) == list(range(8))
    assert all("reset failed: OSError" in t.error for t in runs[:2])
    assert all("exceeds max_episode_tokens" in t.error for t in runs[4:6])
    assert all(t.success and t.error is None for t in runs[2:4] + runs[6:])
    for trajectory in runs[:2] + runs[4:6]:  # a failed episode still has a well-formed, fully masked token view
        assert trajectory.num_turns == 0 and trajectory.token_ids
        assert trajectory.prompt_length == len(trajectory.token_ids) == len(trajectory.logprobs)
        assert set(trajectory.loss_mask) == {0}
