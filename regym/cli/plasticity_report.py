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

import sys
from dataclasses import dataclass

from regym.configs import parse, report_error


@dataclass
class PlasticityReportArgs:
    """The pre-RL handoff report of a base, an SFT and (optionally) a rejuvenated checkpoint."""

    base: str
    """Base checkpoint folder, or "smollm2"."""
    sft: str
    """SFT checkpoint folder."""
    rejuvenated: str | None = None
    """Rejuvenated checkpoint folder (an optional third column)."""
    calib: str | None = None
    """Calibration JSONL ({'text'} | {'prompt','response'} | {'messages'} per line); give this or env."""
    env: str | None = None
    """Env name (e.g. textworld): its expert demos are the calibration set, plus pass@k; give this or calib."""
    out: str = "plasticity-report"
    """Output folder."""
    max_examples: int = 64
    """Use at most this many calibration examples."""
    demo_episodes: int = 8
    """With env: expert episodes used as calibration."""
    seed: int = 0
    """Seed of the perturbations and the sampling."""

    # Sharpness
    hessian_iters: int = 10
    """Power-iteration steps for the top Hessian eigenvalue (0 skips the Hessian)."""
    sharpness_examples: int = 4
    """Calibration examples used for sharpness."""
    radius: float = 0.01
    """Relative perturbation radius r."""
    perturbations: int = 5
    """Random perturbations averaged."""

    # Sampling (with env)
    env_tasks: int = 8
    """Tasks (GRPO groups)."""
    env_samples: int = 4
    """Samples per task (group size n)."""
    k: int = 4
    """k of pass@k (at most env_samples)."""
    max_new_tokens: int = 48
    """Tokens per action."""

    def __post_init__(self):
        if (self.calib is None) == (self.env is None):
            raise ValueError("give exactly one of --calib, --env")
        if self.k > self.env_samples:
            raise ValueError("--k must be <= --env-samples")


def main(argv: list[str] | None = None) -> int:
    args = parse(PlasticityReportArgs, argv, prog="plasticity-report", description=__doc__)
    import torch
    from rich.console import Console

    from regym.eval.plasticity import (
        ReportSettings,
        build_report,
        calibration_from_env,
        markdown,
        write_report,
    )
    from regym.rejuvenation import encode_calibration, load_calibration_file, load_causal_lm
    from regym.rejuvenation.checkpoint import check_checkpoints
    from regym.rejuvenation.pipeline import resolve_checkpoint

    console = Console(stderr=True)
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
        report_error("plasticity-report", error)
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
