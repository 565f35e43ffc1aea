"""The handoff lab: statistics, the computed verdict, and one end-to-end micro run."""

from __future__ import annotations

import io
import json
import math
import re
import time

import pytest

from games import PICK_GAME, register_pick_game
from regym.lab.arms import ARMS, PRIMARY, match_temperature
from regym.lab.handoff import HandoffConfig, load_handoff_config, rl_field, rl_settings, run_handoff
from regym.lab.ladder import OverSFTRule, choose_over_mark
from regym.lab.report import seed_spread, verdict
from regym.lab.stats import bootstrap_normalised_gain, bootstrap_paired_difference, format_ci, mean_ci


def test_mean_ci_is_the_student_t_interval():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 / math.sqrt(3))
    assert math.isnan(mean_ci([0.5])[1]) and format_ci([0.5]) == "0.500"
    assert format_ci([]) == "—"


def test_the_paired_bootstrap_keeps_pairs_and_carries_both_evaluation_errors():
    same = [[1.0, 0.0] * 32 for _ in range(3)]
    null = bootstrap_paired_difference(same, same)
    assert null["mean"] == 0 and null["low"] == null["high"] == 0  # identical runs on shared episodes: no noise
    certain = bootstrap_paired_difference([[1.0] * 64] * 3, [[0.0] * 64] * 3)
    assert (certain["mean"], certain["low"], certain["high"], certain["p_not_positive"]) == (1, 1, 1, 0)
    # Half the episodes are hard for both arms; the treated arm also wins 4 of the hard ones. Resampled
    # independently, the difficulty would swamp that; resampled as pairs of the same episodes, it cancels.
    hard = [0.0] * 32 + [1.0] * 32
    treated, control = [[1.0] * 4 + hard[4:]] * 3, [hard] * 3
    paired = bootstrap_paired_difference(treated, control)
    assert paired["mean"] == pytest.approx(4 / 64) and 0 < paired["low"] < paired["high"] < 0.15
    with pytest.raises(ValueError, match="same"):
        bootstrap_paired_difference([[1.0]], [[1.0, 0.0]])


def test_the_normalised_gain_is_the_share_of_the_headroom_won():
    pre = [0.0] * 50 + [1.0] * 50
    post = [[1.0] * 75 + [0.0] * 25]
    post[0] = [1.0 if i < 50 else (1.0 if i < 75 else 0.0) for i in range(100)]
    result = bootstrap_normalised_gain(post, pre)
    assert result["mean"] == pytest.approx(0.5) and result["low"] < 0.5 < result["high"]


def test_over_sft_is_the_first_mark_past_moderate_that_meets_the_rule():
    rule = OverSFTRule(max_entropy=0.1, min_collapsed=0.5)
    rows = {"sft@1ep": {"onpolicy_entropy": 0.05, "collapsed_groups": 0.9},  # at the moderate mark: not a candidate
            "sft@2ep": {"onpolicy_entropy": 0.3, "collapsed_groups": 0.8},   # signal starved, entropy not collapsed
            "sft@4ep": {"onpolicy_entropy": 0.08, "collapsed_groups": 0.25},  # collapsed, signal left
            "sft@8ep": {"onpolicy_entropy": 0.07, "collapsed_groups": 0.5},
            "sft@16ep": {"onpolicy_entropy": 0.01, "collapsed_groups": 1.0}}
    assert choose_over_mark(rows, [1, 2, 4, 8, 16], 1, rule) == (8, True)
    rows["sft@8ep"]["collapsed_groups"] = rows["sft@16ep"]["collapsed_groups"] = 0.1
    assert choose_over_mark(rows, [1, 2, 4, 8, 16], 1, rule) == (16, False)


def test_the_matched_temperature_reaches_the_target_entropy():
    temperature, tried = match_temperature(lambda t: 0.2 * (t - 1) ** 2, target=0.45)
    assert temperature == pytest.approx(2.5, abs=0.05) and len(tried) == 8
    assert match_temperature(lambda t: 1.0, target=0.5) == (1.0, [(1.0, 1.0)])  # already above: no change


