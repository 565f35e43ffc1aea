"""Two ``rl-train`` steps on an env family's embedded default (the tiny pipeline), for the slow per-family tests
of issue 30: the policy must move and the (dense) training reward must not be all zero."""

from pathlib import Path

from safetensors.torch import load_file

from regym.recipes.tiny import with_tiny_pipeline
from regym.rl.config import resolve_config
from regym.rl.train import read_jsonl, train


def two_rl_steps(env: str, out: Path) -> tuple[list[float], float]:
    """(training reward per step, largest absolute weight change from the SFT start) of two RL steps."""
    config, sources = resolve_config(None, {"env": env, "seed": 0, "max_steps": 2, "eval_every": 0,
                                            "eval_at_start": False, "save_steps": 0, "output_dir": str(out),
                                            "progress": False, "report_to": []})
    summary = train(with_tiny_pipeline(config, sources))
    start = load_file(Path(summary["init"]) / "model.safetensors")
    final = load_file(out / "final" / "model.safetensors")
    change = max((final[name].float() - start[name].float()).abs().max().item() for name in start)
    return [row["reward"] for row in read_jsonl(out / "metrics.jsonl")], change


def check_two_rl_steps(env: str, out: Path) -> None:
    """Two RL steps ran, some training reward was non-zero, and the weights moved."""
    rewards, change = two_rl_steps(env, out)
    assert len(rewards) == 2 and max(rewards) > 0, rewards
    assert change > 0
