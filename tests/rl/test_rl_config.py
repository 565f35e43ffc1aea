"""rl-train's config: each env family's RL defaults apply unless a preset, a file or a flag sets the field."""

import gymnasium as gym
import pytest
import yaml

from regym.cli import rl_train
from regym.configs import parse_overrides
from regym.envs import ENTRY_POINTS
from regym.envs.base import TextEnv
from regym.rl.config import ENV_DEFAULT_FIELDS, PRESETS, RLConfig, load_config, resolve_config

ALFWORLD = {"max_turns": 30, "max_new_tokens": 16, "max_episode_tokens": 1024, "context": "window",
            "history_turns": 2}


def shape(config: RLConfig) -> dict:
    return {name: getattr(config, name) for name in ENV_DEFAULT_FIELDS}


def test_alfworld_gets_its_own_episode_shape_and_the_sources_say_so():
    config, sources = resolve_config(None, {"env": "alfworld"})
    assert shape(config) == ALFWORLD
    assert {name: sources[name] for name in ENV_DEFAULT_FIELDS} == dict.fromkeys(ENV_DEFAULT_FIELDS, "env")
    assert sources["env"] == "flag" and sources["learning_rate"] == "default"
    assert load_config(None, {"env": "alfworld"}) == config


def test_a_flag_a_file_and_a_preset_each_win_over_the_env_defaults(tmp_path):
    flagged, sources = resolve_config(None, {"env": "alfworld", "max_turns": 12, "context": None})
    assert shape(flagged) == {**ALFWORLD, "max_turns": 12} and sources["max_turns"] == "flag"
    assert sources["context"] == "env"  # None: a flag not given

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"env": "alfworld", "history_turns": 4, "max_turns": 20}))
    filed, sources = resolve_config(path, {"max_turns": 8})
    assert (filed.history_turns, filed.max_turns, filed.context) == (4, 8, "window")
    assert (sources["history_turns"], sources["max_turns"], sources["env"]) == ("file", "flag", "file")

    preset, sources = resolve_config(None, {"env": "alfworld", "preset": "smollm2"})
    assert (preset.max_new_tokens, preset.max_episode_tokens) == (PRESETS["smollm2"]["max_new_tokens"],
                                                                   PRESETS["smollm2"]["max_episode_tokens"])
    assert (preset.max_turns, preset.context) == (30, "window")
    assert (sources["max_new_tokens"], sources["max_turns"]) == ("preset", "env")


def test_textworld_resolves_to_todays_config():
    """The recorded TextWorld pipeline and RL numbers were measured with these values."""
    config, sources = resolve_config(None, {"env": "textworld"})
    assert config == RLConfig() == load_config(None, {})
    assert shape(config) == {"max_turns": 6, "max_new_tokens": 16, "max_episode_tokens": 1024, "context": "full",
                             "history_turns": 2}


def test_every_env_family_declares_a_valid_shape():
    for env_id in ENTRY_POINTS:
        config, sources = resolve_config(None, {"env": env_id})
        assert {sources[name] for name in ("max_turns", "max_new_tokens", "max_episode_tokens", "context")} \
            == {"env"}, env_id
        assert config.max_new_tokens < config.max_episode_tokens


class Overreaching(TextEnv):
    rl_defaults = {"max_turns": 3, "learning_rate": 1.0}


def test_an_env_may_set_only_the_episode_shape():
    if "regym-test/Overreaching-v0" not in gym.registry:
        gym.register(id="regym-test/Overreaching-v0", entry_point=Overreaching)
    with pytest.raises(ValueError, match=r"rl_defaults sets \['learning_rate'\]"):
        load_config(None, {"env": "regym-test/Overreaching-v0"})
    with pytest.raises(ValueError, match="context must be one of"):
        load_config(None, {"context": "summary"})
    with pytest.raises(ValueError, match="history_turns"):
        load_config(None, {"history_turns": -1})


def test_context_flags_parse_and_the_printed_table_marks_env_defaults(capsys, monkeypatch):
    argv = ["--env", "alfworld", "--context", "full", "--history-turns", "3"]
    config, sources = resolve_config(*parse_overrides(RLConfig, argv, prog="rl-train", choices=rl_train.CHOICES))
    assert (config.context, config.history_turns, config.max_turns) == ("full", 3, 30)
    with pytest.raises(SystemExit):
        parse_overrides(RLConfig, ["--context", "summary"], prog="rl-train", choices=rl_train.CHOICES)
    line = rl_train.config_line(config, sources)
    assert "\n" not in line and "max_turns=30 [env alfworld]" in line
    assert " context=full " in line and " history_turns=3 " in line  # flags, unmarked (full is also the default)
    assert "learning_rate" not in line and " env=alfworld " in line and "config.yaml" in line


def test_a_checkpoint_preset_sets_token_limits_and_keeps_the_envs_turns_and_context(tmp_path):
    preset, sources = resolve_config(None, {"env": "alfworld", "preset": "qwen2.5-7b", "model": str(tmp_path)})
    assert (preset.max_new_tokens, preset.max_episode_tokens) == (PRESETS["qwen2.5-7b"]["max_new_tokens"],
                                                                   PRESETS["qwen2.5-7b"]["max_episode_tokens"])
    assert (preset.max_turns, preset.context, preset.history_turns) == (30, "window", 2)
    assert (sources["max_new_tokens"], sources["generation"], sources["max_turns"], sources["model"]) == \
        ("preset", "preset", "env", "flag")
    assert (preset.generation, preset.bf16, preset.gradient_checkpointing) == ("vllm", True, True)
