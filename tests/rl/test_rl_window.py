"""The window context strategy: one training row per policy turn, token-exact with what the policy saw."""

import gymnasium as gym
import pytest
import torch
from safetensors.torch import load_file

from games import BrokenResets, CountingGame
from regym.agents.hf_policy import HFPolicy
from regym.agents.llm import Generation, chat_token_ids
from regym.agents.prompts import (
    PromptFormat,
    build_messages,
    format_observation,
    window_messages,
    without_actions,
)
from regym.envs.actions import ParsedAction
from regym.envs.base import Outcome, TextEnv
from regym.rl.advantages import step_advantages, turn_advantages
from regym.rl.config import RLConfig
from regym.rl.rollout import RolloutLimits, play_window_groups
from regym.rl.train import read_jsonl, train
from regym.trajectory import Trajectory
from tiny_chat import tiny_chat_model

torch.set_num_threads(1)


class PatienceGame(TextEnv):
    """Task "wait-N" lasts N turns whatever the replies; each reply of odd length pays 1/N (won: a one-turn
    task paid). Episodes of one batch differ in length and reward, and a group's in reward."""

    def _task_id_for(self, rng):
        return f"wait-{int(rng.integers(1, 4))}"

    def _begin(self, task_id):
        self.turns, self.left = int(task_id.split("-")[1]), int(task_id.split("-")[1])
        return Outcome("Wait.")

    def parse(self, text):
        return ParsedAction(text)

    def _act(self, action):
        self.left -= 1
        reward = (len(action) % 2) / self.turns
        done = self.left == 0
        return Outcome("Wait.", reward=reward, terminated=done, won=done and self.turns == 1 and reward > 0)


ENV_ID = "regym-test/Patience-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=PatienceGame)


class RecordingPolicy:
    """An ``HFPolicy`` that keeps every (prompt ids, generation) it was asked for."""

    def __init__(self, policy):
        self.policy, self.tokenizer, self.name = policy, policy.tokenizer, "recording"
        self.calls: list[tuple[list[int], Generation]] = []

    def generate(self, prompt_ids, max_new_tokens=None):
        generations = self.policy.generate(prompt_ids, max_new_tokens=max_new_tokens)
        self.calls.extend((list(ids), generation) for ids, generation in zip(prompt_ids, generations, strict=True))
        return generations


@pytest.fixture(scope="module")
def tiny():
    return tiny_chat_model(seed=0)


def conversation_at(trajectory: Trajectory, turn: int) -> list[dict[str, str]]:
    """``build_messages`` of the episode as it stood when the policy played ``turn``."""
    before = Trajectory(trajectory.env_id, trajectory.task_id, trajectory.split, reset_info=trajectory.reset_info,
                        turns=trajectory.turns[:turn], observation=trajectory.turns[turn].observation,
                        info=trajectory.turns[turn - 1].info if turn else trajectory.reset_info)
    return build_messages(before, PromptFormat())


def play(model, tokenizer, history_turns, *, seeds=(0, 1), group_size=2, max_turns=6, temperature=1.0, seed=3):
    policy = RecordingPolicy(HFPolicy(model, tokenizer, temperature=temperature, max_new_tokens=6, seed=seed))
    envs = [CountingGame(max_turns=50) for _ in range(3)]
    trajectories, rows = play_window_groups(policy, envs, history_turns=history_turns, seeds=list(seeds),
                                            group_size=group_size,
                                            limits=RolloutLimits(max_turns, 6, max_episode_tokens=400))
    return policy, trajectories, rows


def test_rows_decode_to_exactly_the_prompts_the_policy_saw_and_the_actions_it_took(tiny):
    model, tokenizer = tiny
    policy, trajectories, rows = play(model, tokenizer, history_turns=1)
    assert [t.group for t in trajectories] == [0, 0, 1, 1]
    calls = [(prompt, generation.token_ids) for prompt, generation in policy.calls]
    for trajectory, episode_rows in zip(trajectories, rows, strict=True):
        assert trajectory.num_turns == 6 and len(episode_rows) == 6  # random text is wrong: runs to max_turns
        for turn, row in enumerate(episode_rows):
            assert (row.prompt_ids, row.completion_ids) in calls  # the very ids it generated from, and sampled
            expected = window_messages(conversation_at(trajectory, turn), 1)
            assert tokenizer.decode(row.prompt_ids) == tokenizer.apply_chat_template(
                expected, add_generation_prompt=True, tokenize=False)
            assert tokenizer.decode(row.completion_ids, skip_special_tokens=True) == trajectory.turns[turn].action
            assert row.loss_mask == [1] * len(row.completion_ids) == [1] * len(row.logprobs)


