"""The leaderboard: many runs merged into one table of models × (env, split).

Each run folder holds ``config.json`` and ``metrics.json`` (written by the runner).
Runs of the same model *under the same settings* merge into one row (a model evaluated on
``agentic-id`` and on ``agentic-ood`` in two runs is one row); where two such runs score
the same cell, the one with more episodes wins. The settings are what changes the episodes
besides the policy (``run_settings``: the turn limit, env options, the task count and seed);
runs under other settings are other rows, labelled with what differs from the suites'
defaults, so a model played with ``--max-turns 4`` never sits beside a random baseline
played for 50 turns as if the two were comparable. A row with no baseline under its
settings says so (``has_baselines``). Rows are ranked by the mean of the ID and OOD
averages, each a macro average of success rates over envs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from regym.eval.metrics import overall_score, split_averages, split_order
from regym.eval.suites import DEFAULT_NUM_TASKS, column_name
from regym.seeds import EVAL_SUITE_FIRST

BASELINE_AGENTS = ("expert", "random")


def run_settings(run_dir: str | Path) -> dict[str, Any]:
    """What decides a run's episodes besides its policy, from its ``config.json`` identity: ``max_turns``
    (None: each env's own), ``env_kwargs``, and the task count and first reset seed of its entries
    (rl-eval's runs and rl-train's ``evals/step-N`` folders both record them)."""
    path = Path(run_dir) / "config.json"
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    identity = saved.get("identity") or {}
    env_kwargs = dict(identity.get("env_kwargs") or {})
    max_turns = identity.get("max_turns", env_kwargs.pop("max_turns", None))
    env_kwargs.pop("max_turns", None)
    tasks = sorted({(entry.get("num_tasks"), entry.get("seed")) for entry in identity.get("entries") or []},
                   key=str)
    return {"max_turns": max_turns, "env_kwargs": env_kwargs, "tasks": [list(task) for task in tasks]}


def settings_label(settings: dict[str, Any]) -> str:
    """What differs from the suites' defaults, e.g. ``max_turns=4, tasks=16@10000``; "" when nothing does."""
    parts = []
    if settings["max_turns"] is not None:
        parts.append(f"max_turns={settings['max_turns']}")
    parts += [f"{key}={json.dumps(value)}" for key, value in sorted(settings["env_kwargs"].items())]
    if settings["tasks"] and settings["tasks"] != [[DEFAULT_NUM_TASKS, EVAL_SUITE_FIRST]]:
        parts.append("tasks=" + ",".join(f"{count}@{seed}" for count, seed in settings["tasks"]))
    return ", ".join(parts)


def find_runs(runs_dir: str | Path) -> list[Path]:
    """Run folders (those with a ``metrics.json``) directly under ``runs_dir``, sorted by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(path.parent for path in runs_dir.glob("*/metrics.json"))


def build_leaderboard(run_dirs: list[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Merge runs into rows; links are relative to ``out_dir`` so the page works from disk."""
    out_dir = Path(out_dir)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    column_keys: dict[str, tuple[str, tuple[int, str]]] = {}
    for run_dir in map(Path, run_dirs):
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        model = metrics.get("model") or run_dir.name
        label = settings_label(run_settings(run_dir))
        row = rows.setdefault((model, label), {
            "model": model, "settings": label, "cells": {}, "runs": [],
            "baseline": model in BASELINE_AGENTS and metrics.get("agent") == model})
        row["runs"].append({
            "name": run_dir.name,
            "suite": metrics.get("suite"),
            "complete": bool(metrics.get("complete", True)),
            "trajectories": _relative(run_dir / metrics.get("trajectories", "trajectories.jsonl"), out_dir),
            "metrics": _relative(run_dir / "metrics.md", out_dir),
        })
        for cell in metrics.get("cells", []):
            column = column_name(cell["env_id"], cell["split"])
            column_keys[column] = (cell["env_id"], split_order(cell["split"]))
            entry = {
                "success_rate": cell["success_rate"],
                "ci_low": cell["ci_low"],
                "ci_high": cell["ci_high"],
                "pass_at_1": cell["pass_at"]["1"],
                "pass_at_k": cell["pass_at"][str(cell["k"])],
                "k": cell["k"],
                "episodes": cell["episodes"],
                "split": cell["split"],
                "run": run_dir.name,
            }
            old = row["cells"].get(column)
            if old is None or entry["episodes"] > old["episodes"]:
                row["cells"][column] = entry
    baseline_settings = {row["settings"] for row in rows.values() if row["baseline"]}
    for row in rows.values():
        averages = split_averages(row["cells"].values())
        row.update(averages, score=overall_score(averages))
        row["has_baselines"] = row["baseline"] or row["settings"] in baseline_settings
    ranked = sorted(rows.values(), key=lambda row: (-(row["score"] if row["score"] is not None else -1),
                                                    row["model"], row["settings"]))
    previous, rank = None, 0
    for position, row in enumerate(ranked, start=1):
        if row["score"] != previous:
            rank, previous = position, row["score"]
        row["rank"] = rank
    columns = sorted(column_keys, key=lambda column: column_keys[column])
    return {"columns": columns, "rows": ranked}


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def leaderboard_markdown(board: dict[str, Any]) -> str:
    """The board as a Markdown table (success rate in %, 95 % CI in the JSON)."""
    columns = board["columns"]
    header = ["rank", "model", "ID avg", "OOD avg", *columns, "runs"]
    lines = [
        "# Leaderboard",
        "",
        "Success rate (%) per env/split; ID/OOD avg are macro averages over envs. "
        "Rows in *italics* are the random (floor) and expert (ceiling) baselines. A row's settings "
        "(in brackets: what differs from the suites' defaults) are those its episodes were played under; "
        "compare it with the baselines of the same settings. † no baseline was run under its settings.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---:", "---", "---:", "---:", *["---:"] * len(columns), "---"]) + "|",
    ]
    for row in board["rows"]:
        model = f"*{row['model']}*" if row["baseline"] else row["model"]
        model += f" [{row['settings']}]" if row["settings"] else ""
        model += "" if row["has_baselines"] else " †"
        cells = [_percent(row["cells"][column]["success_rate"]) if column in row["cells"] else "—"
                 for column in columns]
        runs = ", ".join(f"[{run['name']}]({run['trajectories']})" for run in row["runs"])
        lines.append("| " + " | ".join([str(row["rank"]), model, _percent(row["id_average"]),
                                         _percent(row["ood_average"]), *cells, runs]) + " |")
    return "\n".join(lines) + "\n"


def write_leaderboard(run_dirs: list[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Write ``leaderboard.json``, ``leaderboard.md`` and ``leaderboard.html`` into ``out_dir``."""
    from regym.eval.html import leaderboard_html

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    board = build_leaderboard(run_dirs, out_dir)
    paths = {
        "json": out_dir / "leaderboard.json",
        "md": out_dir / "leaderboard.md",
        "html": out_dir / "leaderboard.html",
    }
    paths["json"].write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"].write_text(leaderboard_markdown(board), encoding="utf-8")
    paths["html"].write_text(leaderboard_html(board), encoding="utf-8")
    return paths
