"""``lab/report.md`` and its plots: the handoff lab's tables, curves and verdict.

The verdict is computed, never tuned: the paper's ordering "holds" when the mean
in-distribution RL gain of over-SFT + fusion + reset exceeds that of over-SFT; the
report says whether the paired difference's 95 % CI excludes zero, and checks the
pre-conditions the effect needs (is the over-SFT model over-confident? does RL see
groups with reward variance?).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from regym.lab.stats import format_ci, mean_ci

ID, OOD = "in_distribution", "out_of_distribution"


def _success(summary: dict[str, Any], when: str, split: str) -> float:
    return float(summary.get(when, {}).get(split, {}).get("success_rate", math.nan))


def arm_table(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """arm → column → values over seeds (pre/post/gain for ID and OOD)."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        summary = run["summary"]
        for split, short in ((ID, "id"), (OOD, "ood")):
            pre, post = _success(summary, "before", split), _success(summary, "after", split)
            table[run["arm"]][f"pre_{short}"].append(pre)
            table[run["arm"]][f"post_{short}"].append(post)
            table[run["arm"]][f"gain_{short}"].append(post - pre)
    return table


def paired_difference(runs: list[dict[str, Any]], arm: str, reference: str, column: str = "gain_id") -> list[float]:
    """Per-seed difference of a column between two arms (seeds present in both)."""
    by_seed: dict[str, dict[int, float]] = defaultdict(dict)
    for run in runs:
        split = ID if column.endswith("_id") else OOD
        gain = _success(run["summary"], "after", split) - _success(run["summary"], "before", split)
        by_seed[run["arm"]][run["seed"]] = gain
    seeds = sorted(set(by_seed[arm]) & set(by_seed[reference]))
    return [by_seed[arm][seed] - by_seed[reference][seed] for seed in seeds]


def verdict(runs: list[dict[str, Any]], diagnostics: dict[str, Any], moderate_label: str = "sft@2ep",
            over_label: str = "sft@32ep") -> list[str]:
    """Plain sentences: did the ordering hold, and were its pre-conditions met?"""
    table = arm_table(runs)
    lines = []
    rejuvenated, over = "over-sft+fusion+reset", "over-sft"
    if rejuvenated in table and over in table:
        gain_rej, _ = mean_ci(table[rejuvenated]["gain_id"])
        gain_over, _ = mean_ci(table[over]["gain_id"])
        difference = paired_difference(runs, rejuvenated, over)
        mean, half = mean_ci(difference)
        held = gain_rej > gain_over
        significant = not math.isnan(half) and mean - half > 0
        lines.append(
            f"**The paper's ordering {'held' if held else 'did NOT hold'}** in-distribution: RL gain of "
            f"over-SFT + rejuvenation {format_ci(table[rejuvenated]['gain_id'])} vs over-SFT "
            f"{format_ci(table[over]['gain_id'])} (paired difference {format_ci(difference)} over "
            f"{len(difference)} seeds; {'its 95 % CI excludes 0' if significant else 'its 95 % CI includes 0, so the difference is not established at this scale'})."
        )
        if "moderate-sft" in table:
            lines.append(f"Moderate SFT gained {format_ci(table['moderate-sft']['gain_id'])}; "
                         f"over-SFT {'gained less' if gain_over < mean_ci(table['moderate-sft']['gain_id'])[0] else 'did not gain less'} "
                         "than moderate SFT (the paper's premise).")
    models = diagnostics.get("models", {})
    moderate, over_entry = models.get(moderate_label), models.get(over_label)
    if moderate and over_entry:
        mm, om = moderate["metrics"], over_entry["metrics"]
        confident = om["entropy"] < mm["entropy"] and om["top1_prob"] > mm["top1_prob"]
        lines.append(
            f"Pre-condition 1, over-confidence: over-SFT entropy {om['entropy']:.3f} vs moderate {mm['entropy']:.3f}, "
            f"top-1 {om['top1_prob']:.3f} vs {mm['top1_prob']:.3f}, SFT loss {om['sft_loss']:.4f} vs {mm['sft_loss']:.4f}: "
            f"{'met' if confident else 'NOT met'}.")
        if "nonzero_variance_groups" in om:
            lines.append(
                f"Pre-condition 2, RL signal: GRPO groups with reward variance — over-SFT "
                f"{om['nonzero_variance_groups']:.2f}, moderate {mm['nonzero_variance_groups']:.2f}"
                + "".join(f", {label} {m['metrics']['nonzero_variance_groups']:.2f}" for label, m in models.items()
                          if "rejuvenated" in label and "nonzero_variance_groups" in m["metrics"])
                + " (a group with identical rewards gives zero advantage).")
    return lines


