"""One evaluator: rl-train's evaluation, rl-eval and the handoff report's env metrics are one code path.

``ParityGame`` (registered here): two replies; the episode is won when the two replies
together have an even (in-distribution) or odd (out-of-distribution) number of
characters. A random tiny model wins about half its episodes, so success rates, pass@k
and reward variance are all away from 0 and 1 and a wrong count shows.
"""

import json
import math
from collections import defaultdict

import gymnasium as gym
import pytest
import torch

from regym import seeds
from regym.envs.actions import ParsedAction
from regym.envs.base import Outcome, TextEnv
from regym.eval.metrics import EpisodeRecord, score_run
from regym.rl.config import RLConfig
from tiny_chat import tiny_chat_model

torch.set_num_threads(1)
ENV_ID = "regym-test/Parity-v0"


class ParityGame(TextEnv):
    instructions = "Say two things."

    def _task_id_for(self, rng):
        return f"parity-{self.split}-{int(rng.integers(0, 4))}"

    def _begin(self, task_id):
        self.lengths = []
        return Outcome("Say something.")

    def parse(self, text):
        return ParsedAction(text)

    def _act(self, action):
        self.lengths.append(len(action))
        done = len(self.lengths) == 2
        won = done and sum(self.lengths) % 2 == (0 if self.split == "in_distribution" else 1)
        return Outcome("Again." if not done else "Done.", reward=float(won), terminated=done, won=won)


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=ParityGame)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-checkpoint")
    model, tokenizer = tiny_chat_model(seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def rl_config(folder, out) -> RLConfig:
    """One RL step: the step-0 evaluation plays the checkpoint as saved."""
    return RLConfig(env=ENV_ID, model=str(folder), output_dir=str(out), num_generations=2, tasks_per_step=1, num_envs=4,
                    num_tasks=4, max_turns=2, max_new_tokens=6, max_episode_tokens=256, max_steps=1,
                    eval_every=100, eval_episodes=8, save_steps=0, report_to=[], progress=False, use_cpu=True)


def rl_eval_config(folder, runs_dir, config: RLConfig, **overrides):
    """``rl-eval`` of ``folder`` on the tasks, seeds and sampling of ``config``'s evaluation."""
    from regym.cli.rl_eval import EvalConfig

    values = dict(model=str(folder), suite=ENV_ID, task_seed=seeds.RL_EVAL_FIRST, num_tasks=config.eval_episodes,
                  k=1, temperature=config.eval_temperature, max_new_tokens=config.max_new_tokens,
                  max_turns=config.max_turns, num_envs=config.num_envs, seed=seeds.RL_EVAL_FIRST, device="cpu",
                  output_dir=str(runs_dir), baselines=False)
    return EvalConfig(**{**values, **overrides})


def actions_by_key(run_dir):
    from regym.eval.log import read_log

    return {record["key"]: [turn["action"] for turn in record["trajectory"]["turns"]]
            for record in read_log(run_dir / "trajectories.jsonl")}


def test_rl_train_evaluation_of_a_checkpoint_equals_rl_eval(checkpoint, tmp_path):
    from regym.cli.rl_eval import evaluate_config
    from regym.rl.evaluation import evaluate
    from regym.rl.train import load_tokenizer, load_training_model, read_jsonl, train

    config = rl_config(checkpoint, tmp_path / "rl")
    train(config)
    step0 = tmp_path / "rl" / "evals" / "step-0"
    assert {"trajectories.jsonl", "metrics.json", "metrics.md"} <= {path.name for path in step0.iterdir()}
    trained = actions_by_key(step0)
    eval_row = read_jsonl(tmp_path / "rl" / "eval.jsonl")[0]
    assert eval_row["step"] == 0 and set(eval_row) >= set(config.eval_splits)

    result = evaluate_config(rl_eval_config(checkpoint, tmp_path / "runs", config))
    assert actions_by_key(result.run_dir) == trained  # every episode, every action
    assert len(trained) == len(config.eval_splits) * config.eval_episodes
    for cell in result.metrics:
        row = eval_row[cell.split]
        assert (row["success_rate"], row["reward"], row["turns"], row["ci_low"], row["ci_high"]) == (
            cell.success_rate, cell.mean_reward, cell.mean_turns, cell.ci_low, cell.ci_high)
    assert 0 < sum(cell.success_rate for cell in result.metrics) < len(result.metrics)  # not a trivial 0 or 1
    trained_cells = json.loads((step0 / "metrics.json").read_text())["cells"]
    assert trained_cells == [cell.to_dict() for cell in result.metrics]

    # Other sampling (the seed) gives other episodes: the comparison above can fail.
    reseeded = evaluate_config(rl_eval_config(checkpoint, tmp_path / "runs", config, seed=seeds.RL_EVAL_FIRST + 1,
                                                   run_name="reseeded"))
    assert actions_by_key(reseeded.run_dir).keys() == trained.keys()
    assert actions_by_key(reseeded.run_dir) != trained
    hotter = evaluate_config(rl_eval_config(checkpoint, tmp_path / "runs", config, temperature=2.0,
                                            run_name="hotter"))
    assert actions_by_key(hotter.run_dir) != trained

    # Re-evaluating a step (as after --resume) replaces its folder; stale episodes are not merged in.
    with (step0 / "trajectories.jsonl").open("a") as handle:
        handle.write(json.dumps({"key": f"{ENV_ID}|in_distribution|99|0", "stale": True}) + "\n")
    again = evaluate(load_training_model(checkpoint, use_cpu=True), load_tokenizer(checkpoint), config, config.eval_splits,
                     config.eval_episodes, run_dir=step0)
    assert actions_by_key(step0) == trained
    assert {split: again[split] for split in config.eval_splits} == {split: eval_row[split]
                                                                     for split in config.eval_splits}


def test_resume_drops_eval_folders_past_the_checkpoint(tmp_path):
    from regym.rl.run_log import drop_evals_after

    for step in (0, 4, 8, 12):
        (tmp_path / f"step-{step}").mkdir()
    drop_evals_after(tmp_path, 8)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["step-0", "step-4", "step-8"]


def test_env_metrics_are_the_hand_count_of_their_episodes(checkpoint):
    from regym.eval.plasticity import ReportSettings, env_metrics
    from regym.eval.runner import MemoryLog

    model, tokenizer = tiny_chat_model(seed=0)
    log = MemoryLog()
    settings = ReportSettings(env_tasks=4, env_samples=4, env_k=3, env_max_new_tokens=6)
    metrics = env_metrics(model, tokenizer, ENV_ID, settings, {"max_turns": 2}, log=log)
    assert set(metrics) == {"pass@1", "pass@3", "nonzero_variance_groups"}

    groups = defaultdict(list)
    for record in log.records.values():
        groups[record["task_seed"]].append(record)
    assert sorted(groups) == [0, 1, 2, 3] and all(len(group) == 4 for group in groups.values())
    pass1, pass3, varied = [], [], []
    for group in groups.values():
        n, c = len(group), sum(record["success"] for record in group)
        pass1.append(c / n)
        pass3.append(1 - math.comb(n - c, 3) / math.comb(n, 3))  # Chen et al. (2021), eq. (1)
        varied.append(len({sum(turn["reward"] for turn in record["trajectory"]["turns"]) for record in group}) > 1)
    assert metrics["pass@1"] == pytest.approx(sum(pass1) / 4)
    assert metrics["pass@3"] == pytest.approx(sum(pass3) / 4)
    assert metrics["nonzero_variance_groups"] == pytest.approx(sum(varied) / 4)
    assert 0 < metrics["pass@1"] < metrics["pass@3"] < 1  # a mix of wins and losses: the counts are not trivial


def test_varied_reward_tasks_counts_tasks_whose_samples_disagree():
    def record(seed, sample, reward):
        return EpisodeRecord("e", "in_distribution", seed, sample, reward > 0, reward, 1, 0)

    records = [record(0, 0, 1.0), record(0, 1, 1.0), record(1, 0, 0.0), record(1, 1, 0.5), record(2, 0, 0.0),
               record(2, 1, 0.0)]
    (cell,) = score_run(records, pass_ks=(2,))
    assert cell.varied_reward_tasks == pytest.approx(1 / 3)
    assert cell.solved_tasks == pytest.approx(1 / 3)  # task 0: both samples won; task 2: no signal, not solved
    assert cell.pass_at == {"1": pytest.approx(0.5), "2": pytest.approx(2 / 3)}
    (single,) = score_run([record(0, 0, 1.0), record(1, 0, 0.0)])
    assert single.varied_reward_tasks == 0.0  # one sample per task: no group has a spread
