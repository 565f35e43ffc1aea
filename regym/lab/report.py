"""``lab/report.md`` and its plots: the ladder, the arms' starts, RL curves and the verdict.

The verdict is computed, never tuned. The primary result is the paired per-seed difference in
post-RL in-distribution success, over-SFT + fusion + reset minus over-SFT, with a 95 % interval
from a bootstrap over seeds and episodes (both evaluations' errors are in it). The effect
"held" only when that interval lies above zero; the report then names which of its
preconditions were met, so a negative result says why.
"""

from __future__ import annotations

import json
import math
import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regym.lab.arms import ARMS, REJUVENATED, episode_outcomes
from regym.lab.ladder import mark_label
from regym.lab.stats import (
    bootstrap_mean,
    bootstrap_normalised_gain,
    bootstrap_paired_difference,
    format_interval,
    mean_ci,
)
from regym.rejuvenation.blocks import ROLES
from regym.trajectory import read_jsonl

ID, NEAR, FAR = "in_distribution", "near_out_of_distribution", "out_of_distribution"
SHORT = {ID: "ID", NEAR: "near-OOD", FAR: "far-OOD"}
CEILING = 0.85
"""A start "has headroom" on a split when the upper end of its 95 % interval is below this success rate."""

LADDER_ROWS = [
    ("sampled_success", "sampled success", "{:.3f}"), ("greedy_success", "greedy success", "{:.3f}"),
    ("onpolicy_entropy", "on-policy entropy (nats)", "{:.3f}"), ("onpolicy_top1_prob", "on-policy top-1 probability", "{:.3f}"),
    ("zero_signal_groups", "GRPO groups without signal", "{:.2f}"),
    ("saturated_groups", "of them solved (every sample won)", "{:.2f}"),
    ("collapsed_groups", "collapsed groups (none won, or all alike)", "{:.2f}"), ("drift", "drift ‖Δ‖/‖θ_base‖", "{:.3f}"),
    ("onpolicy_loss", "on-policy NLL", "{:.3f}"),
    ("onpolicy_hessian_max_abs_eigenvalue", "on-policy Hessian eigenvalue, largest magnitude (signed)", "{:.3g}"),
    ("onpolicy_adaptive_sharpness", "on-policy adaptive sharpness", "{:.3g}"),
    ("heldout_loss", "held-out loss", "{:.3f}"),
    ("heldout_hessian_max_abs_eigenvalue", "held-out Hessian eigenvalue, largest magnitude (signed)", "{:.3g}"),
    ("heldout_adaptive_sharpness", "held-out adaptive sharpness", "{:.3g}"),
]


# --- per-episode outcomes -------------------------------------------------------------------------
def outcomes(data: dict[str, Any]) -> dict[str, Any]:
    """{"pre": arm → split → episodes, "post": arm → seed → split → episodes} from the evaluation folders."""
    pre = {arm: episode_outcomes(Path(entry["folder"])) for arm, entry in data["pre"].items()}
    post: dict[str, dict[int, dict[str, list[float]]]] = {}
    for run in data["runs"]:
        final = Path(run["folder"]) / "evals" / f"step-{run['summary']['steps']}"
        post.setdefault(run["arm"], {})[run["seed"]] = episode_outcomes(final)
    return {"pre": pre, "post": post}


