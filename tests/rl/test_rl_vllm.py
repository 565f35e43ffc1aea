"""``rl-train --generation vllm``: the settings reach TRL's vLLM integration; a machine that cannot run it
stops the run at start-up naming what is missing; on a GPU with vLLM, two steps run and vLLM's rollout
log-probs agree with the trainer's."""

from __future__ import annotations

import importlib.util
import math
import time

import gymnasium as gym
import pytest
import torch

from games import CountingGame
from regym.agents.vllm_policy import vllm_build
from regym.cli import rl_train
from regym.rl.config import RLConfig, load_config
from regym.rl.train import read_jsonl, train
from regym.rl.trl_bridge import grpo_config
from regym.rl.vllm_rollout import check_generation_backend, sampled_logprobs, trl_vllm_requirement

ENV_ID = "regym-test/VLLMCounting-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=CountingGame)
CAN_RUN_VLLM = vllm_build() == "cpu" or (torch.cuda.is_available() and vllm_build() == "cuda")
INSTALL = "pip install 'regym[vllm]'"


def test_the_vllm_settings_are_checked():
    assert RLConfig().generation == "hf"
    for field, value, message in [("generation", "sglang", "generation must be one of"),
                                  ("vllm_mode", "remote", "vllm_mode must be one of"),
                                  ("vllm_gpu_memory_utilization", 0.0, "vllm_gpu_memory_utilization"),
                                  ("vllm_gpu_memory_utilization", 1.5, "vllm_gpu_memory_utilization"),
                                  ("vllm_importance_sampling", "sequence", "vllm_importance_sampling must be one of")]:
        with pytest.raises(ValueError, match=message):
            load_config(None, {field: value})
    if vllm_build() != "cpu":  # CPU training with vLLM rollouts needs vLLM's CPU build
        with pytest.raises(RuntimeError, match="needs vLLM's CPU build"):
            check_generation_backend(RLConfig(generation="vllm", use_cpu=True))
    with pytest.raises(SystemExit):
        rl_train.main(["--generation", "sglang"])


def test_the_settings_reach_trls_vllm_integration(tmp_path):
    assert grpo_config(RLConfig(), tmp_path, use_cpu=True).use_vllm is False

    colocated = grpo_config(RLConfig(generation="vllm", vllm_gpu_memory_utilization=0.5, max_episode_tokens=3000),
                            tmp_path, use_cpu=False if torch.cuda.is_available() else True)
    assert (colocated.use_vllm, colocated.vllm_mode, colocated.vllm_gpu_memory_utilization) == (True, "colocate", 0.5)
    assert colocated.vllm_max_model_length == 3000 and colocated.vllm_enable_sleep_mode is False
    assert (colocated.vllm_importance_sampling_correction, colocated.vllm_importance_sampling_mode) == \
        (True, "sequence_mask")  # TRL's correction is on by default

    served = grpo_config(RLConfig(generation="vllm", vllm_mode="server", vllm_server_base_url="http://10.0.0.2:8000",
                                  vllm_importance_sampling="token_truncate"), tmp_path, use_cpu=True)
    assert (served.vllm_mode, served.vllm_server_base_url, served.vllm_importance_sampling_mode) == \
        ("server", "http://10.0.0.2:8000", "token_truncate")
    uncorrected = grpo_config(RLConfig(generation="vllm", vllm_importance_sampling="none"), tmp_path, use_cpu=True)
    assert uncorrected.vllm_importance_sampling_correction is False


def test_the_supported_vllm_versions_are_trls():
    assert trl_vllm_requirement().startswith("vllm") and "<=" in trl_vllm_requirement()


def test_a_server_reply_gives_the_sampled_tokens_log_prob_whatever_its_rank():
    # Candidates come sorted by probability: the sampled token (7) ranks second at the first position.
    assert sampled_logprobs([7, 3], [[-0.1, -2.5], [-0.7]], [[4, 7], [3]]) == [-2.5, -0.7]
    [value] = sampled_logprobs([5], [[None]], [[5]])  # a log-prob vLLM could not compute: NaN, skipped by TRL
    assert math.isnan(value)
    with pytest.raises(RuntimeError, match="no log-prob for the token it sampled"):
        sampled_logprobs([9], [[-0.1]], [[4]])


