"""The acceptance run of issue 6, as a slow test: RL on the default CPU pipeline raises ID success.

Builds the default tiny TextWorld pipeline (about 9 minutes of one core, cached) and runs
``rl-train``'s defaults once (about 12 minutes on 2 cores). ``benchmarks/rl_learning.py``
runs the same over three seeds and prints the table.
"""

import pytest

from regym.recipes.tiny import with_tiny_pipeline
from regym.rl.config import load_config
from regym.rl.train import read_jsonl, train


@pytest.mark.slow
def test_default_rl_raises_in_distribution_success_from_the_sft_start(tmp_path):
    summary = train(with_tiny_pipeline(load_config(None, {"env": "textworld", "seed": 0, "output_dir": str(tmp_path),
                                                          "progress": False, "report_to": []})))
    evals = [row["in_distribution"]["success_rate"] for row in read_jsonl(tmp_path / "eval.jsonl")]
    assert len(evals) == 5  # steps 0, 10, 20, 30, 40
    before = summary["before"]["in_distribution"]["success_rate"]
    after = summary["after"]["in_distribution"]["success_rate"]
    assert after >= before + 0.15, evals  # 64 episodes per eval: a 0.15 rise is about 2.5 standard errors
    assert max(evals[2:]) > evals[0]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_alfworld_embedded_default_raises_in_distribution_success(tmp_path):
    """``rl-train --env alfworld --rejuvenate`` (issue 17): the embedded default's 24 steps raise ID success.

    About 18 minutes on 2 cores once the ALFWorld pipeline is cached (12 more from an empty cache).
    Seed 0 measured 0.297 -> 0.406 (docs/rl.md); the bar is lower than TextWorld's because the three
    seeds' gains were +0.11 to +0.23.
    """
    from regym.rl.config import resolve_config

    config, sources = resolve_config(None, {"env": "alfworld", "seed": 0, "rejuvenate": True,
                                            "output_dir": str(tmp_path), "progress": False, "report_to": []})
    summary = train(with_tiny_pipeline(config, sources))
    evals = [row["in_distribution"]["success_rate"] for row in read_jsonl(tmp_path / "eval.jsonl")]
    assert len(evals) == 4  # steps 0, 8, 16, 24: the embedded default's budget
    before = summary["before"]["in_distribution"]["success_rate"]
    after = summary["after"]["in_distribution"]["success_rate"]
    assert 0.1 <= before <= 0.6, evals  # RL has signal and room
    assert after >= before + 0.05, evals
