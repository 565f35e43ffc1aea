"""Scores of an evaluation run: success rates with confidence intervals and pass@k.

Every number here is computed from the run's trajectory log, so a resumed run and an
uninterrupted run of the same tasks report the same numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    E. B. Wilson (1927), "Probable inference, the law of succession, and statistical
    inference", JASA 22(158); the form of Brown, Cai & DasGupta (2001), eq. (4):
    centre (p̂ + z²/2n) / (1 + z²/n), half-width z·sqrt(p̂(1−p̂)/n + z²/4n²) / (1 + z²/n).
    Unlike the normal interval it stays inside [0, 1] and is not empty at p̂ = 0 or 1.
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if trials == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


def bootstrap_interval(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (Efron & Tibshirani 1993, ch. 13).

    Pass per-task means (not per-episode values) to respect that the k samples of one
    task are correlated: resampling tasks is the cluster bootstrap.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c succeeded.

    Chen et al. (2021), "Evaluating Large Language Models Trained on Code", eq. (1):
    pass@k = 1 − C(n−c, k) / C(n, k), computed as the stable product
    1 − ∏_{i=n−c+1}^{n} (1 − k/i).
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass
class EpisodeRecord:
    """What the metrics need from one logged episode."""

    env_id: str
    split: str
    task_seed: int
    sample: int
    success: bool
    reward: float
    turns: int
    invalid_actions: int
    tokens_generated: int = 0
    error: str | None = None

    @classmethod
    def from_log(cls, record: dict[str, Any]) -> EpisodeRecord:
        return cls(**{name: record[name] for name in cls.__dataclass_fields__ if name in record})


@dataclass
class SplitMetrics:
    """The scores of one (env, split) cell of a run."""

    env_id: str
    split: str
    tasks: int
    episodes: int
    k: int
    success_rate: float
    ci_low: float
    ci_high: float
    ci_method: str
    pass_at: dict[str, float] = field(default_factory=dict)
    """Unbiased pass@j for j = 1, 2, 4, ... up to k (keys are str(j) so JSON round-trips)."""
    mean_reward: float = 0.0
    mean_turns: float = 0.0
    invalid_action_rate: float = 0.0
    """Invalid actions over all turns played."""
    tokens_generated: int = 0
    errors: int = 0
    """Episodes that ended in an env or agent error (counted as failures)."""
    varied_reward_tasks: float = 0.0
    """Fraction of tasks whose samples' rewards are not all equal: the GRPO groups with a learning
    signal (a group of equal rewards has zero advantage for every sample). 0 when k = 1."""
    solved_tasks: float = 0.0
    """Fraction of tasks whose samples all succeeded: groups without signal because the task is saturated,
    not because the policy collapsed onto a wrong answer (the two look alike in ``varied_reward_tasks``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pass_ks(k: int, extra: Iterable[int] = ()) -> list[int]:
    ks, j = [], 1
    while j < k:
        ks.append(j)
        j *= 2
    return sorted({*ks, k, *(j for j in extra if 1 <= j <= k)})


def split_metrics(
    records: Sequence[EpisodeRecord], confidence: float = 0.95, ci_method: str = "wilson",
    pass_ks: Iterable[int] = (),
) -> SplitMetrics:
    """Scores of the episodes of one (env, split).

    The success rate is over episodes (= pass@1, as every task has the same k); the
    Wilson interval treats episodes as independent, the bootstrap one resamples tasks.
    pass@j is reported for j = 1, 2, 4, ... and k, plus any ``pass_ks`` up to k.
    """
    if not records:
        raise ValueError("no episodes to score")
    env_id, split = records[0].env_id, records[0].split
    by_task: dict[int, list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        by_task[record.task_seed].append(record)
    samples = {len(group) for group in by_task.values()}
    k = min(samples)
    successes = sum(record.success for record in records)
    if ci_method == "wilson":
        ci_low, ci_high = wilson_interval(successes, len(records), confidence)
    elif ci_method == "bootstrap":
        task_rates = [np.mean([r.success for r in group]) for _, group in sorted(by_task.items())]
        ci_low, ci_high = bootstrap_interval(task_rates, confidence)
    else:
        raise ValueError(f"ci_method must be 'wilson' or 'bootstrap', got {ci_method!r}")
    pass_at = {
        str(j): float(np.mean([pass_at_k(len(group), sum(r.success for r in group), j) for group in by_task.values()]))
        for j in _pass_ks(k, pass_ks)
    }
    turns = sum(record.turns for record in records)
    return SplitMetrics(
        env_id=env_id,
        split=split,
        tasks=len(by_task),
        episodes=len(records),
        k=k,
        success_rate=successes / len(records),
        ci_low=ci_low,
        ci_high=ci_high,
        ci_method=ci_method,
        pass_at=pass_at,
        mean_reward=float(np.mean([record.reward for record in records])),
        mean_turns=turns / len(records),
        invalid_action_rate=sum(record.invalid_actions for record in records) / turns if turns else 0.0,
        tokens_generated=int(sum(record.tokens_generated for record in records)),
        errors=sum(record.error is not None for record in records),
        varied_reward_tasks=float(np.mean([len({r.reward for r in group}) > 1 for group in by_task.values()])),
        solved_tasks=float(np.mean([all(r.success for r in group) for group in by_task.values()])),
    )


def score_run(
    records: Iterable[EpisodeRecord], confidence: float = 0.95, ci_method: str = "wilson",
    pass_ks: Iterable[int] = (),
) -> list[SplitMetrics]:
    """Scores per (env, split), in sorted order so equal logs give equal reports."""
    pass_ks = tuple(pass_ks)
    groups: dict[tuple[str, str], list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        groups[(record.env_id, record.split)].append(record)
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], split_order(item[0][1])))
    return [
        split_metrics(sorted(group, key=lambda r: (r.task_seed, r.sample)), confidence, ci_method, pass_ks)
        for _, group in ordered
    ]


def split_order(split: str) -> tuple[int, str]:
    return ({"in_distribution": 0, "out_of_distribution": 1}.get(split, 2), split)


def success_rate(outcomes: Iterable[bool | float]) -> float:
    """The share of won episodes: the mean of their 0/1 outcomes (a batch, a demo set, an eval split).

    The one place regym averages success; 0.0 for no episodes (nothing was won)."""
    values = [float(outcome) for outcome in outcomes]
    return sum(values) / len(values) if values else 0.0


def _mean_or_none(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def split_averages(cells: Iterable[SplitMetrics | dict[str, Any]]) -> dict[str, float | None]:
    """Macro averages of the success rate over envs: ``id_average``, ``ood_average``."""
    id_rates, ood_rates = [], []
    for cell in cells:
        cell = cell.to_dict() if isinstance(cell, SplitMetrics) else cell
        if cell["split"] == "in_distribution":
            id_rates.append(cell["success_rate"])
        elif cell["split"] == "out_of_distribution":
            ood_rates.append(cell["success_rate"])
    return {"id_average": _mean_or_none(id_rates), "ood_average": _mean_or_none(ood_rates)}


def overall_score(averages: dict[str, float | None]) -> float | None:
    """The leaderboard's score: the mean of the ID and OOD averages that exist (``split_averages``)."""
    return _mean_or_none([value for value in (averages["id_average"], averages["ood_average"]) if value is not None])
