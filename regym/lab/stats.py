"""Means with 95 % intervals: Student t over a handful of seeds, and bootstraps over seeds and episodes."""

from __future__ import annotations

import math
from collections.abc import Sequence

_T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
          12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
"""Two-sided 95 % quantiles of Student's t by degrees of freedom (standard tables)."""


def t_quantile(degrees_of_freedom: int) -> float:
    """Student's t 0.975 quantile; between table rows the next smaller df is used (a wider interval)."""
    if degrees_of_freedom < 1:
        raise ValueError("need at least two values for a confidence interval")
    if degrees_of_freedom > 30:
        return 1.96
    return _T_975[max(df for df in _T_975 if df <= degrees_of_freedom)]


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % t interval); the half-width is NaN for a single value."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, t_quantile(len(values) - 1) * math.sqrt(variance / len(values))


def format_ci(values: Sequence[float], digits: int = 3) -> str:
    mean, half = mean_ci(values)
    if math.isnan(mean):
        return "—"
    if math.isnan(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def bootstrap_paired_difference(treated: Sequence[Sequence[float]], control: Sequence[Sequence[float]], *,
                                replicates: int = 4000, seed: int = 0) -> dict[str, float]:
    """Mean over seeds of (treated − control) episode means, with a 95 % bootstrap interval over seeds and episodes.

    ``treated[s]`` and ``control[s]`` are the per-episode outcomes of seed ``s``'s two runs on the same fixed
    evaluation episodes (same reset seeds, same order). Each replicate draws seeds with replacement (pairs
    stay paired) and, within each drawn seed, episode indices with replacement, shared by both arms: the
    episodes are the same tasks, so task difficulty cancels and both evaluation errors enter the interval.
    """
    import numpy as np

    if len(treated) != len(control) or not treated:
        raise ValueError("need the same, non-zero number of seeds in both arms")
    a = [np.asarray(values, dtype=float) for values in treated]
    b = [np.asarray(values, dtype=float) for values in control]
    if any(len(x) != len(y) or len(x) == 0 for x, y in zip(a, b, strict=True)):
        raise ValueError("each seed's two runs must hold the same, non-zero number of episodes")
    rng = np.random.default_rng(seed)
    observed = float(np.mean([x.mean() - y.mean() for x, y in zip(a, b, strict=True)]))
    draws = np.empty(replicates)
    for r in range(replicates):
        seeds = rng.integers(len(a), size=len(a))
        total = 0.0
        for s in seeds:
            index = rng.integers(len(a[s]), size=len(a[s]))
            total += a[s][index].mean() - b[s][index].mean()
        draws[r] = total / len(a)
    low, high = np.quantile(draws, [0.025, 0.975])
    return {"mean": observed, "low": float(low), "high": float(high), "p_not_positive": float(np.mean(draws <= 0)),
            "seeds": len(a), "episodes": int(sum(len(x) for x in a))}


def bootstrap_mean(runs: Sequence[Sequence[float]], *, replicates: int = 4000, seed: int = 0) -> dict[str, float]:
    """Mean over runs of the episode means, with a 95 % bootstrap interval over runs and episodes."""
    zeros = [[0.0] * len(values) for values in runs]
    result = bootstrap_paired_difference(runs, zeros, replicates=replicates, seed=seed)
    result.pop("p_not_positive")
    return result


def bootstrap_normalised_gain(post: Sequence[Sequence[float]], pre: Sequence[float], *, replicates: int = 4000,
                              seed: int = 0) -> dict[str, float]:
    """(post − pre) / (1 − pre): the share of the headroom RL won, with a 95 % bootstrap interval.

    ``pre`` is the arm's one pre-RL evaluation (shared by its seeds); ``post[s]`` each seed's post-RL episodes,
    on the same episodes. Each replicate resamples seeds, and episode indices shared by pre and post.
    """
    import numpy as np

    before = np.asarray(pre, dtype=float)
    after = [np.asarray(values, dtype=float) for values in post]
    if not after or any(len(values) != len(before) for values in after):
        raise ValueError("every post-RL run must hold the pre-RL evaluation's episodes")

    def share(post_mean: float, pre_mean: float) -> float:
        return (post_mean - pre_mean) / (1 - pre_mean) if pre_mean < 1 else math.nan

    rng = np.random.default_rng(seed)
    observed = float(np.mean([share(values.mean(), before.mean()) for values in after]))
    draws = []
    for _ in range(replicates):
        seeds = rng.integers(len(after), size=len(after))
        values = []
        for s in seeds:
            index = rng.integers(len(before), size=len(before))
            values.append(share(after[s][index].mean(), before[index].mean()))
        draws.append(float(np.mean(values)))
    finite = np.asarray([d for d in draws if not math.isnan(d)])
    if finite.size == 0:
        return {"mean": observed, "low": math.nan, "high": math.nan}
    low, high = np.quantile(finite, [0.025, 0.975])
    return {"mean": observed, "low": float(low), "high": float(high)}


def format_interval(result: dict[str, float], digits: int = 3) -> str:
    """"mean [low, high]" of a bootstrap result."""
    if math.isnan(result.get("mean", math.nan)):
        return "—"
    if math.isnan(result.get("low", math.nan)):
        return f"{result['mean']:+.{digits}f}"
    return f"{result['mean']:+.{digits}f} [{result['low']:+.{digits}f}, {result['high']:+.{digits}f}]"
