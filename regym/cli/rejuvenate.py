"""``rejuvenate``: base-anchored fusion + neuron reset toward the base, folder to folder.

    rejuvenate --base BASE_DIR --sft SFT_DIR --out OUT_DIR [--alpha 0.5] [--reset-frac 0.01]
               [--reset-strength 1.0] [--criterion attribution] [--calib calib.jsonl]

BASE/SFT are HF checkpoint folders (``smollm2`` names the packaged SmolLM2-135M-Instruct).
Without ``--calib``, the attribution and redo criteria fall back to ``drift`` (with a warning).
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


def parser() -> argparse.ArgumentParser:
    from regym.rejuvenation.criteria import CRITERIA

    p = argparse.ArgumentParser(prog="rejuvenate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="base (pre-SFT) checkpoint folder, or 'smollm2'")
    p.add_argument("--sft", required=True, help="SFT checkpoint folder (config and tokenizer are copied from it)")
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--alpha", type=float, default=0.5, help="fusion weight of the SFT model, in [0, 1] (default 0.5)")
    p.add_argument("--reset-frac", type=float, default=0.01, help="fraction ρ of units to reset (default 0.01; 0: fusion only)")
    p.add_argument("--reset-strength", type=float, default=1.0, help="ω: unit ← ω·base + (1−ω)·fused (default 1.0)")
    p.add_argument("--criterion", choices=CRITERIA, default="attribution", help="how units are chosen (default attribution)")
    p.add_argument("--calib", help="calibration JSONL ({'text'} | {'prompt','response'} | {'messages'} per line)")
    p.add_argument("--top-n", type=int, default=64, help="entropy-gap target tokens for attribution (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random criterion")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from regym.rejuvenation import load_calibration_file, rejuvenate_checkpoint
    from regym.rejuvenation.checkpoint import tensor_index
    from regym.rejuvenation.pipeline import resolve_checkpoint

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    try:
        calib = load_calibration_file(args.calib) if args.calib else None
        if args.reset_frac == 0 or args.criterion == "none":
            description, total = "fusing tensors", len(tensor_index(resolve_checkpoint(args.sft)))
        elif calib and args.criterion == "attribution":
            description, total = "attributing target tokens", args.top_n
        else:
            description, total = f"fusing and resetting ({args.criterion})", None
        with Progress(*columns, transient=True, console=Console(stderr=True), disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task(description, total=total)
            summary = rejuvenate_checkpoint(
                args.base, args.sft, args.out, alpha=args.alpha, reset_fraction=args.reset_frac,
                reset_strength=args.reset_strength, criterion=args.criterion, calib_texts=calib,
                overwrite=args.overwrite, top_n_targets=args.top_n, seed=args.seed,
                progress=lambda count: bar.advance(task, count),
            )
    except (OSError, ValueError) as error:  # CheckpointError, a bad --calib, an existing --out, unreadable files
        print(f"rejuvenate: error: {one_line(error)}", file=sys.stderr)
        return 2
    print(summary.describe())
    print(json.dumps({"units_reset": summary.units_reset, "seconds": round(summary.seconds, 2)}))
    return 0


def one_line(error: BaseException) -> str:
    """An exception's message on one line (for ``<prog>: error: ...``)."""
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
