"""``rejuvenate``: base-anchored fusion + neuron reset toward the base, folder to folder.

    rejuvenate --base BASE_DIR --sft SFT_DIR --out OUT_DIR [--alpha 0.5] [--reset-fraction 0.01]
               [--reset-strength 1.0] [--criterion attribution] [--calib calib.jsonl]

BASE/SFT are HF checkpoint folders (``smollm2`` names the packaged SmolLM2-135M-Instruct).
The attribution and redo criteria need ``--calib``; without it the command stops and says so.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from regym.configs import parse, report_error
from regym.rejuvenation.criteria import CRITERIA


@dataclass
class RejuvenateArgs:
    """Fuse an SFT checkpoint with its base and reset a fraction of its units toward the base."""

    base: str
    """Base (pre-SFT) checkpoint folder, or "smollm2"."""
    sft: str
    """SFT checkpoint folder (config and tokenizer are copied from it)."""
    out: str
    """Output folder (written atomically)."""
    alpha: float = 0.5
    """Fusion weight of the SFT model, in [0, 1]: θ = α·θ_sft + (1−α)·θ_base."""
    reset_fraction: float = 0.01
    """Fraction ρ of units to reset (0: fusion only)."""
    reset_strength: float = 1.0
    """ω: unit ← ω·base + (1−ω)·fused."""
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


def main(argv: list[str] | None = None) -> int:
    args = parse(RejuvenateArgs, argv, prog="rejuvenate", description=__doc__,
                 aliases={"reset_fraction": "--reset-frac"}, choices={"criterion": CRITERIA})
    from regym.rejuvenation import load_calibration_file, rejuvenate_checkpoint
    from regym.rejuvenation.checkpoint import tensor_index
    from regym.rejuvenation.pipeline import resolve_checkpoint

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    try:
        calib = load_calibration_file(args.calib) if args.calib else None
        if args.reset_fraction == 0 or args.criterion == "none":
            description, total = "fusing tensors", len(tensor_index(resolve_checkpoint(args.sft)))
        elif calib and args.criterion == "attribution":
            description, total = "attributing target tokens", args.top_n
        else:
            description, total = f"fusing and resetting ({args.criterion})", None
        with Progress(*columns, transient=True, console=Console(stderr=True), disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task(description, total=total)
            summary = rejuvenate_checkpoint(
                args.base, args.sft, args.out, alpha=args.alpha, reset_fraction=args.reset_fraction,
                reset_strength=args.reset_strength, criterion=args.criterion, calib_texts=calib,
                overwrite=args.overwrite, top_n_targets=args.top_n, seed=args.seed,
                progress=lambda count: bar.advance(task, count),
            )
    except (OSError, ValueError) as error:  # CheckpointError, a bad --calib, an existing --out, unreadable files
        report_error("rejuvenate", error)
        return 2
    print(summary.describe())
    print(json.dumps({"units_reset": summary.units_reset, "seconds": round(summary.seconds, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
