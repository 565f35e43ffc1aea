"""The leaderboard merged from real runs, and its HTML page in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import gymnasium as gym
import pytest

from regym.cli.rl_eval import main as rl_eval
from regym.eval.leaderboard import build_leaderboard, find_runs, write_leaderboard

COUNT_ID = "regym/EvalCount-v0"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium is not installed (`make chromium` installs it where apt exists)"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Expert and random on both splits, plus a 'model' evaluated on ID and OOD in two runs."""
    from test_eval_runner import register_test_envs

    register_test_envs()
    root = tmp_path_factory.mktemp("board")
    runs_dir = root / "runs"
    common = ["--suite", "all", "--envs", COUNT_ID, "--num-tasks", "4", "--k", "2", "--runs-dir", str(runs_dir),
              "--out", str(root / "site")]
    assert rl_eval(["--agent", "expert", *common]) == 0
    assert rl_eval(["--agent", "random", *common]) == 0
    # A second "model": random agent under another name and seed, its ID and OOD in separate runs.
    for suite in (f"{COUNT_ID}-id", f"{COUNT_ID}-ood"):
        args = ["--agent", "random", "--model-name", "other<model>", "--seed", "3", "--suite", suite,
                "--num-tasks", "4", "--k", "2", "--runs-dir", str(runs_dir), "--out", str(root / "site")]
        assert rl_eval(args) == 0
    yield root
    gym.registry.pop(COUNT_ID, None)


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
    assert "| 1 | *expert* | 100.0 | 100.0 | 100.0 | 100.0 |" in markdown


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
            return page.eval_on_selector_all(
                "#leaderboard tbody tr", f"rows => rows.map(row => row.cells[{index}].textContent.trim())"
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
        link = page.locator("#leaderboard tbody tr td.runs a").first.get_attribute("href")
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


def test_write_leaderboard_from_nothing_is_an_empty_board(tmp_path):
    paths = write_leaderboard([], tmp_path)
    assert json.loads(paths["json"].read_text()) == {"columns": [], "rows": []}
    assert "<tbody>" in paths["html"].read_text()
