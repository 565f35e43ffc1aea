"""vLLM for real, on its CPU build (``make test-vllm`` runs these in ``.venv-vllm``; skipped without vLLM).

- ``rl-eval --vllm smollm2 --vllm-dtype float32`` plays the episodes ``rl-eval --model smollm2`` plays
  (greedy; SmolLM2-135M-Instruct; TextWorld and Math);
- ``VLLMPolicy``'s sampling is seeded per request;
- ``rl-train --generation vllm`` trains on TRL's colocated engine with regym's multi-turn and single-turn
  rollouts, and after each optimizer step's sync the engine holds the trained weights, tied embeddings
  included (``regym.rl.vllm_sync``).

Each test starts one engine at a time (75-190 s compiled on 2 loaded cores; a few seconds eager).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from games import VowelGame

pytestmark = pytest.mark.vllm

VOWELS = "regym-test/VLLMVowels-v0"
if VOWELS not in gym.registry:
    gym.register(id=VOWELS, entry_point=VowelGame)
REPO = Path(__file__).resolve().parents[2]

SYNC_TOLERANCE = 0.02
"""Mean |log p_vLLM − log p_trainer| over a fixed sequence that counts as "the same weights": TRL's engine runs
the float32 checkpoint in bfloat16 (vLLM's "auto" dtype on CPU), and on the tiny model below bf16 rounding
alone gives 2e-3 to 5e-3; one optimizer step at lr 1e-3 moves the sequence's log-probs by over 0.1."""


def _run(module: str, *args: str, timeout: int = 1800, **env_vars: str) -> subprocess.CompletedProcess:
    """A regym CLI in its own process, so the vLLM engine (and its spawned engine core) ends with it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", **env_vars}
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _actions(run_dir: Path) -> dict[tuple[str, str], list[str]]:
    """Each episode's actions, by (env id, episode key), from the run's log."""
    from regym.eval.runner import TRAJECTORIES, read_log

    return {(row["env_id"], row["key"]): [turn["action"] for turn in row["trajectory"]["turns"]]
            for row in read_log(run_dir / TRAJECTORIES)}


@pytest.mark.timeout(3600)
def test_rl_eval_on_vllm_plays_the_transformers_episodes(tmp_path):
    """Greedy SmolLM2-135M-Instruct, 16 TextWorld + 16 Math episodes, transformers (float32, CPU) against
    vLLM (float32, CPU): the same action on >= 95 % of turns. Kernels differ (vLLM's oneDNN GEMMs and paged
    attention against PyTorch's), so a near-tie between two tokens can break the other way, and from there
    the episode differs: every later turn of that episode counts as a mismatch here."""
    common = ["--suite", "agentic-id", "--envs", "textworld", "math", "--num-tasks", "16", "--k", "1",
              "--temperature", "0", "--max-new-tokens", "24", "--max-turns", "3", "--num-envs", "16",
              "--no-baselines", "--output-dir", str(tmp_path)]
    _run("regym.cli.rl_eval", "--model", "smollm2", "--run-name", "hf", *common, OMP_NUM_THREADS="1")
    _run("regym.cli.rl_eval", "--vllm", "smollm2", "--vllm-dtype", "float32", "--run-name", "vllm", *common)
    hf, vllm = _actions(tmp_path / "hf"), _actions(tmp_path / "vllm")
    assert len(hf) == len(vllm) == 32 and hf.keys() == vllm.keys()
    assert {env for env, _ in hf} == {"regym/TextWorld-v0", "regym/Math-v0"}
    turns = matching = 0
    for key, actions in hf.items():
        other = vllm[key]
        turns += max(len(actions), len(other))
        matching += sum(a == b for a, b in zip(actions, other, strict=False))
    print(f"vLLM matches transformers on {matching}/{turns} turns")
    assert turns >= 32 and matching / turns >= 0.95, f"{matching}/{turns} turns match"
    assert json.loads((tmp_path / "vllm" / "config.json").read_text())["vllm_dtype"] == "float32"


def test_vllm_sampling_is_seeded_per_request(tiny_vllm_model):
    from regym.agents.vllm_policy import VLLMPolicy

    policy = VLLMPolicy(tiny_vllm_model, temperature=1.0, max_new_tokens=12, seed=7, enforce_eager=True,
                        max_model_len=256)
    prompts = [[1, 5, 9, 13]] * 4
    first = [g.token_ids for g in policy.generate(prompts)]
    assert len({tuple(ids) for ids in first}) > 1  # identical prompts, different seeds: different replies
    policy.reseed(7)
    assert [g.token_ids for g in policy.generate(prompts)] == first
    assert [g.token_ids for g in policy.generate(prompts[:2])] != first[:2]  # the next call draws new seeds
    policy.reseed(8)
    assert [g.token_ids for g in policy.generate(prompts)] != first


@pytest.fixture(scope="module")
def tiny_vllm_model(tmp_path_factory):
    """A random 2-layer Llama with tied embeddings and head_dim 64 (vLLM's CPU attention kernels' size), saved
    in float32 with the tiny ChatML tokenizer."""
    from regym.models.testing import save_checkpoint, tiny_llama
    from tiny_chat import tiny_chat_tokenizer

    tokenizer = tiny_chat_tokenizer()
    model = tiny_llama(seed=0, vocab_size=len(tokenizer), hidden_size=256, num_heads=4, num_kv_heads=2,
                       intermediate_size=512, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                       bos_token_id=None, max_position_embeddings=1024, tie_word_embeddings=True)
    return str(save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("tiny-vllm") / "sft"))


def engine_logprobs(generation, token_ids: list[int]) -> torch.Tensor:
    """log p(token_ids[i] | token_ids[:i]) for i >= 1 under the engine's weights (its prompt log-probs)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    [output] = generation.llm.generate([TokensPrompt(prompt_token_ids=token_ids)],
                                       SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
    return torch.tensor([output.prompt_logprobs[i][token_ids[i]].logprob for i in range(1, len(token_ids))])


def trainer_logprobs(model, token_ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([token_ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(token_ids[1:])[:, None])[:, 0]


@pytest.mark.parametrize("max_turns,micro_batches", [(2, 2), (1, 1)], ids=["multi-turn", "single-turn"])
def test_after_each_step_the_engine_holds_the_trained_weights(tmp_path, tiny_vllm_model, max_turns, micro_batches):
    """Two GRPO steps with rollouts on TRL's colocated engine, then the comparison of a fixed sequence's
    log-probs under the engine and under the trained model: before the sync that starts step 3 the engine
    still holds step 1's weights and the comparison fails; after it, it passes (tied head included). The
    multi-turn run trains each step's one rollout in 2 micro-batches (``gradient_accumulation_steps``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from regym.rl.config import RLConfig
    from regym.rl.trl_bridge import RegymGRPOTrainer, env_reward, grpo_config, task_dataset
    from regym.rl.vllm_sync import engine_model

    config = RLConfig(env=VOWELS, model=tiny_vllm_model, generation="vllm", max_steps=2, num_generations=4,
                      tasks_per_step=2, num_envs=8, num_tasks=4, max_turns=max_turns, max_new_tokens=12,
                      max_episode_tokens=256, learning_rate=1e-3, beta=0.0, eval_every=0, save_steps=0,
                      report_to=[], progress=False, use_cpu=True, vllm_importance_sampling="none",
                      gradient_accumulation_steps=micro_batches)
    model = AutoModelForCausalLM.from_pretrained(tiny_vllm_model, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_vllm_model)
    initial_embedding = model.model.embed_tokens.weight.detach().clone()
    trainer = RegymGRPOTrainer(model, args=grpo_config(config, tmp_path, use_cpu=True), regym_config=config,
                               envs=[gym.make(VOWELS, max_turns=max_turns) for _ in range(8)],
                               reward_funcs=[env_reward], train_dataset=task_dataset(range(4)),
                               processing_class=tokenizer)
    generation = trainer.vllm_generation
    sequence = tokenizer.apply_chat_template([{"role": "user", "content": "Say something with many e."},
                                              {"role": "assistant", "content": "the quick brown fox 0123"}],
                                             tokenize=True)
    sequence = list(sequence["input_ids"] if hasattr(sequence, "keys") else sequence)

    def gap() -> float:
        trained = trainer.accelerator.unwrap_model(trainer.model)
        return (engine_logprobs(generation, sequence) - trainer_logprobs(trained, sequence)).abs().mean().item()

    rollouts = []
    trainer.rollout_listeners.append(lambda step, trajectories: rollouts.append((step, len(trajectories))))
    trainer.train()
    assert trainer.state.global_step == 2
    assert rollouts == [(0, 8), (1, 8)]  # one rollout of the whole batch per optimizer step
    episodes = trainer.last_rollout
    assert episodes and all(t.error is None and 1 <= t.num_turns <= max_turns for t in episodes)
    assert max(t.num_turns for t in episodes) == max_turns
    trained_embedding = trainer.accelerator.unwrap_model(trainer.model).model.embed_tokens.weight.detach()
    assert not torch.equal(trained_embedding, initial_embedding)  # so the tied head moved too

    stale = gap()  # the engine holds the weights synced before step 2: step 2's update is missing
    generation.sync_weights()  # what TRL calls before step 3's rollout
    synced = gap()
    print(f"mean |Δ log p| engine vs trainer: {stale:.4f} before the sync, {synced:.4f} after")
    assert stale > SYNC_TOLERANCE, "the comparison cannot tell a skipped sync from a done one"
    assert synced <= SYNC_TOLERANCE
    engine = engine_model(generation)
    assert engine.lm_head.weight is engine.model.embed_tokens.weight


def test_seeded_requests_whose_prompts_exceed_a_step_are_prefilled_whole(tiny_vllm_model, monkeypatch):
    """8 seeded requests of 100 prompt tokens against a step budget of 256 tokens: vLLM's CPU build would split a
    prefill over steps, then fail to rewind that request's generator (``CPU Generator does not use offset``;
    rl-train stopped so at 32 TextWorld episodes). An engine built in this process, as TRL's colocated one is,
    with ``use_whole_prefills``; and ``VLLMPolicy``, whose engine kwargs turn it off itself."""
    import vllm
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from regym.agents.vllm_policy import VLLMPolicy, use_whole_prefills

    prompts = [[1 + (i * 7 + j) % 50 for j in range(100)] for i in range(8)]
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process, as TRL's colocate mode
    llm = vllm.LLM(model=tiny_vllm_model, enforce_eager=True, max_model_len=256, max_num_batched_tokens=256,
                   max_num_seqs=8, seed=0)
    assert use_whole_prefills(llm)
    outputs = [llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts],
                            [SamplingParams(max_tokens=8, seed=100 + i) for i in range(8)], use_tqdm=False)
               for _ in range(2)]
    first, again = ([list(output.outputs[0].token_ids) for output in call] for call in outputs)
    assert all(len(ids) == 8 for ids in first) and again == first  # seeded: the same replies again
    policy = VLLMPolicy(tiny_vllm_model, temperature=1.0, max_new_tokens=8, seed=3, enforce_eager=True,
                        max_model_len=256, max_num_batched_tokens=256)
    replies = [g.token_ids for g in policy.generate(prompts)]
    policy.reseed(3)
    assert [g.token_ids for g in policy.generate(prompts)] == replies
