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
