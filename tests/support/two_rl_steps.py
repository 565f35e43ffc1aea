"""Two ``rl-train`` steps on an env family's embedded default (the tiny pipeline), for the slow per-family tests
of issue 30: the policy must move and the (dense) training reward must not be all zero."""

from pathlib import Path

from safetensors.torch import load_file

from regym.recipes.tiny import with_tiny_pipeline
from regym.rl.config import resolve_config
from regym.rl.train import read_jsonl, train


def two_rl_steps(env: str, out: Path, **overrides) -> tuple[list[dict], float]:
    """(metrics row per step, largest absolute weight change from the SFT start) of two RL steps;
    ``overrides`` are rl-train fields (a preset, env_kwargs) for a family whose default is not the tiny model."""
    config, sources = resolve_config(None, {"env": env, "seed": 0, "max_steps": 2, "eval_every": 0,
                                            "eval_at_start": False, "save_steps": 0, "output_dir": str(out),
                                            "progress": False, "report_to": [], **overrides})
    summary = train(with_tiny_pipeline(config, sources))
    start = load_file(Path(summary["init"]) / "model.safetensors")
    final = load_file(out / "final" / "model.safetensors")
    change = max((final[name].float() - start[name].float()).abs().max().item() for name in start)
    return list(read_jsonl(out / "metrics.jsonl")), change


def check_two_rl_steps(env: str, out: Path, **overrides) -> None:
    """Two RL steps ran, some sample earned something (a positive dense reward, or a win where the reward is
    signed), and the weights moved."""
    rows, change = two_rl_steps(env, out, **overrides)
    assert len(rows) == 2, rows
    assert max(row["reward"] for row in rows) > 0 or max(row["success_rate"] for row in rows) > 0, rows
    assert change > 0