def test_row_logprobs_match_a_fresh_forward_pass(tiny):
    model, tokenizer = tiny
    _, _, rows = play(model, tokenizer, history_turns=2, temperature=0.7, seed=5)
    for row in (row for episode_rows in rows for row in episode_rows):
        ids = torch.tensor([row.prompt_ids + row.completion_ids])
        with torch.no_grad():
            logits = model(ids).logits[0].float() / 0.7
        fresh = torch.log_softmax(logits, -1)[len(row.prompt_ids) - 1:-1].gather(
            -1, torch.tensor(row.completion_ids)[:, None])[:, 0]
        assert torch.allclose(torch.tensor(row.logprobs), fresh, atol=1e-4)


@pytest.mark.parametrize("history_turns", [0, 2])
def test_a_window_of_k_keeps_the_task_and_at_most_k_past_turns(tiny, history_turns):
    model, tokenizer = tiny
    _, trajectories, rows = play(model, tokenizer, history_turns, seeds=(0,), group_size=1)
    [trajectory], [episode_rows] = trajectories, rows
    first = trajectory.turns[0]
    for turn, row in enumerate(episode_rows):
        text = tokenizer.decode(row.prompt_ids)
        shown = text.count("<|im_start|>assistant\n") - 1  # past replies; the last one is the generation prompt
        assert shown == min(turn, history_turns + 1)  # the first exchange (the task), then the last k
        if turn:
            assert first.observation in text and f"<|im_start|>assistant\n{first.action}<|im_end|>" in text
        recent = trajectory.turns[max(1, turn - history_turns):turn]
        assert all(f"<|im_start|>assistant\n{past.action}<|im_end|>" in text for past in recent)
    whole = conversation_at(trajectory, len(episode_rows) - 1)  # what the full context would have shown
    assert len(episode_rows[-1].prompt_ids) < len(chat_token_ids(tokenizer, whole))


def test_window_messages_keeps_the_first_exchange_and_the_last_k():
    messages = [{"role": "system", "content": "S"}]
    for i in range(5):
        messages += [{"role": "user", "content": f"o{i}"}, {"role": "assistant", "content": f"a{i}"}]
    messages.append({"role": "user", "content": "now"})
    contents = [m["content"] for m in window_messages(messages, 2)]
    assert contents == ["S", "o0", "a0", "o3", "a3", "o4", "a4", "now"]
    assert [m["content"] for m in window_messages(messages, 0)] == ["S", "o0", "a0", "now"]
    assert window_messages(messages, 4) == messages == window_messages(messages, 10)
    with pytest.raises(ValueError, match="history_turns"):
        window_messages(messages, -1)


def test_gigpo_step_groups_form_from_states_repeated_across_a_group(tiny):
    """Random replies to the counting game keep answering "Wrong number.": that state recurs within and
    across the group's episodes, and GiGPO normalises each such turn's return within its state's group."""
    model, tokenizer = tiny
    _, trajectories, rows = play(model, tokenizer, history_turns=1, seeds=(0,), group_size=3)
    for trajectory in trajectories:  # a shaped return, so the step returns differ by turn
        for step, turn in enumerate(trajectory.turns):
            turn.reward = float(step % 2)
    rewards = [t.total_reward for t in trajectories]
    steps = step_advantages(trajectories, gamma=0.5, scale="none")
    by_state: dict[str, list[float]] = {}
    for trajectory, values in zip(trajectories, steps, strict=True):
        for turn, value in zip(trajectory.turns, values, strict=True):
            by_state.setdefault(turn.observation, []).append(value)
    # One anchor state, seen in every episode of the group, several times each: one step group.
    assert all(sum(turn.observation == "Wrong number." for turn in t.turns) >= 3 for t in trajectories)
    for values in by_state.values():
        assert sum(values) == pytest.approx(0.0, abs=1e-9)  # centred within the anchor state's group
        assert len(values) > 1 or values == [0.0]
    assert any(abs(value) > 1e-6 for values in by_state.values() for value in values)
    per_row = turn_advantages(trajectories, rewards, 3, [len(r) for r in rows], estimator="gigpo", scale="none",
                              step_weight=0.5, gamma=0.5)
    episode = turn_advantages(trajectories, rewards, 3, [len(r) for r in rows], estimator="grpo", scale="none")
    for values, base, step_values in zip(per_row, episode, steps, strict=True):
        assert len(values) == len(base) == len(step_values)
        assert values == pytest.approx([b + 0.5 * s for b, s in zip(base, step_values, strict=True)])
        assert len(set(base)) == 1  # every row of an episode shares the episode's advantage


