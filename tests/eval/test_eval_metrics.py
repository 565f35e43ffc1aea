"""The estimators against their closed forms and known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from regym.eval.metrics import (
    EpisodeRecord,
    bootstrap_interval,
    overall_score,
    pass_at_k,
    score_run,
    split_averages,
    success_rate,
    wilson_interval,
)


def test_pass_at_k_equals_the_binomial_closed_form():
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                closed_form = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(closed_form, abs=1e-12), (n, c, k)


def test_pass_at_k_known_cases():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the success rate
    assert pass_at_k(2, 1, 2) == 1.0
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9)  # 1 - C(3,3)/C(5,3) = 1 - 1/10
    assert pass_at_k(200, 10, 100) == pytest.approx(1 - math.comb(190, 100) / math.comb(200, 100))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_pass_at_k_is_the_expected_best_of_k_subset():
    """Unbiasedness: the average over all k-subsets of "any success" is pass@k."""
    from itertools import combinations

    outcomes = [1, 0, 0, 1, 0, 0]
    for k in range(1, 7):
        subsets = list(combinations(outcomes, k))
        assert pass_at_k(6, 2, k) == pytest.approx(np.mean([max(s) for s in subsets]))


def test_wilson_interval_known_values():
    # Reference values from the closed form (Brown, Cai & DasGupta 2001, eq. 4), z = 1.959964.
    assert wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-5)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-5)
    assert wilson_interval(81, 263) == pytest.approx((0.255, 0.366), abs=1e-3)  # Wikipedia's worked example
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_width_shrinks_like_one_over_root_n_and_grows_with_confidence():
    z = 1.959964
    widths = {n: np.subtract(*reversed(wilson_interval(n // 2, n))) for n in (24, 96, 384, 1536, 6144)}
    for n, width in widths.items():
        assert width == pytest.approx(z / math.sqrt(n + z * z), rel=1e-6)  # the width at p̂ = 1/2
        assert width < 2 * z * 0.5 / math.sqrt(n)  # never wider than the normal interval there
    for n in (24, 96, 384, 1536):
        assert widths[n] / 2 < widths[4 * n] < widths[n] / 2 * 1.1  # ~1/sqrt(n)
    narrow, wide = wilson_interval(30, 60, 0.8), wilson_interval(30, 60, 0.99)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


def test_wilson_covers_the_true_rate_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    for p, n in ((0.3, 40), (0.05, 100), (0.9, 20)):
        successes = rng.binomial(n, p, size=3000)
        covered = np.mean([low <= p <= high for low, high in (wilson_interval(int(s), n) for s in successes)])
        assert 0.92 <= covered <= 0.985, (p, n, covered)


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_data():
    rng = np.random.default_rng(1)
    small, large = rng.random(20), rng.random(320)
    low, high = bootstrap_interval(small)
    assert low < small.mean() < high
    assert bootstrap_interval(small) == bootstrap_interval(small)  # seeded
    large_low, large_high = bootstrap_interval(large)
    assert (large_high - large_low) == pytest.approx((high - low) / 4, rel=0.35)
    assert bootstrap_interval([1.0, 1.0, 1.0]) == (1.0, 1.0)


def record(env, split, seed, sample, success, turns=3, invalid=0, reward=None, tokens=0, error=None):
    return EpisodeRecord(env, split, seed, sample, success, float(success if reward is None else reward), turns,
                         invalid, tokens, error)


def test_score_run_per_env_and_split():
    records = [
        # task 0: 2 of 4 samples succeed; task 1: 0 of 4; task 2: 4 of 4
        *(record("a", "out_of_distribution", 0, j, j < 2, invalid=1) for j in range(4)),
        *(record("a", "out_of_distribution", 1, j, False, error="step failed" if j == 0 else None)
          for j in range(4)),
        *(record("a", "out_of_distribution", 2, j, True, tokens=5) for j in range(4)),
        *(record("a", "in_distribution", 0, j, True, turns=1) for j in range(2)),
    ]
    cells = score_run(reversed(records))
    assert [(cell.env_id, cell.split) for cell in cells] == [("a", "in_distribution"), ("a", "out_of_distribution")]
    ood = cells[1]
    assert (ood.tasks, ood.episodes, ood.k) == (3, 12, 4)
    assert ood.success_rate == pytest.approx(6 / 12) == ood.pass_at["1"]
    assert ood.pass_at["2"] == pytest.approx((pass_at_k(4, 2, 2) + 0 + 1) / 3)
    assert ood.pass_at["4"] == pytest.approx(2 / 3)
    assert (ood.ci_low, ood.ci_high) == wilson_interval(6, 12)
    assert ood.invalid_action_rate == pytest.approx(4 / 36) and ood.mean_turns == 3
    assert ood.tokens_generated == 20 and ood.errors == 1
    boot = score_run(records, ci_method="bootstrap")[1]
    assert boot.ci_low < 0.5 < boot.ci_high and boot.ci_method == "bootstrap"
    assert split_averages(cells) == {"id_average": 1.0, "ood_average": 0.5}


def test_success_rate_is_the_share_of_won_episodes_and_the_score_averages_the_splits():
    assert success_rate([True, False, True, True]) == 0.75 and success_rate([1.0, 0.0]) == 0.5
    assert success_rate([]) == 0.0
    assert overall_score({"id_average": 1.0, "ood_average": 0.5}) == 0.75
    assert overall_score({"id_average": 0.4, "ood_average": None}) == 0.4
    assert overall_score({"id_average": None, "ood_average": None}) is None


def test_rl_sampling_seeds_are_the_ones_training_always_drew():
    """rl-train's sampling seeds come from regym.seeds; these values are what runs recorded so far drew."""
    from regym.seeds import rl_sampling_seed

    assert rl_sampling_seed(0, 0) == 0 and rl_sampling_seed(3, 17) == 3 * 1_000_003 + 17
    assert rl_sampling_seed(2, 5, process=1) == 2 * 1_000_003 + 5 + 7_919 * 1_000_003
