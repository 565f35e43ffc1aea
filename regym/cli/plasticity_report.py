"""``plasticity-report``: the pre-RL handoff report, base / SFT / rejuvenated side by side.

    plasticity-report --base BASE --sft SFT [--rejuvenated R] (--calib FILE | --env NAME) [--out DIR]

Measured on the calibration set (teacher-forced): drift from the base (overall and per
layer), token entropy, top-1 probability, SFT loss, sharpness (top Hessian eigenvalue and
loss increase under random perturbations), dormant MLP-neuron fraction. With ``--env`` the
calibration set is the env's expert demonstrations, and pass@1, pass@k and the fraction of
GRPO groups with non-zero reward variance are measured by sampling each model.
Writes report.json, report.md, drift.png and entropy.png to --out.
"""

from __future__ import annotations

import argparse
import sys


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plasticity-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="base checkpoint folder, or 'smollm2'")
    p.add_argument("--sft", required=True, help="SFT checkpoint folder")
    p.add_argument("--rejuvenated", help="rejuvenated checkpoint folder (optional third column)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--calib", help="calibration JSONL ({'text'} | {'prompt','response'} | {'messages'} per line)")
    source.add_argument("--env", help="env name (e.g. textworld): expert demos as calibration, plus pass@k")
    p.add_argument("--out", default="plasticity-report", help="output folder (default ./plasticity-report)")
    p.add_argument("--max-examples", type=int, default=64, help="use at most this many calibration examples")
    p.add_argument("--demo-episodes", type=int, default=8, help="--env: expert episodes used as calibration")
    p.add_argument("--hessian-iters", type=int, default=10, help="power-iteration steps (0 skips the Hessian)")
    p.add_argument("--sharpness-examples", type=int, default=4, help="calibration examples for sharpness")
    p.add_argument("--radius", type=float, default=0.01, help="relative perturbation radius r")
    p.add_argument("--perturbations", type=int, default=5, help="random perturbations averaged")
    p.add_argument("--env-tasks", type=int, default=8, help="--env: tasks (GRPO groups)")
    p.add_argument("--env-samples", type=int, default=4, help="--env: samples per task (group size n)")
    p.add_argument("--k", type=int, default=4, help="--env: k of pass@k")
    p.add_argument("--max-new-tokens", type=int, default=48, help="--env: tokens per action")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import torch
    from rich.console import Console

    from regym.cli.rejuvenate import one_line
    from regym.rejuvenation import encode_calibration, load_calibration_file, load_causal_lm
    from regym.rejuvenation.calibration import calibration_from_env
    from regym.rejuvenation.checkpoint import check_checkpoints
    from regym.rejuvenation.pipeline import resolve_checkpoint
    from regym.rejuvenation.report import ReportSettings, build_report, markdown, write_report

    console = Console(stderr=True)
    if args.k > args.env_samples:
        print("plasticity-report: error: --k must be <= --env-samples", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    try:
        paths = {label: resolve_checkpoint(path) for label, path in
                 (("base", args.base), ("sft", args.sft), ("rejuvenated", args.rejuvenated)) if path}
        rows = load_calibration_file(args.calib)[: args.max_examples] if args.calib else None
        with console.status("checking checkpoints"):
            check_checkpoints(paths)  # whole files, same architecture, finite weights: before any measurement
        models = {}
        for label, path in paths.items():
            with console.status(f"loading {label} from {path}"):
                models[label] = load_causal_lm(path)
        tokenizer = models["sft"][1]
        if rows is not None:
            calib = encode_calibration(tokenizer, rows)
        else:
            with console.status(f"playing {args.demo_episodes} expert episodes of {args.env}"):
                calib = calibration_from_env(args.env, tokenizer, episodes=args.demo_episodes)[: args.max_examples]
    except (OSError, ValueError) as error:  # CheckpointError, a bad --calib, unreadable files
        print(f"plasticity-report: error: {one_line(error)}", file=sys.stderr)
        return 2
    settings = ReportSettings(
        hessian_iterations=args.hessian_iters, sharpness_examples=args.sharpness_examples,
        perturbation_radius=args.radius, perturbation_samples=args.perturbations, seed=args.seed,
        env_tasks=args.env_tasks, env_samples=args.env_samples, env_k=args.k, env_max_new_tokens=args.max_new_tokens,
    )
    with console.status("measuring") as status:
        report = build_report(models, "base", calib, settings, env_name=args.env,
                              progress=lambda label: status.update(f"measuring {label}"))
    written = write_report(report, args.out)
    print(markdown(report))
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
