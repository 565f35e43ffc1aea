"""The pre-RL handoff report: base / SFT / rejuvenated side by side.

Columns: drift from the base (relative ‖Δ‖/‖θ_base‖ and mean-squared difference, also per
layer), teacher-forced token entropy and mean top-1 probability, SFT loss, sharpness (the
Hessian's eigenvalue of largest magnitude, signed, with whether power iteration converged; mean
loss increase under random perturbations of relative radius r),
dormant MLP-neuron fraction, and, with an env, pass@1, pass@k and the fraction of GRPO
groups whose rewards vary (a group with identical rewards has zero advantage: METHOD.md).
Written as JSON (machines), Markdown (people) and PNG (drift per layer, entropy histogram).

Teacher-forced on SFT-style text, an over-trained model's loss is ~0 and its Hessian vanishes,
so over-SFT looks flat by construction. ``on_policy_metrics`` measures the same quantities on
the policy's own samples (the turns RL would train on, token for token), on held-out text, and
with ASAM's scale-invariant sharpness; ``greedy_success`` is its temperature-0 success rate.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regym.agents.hf_policy import HFPolicy
from regym.agents.llm import chat_token_ids
from regym.agents.prompts import PromptFormat
from regym.demos import CALIBRATION_MAX_TOKENS, expert_calibration
from regym.envs import normalize_split, resolve_env_id
from regym.eval.agents import policy_agent
from regym.eval.episodes import episode_key, plan_episodes
from regym.eval.metrics import SplitMetrics
from regym.eval.runner import MemoryLog, evaluate_episodes
from regym.eval.suites import SuiteEntry
from regym.rejuvenation.calibration import CalibrationExample, encode_calibration
from regym.rejuvenation.diagnostics import (
    HessianEigenvalue,
    adaptive_sharpness,
    dormant_fraction,
    hessian_max_abs_eigenvalue,
    layer_drift,
    perturbation_sharpness,
    token_statistics,
)
from regym.rejuvenation.stages import Stages, silent
from regym.trajectory import Trajectory


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


class _SampleRecordingPolicy:
    """An ``HFPolicy`` that keeps, for its last ``chat`` call, each prompt's ids and the ids it sampled.

    The prompt ids are ``chat_token_ids`` of the conversation, exactly what ``HFPolicy.chat``
    feeds ``generate``; so nothing is re-tokenised after generation.
    """

    def __init__(self, policy: HFPolicy):
        self._inner = policy
        self.last: list[tuple[list[int], list[int]]] = []

    def chat(self, conversations: list[list[dict[str, str]]]) -> list[Any]:
        generations = self._inner.chat(conversations)
        self.last = [(chat_token_ids(self._inner.tokenizer, messages), list(generation.token_ids))
                     for messages, generation in zip(conversations, generations, strict=True)]
        return generations

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _TurnRecorder:
    """The evaluator's agent for ``policy`` (``policy_agent``), wrapped to keep every turn it plays:
    ``turns[(episode key, turn)]`` = (prompt ids, sampled ids)."""

    def __init__(self, policy: HFPolicy) -> None:
        self.policy = _SampleRecordingPolicy(policy)
        self.agent = policy_agent(self.policy)
        self.name = self.agent.name
        self.turns: dict[tuple[str, int], tuple[list[int], list[int]]] = {}

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        self.policy.last = []
        actions = self.agent.act(trajectories)
        for trajectory, sampled in zip(trajectories, self.policy.last, strict=True):
            self.turns[(episode_key(trajectory), trajectory.num_turns)] = sampled
        return actions

    def release(self, key: str) -> None:
        self.agent.release(key)

    def tokens_generated(self, key: str) -> int:
        return self.agent.tokens_generated(key)


@dataclass
class OnPolicySettings:
    """Knobs of ``on_policy_metrics``: how the policy's own samples are drawn and measured."""

    tasks: int = 16
    """Tasks played (the GRPO groups)."""
    samples: int = 4
    """Sampled episodes per task (the group size G)."""
    temperature: float = 1.0
    """Sampling temperature; entropy and top-1 are those of softmax(logits / temperature)."""
    max_new_tokens: int = 16
    """Token budget of one reply."""
    seed: int = 0
    """Seed of the policy's sampling."""
    first_seed: int = 0
    """Reset seed of the first task; the tasks are first_seed, first_seed + 1, ..."""
    sharpness_examples: int = 8
    """Turns (on-policy) or held-out examples that every sharpness measure uses, spread evenly over the set."""
    hessian_iterations: int = 8
    """Power-iteration steps for the Hessian's eigenvalue of largest magnitude (0: skip it)."""
    perturbation_radius: float = 0.01
    """Relative radius of the random-perturbation sharpness (each tensor moves by r·‖θ‖)."""
    perturbation_samples: int = 3
    """Random directions averaged by the perturbation sharpness (0: skip it)."""
    adaptive_radius: float = 0.05
    """Radius of ASAM's weight-normalised ball (``adaptive_sharpness``)."""
    num_envs: int = 16
    """Env copies played in lock-step: the policy's batch."""


