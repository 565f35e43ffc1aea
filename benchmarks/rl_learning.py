"""Does RL learn on the default CPU pipeline? ``rl-train``'s defaults, over several seeds.

Runs ``regym.rl.train.train`` with the default config (the tiny pipeline, built and
cached on first use) once per RL seed, all from the same SFT checkpoint, and prints the
in-distribution success rate at every evaluation, per seed and as mean ± 95 % t-interval,
with the gain as a difference and as a ratio against the SFT start measured in the same
run. Writes the curves to a PNG.

    python benchmarks/rl_learning.py [--seeds 0 1 2] [--env textworld] [--rejuvenate] [--out runs/rl_learning]

Seeds run one after another (each takes the default budget: about 12 minutes on 2 cores).
``--replot`` redraws a figure from the per-seed table a doc records, without training:

    python benchmarks/rl_learning.py --replot docs/rl.md --section "On the default CPU pipeline" \
        --data-version "tiny pipeline version 2" --figure docs/rl_tiny_textworld_learning_curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def run_seed(env: str, seed: int, out: Path, rejuvenate: bool, overrides: dict) -> dict:
    from regym.recipes.tiny import with_tiny_pipeline
    from regym.rl.config import resolve_config
    from regym.rl.train import read_jsonl, train

    run_dir = out / f"seed{seed}"
    if (run_dir / "summary.json").is_file():  # finished earlier: reuse
        summary = json.loads((run_dir / "summary.json").read_text())
    else:
        config, sources = resolve_config(None, {"env": env, "seed": seed, "rejuvenate": rejuvenate,
                                                "output_dir": str(run_dir), "progress": False, **overrides})
        summary = train(with_tiny_pipeline(config, sources))  # as rl-train; its "seconds" is the run's wall time
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
    from regym.lab.stats import format_ci

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="textworld")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rejuvenate", action="store_true")
    parser.add_argument("--out", default="runs/rl_learning")
    parser.add_argument("--set", type=json.loads, default={}, metavar="JSON",
                        help="config overrides, e.g. '{\"max_steps\": 20}' (default: none, the shipped defaults)")
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = "in_distribution"

    summaries = {seed: run_seed(args.env, seed, out, args.rejuvenate, args.set) for seed in args.seeds}
    curves = {seed: [(row["step"], row[split]["success_rate"]) for row in s["evals"] if split in row]
              for seed, s in summaries.items()}
    steps = sorted({step for points in curves.values() for step, _ in points})

    print(f"\n{args.env} · {split} success, sampled at T=1 · init: "
          f"{'rejuvenated SFT' if args.rejuvenate else 'SFT'}\n")
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
    ood = "out_of_distribution"
    print(f"\n| seed | {ood} before RL | after RL |\n|---|---|---|")
    for seed, summary in sorted(summaries.items()):
        rows = [row for row in summary["evals"] if ood in row]
        if rows:
            print(f"| {seed} | {rows[0][ood]['success_rate']:.3f} | {rows[-1][ood]['success_rate']:.3f} |")
    figure = out / "learning_curves.png"
    plot(curves, figure, f"{args.env}: RL from {'rejuvenated ' if args.rejuvenate else ''}SFT, {len(curves)} seeds")
    print(f"\ncurves: {figure}")


if __name__ == "__main__":
    main()
