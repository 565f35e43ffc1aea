"""The embedded tiny pipeline: tokenizer, corpus, cached base + SFT folders.

Fast tests build a micro pipeline on the two-step game of ``test_sft``; the slow
test builds the real default on TextWorld and checks the SFT policy beats random.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time

import gymnasium as gym
import pytest
import torch

from games import PICK_GAME, register_pick_game
from regym.envs.base import TextEnv
from regym.recipes.corpus import CorpusError, gather_corpus
from regym.recipes.tiny import TinyPipelineConfig, ensure_tiny_pipeline, train_tokenizer, with_tiny_pipeline

BROKEN_GAME = "regym-test/BrokenGame-v0"
MICRO = TinyPipelineConfig(
    vocab_size=512, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, max_length=512,
    corpus_random_episodes=12, corpus_expert_episodes=6, task_pool=None, pretrain_steps=30,
    pretrain_batch_size=4, pretrain_block_size=64, demo_episodes=16, sft_epochs=1.0, sft_batch_size=4,
    corpus_envs=(PICK_GAME,),
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


def test_corpus_has_random_play_in_context_and_refuses_broken_envs(games):
    with pytest.raises(CorpusError, match=f"{BROKEN_GAME}.*game data not installed"):
        gather_corpus([PICK_GAME, BROKEN_GAME], random_episodes=6, expert_episodes=3, seed=1)
    corpus = gather_corpus([PICK_GAME], random_episodes=6, expert_episodes=3, seed=1)
    assert corpus.envs == [PICK_GAME]
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
    assert base_info["envs"] == [PICK_GAME] and base_info["loss_last"] < base_info["loss_first"]
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


def test_corpus_is_fixed_by_counts_not_the_clock(games):
    """A slow env still gives every episode asked for, and its hash names exactly what was read."""
    corpus = gather_corpus([PICK_GAME], random_episodes=5, expert_episodes=2, seed=4)
    assert corpus.episodes[PICK_GAME]["random"] == 5
    assert corpus.sha256() == gather_corpus([PICK_GAME], random_episodes=5, expert_episodes=2, seed=4).sha256()
    assert corpus.sha256() != gather_corpus([PICK_GAME], random_episodes=5, expert_episodes=2, seed=5).sha256()
    assert "seconds_per_env" not in {field.name for field in dataclasses.fields(TinyPipelineConfig)} | set(
        inspect.signature(gather_corpus).parameters)


def test_pipeline_records_what_it_built(pipeline):
    built, _ = pipeline
    summary = built.summary
    base_info = json.loads((built.base_dir / "tiny_base.json").read_text())
    assert summary["corpus_sha256"] == base_info["corpus_sha256"] and len(summary["corpus_sha256"]) == 64
    assert summary["corpus_episodes"][PICK_GAME]["random"] == MICRO.corpus_random_episodes
    assert len(summary["demos_sha256"]) == 64 and 0.0 <= summary["sft_token_accuracy"] <= 1.0


# Recorded from a cold-cache build of the default pipeline (REGYM_CACHE empty, seed 0, torch 2.13.0 CPU,
# one thread); see docs/tiny_pipeline.md. Rebuild and update these when PIPELINE_VERSION changes.
# PIPELINE_VERSION 4 (ALFWorld's generated tasks v2 change the shared corpus; the TextWorld demos do not
# change): measured at commit 31526f6 with /tmp/cold5/build.py, 849 s, on 2 busy cores.
# Version 5 (ALFWorld shortest planner), cold build at commit 2ebfa21; v4 was 84aa523f…, 0.9391, 33/64.
RECORDED_CORPUS_SHA256 = "166f284adab0b026c983e778531ecbf3e05e838a2ba3a575ef04198a4ff53a66"
RECORDED_DEMOS_SHA256 = "ced1c691c20479af94625235854cb764376f5f65e3175b8a137de0a06c50de5d"
RECORDED_SFT_TOKEN_ACCURACY = 0.9318
RECORDED_STEP0_SUCCESS = 43 / 64  # regym.eval's one evaluator, 64 ID episodes (seeds 10000..10063); v3 was 29/64
"""``rl-train --env textworld``'s in-distribution success before its first step (64 sampled episodes)."""