def verdict_table(data: dict[str, Any], splits: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """arm → split → {pre, post, diff (vs over-SFT, paired), normalised gain}: bootstrap results."""
    episodes = outcomes(data)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for arm in (arm for arm in ARMS if arm in episodes["post"]):
        seeds = sorted(episodes["post"][arm])
        table[arm] = {}
        for split in splits:
            pre = episodes["pre"][arm][split]
            post = [episodes["post"][arm][seed][split] for seed in seeds]
            row = {"pre": bootstrap_mean([pre]), "post": bootstrap_mean(post),
                   "gain": bootstrap_paired_difference(post, [pre] * len(post)),
                   "normalised_gain": bootstrap_normalised_gain(post, pre)}
            if arm != "over-sft" and "over-sft" in episodes["post"]:
                shared = [seed for seed in seeds if seed in episodes["post"]["over-sft"]]
                row["diff"] = bootstrap_paired_difference(
                    [episodes["post"][arm][seed][split] for seed in shared],
                    [episodes["post"]["over-sft"][seed][split] for seed in shared])
            table[arm][split] = row
    return table


# --- the verdict ----------------------------------------------------------------------------------
ID_FLOOR, ID_CEILING, NEAR_FLOOR = 0.15, 0.80, 0.05
"""Headroom on both sides: the moderate start's ID success in [ID_FLOOR, ID_CEILING] (RL can move it either way),
its near-OOD success at least NEAR_FLOOR (a change there is measurable)."""
RL_WORKS_GAIN = 0.05
"""RL works: moderate SFT gains at least this much ID success, with the interval of its gain above 0."""
PREMISE_GAP = 0.03
"""The premise: over-SFT gains at least this much less ID success from RL than moderate SFT."""
KEEP_SHARE = 0.5
"""The rejuvenated start keeps at least this share of over-SFT's pre-RL ID success."""
TARGET_DIFFERENCE = 0.05
"""The difference the confirmatory run must resolve (seeds needed, at 80 % power, from the seed-to-seed spread)."""


@dataclass(frozen=True)
class Check:
    """One precondition as measured: None when it could not be measured (an arm did not run)."""

    number: int
    name: str
    held: bool | None
    detail: str


def precondition_checks(data: dict[str, Any], table: dict[str, dict[str, dict[str, Any]]]) -> list[Check]:
    """The conditions under which the paper's effect could show at all, each with its numbers."""
    checks = []
    diagnostics = data["diagnostics"]
    over, moderate = mark_label(data["over_mark"]), mark_label(data["moderate_mark"])
    rule = data["rule"]
    over_row, moderate_row = diagnostics[over], diagnostics[moderate]
    checks.append(Check(1, "over-SFT found by measurement", bool(data["over_rule_met"]),
                        f"over-SFT = {over}: on-policy entropy {over_row['onpolicy_entropy']:.3f} (≤ "
                        f"{rule['max_entropy']:g}?), collapsed groups {over_row['collapsed_groups']:.2f} (≥ "
                        f"{rule['min_collapsed']:g}?); moderate = {moderate}: {moderate_row['onpolicy_entropy']:.3f}, "
                        f"{moderate_row['collapsed_groups']:.2f}"
                        + ("" if data["over_rule_met"] else "; no mark met the rule, the last mark stands in")))
    pre = table.get("moderate-sft", {})
    if ID in pre:
        start = pre[ID]["pre"]["mean"]
        near = pre[NEAR]["pre"]["mean"] if NEAR in pre else None
        held = ID_FLOOR <= start <= ID_CEILING and (near is None or near >= NEAR_FLOOR)
        checks.append(Check(2, "headroom on both sides", held,
                            f"moderate-SFT starts at ID {start:.3f} (in [{ID_FLOOR:g}, {ID_CEILING:g}]?)"
                            + ("" if near is None else f", near-OOD {near:.3f} (≥ {NEAR_FLOOR:g}?)")))
    else:
        checks.append(Check(2, "headroom on both sides", None, "moderate-sft did not run"))
    gains = {arm: table[arm][ID]["gain"] for arm in ("moderate-sft", "over-sft") if ID in table.get(arm, {})}
    if "moderate-sft" in gains:
        gain = gains["moderate-sft"]
        checks.append(Check(3, "RL works", gain["mean"] >= RL_WORKS_GAIN and gain["low"] > 0,
                            f"moderate SFT gained {format_interval(gain)} ID success from RL "
                            f"(≥ {RL_WORKS_GAIN:g} with the interval above 0?)"))
    else:
        checks.append(Check(3, "RL works", None, "moderate-sft did not run"))
    if len(gains) == 2:
        gap = gains["moderate-sft"]["mean"] - gains["over-sft"]["mean"]
        checks.append(Check(4, "the premise", gap >= PREMISE_GAP,
                            f"over-SFT gained {gains['over-sft']['mean']:+.3f}, moderate SFT "
                            f"{gains['moderate-sft']['mean']:+.3f}: {gap:+.3f} less (≥ {PREMISE_GAP:g}?)"))
    else:
        checks.append(Check(4, "the premise", None, "moderate-sft or over-sft did not run"))
    if ID in table.get(REJUVENATED, {}) and ID in table.get("over-sft", {}):
        kept, before = table[REJUVENATED][ID]["pre"]["mean"], table["over-sft"][ID]["pre"]["mean"]
        checks.append(Check(5, "the rejuvenated start keeps the SFT prior", kept >= KEEP_SHARE * before,
                            f"pre-RL ID success {kept:.3f} vs over-SFT's {before:.3f} (≥ {KEEP_SHARE:g} of it?)"))
    else:
        checks.append(Check(5, "the rejuvenated start keeps the SFT prior", None, "an arm did not run"))
    spread = seed_spread(data)
    if spread is not None:
        checks.append(Check(6, "seed-to-seed spread", True,
                            f"post-RL ID success varies by {spread['sd']:.3f} (SD over seeds, pooled over "
                            f"{spread['arms']} arms with ≥ 2 seeds): resolving a {TARGET_DIFFERENCE:g} difference "
                            f"at 80 % power needs {spread['seeds_needed']} seeds per arm"))
    else:
        checks.append(Check(6, "seed-to-seed spread", None, "no arm has two seeds"))
    return checks


def seed_spread(data: dict[str, Any]) -> dict[str, Any] | None:
    """Pooled SD over seeds of post-RL ID success, and the seeds per arm that a paired difference of
    ``TARGET_DIFFERENCE`` needs at 80 % power (two-sided 5 %): n = ((1.96 + 0.84) · √2 · SD / δ)²."""
    by_arm: dict[str, list[float]] = {}
    for run in data["runs"]:
        after = run["summary"].get("after", {}).get(ID)
        if after is not None:
            by_arm.setdefault(run["arm"], []).append(float(after["success_rate"]))
    spreads = [(len(values), statistics.variance(values)) for values in by_arm.values() if len(values) >= 2]
    if not spreads:
        return None
    pooled = math.sqrt(sum((n - 1) * var for n, var in spreads) / sum(n - 1 for n, _ in spreads))
    needed = max(2, math.ceil(((1.96 + 0.84) * math.sqrt(2) * pooled / TARGET_DIFFERENCE) ** 2))
    return {"sd": pooled, "arms": len(spreads), "seeds_needed": needed}


def verdict(data: dict[str, Any], table: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The preconditions first (which held, which failed), the RL budget and whether any arm gained, then
    the primary result, qualified when a precondition failed, then each precondition and the controls."""
    checks = precondition_checks(data, table)
    held = [str(c.number) for c in checks if c.held]
    failed = [f"{c.number} ({c.name})" for c in checks if c.held is False]
    unknown = [str(c.number) for c in checks if c.held is None]
    lines = [f"**Preconditions** held: {', '.join(held) or 'none'}; failed: {', '.join(failed) or 'none'}"
             + (f"; not measured: {', '.join(unknown)}" if unknown else "") + "."]
    rl = data["config"]["rl"]
    gained = [arm for arm, by_split in table.items() if ID in by_split and by_split[ID]["gain"]["low"] > 0]
    lines.append(f"**RL budget**: {rl.get('max_steps')} steps of {rl.get('tasks_per_step', '?')} tasks × "
                 f"{rl.get('num_generations', '?')} samples per arm and seed. **Arms whose ID success rose** (gain "
                 f"interval above 0): {', '.join(gained) if gained else 'none'}.")
    primary = table.get(REJUVENATED, {}).get(ID, {}).get("diff")
    if primary is None:
        lines.append("The primary comparison could not be computed (an arm has no finished run).")
    else:
        if primary["low"] > 0:
            outcome = "over-SFT + rejuvenation beat over-SFT in-distribution after RL"
        elif primary["high"] < 0:
            outcome = "over-SFT + rejuvenation did worse than over-SFT in-distribution after RL"
        else:
            outcome = "over-SFT + rejuvenation and over-SFT do not differ in-distribution after RL beyond the noise"
        caveat = ("" if not failed else "Because preconditions failed, this is not evidence for or against the "
                  "claim: ")
        lines.append(f"{caveat}{outcome} (paired post-RL difference {format_interval(primary)} over "
                     f"{primary['seeds']} seeds, 95 % bootstrap interval over seeds and episodes; "
                     f"{primary['episodes']} episodes per arm).")
    lines.extend(f"Precondition {c.number}, {c.name}: "
                 f"{'held' if c.held else 'FAILED' if c.held is False else 'not measured'}. {c.detail}."
                 for c in checks)
    matched = data.get("temperature_matching", {}).get("temperature")
    for control, what in (("over-sft+fusion+random-reset", "a random reset of the same size"),
                          ("over-sft@matched-T", "over-SFT sampled at the rejuvenated model's entropy"),
                          ("over-sft+fusion", "fusion alone")):
        if control == "over-sft@matched-T" and control in table and matched is not None and matched <= 1.0:
            lines.append("Control, over-SFT at the matched temperature: not applicable (the matched T is 1: "
                         "over-SFT's entropy at T = 1 already reaches the rejuvenated start's).")
        elif control in table and REJUVENATED in table:
            ours, theirs = table[REJUVENATED][ID]["post"]["mean"], table[control][ID]["post"]["mean"]
            diff = table[control][ID].get("diff")
            lines.append(f"Control, {what}: post-RL ID success {theirs:.3f} vs the rejuvenated arm's {ours:.3f} "
                         f"(its paired difference to over-SFT {format_interval(diff) if diff else '—'}).")
    return lines


# --- tables ---------------------------------------------------------------------------------------
def ladder_markdown(data: dict[str, Any]) -> str:
    labels = ["base", *(mark_label(mark) for mark in data["marks"])]
    names = {mark_label(data["moderate_mark"]): " (moderate)", mark_label(data["over_mark"]): " (over-SFT)"}
    lines = ["| | " + " | ".join(label + names.get(label, "") for label in labels) + " |",
             "|---|" + "---|" * len(labels)]
    for key, title, pattern in LADDER_ROWS:
        rows = [data["diagnostics"][label] for label in labels]
        values = [row.get(key) for row in rows]
        if all(value is None for value in values):
            continue
        converged = [row.get(key.replace("max_abs_eigenvalue", "converged"), True) for row in rows]
        lines.append(f"| {title} | " + " | ".join("—" if v is None else pattern.format(v) + ("" if ok else "*")
                                                  for v, ok in zip(values, converged, strict=True)) + " |")
    if any(row.get(key) is False for row in data["diagnostics"].values() for key in row if key.endswith("converged")):
        lines.append("\n\\* power iteration had not converged (its last step moved the estimate by more than 1 %).")
    return "\n".join(lines)


def arms_markdown(table: dict[str, dict[str, dict[str, Any]]], splits: list[str], arms: dict[str, Any]) -> str:
    lines = ["| arm | seeds | T | split | pre-RL | post-RL | paired post-RL diff vs over-SFT | gain / headroom |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, by_split in table.items():
        for split in splits:
            row = by_split[split]
            diff = format_interval(row["diff"]) if "diff" in row else "(reference)"
            lines.append(f"| {arm} | {row['post']['seeds']} | {arms[arm]['temperature']:.2f} | {SHORT.get(split, split)} | "
                         f"{_rate(row['pre'])} | {_rate(row['post'])} | {diff} | {format_interval(row['normalised_gain'])} |")
    return "\n".join(lines)


def _rate(result: dict[str, float]) -> str:
    return f"{result['mean']:.3f} [{result['low']:.3f}, {result['high']:.3f}]"


# --- plots ----------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_title(data: dict[str, Any]) -> str:
    """What a lab figure's data is: the env, the pipeline seed and preset, and the regym version that ran it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        running = f"regym {version('regym')}"
    except PackageNotFoundError:
        running = "regym (not installed)"
    config = data.get("config", {})
    return (f"handoff lab: {data.get('env', '?')}, {config.get('preset', '?')} preset, pipeline seed "
            f"{config.get('pipeline_seed', '?')} ({data.get('regym_version') or running})")


def plot_ladder(data: dict[str, Any], out: Path) -> Path:
    """Each ladder diagnostic against SFT epochs (base at 0), the moderate and over-SFT marks as dashed lines."""
    plt = _pyplot()
    keys = [row for row in LADDER_ROWS if any(row[0] in data["diagnostics"][label] for label in data["diagnostics"])]
    columns = 4
    rows = math.ceil(len(keys) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows + 0.8), squeeze=False)
    epochs = [0.0, *data["marks"]]
    labels = ["base", *(mark_label(mark) for mark in data["marks"])]
    marks = ((data["moderate_mark"], "tab:green", "moderate SFT"), (data["over_mark"], "tab:red", "over-SFT"))
    for axis, (key, title, _) in zip(axes.flat, keys, strict=False):
        values = [data["diagnostics"][label].get(key, math.nan) for label in labels]
        axis.plot(range(len(epochs)), values, marker="o", color="tab:blue", label="checkpoint")
        axis.set_xticks(range(len(epochs)), [f"{e:g}" for e in epochs])
        for mark, colour, name in marks:
            axis.axvline(epochs.index(mark), color=colour, alpha=0.6, linestyle="--",
                         label=f"{name} ({mark:g} epochs)")
        if "eigenvalue" in title:
            axis.axhline(0, color="grey", linewidth=0.8)
        axis.set(title=textwrap.fill(title, 34), xlabel="SFT epochs (0: base)",
                 ylabel=title.split(" (")[0].split(",")[0])
        axis.yaxis.label.set_size(7)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(keys):]:
        axis.set_visible(False)
    handles, names = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=3, frameon=False)
    figure.suptitle(f"SFT ladder diagnostics; {figure_title(data)}")
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def _per_step(runs: list[dict[str, Any]], key: str) -> dict[str, dict[int, list[float]]]:
    """arm → step → values over seeds of one metrics.jsonl column."""
    curves: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        for row in read_jsonl(Path(run["folder"]) / "metrics.jsonl"):
            if key in row and "step" in row:
                curves.setdefault(run["arm"], {}).setdefault(int(row["step"]), []).append(float(row[key]))
    return curves


