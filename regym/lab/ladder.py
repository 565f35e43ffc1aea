"""The SFT ladder and where on it over-SFT begins, found by measurement.

One SFT run writes a checkpoint at every mark of the ladder. Each checkpoint (and the base)
is then measured where RL will see it: on the policy's own samples on the RL task pool
(token entropy and top-1 probability of the sampled actions, the share of GRPO groups whose
rewards all agree, sampled and greedy success), its drift from the base, and sharpness on
those samples and on held-out expert text. ``choose_over_mark`` applies the stated rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from regym.cache import read_stamp, reusable, write_stamp


@dataclass(frozen=True)
class OverSFTRule:
    """Over-SFT is the first mark past the moderate one whose on-policy entropy has collapsed *and* whose
    GRPO groups mostly carry no signal because of the policy (``collapsed_groups``: all G rewards equal with
    no sample won, or every sample the same play). Groups solved by varied samples do not count: in the
    SmolLM2 lab's first exploration the rule was met by tasks the model had learnt, not by collapse."""

    max_entropy: float = 0.1
    """Mean entropy (nats) of the policy's sampled action tokens at or below which it has "collapsed": the
    sampled token then holds about 98 % of the mass, so G samples of a turn mostly agree."""
    min_collapsed: float = 0.5
    """Share of collapsed GRPO groups at or above which RL has little to learn from."""

    def holds(self, metrics: dict[str, float]) -> bool:
        return metrics["onpolicy_entropy"] <= self.max_entropy and metrics["collapsed_groups"] >= self.min_collapsed


def choose_over_mark(diagnostics: dict[str, dict[str, float]], marks: Sequence[float], moderate: float,
                     rule: OverSFTRule) -> tuple[float, bool]:
    """(the over-SFT mark, whether the rule found one); without one, the last mark (and False)."""
    for mark in sorted(marks):
        if mark > moderate and rule.holds(diagnostics[mark_label(mark)]):
            return mark, True
    return max(marks), False


def mark_label(mark: float) -> str:
    return f"sft@{mark:g}ep"


def heldout_examples(tokenizer, episodes: Sequence[dict[str, Any]], max_length: int = 1024) -> list:
    """One example per expert turn of each held-out episode: the conversation up to that action, the action
    scored (as the policy sees an episode in full context). Turns that do not fit ``max_length`` are left out."""
    from regym.rejuvenation.calibration import encode_example

    examples = []
    for episode in episodes:
        messages = episode["messages"]
        for index, message in enumerate(messages):
            if message["role"] == "assistant":
                try:
                    examples.append(encode_example(tokenizer, {"messages": messages[: index + 1]}, max_length))
                except ValueError:
                    continue
    return examples


def measure_checkpoint(job: dict[str, Any]) -> dict[str, float]:
    """One model's ladder row (run in a lab worker): on-policy metrics, greedy success, drift.

    ``job``: model, base, env_id, env_kwargs (training options: the RL pool, dense reward), split, tasks,
    samples, temperature, max_turns, max_new_tokens, greedy_episodes, heldout (messages), out (a JSON path).
    """
    from regym.eval.plasticity import OnPolicySettings, greedy_success, on_policy_metrics
    from regym.models.loading import load_causal_lm
    from regym.rejuvenation.drift import drift

    out = Path(job["out"])
    if reusable(out, job, rebuild=True):  # a measurement of another job's settings is taken again
        return read_stamp(out)["result"]
    model, tokenizer = load_causal_lm(job["model"])
    settings = OnPolicySettings(tasks=job["tasks"], samples=job["samples"], temperature=job.get("temperature", 1.0),
                                max_new_tokens=job["max_new_tokens"], seed=0, first_seed=0)
    if not job.get("sharpness", True):  # e.g. the temperature search: only entropy and signal are needed
        settings = replace(settings, hessian_iterations=0, perturbation_samples=0)
    heldout = heldout_examples(tokenizer, job["heldout"]) if job.get("heldout") else None
    metrics = on_policy_metrics(model, tokenizer, job["env_id"], settings, job["env_kwargs"], heldout=heldout,
                                max_turns=job["max_turns"])
    if job.get("greedy_episodes"):
        metrics["greedy_success"] = greedy_success(model, tokenizer, job["env_id"], job["greedy_episodes"],
                                                   job["env_kwargs"], max_turns=job["max_turns"],
                                                   max_new_tokens=job["max_new_tokens"])
    if job.get("base"):
        base, _ = load_causal_lm(job["base"])
        metrics["drift"] = drift(base, model, "total")["drift_relative"]
    metrics = {key: float(value) for key, value in metrics.items()}
    write_stamp(out, job, result=metrics)
    return metrics
