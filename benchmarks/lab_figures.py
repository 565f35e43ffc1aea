"""Redraw the handoff lab's figures without rerunning the lab.

From a lab's output folder (``lab.json`` and its runs; every figure), or from a committed
``report.md`` (its verdict and ladder tables; ``verdict.png`` and ``ladder.png`` only, since the
per-step RL curves are not in the report):

    python benchmarks/lab_figures.py --lab lab/confirmatory-seed1          # ladder, curves, verdict
    python benchmarks/lab_figures.py --report docs/lab/report.md           # ladder, verdict (docs/lab/)

The figures are drawn by ``regym.lab.report`` (the code the lab itself runs), titled with the
env, preset, pipeline seed and the data's version (the commit that last wrote the report).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from regym.lab.report import (
    FAR,
    ID,
    LADDER_ROWS,
    NEAR,
    SHORT,
    plot_curves,
    plot_ladder,
    plot_verdict,
    verdict_table,
)

OLD_TITLES = {"on-policy λ_max": "onpolicy_hessian_max_abs_eigenvalue",
              "held-out λ_max": "heldout_hessian_max_abs_eigenvalue"}
"""Row titles of reports written before the Hessian eigenvalue was named for what it is."""
INTERVAL = re.compile(r"([+-]?[\d.]+) \[([+-]?[\d.]+), ([+-]?[\d.]+)\]")


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of the Markdown table whose header starts with ``first_cell``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_cell}"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return [rows[0], *rows[2:]]  # header, then the body (the |---| line dropped)


def data_version(path: Path) -> str:
    """The commit (short hash, date) that last wrote ``path``, or "uncommitted"."""
    path = path.resolve()
    done = subprocess.run(["git", "log", "-1", "--format=%h %ad", "--date=short", "--", path.name],
                          capture_output=True, text=True, cwd=path.parent)
    return f"data of commit {done.stdout.strip()}" if done.stdout.strip() else "uncommitted data"


def from_report(path: Path) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(lab data, verdict table, splits) rebuilt from a report's Markdown tables."""
    text = path.read_text(encoding="utf-8")
    heading = re.search(r"^# Handoff lab: (\S+), pipeline seed (\d+)", text, re.MULTILINE)
    preset = re.search(r"^Preset (\S+);", text, re.MULTILINE)
    header, *body = table_rows(text, "|")
    labels = [re.sub(r" \(.*\)$", "", cell) for cell in header[1:]]
    marks = [float(label[len("sft@"):-len("ep")]) for label in labels[1:]]
    moderate = next(float(re.search(r"@([\d.]+)ep", c)[1]) for c in header if "(moderate)" in c)
    over = next(float(re.search(r"@([\d.]+)ep", c)[1]) for c in header if "(over-SFT)" in c)
    keys = {title: key for key, title, _ in LADDER_ROWS} | OLD_TITLES
    diagnostics: dict[str, dict[str, float]] = {label: {} for label in labels}
    for title, *values in body:
        if title in keys:
            for label, value in zip(labels, values, strict=True):
                if value not in ("—", ""):
                    diagnostics[label][keys[title]] = float(value.rstrip("*"))
    names = {short: split for split, short in SHORT.items()}
    table: dict[str, dict[str, Any]] = {}
    for arm, _seeds, _temperature, split, pre, post, diff, gain in table_rows(text, "arm")[1:]:
        row = {}
        for name, cell in (("pre", pre), ("post", post), ("diff", diff), ("normalised_gain", gain)):
            if match := INTERVAL.fullmatch(cell):
                row[name] = {"mean": float(match[1]), "low": float(match[2]), "high": float(match[3])}
        table.setdefault(arm, {})[names[split]] = row
    splits = [split for split in (ID, NEAR, FAR) if any(split in rows for rows in table.values())]
    data = {"env": heading[1], "config": {"preset": preset[1] if preset else "?", "pipeline_seed": int(heading[2])},
            "regym_version": data_version(path), "marks": marks, "moderate_mark": moderate, "over_mark": over,
            "diagnostics": diagnostics}
    return data, table, splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--lab", type=Path, help="a lab's output folder (holding lab.json)")
    source.add_argument("--report", type=Path, help="a lab's report.md (ladder and verdict only)")
    parser.add_argument("--out", type=Path, help="where the PNGs go (default: beside the source)")
    args = parser.parse_args()
    if args.lab is not None:
        data = json.loads((args.lab / "lab.json").read_text(encoding="utf-8"))
        data.setdefault("regym_version", data_version(args.lab / "lab.json"))
        splits = [split for split in (ID, NEAR, FAR) if data["runs"] and split in data["runs"][0]["summary"]["after"]]
        table = verdict_table(data, splits)
        out = args.out or args.lab
        written = [plot_ladder(data, out / "ladder.png"), plot_curves(data, out / "rl_curves.png"),
                   plot_verdict(table, splits, out / "verdict.png", data)]
    else:
        data, table, splits = from_report(args.report)
        out = args.out or args.report.parent
        written = [plot_ladder(data, out / "ladder.png"), plot_verdict(table, splits, out / "verdict.png", data)]
    print("wrote " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
