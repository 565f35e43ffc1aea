"""``benchmarks/lab_threads.py`` times the smollm2-math preset's own GRPO step: its ``rl-train`` arguments
resolve to the preset's RL settings, and seconds per step leave model loading out."""

from __future__ import annotations

import json

import pytest
from benchmark_scripts import load_benchmark  # tests/support

from regym.configs import parse_overrides
from regym.lab.handoff import PRESETS
from regym.rl.config import RLConfig, resolve_config


def test_the_benchmark_runs_rl_train_with_the_presets_rl_settings(tmp_path):
    argv = load_benchmark("lab_threads").lab_rl_argv("some/sft", tmp_path / "run", seed=1, threads=1, steps=3, micro_batches=4)
    config_file, overrides = parse_overrides(RLConfig, argv, prog="rl-train")
    config, _ = resolve_config(config_file, overrides)
    preset = PRESETS["smollm2-math"]
    expected = {name: value for name, value in preset["rl"].items()
                if name not in ("preset", "max_steps", "eval_every", "save_steps", "save_total_limit")}
    assert {name: getattr(config, name) for name in expected} == expected
    assert config.env_kwargs == preset["env_kwargs"] and config.num_tasks == preset["rl_tasks"]
    assert (config.model, config.seed, config.threads, config.max_steps, config.gradient_accumulation_steps,
            config.eval_every, config.save_steps) == ("some/sft", 1, 1, 3, 4, 0, 0)


def test_seconds_per_step_leave_the_first_step_out_and_need_two_steps(tmp_path):
    seconds_per_step = load_benchmark("lab_threads").seconds_per_step
    rows = [{"step": step, "time": time} for step, time in ((1, 100.0), (2, 150.0), (3, 210.0))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert seconds_per_step(tmp_path) == pytest.approx(55.0)
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(RuntimeError, match="fewer than two"):
        seconds_per_step(tmp_path)
