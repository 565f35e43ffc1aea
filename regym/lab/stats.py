"""Means with 95 % confidence intervals over a handful of seeds."""

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
