"""``plasticity-report``: the pre-RL handoff report, base / SFT / rejuvenated side by side.

    plasticity-report --base BASE --sft SFT [--rejuvenated R] (--calib FILE | --env NAME) [--out DIR]

Measured on the calibration set (teacher-forced): drift from the base (overall and per
layer), token entropy, top-1 probability, SFT loss, sharpness (the Hessian's eigenvalue of
largest magnitude, signed, with whether power iteration converged; and the loss increase under
random perturbations), dormant MLP-neuron fraction. With ``--env`` the calibration set is the
env's expert demonstrations, and pass@1, pass@k and the fraction of GRPO groups with non-zero
reward variance are measured by sampling each model. Each stage (checking, loading, measuring
each model) shows its progress on stderr. Writes report.json, report.md, drift.png, entropy.png
and config.json (the command's settings) to --out.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from regym.cli import preflight
from regym.configs import UsageError, describe_config, parse, report_error


@dataclass
class PlasticityReportArgs:
    """The pre-RL handoff report of a base, an SFT and (optionally) a rejuvenated checkpoint."""

    base: str
    """Base checkpoint folder, or "smollm2" (the packaged SmolLM2-135M-Instruct)."""
    sft: str
    """SFT checkpoint folder, or "smollm2"."""
    rejuvenated: str | None = None
    """Rejuvenated checkpoint folder, or "smollm2" (an optional third column)."""
    calib: str | None = None
    """Calibration JSONL ({'text'} | {'prompt','response'} | {'messages'} per line); give this or env."""
    env: str | None = None
    """Env name (e.g. textworld): its expert demos are the calibration set, plus pass@k; give this or calib."""
    out: str = "plasticity-report"
    """Output folder (its report files are replaced)."""
    max_examples: int = 64
    """Use at most this many calibration examples."""
    demo_episodes: int = 8
    """With env: expert episodes used as calibration."""
    seed: int = 0
    """Seed of the perturbations and the sampling."""

    # Sharpness
    hessian_iters: int = 10
    """Power-iteration steps for the Hessian's eigenvalue of largest magnitude (0 skips the Hessian)."""
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
        counts = {"--max-examples": self.max_examples, "--sharpness-examples": self.sharpness_examples,
                  "--perturbations": self.perturbations, "--env-tasks": self.env_tasks,
                  "--env-samples": self.env_samples, "--k": self.k, "--max-new-tokens": self.max_new_tokens}
        if self.env is not None:
            counts["--demo-episodes"] = self.demo_episodes
        if low := [flag for flag, value in counts.items() if value < 1]:
            raise ValueError(f"{', '.join(low)} must be >= 1")
        if self.hessian_iters < 0 or not self.radius > 0:
            raise ValueError("--hessian-iters must be >= 0 and --radius > 0")


def check_inputs(args: PlasticityReportArgs) -> None:
    """What can be checked before any model loads; a ``UsageError`` names the fix."""
    for flag, value in (("--base", args.base), ("--sft", args.sft), ("--rejuvenated", args.rejuvenated)):
        if value is not None:
            preflight.model_folder(value, flag)
    if args.calib is not None:
        preflight.existing_file(args.calib, "--calib")
    if args.env is not None:
        preflight.env_name(args.env)
    if Path(args.out).is_file():
        raise UsageError(f"--out {args.out} is a file; give a folder for the report")


def main(argv: list[str] | None = None) -> int:
    args = parse(PlasticityReportArgs, argv, prog="plasticity-report", description=__doc__)
    try:
        check_inputs(args)
    except UsageError as error:
        report_error("plasticity-report", error)
        return 2
    print(f"plasticity-report: {describe_config(args, always=('base', 'sft', 'out'))} "
          f"(every field: {Path(args.out) / 'config.json'})", file=sys.stderr, flush=True)
    import torch

    from regym.eval.plasticity import (
        ReportSettings,
        build_report,
        calibration_from_env,
        markdown,
        write_report,
    )
    from regym.models.loading import load_causal_lm, resolve_checkpoint
    from regym.progress import StageProgress, library_progress_bars_off
    from regym.rejuvenation import encode_calibration, load_calibration_file
    from regym.rejuvenation.checkpoint import check_checkpoints

    stages = partial(StageProgress, stream=sys.stderr)
    torch.manual_seed(args.seed)
    with library_progress_bars_off():  # the stages below are the progress
        try:
            paths = {label: resolve_checkpoint(path) for label, path in
                     (("base", args.base), ("sft", args.sft), ("rejuvenated", args.rejuvenated)) if path}
            rows = load_calibration_file(args.calib)[: args.max_examples] if args.calib else None
            check_checkpoints(paths, stages=stages)  # whole files, same architecture, finite weights: first
            models = {}
            with stages("loading checkpoints", len(paths)) as stage:
                for label, path in paths.items():
                    models[label] = load_causal_lm(path)
                    stage.advance(1, label)
            tokenizer = models["sft"][1]
            if rows is not None:
                calib = encode_calibration(tokenizer, rows)
            else:
                with stages(f"playing {args.demo_episodes} expert episodes of {args.env}", 1) as stage:
                    calib = calibration_from_env(args.env, tokenizer, episodes=args.demo_episodes)[: args.max_examples]
                    stage.advance(1)
        except (OSError, ValueError) as error:  # CheckpointError, a bad --calib line, unreadable files
            report_error("plasticity-report", error)
            return 2
        settings = ReportSettings(
            hessian_iterations=args.hessian_iters, sharpness_examples=args.sharpness_examples,
            perturbation_radius=args.radius, perturbation_samples=args.perturbations, seed=args.seed,
            env_tasks=args.env_tasks, env_samples=args.env_samples, env_k=args.k,
            env_max_new_tokens=args.max_new_tokens,
        )
        report = build_report(models, "base", calib, settings, env_name=args.env, stages=stages)
    written = write_report(report, args.out)
    config_path = Path(args.out) / "config.json"
    config_path.write_text(json.dumps(asdict(args), indent=2) + "\n")
    print(markdown(report))
    print("wrote " + ", ".join(str(p) for p in [*written.values(), config_path]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
