"""``EnvSpec``: one value says which env split to make, with which options, and where its copies run."""

from __future__ import annotations

import dataclasses

import pytest

from regym.envs.spec import EnvSpec

MATH = "regym/Math-v0"


def test_make_gives_count_copies_of_the_split_with_the_options():
    envs = EnvSpec(MATH, "in_distribution", {"max_turns": 3}).make(2)
    try:
        assert len(envs) == 2 and len({id(env) for env in envs}) == 2
        assert all(env.unwrapped.split == "in_distribution" and env.unwrapped.max_turns == 3 for env in envs)
    finally:
        for env in envs:
            env.close()


def test_a_spec_is_a_value_that_does_not_follow_the_callers_dict():
    options = {"max_turns": 3}
    spec = EnvSpec(MATH, kwargs=options)
    options["max_turns"] = 9
    assert spec.kwargs == {"max_turns": 3}
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.split = "out_of_distribution"


def test_variants_add_options_and_a_task_pool_only_where_the_env_has_one():
    spec = EnvSpec("regym/TextWorld-v0", kwargs={"max_turns": 3})
    assert spec.with_options(max_turns=None, dense_reward=True).kwargs == {"max_turns": 3, "dense_reward": True}
    assert spec.on_task_pool(16).kwargs == {"max_turns": 3, "num_tasks": 16}
    assert spec.on_task_pool(None) == spec
    assert EnvSpec(MATH).on_task_pool(16) == EnvSpec(MATH)  # Math has no num_tasks option


def test_bad_specs_are_refused_with_what_to_change():
    with pytest.raises(ValueError, match="the split is EnvSpec.split"):
        EnvSpec(MATH, kwargs={"split": "in_distribution"})
    with pytest.raises(ValueError, match="workers must be >= 0"):
        EnvSpec(MATH, workers=-1)
