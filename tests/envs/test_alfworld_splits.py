"""ALFWorld's split names: one name, one thing.

``valid_unseen`` is ALFWorld's own unseen split (its four rooms; its games when downloaded) and the
family's near-OOD; ``held_out_rooms`` the 28 generated rooms, its far-OOD; the old
``out_of_distribution``/``ood``, which meant the one with real data and the other without, still
plays what it played, with a DeprecationWarning.
"""

from __future__ import annotations

import pytest

import regym  # noqa: F401  (registers the env ids)
from regym.envs.alfworld import ALFWorldEnv, tasks
from regym.eval.suites import SUITES, suite_entries

ALFWORLD = "regym/ALFWorld-v0"


@pytest.fixture(scope="module")
def real_data(tmp_path_factory):
    """A downloaded-layout folder: valid_seen and valid_unseen games of two task types each."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REGYM_CACHE", str(tmp_path_factory.mktemp("regym-cache")))
        patch.delenv("ALFWORLD_DATA", raising=False)
        root = tmp_path_factory.mktemp("alfworld-data")
        folders = [tasks.generate_task("out_of_distribution", index) for index in range(2)]  # simple, look_at
        tasks.export_real_layout(folders, root, "valid_seen")
        tasks.export_real_layout(folders, root, "valid_unseen")
        yield root


def test_each_split_name_plays_one_room_set_whatever_the_data(real_data):
    generated = {split: ALFWorldEnv(split=split, expert=False) for split in ("valid_unseen", "held_out_rooms")}
    real = {split: ALFWorldEnv(split=split, data_path=real_data, expert=False)
            for split in ("valid_unseen", "held_out_rooms")}
    assert real["valid_unseen"].source == "real" and generated["valid_unseen"].source == "generated"
    assert real["held_out_rooms"].source == generated["held_out_rooms"].source == "generated"
    assert real["held_out_rooms"].reset(seed=3)[1]["task_id"] == generated["held_out_rooms"].reset(seed=3)[1]["task_id"]
    assert ALFWorldEnv(split="near_out_of_distribution", expert=False).split == "valid_unseen"
    with pytest.raises(ValueError, match="held_out_rooms are generated"):
        ALFWorldEnv(split="held_out_rooms", data_path=real_data, source="real")


def test_the_old_ood_name_still_plays_what_it_played_with_a_deprecation_warning(real_data):
    with pytest.deprecated_call(match="plays 'held_out_rooms'"):
        generated = ALFWorldEnv(split="ood", expert=False)
    with pytest.deprecated_call(match="plays 'valid_unseen'"):
        real = ALFWorldEnv(split="out_of_distribution", data_path=real_data, expert=False)
    assert generated.split == "held_out_rooms" and real.split == "valid_unseen"
    assert generated.reset(seed=0)[1]["task_id"].startswith("alfworld-gen-ood-")  # the same games as before
    assert real.reset(seed=0)[1]["task_source"] == "real"


def test_suites_name_the_alfworld_split_they_play():
    assert [(e.split, e.column) for e in suite_entries("alfworld")] == [
        ("in_distribution", "alfworld/id"), ("held_out_rooms", "alfworld/held_out_rooms")]
    assert [e.split for e in suite_entries("alfworld-near")] == ["valid_unseen"]
    assert [e.split for e in suite_entries("alfworld-ood")] == ["held_out_rooms"]
    assert {e.split for e in suite_entries("agentic-ood", envs=["alfworld", "textworld"])} == {
        "held_out_rooms", "out_of_distribution"}
    assert "held_out_rooms" in SUITES["agentic-ood"].description


def test_task_types_filter_alfworlds_own_games(real_data):
    look_at = ALFWorldEnv(split="valid_unseen", data_path=real_data, task_types=["look_at_obj_in_light"])
    (game,) = look_at.task_ids
    assert "look_at_obj_in_light" in game and look_at.reset(seed=0)[1]["task_type"] == "look_at_obj_in_light"
    assert len(ALFWorldEnv(split="valid_unseen", data_path=real_data).task_ids) == 2
    with pytest.raises(FileNotFoundError, match="of types"):
        ALFWorldEnv(split="valid_unseen", data_path=real_data, task_types=["pick_two_obj_and_place"]).reset(seed=0)


def test_levels_are_the_room_sets_mapped_to_id_near_and_far_and_listed_by_regym_envs(real_data):
    from regym.envs import list_envs

    (listing,) = [listing for listing in list_envs() if listing.env_id == ALFWORLD]
    assert dict(listing.level_splits) == {"in_distribution": ("seen_rooms.1",),
                                          "near_out_of_distribution": ("unseen_rooms.1",),
                                          "out_of_distribution": ("unseen_rooms.2",)}
    levels = dict(listing.levels)
    assert "valid_unseen" in levels["unseen_rooms.1"] and "28 rooms" in levels["unseen_rooms.2"]
    for split, level in (("in_distribution", "seen_rooms.1"), ("valid_unseen", "unseen_rooms.1"),
                         ("held_out_rooms", "unseen_rooms.2")):
        env = ALFWorldEnv(split=split, expert=False, num_tasks=1)
        _, info = env.reset(seed=0)
        assert info["task_level"] == level
        floor_plan = int(info["floor_plan"].removeprefix("FloorPlan"))
        pool = {"in_distribution": "in_distribution", "valid_unseen": "valid_unseen"}.get(split, "out_of_distribution")
        assert floor_plan in tasks.FLOOR_PLANS[pool]