@pytest.mark.slow
def test_cold_cache_build_reproduces_the_recorded_pipeline(tmp_path, monkeypatch):
    """The default pipeline from an empty cache is the recorded one: same corpus, same demos, same start.

    The corpus and demos come from seeded env play and must match exactly. SFT and the
    sampled evaluation run on floats, so another CPU or BLAS may differ slightly: token
    accuracy within 0.02, and step-0 success within three standard errors of 64 episodes.
    """
    from regym.rl.config import RLConfig
    from regym.rl.evaluation import evaluate
    from regym.rl.train import load_tokenizer, load_training_model, resolve_checkpoints

    monkeypatch.setenv("REGYM_CACHE", str(tmp_path))
    built = ensure_tiny_pipeline("regym/TextWorld-v0")
    summary = built.summary
    config = built.config
    assert all(counts["random"] == config.corpus_random_episodes for counts in summary["corpus_episodes"].values())
    assert summary["corpus_sha256"] == RECORDED_CORPUS_SHA256
    assert summary["demos_sha256"] == RECORDED_DEMOS_SHA256
    assert summary["sft_token_accuracy"] == pytest.approx(RECORDED_SFT_TOKEN_ACCURACY, abs=0.02)

    rl_config = with_tiny_pipeline(RLConfig(env="textworld"))
    _, sft_dir, env_kwargs = resolve_checkpoints(rl_config, "regym/TextWorld-v0")
    assert sft_dir == built.sft_dir
    assert env_kwargs == rl_config.env_kwargs  # what evaluate plays the env with
    start = evaluate(load_training_model(sft_dir, use_cpu=True), load_tokenizer(sft_dir), rl_config, ["in_distribution"],
                     rl_config.eval_episodes)["in_distribution"]
    standard_error = (RECORDED_STEP0_SUCCESS * (1 - RECORDED_STEP0_SUCCESS) / rl_config.eval_episodes) ** 0.5
    assert abs(start["success_rate"] - RECORDED_STEP0_SUCCESS) <= 3 * standard_error
    assert 0.0 < start["success_rate"] < 1.0  # RL has signal and room


def test_demo_expert_and_sft_view_follow_the_env():
    """ALFWorld's demos can come from either expert, and window-context envs SFT on window rows."""
    from regym.recipes.tiny import demo_env_kwargs, sft_history_turns

    default = TinyPipelineConfig()
    pool = {"task_types": ["pick_and_place_simple", "look_at_obj_in_light"]}
    assert demo_env_kwargs(default, "regym/ALFWorld-v0") == pool and demo_env_kwargs(default, "regym/TextWorld-v0") == {}
    assert demo_env_kwargs(TinyPipelineConfig(demo_expert="search"), "regym/ALFWorld-v0") == {**pool, "expert": "search"}
    with pytest.raises(ValueError, match="has no expert option"):
        demo_env_kwargs(TinyPipelineConfig(demo_expert="search"), "regym/TextWorld-v0")
    assert sft_history_turns(default, "regym/ALFWorld-v0") == 2  # ALFWorld's rl_defaults: window, k = 2
    assert sft_history_turns(default, "regym/TextWorld-v0") is None  # full context: whole conversations
    assert sft_history_turns(TinyPipelineConfig(sft_view="window"), "regym/TextWorld-v0") == 2
    assert sft_history_turns(TinyPipelineConfig(sft_view="conversation"), "regym/ALFWorld-v0") is None
    with pytest.raises(ValueError, match="sft_view"):
        sft_history_turns(TinyPipelineConfig(sft_view="rows"), "regym/ALFWorld-v0")
    assert default.digest() != TinyPipelineConfig(demo_expert="search").digest()  # a separate cache folder


def test_embedded_rl_settings_fill_only_what_the_user_left_unset():
    from regym.recipes.tiny import embedded_rl_settings
    from regym.rl.config import resolve_config

    config = TinyPipelineConfig()
    _, sources = resolve_config(None, {"env": "alfworld", "max_steps": 5})
    chosen = embedded_rl_settings(config, "regym/ALFWorld-v0", sources)
    assert chosen == {"max_turns": 15, "advantage_estimator": "gigpo", "eval_every": 8}  # max_steps is the user's
    assert embedded_rl_settings(config, "regym/TextWorld-v0", sources) == {}
    assert embedded_rl_settings(config, "regym/ALFWorld-v0", None) == {}
    assert config.digest() == dataclasses.replace(config, rl_settings=()).digest()  # RL settings key no cache


def test_the_base_cache_key_names_the_envs_the_corpus_plays(monkeypatch):
    """A newly registered env family keys a new base model: the old one never read its text."""
    from regym import envs

    default = TinyPipelineConfig()
    assert default.digest(["corpus_envs"]) == TinyPipelineConfig(corpus_envs=tuple(envs.ENTRY_POINTS)).digest(["corpus_envs"])
    before = default.digest()
    monkeypatch.setitem(envs.ENTRY_POINTS, "regym-test/Plugin-v0", "plugin:Env")
    assert default.corpus_env_ids()[-1] == "regym-test/Plugin-v0" and default.digest() != before
