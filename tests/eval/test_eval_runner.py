"""The eval runner on a small counting game registered here under a test-only id.

Covers: suites resolved from the registry, fixed task sets, expert ≫ random, the
JSONL log, and resuming a killed run (a real SIGKILL) to the same final numbers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest

from games import EVAL_COUNT_ID, SplitCountingGame, register_eval_count
from regym.eval.agents import PerEpisodeAgent
from regym.eval.episodes import Episode, plan_episodes
from regym.eval.log import TrajectoryLog, read_log
from regym.eval.run_dir import TRAJECTORIES, prepare_run_dir
from regym.eval.runner import evaluate
from regym.eval.suites import TASK_SEED_BASE, family_split, get_suite, suite_entries

BROKEN_ID = "regym/EvalBroken-v0"
SUPPORT = Path(__file__).resolve().parents[1] / "support"  # games.py, for the rl-eval subprocess


class NoResetGame(SplitCountingGame):
    def _begin(self, task_id):
        raise RuntimeError("no game files")


@pytest.fixture(autouse=True)
def test_envs():
    """Registered for the duration of each test only, so other tests' env lists stay clean."""
    register_eval_count()
    yield
    gym.registry.pop(EVAL_COUNT_ID, None)
    gym.registry.pop(BROKEN_ID, None)


def expert_agent():
    from regym.agents import ExpertAgent

    return PerEpisodeAgent(lambda seed: ExpertAgent(), name="expert")


def random_agent(base_seed=0):
    from regym.agents import RandomAgent

    return PerEpisodeAgent(lambda seed: RandomAgent(seed=seed), base_seed, name="random")


def count_plan(num_tasks=4, k=3):
    return plan_episodes(suite_entries(EVAL_COUNT_ID, num_tasks=num_tasks), k)


def test_suites_cover_every_registered_env_and_split():
    from regym.envs import list_envs

    listings = list_envs()
    expected = {(listing.env_id, family_split(listing.env_id, split)) for listing in listings
                for split in ("in_distribution", "out_of_distribution")}
    entries = suite_entries("all", num_tasks=2)
    assert {(entry.env_id, entry.split) for entry in entries} == expected
    assert {entry.split for entry in suite_entries("agentic-ood", num_tasks=1)} == {"out_of_distribution",
                                                                                    "held_out_rooms"}
    assert {entry.env_id for entry in suite_entries("agentic-id", num_tasks=1)} == {listing.env_id for listing in listings}
    assert (EVAL_COUNT_ID, "in_distribution") in expected


def test_splits_that_all_leaves_out_are_suites_by_name():
    """`all` plays ID and OOD; TextWorld's near-OOD and ALFWorld's valid_unseen are played when named."""
    splits = {(entry.env_id, entry.split) for entry in suite_entries("all")}
    assert ("regym/TextWorld-v0", "near_out_of_distribution") not in splits
    assert ("regym/ALFWorld-v0", "valid_unseen") not in splits
    assert [(e.env_id, e.split) for e in suite_entries("textworld-near")] == [("regym/TextWorld-v0",
                                                                                "near_out_of_distribution")]
    assert [(e.env_id, e.split) for e in suite_entries("alfworld-valid_unseen")] == [("regym/ALFWorld-v0",
                                                                                       "valid_unseen")]
    assert suite_entries("regym/ALFWorld-v0-ood")[0].split == "held_out_rooms"


def test_the_baselines_suite_plays_every_split_a_family_has_and_skips_the_rest():
    from regym.envs import list_envs

    entries = {(entry.env_id, entry.split) for entry in suite_entries("baselines", num_tasks=1)}
    for listing in list_envs():
        for split in ("in_distribution", "near_out_of_distribution", "out_of_distribution"):
            played = (listing.env_id, family_split(listing.env_id, split)) in entries
            assert played == (split in listing.splits), (listing.env_id, split)
    assert ("regym/Math-v0", "near_out_of_distribution") not in entries  # no level set: no near-OOD
    assert ("regym/TextWorld-v0", "near_out_of_distribution") in entries
    with pytest.raises(ValueError, match="has no 'near_out_of_distribution' split"):
        suite_entries("math-near")  # a suite that names the split still refuses


def test_task_sets_are_fixed_by_seed():
    first, second = count_plan(), count_plan()
    assert first == second and len(first) == 2 * 4 * 3
    assert sorted({episode.task_seed for episode in first}) == [TASK_SEED_BASE + i for i in range(4)]
    env = gym.make(EVAL_COUNT_ID, split="ood")
    tasks = [env.reset(seed=seed)[1]["task_id"] for seed in (TASK_SEED_BASE, TASK_SEED_BASE + 1)]
    assert tasks == [env.reset(seed=seed)[1]["task_id"] for seed in (TASK_SEED_BASE, TASK_SEED_BASE + 1)]
    assert get_suite(f"{EVAL_COUNT_ID}-ood").splits == ("out_of_distribution",)
    assert Episode(EVAL_COUNT_ID, "ood", 1, 0).agent_seed() != Episode(EVAL_COUNT_ID, "ood", 1, 1).agent_seed()


