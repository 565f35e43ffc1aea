"""The leaderboard as one static HTML page that works opened from disk.

Everything is inline (CSS, a little JavaScript for sorting, an SVG bar chart), no
CDN: the page is a file that can be mailed or attached to a report. The table and
the chart are rendered here in Python, so the page shows its numbers even with
scripts off; the script only sorts.
"""

from __future__ import annotations

import datetime as _datetime
import re
from html import escape
from importlib import resources
from typing import Any

ID_COLOUR, OOD_COLOUR = "#3b6fd8", "#e8833a"


def _template() -> str:
    return resources.files("regym.eval").joinpath("templates/leaderboard.html").read_text(encoding="utf-8")


def _sort_value(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _two_line(column: str) -> str:
    """``textworld/ood`` as the env name over a small split tag, so wide boards stay narrow."""
    env, _, split = column.rpartition("/")
    return f'{escape(env)}<br><span class="split">{escape(split)}</span>' if env else escape(column)


def _settings(row: dict[str, Any]) -> str:
    """The row's settings under its name (what differs from the suites' defaults), and a mark when no
    baseline was run under them."""
    parts = []
    if row.get("settings"):
        parts.append(f'<span class="settings">{escape(row["settings"])}</span>')
    if not row.get("has_baselines", True):
        parts.append('<span class="settings unmatched" title="no random or expert run under these settings">'
                     "no baseline under these settings</span>")
    return "".join(parts)


def _run_links(row: dict[str, Any]) -> str:
    """Links to the row's runs' trajectories, under the model's name: a column of their own would push the
    env columns of a full suite past a 1,280-pixel screen."""
    return "".join(
        f'<a href="{escape(run["trajectories"])}" title="trajectories of run {escape(run["name"])}">'
        f'{escape(_breakable(run["name"]))}</a>' + ("" if run["complete"] else " (partial)")
        for run in row["runs"])


def _breakable(name: str) -> str:
    """A run name that may wrap after its separators (``model--suite``), so the column stays narrow."""
    return re.sub(r"(--|/|_)", "\\1\u200b", name)


def table_html(board: dict[str, Any]) -> str:
    columns = board["columns"]
    head = ['<th data-column="rank">rank</th>', '<th class="model" data-column="model">model</th>',
            '<th data-column="id_average">ID avg</th>', '<th data-column="ood_average">OOD avg</th>']
    head += [f'<th data-column="{escape(column)}">{_two_line(column)}</th>' for column in columns]
    body = []
    for row in board["rows"]:
        cells = [
            f'<td data-sort="{row["rank"]}">{row["rank"]}</td>',
            f'<td class="model" data-sort="{escape(row["model"])}">{escape(row["model"])}{_settings(row)}'
            f'<span class="runs">{_run_links(row)}</span></td>',
            f'<td data-sort="{_sort_value(row["id_average"])}">{_percent(row["id_average"])}</td>',
            f'<td data-sort="{_sort_value(row["ood_average"])}">{_percent(row["ood_average"])}</td>',
        ]
        for column in columns:
            cell = row["cells"].get(column)
            if cell is None:
                cells.append('<td class="missing" data-sort="">—</td>')
                continue
            title = (f"pass@1 {cell['pass_at_1']:.3f}, pass@{cell['k']} {cell['pass_at_k']:.3f}, "
                     f"{cell['episodes']} episodes, run {cell['run']}")
            cells.append(
                f'<td data-sort="{_sort_value(cell["success_rate"])}" title="{escape(title)}">'
                f'{_percent(cell["success_rate"])}'
                f'<span class="ci">[{_percent(cell["ci_low"])}, {_percent(cell["ci_high"])}]</span></td>'
            )
        css = ' class="baseline"' if row["baseline"] else ""
        body.append(f'<tr{css} data-model="{escape(row["model"])}">' + "".join(cells) + "</tr>")
    return (
        '<table id="leaderboard">\n<thead><tr>' + "".join(head) + "</tr></thead>\n<tbody>\n"
        + "\n".join(body) + "\n</tbody>\n</table>"
    )


def chart_svg(board: dict[str, Any]) -> str:
    """Grouped horizontal bars: ID and OOD average per model, on a 0–100 % axis."""
    rows = board["rows"]
    label_width, plot_width, bar, gap = 220, 420, 12, 14
    group = 2 * bar + gap
    height = 30 + group * max(len(rows), 1)
    parts = [f'<svg id="id-ood-chart" xmlns="http://www.w3.org/2000/svg" width="{label_width + plot_width + 60}" '
             f'height="{height}" role="img" aria-label="ID vs OOD success per model">']
    for tick in range(0, 101, 25):
        x = label_width + plot_width * tick / 100
        parts.append(f'<line x1="{x}" y1="0" x2="{x}" y2="{height - 20}" stroke="#e3e3ea"/>')
        parts.append(f'<text x="{x}" y="{height - 6}" text-anchor="middle" fill="#777">{tick}%</text>')
    for index, row in enumerate(rows):
        top = 4 + index * group
        parts.append(f'<text x="{label_width - 8}" y="{top + bar + 4}" text-anchor="end">{escape(row["model"])}</text>')
        for offset, (name, colour) in enumerate((("id_average", ID_COLOUR), ("ood_average", OOD_COLOUR))):
            value = row[name]
            y = top + offset * bar
            width = 0 if value is None else plot_width * value
            label = "n/a" if value is None else f"{100 * value:.1f}%"
            parts.append(f'<rect class="bar {name}" data-model="{escape(row["model"])}" x="{label_width}" y="{y}" '
                         f'width="{width:.1f}" height="{bar - 2}" fill="{colour}"><title>{escape(row["model"])} '
                         f'{name.split("_")[0].upper()}: {label}</title></rect>')
            parts.append(f'<text x="{label_width + width + 4:.1f}" y="{y + bar - 3}" fill="#444" '
                         f'font-size="10">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def leaderboard_html(board: dict[str, Any], generated: str | None = None) -> str:
    """The whole page for a board built by ``regym.eval.leaderboard.build_leaderboard``."""
    generated = generated or _datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = {"GENERATED": escape(generated), "TABLE": table_html(board), "CHART": chart_svg(board)}
    return re.sub(r"__(GENERATED|TABLE|CHART)__", lambda match: parts[match.group(1)], _template())
