"""``regym lab handoff --quick`` end to end on the tiny TextWorld pipeline (slow: the shared tiny base model, about
14 minutes on one core from an empty cache, then the quick lab itself within 20 minutes on 2 cores)."""

from __future__ import annotations

import json
import time

import pytest

from regym.cli.lab import handoff
from regym.lab.arms import ARMS
from regym.lab.report import outcomes

pytestmark = pytest.mark.slow


@pytest.mark.timeout(3000)  # the base model from an empty cache (~14 min on one core), then the lab (<= 20 min)
def test_quick_lab_writes_the_report_and_computes_the_verdict_from_its_runs(tmp_path, capsys):
    from regym.recipes.tiny import ensure_tiny_base

    ensure_tiny_base(seed=0)  # every tiny pipeline's shared base model (cached): not part of the lab's budget
    out = tmp_path / "lab"
    started = time.time()
    assert handoff(["--quick", "--out", str(out)]) == 0
    minutes = (time.time() - started) / 60
    data = json.loads((out / "lab.json").read_text())
    report = (out / "report.md").read_text()
    for section in ("## Verdict", "## Verdict table", "## The SFT ladder", "## Arm starts", "## RL curves"):
        assert section in report
    assert {(run["arm"], run["seed"]) for run in data["runs"]} == \
        {(arm, 0) for arm in ARMS}
    splits = ["in_distribution", "near_out_of_distribution", "out_of_distribution"]
    episodes = outcomes(data)
    for arm, by_split in data["verdict_table"].items():
        assert list(by_split) == splits
        for split in splits:
            post = [episodes["post"][arm][seed][split] for seed in sorted(episodes["post"][arm])]
            assert all(len(values) == 32 for values in post)
            assert by_split[split]["post"]["mean"] == pytest.approx(sum(sum(v) / len(v) for v in post) / len(post))
            assert by_split[split]["pre"]["mean"] == pytest.approx(
                sum(episodes["pre"][arm][split]) / len(episodes["pre"][arm][split]))
    primary = data["verdict_table"]["over-sft+fusion+reset"]["in_distribution"]["diff"]
    assert primary["low"] <= primary["mean"] <= primary["high"]
    verdict = report.split("## Verdict\n\n", 1)[1].split("\n\n")
    assert verdict[0].startswith("**Preconditions** held:") and verdict[1].startswith("**RL budget**")
    expected = "beat" if primary["low"] > 0 else "did worse" if primary["high"] < 0 else "do not differ"
    assert expected in verdict[2]
    assert minutes <= 20, f"the quick lab took {minutes:.1f} min besides the base model"
