"""The one JSONL reader: a torn last line is a crash artefact, any other bad line is damage."""

from __future__ import annotations

import json

import pytest

from regym.trajectory import CorruptLogError, Trajectory, load_jsonl, read_jsonl, save_jsonl


def trajectory(seed: int) -> Trajectory:
    episode = Trajectory(env_id="regym/Test-v0", task_id="t", split="train", seed=seed, observation="start")
    episode.record("go north", "end", 1.0, True, False, {"won": True})
    return episode


def test_round_trip(tmp_path):
    path = save_jsonl([trajectory(0), trajectory(1)], tmp_path / "log.jsonl")
    loaded = load_jsonl(path)
    assert [t.seed for t in loaded] == [0, 1] and loaded[0].turns[0].action == "go north"
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_torn_last_line_is_skipped_and_repaired(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n" + json.dumps({"b": 2}) + "\n" + '{"c": 3, "d"')
    assert read_jsonl(path) == [{"a": 1}, {"b": 2}]
    assert path.read_text().endswith('"d"')  # reading alone changes nothing
    assert read_jsonl(path, repair=True) == [{"a": 1}, {"b": 2}]
    with path.open("a") as handle:
        handle.write(json.dumps({"e": 5}) + "\n")
    assert read_jsonl(path) == [{"a": 1}, {"b": 2}, {"e": 5}]


def test_a_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n" + json.dumps({"b": 2}))
    assert read_jsonl(path) == [{"a": 1}, {"b": 2}]
    assert read_jsonl(path, repair=True) == [{"a": 1}, {"b": 2}]
    with path.open("a") as handle:
        handle.write(json.dumps({"c": 3}) + "\n")
    assert read_jsonl(path) == [{"a": 1}, {"b": 2}, {"c": 3}]


@pytest.mark.parametrize("damage", ['{"broken": ', "not json at all", "\xff\xfe"])
def test_a_bad_line_before_the_end_raises_naming_file_and_line(tmp_path, damage):
    path = tmp_path / "log.jsonl"
    path.write_bytes((json.dumps({"a": 1}) + "\n").encode() + damage.encode("latin-1") + b"\n"
                     + (json.dumps({"b": 2}) + "\n").encode())
    with pytest.raises(CorruptLogError, match=r"log\.jsonl, line 2"):
        read_jsonl(path)


def test_numbered_lines_and_a_strict_tail_for_files_people_write(tmp_path):
    """Calibration files are written by people: line numbers name bad records and a bad last line is an error."""
    path = tmp_path / "calib.jsonl"
    path.write_text('{"a": 1}\n\n{"b": 2}\n{"c": ')
    assert read_jsonl(path, numbered=True) == [(1, {"a": 1}), (3, {"b": 2})]
    with pytest.raises(CorruptLogError, match=r"calib\.jsonl, line 4"):
        read_jsonl(path, torn_tail=False)


def test_lab_curves_skip_a_torn_last_line(tmp_path):
    """A run killed mid-write leaves a torn metrics line; the lab report still draws the steps before it."""
    from regym.lab.report import _per_step

    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "success_rate": 0.5}\n{"step": 1, "succ')
    assert _per_step([{"folder": str(tmp_path), "arm": "sft"}], "success_rate") == {"sft": {0: [0.5]}}
