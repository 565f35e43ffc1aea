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

import yaml

from regym.configs import parse_overrides, report_error
from regym.rl.config import (
    CONTEXTS,
    ESTIMATORS,
    GENERATIONS,
    IMPORTANCE_SAMPLING,
    LOSS_TYPES,
    PRESETS,
    VLLM_MODES,
    RLConfig,
    resolve_config,
)

CHOICES = {"preset": sorted(PRESETS), "loss_type": LOSS_TYPES, "advantage_estimator": ESTIMATORS,
           "context": CONTEXTS, "generation": GENERATIONS, "vllm_mode": VLLM_MODES,
           "vllm_importance_sampling": IMPORTANCE_SAMPLING}


def print_config(config: RLConfig, sources: dict[str, str] | None = None) -> None:
    """The resolved config, one row per field, with where its value came from (``resolve_config``'s sources,
    or "tiny pipeline" for what ``with_tiny_pipeline`` filled in); values not from the defaults in bold."""
    from rich.console import Console
    from rich.table import Table

    sources = sources or {}
    table = Table(title="rl-train config", show_lines=False)
    table.add_column("field")
    table.add_column("value")
    table.add_column("from")
    for field in dataclasses.fields(RLConfig):
        source = sources.get(field.name, "default")
        label = f"env ({config.env})" if source == "env" else f"preset ({config.preset})" if source == "preset" else source
        table.add_row(field.name, repr(getattr(config, field.name)), label, style="" if source == "default" else "bold")
    Console().print(table)


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
    config_file, overrides = parse_overrides(RLConfig, argv, prog="rl-train", description=__doc__, choices=CHOICES)
    try:
        config, sources = resolve_config(config_file, overrides)
    except (OSError, ValueError, yaml.YAMLError) as error:  # a missing or malformed --config, a bad value
        report_error("rl-train", error)
        return 2
    from regym.rl.vllm_rollout import check_generation_backend

    try:
        check_generation_backend(config)  # before the tiny pipeline builds or any model loads
    except RuntimeError as error:
        report_error("rl-train", error)
        return 2
    from regym.recipes.tiny import with_tiny_pipeline
    from regym.rl.train import summary_table, train

    given = config
    with main_process_first(config) as is_main:  # under `accelerate launch`, one process builds the pipeline
        config = with_tiny_pipeline(config, sources)  # no --model: the tiny pipeline's SFT checkpoint (built once, cached)
    sources.update({field.name: "tiny pipeline" for field in dataclasses.fields(RLConfig)
                    if getattr(config, field.name) != getattr(given, field.name)})
    if is_main:
        print_config(config, sources)

    summary = train(config)
    if is_main:
        print(summary_table(summary))
        print(f"outputs in {config.output_dir} (summary.json, learning_curve.png, final/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
