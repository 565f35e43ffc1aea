"""Presets for a user's own checkpoint (Qwen2.5, Qwen3, Llama 3 families): each needs --model, reaches
TRL's config as written, and trains on a tiny random model of its family's architecture. Nothing is
downloaded: the models are built from a config, with a byte-level BPE tokenizer trained here."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest
import torch

from games import CountingGame
from regym.cli import rl_train
from regym.models.testing import save_checkpoint, tiny_llama, tiny_qwen2, tiny_qwen3
from regym.rl.config import CHECKPOINT_PRESETS, PRESETS, load_config, resolve_config
from regym.rl.train import read_jsonl, train
from regym.rl.trl_bridge import grpo_config
from tiny_chat import tiny_chat_tokenizer

ENV_ID = "regym-test/PresetCounting-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=CountingGame)

ARCHITECTURES = {  # preset name prefix -> (builder, the class a real checkpoint of that family loads as)
    "qwen2.5": (tiny_qwen2, "Qwen2ForCausalLM"),
    "qwen3": (tiny_qwen3, "Qwen3ForCausalLM"),
    "llama3": (tiny_llama, "LlamaForCausalLM"),
}


def family(preset: str) -> str:
    return next(name for name in ARCHITECTURES if preset.startswith(name))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One tiny random checkpoint per family, long enough for the presets' 4096-token episodes."""
    tokenizer = tiny_chat_tokenizer()
    folders = {}
    for name, (build, _) in ARCHITECTURES.items():
        model = build(seed=0, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, bos_token_id=None, max_position_embeddings=4096)
        folders[name] = save_checkpoint(model, tokenizer, tmp_path_factory.mktemp(name))
    return folders


def test_every_family_has_a_small_and_a_large_preset():
    assert set(CHECKPOINT_PRESETS) <= set(PRESETS) and {"tiny", "smollm2"} <= set(PRESETS)
    for name in ARCHITECTURES:
        sizes = [preset for preset in CHECKPOINT_PRESETS if family(preset) == name]
        assert len(sizes) == 2, (name, sizes)
        small, large = sorted(sizes, key=lambda preset: float(preset.rsplit("-", 1)[1].rstrip("b")))
        assert PRESETS[small]["vllm_gpu_memory_utilization"] < PRESETS[large]["vllm_gpu_memory_utilization"]


@pytest.mark.parametrize("preset", sorted(CHECKPOINT_PRESETS))
def test_a_checkpoint_preset_without_model_says_to_pass_one(preset, tmp_path, capsys):
    with pytest.raises(ValueError, match="pass --model PATH"):
        load_config(None, {"preset": preset})
    assert rl_train.main(["--preset", preset, "--output-dir", str(tmp_path / "run")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("rl-train: error: ") and "--model PATH" in last and preset in last
    assert not (tmp_path / "run").exists()  # stopped before the tiny pipeline or any model


@pytest.mark.parametrize("preset", sorted(CHECKPOINT_PRESETS))
def test_a_preset_reaches_trl_and_trains_its_family_on_cpu(preset, checkpoints, tmp_path, one_thread):
    folder = checkpoints[family(preset)]
    assert f'"{ARCHITECTURES[family(preset)][1]}"' in (folder / "config.json").read_text()
    config, sources = resolve_config(None, {"preset": preset, "model": str(folder), "env": ENV_ID,
                                            "output_dir": str(tmp_path / "run")})
    values = PRESETS[preset]
    assert {name: getattr(config, name) for name in values} == values
    assert all(sources[name] == "preset" for name in values)

    args = grpo_config(config, tmp_path / "trl", use_cpu=True)  # CPU only here: TRL refuses bf16 without a GPU
    assert (args.learning_rate, args.num_generations, args.per_device_train_batch_size) == \
        (values["learning_rate"], values["num_generations"], values["num_generations"] * values["tasks_per_step"])
    assert (args.bf16, args.gradient_checkpointing, args.max_completion_length) == \
        (True, True, values["max_episode_tokens"])
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization) == \
        (True, "colocate", values["vllm_gpu_memory_utilization"])
    assert args.vllm_max_model_length == values["max_episode_tokens"]
    assert (args.vllm_importance_sampling_correction, args.vllm_importance_sampling_mode) == (True, "sequence_mask")

    # One step with the preset's learning rate, token limits and gradient checkpointing; HF generation on the
    # CPU in float32, and a batch of one group of two episodes so it takes seconds.
    step = dataclasses.replace(config, generation="hf", use_cpu=True, bf16=False, tasks_per_step=1, num_generations=2,
                               num_envs=2, num_tasks=2, max_turns=2, max_steps=1, eval_every=0, save_steps=0,
                               report_to=[], progress=False)
    summary = train(step)
    assert summary["steps"] == 1
    [metrics] = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert metrics["step"] == 1 and torch.isfinite(torch.tensor(metrics["loss"]))
    episodes = read_jsonl(tmp_path / "run" / "rollouts.jsonl")
    assert len(episodes) == 2 and all(episode["error"] is None for episode in episodes)
    assert (tmp_path / "run" / "final" / "config.json").is_file()