def _band(axis, curves: dict[int, list[float]], label: str, smooth: int = 1) -> None:
    steps = sorted(curves)
    means, halves = [], []
    for index in range(len(steps)):
        window = [value for s in steps[max(0, index - smooth + 1): index + 1] for value in curves[s]]
        mean, half = mean_ci(window)
        means.append(mean)
        halves.append(0.0 if math.isnan(half) else half)
    line = axis.plot(steps, means, label=label, linewidth=2)[0]
    axis.fill_between(steps, [m - h for m, h in zip(means, halves, strict=True)],
                      [m + h for m, h in zip(means, halves, strict=True)], color=line.get_color(), alpha=0.06,
                      linewidth=0)


def plot_curves(data: dict[str, Any], out: Path) -> Path:
    """Per arm: training success per step (mean ± 95 % CI over seeds, 4-step window), ID eval points,
    gradient norm and update norm per step."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    for arm, curves in _per_step(data["runs"], "success_rate").items():
        _band(axes[0], curves, arm, smooth=4)
    for arm, curves in _per_step(data["runs"], "grad_norm").items():
        _band(axes[1], curves, arm)
    for arm, curves in _per_step(data["runs"], "update_norm").items():
        _band(axes[2], curves, arm)
    for run in data["runs"]:
        for row in read_jsonl(Path(run["folder"]) / "eval.jsonl"):
            if ID in row:
                axes[0].scatter([row["step"]], [row[ID]["success_rate"]], s=8, color="black", alpha=0.3)
    axes[0].set(title="training success (4-step window; dots: ID evaluations)", xlabel="RL step",
                ylabel="training success rate", ylim=(0, 1))
    axes[1].set(title="gradient norm (before clipping)", xlabel="RL step", ylabel="‖g‖ (log scale)", yscale="log")
    axes[2].set(title="update norm per step", xlabel="RL step", ylabel="‖Δθ‖ (log scale)", yscale="log")
    for axis in axes:
        axis.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=len(names), frameon=False, fontsize=9)
    figure.suptitle(f"RL per arm: mean over seeds, bands 95 % interval; {figure_title(data)}")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def plot_verdict(table: dict[str, dict[str, dict[str, Any]]], splits: list[str], out: Path,
                 data: dict[str, Any] | None = None) -> Path:
    """Pre- and post-RL success per arm and split, with 95 % bootstrap intervals."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 4.5), sharey=True, squeeze=False)
    arms = list(table)
    for axis, split in zip(axes[0], splits, strict=True):
        for offset, when in ((-0.2, "pre"), (0.2, "post")):
            values = [table[arm][split][when] for arm in arms]
            axis.bar([i + offset for i in range(len(arms))], [v["mean"] for v in values], 0.4, label=f"{when}-RL",
                     yerr=[[v["mean"] - v["low"] for v in values], [v["high"] - v["mean"] for v in values]], capsize=2)
        if all(table[arm][split][when]["high"] == 0 for arm in arms for when in ("pre", "post")):
            axis.text(0.5, 0.5, "every arm: 0 successes,\nbefore and after RL", transform=axis.transAxes,
                      ha="center", va="center", fontsize=11, color="#555")
        axis.set_xticks(range(len(arms)), arms, rotation=35, ha="right", fontsize=7)
        axis.set(title=SHORT.get(split, split), xlabel="arm")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("success rate (95 % bootstrap interval)")
    axes[0][0].legend()
    figure.suptitle(f"success per arm and split; {figure_title(data)}" if data else "success per arm and split")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


