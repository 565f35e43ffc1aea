"""Every command meets ordinary mistakes with one line naming the fix, exit status 2, before any long work.

A newcomer's typo (a flag abbreviated, a model folder that does not exist, a corrupt config.json,
an output folder already used, a companion flag forgotten) must cost a second: no traceback, no
config dump, no tiny-pipeline build. Each table runs a command in-process on bad inputs and checks
that stderr holds exactly one ``prog: error:`` line mentioning the fault, and that stdout is empty.
"""

from __future__ import annotations

import json

import pytest
import yaml

from regym.cli import plasticity_report, rejuvenate, rl_eval, rl_train
from regym.cli.main import main as regym_main
from regym.models.testing import save_checkpoint, tiny_llama, tiny_tokenizer


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """Folders a user might name: a real tiny checkpoint, a corrupt one, a used run folder, files."""
    root = tmp_path_factory.mktemp("bad-inputs")
    model = save_checkpoint(tiny_llama(seed=0), tiny_tokenizer(), root / "model")
    other = save_checkpoint(tiny_llama(seed=0, intermediate_size=96), tiny_tokenizer(), root / "other-size")
    corrupt = root / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{oops")
    used_run = root / "used-run"
    (used_run / "checkpoint-2").mkdir(parents=True)
    calib = root / "calib.jsonl"
    calib.write_text(json.dumps({"text": "the red key is in the box"}) + "\n")
    unknown_key = root / "unknown.yaml"
    unknown_key.write_text(yaml.safe_dump({"suite": "all", "sutie": "math"}))
    taken = root / "taken"
    taken.mkdir()
    other_run = root / "runs" / "random--textworld-id"
    other_run.mkdir(parents=True)
    (other_run / "config.json").write_text(json.dumps({"identity": {"agent": "someone else"}}))
    return {"model": str(model), "other": str(other), "corrupt": str(corrupt), "missing": str(root / "nothing"),
            "used_run": str(used_run), "calib": str(calib), "unknown_key": str(unknown_key), "taken": str(taken),
            "runs": str(root / "runs"), "empty": str(root / "empty"), "file": str(calib)}


@pytest.fixture(autouse=True)
def no_long_work(monkeypatch):
    """The tiny pipeline must never start building for a bad input."""
    import regym.recipes.tiny as tiny

    def refuse(*args, **kwargs):
        raise AssertionError("the tiny pipeline started building before the input was checked")

    monkeypatch.setattr(tiny, "ensure_tiny_pipeline", refuse)


def run(main, argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_info:  # argparse's own errors
        return exit_info.code


def assert_one_line(capsys, code: int, prog: str, mentions: str) -> None:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{prog}: error: ") and mentions in lines[0], lines[0]
    assert captured.out == "", captured.out


def filled(argv: list[str], paths: dict[str, str]) -> list[str]:
    return [paths[word[1:]] if word.startswith("@") else word for word in argv]


RL_TRAIN = [
    (["--max-step", "1"], "unrecognized arguments: --max-step"),  # abbreviations are not flags
    (["--model", "@missing"], "no such folder"),
    (["--model", "@corrupt"], "not valid JSON"),
    (["--model", "@model", "--base", "@corrupt"], "--base"),
    (["--model", "@model", "--reference", "@missing"], "--reference"),
    (["--model", "@model", "--rejuvenate"], "--rejuvenate with --model needs --base"),
    (["--model", "@file"], "is a file"),
    (["--output-dir", "@used_run"], "already holds checkpoints: pass --resume"),
    (["--env", "nonsense"], "unknown env 'nonsense'"),
    (["--eval-splits", "bogus"], "unknown split 'bogus'"),
    (["--loss-type", "ppo"], "invalid choice: 'ppo'"),
    (["--prompt-style", "json"], "invalid choice: 'json'"),
    (["--reset-criterion", "magic"], "--reset-criterion 'magic'"),
    (["--num-generations", "1"], "num_generations must be >= 2"),
    (["--report-to", "mlflow"], "report_to takes"),
    (["--config", "@missing"], "nothing"),
    (["--config", "@unknown_key"], "unknown config fields"),
    (["--group-size", "3", "--num-generations", "4"], "old name of --num-generations"),
    (["--preset", "qwen2.5-7b"], "pass --model PATH"),
]


@pytest.mark.parametrize("argv, mentions", RL_TRAIN, ids=[" ".join(argv) for argv, _ in RL_TRAIN])
def test_rl_train_bad_inputs(argv, mentions, paths, capsys):
    assert_one_line(capsys, run(rl_train.main, filled(argv, paths)), "rl-train", mentions)


RL_EVAL = [
    (["--agent", "random", "--suite", "nonsense"], "unknown suite 'nonsense'"),
    (["--agent", "random", "--envs", "nonsense"], "unknown env 'nonsense'"),
    (["--agent", "random", "--suite", "math-near"], "has no 'near_out_of_distribution' split"),
    (["--model", "does-not-exist"], "no such folder"),
    (["--model", "@corrupt"], "not valid JSON"),
    (["--model", "@model", "--gguf-file", "model.gguf"], "--gguf-file model.gguf is not in"),
    (["--vllm", "@missing"], "--vllm"),
    (["--agent", "random", "--max-turn", "3"], "unrecognized arguments: --max-turn"),
    (["--agent", "random", "--k", "0"], "must be >= 1"),
    (["--agent", "random", "--model", "@model"], "give exactly one of"),
    (["--agent", "random", "--env-urls", '{"nonsense": "http://127.0.0.1:1"}'], "unknown env 'nonsense'"),
    (["--agent", "random", "--config", "@missing"], "No such file"),
    (["--agent", "random", "--config", "@unknown_key"], "unknown config fields ['sutie']"),
    (["--leaderboard-only", "--output-dir", "@empty"], "no runs with metrics.json"),
    (["--agent", "random", "--suite", "textworld-id", "--output-dir", "@runs"], "holds a different run"),
]


@pytest.mark.parametrize("argv, mentions", RL_EVAL, ids=[" ".join(argv) for argv, _ in RL_EVAL])
def test_rl_eval_bad_inputs(argv, mentions, paths, capsys):
    assert_one_line(capsys, run(rl_eval.main, filled(argv, paths)), "rl-eval", mentions)


REJUVENATE = [
    (["--base", "@missing", "--sft", "@model", "--out", "@empty", "--criterion", "drift"], "--base"),
    (["--base", "@model", "--sft", "@corrupt", "--out", "@empty", "--criterion", "drift"], "not valid JSON"),
    (["--base", "@model", "--sft", "@other", "--out", "@empty", "--criterion", "drift"], "shape"),
    (["--base", "@model", "--sft", "@model", "--out", "@empty"], "needs calibration texts"),
    (["--base", "@model", "--sft", "@model", "--out", "@empty", "--calib", "@missing"], "--calib"),
    (["--base", "@model", "--sft", "@model", "--out", "@taken", "--criterion", "drift"], "pass --overwrite"),
    (["--base", "@model", "--sft", "@model", "--out", "@empty", "--criterion", "drift", "--alpha", "2"],
     "--alpha 2.0: must be in [0, 1]"),
    (["--base", "@model", "--sft", "@model", "--out", "@empty", "--criterion", "drift", "--device", "cuda:7"],
     "CUDA device"),
    (["--base", "@model", "--sft", "@model", "--out", "@empty", "--criterion", "magic"], "invalid choice"),
    (["--base", "@model", "--sft", "@model", "--out", "@empty", "--criterion", "drift", "--env", "chess"], "chess"),
    (["--base", "@model", "--sft", "@model", "--out", "@empty", "--criterion", "drift", "--env", "math",
      "--episodes", "0"], "--episodes 0"),
    (["--base", "@model", "--sft", "@model", "--ou", "@empty"], "required: --out"),  # --ou is not --out
]


@pytest.mark.parametrize("argv, mentions", REJUVENATE, ids=[" ".join(argv[4:]) or "x" for argv, _ in REJUVENATE])
def test_rejuvenate_bad_inputs(argv, mentions, paths, capsys):
    assert_one_line(capsys, run(rejuvenate.main, filled(argv, paths)), "rejuvenate", mentions)


PLASTICITY = [
    (["--base", "@missing", "--sft", "@model", "--calib", "@calib"], "--base"),
    (["--base", "@model", "--sft", "@corrupt", "--calib", "@calib"], "not valid JSON"),
    (["--base", "@model", "--sft", "@model", "--rejuvenated", "@missing", "--calib", "@calib"], "--rejuvenated"),
    (["--base", "@model", "--sft", "@model", "--calib", "@missing"], "--calib"),
    (["--base", "@model", "--sft", "@model", "--env", "nonsense"], "unknown env 'nonsense'"),
    (["--base", "@model", "--sft", "@model", "--calib", "@calib", "--k", "9"], "--k must be <= --env-samples"),
    (["--base", "@model", "--sft", "@model", "--calib", "@calib", "--max-examples", "0"], "must be >= 1"),
    (["--base", "@model", "--sft", "@model", "--calib", "@calib", "--hessian-iters", "-1"], "--hessian-iters"),
    (["--base", "@model", "--sft", "@model", "--calib", "@calib", "--out", "@file"], "is a file"),
    (["--base", "@model", "--sft", "@model", "--calib", "@calib", "--hessian", "3"], "unrecognized arguments"),
]


@pytest.mark.parametrize("argv, mentions", PLASTICITY, ids=[" ".join(argv[4:]) for argv, _ in PLASTICITY])
def test_plasticity_report_bad_inputs(argv, mentions, paths, capsys):
    assert_one_line(capsys, run(plasticity_report.main, filled(argv, paths)), "plasticity-report", mentions)


REGYM = [
    (["serve-envv"], "regym", "unknown command 'serve-envv'"),
    (["serve-env", "--port", "70000"], "regym serve-env", "a TCP port is 0"),
    (["serve-env", "--env", "nonsense"], "regym serve-env", "unknown env 'nonsense'"),
    (["serve-env", "--prt", "1"], "regym serve-env", "unrecognized arguments: --prt"),
    (["serve-web", "--port", "-1"], "regym serve-web", "a TCP port is 0"),
    (["serve-web", "--session-ttl", "0"], "regym serve-web", "> 0"),
    (["envs", "--all"], "regym envs", "unrecognized arguments: --all"),
    (["collect-demos", "--env", "nonsense", "--out", "x"], "regym collect-demos", "unknown env 'nonsense'"),
    (["collect-demos", "--env", "textworld", "--out", "x", "--episode", "3"], "regym collect-demos",
     "unrecognized arguments: --episode"),
    (["lab", "handoff", "--ladder", "2", "4", "--moderate-epochs", "1"], "regym lab handoff", "error"),
    (["lab", "handoff", "--rl-step", "2"], "regym lab handoff", "unrecognized arguments: --rl-step"),
]


@pytest.mark.parametrize("argv, prog, mentions", REGYM, ids=[" ".join(argv) for argv, _, _ in REGYM])
def test_regym_subcommand_bad_inputs(argv, prog, mentions, capsys):
    assert_one_line(capsys, run(regym_main, argv), prog, mentions)


# --- what good input prints: one compact config line, the old names warned once ------------------------


def test_rl_eval_prints_its_config_once_in_one_line_and_saves_the_whole(tmp_path, capsys):
    argv = ["--agent", "random", "--suite", "textworld-id", "--num-tasks", "1", "--k", "1", "--no-baselines",
            "--output-dir", str(tmp_path)]
    assert rl_eval.main(argv) == 0
    err = capsys.readouterr().err
    config_lines = [line for line in err.splitlines() if line.startswith("rl-eval: ")]
    assert len(config_lines) == 1 and "suite=textworld-id" in config_lines[0] and "k=1" in config_lines[0]
    assert '"temperature"' not in err  # no JSON dump of the config on stderr
    saved = json.loads((tmp_path / "random--textworld-id" / "config.json").read_text())
    assert saved["temperature"] == 1.0 and saved["output_dir"] == str(tmp_path)

    # the saved config.json is a --config file: the same run again, resumed (nothing new played)
    assert rl_eval.main(["--config", str(tmp_path / "random--textworld-id" / "config.json")]) == 0
    assert "1 already logged, resuming" in capsys.readouterr().err


def test_rl_eval_old_output_flags_still_work_and_warn_once(tmp_path, capsys):
    base = ["--agent", "random", "--suite", "textworld-id", "--num-tasks", "1", "--k", "1", "--no-baselines"]
    from regym import configs

    configs._WARNED.discard(("rl-eval", "runs_dir"))
    configs._WARNED.discard(("rl-eval", "out"))
    argv = [*base, "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "board")]
    assert rl_eval.main(argv) == 0
    assert rl_eval.main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("--runs-dir is now --output-dir") == 1 and err.count("--out is now --leaderboard-dir") == 1
    assert (tmp_path / "runs" / "random--textworld-id" / "metrics.json").is_file()
    assert (tmp_path / "board" / "leaderboard.html").is_file()


def test_rl_train_old_names_map_to_trls_and_warn_once(tmp_path, capsys):
    from regym import configs
    from regym.rl import config as rl_config
    from regym.rl.config import LEGACY_FLAGS, resolve_config

    configs._WARNED.clear()
    rl_config._WARNED_SWITCHES.clear()
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"group_size": 6, "save_every": 3, "keep_checkpoints": 1, "tensorboard": False}))
    config, sources = resolve_config(path, {})
    assert (config.num_generations, config.save_steps, config.save_total_limit, config.report_to) == (6, 3, 1, [])
    assert sources["num_generations"] == "file" and sources["report_to"] == "file"
    config_file, overrides = rl_train.parse_overrides(rl_config.RLConfig, ["--group-size", "8", "--wandb",
                                                                          "--keep-checkpoints", "4"],
                                                      prog="rl-train", legacy=LEGACY_FLAGS)
    config, _ = resolve_config(config_file, overrides)
    assert (config.num_generations, config.save_total_limit, config.report_to) == (8, 4, ["tensorboard", "wandb"])
    resolve_config(path, overrides)  # the same old names again: no second warning
    err = capsys.readouterr().err
    for old in ("group_size is now num_generations", "save_every is now save_steps",
                "keep_checkpoints is now save_total_limit", "tensorboard is now report_to", "wandb is now --report-to"):
        assert err.count(old) == 1, err  # once per old name, from a file or a flag


