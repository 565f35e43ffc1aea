"""The one config of ``rl-train``: a dataclass, over which the env family's ``rl_defaults``, a preset,
a YAML file and flags apply, in that order (``resolve_config``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from regym.envs.spec import EnvSpec

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
ESTIMATORS = ("grpo", "rloo", "gigpo")
CONTEXTS = ("full", "window")
ENV_DEFAULT_FIELDS = ("max_turns", "max_new_tokens", "max_episode_tokens", "context", "history_turns")
"""The fields an env family may set in its class attribute ``rl_defaults``."""
SOURCES = ("default", "env", "preset", "file", "flag")
"""Where a resolved field's value comes from, lowest priority first."""
GENERATIONS = ("hf", "vllm")
VLLM_MODES = ("colocate", "server")
REPORTERS = ("tensorboard", "wandb")
"""What ``report_to`` may name (TRL's names)."""
RENAMED = {"group_size": "num_generations", "save_every": "save_steps", "keep_checkpoints": "save_total_limit"}
"""Old field names (flags and YAML keys still accepted, with a warning) → TRL's names."""
LEGACY_SWITCHES = ("tensorboard", "wandb")
"""Old on/off fields now written as ``report_to`` entries (``--no-tensorboard``, ``wandb: true``)."""
LEGACY_FLAGS = {**{old: int for old in RENAMED}, **dict.fromkeys(LEGACY_SWITCHES, bool)}
"""The old flags, hidden from ``--help``, by type."""
IMPORTANCE_SAMPLING = ("sequence_mask", "sequence_truncate", "token_mask", "token_truncate", "none")
"""TRL's ``vllm_importance_sampling_mode`` values, and "none" (no correction)."""

PRESETS: dict[str, dict[str, Any]] = {
    # The default: a tiny model regym builds and SFTs on expert demos; learns on a laptop CPU.
    "tiny": {},
    # The real SmolLM2-135M-Instruct (packaged GGUF) for GPU runs.
    "smollm2": {
        "model": "smollm2",
        "learning_rate": 1e-6,
        "num_generations": 8,
        "tasks_per_step": 4,
        "num_envs": 16,
        "max_new_tokens": 48,
        "max_episode_tokens": 2048,
        "max_steps": 200,
        "eval_every": 25,
        "eval_episodes": 64,
        "use_cpu": False,
    },
}

# Presets for the user's own SFT checkpoint of a common family (--model PATH is required). They differ by
# size, not family: what changes from 0.5B to 8B is the memory plan. Batch shape as verl-agent's GiGPO
# ALFWorld recipe (examples/gigpo_trainer/run_alfworld.sh: 16 tasks x 8 episodes); learning rate TRL's GRPO
# default. Colocated vLLM takes 0.3 of each GPU at <= 1.7B (TRL's default) and 0.45 at 7-8B (bf16 weights
# ~16 GB plus a KV cache on an 80 GB GPU; the trainer's FSDP/ZeRO-3 shards take the rest). Not yet tuned by
# any GPU run.
_SMALL_CHECKPOINT = {
    "learning_rate": 1e-6,
    "num_generations": 8,
    "tasks_per_step": 16,
    "num_envs": 64,
    "max_new_tokens": 128,
    "max_episode_tokens": 4096,
    "max_steps": 200,
    "eval_every": 25,
    "eval_episodes": 64,
    "use_cpu": False,
    "bf16": True,
    "gradient_checkpointing": True,
    "generation": "vllm",
    "vllm_mode": "colocate",
    "vllm_gpu_memory_utilization": 0.3,
}
_LARGE_CHECKPOINT = {**_SMALL_CHECKPOINT, "vllm_gpu_memory_utilization": 0.45}
CHECKPOINT_PRESETS: dict[str, str] = {
    "qwen2.5-0.5b": "Qwen2.5-0.5B/1.5B-style (Qwen2ForCausalLM)",
    "qwen2.5-7b": "Qwen2.5-7B-style (Qwen2ForCausalLM)",
    "qwen3-0.6b": "Qwen3-0.6B/1.7B-style (Qwen3ForCausalLM)",
    "qwen3-8b": "Qwen3-8B-style (Qwen3ForCausalLM)",
    "llama3.2-1b": "Llama-3.2-1B-style (LlamaForCausalLM)",
    "llama3.1-8b": "Llama-3.1-8B-style (LlamaForCausalLM)",
}
"""Presets that tune rl-train for a checkpoint the user brings (``--model PATH``), with the models they fit."""
PRESETS.update({name: dict(_LARGE_CHECKPOINT if name.endswith(("7b", "8b")) else _SMALL_CHECKPOINT)
                for name in CHECKPOINT_PRESETS})