@pytest.mark.skipif(CAN_RUN_VLLM, reason="this machine has vLLM's CPU build, or CUDA and vLLM: --generation vllm can run")
def test_generation_vllm_stops_at_start_up_saying_what_is_missing(tmp_path, capsys):
    with pytest.raises(RuntimeError) as error:
        check_generation_backend(RLConfig(generation="vllm"))
    assert INSTALL in str(error.value) and trl_vllm_requirement() in str(error.value)
    assert ("CUDA" in str(error.value)) != torch.cuda.is_available()
    check_generation_backend(RLConfig())  # hf generation runs anywhere

    # train() refuses before it touches the output folder or the model (which does not even exist).
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="--generation vllm needs"):
        train(RLConfig(env=ENV_ID, generation="vllm", model=str(tmp_path / "no-such-model"), output_dir=str(out)))
    assert not out.exists()

    # rl-train with no --model would build the tiny pipeline (minutes): it stops first, in seconds.
    started = time.perf_counter()
    assert rl_train.main(["--env", ENV_ID, "--generation", "vllm", "--output-dir", str(out)]) == 2
    assert time.perf_counter() - started < 5
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("rl-train: error: --generation vllm needs") and INSTALL in last
    assert not out.exists()


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason=f"needs vLLM: {INSTALL}")
def test_two_colocated_vllm_steps_whose_log_probs_agree_with_the_trainer(tmp_path):
    """Two rl-train steps with rollouts on TRL's colocated vLLM engine, on a tiny random Qwen2 in bf16.

    TRL logs, per step, the mean |log p_trainer − log p_vLLM| over the policy tokens of the rollout
    (``sampling/sampling_logp_difference/mean``): the behaviour log-probs regym's rollout took from vLLM
    against the trainer's recomputation on the same token ids. bf16 rounding alone keeps it near 1e-2.
    """
    from regym.models.testing import save_checkpoint, tiny_qwen2
    from tiny_chat import tiny_chat_tokenizer

    tokenizer = tiny_chat_tokenizer()
    model = tiny_qwen2(seed=0, vocab_size=len(tokenizer), hidden_size=256, num_heads=4, num_kv_heads=2,
                       intermediate_size=512, pad_token_id=tokenizer.pad_token_id,
                       eos_token_id=tokenizer.eos_token_id, bos_token_id=None, max_position_embeddings=1024)
    folder = save_checkpoint(model.to(torch.bfloat16), tokenizer, tmp_path / "sft")  # head_dim 64: every backend
    out = tmp_path / "run"
    code = rl_train.main(["--env", ENV_ID, "--model", str(folder), "--output-dir", str(out),
                          "--generation", "vllm", "--vllm-mode", "colocate", "--vllm-gpu-memory-utilization", "0.2",
                          "--max-steps", "2", "--num-generations", "4", "--tasks-per-step", "2", "--num-envs", "8",
                          "--num-tasks", "4", "--max-turns", "3", "--max-new-tokens", "8",
                          "--max-episode-tokens", "256", "--eval-every", "0", "--save-steps", "0",
                          "--report-to", "none", "--no-progress"])
    assert code == 0
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [row["step"] for row in metrics] == [1, 2]
    for row in metrics:
        assert row["sampling/sampling_logp_difference/mean"] < 0.05, row
        assert 0.5 < row["sampling/importance_sampling_ratio/mean"] < 2.0, row
    episodes = read_jsonl(out / "rollouts.jsonl")
    assert len(episodes) == 2 * 8 and all(episode["error"] is None for episode in episodes)
    assert all(episode["turns"] for episode in episodes)  # the policy spoke in every episode