def test_old_flags_are_hidden_from_help_and_trls_names_are_shown(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")
    with pytest.raises(SystemExit):
        rl_train.main(["--help"])
    text = capsys.readouterr().out
    for new in ("--num-generations", "--save-steps", "--save-total-limit", "--report-to"):
        assert f"\n  {new} " in text
    for old in ("--group-size", "--save-every", "--keep-checkpoints", "--tensorboard", "--wandb"):
        assert old not in text


def test_no_command_accepts_an_abbreviated_flag(capsys):
    for main, argv in ((rl_train.main, ["--max-ste", "1"]), (rl_eval.main, ["--agent", "random", "--sui", "all"]),
                       (rejuvenate.main, ["--base", "b", "--sft", "s", "--out", "o", "--overwr"]),
                       (plasticity_report.main, ["--base", "b", "--sft", "s", "--cali", "c"])):
        assert run(main, argv) == 2
        assert "unrecognized arguments" in capsys.readouterr().err


def test_an_rl_run_without_evaluations_says_so_instead_of_an_empty_table():
    from regym.rl.run_log import summary_table

    text = summary_table({"steps": 3, "before": {}, "after": {}})
    assert "|" not in text and "no evaluation" in text and "--eval-every 0" in text
    table = summary_table({"steps": 3, "before": {}, "after": {"in_distribution": {"success_rate": 0.5}}})
    assert "| in_distribution | — | 0.500 |" in table


def test_library_progress_bars_are_off_inside_and_restored_after(tmp_path, capsys):
    import transformers.modeling_gguf_pytorch_utils as gguf
    import transformers.utils.logging as transformers_logging

    from regym.checkpoints import save_model
    from regym.progress import library_progress_bars_off

    transformers_logging.enable_progress_bar()
    original = gguf.tqdm
    with library_progress_bars_off():
        assert not transformers_logging.is_progress_bar_enabled()
        assert gguf.tqdm is not original
        save_model(tiny_llama(seed=0), tmp_path / "quiet", tokenizer=tiny_tokenizer())
    assert "Writing model shards" not in capsys.readouterr().err
    assert transformers_logging.is_progress_bar_enabled() and gguf.tqdm is original
