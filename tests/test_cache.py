"""regym.cache: what is reused is what was asked for, and files are whole or absent."""

import json

import pytest

from regym.cache import SettingsMismatch, read_stamp, reusable, write_json, write_stamp


def test_a_stamp_is_reused_only_with_equal_settings(tmp_path):
    stamp = tmp_path / "made.json"
    assert not reusable(stamp, {"alpha": 0.5})  # nothing there: build
    write_stamp(stamp, {"alpha": 0.5, "envs": ("a", "b")}, result={"score": 1})
    assert reusable(stamp, {"alpha": 0.5, "envs": ["a", "b"]})  # compared as JSON reads them back
    assert read_stamp(stamp)["result"] == {"score": 1}
    with pytest.raises(SettingsMismatch, match=r"other settings \(alpha\): use another folder"):
        reusable(stamp, {"alpha": 0.7, "envs": ["a", "b"]}, fix="use another folder")
    assert not reusable(stamp, {"alpha": 0.7, "envs": ["a", "b"]}, rebuild=True)


def test_an_unreadable_stamp_is_refused_or_rebuilt(tmp_path):
    stamp = tmp_path / "made.json"
    stamp.write_text('{"settings": ')
    with pytest.raises(SettingsMismatch, match="unreadable"):
        reusable(stamp, {})
    assert not reusable(stamp, {}, rebuild=True)
    stamp.write_text('{"result": 1}')
    with pytest.raises(SettingsMismatch, match="records no settings"):
        reusable(stamp, {})


def test_write_json_leaves_no_scratch_file(tmp_path):
    path = write_json(tmp_path / "deep" / "out.json", {"path": tmp_path})
    assert json.loads(path.read_text()) == {"path": str(tmp_path)}
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]