def test_env_that_cannot_load_fails_with_its_name():
    gym.register(BROKEN_ID, entry_point="regym_no_such_module:Game")
    with pytest.raises(RuntimeError, match="EvalBroken"):
        suite_entries("all")


def test_env_whose_reset_fails_stops_the_run_with_its_name(tmp_path):
    gym.register(BROKEN_ID, entry_point="test_eval_runner:NoResetGame")
    plan = plan_episodes(suite_entries(BROKEN_ID, num_tasks=1), 1)
    with pytest.raises(RuntimeError, match=r"EvalBroken-v0 \(in_distribution\) reset"):
        evaluate(tmp_path / "run", plan, expert_agent())
    with pytest.raises(RuntimeError, match=r"EvalBroken-v0 \(out_of_distribution\) reset"):
        evaluate(tmp_path / "forked", plan[1:] + count_plan(2, 1), expert_agent(), workers=2)


def test_expert_beats_random_and_every_episode_is_logged(tmp_path):
    plan = count_plan()
    expert = evaluate(tmp_path / "expert", plan, expert_agent(), num_envs=3)
    random = evaluate(tmp_path / "random", plan, random_agent(), num_envs=3)
    assert expert.played == len(plan) and expert.skipped == 0
    for expert_cell, random_cell in zip(expert.metrics, random.metrics, strict=True):
        assert expert_cell.success_rate == 1.0 and expert_cell.pass_at["3"] == 1.0
        assert expert_cell.invalid_action_rate == 0.0 and expert_cell.errors == 0
        assert random_cell.success_rate < 0.7 and random_cell.invalid_action_rate > 0.3
        assert expert_cell.success_rate > random_cell.ci_high
        assert random_cell.pass_at["1"] <= random_cell.pass_at["2"] <= random_cell.pass_at["3"]
    ood = expert.metrics[1]
    assert ood.split == "out_of_distribution" and ood.mean_turns >= 5  # targets 5-7 take 5-7 turns
    records = read_log(tmp_path / "expert" / TRAJECTORIES)
    assert sorted(record["key"] for record in records) == sorted(episode.key for episode in plan)
    turns = records[0]["trajectory"]["turns"]
    assert turns[0]["observation"].startswith("Count to") and records[0]["turns"] == len(turns)
    metrics = json.loads((tmp_path / "expert" / "metrics.json").read_text())
    assert metrics["complete"] and metrics["id_average"] == metrics["ood_average"] == 1.0
    assert "| evalcount/ood |" in (tmp_path / "expert" / "metrics.md").read_text()


def test_random_play_does_not_depend_on_batching(tmp_path):
    plan = count_plan(num_tasks=3, k=2)
    one = evaluate(tmp_path / "one", plan, random_agent(), num_envs=1)
    many = evaluate(tmp_path / "many", plan, random_agent(), num_envs=5)
    assert [m.to_dict() for m in one.metrics] == [m.to_dict() for m in many.metrics]
    forked = evaluate(tmp_path / "forked", plan, random_agent(), num_envs=2, workers=2)
    assert forked.played == len(plan) and [m.to_dict() for m in forked.metrics] == [m.to_dict() for m in one.metrics]
    other_seed = evaluate(tmp_path / "seed7", plan, random_agent(base_seed=7), num_envs=5)
    by_key = {r["key"]: r["trajectory"]["turns"] for r in read_log(tmp_path / "one" / TRAJECTORIES)}
    for run in ("many", "forked"):
        assert by_key == {r["key"]: r["trajectory"]["turns"] for r in read_log(tmp_path / run / TRAJECTORIES)}
    assert by_key != {r["key"]: r["trajectory"]["turns"] for r in read_log(other_seed.run_dir / TRAJECTORIES)}


def test_torn_last_line_is_dropped_and_replayed(tmp_path):
    plan = count_plan(num_tasks=2, k=1)
    evaluate(tmp_path / "run", plan, random_agent())
    log_path = tmp_path / "run" / TRAJECTORIES
    lines = log_path.read_text().splitlines(keepends=True)
    log_path.write_text("".join(lines[:-1]) + lines[-1][:40])  # killed mid-write
    assert len(TrajectoryLog(log_path).records) == len(plan) - 1
    resumed = evaluate(tmp_path / "run", plan, random_agent())
    assert resumed.played == 1 and len(read_log(log_path)) == len(plan)
    assert all(json.loads(line) for line in log_path.read_text().splitlines())