@dataclass
class RLConfig:
    """Multi-turn GRPO-family RL on a regym env (TRL ``GRPOTrainer`` underneath)."""

    env: str = "textworld"
    """Env id or short name (``regym envs`` lists them)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword options for the env constructor (besides split and max_turns)."""
    preset: str = "tiny"
    """Named defaults: "tiny" (CPU, regym-built tiny model), "smollm2" (SmolLM2-135M-Instruct, GPU), or one for
    your own checkpoint (needs --model PATH; GPU, bf16, vLLM): qwen2.5-0.5b, qwen2.5-7b, qwen3-0.6b, qwen3-8b,
    llama3.2-1b, llama3.1-8b."""
    model: str | None = None
    """Policy checkpoint (the SFT model): an HF folder, or "smollm2". None: build the tiny pipeline."""
    base: str | None = None
    """Base checkpoint that rejuvenation anchors to (needed with --rejuvenate and --model)."""
    rejuvenate: bool = False
    """Initialise the policy from rejuvenate(base, sft); the KL reference stays the SFT model."""
    reference: str | None = None
    """The KL reference policy (a checkpoint folder; unused when beta is 0). None: the SFT checkpoint ``model``
    (the paper's rule), also when ``rejuvenate`` is on. The handoff lab sets it when it hands RL a checkpoint it
    rejuvenated itself, so the reference stays the SFT checkpoint."""
    alpha: float = 0.5
    """Fusion weight: θ = α·θ_sft + (1−α)·θ_base."""
    reset_fraction: float = 0.01
    """Fraction of neurons reset toward the base."""
    reset_strength: float = 1.0
    """ω: θ_reset = ω·θ_base + (1−ω)·θ_fuse (1 = full reset to base)."""
    reset_criterion: str = "attribution"
    """Which neurons to reset (see regym.rejuvenation)."""
    reset_fallback_criterion: str | None = None
    """A criterion that needs no calibration data (e.g. "drift"), used only when the asked criterion's
    calibration set cannot be made (the env has no expert); the switch is recorded in rejuvenation.json.
    None: such a run stops with an error naming the fixes."""
    calibration_episodes: int = 8
    """Expert episodes of the env used as rejuvenation's calibration set."""
    output_dir: str = "runs/rl"
    """Where checkpoints, logs, curves and the final model go."""
    seed: int = 0
    """Seed of the trainer, the task order and the sampling."""
    pipeline_seed: int = 0
    """Seed of the tiny pipeline (when no model is given); RL seeds share one pipeline."""

    # Tasks and episodes
    num_tasks: int = 64
    """Training tasks: reset seeds 0..num_tasks-1 of the in-distribution split."""
    num_generations: int = 4
    """G: episodes per task in one GRPO group (TRL's name; formerly ``group_size``)."""
    tasks_per_step: int = 4
    """Tasks per optimizer step (the step's batch is tasks_per_step × num_generations episodes). Measured on the
    tiny TextWorld pipeline: with 2 tasks × 8 each update followed whichever two games it drew; seed 0 rose
    from 0.31 to 0.59 in 30 steps, seed 1 stayed at 0.45 -> 0.44."""
    num_envs: int = 8
    """Env instances stepped in lock-step (episodes generated at once)."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step (TRL's name). A step still plays its ``batch_episodes`` episodes as one
    rollout (TRL's generation batch), then runs the log-prob passes, loss and backward over this many slices of
    them, summing the gradients: the same update in less memory. Measured on SmolLM2-135M (TextWorld, 32
    episodes of up to 1k tokens, float32, CPU): in 1 pass the run was killed by the OOM killer at 16.9 GB on its
    way up; in 4 micro-batches of 8 it peaked at 15.8 GiB (docs/scale.md). Must divide each process's episodes;
    context "full" only (the window context already chunks its rows' loss, ``RegymGRPOTrainer.compute_loss``)."""
    env_url: str | None = None
    """A ``regym serve-env`` server of this env (e.g. http://127.0.0.1:8000): training and evaluation episodes
    are played there through RemoteEnv sessions, identical by seed to local ones. None: in this process."""
    env_workers: int = 0
    """Ray env workers hosting the training envs (steps overlap across cores and nodes; a worker that dies
    fails only its episodes and is restarted). 0: the envs run in this process. Needs ``regym[ray]``;
    RAY_ADDRESS joins a cluster."""
    max_turns: int = 6
    """Policy turns per episode; the episode is truncated after that. (This and the next four fields default to
    the env family's ``rl_defaults``; these defaults are TextWorld's.)"""
    max_new_tokens: int = 16
    """Tokens per policy turn (transformers' ``max_new_tokens`` of each reply). Not TRL's
    ``max_completion_length``: in TRL's multi-turn GRPO that is the whole completion's budget, here
    ``max_episode_tokens`` (context "full") or this (context "window"), which rl-train passes to TRL."""
    max_episode_tokens: int = 1024
    """Tokens in one training sequence, truncated beyond: with context "full" the episode's whole sequence
    (prompt, turns, env text); with "window" one turn's row (its prompt + reply). Evaluation plays like
    rl-eval instead: it drops the oldest exchanges so each prompt fits the model's context."""
    context: str = "full"
    """How a policy turn sees the episode: "full" (one growing token sequence per episode, one training row)
    or "window" (each turn its own prompt: task, last history_turns exchanges, observation; one row per turn)."""
    history_turns: int = 2
    """With context "window": past exchanges a prompt shows besides the first one (which states the task)."""
    prompt_style: str = "plain"
    """"plain" (action only) or "react" (Thought/Action)."""
    temperature: float = 1.0
    """Sampling temperature of rollouts (and of the loss's log-probs)."""
    top_p: float = 1.0
    """Nucleus sampling for rollouts."""
    reward: str = "env"
    """"env" (sum of env rewards) or "success" (1 if the episode was won, else 0)."""
    dense_reward: bool = True
    """Train on the env's dense progress reward where it has one (its ``dense_reward`` option; TextWorld:
    progress along the winning walkthrough, potential-based so the best policy is unchanged). Evaluation
    always plays the env's own reward; success is the same either way."""

    # Objective
    loss_type: str = "grpo"
    """TRL loss aggregation: "grpo" (per-sequence mean), "dr_grpo", "dapo" (token-level), "bnpo"."""
    advantage_estimator: str = "grpo"
    """"grpo" (group-normalised), "rloo" (leave-one-out) or "gigpo" (episode + step-level)."""
    scale_rewards: str = "group"
    """Advantage scaling: "group", "batch" or "none" (Dr. GRPO)."""
    epsilon: float = 0.2
    """PPO clip range (lower side)."""
    epsilon_high: float | None = None
    """Upper clip range; > epsilon is DAPO's clip-higher (e.g. 0.28). None: same as epsilon."""
    beta: float = 0.02
    """KL coefficient toward the reference policy (``reference``; default the SFT checkpoint). 0 disables it."""
    gigpo_step_weight: float = 1.0
    """ω of GiGPO: weight of the step-level advantage."""
    gigpo_gamma: float = 0.95
    """Discount of GiGPO's step returns."""
    learning_rate: float = 1e-4
    """AdamW learning rate (the tiny default model; SmolLM2's preset uses 1e-6). Measured on the tiny TextWorld
    pipeline: 1e-4 raised ID success 0.31 -> 0.59 in 30 steps; 2e-4 reached 0.48; 5e-4 and above wrecked
    the policy within 10 steps (actions from other games, repeated moves)."""
    num_iterations: int = 1
    """μ of GRPO: optimizer steps on each rollout batch (> 1 reuses it, with the PPO clip guarding the ratio)."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    warmup_steps: int = 0
    """Linear warm-up steps."""
    max_steps: int = 40
    """Optimizer steps (one rollout batch each)."""

    # Generation engine and precision
    generation: str = "hf"
    """What generates the rollouts: "hf" (regym's HFPolicy on the training model, any device) or "vllm" (TRL's
    vLLM engine, the trainer's weights pushed to it before each step's rollout; needs CUDA and regym[vllm], or
    on a CPU vLLM's CPU build: ``make vllm``, colocate mode). "hf" stays the default where vLLM is installed:
    on a CPU its rollouts were 2.2-5x faster but the GRPO step 1.06-1.38x slower per token at batch 32 (TRL adds
    a log-prob pass for its importance-sampling correction; docs/scale.md)."""
    vllm_mode: str = "colocate"
    """With generation "vllm": "colocate" (a vLLM engine inside each training process, on its GPU) or "server"
    (a ``trl vllm-serve`` server on GPUs of its own, at vllm_server_base_url)."""
    vllm_gpu_memory_utilization: float = 0.3
    """With vllm_mode "colocate": the share of each GPU's memory vLLM takes for its weights and KV cache (TRL's
    default); training has the rest. A server sets its own (``trl vllm-serve --gpu-memory-utilization``)."""
    vllm_server_base_url: str | None = None
    """With vllm_mode "server": the server's URL, e.g. http://10.0.0.2:8000. None: port 8000 on this machine (TRL's
    default)."""
    vllm_importance_sampling: str = "sequence_mask"
    """TRL's correction for vLLM's log-probs differing from the trainer's (its vllm_importance_sampling_mode):
    "sequence_mask" (TRL's default) and "token_mask" drop episodes/tokens whose ratio exceeds 3, the
    "*_truncate" modes clip the ratio at 3, "none" trains on vLLM's samples uncorrected."""
    bf16: bool | None = None
    """bfloat16 mixed precision in training. None: on when the GPU supports it; off on CPU."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass: memory for long episodes and large models,
    paid with one more forward pass per step."""

    # Evaluation, logging, checkpoints
    eval_every: int = 10
    """Evaluate on every eval split each this many steps (and before the first, see eval_at_start); 0 disables."""
    eval_at_start: bool = True
    """Evaluate before the first step (with eval_every > 0). Off: the first evaluation is at step eval_every (the
    lab evaluates each starting checkpoint once, shared by its seeds), and summary.json has no "before"."""
    eval_episodes: int = 64
    """Episodes per eval split (reset seeds 10_000 + i)."""
    eval_temperature: float = 1.0
    """Sampling temperature at evaluation (0 = greedy)."""
    eval_splits: list[str] = field(default_factory=lambda: ["in_distribution", "out_of_distribution"])
    """Splits evaluated periodically."""
    save_steps: int = 10
    """Checkpoint every this many steps (atomic HF folders; 0: none). TRL's name; formerly ``save_every``."""
    save_total_limit: int = 2
    """Checkpoints kept on disk (the newest). TRL's name; formerly ``keep_checkpoints``."""
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Where metrics go besides metrics.jsonl, as TRL's ``report_to``: "tensorboard" (output_dir/tensorboard),
    "wandb" (needs wandb installed and configured); "none" or nothing: nowhere else. Formerly the switches
    ``tensorboard`` and ``wandb``."""
    progress: bool = True
    """Show a rich progress bar."""
    log_update_norm: bool = True
    """Log each step's ``update_norm`` ‖θ_after − θ_before‖₂ and ``update_ratio`` (regym.rl.accounting). Costs
    one extra copy of the trainable weights, in their dtype on their device, during the optimizer step."""
    use_cpu: bool | None = None
    """Force CPU training (None: CPU when no CUDA device is visible)."""
    threads: int | None = 1
    """torch CPU threads (None: torch's default). One is fastest on a shared machine; raise it on an idle one."""
    resume: bool = False
    """Continue from the last checkpoint in output_dir."""

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, not {self.loss_type!r}")
        if self.advantage_estimator not in ESTIMATORS:
            raise ValueError(f"advantage_estimator must be one of {ESTIMATORS}, not {self.advantage_estimator!r}")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ValueError("scale_rewards must be 'group', 'batch' or 'none'")
        if self.reward not in ("env", "success"):
            raise ValueError("reward must be 'env' or 'success'")
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2 (group advantages need at least two episodes)")
        reporters = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to)
        self.report_to = [] if reporters in (["none"], []) else reporters
        if not set(self.report_to) <= set(REPORTERS):
            raise ValueError(f"report_to takes {REPORTERS} or 'none', not {self.report_to}")
        if self.save_steps < 0 or self.save_total_limit < 1:
            raise ValueError("save_steps must be >= 0 (0: no checkpoints) and save_total_limit >= 1")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, not {self.preset!r}")
        if self.preset in CHECKPOINT_PRESETS and self.model is None:
            raise ValueError(f"preset {self.preset!r} tunes rl-train for your own checkpoint of a "
                             f"{CHECKPOINT_PRESETS[self.preset]} model: pass --model PATH (its Hugging Face folder)")
        if self.generation not in GENERATIONS:
            raise ValueError(f"generation must be one of {GENERATIONS}, not {self.generation!r}")
        if self.vllm_mode not in VLLM_MODES:
            raise ValueError(f"vllm_mode must be one of {VLLM_MODES}, not {self.vllm_mode!r}")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ValueError("vllm_gpu_memory_utilization must be in (0, 1]")
        if self.vllm_importance_sampling not in IMPORTANCE_SAMPLING:
            raise ValueError(f"vllm_importance_sampling must be one of {IMPORTANCE_SAMPLING}, "
                             f"not {self.vllm_importance_sampling!r}")
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, not {self.context!r}")
        if self.reference is not None and not self.reference.strip():
            raise ValueError("reference must name a checkpoint folder, or be None (the SFT checkpoint `model`)")
        from regym.rejuvenation.criteria import check_criteria

        check_criteria(self.reset_criterion, self.reset_fallback_criterion)  # before any model or env loads
        if self.history_turns < 0:
            raise ValueError("history_turns must be >= 0")
        if min(self.tasks_per_step, self.num_envs, self.max_turns, self.max_new_tokens, self.max_steps,
               self.num_iterations, self.gradient_accumulation_steps) < 1:
            raise ValueError("tasks_per_step, num_envs, max_turns, max_new_tokens, max_steps, num_iterations and "
                             "gradient_accumulation_steps must be >= 1")
        if self.gradient_accumulation_steps > 1 and self.context == "window":
            raise ValueError("gradient_accumulation_steps > 1 needs context 'full': with context 'window' a step trains "
                             "one row per policy turn, a count TRL's even split into micro-batches would cut short, "
                             "and rl-train already takes that loss over chunks of batch_episodes rows")
        if self.batch_episodes % self.gradient_accumulation_steps:
            raise ValueError(f"gradient_accumulation_steps ({self.gradient_accumulation_steps}) must divide the step's "
                             f"{self.batch_episodes} episodes (tasks_per_step x num_generations)")

    @property
    def batch_episodes(self) -> int:
        return self.tasks_per_step * self.num_generations

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def env_spec(self, split: str = "in_distribution", *, training: bool = False) -> EnvSpec:
        """The env as this run plays it: ``env_kwargs`` with ``max_turns``, on its hosting (``env_workers`` Ray env
        workers, or the server at ``env_url``). ``training`` adds the env's dense reward when ``dense_reward`` is on
        and the env offers one (evaluations score the env's own reward)."""
        from regym.envs import accepts_option, resolve_env_id
        from regym.envs.spec import EnvSpec

        env_id = resolve_env_id(self.env)
        kwargs = {**self.env_kwargs, "max_turns": self.max_turns}
        if training and self.dense_reward and "dense_reward" not in kwargs and accepts_option(env_id, "dense_reward"):
            kwargs["dense_reward"] = True
        return EnvSpec(env_id, split, kwargs, workers=self.env_workers,
                       urls={self.env: self.env_url} if self.env_url else None)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RLConfig:
    """``resolve_config``'s config."""
    return resolve_config(path, overrides)[0]


def translate_legacy(values: dict[str, Any], *, flags: bool = False, prog: str = "rl-train") -> dict[str, Any]:
    """``values`` with the old field names moved to TRL's (``RENAMED``) and the old switches ``tensorboard`` /
    ``wandb`` turned into one ``report_to`` edit; each old name warns once (``regym.configs.rename_fields``).

    A switch edits the ``report_to`` of the same values when they hold one, else the lower layers' (kept
    as ``{"_report_to_edits": {name: on}}`` for ``resolve_config``)."""
    from regym.configs import rename_fields

    out = rename_fields(values, RENAMED, prog=prog, flags=flags)
    switches = {name: bool(out.pop(name)) for name in LEGACY_SWITCHES if name in out}
    if switches:
        spell = "--[no-]" if flags else ""
        _warn_switches(prog, [spell + name for name in switches], flags)
        if "report_to" in out:
            out["report_to"] = edit_reporters(out["report_to"], switches)
        else:
            out["_report_to_edits"] = switches
    return out


def edit_reporters(report_to: list[str] | str, switches: dict[str, bool]) -> list[str]:
    """``report_to`` with each switched-on name added and each switched-off one removed."""
    reporters = [] if report_to in ("none", ["none"], None) else [report_to] if isinstance(report_to, str) \
        else list(report_to)
    for name, on in switches.items():
        reporters = [r for r in reporters if r != name] + ([name] if on else [])
    return reporters


_WARNED_SWITCHES: set[str] = set()


def _warn_switches(prog: str, names: list[str], flags: bool) -> None:
    import sys

    for name in names:
        if name not in _WARNED_SWITCHES:
            _WARNED_SWITCHES.add(name)
            new = "--report-to" if flags else "report_to"
            print(f"{prog}: warning: {name} is now {new} (a list: tensorboard, wandb, or none; the old name still "
                  "works, for now)", file=sys.stderr)


def resolve_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None
                   ) -> tuple[RLConfig, dict[str, str]]:
    """The config, and where each field's value came from (one of ``SOURCES``).

    Priority, lowest first: the dataclass defaults < the env family's ``rl_defaults`` < the preset
    < the YAML file < explicit overrides (command-line flags; None means "not given"). So an env's
    episode shape applies unless the user, a file or a preset chose one. Old field names (``RENAMED``,
    ``LEGACY_SWITCHES``) in the file or the overrides still work, with a warning.
    """
    import yaml

    from_file: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config file must be a mapping of field: value")
        from_file = translate_legacy(loaded)
    from_flags = translate_legacy({k: v for k, v in (overrides or {}).items() if v is not None}, flags=True)
    edits = [layer.pop("_report_to_edits", {}) for layer in (from_file, from_flags)]
    known = {f.name for f in dataclasses.fields(RLConfig)}
    unknown = sorted((set(from_file) | set(from_flags)) - known)
    if unknown:
        raise ValueError(f"unknown config fields: {unknown}")
    chosen = {**from_file, **from_flags}
    preset = chosen.get("preset", RLConfig.preset)
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, not {preset!r}")
    layers = (("env", env_rl_defaults(chosen.get("env", RLConfig.env))), ("preset", PRESETS[preset]),
              ("file", from_file), ("flag", from_flags))
    values: dict[str, Any] = {}
    sources = dict.fromkeys(known, "default")
    for source, layer in layers:
        values.update(layer)
        sources.update(dict.fromkeys(layer, source))
    for source, switches in zip(("file", "flag"), edits, strict=True):
        if switches:
            values["report_to"] = edit_reporters(values.get("report_to", RLConfig().report_to), switches)
            sources["report_to"] = source
    return RLConfig(**values), sources


def env_rl_defaults(env: str) -> dict[str, Any]:
    """The RL settings the env family declares (its class attribute ``rl_defaults``; none: {})."""
    from regym.envs import env_class, resolve_env_id

    env_id = resolve_env_id(env)
    declared = dict(getattr(env_class(env_id), "rl_defaults", None) or {})
    unknown = sorted(set(declared) - set(ENV_DEFAULT_FIELDS))
    if unknown:
        raise ValueError(f"{env_id}'s rl_defaults sets {unknown}; an env family may set only {ENV_DEFAULT_FIELDS}")
    return declared