@dataclass
class OnPolicyTurn:
    """One turn the policy played, as a calibration example: the prompt ids it was given followed by
    the ids it sampled (stop token included), only the sampled ids scored: the tokens whose
    log-probs RL's objective holds."""

    key: str
    """The episode's key (``regym.eval.episodes.Episode.key``)."""
    turn: int
    """The turn's index in its episode, from 0."""
    example: CalibrationExample


@dataclass
class OnPolicyRun:
    cell: SplitMetrics
    """The evaluator's scores of the sampled episodes."""
    records: list[dict[str, Any]]
    """Every episode's log record (``regym.eval.log.episode_record``), in plan order."""
    turns: list[OnPolicyTurn]
    """Every turn played, in plan order (task, sample) then turn."""


def _env_options(env_kwargs: dict | None, max_turns: int | None) -> dict:
    kwargs = dict(env_kwargs or {})
    if "split" in kwargs:
        raise ValueError("pass the split as split=..., not in env_kwargs")
    if max_turns is not None:
        kwargs["max_turns"] = max_turns
    return kwargs


def play_on_policy(model: nn.Module, tokenizer, env_id: str, settings: OnPolicySettings,
                   env_kwargs: dict | None = None, *, split: str = "in_distribution",
                   max_turns: int | None = None) -> OnPolicyRun:
    """Play ``settings.tasks`` tasks × ``settings.samples`` sampled episodes with regym's one evaluator,
    keeping every turn's exact prompt ids and sampled ids (``OnPolicyTurn``)."""
    if settings.temperature <= 0:
        raise ValueError("on-policy metrics need a sampling temperature > 0 (greedy_success plays greedily)")
    episodes = plan_episodes([SuiteEntry(resolve_env_id(env_id), normalize_split(split), settings.tasks,
                                         seed=settings.first_seed)], settings.samples)
    policy = HFPolicy(model, tokenizer, temperature=settings.temperature, max_new_tokens=settings.max_new_tokens,
                      seed=settings.seed, reuse_prefixes=True)
    log, recorder = MemoryLog(), _TurnRecorder(policy)
    (cell,) = evaluate_episodes(episodes, recorder, num_envs=settings.num_envs,
                                env_kwargs=_env_options(env_kwargs, max_turns), log=log)
    order = {episode.key: index for index, episode in enumerate(episodes)}
    turns = []
    for (key, turn), (prompt, sampled) in sorted(recorder.turns.items(), key=lambda item: (order[item[0][0]],
                                                                                             item[0][1])):
        ids = torch.tensor([prompt + sampled])  # (1, T)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[0, len(prompt):] = True
        turns.append(OnPolicyTurn(key, turn, CalibrationExample(ids, mask)))
    records = sorted(log.records.values(), key=lambda record: order[record["key"]])
    return OnPolicyRun(cell, records, turns)


