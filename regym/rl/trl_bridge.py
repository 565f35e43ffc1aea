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

The window context strategy (``context="window"``) makes each policy turn a row of its own,
R rows for B episodes, which TRL's ``rollout_func`` contract cannot carry: it "is responsible
for returning the correct number of completions per prompt (see ``num_generations``)", i.e.
one row per prompt it was handed. In ``_generate_and_score_completions`` (TRL 1.16) the rows'
rewards are ``torch.zeros(len(prompts), ...)`` with ``prompts = [x["prompt"] for x in inputs]``,
the fields ``rollout_func`` returns are copied into ``inputs`` only ``if i < len(values)``, the
advantages are ``rewards.view(-1, num_generations)`` and sliced to ``len(prompts)`` rows, so R
rows for B prompts give B advantages for an (R, T) batch. So ``_score_window_rows`` plays the
episodes first and hands TRL one input row per turn (a copy of its episode's row), with TRL's
grouping switched off (``num_generations`` = 1 for that call: rows are not groups of G), then puts
regym's per-row advantages (``turn_advantages``: the episode's GRPO/RLOO advantage, plus GiGPO's
step advantage) in place of TRL's, and logs reward and success over episodes, not rows.
``compute_loss`` then takes TRL's loss over chunks of ``batch_episodes`` rows, so one forward
pass never holds every turn of the step. Everything else is TRL's: the log-prob passes, the
KL term, the clipped loss. Loss normalisation
over rows: ``grpo`` averages each row's tokens, then the rows, so every turn weighs the same and
an episode weighs by its number of turns (as verl-agent and GiGPO train); ``dapo`` and ``bnpo``
divide by the batch's policy tokens, exactly as with the full context; ``dr_grpo`` divides by
R × ``max_new_tokens`` (its ``max_completion_length`` in this strategy).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer

from regym.agents.hf_policy import HFPolicy
from regym.agents.prompts import PromptFormat
from regym.agents.vllm_policy import cpu_engine_defaults, use_whole_prefills
from regym.eval.metrics import success_rate
from regym.rl.advantages import token_advantages, turn_advantages
from regym.rl.checkpoints import atomic_directory, prune_checkpoints
from regym.rl.config import RLConfig
from regym.rl.rollout import RolloutLimits, TurnRow, play_groups, play_window_groups
from regym.rl.vllm_rollout import vllm_arguments, vllm_rollout_policy
from regym.rl.vllm_sync import use_reload_sync
from regym.seeds import rl_sampling_seed
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
        log_metric("success_rate", success_rate(success))
    return [float(value) for value in env_reward]


