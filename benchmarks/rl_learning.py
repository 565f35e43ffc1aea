"""Does RL learn on the default CPU pipeline? ``rl-train``'s defaults, over several seeds.

Runs ``regym.rl.train.train`` with the default config (the tiny pipeline, built and
cached on first use) once per RL seed, all from the same SFT checkpoint, and prints the
in-distribution success rate at every evaluation, per seed and as mean ± 95 % t-interval,
with the gain as a difference and as a ratio against the SFT start measured in the same
run. Writes the curves to a PNG.

    python benchmarks/rl_learning.py [--seeds 0 1 2] [--env textworld] [--rejuvenate] [--out runs/rl_learning]
    python benchmarks/rl_learning.py --envs textworld alfworld tool_use webshop math --rejuvenate

Seeds run one after another (each takes the default budget: about 12 minutes on 2 cores); a seed
whose ``summary.json`` exists is read, not rerun, so an interrupted sweep resumes. Each run also
evaluates near-OOD where the family has it. With several ``--envs`` it prints a table per family,
then one row per family (ID start, end, gain with its 95 % t-interval over seeds, near-OOD start and
end, minutes per seed), and draws ``families.png``: per family, ID and near-OOD success against RL
step, mean over seeds with a band from the lowest to the highest seed.
A sweep is hours on 2 cores: with ``--results DIR --commit-results`` each finished seed's small files
(summary, metrics, evaluations) are written to ``DIR`` as one ledger entry and committed at once, and a
rerun on any machine reads them back instead of training (the lab's ledger; the entry records the settings
and the CPU numerics path, pinned to AVX2 here, and a mismatch stops the sweep). Math runs on
SmolLM2-135M-Instruct (``FAMILY_SETTINGS``): two RL steps from its tiny SFT checkpoint earned reward 0.
``--replot`` redraws a figure from the per-seed table a doc records, without training:

    python benchmarks/rl_learning.py --replot docs/rl.md --section "On the default CPU pipeline" \
        --data-version "tiny pipeline version 2" --figure docs/rl_tiny_textworld_learning_curves.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ID, NEAR, FAR = "in_distribution", "near_out_of_distribution", "out_of_distribution"
FAMILY_SETTINGS: dict[str, dict] = {
    # The tiny model cannot write arithmetic (two RL steps from its Math SFT: reward 0.0, 0.0). SmolLM2 zero-shot
    # on the levels calibrated for it (docs/math.md: greedy 0.33 of ID) is a start with headroom on both sides.
    "math": {"preset": "smollm2", "use_cpu": True, "threads": 2, "max_turns": 1, "max_new_tokens": 96,
             "num_envs": 16, "max_steps": 30, "eval_every": 10, "eval_episodes": 64,
             "env_kwargs": {"level_set": "smollm2", "mode": "single_turn"}},
}
"""Per family, rl-train settings that replace the embedded default where the tiny model has no signal."""
RUN_FILES = ("summary.json", "metrics.jsonl", "eval.jsonl")


def evaluated_splits(env: str) -> list[str]:
    """ID, near-OOD where the family declares it (with its default options), far-OOD."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    from regym.envs import declared_splits, register_envs, resolve_env_id

    register_envs()
    declared = declared_splits(load_env_creator(gym.spec(resolve_env_id(env)).entry_point))
    return [split for split in (ID, NEAR, FAR) if split in declared]


def run_seed(env: str, seed: int, out: Path, rejuvenate: bool, overrides: dict, ledger=None) -> dict:
    """One RL run as ``rl-train`` does it; read back from ``out`` or the ledger when it finished before."""
    from regym.recipes.tiny import PIPELINE_VERSION, with_tiny_pipeline
    from regym.rl.config import resolve_config
    from regym.rl.train import read_jsonl, train

    run_dir = out / f"seed{seed}"
    fields = {"env": env, "seed": seed, "rejuvenate": rejuvenate, **FAMILY_SETTINGS.get(env, {}), **overrides}
    key, settings = f"{env}/seed{seed}", {**fields, "tiny_pipeline_version": PIPELINE_VERSION}
    if ledger is not None and ledger.lookup(key, settings) is not None:
        pass  # recorded on some machine: its small files are restored into run_dir
    elif not (run_dir / "summary.json").is_file():
        config, sources = resolve_config(None, {**fields, "output_dir": str(run_dir), "progress": False,
                                                "eval_splits": evaluated_splits(env)})
        began = time.time()
        train(with_tiny_pipeline(config, sources))  # as rl-train; its "seconds" is the run's wall time
        if ledger is not None:
            ledger.record(key, settings, {"finished": True}, [run_dir / name for name in RUN_FILES],
                          time.time() - began)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["evals"] = read_jsonl(run_dir / "eval.jsonl")
    return summary