def _lab_data(over_row: dict, rejuvenated_start: dict, runs: list | None = None) -> dict:
    return {"diagnostics": {"sft@1ep": {"onpolicy_entropy": 0.4, "collapsed_groups": 0.2}, "sft@8ep": over_row},
            "over_mark": 8.0, "moderate_mark": 1.0, "over_rule_met": True,
            "rule": {"max_entropy": 0.1, "min_collapsed": 0.5}, "runs": runs or [],
            "config": {"rl": {"max_steps": 16, "tasks_per_step": 4, "num_generations": 8}},
            "temperature_matching": {"temperature": 1.0, "starts": {"over-sft+fusion+reset": rejuvenated_start}}}


def _cell(mean: float, low: float, high: float, seeds: int = 5) -> dict:
    return {"mean": mean, "low": low, "high": high, "seeds": seeds, "episodes": 640, "p_not_positive": 0.5}


def _table(diff, moderate_pre=0.4, moderate_gain=(0.2, 0.1, 0.3), over_gain=(0.05, -0.02, 0.12), near=0.2,
           rejuvenated_pre=0.3):
    return {"moderate-sft": {"in_distribution": {"pre": _cell(moderate_pre, 0.3, 0.5), "post": _cell(0.6, 0.5, 0.7),
                                                 "gain": _cell(*moderate_gain)},
                             "near_out_of_distribution": {"pre": _cell(near, 0.1, 0.3), "post": _cell(0.3, 0.2, 0.4),
                                                          "gain": _cell(0.1, 0.0, 0.2)}},
            "over-sft": {"in_distribution": {"pre": _cell(0.5, 0.4, 0.6), "post": _cell(0.55, 0.5, 0.6),
                                             "gain": _cell(*over_gain)}},
            "over-sft+fusion+reset": {"in_distribution": {"pre": _cell(rejuvenated_pre, 0.2, 0.4),
                                                          "post": _cell(0.7, 0.6, 0.8), "diff": diff,
                                                          "gain": _cell(0.4, 0.3, 0.5)}}}


def test_the_verdict_names_the_preconditions_before_the_effect():
    data = _lab_data({"onpolicy_entropy": 0.05, "collapsed_groups": 0.8}, {"onpolicy_entropy": 0.3, "collapsed_groups": 0.3})
    lines = verdict(data, _table(_cell(0.15, 0.05, 0.25)))
    assert lines[0] == "**Preconditions** held: 1, 2, 3, 4, 5; failed: none; not measured: 6."
    assert lines[1].startswith("**RL budget**: 16 steps of 4 tasks × 8 samples") and \
        "moderate-sft, over-sft+fusion+reset." in lines[1]
    assert lines[2].startswith("over-SFT + rejuvenation beat over-SFT")
    assert verdict(data, _table(_cell(-0.15, -0.25, -0.05)))[2].startswith("over-SFT + rejuvenation did worse")
    assert "do not differ" in verdict(data, _table(_cell(0.05, -0.05, 0.15)))[2]
    assert any("matched temperature: not applicable" in line for line in lines) is False  # no matched-T arm ran


def test_a_failed_precondition_qualifies_the_effect_and_is_named_first():
    data = _lab_data({"onpolicy_entropy": 0.05, "collapsed_groups": 0.8}, {"onpolicy_entropy": 0.3, "collapsed_groups": 0.3})
    floor = verdict(data, _table(_cell(0.15, 0.05, 0.25), moderate_pre=0.05))  # no headroom below: the floor
    assert "failed: 2 (headroom on both sides)" in floor[0]
    assert floor[2].startswith("Because preconditions failed, this is not evidence")
    no_rl = verdict(data, _table(_cell(0.15, 0.05, 0.25), moderate_gain=(0.06, -0.01, 0.13)))
    assert "3 (RL works)" in no_rl[0]
    premise = verdict(data, _table(_cell(0.15, 0.05, 0.25), over_gain=(0.19, 0.1, 0.3)))
    assert "4 (the premise)" in premise[0]
    lost = verdict(data, _table(_cell(0.15, 0.05, 0.25), rejuvenated_pre=0.2))
    assert "5 (the rejuvenated start keeps the SFT prior)" in lost[0]
    ceiling_near = verdict(data, _table(_cell(0.15, 0.05, 0.25), near=0.01))
    assert "2 (headroom" in ceiling_near[0]


