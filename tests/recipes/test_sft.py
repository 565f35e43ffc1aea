"""Demos and SFT: datasets in THE prompt format, assistant-only loss, checkpoint ladders.

The env is ``PickGame`` (tests/support/games.py), a small two-step game (take the ball the objective
names, then put it in the box), so the tests do not depend on a heavy engine.
"""

from __future__ import annotations

import json

import pytest
import torch

from games import PICK_GAME, register_pick_game
from regym.agents.prompts import PromptFormat, build_messages
from regym.demos import collect_demos, load_demos
from regym.recipes.tiny import train_tokenizer
from regym.rl.sft import conversation_windows, message_token_counts, sft, sft_dataset
from regym.trajectory import Trajectory

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    register_pick_game()
    out = tmp_path_factory.mktemp("demos") / "pick"
    return collect_demos(PICK_GAME, agent="expert", episodes=24, out_dir=out), out


@pytest.fixture(scope="module")
def tokenizer(demos):
    dataset, _ = demos
    texts = [message["content"] for messages in dataset["messages"] for message in messages]
    return train_tokenizer(texts * 4, vocab_size=400)


def tiny_model(tokenizer, seed=0):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def assistant_nll(model, tokenizer, conversations) -> float:
    """Mean negative log-likelihood of the assistant tokens (the SFT target)."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for messages in conversations:
            out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
            ids = torch.tensor([out["input_ids"]])
            mask = torch.tensor(out["assistant_masks"][1:], dtype=torch.bool)
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
            picked = logprobs.gather(1, ids[0, 1:, None])[:, 0]
            total -= float(picked[mask].sum())
            count += int(mask.sum())
    return total / count


def test_demos_are_the_prompt_format_and_round_trip(demos):
    dataset, out = demos
    loaded = load_demos(out)
    assert len(loaded) == 24 and all(loaded["success"])
    row = loaded[3]
    trajectory = Trajectory.from_dict(json.loads(row["trajectory"]))
    assert row["messages"] == build_messages(trajectory, PromptFormat(), include_current=False)
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert "Available actions: " in row["messages"][1]["content"]
    assert row["messages"][2]["content"] == trajectory.turns[0].action
    assert row["task_id"] == trajectory.task_id and row["seed"] == 3


def test_collect_demos_command(tmp_path, capsys):
    from regym.cli.collect_demos import main

    register_pick_game()
    assert main(["--env", PICK_GAME, "--agent", "random", "--episodes", "5", "--seed", "2",
                 "--out", str(tmp_path / "random")]) == 0
    summary = json.loads(capsys.readouterr().out)
    loaded = load_demos(tmp_path / "random")
    assert summary["episodes"] == len(loaded) == 5 and set(loaded["agent"]) == {"random"}
    assert loaded["seed"] == [2, 3, 4] + [5, 6]
    assert main(["--env", "no-such-env", "--out", str(tmp_path / "x")]) == 2


def test_assistant_mask_covers_exactly_the_actions(demos, tokenizer):
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    messages = demos[0][0]["messages"]
    out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    masked = [token for token, keep in zip(out["input_ids"], out["assistant_masks"], strict=True) if keep]
    actions = [m["content"] + "<|end|>" for m in messages if m["role"] == "assistant"]
    assert tokenizer.decode(masked) == "".join(actions)
    assert is_chat_template_stop_token_trained(tokenizer)


def test_windows_fit_and_keep_every_action(demos, tokenizer):
    conversation = list(demos[0][0]["messages"])
    # A long episode: the same two exchanges repeated (distinct actions to track them).
    for index in range(10):
        conversation += [{"role": "user", "content": f"Turn {index}: nothing happens here."},
                         {"role": "assistant", "content": f"look {index}"}]
    counts = message_token_counts([conversation], tokenizer)[0]
    budget = sum(counts[:3]) + 3 * sum(counts[5:7]) + 1
    windows = conversation_windows(conversation, counts, budget)
    assert len(windows) > 1
    for window in windows:
        assert window[:3] == conversation[:3]
        assert sum(message_token_counts([window], tokenizer)[0]) <= budget
    seen = [m["content"] for window in windows for m in window[3:] if m["role"] == "assistant"]
    expected = [m["content"] for m in conversation[3:] if m["role"] == "assistant"]
    assert seen == expected


def test_sft_learns_the_actions_and_saves_a_ladder(demos, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dataset, _ = demos
    conversations = list(dataset["messages"])
    model = tiny_model(tokenizer)
    before = assistant_nll(model, tokenizer, conversations)
    out = sft(model, tokenizer, dataset, out_dir=tmp_path / "sft", epochs=2, lr=3e-3, batch_size=4,
              max_length=512, save_epochs=(0.5, 1), save_every_epoch=True, seed=0)
    summary = json.loads((out / "sft_summary.json").read_text())
    assert summary["windows"] == 24 and summary["steps"] == 12 and summary["save_epochs"] == [0.5, 1.0, 2.0]
    assert not list(tmp_path.glob(".*tmp*"))

    trained = AutoModelForCausalLM.from_pretrained(out)
    loaded_tokenizer = AutoTokenizer.from_pretrained(out)
    assert loaded_tokenizer.chat_template == tokenizer.chat_template
    after = assistant_nll(trained, loaded_tokenizer, conversations)
    assert after < before - 1.0

    rungs = {path.name: path for path in (out / "epochs").iterdir()}
    assert set(rungs) == {"epoch-0.5", "epoch-1", "epoch-2"}
    half = AutoModelForCausalLM.from_pretrained(rungs["epoch-0.5"])
    assert json.loads((rungs["epoch-0.5"] / "sft_summary.json").read_text())["step"] == 3
    assert after < assistant_nll(half, tokenizer, conversations) < before
    last = AutoModelForCausalLM.from_pretrained(rungs["epoch-2"])
    for (name, a), (_, b) in zip(trained.state_dict().items(), last.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_sft_loss_ignores_the_env_text(demos, tokenizer, tmp_path):
    """What SFTTrainer trains on (its labels) is the actions and their stop tokens, nothing else."""
    dataset, _ = demos
    data = sft_dataset(dataset, tokenizer, 512)
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, max_length=512, report_to=[],
                       bf16=False, use_cpu=True, activation_checkpointing=False)
    trainer = SFTTrainer(model=tiny_model(tokenizer), args=config, train_dataset=data, processing_class=tokenizer)
    example = trainer.train_dataset[0]
    labelled = [label for label in example["labels"] if label != -100]
    actions = [m["content"] for m in data[0]["messages"] if m["role"] == "assistant"]
    assert tokenizer.decode(labelled) == "<|end|>".join(actions) + "<|end|>"


def test_window_rows_train_each_action_on_the_window_rl_shows(demos, tokenizer, tmp_path):
    """history_turns: one row per expert turn; its prompt is exactly RL's window prompt and only its
    action (and stop token) is labelled, so SFT and the window context see the same text."""
    from trl import SFTConfig, SFTTrainer

    from regym.agents.prompts import window_messages

    dataset, _ = demos
    conversation = list(dataset[0]["messages"])
    data = sft_dataset(dataset, tokenizer, 512, history_turns=1)
    assistant_turns = [index for index, m in enumerate(conversation) if m["role"] == "assistant"]
    assert len(data) >= len(assistant_turns) and set(data.column_names) == {"prompt", "completion"}
    for row, index in zip(data, assistant_turns, strict=False):
        assert row["prompt"] == window_messages(conversation[:index], 1)
        assert row["completion"] == [conversation[index]]
    config = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, max_length=512, report_to=[],
                       bf16=False, use_cpu=True, activation_checkpointing=False)
    trainer = SFTTrainer(model=tiny_model(tokenizer), args=config, train_dataset=data, processing_class=tokenizer)
    for position in range(len(assistant_turns)):
        labelled = [label for label in trainer.train_dataset[position]["labels"] if label != -100]
        assert tokenizer.decode(labelled) == conversation[assistant_turns[position]]["content"] + "<|end|>"
    with pytest.raises(ValueError, match="no window row fits"):
        sft_dataset(dataset, tokenizer, 3, history_turns=1)
