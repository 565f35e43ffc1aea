"""rl-train on two processes (accelerate launch, gloo on CPU) takes the same step as on one.

Two processes each play their own whole GRPO groups; TRL gathers the rewards for the group advantages and
DDP averages the gradients, so one step must equal a one-process step on the same episodes. The same
episodes, because the sampling draws of a batched generate call depend on which episodes share it: the
one-process run replays the episodes the two processes played (``rl_step_worker.recording_play_groups``),
by task seed, so it also fails if the processes played the same tasks or tasks the sampler did not deal.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from regym.rl.config import RLConfig
from regym.rl.train import read_jsonl, train
from regym.rl.trl_bridge import episodes_per_process
from rl_step_worker import ENV_ID, recording_play_groups
from tiny_chat import tiny_chat_model

REPO = Path(__file__).resolve().parents[2]
GROUP, TASKS = 4, 2
LEARNING_RATE = 1e-3
WEIGHT_ATOL = 1e-2 * LEARNING_RATE
"""1 % of a step. Adam's first step moves each weight by lr·g/(|g| + 1e-8), i.e. ±lr wherever |g| >> 1e-8,
so a gradient computed on the wrong episodes or left unsynchronised moves weights by ~lr the other way.
The two runs' gradients differ only by float32 summation order (a mean of two 4-episode means against one
8-episode mean); that moves only weights whose gradient is within rounding of 1e-8: measured, 9 of 99,648
by more than 1e-7, the largest by 4.6e-6. Adam's step ignores the gradient's scale, so the gradient norm
(before clipping) is compared too."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_config(model: Path, out: Path) -> dict:
    return dict(env=ENV_ID, model=str(model), output_dir=str(out), num_generations=GROUP, tasks_per_step=TASKS,
                num_envs=GROUP, num_tasks=8, max_turns=2, max_new_tokens=6, max_episode_tokens=256,
                learning_rate=LEARNING_RATE, beta=0.02, max_steps=1, eval_every=1, eval_episodes=2,
                eval_splits=["in_distribution"], save_steps=0, report_to=[], progress=False, use_cpu=True)


def launch_two_processes(spec: Path) -> None:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "configs/accelerate/ddp.yaml"), "--num_processes", "2", "--main_process_port",
               str(free_port()), str(REPO / "tests/support/rl_step_worker.py"), str(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def played_seeds(path: Path) -> list[int]:
    return [row["seed"] for row in read_jsonl(path)]


def test_two_processes_take_the_same_step_as_one(tmp_path, monkeypatch):
    model_dir = tmp_path / "sft"
    model, tokenizer = tiny_chat_model(seed=0)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    two = tmp_path / "two"
    spec = tmp_path / "two.json"
    spec.write_text(json.dumps({"config": run_config(model_dir, two), "played": str(two / "played")}))
    launch_two_processes(spec)

    # Each process played whole groups of its own tasks.
    ranks = [played_seeds(two / "played" / f"rank-{rank}.jsonl") for rank in (0, 1)]
    for seeds in ranks:
        assert len(seeds) == GROUP * TASKS // 2 and len(set(seeds)) == 1, ranks
    assert ranks[0][0] != ranks[1][0], f"both processes trained on task {ranks[0][0]}"

    # One process, the same global batch, replaying those episodes by task seed.
    from regym.rl import trl_bridge

    one = tmp_path / "one"
    monkeypatch.setattr(trl_bridge, "play_groups",
                        recording_play_groups(trl_bridge.play_groups, one / "played", two / "played"))
    train(RLConfig(**run_config(model_dir, one)))
    assert played_seeds(one / "played" / "rank-0.jsonl") == ranks[0] + ranks[1], "the sampler dealt other tasks"

    # The run's files: written once, by the main process, with every process's episodes.
    for name in ("rollouts", "eval", "metrics"):
        rows_two, rows_one = read_jsonl(two / f"{name}.jsonl"), read_jsonl(one / f"{name}.jsonl")
        assert [row["step"] for row in rows_two] == [row["step"] for row in rows_one], name
    rollouts_two, rollouts_one = read_jsonl(two / "rollouts.jsonl"), read_jsonl(one / "rollouts.jsonl")
    assert [(r["seed"], [t["action"] for t in r["turns"]]) for r in rollouts_two] == \
           [(r["seed"], [t["action"] for t in r["turns"]]) for r in rollouts_one]
    assert sorted(path.name for path in (two / "evals").iterdir()) == ["step-0", "step-1"]

    (step_two,), (step_one,) = read_jsonl(two / "metrics.jsonl"), read_jsonl(one / "metrics.jsonl")
    loss_two, loss_one = step_two["loss"], step_one["loss"]
    assert loss_two == pytest.approx(loss_one, abs=1e-6)  # ~0 on a first step (ratio 1, zero-mean advantages)
    assert step_two["grad_norm"] == pytest.approx(step_one["grad_norm"], rel=1e-5)
    assert step_two["reward"] == pytest.approx(step_one["reward"], rel=1e-6)
    before = {key: value.float() for key, value in model.state_dict().items()}
    after_two, after_one = load_file(two / "final" / "model.safetensors"), load_file(one / "final" / "model.safetensors")
    assert after_two.keys() == after_one.keys()
    moved = max((after_one[key] - before[key]).abs().max().item() for key in after_one)
    difference = max((after_two[key] - after_one[key]).abs().max().item() for key in after_one)
    print(f"loss |Δ| {abs(loss_two - loss_one):.3g}; weights moved up to {moved:.3g}, |Δ| up to {difference:.3g}")
    assert moved > 1e-4  # the step did train
    assert difference <= WEIGHT_ATOL


def test_groups_are_never_split_across_processes():
    config = RLConfig(tasks_per_step=6, num_generations=4)
    assert [episodes_per_process(config, processes) for processes in (1, 2, 3, 6)] == [24, 12, 8, 4]
    for processes in (4, 5, 12):
        with pytest.raises(ValueError, match="multiple of the number of training processes"):
            episodes_per_process(config, processes)


def test_what_one_process_only_supports_fails_at_start_up():
    with pytest.raises(ValueError, match="context 'window' runs in one process only"):
        episodes_per_process(RLConfig(context="window"), 2)
    with pytest.raises(ValueError, match="scale_rewards 'batch' runs in one process only"):
        episodes_per_process(RLConfig(advantage_estimator="gigpo", scale_rewards="batch"), 2)
    assert episodes_per_process(RLConfig(context="window"), 1) == RLConfig().batch_episodes
    torch.manual_seed(0)  # nothing global is left changed