def test_the_seed_spread_gives_the_seeds_a_five_point_difference_needs():
    runs = [{"arm": arm, "seed": seed, "summary": {"after": {"in_distribution": {"success_rate": rate}}}}
            for arm, rates in (("over-sft", (0.50, 0.54)), ("moderate-sft", (0.60, 0.64))) for seed, rate in enumerate(rates)]
    spread = seed_spread({"runs": runs})
    assert spread["sd"] == pytest.approx(0.02828, abs=1e-4) and spread["arms"] == 2
    assert spread["seeds_needed"] == 6  # ((1.96 + 0.84) * sqrt(2) * 0.0283 / 0.05)^2 = 5.02, rounded up
    assert seed_spread({"runs": runs[:1]}) is None


def test_config_checks_marks_seeds_and_quick():
    with pytest.raises(ValueError, match="moderate_epochs"):
        HandoffConfig(ladder=[2, 4], moderate_epochs=1)
    with pytest.raises(ValueError, match="past moderate"):
        HandoffConfig(ladder=[0.5, 1], moderate_epochs=1)
    config = load_handoff_config(rl={"max_steps": 3})
    assert config.rl["max_steps"] == 3 and config.rl["eval_every"] > 0 and config.seeds_primary == 5
    quick = load_handoff_config(quick=True)
    assert (quick.seeds_primary, quick.seeds_other, quick.eval_episodes) == (1, 1, 32)
    assert quick.ladder == config.ladder and quick.rl == {**config.rl, "max_steps": 8, "eval_every": 8}


def test_rl_field_is_what_the_lab_rl_runs_get():
    """The handoff's calibration plays expert turns with the RL runs' own max_turns and prompt style."""
    config = load_handoff_config(rl={"max_turns": 3})
    env_id = "regym/Math-v0"
    settings = rl_settings(config, env_id, model="m", reference="m", seed=0, output_dir="out")
    assert rl_field(config, env_id, "max_turns") == settings["max_turns"] == 3  # the lab's own setting
    assert rl_field(config, env_id, "max_new_tokens") == settings["max_new_tokens"] == 48  # Math's rl_defaults
    assert rl_field(config, env_id, "prompt_style") == "plain"  # RLConfig's default


def test_micro_lab_runs_every_stage_and_resumes(tmp_path, one_thread):
    """Every stage on a two-step game with a micro model: the report's sections exist, the verdict is computed
    from the runs' own evaluation episodes, and a rerun reuses everything."""
    register_pick_game()
    config = load_handoff_config(
        env=PICK_GAME, seeds_primary=2, seeds_other=1, out=str(tmp_path / "lab"), ladder=[0.5, 1, 2],
        moderate_epochs=0.5, sft_lr=5e-3, demo_episodes=16, demo_tasks=4, rl_tasks=4, eval_episodes=8,
        diagnostic_tasks=2, greedy_episodes=2, heldout_episodes=2, workers=1, eval_splits=["in_distribution"],
        tiny=dict(vocab_size=512, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, max_length=512,
                  corpus_random_episodes=12, corpus_expert_episodes=6, task_pool=None, pretrain_steps=30,
                  pretrain_batch_size=4, pretrain_block_size=64, sft_batch_size=4, corpus_envs=(PICK_GAME,)),
        rl=dict(max_steps=2, eval_every=1, num_generations=2, tasks_per_step=2, num_envs=4, max_turns=3,
                max_new_tokens=6, max_episode_tokens=256, calibration_episodes=2),
    )
    log = io.StringIO()
    data = run_handoff(config, stream=log)
    lines = log.getvalue().splitlines()
    lab = tmp_path / "lab"
    report = (lab / "report.md").read_text()
    for section in ("## Verdict", "## Verdict table", "## The SFT ladder", "## Arm starts", "### What the resets did",
                    "## RL curves"):
        assert section in report
    assert "**over-sft+fusion+reset** (attribution)" in report and "| layer band |" in report
    assert "Target tokens' entropy (nats): base" in report
    assert {(run["arm"], run["seed"]) for run in data["runs"]} == \
        {(arm, seed) for arm in ARMS for seed in range(2 if arm in PRIMARY else 1)}
    for name in ("ladder.png", "rl_curves.png", "verdict.png"):
        assert (lab / name).exists()
    # The verdict's numbers are the runs' own final evaluations: recompute one from its episodes.
    table = data["verdict_table"]
    finals = [json.loads(line) for run in data["runs"] if run["arm"] == "over-sft"
              for line in (lab / "rl" / "over-sft" / f"seed{run['seed']}" / "evals" / "step-2" /
                           "trajectories.jsonl").read_text().splitlines()]
    assert len(finals) == 2 * 8
    assert table["over-sft"]["in_distribution"]["post"]["mean"] == pytest.approx(
        sum(bool(row["success"]) for row in finals) / len(finals))
    assert set(table["over-sft+fusion+reset"]["in_distribution"]) >= {"pre", "post", "diff", "normalised_gain"}
    for run in data["runs"]:
        assert run["summary"]["before"] == {}  # step 0 is the arm's one shared pre-RL evaluation
        assert run["summary"]["reference"] == data["arms"][run["arm"]]["reference"]
    assert data["arms"]["over-sft+fusion+reset"]["reference"] == data["arms"]["over-sft"]["start"]
    assert all(key in data["diagnostics"]["sft@2ep"] for key in ("onpolicy_entropy", "zero_signal_groups", "collapsed_groups", "drift"))
    for number in range(1, 7):
        assert any(re.fullmatch(rf"lab {number}/6: .*: started \(\d+ to do\)", line) for line in lines), number
        assert any(re.fullmatch(rf"lab {number}/6: .*: done in .*", line) for line in lines), number

    started = time.time()
    again = run_handoff(config, stream=io.StringIO())
    assert time.time() - started < data["timings_s"]["total"] / 3
    assert [run["summary"] for run in again["runs"]] == [run["summary"] for run in data["runs"]]