def _plot_curves(runs: list[dict[str, Any]], out: Path) -> Path | None:
    """Mean eval success (ID and OOD) per RL step for each main arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in runs:
        path = Path(run["folder"]) / "eval.jsonl"
        if "α=" in run["arm"] or not path.exists():
            continue
        for line in path.read_text().splitlines():
            row = json.loads(line)
            for split in (ID, OOD):
                if split in row:
                    curves[run["arm"]][split][row["step"]].append(row[split]["success_rate"])
    if not curves:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for axis, split in zip(axes, (ID, OOD), strict=True):
        for arm, by_split in curves.items():
            steps = sorted(by_split[split])
            axis.plot(steps, [sum(by_split[split][s]) / len(by_split[split][s]) for s in steps], marker="o", label=arm)
        axis.set(title=f"eval success, {split.replace('_', '-')}", xlabel="RL step")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("success rate (mean over seeds)")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def _plot_gains(table: dict[str, dict[str, list[float]]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [arm for arm in table if "α=" not in arm]
    figure, axis = plt.subplots(figsize=(9, 4))
    width = 0.38
    for offset, (column, label) in enumerate((("gain_id", "ID"), ("gain_ood", "OOD"))):
        means = [mean_ci(table[arm][column])[0] for arm in arms]
        halves = [0 if math.isnan(h) else h for h in (mean_ci(table[arm][column])[1] for arm in arms)]
        axis.bar([i + (offset - 0.5) * width for i in range(len(arms))], means, width, yerr=halves, capsize=3,
                 label=label)
    axis.set_xticks(range(len(arms)), arms, rotation=15, fontsize=8)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set(ylabel="RL gain in success rate", title="RL gain per starting checkpoint (mean ± 95 % CI)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def _plot_ladder(diagnostics: dict[str, Any], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(float(label[4:].removesuffix("ep")), entry["metrics"]) for label, entry in diagnostics["models"].items()
              if label.startswith("sft@")]
    if not points:
        return None
    figure, axis = plt.subplots(figsize=(7, 4))
    epochs = [p[0] for p in points]
    for key in ("entropy", "top1_prob", "sft_loss", "drift_relative"):
        axis.plot(epochs, [p[1][key] for p in points], marker="o", label=key)
    axis.set_xscale("log", base=2)
    axis.set(xlabel="SFT epochs", title="the SFT ladder: confidence, loss and drift")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def write_lab_report(data: dict[str, Any], out: Path) -> dict[str, Path]:
    """report.md (+ PNGs) in ``out``."""
    runs, diagnostics = data["runs"], data["diagnostics"]
    main_runs = [run for run in runs if "α=" not in run["arm"]]
    table = arm_table(main_runs)
    paths = {"markdown": out / "report.md"}
    curves = _plot_curves(runs, out / "learning_curves.png")
    paths["gains"] = _plot_gains(table, out / "rl_gain.png")
    ladder_plot = _plot_ladder(diagnostics, out / "sft_ladder.png")

    seeds = sorted({run["seed"] for run in main_runs})
    config = data["config"]
    lines = [
        f"# Handoff lab: {data['env']} ({config['preset']} preset)", "",
        f"RL seeds: {len(seeds)}; identical RL budget per arm: {json.dumps(config['rl'])}.",
        f"Moderate SFT = {config['moderate_epochs']:g} epochs, over-SFT = {config['over_epochs']:g} epochs; "
        f"rejuvenation α = {config['alpha']:g}, reset ρ = {config['reset_fraction']:g}.",
        f"Measured wall time: {data['timings_s']['total'] / 60:.1f} minutes "
        f"({', '.join(f'{k} {v / 60:.1f} min' for k, v in data['timings_s'].items() if k != 'total')}).", "",
        "## Verdict", "",
        *[f"- {line}" for line in verdict(main_runs, diagnostics, f"sft@{config['moderate_epochs']:g}ep",
                                          f"sft@{config['over_epochs']:g}ep")], "",
        "## Pre-RL diagnostics (the SFT ladder; cf. the paper's Table 1)", "",
        "Teacher-forced on expert turns of the env; pass@k from sampled episodes (temperature 1).", "",
    ]
    lines += _diagnostics_table(diagnostics)
    if ladder_plot:
        lines += ["", f"![SFT ladder]({ladder_plot.name})"]
    lines += ["", "Full handoff report (per-layer drift, sharpness, plots): `handoff_report/report.md`.", "",
              "## Final table (success rate, mean ± 95 % CI over seeds)", "",
              "| start | pre-RL ID | post-RL ID | RL gain ID | pre-RL OOD | post-RL OOD | RL gain OOD |",
              "|---|---|---|---|---|---|---|"]
    for arm in table:
        cells = [format_ci(table[arm][c]) for c in ("pre_id", "post_id", "gain_id", "pre_ood", "post_ood", "gain_ood")]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", f"![RL gain]({paths['gains'].name})"]
    if curves:
        paths["curves"] = curves
        lines += ["", "## Learning curves", "", f"![learning curves]({curves.name})"]
    lines += ["", "## Ablation (over-SFT start)", "", "| arm | RL gain ID | RL gain OOD | post-RL ID | post-RL OOD |",
              "|---|---|---|---|---|"]
    for arm in ("over-sft", "over-sft+fusion", "over-sft+fusion+reset"):
        if arm in table:
            lines.append(f"| {arm} | {format_ci(table[arm]['gain_id'])} | {format_ci(table[arm]['gain_ood'])} | "
                         f"{format_ci(table[arm]['post_id'])} | {format_ci(table[arm]['post_ood'])} |")
    sweep = [run for run in runs if "α=" in run["arm"] or (run["arm"] == "over-sft+fusion+reset" and run["seed"] == 0)]
    if len(sweep) > 1:
        lines += ["", "## α sweep (fusion + reset, seed 0)", "", "| α | pre-RL ID | post-RL ID | post-RL OOD |",
                  "|---|---|---|---|"]
        for run in sorted(sweep, key=lambda r: float(r["arm"].split("α=")[1]) if "α=" in r["arm"] else config["alpha"]):
            alpha = run["arm"].split("α=")[1] if "α=" in run["arm"] else f"{config['alpha']:g}"
            s = run["summary"]
            lines.append(f"| {alpha} | {_success(s, 'before', ID):.3f} | {_success(s, 'after', ID):.3f} | "
                         f"{_success(s, 'after', OOD):.3f} |")
    lines += ["", "## Runs", "", "Each RL run's logs, curve and final model: `rl/<arm>/seed<N>/`."]
    paths["markdown"].write_text("\n".join(lines) + "\n")
    return paths


def _diagnostics_table(diagnostics: dict[str, Any]) -> list[str]:
    models = diagnostics.get("models", {})
    if not models:
        return ["(no diagnostics)"]
    first = next(iter(models.values()))["metrics"]
    k_key = next((k for k in first if k.startswith("pass@") and k != "pass@1"), None)
    header = ["checkpoint", "SFT loss", "entropy", "top-1 prob", "drift ‖Δ‖/‖θ‖", "Hessian λ_max", "pass@1"]
    if k_key:
        header += [k_key, f"{k_key} − pass@1"]
    header.append("groups with variance")
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for label, entry in models.items():
        m = entry["metrics"]
        cells = [label, f"{m['sft_loss']:.4f}", f"{m['entropy']:.4f}", f"{m['top1_prob']:.3f}",
                 f"{m['drift_relative']:.4f}", f"{m.get('hessian_top_eigenvalue', math.nan):.2f}",
                 f"{m.get('pass@1', math.nan):.3f}"]
        if k_key:
            cells += [f"{m[k_key]:.3f}", f"{m[k_key] - m['pass@1']:.3f}"]
        cells.append(f"{m.get('nonzero_variance_groups', math.nan):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines
