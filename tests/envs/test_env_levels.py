"""The shared level table: names, lookups and split maps every family's levels rely on."""

import pytest

from regym.envs.levels import Level, LevelTable
from regym.envs.math.levels import get_level


def _table() -> LevelTable:
    return LevelTable.of("Toy", (Level("easy.1", "one step"), Level("easy.2", "two steps"), Level("other.1", "x")),
                         {"in_distribution": ("easy.1",), "near_out_of_distribution": ("easy.2",),
                          "out_of_distribution": ("other.1",)})


def test_level_names_carry_kind_and_number():
    level = Level("composed_calls.2", "harder", {"distractors": 4})
    assert (level.kind, level.number) == ("composed_calls", 2)
    with pytest.raises(TypeError):
        level.settings["distractors"] = 1  # settings are read-only
    with pytest.raises(ValueError, match="<kind>.<n>"):
        Level("Composed", "no number")


def test_table_maps_splits_and_refuses_unknown_levels():
    table = _table()
    assert table.split_of("easy.2") == "near_out_of_distribution"
    assert table.descriptions()["easy.1"] == "one step"
    assert table.split_levels()["out_of_distribution"] == ("other.1",)
    with pytest.raises(ValueError, match="unknown Toy level 'hard.9'; known levels: easy.1, easy.2, other.1"):
        table.level("hard.9")
    with pytest.raises(ValueError, match="unknown levels"):
        LevelTable.of("Toy", (Level("easy.1", "x"),), {"in_distribution": ("missing.1",)})
    with pytest.raises(ValueError, match="repeat"):
        LevelTable.of("Toy", (Level("easy.1", "x"), Level("easy.1", "y")), {})


def test_math_lookup_reads_through_the_shared_reader_unchanged():
    assert get_level("chain_sum.2").family == "chain_sum"
    with pytest.raises(ValueError, match="unknown Math level 'chain_sum.99'; known levels: chain_sum.1"):
        get_level("chain_sum.99")
