"""The embedded tiny pipeline: tokenizer, corpus, cached base + SFT folders.

Fast tests build a micro pipeline on the two-step game of ``test_sft``; the slow
test builds the real default on TextWorld and checks the SFT policy beats random.
"""

from __future__ import annotations

import json
import time

import gymnasium as gym
import pytest
import torch

from regym.envs.base import TextEnv
from regym.models.corpus import gather_corpus
from regym.models.tiny import TinyPipelineConfig, ensure_tiny_pipeline, policy_success_rate, train_tokenizer
from test_sft import PICK_GAME, register_pick_game

BROKEN_GAME = "regym-test/BrokenGame-v0"
MICRO = TinyPipelineConfig(
    vocab_size=512, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, max_length=512,
    corpus_random_episodes=12, corpus_expert_episodes=6, task_pool=None, pretrain_steps=30,
    pretrain_batch_size=4, pretrain_block_size=64, demo_episodes=16, sft_epochs=1.0, sft_batch_size=4,
    corpus_envs=(PICK_GAME, BROKEN_GAME),
)


class BrokenGame(TextEnv):
    """An env whose engine fails on every reset (e.g. missing game data)."""

    def _task_id_for(self, rng):
        return "broken"

    def _begin(self, task_id):
        raise FileNotFoundError("game data not installed")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def games():
    register_pick_game()
    if BROKEN_GAME not in gym.registry:
        gym.register(id=BROKEN_GAME, entry_point=BrokenGame)


@pytest.fixture(scope="module")
def pipeline(games, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return ensure_tiny_pipeline(PICK_GAME, seed=3, workdir=root, config=MICRO), root
    finally:
        torch.set_num_threads(previous)


def test_tokenizer_round_trips_any_text():
    tokenizer = train_tokenizer(["go north", "take the key", "open the door"] * 20, vocab_size=300)
    text = 'Solve ∫ x² dx = ½·x³ — naïve café 🙂\n{"tool": "search", "args": [1, 2]}\t<python>print(1)</python>'
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id is None
    messages = [{"role": "system", "content": "Play."}, {"role": "user", "content": "A room."}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|system|>Play.<|end|><|user|>A room.<|end|><|assistant|>"


def test_corpus_has_random_play_in_context_and_skips_broken_envs(games):
    corpus = gather_corpus([PICK_GAME, BROKEN_GAME], random_episodes=6, expert_episodes=3, seed=1)
    assert corpus.envs == [PICK_GAME]
    assert "game data not installed" in corpus.skipped[BROKEN_GAME]
    assert len(corpus.conversations) == 6 and corpus.episodes[PICK_GAME]["random"] == 6
    assert all(c[0]["role"] == "system" and "Available actions: " in c[1]["content"] for c in corpus.conversations)
    assert len(corpus.actions) == 6 and all(a.startswith(("take ", "put ")) for a in corpus.actions)
    again = gather_corpus([PICK_GAME], random_episodes=6, expert_episodes=3, seed=1)
    assert again.conversations == corpus.conversations and again.actions == corpus.actions


def test_pipeline_folders_load_and_are_cached(pipeline):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    built, root = pipeline
    base = AutoModelForCausalLM.from_pretrained(built.base_dir)
    tuned = AutoModelForCausalLM.from_pretrained(built.sft_dir)
    tokenizer = AutoTokenizer.from_pretrained(built.sft_dir)
    assert base.config.hidden_size == 64 and base.config.num_hidden_layers == 2
    assert "{% generation %}" in tokenizer.chat_template and tokenizer.eos_token == "<|end|>"
    assert AutoTokenizer.from_pretrained(built.base_dir).get_vocab() == tokenizer.get_vocab()
    assert any(not torch.equal(a, b) for a, b in zip(base.parameters(), tuned.parameters(), strict=True))

    summary = built.summary
    assert summary["base_envs"] == [PICK_GAME] and summary["demo_success_rate"] == 1.0
    base_info = json.loads((built.base_dir / "tiny_base.json").read_text())
    assert BROKEN_GAME in base_info["skipped_envs"] and base_info["loss_last"] < base_info["loss_first"]
    assert not list(root.rglob(".*tmp*"))

    started = time.perf_counter()
    assert ensure_tiny_pipeline(PICK_GAME, seed=3, workdir=root, config=MICRO) == built
    assert time.perf_counter() - started < 1.0


def test_more_sft_epochs_share_the_base(pipeline):
    built, root = pipeline
    longer = ensure_tiny_pipeline(PICK_GAME, seed=3, workdir=root, config=MICRO, sft_epochs=2)
    assert longer.base_dir == built.base_dir and longer.sft_dir != built.sft_dir
    assert json.loads((longer.sft_dir / "sft_summary.json").read_text())["epochs"] == 2.0
    assert longer.summary["seconds_base"] < 1.0


@pytest.mark.slow
def test_default_textworld_pipeline_gives_rl_signal_and_room(tmp_path, monkeypatch):
    """The real default (minutes on 2 cores), measured where rl-train plays: the demo task pool.

    RL needs an SFT policy that wins some games (groups with non-zero advantage) and
    not all of them (room to improve).
    """
    monkeypatch.setenv("REGYM_CACHE", str(tmp_path))
    built = ensure_tiny_pipeline("regym/TextWorld-v0")
    sft_rate = policy_success_rate(built.sft_dir, "regym/TextWorld-v0", episodes=24,
                                   task_pool=built.config.task_pool, max_turns=20)
    assert 0.0 < sft_rate < 1.0