def test_the_smollm2_math_preset_plays_the_level_suite_greedily_and_records_every_job(tmp_path):
    from regym.lab.handoff import default_splits, pool_kwargs, rl_settings

    config = load_handoff_config(preset="smollm2-math")
    assert (config.env, config.env_kwargs["level_set"], config.ladder[-1], config.moderate_epochs) == \
        ("math", "smollm2_sft", 32, 2)
    assert config.eval_episodes >= 1000 and config.eval_greedy and config.results == "docs/lab/smollm2-math/jobs"
    settings = rl_settings(config, "regym/Math-v0", model="m", reference="r", seed=1, output_dir=tmp_path,
                           temperature=1.3)
    assert settings["env_kwargs"] == {"level_set": "smollm2_sft", "mode": "single_turn"}
    assert (settings["eval_temperature"], settings["temperature"], settings["num_generations"]) == (0.0, 1.3, 8)
    assert (settings["max_turns"], settings["reference"], settings["dense_reward"]) == (1, "r", False)
    assert settings["eval_splits"] == ["in_distribution", "near_out_of_distribution", "out_of_distribution"]
    assert default_splits("regym/Math-v0") == ["in_distribution", "out_of_distribution"]  # near-OOD needs a level set
    assert pool_kwargs(config, "regym/Math-v0", 8) == config.env_kwargs
    quick = load_handoff_config(preset="smollm2-math", quick=True)
    assert quick.out == "lab-smollm2-math-quick" and quick.results is None and quick.rl["max_steps"] == 2
    assert (quick.ladder, quick.ladder_sharpness, quick.attribution_targets) == ([1, 2, 4], False, 8)
    assert quick.arms == ["moderate-sft", "over-sft", "over-sft+fusion+reset"]
    assert load_handoff_config(preset="smollm2-math", quick=True, arms=["over-sft"]).arms == ["over-sft"]
    assert load_handoff_config(preset="smollm2-math", quick=True, out=str(tmp_path)).out == str(tmp_path)
    with pytest.raises(ValueError, match="over-sft"):
        load_handoff_config(preset="smollm2-math", arms=["moderate-sft"])
    with pytest.raises(ValueError, match="unknown arms"):
        load_handoff_config(arms=["over-sft", "nope"])


def test_the_report_says_when_no_temperature_was_matched():
    from regym.lab.report import temperature_matching_line

    unmatched = {"target_entropy": None, "temperature": 1.0, "tried": [], "starts": {}}
    assert "not measured" in temperature_matching_line(unmatched)  # the quick lab's arms: it crashed here
    matched = {"target_entropy": 0.39, "temperature": 1.5, "tried": [(1.0, 0.05), (1.5, 0.4)], "starts": {}}
    assert temperature_matching_line(matched).endswith("0.390 at T = 1.50 (tried: T 1.00 → 0.050, T 1.50 → 0.400).")
