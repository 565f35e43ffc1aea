"""A run folder: ``config.json``, ``trajectories.jsonl``, ``metrics.json`` and ``metrics.md``.

``config.json`` saves the resolved config and the run's *identity* (what decides its
numbers), so a folder is only resumed by the same run. The metrics files are rewritten
from the whole log after every run: JSON for machines, a Markdown table for people.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from regym.cache import plain, write_json
from regym.eval.metrics import SplitMetrics, split_averages
from regym.eval.suites import column_name

TRAJECTORIES = "trajectories.jsonl"


def prepare_run_dir(run_dir: str | Path, config: dict[str, Any], identity: dict[str, Any],
                    overwrite: bool = False) -> Path:
    """Create or reopen a run folder; refuse to mix episodes of a different run into it.

    ``identity`` holds what decides the results (agent, suite entries, k, seeds); a
    folder whose saved identity differs is only replaced with ``overwrite``.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not same_run(run_dir, identity, overwrite):
        for name in (TRAJECTORIES, "metrics.json", "metrics.md"):
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(config_path, {**plain(config), "identity": plain(identity)})
    return run_dir


def same_run(run_dir: str | Path, identity: dict[str, Any], overwrite: bool = False) -> bool:
    """Whether ``run_dir`` is new or holds this run (its saved identity equals ``identity``), so its episodes
    may be resumed; False when it holds another run and ``overwrite`` allows replacing it. Otherwise a
    ``ValueError`` naming the fix; nothing is written either way."""
    config_path = Path(run_dir) / "config.json"
    if not config_path.exists():
        return True
    try:
        saved = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        if overwrite:
            return False
        raise ValueError(f"{config_path} is unreadable ({error}); pass --overwrite to replace the run") from None
    if isinstance(saved, dict) and saved.get("identity") == plain(identity):
        return True
    if overwrite:
        return False
    raise ValueError(f"{run_dir} holds a different run (its config.json identity differs); "
                     "choose another --run-name or pass --overwrite")


def write_metrics(run_dir: Path, metrics: Iterable[SplitMetrics], summary: dict[str, Any], complete: bool) -> None:
    """``metrics.json`` (``summary``, the ID/OOD averages, one cell per env/split) and ``metrics.md``."""
    cells = [cell.to_dict() for cell in metrics]
    data = {
        **plain(summary),
        "complete": complete,
        "episodes": sum(cell["episodes"] for cell in cells),
        **split_averages(cells),
        "trajectories": TRAJECTORIES,
        "cells": cells,
    }
    write_json(run_dir / "metrics.json", data)
    (run_dir / "metrics.md").write_text(metrics_markdown(data), encoding="utf-8")


def metrics_markdown(data: dict[str, Any]) -> str:
    """A run's metrics as a Markdown table, one row per (env, split)."""
    title = data.get("model") or data.get("run") or "run"
    lines = [f"# {title}", ""]
    for name in ("suite", "agent", "k"):
        if name in data:
            lines.append(f"- {name}: {data[name]}")
    for name in ("id_average", "ood_average"):
        if data.get(name) is not None:
            lines.append(f"- {name}: {data[name]:.3f}")
    lines += [
        "",
        "| env/split | tasks | episodes | success (95% CI) | pass@1 | pass@k | mean reward | mean turns "
        "| invalid rate | tokens | errors |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in data["cells"]:
        k = str(cell["k"])
        lines.append(
            f"| {column_name(cell['env_id'], cell['split'])} | {cell['tasks']} | {cell['episodes']} "
            f"| {cell['success_rate']:.3f} [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}] "
            f"| {cell['pass_at']['1']:.3f} | {cell['pass_at'][k]:.3f} (k={k}) | {cell['mean_reward']:.3f} "
            f"| {cell['mean_turns']:.2f} | {cell['invalid_action_rate']:.3f} | {cell['tokens_generated']} "
            f"| {cell['errors']} |"
        )
    return "\n".join(lines) + "\n"


__all__ = ["TRAJECTORIES", "metrics_markdown", "prepare_run_dir", "write_metrics"]