def collapsed_group_share(records: Sequence[dict[str, Any]]) -> float:
    """Share of tasks whose G sampled episodes carry no GRPO signal because of the policy: equal rewards and
    either no episode succeeded or every episode played the very same actions. Solved tasks whose samples
    differ are not counted: that is a task without headroom, not a policy that has stopped exploring."""
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[record["task_seed"]].append(record)
    if not groups:
        raise ValueError("no episodes to group")

    def collapsed(group: list[dict[str, Any]]) -> bool:
        if len({record["reward"] for record in group}) > 1:
            return False
        if not all(record["success"] for record in group):
            return True
        plays = {tuple(turn["action"] for turn in record["trajectory"]["turns"]) for record in group}
        return len(plays) == 1

    return sum(collapsed(group) for group in groups.values()) / len(groups)


def _spread(items: Sequence, count: int) -> list:
    """``count`` items evenly spaced over ``items`` (all of them when there are no more)."""
    if count >= len(items):
        return list(items)
    return [items[index * len(items) // count] for index in range(count)]


def _sharpness(model: nn.Module, examples: Sequence[CalibrationExample], settings: OnPolicySettings,
               perturbation: bool) -> dict[str, float]:
    metrics = {"adaptive_sharpness": adaptive_sharpness(model, examples, settings.adaptive_radius)}
    if settings.hessian_iterations:
        metrics.update(hessian_metrics(hessian_max_abs_eigenvalue(model, examples, settings.hessian_iterations,
                                                                  settings.seed)))
    if perturbation and settings.perturbation_samples:
        metrics["perturbation_sharpness"] = perturbation_sharpness(
            model, examples, settings.perturbation_radius, settings.perturbation_samples, settings.seed)
    return metrics


def on_policy_metrics(model: nn.Module, tokenizer, env_id: str, settings: OnPolicySettings,
                      env_kwargs: dict | None = None, *, split: str = "in_distribution",
                      heldout: Sequence[CalibrationExample] | None = None,
                      max_turns: int | None = None) -> dict[str, float]:
    """Plasticity measured where RL will act: on the policy's own samples (``play_on_policy``).

    - ``sampled_success``: success rate over all sampled episodes;
    - ``zero_signal_groups``: fraction of tasks whose G episodes' total rewards are all equal
      (GRPO groups with zero advantage), i.e. 1 − the evaluator's ``varied_reward_tasks``;
    - ``saturated_groups``: of those, the share of all tasks whose G episodes all succeeded (no signal
      because the task is solved, not because the policy collapsed);
    - ``collapsed_groups``: the share of tasks without signal for the policy's sake (``collapsed_group_share``);
    - ``onpolicy_entropy``, ``onpolicy_top1_prob``: of softmax(logits / temperature) at each sampled token,
      ``onpolicy_loss``: their NLL at temperature 1, ``onpolicy_tokens``: how many;
    - ``onpolicy_hessian_max_abs_eigenvalue`` (signed) and ``onpolicy_hessian_converged`` (``HessianEigenvalue``),
      ``onpolicy_perturbation_sharpness``, ``onpolicy_adaptive_sharpness``: of that NLL (the log-prob term of
      the RL objective, at temperature 1) on ``settings.sharpness_examples`` turns;
    - with ``heldout`` (e.g. expert episodes of games SFT never saw): ``heldout_loss``, ``heldout_entropy``
      (temperature 1), ``heldout_hessian_max_abs_eigenvalue``, ``heldout_hessian_converged``,
      ``heldout_adaptive_sharpness``.

    The Hessian keys are absent when ``settings.hessian_iterations`` is 0, the perturbation key when
    ``settings.perturbation_samples`` is 0.
    """
    run = play_on_policy(model, tokenizer, env_id, settings, env_kwargs, split=split, max_turns=max_turns)
    examples = [turn.example for turn in run.turns]
    if not examples:
        raise ValueError(f"the policy played no turn of {env_id}: every episode ended before its first action")
    stats = token_statistics(model, examples, settings.temperature)
    metrics = {
        "sampled_success": run.cell.success_rate,
        "zero_signal_groups": 1.0 - run.cell.varied_reward_tasks,
        "saturated_groups": run.cell.solved_tasks,
        "collapsed_groups": collapsed_group_share(run.records),
        "onpolicy_entropy": stats["entropy"],
        "onpolicy_top1_prob": stats["top1_prob"],
        "onpolicy_loss": stats["sft_loss"],
        "onpolicy_tokens": float(stats["tokens"]),
    }
    sharp = _sharpness(model, _spread(examples, settings.sharpness_examples), settings, perturbation=True)
    metrics.update({f"onpolicy_{key}": value for key, value in sharp.items()})
    if heldout:
        held = token_statistics(model, heldout)
        metrics.update({"heldout_loss": held["sft_loss"], "heldout_entropy": held["entropy"]})
        sharp = _sharpness(model, _spread(heldout, settings.sharpness_examples), settings, perturbation=False)
        metrics.update({f"heldout_{key}": value for key, value in sharp.items()})
    return metrics


def greedy_success(model: nn.Module, tokenizer, env_id: str, episodes: int, env_kwargs: dict | None = None, *,
                   split: str = "in_distribution", first_seed: int = 0, max_turns: int | None = None,
                   max_new_tokens: int = 16) -> float:
    """Success rate of greedy (temperature-0) play over ``episodes`` tasks, reset seeds first_seed, first_seed + 1, ..."""
    plan = plan_episodes([SuiteEntry(resolve_env_id(env_id), normalize_split(split), episodes, seed=first_seed)], 1)
    policy = HFPolicy(model, tokenizer, temperature=0.0, max_new_tokens=max_new_tokens, reuse_prefixes=True)
    (cell,) = evaluate_episodes(plan, policy_agent(policy), num_envs=min(episodes, 16),
                                env_kwargs=_env_options(env_kwargs, max_turns))
    return cell.success_rate


def hessian_metrics(found: HessianEigenvalue) -> dict[str, object]:
    """The report's keys for a ``HessianEigenvalue``: the signed value, whether it converged, its last change."""
    return {"hessian_max_abs_eigenvalue": found.value, "hessian_converged": found.converged,
            "hessian_relative_change": found.relative_change}


def measurement_count(settings: ReportSettings, env_name: str | None) -> int:
    """How many measurements ``model_metrics`` (and the env's) make of one model: the units of its stage."""
    return 4 + bool(settings.hessian_iterations) + bool(env_name)


def model_metrics(model: nn.Module, base: nn.Module, calib: Sequence[CalibrationExample],
                  settings: ReportSettings, advance: Callable[..., object] | None = None) -> dict[str, object]:
    """Every teacher-forced measurement of ``model``; ``advance(1, name)`` after each (for a progress stage)."""
    advance = advance or (lambda *args: None)
    stats = token_statistics(model, calib)
    advance(1, "entropy and loss")
    drift = layer_drift(base, model)
    metrics: dict[str, object] = {
        "entropy": stats["entropy"], "top1_prob": stats["top1_prob"], "sft_loss": stats["sft_loss"],
        "scored_tokens": stats["tokens"], **total_drift(model, base)}
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
    return {"metrics": metrics, "drift_per_layer": drift, "entropies": stats["entropies"]}


def total_drift(model: nn.Module, base: nn.Module) -> dict[str, float]:
    """Whole-model ‖θ − θ_base‖ / ‖θ_base‖ and mean-squared difference per parameter."""
    base_params = dict(base.named_parameters())
    delta = total = 0.0
    count = 0
    for name, parameter in model.named_parameters():
        reference = base_params[name].detach().float()
        delta += float((parameter.detach().float() - reference).pow(2).sum())
        total += float(reference.pow(2).sum())
        count += reference.numel()
    return {"drift_relative": math.sqrt(delta) / max(math.sqrt(total), 1e-12), "drift_mean_squared": delta / count}


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
