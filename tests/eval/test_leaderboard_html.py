"""The leaderboard merged from real runs, and its HTML page in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import gymnasium as gym
import pytest

from games import EVAL_COUNT_ID, register_eval_count
from regym.cli.rl_eval import main as rl_eval
from regym.eval.html import leaderboard_html
from regym.eval.leaderboard import build_leaderboard, find_runs, leaderboard_markdown, write_leaderboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium is not installed (`make chromium` installs it where apt exists)"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Expert and random on both splits, plus a 'model' evaluated on ID and OOD in two runs."""
    register_eval_count()
    root = tmp_path_factory.mktemp("board")
    runs_dir = root / "runs"
    common = ["--suite", "all", "--envs", EVAL_COUNT_ID, "--num-tasks", "4", "--k", "2", "--output-dir", str(runs_dir),
              "--leaderboard-dir", str(root / "site")]
    assert rl_eval(["--agent", "expert", *common]) == 0
    assert rl_eval(["--agent", "random", *common]) == 0
    # A second "model": random agent under another name and seed, its ID and OOD in separate runs.
    for suite in (f"{EVAL_COUNT_ID}-id", f"{EVAL_COUNT_ID}-ood"):
        args = ["--agent", "random", "--model-name", "other<model>", "--seed", "3", "--suite", suite,
                "--num-tasks", "4", "--k", "2", "--output-dir", str(runs_dir), "--leaderboard-dir", str(root / "site")]
        assert rl_eval(args) == 0
    yield root
    gym.registry.pop(EVAL_COUNT_ID, None)


def test_runs_merge_into_ranked_rows(runs):
    board = json.loads((runs / "site" / "leaderboard.json").read_text())
    assert board["columns"] == ["evalcount/id", "evalcount/ood"]
    models = [row["model"] for row in board["rows"]]
    assert models[0] == "expert" and set(models) == {"expert", "random", "other<model>"}
    expert, *others = board["rows"]
    assert expert["rank"] == 1 and expert["id_average"] == expert["ood_average"] == 1.0
    for row in others:
        assert row["score"] < expert["score"] and row["rank"] > 1
        assert set(row["cells"]) == {"evalcount/id", "evalcount/ood"}
    other = next(row for row in board["rows"] if row["model"] == "other<model>")
    assert len(other["runs"]) == 2 and not other["baseline"] and expert["baseline"]
    for row in board["rows"]:
        for run in row["runs"]:
            assert (runs / "site" / run["trajectories"]).is_file()  # links are relative to the page
    markdown = (runs / "site" / "leaderboard.md").read_text()
    assert "| 1 | *expert* [tasks=4@1000000] | 100.0 | 100.0 | 100.0 | 100.0 |" in markdown


def test_more_episodes_win_a_cell_and_scores_rank_with_ties(runs, tmp_path):
    run_dirs = find_runs(runs / "runs")
    board = build_leaderboard(run_dirs + run_dirs, tmp_path)
    assert [row["rank"] for row in board["rows"]][0] == 1
    assert len(board["rows"]) == 3
    twin = tmp_path / "runs" / "expert-copy"
    shutil.copytree(runs / "runs" / "expert--all", twin)
    metrics = json.loads((twin / "metrics.json").read_text())
    metrics["model"] = "expert-copy"
    (twin / "metrics.json").write_text(json.dumps(metrics))
    board = build_leaderboard([*run_dirs, twin], tmp_path)
    assert [row["rank"] for row in board["rows"]][:2] == [1, 1]  # equal scores share a rank


def test_rows_under_other_settings_are_other_rows_compared_with_their_own_baselines(runs, tmp_path):
    """A model played for 2 turns is not merged with, nor ranked as comparable to, baselines played to the end."""
    runs_dir = tmp_path / "runs"
    shutil.copytree(runs / "runs", runs_dir)
    short = ["--suite", f"{EVAL_COUNT_ID}-id", "--num-tasks", "4", "--k", "2", "--output-dir", str(runs_dir),
             "--max-turns", "2"]
    assert rl_eval(["--agent", "random", "--model-name", "short<model>", "--seed", "5", *short]) == 0
    board = build_leaderboard(find_runs(runs_dir), tmp_path)
    (row,) = [row for row in board["rows"] if row["model"] == "short<model>"]
    assert row["settings"].startswith("max_turns=2") and not row["has_baselines"]
    assert {(r["model"], r["settings"]) for r in board["rows"] if r["baseline"]} == \
        {("expert", "tasks=4@1000000"), ("random", "tasks=4@1000000")}
    markdown = (runs_dir.parent / "board.md")
    markdown.write_text(leaderboard_markdown(board))
    assert "short<model> [max_turns=2, tasks=4@1000000] †" in markdown.read_text()

    for agent in ("random", "expert"):  # the baselines under the same settings: their own folders and rows
        assert rl_eval(["--agent", agent, *short]) == 0
    assert (runs_dir / "random--all").is_dir() and len(find_runs(runs_dir)) == 7
    board = build_leaderboard(find_runs(runs_dir), tmp_path)
    (row,) = [row for row in board["rows"] if row["model"] == "short<model>"]
    assert row["has_baselines"]
    randoms = {r["settings"]: r for r in board["rows"] if r["model"] == "random"}
    assert set(randoms) == {"tasks=4@1000000", "max_turns=2, tasks=4@1000000"}
    for settings, random_row in randoms.items():  # cells never mix runs of other settings
        assert all(("turns2" in cell["run"]) == settings.startswith("max_turns") for cell in random_row["cells"].values())
    html = leaderboard_html(board)
    assert html.count("no baseline under these settings") == 0 and "max_turns=2, tasks=4@1000000" in html


