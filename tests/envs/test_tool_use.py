"""ToolUse env: real tools (sqlite, bm25s, calendar, calculator), seeded tasks, robust call parsing."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from regym.agents import ExpertAgent, RandomAgent
from regym.envs.tool_use import ToolUseEnv
from regym.envs.tool_use.calculator import evaluate
from regym.envs.tool_use.calendar import add_days, days_between, weekday_of
from regym.envs.tool_use.calls import parse_turn
from regym.envs.tool_use.schema import ToolError
from regym.envs.tool_use.tasks import ID_TEMPLATES, OOD_TEMPLATES, Answer, grade, make_task
from regym.envs.tool_use.units import convert
from regym.rollout import rollout


def play_expert(env, task_id):
    observation, info = env.reset(options={"task_id": task_id})
    actions = []
    while True:
        actions.append(info["expert_action"])
        observation, reward, terminated, truncated, info = env.step(info["expert_action"])
        if terminated or truncated:
            return actions, reward, info


def test_check_env_passes_on_both_splits():
    check_env(ToolUseEnv(), skip_render_check=True)
    check_env(ToolUseEnv(split="ood"), skip_render_check=True)


def test_same_task_id_same_task_across_processes():
    """Worlds come from a seeded generator, never from Python's randomised str hashing."""
    code = (
        "from regym.envs.tool_use import ToolUseEnv\n"
        "env = ToolUseEnv(split='ood')\n"
        "obs, info = env.reset(seed=11)\n"
        "print(info['task_id']); print(obs); print(env.answer.text)\n"
        "print(env.step('{\"name\": \"kv_list\", \"arguments\": {\"prefix\": \"\"}}')[0])\n"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        environment = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                              check=True, timeout=120)
        outputs.add(done.stdout)
    assert len(outputs) == 1
    env = ToolUseEnv(split="ood")
    assert env.reset(seed=11) == env.reset(seed=11)
    assert env.reset(seed=11)[1]["task_id"] != env.reset(seed=12)[1]["task_id"]


def test_expert_solves_every_template_and_random_does_not():
    envs = [ToolUseEnv() for _ in range(4)]
    expert = rollout(envs, ExpertAgent(), episodes=60)
    assert all(t.success and t.total_reward == 1.0 for t in expert)
    assert {t.info["task_type"] for t in expert} == set(ID_TEMPLATES)
    assert all(2 <= t.num_turns - 1 <= 5 for t in expert)  # 2-5 calls, then the answer
    random = rollout(envs, RandomAgent(seed=0), episodes=60)
    assert sum(t.success for t in random) <= 3
    assert sum(t.info["invalid_calls"] for t in random) > 20

    ood = rollout([ToolUseEnv(split="ood") for _ in range(2)], ExpertAgent(), episodes=40)
    assert all(t.success for t in ood)
    assert {t.info["task_type"] for t in ood} == set(OOD_TEMPLATES)


def test_ood_templates_use_tool_combinations_unseen_in_distribution():
    seen = {frozenset(t.families) for t in ID_TEMPLATES.values()}
    assert all(frozenset(t.families) not in seen for t in OOD_TEMPLATES.values())
    assert "calendar" not in {t.families[0] for t in ID_TEMPLATES.values()}
    assert "calendar" in {t.families[0] for t in OOD_TEMPLATES.values()}
    with pytest.raises(ValueError, match="other split"):
        ToolUseEnv().reset(options={"task_id": "sql_units-00001"})
    with pytest.raises(ValueError, match="bad tool-use task id"):
        ToolUseEnv().reset(options={"task_id": "nonsense"})