def curves_from_doc(doc: Path, section: str) -> dict[int, list[tuple[int, float]]]:
    """The per-seed ID success of the first Markdown table after the line starting with ``section``
    (this script's printed table: ``| seed | step 0 | step 10 | ... | gain | ...``)."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(section))
    header_at = next(i for i in range(start, len(lines)) if lines[i].startswith("| seed | step"))
    header = [cell.strip() for cell in lines[header_at].strip("|").split("|")]
    steps = [(column, int(name.split()[1])) for column, name in enumerate(header) if name.startswith("step ")]
    curves = {}
    for line in lines[header_at + 2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if not line.startswith("|") or not cells[0].isdigit():
            break
        curves[int(cells[0])] = [(step, float(cells[column])) for column, step in steps]
    return curves


def plot(curves: dict[int, list[tuple[int, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for seed, points in sorted(curves.items()):
        axis.plot(*zip(*points, strict=True), marker="o", alpha=0.8, label=f"seed {seed}")
    steps = sorted({step for points in curves.values() for step, _ in points})
    means = [sum(dict(points).get(step, 0.0) for points in curves.values()) / len(curves) for step in steps]
    axis.plot(steps, means, color="black", linewidth=2.5, label="mean over seeds")
    axis.set_xlabel("RL step")
    axis.set_ylabel("in-distribution success (sampled, T=1)")
    axis.set_ylim(0, 1)
    axis.set_title(title, fontsize=10, wrap=True)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="textworld")
    parser.add_argument("--envs", nargs="+", help="several families, one after another (overrides --env)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rejuvenate", action="store_true")
    parser.add_argument("--out", default="runs/rl_learning")
    parser.add_argument("--set", type=json.loads, default={}, metavar="JSON",
                        help="config overrides, e.g. '{\"max_steps\": 20}' (default: none, the shipped defaults)")
    parser.add_argument("--results", type=Path, help="ledger folder: one committed entry per finished seed")
    parser.add_argument("--commit-results", action="store_true", help="git-commit each ledger entry as it lands")
    parser.add_argument("--replot", type=Path, metavar="DOC.md", help="redraw from a doc's table; no training")
    parser.add_argument("--section", help="with --replot: the line that starts the table's section")
    parser.add_argument("--data-version", default="", help="with --replot: what the numbers were measured on")
    parser.add_argument("--figure", type=Path, help="with --replot: the PNG to write")
    args = parser.parse_args()
    if args.replot is not None:
        curves = curves_from_doc(args.replot, args.section)
        plot(curves, args.figure, f"{args.env}: ID success during RL from SFT, {len(curves)} seeds\n"
                                  f"{args.data_version} ({args.replot}, the table of \"{args.section}\")")
        print(f"curves: {args.figure}")
        return
    from regym.lab.ledger import Ledger
    from regym.numerics import pin_cpu_numerics

    numerics = pin_cpu_numerics()  # before any tensor op: a lost run rebuilds the same bits elsewhere
    out = Path(args.out)
    envs = args.envs or [args.env]
    rows = []
    for env in envs:
        folder = out / env if len(envs) > 1 else out
        folder.mkdir(parents=True, exist_ok=True)
        ledger = None if args.results is None else Ledger(args.results, out, commit=args.commit_results,
                                                           stamp={"numerics": numerics})
        summaries = {seed: run_seed(env, seed, folder, args.rejuvenate, args.set, ledger) for seed in args.seeds}
        rows.append(report_family(env, summaries, folder, args.rejuvenate))
    if len(envs) > 1:
        print("\n| family | ID start | ID end | ID gain (95 % CI over seeds) | near-OOD start | near-OOD end "
              "| minutes per seed |\n|---|---|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['env']} | {row['start']:.3f} | {row['end']:.3f} | {row['gain']} | {row['near_start']} "
                  f"| {row['near_end']} | {row['minutes']:.1f} |")
        figure = out / "families.png"
        plot_families(rows, figure, f"RL from {'rejuvenated ' if args.rejuvenate else ''}SFT, "
                                    f"{len(args.seeds)} seeds per family")
        print(f"\ncurves: {figure}")


def split_curves(summaries: dict[int, dict], split: str) -> dict[int, list[tuple[int, float]]]:
    """Per seed, (step, success) at every evaluation that played ``split``."""
    return {seed: [(row["step"], row[split]["success_rate"]) for row in s["evals"] if split in row]
            for seed, s in summaries.items()}


def report_family(env: str, summaries: dict[int, dict], out: Path, rejuvenate: bool) -> dict:
    """Print one family's per-seed table; return its summary row and curves."""
    from regym.lab.stats import format_ci

    curves = split_curves(summaries, ID)
    steps = sorted({step for points in curves.values() for step, _ in points})
    print(f"\n{env} · {ID} success, sampled at T=1 · init: {'rejuvenated SFT' if rejuvenate else 'SFT'}\n")
    print("| seed | " + " | ".join(f"step {step}" for step in steps) + " | gain | ratio | minutes |")
    print("|---" * (len(steps) + 4) + "|")
    gains, ratios = [], []
    for seed, points in sorted(curves.items()):
        values = dict(points)
        first, last = values[steps[0]], values[steps[-1]]
        gains.append(last - first)
        ratios.append(last / first if first > 0 else float("inf"))
        cells = " | ".join(f"{values.get(step, float('nan')):.3f}" for step in steps)
        print(f"| {seed} | {cells} | {last - first:+.3f} | {ratios[-1]:.2f}× | {summaries[seed]['seconds'] / 60:.1f} |")
    means = " | ".join(format_ci([dict(points)[step] for points in curves.values() if step in dict(points)])
                       for step in steps)
    finite = [ratio for ratio in ratios if ratio != float("inf")]
    print(f"| mean ± 95% CI | {means} | {format_ci(gains)} | {format_ci(finite, 2)}× | |")
    for split in (NEAR, FAR):
        print(f"\n| seed | {split} before RL | after RL |\n|---|---|---|")
        for seed, points in sorted(split_curves(summaries, split).items()):
            if points:
                print(f"| {seed} | {points[0][1]:.3f} | {points[-1][1]:.3f} |")
    figure = out / "learning_curves.png"
    plot(curves, figure, f"{env}: RL from {'rejuvenated ' if rejuvenate else ''}SFT, {len(curves)} seeds")
    print(f"\ncurves: {figure}")
    near = [points for points in split_curves(summaries, NEAR).values() if points]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return {"env": env, "start": mean([dict(p)[steps[0]] for p in curves.values()]),
            "end": mean([dict(p)[steps[-1]] for p in curves.values()]), "gain": format_ci(gains),
            "near_start": f"{mean([p[0][1] for p in near]):.3f}" if near else "—",
            "near_end": f"{mean([p[-1][1] for p in near]):.3f}" if near else "—",
            "minutes": mean([s["seconds"] / 60 for s in summaries.values()]),
            "curves": {ID: curves, NEAR: split_curves(summaries, NEAR)}}


def plot_families(rows: list[dict], path: Path, title: str) -> None:
    """One panel per family: ID and near-OOD success against RL step, mean over seeds, band = lowest to highest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.4), sharey=True, squeeze=False)
    for axis, row in zip(axes[0], rows, strict=True):
        for split, color, label in ((ID, "tab:blue", "ID"), (NEAR, "tab:orange", "near-OOD")):
            curves = {seed: dict(points) for seed, points in row["curves"][split].items() if points}
            if not curves:
                continue
            steps = sorted(set.intersection(*(set(points) for points in curves.values())))
            values = [[points[step] for points in curves.values()] for step in steps]
            axis.plot(steps, [sum(v) / len(v) for v in values], color=color, marker="o", label=label)
            axis.fill_between(steps, [min(v) for v in values], [max(v) for v in values], color=color, alpha=0.2)
        axis.set_title(row["env"], fontsize=10)
        axis.set_xlabel("RL step")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("success (sampled, T=1)")
    axes[0][0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
