"""rl-train's per-step accounting (regym.rl.accounting): time split, tokens, memory, update size."""

import math

import pytest
import torch
from safetensors.torch import load_file
from test_rl_train import config_for

from regym.rl.accounting import UpdateNorm, overlap_seconds
from regym.rl.train import read_jsonl, train

torch.set_num_threads(1)
KEYS = ("time/step_s", "time/rollout_s", "time/sync_s", "time/train_s", "tokens/generated", "tokens/per_s",
        "memory/peak_gib", "memory/rss_peak_gib", "memory/rss_gib", "update_norm", "update_ratio", "grad_norm")


def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return math.sqrt(sum(float((a[k].double() - b[k].double()).square().sum()) for k in a))


def test_every_step_logs_its_time_tokens_memory_and_update_size(tiny_sft, tmp_path):
    config = config_for(tiny_sft, tmp_path, max_steps=2, save_steps=1)
    summary = train(config)
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    assert [row["step"] for row in metrics] == [1, 2]
    rollouts = read_jsonl(tmp_path / "rollouts.jsonl")
    for row in metrics:
        assert all(key in row for key in KEYS), sorted(set(KEYS) - set(row))
        assert row["time/rollout_s"] > 0 and row["time/train_s"] > 0 and row["time/sync_s"] == 0  # hf generation
        assert row["time/rollout_s"] + row["time/train_s"] == pytest.approx(row["time/step_s"], rel=1e-6)
        # each policy turn samples 1..max_new_tokens tokens
        turns = sum(len(episode["turns"]) for episode in rollouts if episode["step"] == row["step"])
        assert turns <= row["tokens/generated"] <= turns * config.max_new_tokens
        assert row["tokens/per_s"] == pytest.approx(row["tokens/generated"] / row["time/rollout_s"])
        assert row["memory/peak_gib"] == row["memory/rss_peak_gib"] >= row["memory/rss_gib"] > 0.1
        assert row["grad_norm"] > 0 and 0 < row["update_ratio"] < 1
    assert sum(row["time/step_s"] for row in metrics) < summary["seconds"]
    # update_norm is the distance the weights moved: checkpoint by checkpoint
    weights = [load_file(folder / "model.safetensors")
               for folder in (tiny_sft, tmp_path / "checkpoint-1", tmp_path / "checkpoint-2")]
    for step, row in enumerate(metrics):
        assert row["update_norm"] == pytest.approx(distance(weights[step + 1], weights[step]), rel=1e-4)
    norm = math.sqrt(sum(float(t.double().square().sum()) for t in weights[0].values()))
    assert metrics[0]["update_ratio"] == pytest.approx(metrics[0]["update_norm"] / norm, rel=1e-4)


def test_a_zero_learning_rate_moves_nothing_and_the_norm_can_be_switched_off(tiny_sft, tmp_path):
    train(config_for(tiny_sft, tmp_path / "frozen", max_steps=1, save_steps=0, learning_rate=0.0))
    row = read_jsonl(tmp_path / "frozen" / "metrics.jsonl")[0]
    assert row["update_norm"] == 0.0 and row["update_ratio"] == 0.0 and row["grad_norm"] > 0
    train(config_for(tiny_sft, tmp_path / "off", max_steps=1, save_steps=0, log_update_norm=False))
    row = read_jsonl(tmp_path / "off" / "metrics.jsonl")[0]
    assert "update_norm" not in row and row["time/step_s"] > 0


def test_update_norm_of_an_sgd_step_is_lr_times_the_gradient_norm():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[1].bias.requires_grad_(False)  # frozen: neither in the update nor in ‖θ‖
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.grad = torch.randn_like(p)
    before = math.sqrt(sum(float(p.detach().square().sum()) for p in trainable))
    gradient = math.sqrt(sum(float(p.grad.square().sum()) for p in trainable))
    tracker = UpdateNorm()
    tracker.snapshot(model.parameters())
    torch.optim.SGD(trainable, lr=0.1).step()
    measured = tracker.measure(model.parameters())
    assert measured["update_norm"] == pytest.approx(0.1 * gradient, rel=1e-5)
    assert measured["update_ratio"] == pytest.approx(0.1 * gradient / before, rel=1e-5)
    with pytest.raises(RuntimeError, match="before snapshot"):
        tracker.measure(model.parameters())  # the copy is gone once measured


def _sharded_worker(rank: int, store: str, results):
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        full = torch.nn.Parameter(torch.arange(6, dtype=torch.float32))
        half = torch.nn.Parameter(full.detach()[rank * 3:(rank + 1) * 3].clone())  # this process's shard
        tracker = UpdateNorm(sharded=True)
        tracker.snapshot([half])
        with torch.no_grad():
            half.add_(1.0)
        results[rank] = tracker.measure([half])
    finally:
        torch.distributed.destroy_process_group()


def test_sharded_parameters_give_the_global_norm_on_every_process(tmp_path):
    context = torch.multiprocessing.get_context("spawn")
    results = context.Manager().dict()
    torch.multiprocessing.start_processes(_sharded_worker, args=(str(tmp_path / "store"), results), nprocs=2,
                                          start_method="spawn")
    expected = {"update_norm": math.sqrt(6), "update_ratio": math.sqrt(6) / math.sqrt(sum(i * i for i in range(6)))}
    for rank in (0, 1):
        assert results[rank] == pytest.approx(expected)


def test_overlap_seconds_counts_only_the_part_inside_the_window():
    assert overlap_seconds(10.0, 20.0, [(5.0, 12.0), (15.0, 16.0), (19.0, 25.0), (30.0, 31.0)]) == 4.0


def test_window_context_counts_the_tokens_of_its_turn_rows(tiny_sft, tmp_path):
    config = config_for(tiny_sft, tmp_path, max_steps=1, save_steps=0, context="window", history_turns=1)
    train(config)
    row = read_jsonl(tmp_path / "metrics.jsonl")[0]
    turns = sum(len(episode["turns"]) for episode in read_jsonl(tmp_path / "rollouts.jsonl"))
    assert turns <= row["tokens/generated"] <= turns * config.max_new_tokens and row["tokens/per_s"] > 0
