"""TextWorld's near out-of-distribution split: ID-sized games from a held-out seed namespace."""

import gymnasium as gym
import pytest

import regym  # noqa: F401  (registers the env ids)
from regym.envs import ENTRY_POINTS, list_envs, normalize_split
from regym.envs.textworld import SPLIT_SPECS, TextWorldEnv, game_settings
from regym.eval.suites import column_name, get_suite, suite_entries

NEAR = "near_out_of_distribution"
ID_SPEC = SPLIT_SPECS["in_distribution"]


@pytest.fixture(scope="module")
def near_env():
    environment = gym.make("regym/TextWorld-v0", split="near", num_tasks=2)
    yield environment
    environment.close()


@pytest.mark.parametrize("name", ["near", "near_ood", "NEAR", NEAR])
def test_aliases_normalise_to_the_canonical_split(name):
    assert normalize_split(name) == NEAR


def test_families_without_the_split_refuse_it():
    splits = {listing.env_id: listing.splits for listing in list_envs()}
    assert splits["regym/TextWorld-v0"] == ("in_distribution", NEAR, "out_of_distribution")
    assert NEAR in splits["regym/ToolUse-v0"] and NEAR in splits["regym/WebShop-v0"]  # issue 30's levels
    for env_id in ENTRY_POINTS:
        if NEAR not in splits[env_id]:
            with pytest.raises(ValueError, match="has splits"):
                gym.make(env_id, split="near")


def test_near_games_have_id_sizes_but_not_the_id_games():
    pairs = [(game_settings(NEAR, index, {}), game_settings("in_distribution", index, {})) for index in range(50)]
    for near, in_distribution in pairs:
        assert ID_SPEC.rooms[0] <= near.rooms <= ID_SPEC.rooms[1]
        assert ID_SPEC.objects[0] <= near.objects <= ID_SPEC.objects[1]
        assert ID_SPEC.quest_length[0] <= near.quest_length <= ID_SPEC.quest_length[1]
        assert near.theme == in_distribution.theme
        assert near.seed != in_distribution.seed and near.key() != in_distribution.key()
    sizes = [[(game.rooms, game.objects, game.quest_length) for game in pair] for pair in pairs]
    assert any(near != in_distribution for near, in_distribution in sizes)  # drawn from the near seed, not copied


def test_no_default_near_game_shares_a_seed_with_an_id_game():
    pool = TextWorldEnv().num_tasks
    id_seeds = {game_settings("in_distribution", index, {}).seed for index in range(pool)}
    assert not id_seeds & {game_settings(NEAR, index, {}).seed for index in range(pool)}


def test_suite_and_column_names_read_near():
    assert get_suite("textworld-near").splits == (NEAR,)
    [entry] = suite_entries("textworld-near", num_tasks=2)
    assert entry.split == NEAR and entry.column == column_name("regym/TextWorld-v0", NEAR) == "textworld/near"
    with pytest.raises(ValueError, match="no 'near_out_of_distribution' split"):
        suite_entries("math-near")


def test_seeded_reset_plays_a_near_game_from_the_pool(near_env):
    observation, info = near_env.reset(seed=0)
    assert info["task_id"] in {"tw-near-00000", "tw-near-00001"} and info["split"] == NEAR
    assert info["objective"] in observation and info["expert_action"] in info["admissible_actions"]
    game_file = near_env.unwrapped.game_file(info["task_id"])
    assert game_file.parent.name == NEAR  # compiled games are cached per split


def test_named_near_task_plays_to_a_win(near_env):
    _, info = near_env.reset(options={"task_id": "tw-near-00001"})
    assert info["task_id"] == "tw-near-00001"
    for _ in range(10):
        _, _, terminated, truncated, info = near_env.step(info["expert_action"])
        if terminated or truncated:
            break
    assert info["won"] and terminated


def test_malformed_near_task_id_is_refused(near_env):
    for task_id in ("tw-nearly-00001", "tw-near-", "tw-near_ood-00001"):
        with pytest.raises(ValueError, match="TextWorld task id"):
            near_env.reset(options={"task_id": task_id})