def test_html_is_self_contained_and_escapes_names(runs):
    html = (runs / "site" / "leaderboard.html").read_text()
    assert "other&lt;model&gt;" in html and "other<model>" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    assert html.count('<tr class="baseline"') == 2 and '<svg id="id-ood-chart"' in html


def _open_page(path: Path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    manager = playwright.sync_playwright().start()
    browser = manager.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page()
    page.goto(path.resolve().as_uri())
    return manager, browser, page


@needs_chromium
def test_page_renders_and_sorts_in_headless_chromium(runs):
    manager, browser, page = _open_page(runs / "site" / "leaderboard.html")
    try:
        def column(index):
            text = "getAttribute('data-sort')" if index == 1 else "textContent.trim()"  # the name, not its links
            return page.eval_on_selector_all(
                "#leaderboard tbody tr", f"rows => rows.map(row => row.cells[{index}].{text})"
            )

        assert page.locator("#leaderboard tbody tr").count() == 3
        assert column(1)[0] == "expert" and page.locator("#id-ood-chart rect.bar").count() == 6
        headers = page.locator("#leaderboard thead th")
        headers.nth(1).click()  # model: first click sorts descending
        assert column(1) == sorted(column(1), reverse=True)
        headers.nth(1).click()
        assert column(1) == ["expert", "other<model>", "random"]
        headers.nth(3).click()  # OOD average, descending: the expert first
        ood = [float(value) for value in column(3)]
        assert ood == sorted(ood, reverse=True) and column(1)[0] == "expert"
        headers.nth(3).click()
        assert column(1)[-1] == "expert"
        link = page.locator("#leaderboard tbody tr td.model a").first.get_attribute("href")
        assert link.endswith("trajectories.jsonl") and not link.startswith("/")
    finally:
        browser.close()
        manager.stop()


@needs_chromium
def test_chromium_screenshot_and_dom_show_the_table(runs, tmp_path):
    page = (runs / "site" / "leaderboard.html").resolve().as_uri()
    flags = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<tr") == 4 and "th class=\"sorted-" not in dom and "other&lt;model&gt;" in dom
    shot = tmp_path / "leaderboard.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,800", page], capture_output=True,
                   timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 800)
    assert len(data) > 20_000  # a blank page compresses to a few kB


def _full_board() -> dict:
    """A board as wide as regym's suites make one: every env and split, long names, a row with settings."""
    columns = ["alfworld/id", "alfworld/ood", "alfworld/valid_unseen", "math/id", "math/ood", "textworld/id",
               "textworld/ood", "textworld/near", "tooluse/id", "tooluse/ood", "webshop/id", "webshop/ood"]
    cell = {"success_rate": 1.0, "ci_low": 0.6576, "ci_high": 1.0, "pass_at_1": 1.0, "pass_at_k": 1.0, "k": 8,
            "episodes": 64, "split": "in_distribution", "run": "r"}
    rows = [{"model": name, "settings": settings, "has_baselines": not settings, "baseline": name in ("expert", "random"),
             "rank": rank, "score": 1.0, "id_average": 1.0, "ood_average": 0.6576,
             "cells": {column: dict(cell) for column in columns},
             "runs": [{"name": f"{name}--agentic-id", "trajectories": "runs/x/trajectories.jsonl", "complete": True},
                      {"name": f"{name}--agentic-ood", "trajectories": "runs/y/trajectories.jsonl", "complete": False}]}
            for rank, (name, settings) in enumerate([("expert", ""), ("Qwen2.5-7B-Instruct-rejuvenated-alpha0.5-rho0.01",
                                                                      "max_turns=4, tasks=64@10000"), ("random", "")], 1)]
    return {"columns": columns, "rows": rows}


@needs_chromium
def test_a_full_board_fits_a_1280_pixel_screen(tmp_path):
    """No column is clipped or scrolled off: the page is no wider than the window."""
    page_path = tmp_path / "leaderboard.html"
    page_path.write_text(leaderboard_html(_full_board()))
    manager, browser, page = _open_page(page_path)
    try:
        page.set_viewport_size({"width": 1280, "height": 800})
        page.reload()
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        right = page.evaluate("document.getElementById('leaderboard').getBoundingClientRect().right")
        assert right <= 1280 and page.locator("#leaderboard thead th").count() == 4 + 12
        assert page.locator("td.model a").count() == 6 and "no baseline under these settings" in page.content()
    finally:
        browser.close()
        manager.stop()


def test_write_leaderboard_from_nothing_is_an_empty_board(tmp_path):
    paths = write_leaderboard([], tmp_path)
    assert json.loads(paths["json"].read_text()) == {"columns": [], "rows": []}
    assert "<tbody>" in paths["html"].read_text()
