"""The pre-RL handoff report: base / SFT / rejuvenated side by side.

Columns: drift from the base (relative ‖Δ‖/‖θ_base‖ and mean-squared difference, also per
layer: ``regym.rejuvenation.drift``), teacher-forced token entropy and mean top-1 probability, SFT loss,
sharpness (the Hessian's eigenvalue of largest magnitude, signed, with whether power iteration converged;
mean loss increase under random perturbations of relative radius r), dormant MLP-neuron fraction
(``measures``), and, with an env, pass@1, pass@k and the fraction of GRPO groups whose rewards vary (a
group with identical rewards has zero advantage: METHOD.md). Written as JSON (machines), Markdown (people)
and PNG (drift per layer, entropy histogram). The calibration text is ``regym.demos``' expert turns, the
text rejuvenation scores. Teacher-forced text hides over-SFT (its loss is ~0): ``on_policy`` measures the
policy's own turns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from regym.agents.hf_policy import HFPolicy
from regym.agents.prompts import PromptFormat
from regym.demos import CALIBRATION_MAX_TOKENS, expert_calibration
from regym.envs import normalize_split, resolve_env_id
from regym.eval.agents import policy_agent
from regym.eval.episodes import plan_episodes
from regym.eval.plasticity.measures import (
    dormant_fraction,
    hessian_max_abs_eigenvalue,
    hessian_metrics,
    perturbation_sharpness,
    token_statistics,
)
from regym.eval.runner import MemoryLog, evaluate_episodes
from regym.eval.suites import SuiteEntry
from regym.rejuvenation.calibration import CalibrationExample, encode_calibration
from regym.rejuvenation.drift import drift
from regym.rejuvenation.stages import Stages, silent


@dataclass
class ReportSettings:
    """Knobs of the report; the defaults are what ``plasticity-report`` uses."""

    hessian_iterations: int = 10  # power-iteration steps for the Hessian's largest-|λ| eigenvalue (0: skip)
    sharpness_examples: int = 4  # calibration examples used for both sharpness measures
    perturbation_radius: float = 0.01  # r: each tensor moves by r·‖θ‖ in a random direction
    perturbation_samples: int = 5
    dormant_tau: float = 0.025  # ReDo threshold
    seed: int = 0
    env_tasks: int = 8  # env: tasks (GRPO groups) evaluated
    env_samples: int = 4  # env: samples per task (n of pass@k, group size)
    env_k: int = 4  # env: the k of pass@k (≤ env_samples)
    env_temperature: float = 1.0
    env_max_new_tokens: int = 48


def env_metrics(model: nn.Module, tokenizer, env_name: str, settings: ReportSettings,
                env_kwargs: dict | None = None, *, log: MemoryLog | None = None) -> dict[str, float]:
    """pass@1, pass@k and the fraction of GRPO groups whose rewards vary, from ``env_samples`` sampled
    episodes of each of ``env_tasks`` tasks (reset seeds 0, 1, ...; the split ``env_kwargs["split"]``,
    else in-distribution), played and scored by regym's one evaluator (``regym.eval.runner``).

    ``log`` receives every episode's record, for a caller that wants the episodes behind the numbers.
    """
    kwargs = dict(env_kwargs or {})
    split = normalize_split(kwargs.pop("split", "in_distribution"))
    k = min(settings.env_k, settings.env_samples)
    episodes = plan_episodes([SuiteEntry(resolve_env_id(env_name), split, settings.env_tasks, seed=0)],
                             settings.env_samples)
    policy = HFPolicy(model, tokenizer, temperature=settings.env_temperature,
                      max_new_tokens=settings.env_max_new_tokens, seed=settings.seed)
    (cell,) = evaluate_episodes(episodes, policy_agent(policy), num_envs=settings.env_samples, env_kwargs=kwargs,
                                pass_ks=(k,), log=log)
    return {
        "pass@1": cell.pass_at["1"],
        f"pass@{settings.env_k}": cell.pass_at[str(k)],
        "nonzero_variance_groups": cell.varied_reward_tasks,
    }


def measurement_count(settings: ReportSettings, env_name: str | None) -> int:
    """How many measurements ``model_metrics`` (and the env's) make of one model: the units of its stage."""
    return 4 + bool(settings.hessian_iterations) + bool(env_name)


def model_metrics(model: nn.Module, base: nn.Module, calib: Sequence[CalibrationExample],
                  settings: ReportSettings, advance: Callable[..., object] | None = None) -> dict[str, object]:
    """Every teacher-forced measurement of ``model``; ``advance(1, name)`` after each (for a progress stage)."""
    advance = advance or (lambda *args: None)
    stats = token_statistics(model, calib)
    advance(1, "entropy and loss")
    per_layer = drift(base, model, "layer")
    metrics: dict[str, object] = {
        "entropy": stats["entropy"], "top1_prob": stats["top1_prob"], "sft_loss": stats["sft_loss"],
        "scored_tokens": stats["tokens"], **drift(base, model, "total")}
    advance(1, "drift")
    sharp_calib = list(calib[: settings.sharpness_examples])
    metrics["perturbation_sharpness"] = perturbation_sharpness(model, sharp_calib, settings.perturbation_radius,
                                                               settings.perturbation_samples, settings.seed)
    advance(1, "perturbation sharpness")
    metrics["dormant_fraction"] = dormant_fraction(model, calib, settings.dormant_tau)
    advance(1, "dormant neurons")
    if settings.hessian_iterations:
        metrics.update(hessian_metrics(hessian_max_abs_eigenvalue(model, sharp_calib, settings.hessian_iterations,
                                                                  settings.seed)))
        advance(1, "Hessian eigenvalue")
    return {"metrics": metrics, "drift_per_layer": per_layer, "entropies": stats["entropies"]}


def build_report(models: dict[str, tuple[nn.Module, object]], base_label: str,
                 calib: Sequence[CalibrationExample], settings: ReportSettings | None = None,
                 env_name: str | None = None, stages: Stages = silent,
                 env_kwargs: dict | None = None) -> dict[str, object]:
    """Measure every model (label → (model, tokenizer)) against ``models[base_label]``; each model is one
    stage of ``stages`` whose units are its measurements (``measurement_count``)."""
    settings = settings or ReportSettings()
    base = models[base_label][0]
    report: dict[str, object] = {"settings": asdict(settings), "env": env_name, "base": base_label,
                                 "calibration_examples": len(calib), "models": {}}
    for label, (model, tokenizer) in models.items():
        with stages(f"measuring {label}", measurement_count(settings, env_name)) as stage:
            entry = model_metrics(model, base, calib, settings, advance=stage.advance)
            if env_name:
                entry["metrics"].update(env_metrics(model, tokenizer, env_name, settings, env_kwargs))
                stage.advance(1, "pass@k")
        report["models"][label] = entry
    return report


ROWS = [
    ("drift_relative", "drift ‖Δ‖/‖θ_base‖", "{:.4f}"), ("drift_mean_squared", "drift mean-squared difference", "{:.3e}"),
    ("entropy", "token entropy (nats)", "{:.4f}"), ("top1_prob", "mean top-1 probability", "{:.4f}"),
    ("sft_loss", "SFT loss", "{:.4f}"),
    ("hessian_max_abs_eigenvalue", "Hessian eigenvalue, largest magnitude (signed)", "{:.3f}"),
    ("perturbation_sharpness", "loss increase at radius r", "{:.4f}"), ("dormant_fraction", "dormant MLP neurons", "{:.4f}"),
]


def markdown(report: dict[str, object]) -> str:
    models = report["models"]
    labels = list(models)
    lines = ["| metric | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    keys = [row for row in ROWS if any(row[0] in models[label]["metrics"] for label in labels)]
    extra = [k for k in models[labels[0]]["metrics"] if k.startswith("pass@") or k == "nonzero_variance_groups"]
    keys += [(k, k if k != "nonzero_variance_groups" else "GRPO groups with reward variance", "{:.3f}") for k in extra]
    for key, title, fmt in keys:
        cells = [_cell(models[label]["metrics"], key, fmt) for label in labels]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines += ["", f"Calibration: {report['calibration_examples']} examples, "
              f"{models[labels[0]]['metrics']['scored_tokens']} scored tokens; "
              f"perturbation radius r = {report['settings']['perturbation_radius']}."]
    if any("hessian_max_abs_eigenvalue" in models[label]["metrics"] for label in labels):
        lines.append(f"The Hessian eigenvalue is the one of largest magnitude, with its sign (power iteration, "
                     f"{report['settings']['hessian_iterations']} steps; negative: the steepest curvature is "
                     "downward); \"not converged\": its last step moved it by more than 1 %.")
    lines.append("")
    lines += ["Per-layer relative drift from the base:", "",
              "| group | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    groups = [row["group"] for row in models[labels[0]]["drift_per_layer"]]
    for index, group in enumerate(groups):
        cells = [f"{models[label]['drift_per_layer'][index]['relative_drift']:.4f}" for label in labels]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(metrics: dict[str, object], key: str, fmt: str) -> str:
    if key not in metrics:
        return "–"
    text = fmt.format(metrics[key])
    if key == "hessian_max_abs_eigenvalue" and not metrics.get("hessian_converged", True):
        text += " (not converged)"
    return text


def write_report(report: dict[str, object], out_dir: str | Path) -> dict[str, Path]:
    """report.json, report.md, drift.png and entropy.png in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "drift": out / "drift.png",
             "entropy": out / "entropy.png"}
    compact = {**report, "models": {label: {k: v for k, v in entry.items() if k != "entropies"}
                                    for label, entry in report["models"].items()}}
    paths["json"].write_text(json.dumps(compact, indent=2) + "\n")
    paths["markdown"].write_text("# Plasticity handoff report\n\n" + markdown(report))

    figure, axis = plt.subplots(figsize=(7, 4))
    for label, entry in report["models"].items():
        rows = [r for r in entry["drift_per_layer"] if r["group"].startswith("layer")]
        axis.plot([int(r["group"].split()[1]) for r in rows], [r["relative_drift"] for r in rows], marker="o",
                  label=label)
    axis.set(xlabel="decoder layer", ylabel="‖Δ‖ / ‖θ_base‖", title="drift from the base per layer")
    axis.legend()
    figure.tight_layout()
    figure.savefig(paths["drift"], dpi=120)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 4))
    for label, entry in report["models"].items():
        axis.hist(entry["entropies"], bins=40, alpha=0.5, label=label)
    axis.set(xlabel="teacher-forced next-token entropy (nats)", ylabel="tokens", title="token entropy")
    axis.legend()
    figure.tight_layout()
    figure.savefig(paths["entropy"], dpi=120)
    plt.close(figure)
    return paths


def calibration_from_env(env_name: str, tokenizer, episodes: int = 8,
                         prompt_format: PromptFormat = PromptFormat()) -> list[CalibrationExample]:
    """``regym.demos.expert_calibration`` of an env, encoded: the same expert turns rejuvenation scores."""
    import gymnasium as gym

    env = gym.make(resolve_env_id(env_name))
    try:
        examples = expert_calibration(env, tokenizer, episodes=episodes, prompt_format=prompt_format, limit=None)
    finally:
        env.close()
    return encode_calibration(tokenizer, examples, CALIBRATION_MAX_TOKENS)
