"""The baseline leaderboard: where each family's headroom is, on ID, near-OOD and far-OOD.

Plays the ``baselines`` suite (every registered env's ID, near-OOD where the family has one, far-OOD;
the suites' fixed tasks, ``k`` samples each) with each agent through ``rl-eval``, into one
leaderboard, and writes it with the command and settings to ``--doc``:

- ``random``, ``expert``: the scripted floor and ceiling;
- ``tiny-sft``: per family, the SFT checkpoint ``rl-train --env <family>`` starts from (the tiny
  pipeline, built and cached on first use; trained on its own task pool, so the suite's tasks are
  other tasks of the same distribution), one row named ``tiny-sft``;
- ``smollm2``: SmolLM2-135M-Instruct zero-shot (the packaged GGUF).

    python benchmarks/baselines.py                                  # all four rows, docs/baselines.md
    python benchmarks/baselines.py --agents random expert --num-tasks 4

Every run is an ``rl-eval`` run folder under ``--out``: a rerun resumes (finished runs are read back),
so the model rows can be added later, on another machine, without replaying the others.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

FAMILIES = ("textworld", "alfworld", "math", "tool_use", "webshop")
AGENTS = ("random", "expert", "tiny-sft", "smollm2")


def eval_args(args: argparse.Namespace) -> list[str]:
    """The flags every row shares (the leaderboard merges rows only under equal settings)."""
    return ["--suite", "baselines", "--k", str(args.k), "--output-dir", str(args.out), "--no-baselines",
            "--max-new-tokens", str(args.max_new_tokens), "--temperature", str(args.temperature),
            *(["--num-tasks", str(args.num_tasks)] if args.num_tasks else [])]


def run_agent(agent: str, args: argparse.Namespace) -> float:
    """Play one row; returns its wall time in seconds."""
    from regym.cli import rl_eval

    began = time.perf_counter()
    if agent in ("random", "expert"):
        argvs = [["--agent", agent]]
    elif agent == "smollm2":
        argvs = [["--model", "smollm2", "--model-name", "SmolLM2-135M-Instruct"]]
    elif agent == "tiny-sft":
        from regym.envs import resolve_env_id
        from regym.recipes.tiny import ensure_tiny_pipeline

        argvs = [["--model", str(ensure_tiny_pipeline(resolve_env_id(family)).sft_dir), "--model-name", "tiny-sft",
                  "--envs", family, "--run-name", f"tiny-sft--{family}"] for family in args.families]
    else:
        raise ValueError(f"unknown agent {agent!r}; use {AGENTS}")
    for argv in argvs:
        if agent in ("random", "expert", "smollm2"):
            argv = [*argv, "--envs", *args.families]
        code = rl_eval.main([*argv, *eval_args(args)])
        if code != 0:
            raise SystemExit(f"rl-eval {' '.join(argv)} exited with {code}")
    return time.perf_counter() - began


ROLES = {"in_distribution": "ID", "near_out_of_distribution": "near-OOD", "out_of_distribution": "far-OOD"}


def headroom_table(board: dict, agents: list[str]) -> str:
    """One row per (family, split) in ID, near-OOD, far-OOD order; one column per agent: success with its
    95 % interval and the episodes it rests on."""
    from regym.envs import resolve_env_id
    from regym.eval.suites import column_name, family_split

    names = {"random": "random", "expert": "expert", "tiny-sft": "tiny-sft", "smollm2": "SmolLM2-135M-Instruct"}
    rows = {row["model"]: row["cells"] for row in board["rows"]}
    shown = [agent for agent in agents if names[agent] in rows]
    lines = ["| family | split | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
    for family in sorted({column.split("/", 1)[0] for column in board["columns"]}):
        env_id = resolve_env_id(family)
        for role, label in ROLES.items():
            column = column_name(env_id, family_split(env_id, role))
            cells = [rows[names[agent]].get(column) for agent in shown]
            if not any(cells):
                continue
            text = [f"{c['success_rate']:.2f} ({c['ci_low']:.2f}-{c['ci_high']:.2f}), n={c['episodes']}" if c else "—"
                    for c in cells]
            lines.append(f"| {family} | {label} (`{family_split(env_id, role)}`) | " + " | ".join(text) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--num-tasks", type=int, default=None,
                        help="tasks per (env, split); default: the suites' (8, or all of a finite split)")
    parser.add_argument("--k", type=int, default=2, help="samples per task")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("runs/baselines"))
    parser.add_argument("--doc", type=Path, default=Path("docs/baselines.md"))
    args = parser.parse_args()
    seconds = {agent: run_agent(agent, args) for agent in args.agents}
    import json

    table = headroom_table(json.loads((args.out / "leaderboard.json").read_text()), args.agents)
    command = "python benchmarks/baselines.py " + " ".join(
        f"--{name.replace('_', '-')} {' '.join(map(str, value)) if isinstance(value, list) else value}"
        for name, value in vars(args).items() if value is not None and name not in ("out", "doc"))
    timing = ", ".join(f"{agent} {value / 60:.1f} min" for agent, value in seconds.items())
    args.doc.write_text(
        "# Baseline leaderboard: where the headroom is\n\n"
        f"Made by `{command}` (`benchmarks/baselines.py`; this run: {timing}). Each cell is the success rate over "
        "the `baselines` suite's fixed tasks (ID, near-OOD where the family has one, far-OOD), with its 95 % "
        "interval; `tiny-sft` is, per family, the checkpoint `rl-train --env <family>` starts from, evaluated on "
        "the suite's tasks (not its training pool). Rerunning the command resumes from `--out`, whose "
        "`leaderboard.html` has the same cells with pass@k.\n\n" + table + "\n")
    print(table)
    print(f"written: {args.doc}")


if __name__ == "__main__":
    main()