# --- the report -----------------------------------------------------------------------------------
def write_lab_report(data: dict[str, Any], out: Path) -> dict[str, Path]:
    """``report.md`` with its PNGs; returns their paths."""
    out = Path(out)
    splits = data["runs"][0]["summary"]["after"].keys() if data["runs"] else []
    splits = [split for split in (ID, NEAR, FAR) if split in splits]
    table = verdict_table(data, splits)
    data["verdict_table"] = table
    paths = {"ladder": plot_ladder(data, out / "ladder.png"), "curves": plot_curves(data, out / "rl_curves.png"),
             "verdict": plot_verdict(table, splits, out / "verdict.png", data)}
    config = data["config"]
    timings = ", ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in data["timings_s"].items())
    matching = data["temperature_matching"]
    sections = [
        f"# Handoff lab: {data['env']}, pipeline seed {config['pipeline_seed']}",
        f"Preset {config['preset']}; SFT demos from {config['demo_tasks']} of the {config['rl_tasks']} games RL "
        f"plays ({len(data.get('seen_tasks', []))} distinct games in the demos); {config['eval_episodes']} evaluation "
        f"episodes per split and point; RL budget {json.dumps({k: v for k, v in config['rl'].items() if k != 'progress'})}. "
        f"Wall time: {timings}.",
        "## Verdict", *verdict(data, table),
        "## Verdict table",
        "Success rates with 95 % bootstrap intervals. Pre-RL: the arm's start, evaluated once. Post-RL: mean over "
        "seeds (bootstrap over seeds and episodes). The difference is paired by seed and episode.",
        arms_markdown(table, splits, data["arms"]),
        "![pre and post](verdict.png)",
        "## The SFT ladder",
        f"Measured on the policy's own samples on the RL pool (groups of G at T = 1), greedy play, and held-out "
        f"expert text. Over-SFT rule: the first mark past the moderate one ({data['moderate_mark']:g} epochs) with "
        f"on-policy entropy ≤ {data['rule']['max_entropy']:g} nats and ≥ {data['rule']['min_collapsed']:g} of "
        f"the groups collapsed (no signal, and no sample won or every sample alike); chosen: {data['over_mark']:g} epochs"
        f"{'' if data['over_rule_met'] else ' (rule not met by any mark: the last mark)'}.",
        ladder_markdown(data),
        "![ladder](ladder.png)",
        "## Arm starts",
        temperature_matching_line(matching),
        _starts_markdown(matching["starts"]),
        *resets_markdown(data, table),
        "## RL curves",
        "![curves](rl_curves.png)",
    ]
    markdown = out / "report.md"
    markdown.write_text("\n\n".join(sections) + "\n")
    return {"markdown": markdown, **paths}


