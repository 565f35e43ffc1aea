"""Every command's flags come from one config dataclass through ``regym.configs``, the one helper.

What a user relies on: ``--help`` shows every field with its docstring and default; a default lives
only in the dataclass (change it there and the command line follows); each field type round-trips
from flags; a wrong flag is one ``prog: error:`` line and exit 2; every flag the docs show exists.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from regym.cli import collect_demos, envs, lab, plasticity_report, rejuvenate, rl_eval, rl_train, serve_web
from regym.cli.main import main as regym_main
from regym.configs import build_parser, field_docs, parse, parse_overrides
from regym.lab.handoff import HandoffConfig
from regym.rl.config import RLConfig, load_config

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = {  # command line → (its main, the words before the flags, its config dataclass)
    "rl-train": (rl_train.main, [], RLConfig),
    "rl-eval": (rl_eval.main, [], rl_eval.EvalConfig),
    "rejuvenate": (rejuvenate.main, [], rejuvenate.RejuvenateArgs),
    "plasticity-report": (plasticity_report.main, [], plasticity_report.PlasticityReportArgs),
    "regym collect-demos": (regym_main, ["collect-demos"], collect_demos.CollectDemosArgs),
    "regym serve-web": (regym_main, ["serve-web"], serve_web.ServeWebArgs),
    "regym lab handoff": (regym_main, ["lab", "handoff"], lab.HandoffArgs),
    "regym envs": (regym_main, ["envs"], envs.EnvsArgs),
}

REQUIRED = {  # the fewest flags each command accepts
    "rl-eval": ["--agent", "expert"],
    "rejuvenate": ["--base", "b", "--sft", "s", "--out", "o"],
    "plasticity-report": ["--base", "b", "--sft", "s", "--calib", "c.jsonl"],
    "regym collect-demos": ["--env", "textworld", "--out", "o"],
}


def run_help(command: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "10000")  # one line per flag, so a docstring is never wrapped
    main, words, _ = COMMANDS[command]
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_every_field_with_its_docstring_and_default(command, capsys, monkeypatch):
    text = run_help(command, capsys, monkeypatch)
    cls = COMMANDS[command][2]
    docs = field_docs(cls)
    for item in dataclasses.fields(cls):
        flag = "--" + item.name.replace("_", "-")
        assert docs.get(item.name), f"{cls.__name__}.{item.name} has no docstring"
        entry = help_entry(text, flag)
        assert " ".join(docs[item.name].split()) in entry
        if item.default is not dataclasses.MISSING:
            assert entry.endswith(f"(default: {item.default!r})")
        elif item.default_factory is dataclasses.MISSING:
            assert entry.endswith("(required)")


def help_entry(text: str, flag: str) -> str:
    """A flag's entry in ``--help`` (its spellings, docstring and default) on one line."""
    match = re.search(rf"^  {re.escape(flag)}[ ,\n].*?(?=^  -|^\S|\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"--help lacks {flag}"
    return " ".join(match.group(0).split())


@pytest.mark.parametrize("command", COMMANDS)
def test_the_parser_holds_no_defaults(command):
    """argparse sees none of the defaults, so the dataclass is the only place one is written."""
    cls = COMMANDS[command][2]
    parser = build_parser(cls, prog=command)
    assert all(action.default == argparse.SUPPRESS for action in parser._actions)
    argv = REQUIRED.get(command, [])
    given = vars(parser.parse_args(argv))
    assert set(given) == {name.lstrip("-").replace("-", "_") for name in argv[::2]}
    if command not in ("rl-train", "regym lab handoff"):
        assert parse(cls, argv, prog=command) == cls(**given)


def test_a_default_changed_in_the_dataclass_reaches_the_command_line(capsys, monkeypatch):
    @dataclass
    class Changed(rejuvenate.RejuvenateArgs):
        alpha: float = 0.25
        reset_fraction: float = 0.5

    args = parse(Changed, REQUIRED["rejuvenate"], prog="rejuvenate", aliases={"reset_fraction": "--reset-frac"})
    assert (args.alpha, args.reset_fraction, args.reset_strength) == (0.25, 0.5, 1.0)
    again = parse(Changed, [*REQUIRED["rejuvenate"], "--reset-frac", "0.1"], prog="r",
                  aliases={"reset_fraction": "--reset-frac"})
    assert again.reset_fraction == 0.1
    monkeypatch.setenv("COLUMNS", "10000")
    with pytest.raises(SystemExit):
        parse(Changed, ["--help"], prog="rejuvenate")
    text = capsys.readouterr().out
    assert "Fusion weight of the SFT model" in text and "(default: 0.25)" in text and "(default: 0.5)" in text

    # A preset-and-YAML command: nothing given, nothing overridden; the dataclass (and its preset) decides.
    assert parse_overrides(RLConfig, [], prog="rl-train") == (None, {})
    assert load_config(*parse_overrides(RLConfig, [], prog="rl-train")) == RLConfig()


@dataclass
class Kinds:
    """Every kind of field the helper turns into flags."""

    name: str
    """Required text."""
    count: int = 3
    """A number."""
    rate: float = 0.5
    """A float."""
    on: bool = True
    """On by default."""
    off: bool = False
    """Off by default."""
    maybe: int | None = None
    """An optional number."""
    maybe_flag: bool | None = None
    """A three-way switch."""
    style: Literal["plain", "react"] = "plain"
    """A choice."""
    tags: list[str] = field(default_factory=lambda: ["a"])
    """Several words."""
    marks: list[float] = field(default_factory=list)
    """Several numbers."""
    pair: tuple[int, int] = (1, 2)
    """Exactly two numbers."""
    many: tuple[str, ...] = ()
    """Any number of words."""
    options: dict[str, Any] = field(default_factory=dict)
    """A JSON object."""

    # Second group
    last: str = "x%"
    """A percent sign in a default (argparse's help must not choke on it)."""


def test_every_kind_of_field_round_trips():
    defaults = parse(Kinds, ["--name", "n"], prog="kinds")
    assert defaults == Kinds(name="n")
    args = parse(Kinds, ["--name", "n", "--count", "4", "--rate", "1e-3", "--no-on", "--off", "--maybe", "5",
                         "--no-maybe-flag", "--style", "react", "--tags", "b", "c", "--marks", "0.5", "2",
                         "--pair", "3", "4", "--many", "x", "y", "z", "--options", '{"k": [1, 2], "s": "v"}'],
                 prog="kinds")
    assert args == Kinds(name="n", count=4, rate=1e-3, on=False, off=True, maybe=5, maybe_flag=False, style="react",
                         tags=["b", "c"], marks=[0.5, 2.0], pair=(3, 4), many=("x", "y", "z"),
                         options={"k": [1, 2], "s": "v"})
    assert parse(Kinds, ["--name", "n", "--tags"], prog="kinds").tags == []  # a list can be emptied
    assert isinstance(parse(Kinds, ["--name", "n", "--rate", "2"], prog="kinds").rate, float)


@pytest.mark.parametrize("argv, message", [
    (["--count", "3"], "the following arguments are required: --name"),
    (["--name", "n", "--count", "x"], "argument --count: invalid int value: 'x'"),
    (["--name", "n", "--style", "json"], "argument --style: invalid choice: 'json'"),
    (["--name", "n", "--options", "[1]"], "argument --options: not a JSON object: '[1]'"),
    (["--name", "n", "--options", "{oops"], "argument --options: not a JSON object"),
    (["--name", "n", "--pair", "1"], "argument --pair: expected 2 arguments"),
    (["--name", "n", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bad_flags_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(Kinds, argv, prog="kinds")
    assert exit_info.value.code == 2
    assert f"kinds: error: {message}" in capsys.readouterr().err


def test_help_groups_fields_under_their_heading_comments(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")
    with pytest.raises(SystemExit):
        parse(Kinds, ["--help"], prog="kinds")
    text = capsys.readouterr().out
    options = text.index("\noptions:")
    assert options < text.index("\n  --options") < text.index("\nSecond group:") < text.index("\n  --last")
    assert "(default: 'x%')" in text and "(required)" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_flag_exits_2(command, capsys):
    main, words, _ = COMMANDS[command]
    with pytest.raises(SystemExit) as exit_info:
        main([*words, *REQUIRED.get(command, []), "--no-such-flag", "1"])
    assert exit_info.value.code == 2
    assert f"{command}: error: unrecognized arguments: --no-such-flag 1" in capsys.readouterr().err


@pytest.mark.parametrize("command, argv, message", [
    ("rl-eval", ["--agent", "expert", "--model", "m"], "give exactly one of --agent, --model"),
    ("rl-eval", ["--openai-base-url", "http://127.0.0.1:1/v1"], "--openai-base-url needs --model-name"),
    ("rl-eval", ["--agent", "expert", "--k", "0"], "--k, --num-envs, --num-tasks and --workers must be >= 1"),
    ("plasticity-report", ["--base", "b", "--sft", "s"], "give exactly one of --calib, --env"),
    ("plasticity-report", [*REQUIRED["plasticity-report"], "--k", "5"], "--k must be <= --env-samples"),
    ("regym collect-demos", [*REQUIRED["regym collect-demos"], "--expert", "--agent", "random"], "disagree"),
    ("regym collect-demos", [*REQUIRED["regym collect-demos"], "--episodes", "0"], "--episodes must be >= 1"),
])
def test_a_config_check_is_a_usage_error(command, argv, message, capsys):
    main, words, _ = COMMANDS[command]
    try:
        code = main([*words, *argv])
    except SystemExit as exit_info:  # argparse's error, or the command's own one-line error: both exit 2
        code = exit_info.code
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"{command}: error: ") and message in last


def test_rl_eval_envs_accept_words_and_commas():
    config = parse(rl_eval.EvalConfig, ["--agent", "random", "--envs", "textworld,alfworld", "math"], prog="rl-eval")
    assert config.envs == ["textworld", "alfworld", "math"]


def test_collect_demos_expert_is_the_expert_agent():
    args = parse(collect_demos.CollectDemosArgs, [*REQUIRED["regym collect-demos"], "--expert"], prog="c")
    assert args.agent == "expert"


def test_rl_train_flags_win_over_the_yaml_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"num_generations": 8, "loss_type": "dapo", "dense_reward": False, "epsilon_high": 0.28,
                                    "eval_splits": ["in_distribution"]}))
    argv = ["--config", str(path), "--num-generations", "6", "--dense-reward", "--env-kwargs", '{"num_tasks": 4}',
            "--eval-splits", "out_of_distribution", "in_distribution", "--preset", "smollm2", "--no-use-cpu"]
    config = load_config(*parse_overrides(RLConfig, argv, prog="rl-train", choices=rl_train.CHOICES))
    assert (config.num_generations, config.loss_type, config.dense_reward, config.epsilon_high) == (6, "dapo", True, 0.28)
    assert config.env_kwargs == {"num_tasks": 4} and config.eval_splits == ["out_of_distribution", "in_distribution"]
    assert (config.model, config.learning_rate, config.use_cpu) == ("smollm2", 1e-6, False)  # the preset's


@pytest.mark.parametrize("content, message", [
    ("group_size: [", "rl-train: error: "),
    ("gruop_size: 4", "rl-train: error: unknown config fields: ['gruop_size']"),
    ("- a list", "rl-train: error: "),
])
def test_rl_train_bad_yaml_is_one_line_and_exit_2(content, message, tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(content)
    assert rl_train.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert rl_train.main(["--config", str(tmp_path / "missing.yaml")]) == 2


def test_rl_train_choices_are_checked_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        rl_train.main(["--loss-type", "ppo"])
    assert exit_info.value.code == 2 and "invalid choice: 'ppo'" in capsys.readouterr().err


def test_lab_handoff_flags_override_and_bad_settings_exit_2(tmp_path, capsys):
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump({"seeds_primary": 1, "alpha": 0.3}))
    config_file, overrides = parse_overrides(lab.HandoffArgs, ["--config", str(path), "--alpha", "0.7", "--ladder",
                                                               "1", "2", "32", "--rl", '{"max_steps": 5}',
                                                               "--rl-steps", "9"], prog="regym lab handoff")
    assert overrides.pop("rl_steps") == 9
    from regym.lab.handoff import load_handoff_config

    config = load_handoff_config(config_file, **overrides)
    assert isinstance(config, HandoffConfig)
    assert (config.seeds_primary, config.alpha, config.ladder, config.rl["max_steps"]) == (1, 0.7, [1.0, 2.0, 32.0], 5)
    assert lab.handoff(["--ladder", "2", "4", "--moderate-epochs", "1"]) == 2  # the moderate mark is not on the ladder
    assert capsys.readouterr().err.startswith("regym lab handoff: error: ")


def documented_command_lines() -> list[tuple[str, str, list[str]]]:
    """(file:line, command, flags) of every command line shown in the README, docs and Makefile."""
    pattern = re.compile(r"(?<![\w/-])(rl-train|rl-eval|rejuvenate|plasticity-report|"
                         r"regym collect-demos|regym serve-web|regym lab handoff)\b([^`|#\n]*)")
    found = []
    for path in [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in pattern.finditer(line.replace("$(BIN)/", " ")):
                flags = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", match.group(2))
                if flags:
                    found.append((f"{path.name}:{number}", match.group(1), flags))
    return found


def test_every_documented_flag_exists(capsys, monkeypatch):
    lines = documented_command_lines()
    assert len(lines) > 20 and {command for _, command, _ in lines} >= {"rl-train", "rl-eval", "rejuvenate"}
    helps = {command: run_help(command, capsys, monkeypatch) for command in COMMANDS}
    missing = [f"{where}: {command} {flag}" for where, command, flags in lines for flag in flags
               if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[command])]
    assert not missing, "documented flags that the command lacks:\n" + "\n".join(missing)