def test_info_tools_are_openai_schemas_of_the_offered_tools():
    env = ToolUseEnv(distractor_families=0)
    _, info = env.reset(options={"task_id": "kv_units_calc-00003"})
    names = [tool["function"]["name"] for tool in info["tools"]]
    assert names == ["calculate", "convert_units", "kv_get", "kv_list", "final_answer"]
    for tool in info["tools"]:
        assert tool["type"] == "function"
        assert tool["function"]["parameters"]["type"] == "object"
        assert set(tool["function"]["parameters"]["required"]) <= set(tool["function"]["parameters"]["properties"])
    json.dumps(info["tools"])
    observation, *_ = env.step('{"name": "convert_units", "arguments": {"value": 1, "from_unit": "pc", "to_unit": "m"}}')
    assert observation.startswith("Error: bad arguments for convert_units: from_unit must be one of ")
    assert info["required_tools"] == ["kv", "units", "calculator"]
    assert len(ToolUseEnv(distractor_families=2).reset(options={"task_id": "kv_units_calc-00003"})[1]["tools"]) > 5


def test_every_accepted_call_shape_gives_the_same_result():
    env = ToolUseEnv()
    _, info = env.reset(options={"task_id": "kv_calendar-00005"})
    call = json.loads(info["expert_action"])
    plain = json.dumps(call)
    shapes = [
        plain,
        f"I will look it up.\n{plain}\nthen continue",
        json.dumps({"name": call["name"], "arguments": json.dumps(call["arguments"])}),
        json.dumps({"name": call["name"], "parameters": call["arguments"]}),
        json.dumps({"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}]}),
        f"<tool_call>\n{plain}\n</tool_call>",
        f"```json\n{plain}\n```",
    ]
    results = set()
    for text in shapes:
        observation, _, terminated, _, info = env.step(text)
        assert not info["invalid_action"] and not terminated, (text, observation)
        results.add(observation)
    assert len(results) == 1 and info["invalid_calls"] == 0 and info["tool_calls"] == len(shapes)

    observation, *_ = env.step(json.dumps([call, {"name": "kv_list", "arguments": {"prefix": "project/"}}]))
    assert observation.startswith("[1] kv_get: ") and "\n[2] kv_list: " in observation


def test_final_answer_as_line_or_tool_and_grading():
    for answer_text in ("Answer: {}", '{{"name": "final_answer", "arguments": {{"answer": "{}"}}}}'):
        env = ToolUseEnv(reward_wrong=-1.0)
        env.reset(options={"task_id": "sql_calc-00002"})
        _, reward, terminated, _, info = env.step(answer_text.format(env.answer.text))
        assert terminated and reward == 1.0 and info["success"] and info["expert_action"] is None
        env.reset(options={"task_id": "sql_calc-00002"})
        _, reward, terminated, _, info = env.step(answer_text.format("123456789"))
        assert terminated and reward == -1.0 and not info["success"]
        assert info["reference_answer"] == env.answer.text

    number = Answer("12.35", "number", 2)
    assert grade(number, "12.35 kg") and grade(number, "about 12.346") and grade(number, "12.341")
    assert not grade(number, "12.37") and not grade(number, "kg") and not grade(number, "nan")
    assert grade(Answer("2024-02-29", "date"), "It ships on 2024-02-29.")
    assert not grade(Answer("2024-02-29", "date"), "2024-03-01")
    assert grade(Answer("Friday", "weekday"), "friday") and not grade(Answer("Friday", "weekday"), "Friday or Monday")


def test_answer_in_a_turn_that_also_calls_tools_is_ignored():
    env = ToolUseEnv()
    _, info = env.reset(options={"task_id": "kv_calendar-00005"})
    observation, _, terminated, _, _ = env.step(info["expert_action"] + "\nAnswer: 2020-01-01")
    assert not terminated and "ignored" in observation


def test_bad_calls_get_fixable_errors_and_the_episode_recovers():
    env = ToolUseEnv(invalid_action_penalty=0.1, max_turns=20)
    _, info = env.reset(options={"task_id": "kv_calendar-00005"})
    start_call = json.loads(info["expert_action"])
    cases = [
        ('{"name": "kv_get", "arguments": {"key": "project/x"', "malformed JSON"),
        ('{"name": "teleport", "arguments": {}}', "unknown tool 'teleport'; available tools: "),
        ('{"name": "date_add", "arguments": {"date": "2024-01-01", "days": "5"}}', "without quotes"),
        ('{"name": "date_add", "arguments": {"date": "01/02/2024", "days": 5}}', "does not match the format"),
        ('{"name": "date_add", "arguments": {"date": "2024-01-01"}}', "missing required argument(s) 'days'"),
        ('{"name": "kv_get", "arguments": {"key": "a", "verbose": true}}', "unexpected argument(s) 'verbose'"),
        ('{"name": "date_add", "arguments": {"date": "2024-01-01", "days": 5e6}}', "days must be <= 1000000"),
        ('{"name": "kv_get", "arguments": "{not json}"}', "arguments string is not valid JSON"),
        ('{"name": "kv_get", "arguments": [1, 2]}', '"arguments" must be a JSON object'),
        ("let me think about this", "no tool call or final answer found"),
        ("", "empty action"),
    ]
    for count, (text, message) in enumerate(cases, start=1):
        observation, reward, terminated, truncated, info = env.step(text)
        assert observation.startswith("Error: ") and message in observation, observation
        assert info["invalid_action"] and info["invalid_calls"] == count and reward == pytest.approx(-0.1)
        assert not terminated and info["expert_action"] == json.dumps(start_call)
    env = ToolUseEnv(max_turns=20)
    _, info = env.reset(options={"task_id": "kv_calendar-00005"})
    for text, _ in cases:
        env.step(text)
    observation, _, _, _, info = env.step('{"name": "kv_get", "arguments": {"key": "project/none/start_date"}}')
    assert observation.startswith("Error: kv_get failed: key") and info["tool_errors"] == 1
    assert not info["invalid_action"] and info["invalid_calls"] == len(cases)
    while True:
        _, reward, terminated, truncated, info = env.step(info["expert_action"])
        if terminated or truncated:
            break
    assert terminated and info["success"] and reward == 1.0


def _structural_positions(text: str) -> list[int]:
    positions, in_string, escaped = [], False, False
    for position, char in enumerate(text):
        if in_string:
            in_string = escaped or char != '"'
            escaped = not escaped and char == "\\"
        elif char == '"':
            in_string = True
        elif char in "{}:,":
            positions.append(position)
    return positions


def _malformed_calls(rng: np.random.Generator, valid: list[str]) -> list[str]:
    """Calls that must all be rejected as invalid (each counted once)."""
    names = ["calculate", "kv_get", "date_add", "sql_query", "convert_units", "nope", "", "final_answer"]
    weird = [None, True, 1e308, -1, "", "x" * 300, [1, {"a": None}], {"nested": {"deep": []}}, "2024-13-45", 3.5]
    calls = []
    while len(calls) < 1200:
        kind = int(rng.integers(12))
        base = valid[int(rng.integers(len(valid)))]
        if kind == 0:  # truncated JSON
            calls.append(base[: int(rng.integers(1, len(base) - 1))])
        elif kind == 1:  # a structural character (outside strings) replaced by a bracket
            position = _structural_positions(base)[int(rng.integers(len(_structural_positions(base))))]
            calls.append(base[:position] + ("{" if base[position] != "{" else "[") + base[position + 1:])
        elif kind == 2:  # unknown tools
            calls.append(json.dumps({"name": f"tool_{rng.integers(1000)}", "arguments": {}}))
        elif kind == 3:  # wrong argument values and types
            name = names[int(rng.integers(5))]
            arguments = {k: weird[int(rng.integers(len(weird)))] for k in ("expression", "key", "date", "days",
                                                                          "query", "value")[: rng.integers(1, 4)]}
            arguments["unexpected_" + str(rng.integers(9))] = 1
            calls.append(json.dumps({"name": name, "arguments": arguments}))
        elif kind == 4:  # name missing or not a string
            calls.append(json.dumps({"name": weird[int(rng.integers(len(weird)))] or 0, "arguments": {}}))
        elif kind == 5:  # arguments string that is not JSON
            calls.append(json.dumps({"name": "kv_get", "arguments": base[: int(rng.integers(1, 20))] + "\x00{"}))
        elif kind == 6:  # bad tool_calls shapes
            shape = [{"tool_calls": []}, {"tool_calls": "x"}, {"tool_calls": [{"function": "kv_get"}]},
                     {"function": {"arguments": "{}"}}, {"tool_calls": [[]]}][int(rng.integers(5))]
            calls.append(json.dumps(shape))
        elif kind == 7:  # unterminated or empty tags
            calls.append(["<tool_call>", "<tool_call></tool_call>", f"<tool_call>{base[:-2]}</tool_call>",
                          "<tool_call>[1, 2]</tool_call>"][int(rng.integers(4))])
        elif kind == 8:  # deep nesting
            depth = int(rng.integers(50, 5000))
            calls.append('{"name": "kv_get", "arguments": ' + "[" * depth + "]" * depth + "}")
        elif kind == 9:  # random printable noise and control characters
            length = int(rng.integers(0, 200))
            calls.append("".join(chr(int(c)) for c in rng.integers(0, 0x2FF, size=length)).replace(":", ";")
                         .replace("{", "(").replace("[", "(").replace("<", "("))
        elif kind == 10:  # final_answer without a usable answer
            calls.append(json.dumps({"name": "final_answer", "arguments": [{}, {"answer": None},
                                                                           {"answer": [1]}][int(rng.integers(3))]}))
        else:  # huge text
            calls.append('{"name": "calculate", "arguments": {"expression": "' + "1+" * 30_000 + '1"}}')
    return calls


def test_fuzz_1200_malformed_calls_never_crash_and_are_all_counted():
    rng = np.random.default_rng(0)
    env = ToolUseEnv(max_turns=100_000)
    env.reset(options={"task_id": "search_calc-00009"})
    valid = [json.dumps({"name": s.name, "arguments": s.arguments}) for s in env.steps]
    calls = _malformed_calls(rng, valid)
    previous = 0
    for text in calls:
        observation, reward, terminated, truncated, info = env.step(text)
        assert isinstance(observation, str) and observation.startswith(("Error: ", "[1] ")), (text[:200], observation)
        assert info["invalid_action"] and not terminated, (text[:200], observation)
        assert info["invalid_calls"] > previous and reward == 0.0
        previous = info["invalid_calls"]
    assert previous >= 1000
    _, _, _, _, info = env.step(info["expert_action"])  # the episode still works
    assert not info["invalid_action"]


def test_fuzz_random_bytes_and_mutations_never_raise():
    rng = np.random.default_rng(1)
    env = ToolUseEnv(split="ood", max_turns=50)
    for episode in range(20):
        _, info = env.reset(seed=episode)
        done = False
        while not done:
            text = info["expert_action"]
            for _ in range(int(rng.integers(0, 4))):
                position = int(rng.integers(len(text) + 1))
                noise = chr(int(rng.integers(0, 0x10FFFF))) if rng.random() < 0.3 else str(rng.choice(list('{}[]":,\\ ')))
                text = text[:position] + noise + text[position + 1:]
            _, _, terminated, truncated, info = env.step(text)
            done = terminated or truncated
    for junk in (123, None, {"name": "kv_get", "arguments": {"key": "x"}}, ["a"], object()):
        env.reset(seed=0)
        observation, *_ = env.step(junk)
        assert isinstance(observation, str)


def test_sql_tool_is_read_only_and_bounded():
    env = ToolUseEnv(distractor_families=0)
    env.reset(options={"task_id": "sql_calc-00001"})
    tool = env.toolbox.tools["sql_query"]

    def run(query):
        return env.toolbox.call("sql_query", {"query": query})

    count = run("SELECT COUNT(*) FROM orders").result["rows"][0][0]
    for query in ("DROP TABLE orders", "DELETE FROM orders", "INSERT INTO orders (id) VALUES (999)",
                  "UPDATE orders SET quantity = 0", "PRAGMA query_only = 0", "ATTACH DATABASE 'x.db' AS x",
                  "SELECT 1; DROP TABLE orders", "CREATE TABLE t (a)",
                  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c",
                  "SELECT randomblob(1000000000)", "SELECT * FROM sqlite_master; SELECT 1"):
        result = run(query)
        assert not result.ok and not result.invalid, query
    slow = run("SELECT COUNT(*) FROM orders a, orders b, orders c, orders d, orders e")
    assert not slow.ok and "too long" in slow.error
    assert run("SELECT COUNT(*) FROM orders").result["rows"][0][0] == count == 40
    many = run("SELECT a.id FROM orders a, orders b")
    assert many.ok and len(many.result["rows"]) == 50 and many.result["truncated"]
    assert "employees(" in tool.description
    env.close()


def test_tools_compute_correct_values():
    assert convert(1, "mi", "km") == 1.609344 and convert(212, "F", "C") == 100.0 and convert(2, "lb", "oz") == 32.0
    with pytest.raises(ToolError, match="different quantities"):
        convert(1, "kg", "m")
    assert add_days("2024-02-28", 1) == "2024-02-29" and days_between("2024-01-01", "2025-01-01") == 366
    assert weekday_of("2024-07-04") == "Thursday"
    assert evaluate("(2.5 + 4) * 3") == 19.5 and evaluate("0.1 + 0.2") == 0.3 and evaluate("7 // 2") == 3
    assert evaluate("sqrt(16) + round(2.345, 2)") == 6.35 and evaluate("2^10") == 1024
    for bad in ("9**9**9", "__import__('os').system('x')", "x + 1", "1/0", "(-8) ** 0.5", "10**16", "[1, 2]",
                "lambda: 1", "1e400", "sqrt(-1)"):
        with pytest.raises(ToolError):
            evaluate(bad)


def test_search_ranks_the_named_document_first_and_deterministically():
    for index in range(30):
        task = make_task(f"search_calendar-{index:05d}")
        toolbox, steps, _ = task.open()
        search, read = steps[0], steps[1]
        assert search.result["results"][0]["doc_id"] == read.arguments["doc_id"]
        again = toolbox.call("search_documents", {"query": search.arguments["query"]}).result
        assert again == search.result
        assert toolbox.call("search_documents", {"query": "qqqq zzzz"}).result["results"] == []
        toolbox.close()


def test_parse_turn_reads_prose_and_reports_malformed_json():
    turn = parse_turn('Thought: need the weight.\n{"name": "kv_get", "arguments": {"key": "a/b"}}')
    assert [(c.name, c.arguments) for c in turn.calls] == [("kv_get", {"key": "a/b"})]
    assert parse_turn("**Final Answer:** 42").answer == "42"
    assert parse_turn('{"name": "kv_get", "arguments": {"key": "a/b"').calls[0].error.startswith("malformed JSON")
    assert parse_turn("The set {1, 2} has two elements.").error.startswith("no tool call")
    assert parse_turn("Answer:\n\n  2024-01-05\n").answer == "2024-01-05"
    assert parse_turn("<answer> 42 </answer>").answer == "42"


def test_parsing_pathological_text_is_fast():
    """Regexes and JSON scanning stay near-linear on adversarial 50 kB inputs."""
    import time

    texts = ["\n" * 49_000 + "x", " \n" * 24_000, "{" * 49_000, "[" * 49_000, '{"name"' * 7000, "<tool_call>" * 4000,
             '{"name": "a", "arguments": ' * 1500, "<answer>" * 6000, "```json" * 7000, "Answer:" + "\n" * 49_000]
    for text in texts:
        start = time.perf_counter()
        parse_turn(text)
        assert time.perf_counter() - start < 1.0, text[:20]
