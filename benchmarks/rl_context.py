"""Step time and longest training sequence of ``rl-train``'s two context strategies on ALFWorld.

A random Llama of the tiny pipeline's size (hidden 192, 3 layers, BPE 4096 trained on ALFWorld
text, ``--positions`` positions so the full context is not cut) plays ``--turns``-turn ALFWorld
episodes; random replies are invalid, so every episode runs to the limit. Each context runs
``--steps`` steps of ``rl-train`` (the same tasks in both, by the same seed) and prints per step:
wall time, the rollout's share, the rows TRL trained on and the longest training sequence.

    python benchmarks/rl_context.py [--steps 2] [--turns 30] [--tasks 2] [--group 2] [--out /tmp/rl_context]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch


def build_model(folder: Path, positions: int) -> None:
    """The random model and a tokenizer trained on random-agent ALFWorld play, once."""
    if (folder / "config.json").is_file():
        return
    import gymnasium as gym
    from transformers import AutoModelForCausalLM

    from regym.agents.prompts import PromptFormat, build_messages
    from regym.envs import register_envs
    from regym.recipes.tiny import TinyPipelineConfig, tiny_llama_config, train_tokenizer
    from regym.rollout import rollout

    class RandomAdmissible:
        name = "random"

        def __init__(self):
            self.rng = random.Random(0)

        def act(self, trajectories):
            return [self.rng.choice(list(t.info.get("admissible_actions") or ["look"])) for t in trajectories]

    register_envs()
    env = gym.make("regym/ALFWorld-v0", split="in_distribution", max_turns=15, num_tasks=16)
    texts = [message["content"] for trajectory in rollout([env], RandomAdmissible(), seeds=list(range(16)))
             for message in build_messages(trajectory, PromptFormat(), include_current=False)]
    tokenizer = train_tokenizer(texts, 4096)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_llama_config(tokenizer, TinyPipelineConfig(max_length=positions)))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def run(context: str, args: argparse.Namespace) -> dict:
    from regym.rl import trl_bridge
    from regym.rl.config import load_config
    from regym.rl.train import read_jsonl, train

    batches, rollout_seconds = [], []
    score, play = trl_bridge.RegymGRPOTrainer._generate_and_score_completions, trl_bridge.RegymGRPOTrainer._play

    def measured_score(self, inputs):
        output = score(self, inputs)
        lengths = output["prompt_mask"].sum(1) + output["completion_mask"].sum(1)
        batches.append({"rows": int(lengths.numel()), "longest": int(lengths.max())})
        return output

    def timed_play(self, prompts):
        start = time.time()
        result = play(self, prompts)
        rollout_seconds.append(round(time.time() - start, 1))
        return result

    trl_bridge.RegymGRPOTrainer._generate_and_score_completions = measured_score
    trl_bridge.RegymGRPOTrainer._play = timed_play
    out = args.out / f"run-{context}"
    overrides = {"env": "alfworld", "model": str(args.out / "model"), "output_dir": str(out), "context": context,
                 "max_turns": args.turns, "max_steps": args.steps, "num_generations": args.group,
                 "tasks_per_step": args.tasks, "num_envs": args.tasks * args.group, "num_tasks": 16,
                 "env_kwargs": {"num_tasks": 16}, "eval_every": 0, "save_steps": 0, "report_to": [],
                 "progress": False, "use_cpu": True}
    if context == "full":
        overrides["max_episode_tokens"] = args.positions
    try:
        start = time.time()
        train(load_config(None, overrides))
    finally:
        trl_bridge.RegymGRPOTrainer._generate_and_score_completions = score
        trl_bridge.RegymGRPOTrainer._play = play
    ends = [row["time"] for row in read_jsonl(out / "metrics.jsonl")]
    steps = [round(end - begin, 1) for begin, end in zip([start, *ends], ends, strict=False)]
    turns = [len(row["turns"]) for row in read_jsonl(out / "rollouts.jsonl")]
    return {"context": context, "step_seconds": steps, "rollout_seconds": rollout_seconds, "batches": batches,
            "episode_turns": turns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--group", type=int, default=2)
    parser.add_argument("--positions", type=int, default=16384)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rl_context"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    build_model(args.out / "model", args.positions)
    for context in ("window", "full"):
        print(json.dumps(run(context, args)))


if __name__ == "__main__":
    main()
