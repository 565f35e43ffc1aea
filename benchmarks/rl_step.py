"""Time of one RL step: regym's multi-turn path versus TRL's plain single-turn GRPO step.

Both train the same model with TRL's ``GRPOTrainer`` (same batch, group size, loss,
optimizer) and generate the same number of tokens per episode:

* regym: ``rollout_func`` plays ``--turns`` turns of ``--tokens`` tokens each in an
  echo game (the env answers every reply with a short observation), then trains on the
  whole multi-turn sequence with the env tokens masked out;
* TRL: one completion of ``turns × tokens`` tokens per prompt from TRL's own generation,
  from the same first prompt (system prompt + first observation) as regym's episodes.

Rewards are random in both so every step has a gradient. regym is timed twice in the
same run: before (each turn prefills the whole conversation again) and after (each
episode's KV cache is kept across turns, ``TokenPolicyAgent(kv_cache=True)``, the
default). Ratios are given per step and per trained policy token (regym trains on
its sampled tokens only; TRL on its whole completion). A second table compares regym's
batched rollout (all live episodes in one ``generate`` call) with playing the same
episodes one at a time, at ``--envs`` envs, without and with the KV cache.

    python benchmarks/rl_step.py [--steps 4] [--turns 4] [--tokens 16] [--envs 8] [--hidden 256 --layers 4]
"""

from __future__ import annotations

import argparse
import functools
import random
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def build_model(hidden: int, layers: int, seed: int = 0):
    """A random Llama with the tiny pipeline's tokenizer recipe (byte-level BPE, chat template)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from regym.recipes.tiny import train_tokenizer

    texts = ["You are in a room. There is a door to the north and a key on the table."] * 50 + [
        "go north", "take key", "open door", "look", "inventory", "Echo: the game repeats your words."] * 50
    tokenizer = train_tokenizer(texts, vocab_size=512)
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 3,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(config), tokenizer


def echo_game_class(turns: int):
    from regym.envs.actions import ParsedAction
    from regym.envs.base import Outcome, TextEnv

    class EchoGame(TextEnv):
        """Lasts exactly ``turns`` turns whatever the policy says."""

        def _task_id_for(self, rng):
            return f"echo-{int(rng.integers(0, 100))}"

        def _begin(self, task_id):
            self.count = 0
            return Outcome("You are in a room. There is a door to the north and a key on the table.")

        def parse(self, text):
            return ParsedAction(text)

        def _act(self, action):
            self.count += 1
            return Outcome("Echo: the game repeats your words.", terminated=self.count >= turns)

    return EchoGame


def random_reward(completions, **_):
    return [random.random() for _ in completions]


class NeverStop:
    """Both paths generate their full budget: the stop token is never sampled (fair token counts)."""

    def __init__(self, model, stop_ids):
        self.stop_ids = stop_ids
        self.handle = model.lm_head.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        output[..., self.stop_ids] = -1e9
        return output


def time_steps(trainer, steps: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per optimizer step, after one warm-up step.

    CPU time (all threads of this process) is the fair measure on a shared machine: it
    does not count the time other processes hold the cores.
    """
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    trainer.args.max_steps = steps + 1
    cpu, wall = [], []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.cpu, self.wall = time.process_time(), time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            cpu.append(time.process_time() - self.cpu)
            wall.append(time.perf_counter() - self.wall)

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(Clock())
    trainer.train()
    return sum(cpu[1:]) / steps, sum(wall[1:]) / steps


def regym_step(args, kv_cache: bool) -> tuple[tuple[float, float], float, float]:
    """regym's RL step: ((CPU s, wall s) per step, CPU s of its rollout per step, trained tokens per episode)."""
    from regym.agents.hf_policy import stop_token_ids_for
    from regym.rl import trl_bridge
    from regym.rl.config import RLConfig
    from regym.rl.rollout import play_groups
    from regym.rl.trl_bridge import RegymGRPOTrainer, env_reward, grpo_config, task_dataset

    config = RLConfig(env="echo", num_generations=args.group, tasks_per_step=args.tasks, num_envs=args.envs,
                      max_turns=args.turns, max_new_tokens=args.tokens, max_episode_tokens=4096, beta=0.0,
                      max_steps=args.steps + 1, save_steps=0, eval_every=0, use_cpu=True)
    EchoGame = echo_game_class(args.turns)

    model, tokenizer = build_model(args.hidden, args.layers)
    NeverStop(model, stop_token_ids_for(tokenizer))
    regym_trainer = RegymGRPOTrainer(
        model, args=grpo_config(config, "/tmp/regym-bench-rl", use_cpu=True), regym_config=config,
        envs=[EchoGame(max_turns=args.turns) for _ in range(args.envs)], reward_funcs=[env_reward],
        train_dataset=task_dataset(range(64)), processing_class=tokenizer)
    original = regym_trainer._rollout

    def rollout_with_random_reward(prompts, trainer):
        output = original(prompts, trainer)
        output["env_reward"] = [random.random() for _ in prompts]
        return output

    rollout_cpu = []

    def timed_rollout(prompts, trainer):
        start = time.process_time()
        output = rollout_with_random_reward(prompts, trainer)
        rollout_cpu.append(time.process_time() - start)
        return output

    regym_trainer.rollout_func = timed_rollout
    # The trainer plays through trl_bridge.play_groups: "before" is the same call with the cache off.
    trl_bridge.play_groups = functools.partial(play_groups, kv_cache=kv_cache)
    try:
        regym_time = time_steps(regym_trainer, args.steps)
    finally:
        trl_bridge.play_groups = play_groups
    episodes = regym_trainer.last_rollout
    regym_tokens = sum(sum(t.loss_mask) for t in episodes) / len(episodes)
    return regym_time, sum(rollout_cpu[1:]) / args.steps, regym_tokens