def process_count() -> int:
    """How many processes train together, known before any trainer exists: the process group's size once
    one is up, else the launcher's ``WORLD_SIZE`` (``accelerate launch`` and ``torchrun`` set it), else 1."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def episodes_per_process(config: RLConfig, processes: int) -> int:
    """Each process's share of a step's ``batch_episodes``: ``tasks_per_step / processes`` whole GRPO groups.

    TRL's ``RepeatSampler`` yields the step's tasks, each repeated G times in a row, and accelerate deals
    that list out in consecutive slices of ``per_device_train_batch_size x steps_per_generation`` (the
    process's generation batch, split into micro-batches only after it is played), slice i to process i. A slice
    of whole groups means every group is played, rewarded and normalised on one process; TRL gathers the
    rewards of all processes before its group normalisation anyway, but regym's RLOO/GiGPO advantages and
    ``_play`` need the whole group locally. Also refuses what cannot run on several processes.
    """
    if processes < 1 or config.tasks_per_step % processes:
        raise ValueError(f"tasks_per_step ({config.tasks_per_step}) must be a multiple of the number of training "
                         f"processes ({processes}), so that each process plays whole groups of {config.num_generations} "
                         f"episodes: set tasks_per_step to a multiple of {processes}, or launch fewer processes")
    if processes > 1 and config.context == "window":
        raise ValueError(f"context 'window' runs in one process only, not {processes}: it trains one row per policy "
                         "turn, so processes hold different numbers of rows, and TRL gathers per-row tensors "
                         "(rewards, lengths) across processes, which needs equal counts. Use context 'full', or "
                         "launch one process")
    if processes > 1 and config.advantage_estimator == "gigpo" and config.scale_rewards == "batch":
        raise ValueError(f"advantage_estimator 'gigpo' with scale_rewards 'batch' runs in one process only, not "
                         f"{processes}: regym computes GiGPO's advantages from each process's own episodes, so 'batch' "
                         "would divide by that process's reward std, not the step's. Use scale_rewards 'group' or "
                         "'none', or advantage_estimator 'grpo' (TRL gathers the whole batch)")
    return config.batch_episodes // processes


def micro_batch_episodes(config: RLConfig, processes: int) -> int:
    """Episodes in one forward/backward pass of a process: its share of the step (``episodes_per_process``)
    over ``gradient_accumulation_steps``; ValueError naming the fix when that does not divide."""
    episodes, steps = episodes_per_process(config, processes), config.gradient_accumulation_steps
    if episodes % steps:
        raise ValueError(f"gradient_accumulation_steps ({steps}) must divide each process's {episodes} episodes "
                         f"({config.batch_episodes} over {processes} processes)")
    return episodes // steps


def grpo_config(config: RLConfig, output_dir: Path, use_cpu: bool) -> GRPOConfig:
    """TRL's config from regym's: one rollout batch per optimizer step, no TRL-side eval. With several
    processes (``accelerate launch``) the step's batch is split between them (``episodes_per_process``), and
    each process's share into ``gradient_accumulation_steps`` micro-batches: TRL generates for
    ``steps_per_generation`` micro-batches at once, so with both equal one rollout feeds one optimizer step."""
    return GRPOConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=micro_batch_episodes(config, process_count()),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        steps_per_generation=config.gradient_accumulation_steps,
        num_iterations=config.num_iterations,
        num_generations=config.num_generations,
        max_completion_length=config.max_new_tokens if config.context == "window" else config.max_episode_tokens,
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
        bf16=config.bf16 if config.bf16 is not None else not use_cpu and torch.cuda.is_bf16_supported(),
        fp16=False,
        logging_steps=1,
        save_strategy="steps" if config.save_steps > 0 else "no",
        save_steps=max(1, config.save_steps),
        save_total_limit=None,
        eval_strategy="no",
        report_to=["wandb"] if "wandb" in config.report_to else "none",  # TensorBoard: RunLog
        disable_tqdm=True,
        log_completions=False,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every parameter takes part in the loss: no extra DDP pass
        gradient_checkpointing=config.gradient_checkpointing,
        **vllm_arguments(config),
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
        self._window_batch: dict[str, list] | None = None  # the rows _rollout hands TRL (context "window")
        self.rollout_listeners: list[Callable[[int, list[Trajectory]], None]] = []
        beta, args.beta = args.beta, 0.0
        if args.use_vllm:
            cpu_engine_defaults()  # vLLM's CPU build: its KV cache size, read when TRL starts the engine
        try:
            super().__init__(model, args=args, rollout_func=self._rollout, **kwargs)
        finally:
            args.beta = beta
        if args.use_vllm:
            use_reload_sync(self.vllm_generation)  # vLLM's CPU build: TRL's in-place copy cannot reach its weights
            if self.vllm_generation.mode == "colocate":
                use_whole_prefills(self.vllm_generation.llm)  # vLLM's CPU build: a split seeded prefill crashes
        self._check_processes()
        if beta != 0.0:
            if ref_model is None:
                raise ValueError("beta > 0 needs the reference policy (the SFT model) as ref_model")
            self._install_reference(ref_model, beta)

    def _check_processes(self) -> None:
        """Refuse, at start-up, a process layout under which a step would split groups or hang."""
        config, processes = self.regym_config, self.accelerator.num_processes
        per_step = processes * self.args.per_device_train_batch_size * self.args.steps_per_generation
        if per_step != config.batch_episodes or self.args.gradient_accumulation_steps != self.args.steps_per_generation:
            raise ValueError(f"{processes} processes x {self.args.per_device_train_batch_size} episodes x "
                             f"{self.args.steps_per_generation} micro-batches do not make the step's "
                             f"{config.batch_episodes} in one rollout: build the GRPOConfig with grpo_config() in "
                             "the processes that train (under the launcher)")
        episodes_per_process(config, processes)
        if processes > 1 and (self._dist.is_fsdp or self._dist.is_zero3) and (
                config.generation == "hf" or config.eval_every > 0):
            raise ValueError(f"FSDP and DeepSpeed ZeRO-3 shard the weights over the {processes} processes, so every "
                             "forward pass is a collective that all of them must make together; regym's HF rollouts "
                             "(generation 'hf') and its evaluations (eval_every > 0, on the main process) run the "
                             "model on one process's episodes alone and would hang. With sharded weights use "
                             "generation 'vllm' and eval_every 0 (evaluate the saved checkpoints with rl-eval), "
                             "or DDP (configs/accelerate/ddp.yaml) when the model fits on one GPU")

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
    def _play(self, prompts: list[str]) -> tuple[list[Trajectory], list[list[TurnRow]] | None]:
        """Play every group of identical prompts as G episodes of its task; rows only with context "window"."""
        started = time.perf_counter()  # last_rollout_seconds: regym.rl.accounting's time/rollout_s
        config, group = self.regym_config, self.regym_config.num_generations
        if len(prompts) % group:
            raise ValueError(f"{len(prompts)} prompts do not form groups of {group}")
        seeds = []
        for start in range(0, len(prompts), group):
            if len(set(prompts[start:start + group])) != 1:
                raise ValueError("TRL did not hand over whole groups of identical prompts")
            seeds.append(int(json.loads(prompts[start])["seed"]))
        # Reproducible on resume; each process of a multi-process run draws its own stream (process 0 as alone).
        seed = rl_sampling_seed(config.seed, self.state.global_step, self.accelerator.process_index)
        if config.generation == "vllm":  # TRL's engine, synced to the trainer's weights (regym.rl.vllm_rollout)
            policy = vllm_rollout_policy(self, seed)
        else:
            policy = HFPolicy(self.accelerator.unwrap_model(self.model), self.processing_class,
                              temperature=config.temperature, top_p=config.top_p,
                              max_new_tokens=config.max_new_tokens, seed=seed)
        limits = RolloutLimits(config.max_turns, config.max_new_tokens, config.max_episode_tokens)
        prompt_format = PromptFormat(style=config.prompt_style)
        rows = None
        if config.context == "window":
            trajectories, rows = play_window_groups(policy, self.regym_envs, history_turns=config.history_turns,
                                                    seeds=seeds, group_size=group, limits=limits,
                                                    prompt_format=prompt_format)
        else:
            trajectories = play_groups(policy, self.regym_envs, seeds=seeds, group_size=group, limits=limits,
                                       prompt_format=prompt_format)
        self.last_rollout, self.last_rollout_rows = trajectories, rows
        self.last_rollout_seconds = time.perf_counter() - started
        for listener in self.rollout_listeners:
            listener(self.state.global_step, trajectories)
        return trajectories, rows

    def _rollout(self, prompts: list[str], trainer: GRPOTrainer) -> dict[str, list]:
        if self.regym_config.context == "window":  # played by _score_window_rows, one prompt per row
            batch, self._window_batch = self._window_batch, None
            if batch is None or len(batch["prompt_ids"]) != len(prompts):
                raise RuntimeError("context 'window': TRL asked for rows that _score_window_rows did not play")
            return batch
        config = self.regym_config
        trajectories, _ = self._play(prompts)
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
        config = self.regym_config
        if config.context == "window" and self.model.training:
            return self._score_window_rows(inputs)
        output = super()._generate_and_score_completions(inputs)
        if config.advantage_estimator == "grpo" or not self.model.training:
            return output
        trajectories = self.last_rollout
        rewards = [episode_reward(t, config.reward) for t in trajectories]
        per_token = token_advantages(trajectories, rewards, config.num_generations,
                                     estimator=config.advantage_estimator, scale=config.scale_rewards,
                                     step_weight=config.gigpo_step_weight, gamma=config.gigpo_gamma)
        completion_ids = output["completion_ids"]
        advantages = torch.zeros(completion_ids.shape, dtype=torch.float32, device=completion_ids.device)  # (B, T)
        for row, values in enumerate(per_token):
            if values:
                advantages[row, :len(values)] = torch.tensor(values[:advantages.shape[1]])
        output["advantages"] = advantages
        return output

    def _score_window_rows(self, inputs):
        """TRL's scoring over one row per policy turn (context "window"); see the module docstring."""
        config = self.regym_config
        trajectories, rows = self._play([x["prompt"] for x in inputs])
        rewards = [episode_reward(t, config.reward) for t in trajectories]
        advantages = turn_advantages(trajectories, rewards, config.num_generations, [len(r) for r in rows],
                                     estimator=config.advantage_estimator, scale=config.scale_rewards,
                                     step_weight=config.gigpo_step_weight, gamma=config.gigpo_gamma)
        episode_of_row = [index for index, episode_rows in enumerate(rows) for _ in episode_rows]
        flat = [row for episode_rows in rows for row in episode_rows]
        self._window_batch = {
            "prompt_ids": [row.prompt_ids for row in flat],
            "completion_ids": [row.completion_ids for row in flat],
            "logprobs": [row.logprobs for row in flat],
            "env_mask": [row.loss_mask for row in flat],
            "env_reward": [rewards[index] for index in episode_of_row],
            "success": [float(trajectories[index].success) for index in episode_of_row],
            "num_turns": [trajectories[index].num_turns for index in episode_of_row],
        }
        group, self.num_generations = self.num_generations, 1  # TRL's (R,) -> (-1, G) grouping: rows are no groups
        try:
            output = super()._generate_and_score_completions([dict(inputs[index]) for index in episode_of_row])
        finally:
            self.num_generations = group
        output["advantages"] = torch.tensor([value for values in advantages for value in values],
                                            dtype=torch.float32, device=output["completion_ids"].device)  # (R,)
        self._log_episode_metrics(trajectories, rewards)
        return output

    def _log_episode_metrics(self, trajectories: list[Trajectory], rewards: list[float]) -> None:
        """Replace the reward and success TRL just logged as means over rows with means over episodes."""
        metrics = self._metrics["train"]
        values = torch.tensor(rewards, dtype=torch.float64)
        group_std = values.view(-1, self.regym_config.num_generations).std(dim=1)
        episode = {"reward": values.mean().item(), "reward_std": values.std().item(),
                   "frac_reward_zero_std": torch.isclose(group_std, torch.zeros_like(group_std)).double().mean().item(),
                   "success_rate": success_rate(t.success for t in trajectories)}
        for name in self.reward_func_names:
            if name == env_reward.__name__:
                episode[f"rewards/{name}/mean"], episode[f"rewards/{name}/std"] = episode["reward"], episode["reward_std"]
        for key, value in episode.items():
            if metrics.get(key):
                metrics[key][-1] = value

    # --- the loss over row chunks (context "window") ------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """With context "window", TRL's loss over chunks of ``per_device_train_batch_size`` rows.

        A step's R rows (every turn of every episode) would otherwise share one forward pass with
        gradients: 16 episodes of 30 turns are 480 rows. Rows of similar length share a chunk, each
        chunk is cut to its own longest row and its backward is taken at once, so a forward pass
        holds at most ``batch_episodes`` rows of at most ``max_episode_tokens``, as with the full
        context. Each chunk's loss is weighted so the sum is the loss over all rows: rows/R for
        ``grpo`` and ``dr_grpo``, policy tokens/all policy tokens for ``bnpo``, 1 for ``dapo``
        (already divided by the batch's policy tokens). Logged kl, entropy and clip ratios are
        means over chunks.
        """
        rows, size = inputs["completion_ids"].shape[0], self.args.per_device_train_batch_size
        if self.regym_config.context != "window" or not model.training or return_outputs or rows <= size:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mask = inputs["completion_mask"] * inputs["tool_mask"] if "tool_mask" in inputs else inputs["completion_mask"]
        lengths = inputs["prompt_mask"].sum(1) + inputs["completion_mask"].sum(1)  # (R,)
        order = torch.argsort(lengths)
        chunks = [order[start:start + size] for start in range(0, rows, size)]
        done = torch.zeros((), device=mask.device)  # the chunks already backpropagated (their loss, detached)
        for chunk in chunks:
            if self.loss_type == "dapo":
                weight = 1.0
            elif self.loss_type == "bnpo":
                weight = (mask[chunk].sum() / mask.sum().clamp(min=1)).item()
            else:
                weight = len(chunk) / rows
            loss = weight * super().compute_loss(model, _row_chunk(inputs, chunk), False, num_items_in_batch)
            if chunk is chunks[-1]:
                return done + loss  # Trainer.training_step takes this one's backward
            self.accelerator.backward(loss)
            done = done + loss.detach()

    # --- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        """Write checkpoint-N into a hidden temp folder, add regym's state, then rename: never half-written.

        Every process takes part (Trainer writes each one's RNG state; FSDP and ZeRO-3 gather the weights
        together), all into the main process's temp folder, which the main process renames once all are done.
        """
        run_dir = Path(self.args.output_dir)
        final = run_dir / f"checkpoint-{self.state.global_step}"
        main = self.accelerator.is_main_process
        with ExitStack() as stack:
            shared = [stack.enter_context(atomic_directory(final)) if main else None]
            if self.accelerator.num_processes > 1:
                torch.distributed.broadcast_object_list(shared, src=0)
            staging = shared[0]
            original = self.args.output_dir
            self.args.output_dir = str(staging.parent)
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.args.output_dir = original
            if main and self.regym_before_save is not None:
                self.regym_before_save(staging)
            self.accelerator.wait_for_everyone()
        if main:
            prune_checkpoints(run_dir, keep=self.regym_config.save_total_limit)


PROMPT_KEYS = ("prompt_ids", "prompt_mask")


def _row_chunk(inputs: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    """The scored batch restricted to ``rows``, cut to their longest prompt (left-padded) and completion
    (right-padded). Per-row tensors are those whose first dimension is the batch's rows; of those, the
    prompt's are ``PROMPT_KEYS`` and every other (rows, completion width) one is per completion token."""
    count = inputs["completion_ids"].shape[0]
    completion_width = inputs["completion_mask"].shape[1]
    prompt_from = inputs["prompt_mask"].shape[1] - int(inputs["prompt_mask"][rows].sum(1).max())
    completion_to = int(inputs["completion_mask"][rows].sum(1).max())
    chunk = {}
    for key, value in inputs.items():
        if not (isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == count):
            chunk[key] = value  # e.g. num_items_in_batch
            continue
        value = value[rows]
        if key in PROMPT_KEYS:
            value = value[:, prompt_from:]
        elif value.ndim == 2 and value.shape[1] == completion_width:  # per completion token
            value = value[:, :completion_to]
        chunk[key] = value
    return chunk
