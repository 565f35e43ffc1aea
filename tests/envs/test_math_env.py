"""The Math env: problem sources, tool calls through the real sandbox, math-verify grading, agents."""

import json

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import regym  # noqa: F401 - registers the env ids
from regym.agents import ExpertAgent, RandomAgent
from regym.envs.math import MathEnv, answer_in, grade, tool_call_code
from regym.envs.math.problems import ID_FAMILIES, OOD_FAMILIES
from regym.rollout import rollout


@pytest.fixture
def half_dataset(tmp_path):
    """A tiny user dataset, GSM8K-style answers included."""
    path = tmp_path / "problems.jsonl"
    rows = [
        {"q": "What is 1 divided by 2?", "a": "0.5"},
        {"q": "Tom has 3 apples and buys 4 more. How many?", "a": "3 + 4 = 7\n#### 7"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize(("predicted", "reference"), [
    ("1/2", "0.5"), ("\\frac{1}{2}", "0.5"), ("0.5", "1/2"), ("1/2", "\\frac{1}{2}"), ("e = 13", "13"),
    ("138/583", "138/583"), ("-2.2017", "-2.2017"),
])
def test_math_verify_accepts_equivalent_answers(predicted, reference):
    assert grade(predicted, reference)


@pytest.mark.parametrize(("predicted", "reference"), [
    ("0.6", "0.5"), ("2", "1/2"), ("4", "-4"), ("hello", "13"), ("", "13"), ("1" * 400, "1" * 400),
])
def test_math_verify_rejects_wrong_answers(predicted, reference):
    assert not grade(predicted, reference)


def test_answer_and_tool_call_extraction():
    assert answer_in("so it is \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert answer_in("Thought: easy\nAnswer: 42.") == "42"
    assert answer_in("no answer here") is None
    assert tool_call_code("Let me compute.\n<python>\nx = 2\nprint(x)\n</python>") == "x = 2\nprint(x)"
    assert tool_call_code('{"name": "python", "arguments": {"code": "print(1)"}}') == "print(1)"
    openai_call = {"type": "function", "function": {"name": "python", "arguments": json.dumps({"code": "1+1"})}}
    assert tool_call_code(json.dumps({"tool_calls": [openai_call]})) == "1+1"
    assert tool_call_code('<tool_call>{"name": "python", "arguments": {"code": "2"}}</tool_call>') == "2"
    assert tool_call_code('{"name": "search", "arguments": {"code": "2"}}') is None


def test_check_env_and_registration():
    check_env(MathEnv(), skip_render_check=True)
    env = gym.make("regym/Math-v0", split="ood")
    observation, info = env.reset(seed=3)
    assert "Problem:" in observation and info["task_family"] in OOD_FAMILIES
    assert info["tools"][0]["function"]["name"] == "python"
    env.close()


def test_seeded_reset_is_deterministic_and_splits_use_different_families():
    env = MathEnv()
    first = env.reset(seed=11)
    assert env.reset(seed=11) == first
    assert not set(ID_FAMILIES) & set(OOD_FAMILIES)
    id_families = {MathEnv().reset(seed=s)[1]["task_family"] for s in range(30)}
    ood_env = MathEnv(split="ood")
    ood_ids = [ood_env.reset(seed=s)[1]["task_id"] for s in range(30)]
    assert id_families <= set(ID_FAMILIES) and len(id_families) > 3
    assert all(task_id.startswith("math-ood-") for task_id in ood_ids)
    replay = MathEnv(split="ood").reset(options={"task_id": ood_ids[0]})[0]
    assert replay == ood_env.reset(seed=0)[0]
    with pytest.raises(ValueError):
        env.reset(options={"task_id": "math-id-not_a_family-000001"})


def test_tool_call_then_answer_through_the_real_sandbox(half_dataset):
    env = MathEnv(dataset=half_dataset, question_column="q", answer_column="a")
    observation, info = env.reset(options={"task_id": "math-data-000000"})
    assert "1 divided by 2" in observation
    observation, reward, terminated, truncated, info = env.step("Let me check.\n<python>\nprint(1 / 2)\n</python>")
    assert observation == "Python output:\n0.5" and reward == 0 and not terminated and info["tool_calls"] == 1
    observation, reward, terminated, truncated, info = env.step("The answer is \\boxed{1/2}")
    assert reward == 1.0 and terminated and info["success"] and info["answer"] == "1/2"
    with pytest.raises(RuntimeError):
        env.step("\\boxed{1/2}")


def test_gsm8k_style_reference_and_signed_reward(half_dataset):
    env = MathEnv(dataset=half_dataset, question_column="q", answer_column="a", signed_reward=True)
    env.reset(options={"task_id": "math-data-000001"})
    assert env.problem.answer == "7"
    *_, info = env.step('{"name": "python", "arguments": {"code": "3 + 4"}}')
    assert env.render() == "Python output:\n7"
    _, reward, terminated, _, info = env.step("Answer: 8")
    assert reward == -1.0 and terminated and not info["success"]


def test_invalid_text_gets_help_and_sandbox_faults_do_not_end_the_episode(half_dataset):
    env = MathEnv(dataset=half_dataset, question_column="q", answer_column="a", max_turns=3,
                  invalid_action_penalty=0.1)
    env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step("I am thinking about it")
    assert info["invalid_action"] and reward == pytest.approx(-0.1) and "<python>" in observation
    assert info["tools"] and info["expert_action"].startswith("<python>")
    observation, *_ = env.step("<python>\nimport os\nos.kill(os.getppid(), 9)\n</python>")
    assert "PermissionError" in observation or "not permitted" in observation
    *_, truncated, info = env.step("<python>1/0</python>")
    assert truncated and not info["success"]


def test_dataset_errors_are_clear(tmp_path, half_dataset):
    with pytest.raises(ValueError, match="no column"):
        MathEnv(dataset=half_dataset)
    with pytest.raises(ValueError, match="does not exist"):
        MathEnv(dataset=str(tmp_path / "missing.jsonl"))


def test_expert_solves_the_id_split_and_random_does_not():
    envs = [MathEnv() for _ in range(3)]
    expert = rollout(envs, ExpertAgent(), episodes=40)
    success = sum(t.success for t in expert) / len(expert)
    assert success >= 0.95, [t.error for t in expert if not t.success]
    first = expert[0]
    assert first.turns[0].action.startswith("<python>") and first.turns[0].info["tool_calls"] == 1
    assert first.turns[1].action.startswith("\\boxed{")
    random_runs = rollout(envs, RandomAgent(seed=0), episodes=40)
    assert sum(t.success for t in random_runs) / len(random_runs) <= 0.2


def test_expert_solves_the_ood_split():
    expert = rollout([MathEnv(split="ood") for _ in range(2)], ExpertAgent(), episodes=24)
    assert sum(t.success for t in expert) >= 23
