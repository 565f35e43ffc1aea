"""``benchmarks/rl_learning.py`` resumes a sweep from its committed ledger on a machine that has no run folders.

The trainer is replaced by one that writes what ``rl-train`` writes (the sweep's bookkeeping is under test,
not RL); the ledger, the settings check and the file restore are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark  # tests/support

from regym.lab.ledger import LedgerMismatch


def load_sweep():
    return load_benchmark("rl_learning")


@pytest.fixture
def sweep(monkeypatch):
    from regym.recipes import tiny
    from regym.rl import train as train_module

    trained = []

    def fake_train(config):
        out = Path(config.output_dir)
        out.mkdir(parents=True)
        (out / "summary.json").write_text(json.dumps({"seconds": 60.0, "seed": config.seed}))
        (out / "metrics.jsonl").write_text('{"step": 1, "reward": 0.5}\n')
        (out / "eval.jsonl").write_text('{"step": 0, "in_distribution": {"success_rate": 0.25}}\n')
        trained.append(config.seed)
        return {}

    monkeypatch.setattr(train_module, "train", fake_train)
    monkeypatch.setattr(tiny, "with_tiny_pipeline", lambda config, sources=None: config)
    module = load_sweep()
    monkeypatch.setattr(module, "evaluated_splits", lambda env: ["in_distribution"])
    return module, trained


def test_a_finished_seed_is_read_back_from_the_ledger_on_a_fresh_machine(sweep, tmp_path):
    from regym.lab.ledger import Ledger

    module, trained = sweep
    first = Ledger(tmp_path / "results", tmp_path / "machine1", stamp={"numerics": "pinned-avx2"})
    summary = module.run_seed("textworld", 3, tmp_path / "machine1", False, {}, first)
    assert trained == [3] and summary["evals"][0]["in_distribution"]["success_rate"] == 0.25
    assert (tmp_path / "results" / "textworld__seed3.json").is_file()

    second = Ledger(tmp_path / "results", tmp_path / "machine2", stamp={"numerics": "pinned-avx2"})
    again = module.run_seed("textworld", 3, tmp_path / "machine2", False, {}, second)
    assert trained == [3], "a recorded seed must not train again"
    assert again["seed"] == 3 and again["evals"] == summary["evals"]


def test_a_seed_recorded_with_other_settings_stops_the_sweep(sweep, tmp_path):
    from regym.lab.ledger import Ledger

    module, _ = sweep
    ledger = Ledger(tmp_path / "results", tmp_path / "machine1", stamp={"numerics": "pinned-avx2"})
    module.run_seed("textworld", 0, tmp_path / "machine1", False, {}, ledger)
    other = Ledger(tmp_path / "results", tmp_path / "machine2", stamp={"numerics": "pinned-avx2"})
    with pytest.raises(LedgerMismatch, match="rejuvenate"):
        module.run_seed("textworld", 0, tmp_path / "machine2", True, {}, other)


def test_math_runs_on_smollm2_single_turn():
    settings = load_sweep().FAMILY_SETTINGS["math"]
    assert settings["preset"] == "smollm2" and settings["env_kwargs"]["mode"] == "single_turn"
