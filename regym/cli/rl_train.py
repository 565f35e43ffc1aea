"""``rl-train``: multi-turn RL (GRPO family, on TRL) on a regym env, optionally from a rejuvenated init.

    rl-train --env textworld --rejuvenate              # tiny CPU pipeline, built and cached on first use
    rl-train --env alfworld --model SFT --base BASE --rejuvenate --alpha 0.5
    rl-train --config run.yaml --resume
    rl-train --env alfworld --preset qwen2.5-7b --model SFT     # your checkpoint: GPU, bf16, vLLM rollouts

Every field of ``regym.rl.config.RLConfig`` is a flag; a YAML file (``--config``) sets
fields too, and flags win over it. Priority, lowest first: defaults < the env family's RL
defaults (episode shape: max_turns, max_new_tokens, max_episode_tokens, context, history_turns)
< preset < file < flags; the defaults below are the tiny preset's on TextWorld. The resolved
config is printed at start, with where each value came from, and saved as ``OUTPUT_DIR/config.yaml``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import yaml

from regym.cli import preflight
from regym.configs import UsageError, describe_config, parse_overrides, report_error
from regym.rl.config import (
    CONTEXTS,
    ESTIMATORS,
    GENERATIONS,
    IMPORTANCE_SAMPLING,
    LEGACY_FLAGS,
    LOSS_TYPES,
    PRESETS,
    VLLM_MODES,
    RLConfig,
    resolve_config,
)

CHOICES = {"preset": sorted(PRESETS), "loss_type": LOSS_TYPES, "advantage_estimator": ESTIMATORS,
           "context": CONTEXTS, "generation": GENERATIONS, "vllm_mode": VLLM_MODES,
           "vllm_importance_sampling": IMPORTANCE_SAMPLING, "scale_rewards": ("group", "batch", "none"),
           "reward": ("env", "success"), "prompt_style": ("plain", "react")}
ALWAYS_SHOWN = ("env", "preset", "model", "output_dir", "max_steps")
"""Fields the config line shows even at their defaults: what a run is, and where it goes."""


def config_line(config: RLConfig, sources: dict[str, str] | None = None) -> str:
    """The resolved config in one line: what differs from the defaults, with where it came from
    (env, preset, file, tiny pipeline; flags unmarked). The whole config is ``OUTPUT_DIR/config.yaml``."""
    shown = dataclasses.replace(config, model=config.model or "(tiny pipeline, built on first use)")
    labels = {name: f"env {config.env}" if source == "env" else f"preset {config.preset}" if source == "preset"
              else source for name, source in (sources or {}).items()}
    return (f"rl-train: {describe_config(shown, sources=labels, always=ALWAYS_SHOWN)} "
            f"(every field: {Path(config.output_dir) / 'config.yaml'})")


def check_inputs(config: RLConfig) -> None:
    """What can be checked before the tiny pipeline builds or a model loads; a ``UsageError`` names the fix."""
    preflight.env_name(config.env)
    if config.rejuvenate and config.model is not None and config.base is None:
        raise UsageError("--rejuvenate with --model needs --base BASE: the checkpoint your SFT model was trained "
                         "from, which rejuvenation fuses it with (\"smollm2\" names the packaged SmolLM2)")
    for flag, value in (("--model", config.model), ("--base", config.base), ("--reference", config.reference)):
        if value is not None:
            preflight.model_folder(value, flag)
    from regym.envs.base import normalize_split
    from regym.rl.checkpoints import list_checkpoints

    for split in config.eval_splits:
        try:
            normalize_split(split)
        except ValueError as error:
            raise UsageError(f"--eval-splits: {error}") from None
    if not config.resume and list_checkpoints(Path(config.output_dir)):
        raise UsageError(f"--output-dir {config.output_dir} already holds checkpoints: pass --resume to continue "
                         "that run, or another --output-dir")


def check_criterion_flags(overrides: dict) -> None:
    """The reset criteria given as flags, checked before the config is built so the error names the flag
    (``RLConfig`` checks them again, for values from a ``--config`` file)."""
    from regym.rejuvenation.criteria import CRITERIA

    for flag, field in (("--reset-criterion", "reset_criterion"),
                        ("--reset-fallback-criterion", "reset_fallback_criterion")):
        value = overrides.get(field)
        if value is not None and value not in CRITERIA:
            raise UsageError(f"{flag} {value!r}: choose one of {', '.join(CRITERIA)}")


@contextlib.contextmanager
def main_process_first(config: RLConfig):
    """Run the block on the main process first, then on the others (several processes: ``accelerate launch``);
    yields whether this is the main process. A lone process just runs it."""
    from regym.rl.trl_bridge import process_count

    if process_count() == 1:
        yield True
        return
    import torch

    from regym.rl.train import join_processes

    state = join_processes(config.use_cpu if config.use_cpu is not None else not torch.cuda.is_available())
    with state.main_process_first():
        yield state.is_main_process


def main(argv: list[str] | None = None) -> int:
    config_file, overrides = parse_overrides(RLConfig, argv, prog="rl-train", description=__doc__, choices=CHOICES,
                                             legacy=LEGACY_FLAGS)
    try:
        check_criterion_flags(overrides)
        config, sources = resolve_config(config_file, overrides)
        check_inputs(config)
        from regym.rl.vllm_rollout import check_generation_backend

        check_generation_backend(config)  # before the tiny pipeline builds or any model loads
    except (OSError, ValueError, RuntimeError, yaml.YAMLError) as error:  # a bad --config, value, path or backend
        report_error("rl-train", error)
        return 2
    from regym.progress import library_progress_bars_off
    from regym.rl.run_log import summary_table
    from regym.rl.train import train

    with library_progress_bars_off():
        from regym.recipes.tiny import with_tiny_pipeline
        from regym.rl.trl_bridge import process_count

        is_main = process_count() == 1 or _rank_zero()
        if is_main:
            print(config_line(config, sources), file=sys.stderr, flush=True)
        given = config
        with main_process_first(config) as is_main:  # under `accelerate launch`, one process builds the pipeline
            config = with_tiny_pipeline(config, sources)  # no --model: the tiny pipeline's SFT checkpoint (cached)
        changed = {field.name: getattr(config, field.name) for field in dataclasses.fields(RLConfig)
                   if getattr(config, field.name) != getattr(given, field.name)}
        if is_main and changed:
            print("rl-train: from the tiny pipeline: " + " ".join(f"{name}={value}" for name, value in changed.items()),
                  file=sys.stderr, flush=True)
        summary = train(config)
    if is_main:
        print(summary_table(summary))
        print(f"outputs in {config.output_dir} (summary.json, learning_curve.png, final/)")
    return 0


def _rank_zero() -> bool:
    """Whether this is the launcher's first process (``RANK``/``LOCAL_RANK`` unset or 0), before any process group."""
    import os

    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0"


if __name__ == "__main__":
    sys.exit(main())