def test_an_episode_that_never_played_keeps_one_masked_row_in_its_group(tiny):
    model, tokenizer = tiny
    policy = HFPolicy(model, tokenizer, max_new_tokens=4, seed=0)
    trajectories, rows = play_window_groups(policy, [BrokenResets(), BrokenResets()], history_turns=1,
                                            seeds=[0, 13, 1], group_size=2,
                                            limits=RolloutLimits(max_turns=2, max_new_tokens=4, max_episode_tokens=200))
    assert [t.group for t in trajectories] == [0, 0, 1, 1, 2, 2]
    assert all("reset failed" in t.error for t in trajectories[:2])
    assert all("exceeds max_episode_tokens" in t.error for t in trajectories[2:4])
    for episode_rows in rows[:4]:
        [row] = episode_rows
        assert row.loss_mask == [0] and row.prompt_ids
    assert [len(r) for r in rows[4:]] == [2, 2] and all(row.loss_mask[0] == 1 for r in rows[4:] for row in r)


@pytest.mark.parametrize("estimator,loss_type", [("grpo", "grpo"), ("gigpo", "dapo")])
def test_one_window_training_step_runs_through_trl_on_one_row_per_turn_and_changes_the_weights(
        tiny_sft, tmp_path, monkeypatch, estimator, loss_type):
    from regym.rl import trl_bridge

    seen = []
    original = trl_bridge.RegymGRPOTrainer._score_window_rows

    def spy(self, inputs):
        output = original(self, inputs)
        seen.append((len(inputs), output["completion_ids"].shape[0], output["advantages"].shape,
                     sum(t.num_turns for t in self.last_rollout)))
        return output

    monkeypatch.setattr(trl_bridge.RegymGRPOTrainer, "_score_window_rows", spy)
    config = RLConfig(env=ENV_ID, model=str(tiny_sft), output_dir=str(tmp_path), context="window", history_turns=1,
                      num_generations=2, tasks_per_step=2, num_envs=4, num_tasks=2, max_turns=5, max_new_tokens=4,
                      max_episode_tokens=256, learning_rate=1e-2, beta=0.02, max_steps=1, eval_every=0, save_steps=0,
                      report_to=[], progress=False, use_cpu=True, advantage_estimator=estimator,
                      loss_type=loss_type)
    summary = train(config)
    rollouts = read_jsonl(tmp_path / "rollouts.jsonl")
    turns = [len(r["turns"]) for r in rollouts]
    assert len(rollouts) == 4 and len(set(turns)) == 2 and summary["steps"] == 1  # tasks of two lengths
    [(episodes, rows, advantages_shape, played)] = seen
    assert episodes == 4 and rows == played == sum(turns) and tuple(advantages_shape) == (rows,)
    before, after = load_file(tiny_sft / "model.safetensors"), load_file(tmp_path / "final" / "model.safetensors")
    assert any(not torch.equal(before[name], after[name]) for name in before)
    [metrics] = read_jsonl(tmp_path / "metrics.jsonl")
    # Reward and success are logged over episodes, as with the full context, not over rows (turns).
    assert metrics["reward"] == pytest.approx(sum(r["total_reward"] for r in rollouts) / 4)
    assert metrics["success_rate"] == pytest.approx(sum(r["success"] for r in rollouts) / 4)
    by_rows = sum(r["total_reward"] * len(r["turns"]) for r in rollouts) / sum(turns)
    assert metrics["reward"] != pytest.approx(by_rows)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "bnpo", "dr_grpo"])
