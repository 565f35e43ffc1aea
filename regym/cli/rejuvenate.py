"""``rejuvenate``: base-anchored fusion + neuron reset toward the base, folder to folder.

    rejuvenate --base BASE_DIR --sft SFT_DIR --out OUT_DIR [--alpha 0.5] [--reset-fraction 0.01]
               [--reset-strength 1.0] [--criterion attribution] [--calib calib.jsonl]

BASE/SFT are HF checkpoint folders (``smollm2`` names the packaged SmolLM2-135M-Instruct).
The attribution and redo criteria need ``--calib``; without it the command stops and says so.
Each stage (checking, loading, scoring units, fusing and resetting) shows its progress on
stderr: a bar on a terminal, one line per tenth of the stage in a log; stdout is the summary.
Peak host memory is about one model in its stored dtype (see ``rejuvenate_checkpoint``), so
1B–8B checkpoints fit; scoring runs on the GPU, in bfloat16, when one is present.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import partial

from regym.cli import preflight
from regym.configs import UsageError, describe_config, parse, report_error
from regym.progress import StageProgress, library_progress_bars_off
from regym.rejuvenation.criteria import CRITERIA, NEEDS_CALIBRATION
from regym.rejuvenation.pipeline import DTYPE_BY_NAME, missing_calibration


@dataclass
class RejuvenateArgs:
    """Fuse an SFT checkpoint with its base and reset a fraction of its units toward the base."""

    base: str
    """Base (pre-SFT) checkpoint folder, or "smollm2" (the packaged SmolLM2-135M-Instruct)."""
    sft: str
    """SFT checkpoint folder, or "smollm2" (config and tokenizer are copied from it)."""
    out: str
    """Output folder (written atomically)."""
    alpha: float = 0.5
    """Fusion weight of the SFT model, in [0, 1]: θ = α·θ_sft + (1−α)·θ_base."""
    reset_fraction: float = 0.01
    """Fraction ρ of units to reset, in [0, 1] (0: fusion only)."""
    reset_strength: float = 1.0
    """ω, in [0, 1]: unit ← ω·base + (1−ω)·fused."""
    criterion: str = "attribution"
    """How units are chosen."""
    calib: str | None = None
    """Calibration JSONL ({'text'} | {'prompt','response'} | {'messages'} per line)."""
    top_n: int = 64
    """Entropy-gap target tokens for attribution."""
    seed: int = 0
    """Seed of the random criterion."""
    overwrite: bool = False
    """Replace --out if it exists."""
    device: str = "auto"
    """Where units are scored: auto (CUDA when present, else CPU), cpu, cuda, cuda:1, ..."""
    dtype: str = "auto"
    """Dtype units are scored in: auto (bfloat16 on CUDA, the checkpoint's own on CPU), float32, bfloat16, float16."""
    env: str | None = None
    """Also play --episodes greedy in-distribution episodes of this env with the SFT model and the result."""
    episodes: int = 32
    """Episodes per model for --env."""


def check_inputs(args: RejuvenateArgs) -> None:
    """Everything a user can get wrong, checked before any weight is read; a ``UsageError`` names the fix."""
    preflight.model_folder(args.base, "--base")
    preflight.model_folder(args.sft, "--sft")
    if preflight.PACKAGED not in (args.base, args.sft):  # (the packaged model is exported on first use: later)
        from regym.rejuvenation.checkpoint import check_checkpoints

        try:  # headers and configs only: two different models are refused before anything else
            check_checkpoints({"base": args.base, "SFT": args.sft}, weights=False)
        except ValueError as error:
            raise UsageError(error) from None
    for flag, value in (("--alpha", args.alpha), ("--reset-fraction", args.reset_fraction),
                        ("--reset-strength", args.reset_strength)):
        preflight.number_in(value, 0.0, 1.0, flag)
    if args.top_n < 1:
        raise UsageError(f"--top-n {args.top_n}: must be >= 1")
    if args.calib is not None:
        preflight.existing_file(args.calib, "--calib")
    elif args.criterion in NEEDS_CALIBRATION and args.reset_fraction > 0:
        raise UsageError(missing_calibration(args.criterion))
    preflight.new_output(args.out, "--out", overwrite=args.overwrite)
    preflight.torch_device(args.device)
    if args.env is not None:
        preflight.env_name(args.env)
        if args.episodes < 1:
            raise UsageError(f"--episodes {args.episodes}: must be >= 1")


def main(argv: list[str] | None = None) -> int:
    args = parse(RejuvenateArgs, argv, prog="rejuvenate", description=__doc__,
                 aliases={"reset_fraction": "--reset-frac"}, choices={"criterion": CRITERIA, "dtype": ("auto", *DTYPE_BY_NAME)})
    try:
        check_inputs(args)
    except UsageError as error:
        report_error("rejuvenate", error)
        return 2
    print(f"rejuvenate: {describe_config(args, always=('alpha', 'reset_fraction', 'criterion'))} "
          f"(recorded in {args.out}/rejuvenation.json)", file=sys.stderr, flush=True)
    from regym.rejuvenation import load_calibration_file, rejuvenate_checkpoint

    try:
        with library_progress_bars_off():  # loading and saving are stages of their own below
            calib = load_calibration_file(args.calib) if args.calib else None
            summary = rejuvenate_checkpoint(
                args.base, args.sft, args.out, alpha=args.alpha, reset_fraction=args.reset_fraction,
                reset_strength=args.reset_strength, criterion=args.criterion, calib_texts=calib,
                overwrite=args.overwrite, top_n_targets=args.top_n, seed=args.seed, device=args.device,
                dtype=args.dtype, stages=partial(StageProgress, stream=sys.stderr),
            )
    except (OSError, ValueError) as error:  # CheckpointError (a fault found reading the weights), a bad --calib line
        report_error("rejuvenate", error)
        return 2
    print(summary.describe())
    if args.env:
        before, after = start_success(args.sft, args.out, args.env, args.episodes)
        print(f"greedy success on {args.env} in-distribution ({args.episodes} episodes): "
              f"SFT {before:.3f} -> rejuvenated {after:.3f}")
        if after < 0.5 * before:
            print(f"warning: the rejuvenated start keeps less than half of the SFT's success ({before:.3f} -> {after:.3f})")
    print(json.dumps({"units_reset": summary.units_reset, "seconds": round(summary.seconds, 2)}))
    return 0


def start_success(sft: str, out: str, env: str, episodes: int) -> tuple[float, float]:
    """Greedy in-distribution success of the SFT checkpoint and of the rejuvenated one (one model at a time)."""
    from regym.envs import resolve_env_id
    from regym.eval.plasticity import greedy_success
    from regym.models.loading import load_causal_lm
    from regym.rl.config import RLConfig, env_rl_defaults

    env_id = resolve_env_id(env)
    defaults = env_rl_defaults(env_id)
    rates = []
    for folder in (sft, out):
        model, tokenizer = load_causal_lm(folder)
        rates.append(greedy_success(model, tokenizer, env_id, episodes, max_turns=defaults.get("max_turns"),
                                    max_new_tokens=int(defaults.get("max_new_tokens", RLConfig.max_new_tokens))))
        del model
    return rates[0], rates[1]


if __name__ == "__main__":
    sys.exit(main())
