"""The eval log on disk: a torn last line is dropped and replayed, any other bad line stops the run.

A writer killed mid-line leaves at most one torn line, at the end; a bad line anywhere
else means the file was damaged afterwards, and skipping it would silently replay (or
lose) episodes, so reading raises ``CorruptLogError`` naming the file and the line.
"""

from __future__ import annotations

import json
import re

import gymnasium as gym
import pytest

from games import EVAL_COUNT_ID, register_eval_count
from regym.eval.log import TrajectoryLog, read_log
from regym.eval.run_dir import TRAJECTORIES
from regym.eval.runner import evaluate
from regym.trajectory import CorruptLogError


def line(key: str, **fields) -> str:
    return json.dumps({"key": key, **fields}) + "\n"


@pytest.fixture
def count_game():
    register_eval_count()
    yield
    gym.registry.pop(EVAL_COUNT_ID, None)


def test_first_record_of_each_key_wins(tmp_path):
    path = tmp_path / TRAJECTORIES
    path.write_text(line("a", success=True) + line("b") + line("a", success=False))
    assert read_log(path) == [{"key": "a", "success": True}, {"key": "b"}]
    assert read_log(tmp_path / "missing.jsonl") == []


def test_a_torn_last_line_is_skipped_by_readers_and_cut_by_the_writer(tmp_path):
    path = tmp_path / TRAJECTORIES
    path.write_text(line("a") + line("b")[:6])  # killed mid-write
    before = path.read_bytes()
    assert [record["key"] for record in read_log(path)] == ["a"]
    assert path.read_bytes() == before  # reading alone changes nothing
    log = TrajectoryLog(path)
    log.append({"key": "b"})
    log.close()
    assert path.read_text() == line("a") + line("b")


def test_a_complete_last_record_without_its_newline_is_kept_and_the_next_starts_a_new_line(tmp_path):
    path = tmp_path / TRAJECTORIES
    path.write_text(line("a") + line("b").rstrip("\n"))  # killed between the record and its newline
    log = TrajectoryLog(path)
    assert set(log.records) == {"a", "b"}
    log.append({"key": "c"})
    log.close()
    assert [record["key"] for record in read_log(path)] == ["a", "b", "c"]


@pytest.mark.parametrize("bad", ['{"key": "b", "succ\n', "not json\n", "\xff\n"])
def test_a_corrupt_line_before_the_last_raises_naming_file_and_line(tmp_path, bad):
    path = tmp_path / TRAJECTORIES
    path.write_text(line("a") + bad + line("c"), encoding="latin-1" if bad == "\xff\n" else "utf-8")
    before = path.read_bytes()
    for read in (read_log, TrajectoryLog):
        with pytest.raises(CorruptLogError, match=re.escape(f"{path}, line 2: not JSON")):
            read(path)
    assert path.read_bytes() == before  # neither reader "repairs" a damaged middle


def test_json_that_is_not_an_episode_record_raises(tmp_path):
    path = tmp_path / TRAJECTORIES
    path.write_text(line("a") + json.dumps([1, 2]) + "\n")
    with pytest.raises(CorruptLogError, match="not an episode record"):
        read_log(path)


def test_evaluate_refuses_a_log_with_a_corrupt_middle_line(count_game, tmp_path):
    from test_eval_runner import count_plan, random_agent

    plan = count_plan(num_tasks=2, k=1)
    evaluate(tmp_path / "run", plan, random_agent())
    path = tmp_path / "run" / TRAJECTORIES
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([lines[0], lines[1][:30] + "\n", *lines[2:]]))
    before = path.read_bytes()
    with pytest.raises(CorruptLogError, match=r"line 2: not JSON"):
        evaluate(tmp_path / "run", plan, random_agent())
    assert path.read_bytes() == before


def test_rl_eval_reports_a_corrupt_log_in_one_line(count_game, tmp_path, capsys):
    from regym.cli.rl_eval import main

    argv = ["--agent", "random", "--suite", EVAL_COUNT_ID, "--num-tasks", "2", "--k", "1", "--no-baselines",
            "--output-dir", str(tmp_path / "runs")]
    assert main(argv) == 0
    path = tmp_path / "runs" / "random--regym-EvalCount-v0" / TRAJECTORIES
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([lines[0], "garbage\n", *lines[2:]]))
    capsys.readouterr()
    assert main(argv) == 1
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    last = [text for text in stderr.splitlines() if text.strip()][-1]
    assert last.startswith(f"rl-eval: error: {path}, line 2: not JSON")