def test_a_run_folder_refuses_a_different_run(tmp_path):
    prepare_run_dir(tmp_path / "run", {}, {"k": 1})
    prepare_run_dir(tmp_path / "run", {"num_envs": 4}, {"k": 1})  # same identity: resume
    with pytest.raises(ValueError, match="different run"):
        prepare_run_dir(tmp_path / "run", {}, {"k": 2})
    prepare_run_dir(tmp_path / "run", {}, {"k": 2}, overwrite=True)


KILLABLE_RUN = """
import sys
sys.path.insert(0, {support!r})
from games import register_eval_count
register_eval_count()
from regym.cli.rl_eval import main
sys.exit(main({argv!r}))
"""


def run_cli(argv, **kwargs):
    code = KILLABLE_RUN.format(support=str(SUPPORT), argv=argv)
    env = {**os.environ, "PYTHONPATH": str(SUPPORT.parents[1])}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_killed_run_resumes_to_the_uninterrupted_numbers(tmp_path):
    """SIGKILL halfway through, rerun: finished episodes are not replayed, numbers match."""
    argv = ["--agent", "random", "--suite", "all", "--envs", EVAL_COUNT_ID, "--num-tasks", "6", "--k", "2",
            "--num-envs", "2", "--output-dir", str(tmp_path / "runs"), "--run-name", "random--all",
            "--env-kwargs", '{"step_delay": 0.01}']  # slow steps, so the kill lands mid-run
    log_path = tmp_path / "runs" / "random--all" / TRAJECTORIES
    total = 2 * 6 * 2

    slow = run_cli(argv, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not log_path.exists() or len(log_path.read_text().splitlines()) < total // 2):
        time.sleep(0.01)
        if slow.poll() is not None:
            break
    os.killpg(slow.pid, signal.SIGKILL)
    slow.wait()
    before = read_log(log_path)
    assert 0 < len(before) < total, "the kill did not land mid-run"

    resumed = run_cli(argv)
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
    after = read_log(log_path)
    assert len(after) == total == len(log_path.read_text().splitlines())
    assert after[: len(before)] == before  # finished episodes were kept, not replayed

    clean = run_cli(argv + ["--run-name", "uninterrupted"])
    assert clean.wait(timeout=120) == 0, clean.stderr.read()
    resumed_metrics = json.loads(log_path.with_name("metrics.json").read_text())
    clean_metrics = json.loads((tmp_path / "runs" / "uninterrupted" / "metrics.json").read_text())
    assert resumed_metrics["cells"] == clean_metrics["cells"]
    clean_log = {r["key"]: r["trajectory"] for r in read_log(tmp_path / "runs" / "uninterrupted" / TRAJECTORIES)}
    assert {r["key"]: r["trajectory"] for r in after} == clean_log


def test_llm_policy_counts_tokens_adds_baselines_and_resumes_exactly(tmp_path):
    """A tiny HF checkpoint through ``rl-eval --model``: sampled play, token counts, exact resume."""
    from regym.cli.rl_eval import main
    from tiny_chat import tiny_chat_model

    register_eval_count()
    model, tokenizer = tiny_chat_model()
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    argv = ["--model", str(tmp_path / "tiny"), "--suite", EVAL_COUNT_ID, "--num-tasks", "2", "--k", "2",
            "--max-new-tokens", "6", "--max-turns", "2", "--num-envs", "3", "--device", "cpu",
            "--reproducible-sampling", "--output-dir", str(tmp_path / "runs")]
    assert main(argv) == 0
    run = tmp_path / "runs" / "tiny--regym-EvalCount-v0--turns2"  # the folder names its non-default settings
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["agent"] == "llm" and all(cell["tokens_generated"] > 0 for cell in metrics["cells"])
    assert all(cell["episodes"] == 4 for cell in metrics["cells"])
    assert {p.name for p in (tmp_path / "runs").iterdir()} >= {"random--regym-EvalCount-v0--turns2",  # same settings
                                                               "expert--regym-EvalCount-v0--turns2", "leaderboard.html"}
    full = {r["key"]: r["trajectory"] for r in read_log(run / TRAJECTORIES)}
    lines = (run / TRAJECTORIES).read_text().splitlines(keepends=True)
    (run / TRAJECTORIES).write_text("".join(lines[:3]))  # as if killed after three episodes
    assert main(argv + ["--no-baselines"]) == 0
    assert {r["key"]: r["trajectory"] for r in read_log(run / TRAJECTORIES)} == full
    assert json.loads((run / "metrics.json").read_text())["cells"] == metrics["cells"]


def test_help_documents_every_option(capsys):
    from regym.cli.rl_eval import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--suite", "--k", "--num-envs", "--openai-base-url", "--reproducible-sampling", "--ci",
                   "--request-timeout", "--max-retries"):
        assert option in text
    assert "95 % interval" in text
