"""regym's multi-turn rollouts inside TRL's ``GRPOTrainer``.

TRL (>= 1.16) lets a ``rollout_func(prompts, trainer)`` replace its generation. Ours plays
each prompt's task as a full multi-turn episode with ``regym.rl.rollout.play_groups`` and
returns, per episode: ``prompt_ids`` (the opening prompt), ``completion_ids`` (every later
token: policy turns and env turns), ``logprobs`` (behaviour log-probs, 0 on env tokens) and
``env_mask`` (1 on policy tokens), which TRL applies as its ``tool_mask`` so env text is
never trained. The env's reward reaches TRL's reward function as an extra field.

TRL's loss types (``grpo``, ``dr_grpo``, ``dapo``, ``bnpo``), clip-higher
(``epsilon_high``), the KL term and its logging are used as they are. What TRL's hooks
cannot express, and the one override this module makes: TRL computes one advantage per
sequence from the summed rewards. RLOO's leave-one-out baseline and GiGPO's step-level
advantages need regym's own values (GiGPO's differ per turn, so per token);
``RegymGRPOTrainer._generate_and_score_completions`` replaces ``advantages`` with a
``(B, T)`` tensor from ``regym.rl.advantages``, a shape TRL's loss accepts by design.
Checkpoints are written atomically (``_save_checkpoint``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer

from regym.agents.hf_policy import HFPolicy
from regym.agents.prompts import PromptFormat
from regym.rl.advantages import token_advantages
from regym.rl.checkpoints import atomic_directory, prune_checkpoints
from regym.rl.config import RLConfig
from regym.rl.rollout import RolloutLimits, play_groups
from regym.trajectory import Trajectory

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def task_prompt(seed: int) -> str:
    """The dataset row for one training task (TRL hands rows to ``rollout_func`` as prompts)."""
    return json.dumps({"seed": int(seed)})


def task_dataset(seeds: Sequence[int]):
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [task_prompt(seed) for seed in seeds]})


def episode_reward(trajectory: Trajectory, kind: str) -> float:
    if trajectory.error is not None:
        return 0.0
    return float(trajectory.success) if kind == "success" else trajectory.total_reward


def env_reward(prompts, completions, env_reward, success, log_metric=None, **_):
    """TRL reward function: the env's episode reward, already computed by the rollout."""
    if log_metric is not None:
        log_metric("success_rate", sum(success) / max(1, len(success)))
    return [float(value) for value in env_reward]


def grpo_config(config: RLConfig, output_dir: Path, use_cpu: bool) -> GRPOConfig:
    """TRL's config from regym's: one rollout batch per optimizer step, no TRL-side eval."""
    return GRPOConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_episodes,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=config.num_iterations,
        num_generations=config.group_size,
        max_completion_length=config.max_episode_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        epsilon=config.epsilon,
        epsilon_high=config.epsilon_high,
        beta=config.beta,
        learning_rate=config.learning_rate,
        max_grad_norm=config.max_grad_norm,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="constant_with_warmup",
        max_steps=config.max_steps,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=use_cpu,
        bf16=False if use_cpu else torch.cuda.is_bf16_supported(),
        fp16=False,
        logging_steps=1,
        save_strategy="steps" if config.save_every > 0 else "no",
        save_steps=max(1, config.save_every),
        save_total_limit=None,
        eval_strategy="no",
        report_to=["wandb"] if config.wandb else "none",
        disable_tqdm=True,
        log_completions=False,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        gradient_checkpointing=False,
    )


class RegymGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with regym's rollout, regym's RLOO/GiGPO advantages and atomic checkpoints."""

    def __init__(self, model: Any, *, args: GRPOConfig, regym_config: RLConfig, envs: Sequence[Any],
                 ref_model: Any = None, before_save: Callable[[Path], None] | None = None, **kwargs: Any):
        """``ref_model``: the KL reference (the SFT checkpoint); required when ``args.beta > 0``.

        TRL would rebuild the reference from the policy's own path, which after rejuvenation
        is the wrong model, so TRL is built with beta = 0 and the given reference is put in place.
        """
        self.regym_config = regym_config
        self.regym_envs = list(envs)
        self.regym_before_save = before_save
        self.last_rollout: list[Trajectory] = []
        self.rollout_listeners: list[Callable[[int, list[Trajectory]], None]] = []
        beta, args.beta = args.beta, 0.0
        try:
            super().__init__(model, args=args, rollout_func=self._rollout, **kwargs)
        finally:
            args.beta = beta
        if beta != 0.0:
            if ref_model is None:
                raise ValueError("beta > 0 needs the reference policy (the SFT model) as ref_model")
            self._install_reference(ref_model, beta)

    def _install_reference(self, ref_model: Any, beta: float) -> None:
        """What TRL's __init__ does for its own reference: no dropout, fused log-prob head, prepared."""
        from trl.trainer.utils import add_fused_lm_head, disable_dropout_in_model

        ref_model = ref_model.to(self.accelerator.device).eval()
        ref_model.requires_grad_(False)
        if self.args.disable_dropout:
            disable_dropout_in_model(ref_model)
        add_fused_lm_head(ref_model, temperature=self.temperature, cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32)
        self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)
        self.beta = beta

    # --- rollout_func -------------------------------------------------------------------
    def _rollout(self, prompts: list[str], trainer: GRPOTrainer) -> dict[str, list]:
        config, group = self.regym_config, self.regym_config.group_size
        if len(prompts) % group:
            raise ValueError(f"{len(prompts)} prompts do not form groups of {group}")
        seeds = []
        for start in range(0, len(prompts), group):
            if len(set(prompts[start:start + group])) != 1:
                raise ValueError("TRL did not hand over whole groups of identical prompts")
            seeds.append(int(json.loads(prompts[start])["seed"]))
        model = self.accelerator.unwrap_model(self.model)
        policy = HFPolicy(model, self.processing_class, temperature=config.temperature, top_p=config.top_p,
                          max_new_tokens=config.max_new_tokens,
                          seed=config.seed * 1_000_003 + self.state.global_step)  # reproducible on resume
        limits = RolloutLimits(config.max_turns, config.max_new_tokens, config.max_episode_tokens)
        trajectories = play_groups(policy, self.regym_envs, seeds=seeds, group_size=group, limits=limits,
                                   prompt_format=PromptFormat(style=config.prompt_style))
        self.last_rollout = trajectories
        for listener in self.rollout_listeners:
            listener(self.state.global_step, trajectories)
        pad = self.processing_class.pad_token_id
        completions = [t.token_ids[t.prompt_length:] for t in trajectories]
        return {
            "prompt_ids": [t.token_ids[:t.prompt_length] for t in trajectories],
            # An episode that failed before the policy spoke has no completion: one masked pad token.
            "completion_ids": [ids or [pad] for ids in completions],
            "logprobs": [t.logprobs[t.prompt_length:] or [0.0] for t in trajectories],
            "env_mask": [t.loss_mask[t.prompt_length:] or [0] for t in trajectories],
            "env_reward": [episode_reward(t, config.reward) for t in trajectories],
            "success": [float(t.success) for t in trajectories],
            "num_turns": [t.num_turns for t in trajectories],
        }

    # --- advantages TRL cannot compute ----------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        config = self.regym_config
        if config.advantage_estimator == "grpo" or not self.model.training:
            return output
        trajectories = self.last_rollout
        rewards = [episode_reward(t, config.reward) for t in trajectories]
        per_token = token_advantages(trajectories, rewards, config.group_size,
                                     estimator=config.advantage_estimator, scale=config.scale_rewards,
                                     step_weight=config.gigpo_step_weight, gamma=config.gigpo_gamma)
        completion_ids = output["completion_ids"]
        advantages = torch.zeros(completion_ids.shape, dtype=torch.float32, device=completion_ids.device)  # (B, T)
        for row, values in enumerate(per_token):
            if values:
                advantages[row, :len(values)] = torch.tensor(values[:advantages.shape[1]])
        output["advantages"] = advantages
        return output

    # --- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        """Write checkpoint-N into a hidden temp folder, add regym's state, then rename: never half-written."""
        run_dir = Path(self.args.output_dir)
        final = run_dir / f"checkpoint-{self.state.global_step}"
        with atomic_directory(final) as staging:
            original = self.args.output_dir
            self.args.output_dir = str(staging.parent)
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.args.output_dir = original
            if self.regym_before_save is not None:
                self.regym_before_save(staging)
        prune_checkpoints(run_dir, keep=self.regym_config.keep_checkpoints)