RESET_ARMS = ("over-sft+fusion+reset", "over-sft+fusion+random-reset")


def resets_markdown(data: dict[str, Any], table: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """What each reset did: units by type and layer band, target tokens' entropy, the start's ID success.

    A reset that costs more than half of over-SFT's pre-RL ID success, or that moves neither the
    start's success nor the target tokens' entropy beyond fusion alone, is named in one line.
    """
    lines = []
    for arm in RESET_ARMS:
        summary_file = Path(data["arms"].get(arm, {}).get("start", "")) / "rejuvenation.json"
        if arm not in data["arms"] or not summary_file.is_file():
            continue
        summary = json.loads(summary_file.read_text())
        bands = summary.get("per_band", {})
        roles = [role for role in ROLES if role in summary.get("per_role", {})]
        lines.append(f"**{arm}** ({summary['criterion']}): {summary['units_reset']} of {summary['total_units']} units.")
        if bands and roles:
            lines.append("\n".join(["| layer band | " + " | ".join(roles) + " |", "|---|" + "---|" * len(roles),
                                     *(f"| {band} | " + " | ".join(str(counts.get(role, 0)) for role in roles) + " |"
                                       for band, counts in bands.items())]))
        entropy = summary.get("target_entropy", {})
        if entropy:
            lines.append("Target tokens' entropy (nats): " + ", ".join(f"{k} {v:.3f}" for k, v in entropy.items()) + ".")
        pre = {name: table[name][ID]["pre"]["mean"] for name in (arm, "over-sft", "over-sft+fusion")
               if name in table and ID in table[name]}
        if arm in pre and "over-sft" in pre:
            lines.append(f"Greedy ID success before RL: over-SFT {pre['over-sft']:.3f}, this start {pre[arm]:.3f}.")
            if pre[arm] < 0.5 * pre["over-sft"]:
                lines.append(f"**This reset costs more than half of the start's success** "
                             f"({pre['over-sft']:.3f} → {pre[arm]:.3f}).")
        fused = entropy.get("fused")
        if ("over-sft+fusion" in pre and arm in pre and pre[arm] == pre["over-sft+fusion"] and fused is not None
                and abs(entropy.get("rejuvenated", fused) - fused) < 0.01):
            lines.append("**This reset changed nothing measurable** beyond fusion alone (same ID success, target "
                         "entropy within 0.01 nats).")
    return (["### What the resets did", *lines] if lines else [])


def temperature_matching_line(matching: dict[str, Any]) -> str:
    """The matched-T control's measurement, or why there is none (the arm was not chosen: nothing was matched)."""
    if matching.get("target_entropy") is None:
        return "Temperature matching: not measured (the over-sft@matched-T arm is not among this run's arms)."
    return (f"Temperature matching: over-SFT reaches the rejuvenated start's on-policy entropy "
            f"{matching['target_entropy']:.3f} at T = {matching['temperature']:.2f} (tried: "
            + ", ".join(f"T {t:.2f} → {e:.3f}" for t, e in matching["tried"]) + ").")


def _starts_markdown(starts: dict[str, dict[str, float]]) -> str:
    lines = ["| start | sampled success | on-policy entropy | groups without signal | drift |", "|---|---|---|---|---|"]
    for name, row in starts.items():
        lines.append(f"| {name} | {row['sampled_success']:.3f} | {row['onpolicy_entropy']:.3f} | "
                     f"{row['zero_signal_groups']:.2f} | {row.get('drift', math.nan):.3f} |")
    return "\n".join(lines)


__all__ = ["verdict", "verdict_table", "write_lab_report"]
