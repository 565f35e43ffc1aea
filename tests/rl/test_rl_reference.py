"""rl-train's KL reference (``--reference``) and its step-0 evaluation (``--no-eval-at-start``): the two
options the handoff lab needs so that every arm shares one reference rule and each starting checkpoint is
evaluated once, not once per seed."""

import json

import gymnasium as gym
import pytest
import torch

from games import VowelGame
from regym.rl.config import RLConfig
from regym.rl.train import read_jsonl, train
from tiny_chat import save_tiny_chat

torch.set_num_threads(1)
ENV_ID = "regym-test/Vowels-v0"
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=VowelGame)


def config_for(folder, out, **overrides) -> RLConfig:
    values = dict(env=ENV_ID, model=str(folder), output_dir=str(out), num_generations=2, tasks_per_step=1, num_envs=2,
                  num_tasks=4, max_turns=2, max_new_tokens=4, max_episode_tokens=128, beta=0.02, max_steps=1,
                  eval_every=0, save_steps=0, report_to=[], progress=False, use_cpu=True)
    values.update(overrides)
    return RLConfig(**values)


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory):
    """A tiny model with the SFT fixture's tokenizer and other weights."""
    return save_tiny_chat(tmp_path_factory.mktemp("other"), seed=7)


def test_without_eval_at_start_the_first_evaluation_is_at_eval_every(tiny_sft, tmp_path):
    summary = train(config_for(tiny_sft, tmp_path, max_steps=2, eval_every=2, eval_episodes=2,
                               eval_splits=["in_distribution"], eval_at_start=False))
    assert [row["step"] for row in read_jsonl(tmp_path / "eval.jsonl")] == [2]
    assert sorted(path.name for path in (tmp_path / "evals").iterdir()) == ["step-2"]
    assert summary["before"] == {}  # the step-2 evaluation never stands in for the starting checkpoint's
    assert summary["after"]["in_distribution"]["success_rate"] >= 0


def test_the_kl_reference_is_the_reference_checkpoint_not_the_policy(tiny_sft, other_checkpoint, tmp_path):
    """The policy starts as the SFT model, so its first step's KL is 0 toward itself and positive toward
    another checkpoint: the trainer's reference holds the weights ``reference`` names."""
    same = train(config_for(tiny_sft, tmp_path / "same", reference=str(tiny_sft)))
    assert read_jsonl(tmp_path / "same" / "metrics.jsonl")[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert same["reference"] == str(tiny_sft)

    other = train(config_for(tiny_sft, tmp_path / "other", reference=str(other_checkpoint)))
    assert read_jsonl(tmp_path / "other" / "metrics.jsonl")[0]["kl"] > 1e-3
    assert other["reference"] == str(other_checkpoint) and other["init"] == str(tiny_sft)
    assert json.loads((tmp_path / "other" / "summary.json").read_text())["reference"] == str(other_checkpoint)


def test_a_missing_reference_stops_the_run_before_training(tiny_sft, tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(FileNotFoundError, match=r"--reference .*no-such-checkpoint does not exist"):
        train(config_for(tiny_sft, tmp_path / "run", reference=str(missing)))
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "final").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"--reference .*empty is not a Hugging Face model folder"):
        train(config_for(tiny_sft, tmp_path / "run", reference=str(tmp_path / "empty"), beta=0.0))
    with pytest.raises(ValueError, match="reference"):
        RLConfig(reference=" ")


def test_the_defaults_keep_the_papers_rule():
    config = RLConfig()
    assert config.reference is None and config.eval_at_start is True