def trl_step(args) -> tuple[float, float]:
    """TRL's single-turn GRPO step on the same model and batch: (CPU s, wall s) per step."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from regym.agents.hf_policy import stop_token_ids_for
    from regym.agents.prompts import system_prompt
    from regym.rl.config import RLConfig
    from regym.rollout import env_id_of

    config = RLConfig(env="echo", num_generations=args.group, tasks_per_step=args.tasks, use_cpu=True)
    model, tokenizer = build_model(args.hidden, args.layers)
    NeverStop(model, stop_token_ids_for(tokenizer))
    # The very first prompt regym's episodes get (system prompt + first observation), so that the two
    # paths differ only by the multi-turn part.
    prompt = [{"role": "system", "content": system_prompt(env_id_of(echo_game_class(args.turns)()))},
              {"role": "user", "content": "You are in a room. There is a door to the north and a key on the table."}]
    trl_args = GRPOConfig(
        output_dir="/tmp/regym-bench-trl", per_device_train_batch_size=config.batch_episodes,
        num_generations=args.group, max_completion_length=args.turns * args.tokens, beta=0.0,
        loss_type=config.loss_type, learning_rate=config.learning_rate, use_cpu=True, bf16=False,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, max_steps=args.steps + 1,
        temperature=1.0, seed=0)
    trl_trainer = GRPOTrainer(model, reward_funcs=[random_reward], args=trl_args,
                              train_dataset=Dataset.from_dict({"prompt": [prompt] * 64}), processing_class=tokenizer)
    return time_steps(trl_trainer, args.steps)


def rollout_comparison(args) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    from regym.agents.hf_policy import HFPolicy, stop_token_ids_for
    from regym.rl.rollout import RolloutLimits, play_groups

    EchoGame = echo_game_class(args.turns)
    model, tokenizer = build_model(args.hidden, args.layers)
    NeverStop(model, stop_token_ids_for(tokenizer))
    policy = HFPolicy(model, tokenizer, max_new_tokens=args.tokens, seed=0)
    limits = RolloutLimits(args.turns, args.tokens, 4096)
    seeds = list(range(args.envs))

    def batched(kv_cache: bool) -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        play_groups(policy, [EchoGame(max_turns=args.turns) for _ in range(args.envs)], seeds=seeds, limits=limits,
                    kv_cache=kv_cache)
        return time.process_time() - cpu, time.perf_counter() - wall

    without_cache, with_cache = batched(False), batched(True)
    cpu, wall = time.process_time(), time.perf_counter()
    env = EchoGame(max_turns=args.turns)
    for seed in seeds:
        play_groups(policy, env, seeds=[seed], limits=limits, kv_cache=False)
    sequential = (time.process_time() - cpu, time.perf_counter() - wall)
    return without_cache, with_cache, sequential


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16, help="tokens per turn")
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(0)

    trl_time, trl_tokens = trl_step(args), args.turns * args.tokens
    before = regym_step(args, kv_cache=False)
    after = regym_step(args, kv_cache=True)
    print(f"\nRL step (batch {args.group * args.tasks} episodes, G={args.group}, {args.hidden}x{args.layers} Llama, "
          f"{args.threads} threads, CPU); ratios against TRL, CPU time")
    print("| path | trained tokens / episode | CPU s / step | rollout CPU s / step | ratio per step "
          "| ratio per token | wall s / step |")
    print("|---|---|---|---|---|---|---|")
    print(f"| TRL single-turn GRPO | {trl_tokens} | {trl_time[0]:.2f} | | 1.00 | 1.00 | {trl_time[1]:.2f} |")
    for name, ((cpu, wall), rollout_cpu, tokens) in (("no cache across turns", before), ("KV cache across turns", after)):
        per_step = cpu / trl_time[0]
        print(f"| regym multi-turn ({args.turns} turns), {name} | {tokens:.0f} | {cpu:.2f} | {rollout_cpu:.2f} | "
              f"{per_step:.2f} | {per_step * trl_tokens / tokens:.2f} | {wall:.2f} |")

    without_cache, with_cache, sequential = rollout_comparison(args)
    print(f"\nRollout of {args.envs} episodes x {args.turns} turns x {args.tokens} tokens")
    print("| loop | CPU s | speed-up | wall s | speed-up |")
    print("|---|---|---|---|---|")
    print(f"| one episode at a time | {sequential[0]:.2f} | 1.00 | {sequential[1]:.2f} | 1.00 |")
    for name, (cpu, wall) in ((f"batched, {args.envs} envs", without_cache),
                              (f"batched, {args.envs} envs, KV cache across turns", with_cache)):
        print(f"| {name} | {cpu:.2f} | {sequential[0] / cpu:.2f} | {wall:.2f} | {sequential[1] / wall:.2f} |")


if __name__ == "__main__":
    main()