def test_the_loss_over_row_chunks_has_the_value_and_gradient_of_the_loss_over_all_rows(tiny_sft, tmp_path, loss_type):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from regym.rl.trl_bridge import RegymGRPOTrainer, env_reward, grpo_config, task_dataset, task_prompt

    config = RLConfig(env=ENV_ID, model=str(tiny_sft), output_dir=str(tmp_path), context="window", history_turns=1,
                      num_generations=2, tasks_per_step=2, num_envs=4, num_tasks=2, max_turns=5, max_new_tokens=4,
                      max_episode_tokens=256, beta=0.02, loss_type=loss_type, use_cpu=True, report_to=[],
                      progress=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_sft)
    trainer = RegymGRPOTrainer(model, args=grpo_config(config, tmp_path, use_cpu=True), regym_config=config,
                               envs=[gym.make(ENV_ID, max_turns=5) for _ in range(4)],
                               ref_model=AutoModelForCausalLM.from_pretrained(tiny_sft), reward_funcs=[env_reward],
                               train_dataset=task_dataset(range(2)),
                               processing_class=AutoTokenizer.from_pretrained(tiny_sft))
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this test does not run
    trainer.model.train()
    batch = trainer._generate_and_score_completions([{"prompt": task_prompt(seed)} for seed in (0, 0, 1, 1)])
    rows = batch["completion_ids"].shape[0]
    assert rows > 3 and batch["advantages"].abs().sum() > 0

    def loss_and_gradient(rows_per_forward):
        trainer.args.per_device_train_batch_size = rows_per_forward
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, batch, num_items_in_batch=batch["num_items_in_batch"])
        trainer.accelerator.backward(loss)
        return loss.detach(), torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])

    whole_loss, whole = loss_and_gradient(rows)
    chunked_loss, chunked = loss_and_gradient(3)
    assert whole.abs().sum() > 0
    assert torch.allclose(chunked_loss, whole_loss, atol=1e-6, rtol=1e-4)
    assert torch.allclose(chunked, whole, atol=1e-6, rtol=1e-3)


def test_evaluation_plays_the_window_a_window_trained_policy_saw(monkeypatch):
    """``LLMAgent(history_turns=k)`` (rl-eval --history-turns, rl-train's evals with context window) prompts
    with ``window_messages``; rl-train passes its window to the evaluator only for context "window"."""
    import regym.rl.evaluation as evaluation
    from regym.agents.llm import Generation, LLMAgent
    from regym.trajectory import Trajectory

    class Recorder:
        name = "recorder"

        def __init__(self):
            self.seen = []

        def chat(self, conversations):
            self.seen.extend(conversations)
            return [Generation("go") for _ in conversations]

    trajectory = Trajectory("env", "t", "o0")
    for turn in range(4):
        trajectory.record(f"a{turn}", f"o{turn + 1}", 0.0, False, False, {})
    policy = Recorder()
    LLMAgent(policy, history_turns=1).act([trajectory])
    LLMAgent(policy).act([trajectory])
    windowed, whole = policy.seen
    assert [m["content"] for m in windowed[1:]] == [m["content"] for m in window_messages(whole, 1)[1:]]
    assert len(windowed) == 1 + 2 * 2 + 1 and len(whole) == 1 + 2 * 4 + 1  # task + last exchange, now

    asked = []
    monkeypatch.setattr(evaluation, "HFPolicy", lambda *args, **kwargs: None)
    monkeypatch.setattr(evaluation, "policy_agent", lambda *a, **kw: asked.append(kw["history_turns"]) or 1 / 0)
    for context, expected in (("window", 3), ("full", None)):
        with pytest.raises(ZeroDivisionError):
            evaluation.evaluate(None, None, RLConfig(context=context, history_turns=3), ["in_distribution"], 1)
        assert asked[-1] == expected


def test_only_the_current_observation_lists_its_actions():
    """Past lists are stale and long (ALFWorld's first room): a window shows the current one alone."""
    def observed(text, actions):
        return format_observation(text, {"admissible_actions": actions})

    messages = [{"role": "system", "content": "S"}]
    for i in range(4):
        messages += [{"role": "user", "content": observed(f"o{i}", [f"go {i}", "look"])},
                     {"role": "assistant", "content": f"a{i}"}]
    messages.append({"role": "user", "content": observed("now", ["take it", "look"])})
    for k in (0, 1, 10):
        users = [m["content"] for m in window_messages(messages, k) if m["role"] == "user"]
        assert users[:-1] == [f"o{i}" for i in (0, *range(4 - min(k, 3), 4))][:len(users) - 1]
        assert users[-1] == "now\n\nAvailable actions: take it, look"
    assert without_actions("a room\n\nAvailable actions: x") == "a room" and without_actions("plain") == "plain"
