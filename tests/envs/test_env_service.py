"""Envs as services: ``regym serve-env`` (OpenEnv's server) and ``RemoteEnv`` against real server processes.

By seed a remote env plays what the local one plays, bit for bit, in every family; sessions are
isolated; bad requests get a clear error and the server goes on; idle sessions are reaped; a server
that dies or hangs fails only the episode in flight, and the next reset finds it again.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import gymnasium as gym
import pytest
from websockets.sync.client import connect

import regym
from regym.agents.expert import ExpertAgent
from regym.agents.random_agent import RandomAgent
from regym.envs import ENTRY_POINTS, list_envs, resolve_env_id
from regym.envs.service import RemoteEnv, RemoteEnvError, SessionExpired

FAMILIES = ["textworld", "alfworld", "math", "tool_use", "webshop"]
SMALL = {"textworld": {"num_tasks": 2}, "alfworld": {"num_tasks": 2}}
"""Few distinct games, so TextWorld and ALFWorld compile little."""
MAX_TURNS = 8
SERVE_ENV = [sys.executable, "-m", "regym.cli.main", "serve-env"]
"""The package under test (the checkout's, first on ``sys.path`` with ``-m``), not whatever ``regym`` script is installed."""


def launch(*flags: str) -> subprocess.Popen:
    """``regym serve-env FLAGS`` in a subprocess, its stdout piped (it prints its URL once bound)."""
    return subprocess.Popen([*SERVE_ENV, *flags], stdout=subprocess.PIPE, text=True)


def url_of(process: subprocess.Popen, wait_s: float = 120.0) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=wait_s):
            process.kill()
            raise RuntimeError(f"serve-env printed no URL within {wait_s} s")
    line = process.stdout.readline()
    found = re.search(r"on (http://\S+)", line)
    if found is None:
        process.kill()
        raise RuntimeError(f"serve-env exited or printed no URL: {line!r} (exit {process.poll()})")
    return found.group(1)


def start_server(*flags: str) -> tuple[subprocess.Popen, str]:
    process = launch(*flags)
    return process, url_of(process)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def servers():
    """Started together (each takes seconds to import): one for every family, each session naming
    its own; one fixed to ToolUse that holds a single session and reaps it after 1 s idle."""
    started = {"any": launch("--port", "0", "--max-sessions", "32"),
               "tool_use": launch("--env", "tool_use", "--port", "0", "--max-sessions", "1", "--idle-timeout", "1")}
    try:
        yield {name: url_of(process) for name, process in started.items()} | {"processes": started}
    finally:
        for process in started.values():
            stop(process)


@pytest.fixture(scope="module")
def server(servers):
    return servers["any"]


def make_local(family: str, **extra):
    return gym.make(resolve_env_id(family), split="ood", max_turns=MAX_TURNS, **SMALL.get(family, {}), **extra)


def make_remote(url: str, family: str, **extra):
    return gym.make("regym/Remote-v0", url=url, env=family, split="ood", max_turns=MAX_TURNS,
                    **SMALL.get(family, {}), **extra)


def dicts(trajectories):
    return [trajectory.to_dict() for trajectory in trajectories]


# --- bit for bit ---------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_remote_trajectories_equal_local_ones_by_seed(server, family):
    local = [make_local(family) for _ in range(2)]
    remote = [make_remote(server, family) for _ in range(2)]
    try:
        expert_local = regym.rollout(local, ExpertAgent(), seeds=[0, 1, 2])
        expert_remote = regym.rollout(remote, ExpertAgent(), seeds=[0, 1, 2])
        assert dicts(expert_remote) == dicts(expert_local)
        assert all(trajectory.success and trajectory.error is None for trajectory in expert_remote)
        assert {trajectory.env_id for trajectory in expert_remote} == {resolve_env_id(family)}

        random_local = regym.rollout(local, RandomAgent(seed=5), seeds=[3, 4, 5])
        random_remote = regym.rollout(remote, RandomAgent(seed=5), seeds=[3, 4, 5])
        assert dicts(random_remote) == dicts(random_local)

        by_task = [{"task_id": expert_local[1].task_id}]  # a reset option crosses the wire too
        assert dicts(regym.rollout(remote[:1], ExpertAgent(), options=by_task)) == \
            dicts(regym.rollout(local[:1], ExpertAgent(), options=by_task))
    finally:
        for env in local + remote:
            env.close()


def test_remote_is_registered_but_not_listed_as_a_family(server):
    assert "regym/Remote-v0" in gym.registry
    assert "regym/Remote-v0" not in {listing.env_id for listing in list_envs()}
    assert "regym/Remote-v0" not in ENTRY_POINTS
    env = make_remote(server, "alfworld")
    assert env.spec.id == "regym/ALFWorld-v0" and env.spec.kwargs["split"] == "out_of_distribution"
    assert env.unwrapped.client_spec.id == "regym/Remote-v0"
    first = env.reset(seed=3)
    copy = pickle.loads(pickle.dumps(env))  # e.g. sent to a worker process: a new client, its own session
    assert copy.reset(seed=3) == first and copy.unwrapped._socket is not env.unwrapped._socket
    copy.close()
    env.close()
    with pytest.raises(ValueError, match="not an env family"):
        RemoteEnv(server, "regym/Remote-v0")
    with pytest.raises(ValueError, match="unknown env"):
        RemoteEnv(server, "chess")


# --- sessions ------------------------------------------------------------------------------------

def _play_interleaved(envs, seeds):
    """Reset each env with its seed, then step them in turn (expert moves); every step of each."""
    infos = [env.reset(seed=seed)[1] for env, seed in zip(envs, seeds, strict=True)]
    seen = [[] for _ in envs]
    done = [False] * len(envs)
    while not all(done):
        for index, env in enumerate(envs):
            if not done[index]:
                step = env.step(infos[index]["expert_action"])
                seen[index].append(step)
                infos[index], done[index] = step[4], step[2] or step[3]
    return seen


def test_interleaved_sessions_are_isolated(server):
    families, seeds = ["textworld", "textworld", "alfworld"], [0, 1, 0]
    remote = [make_remote(server, family) for family in families]
    local = [make_local(family) for family in families]
    try:
        assert _play_interleaved(remote, seeds) == _play_interleaved(local, seeds)
    finally:
        for env in remote + local:
            env.close()


def test_an_openenv_client_plays_an_episode_against_regym_serve_env(server):
    from openenv.core.generic_client import GenericEnvClient

    local = make_local("tool_use")
    observation, info = local.reset(seed=4)
    expected = [observation]
    with GenericEnvClient(base_url=server).sync() as client:
        result = client.reset(seed=4, env="tool_use", split="ood", env_kwargs={"max_turns": MAX_TURNS})
        seen = [result.observation["text"]]
        while not result.done:
            action = result.observation["info"]["expert_action"]
            result = client.step({"text": action})
            seen.append(result.observation["text"])
            expected.append(local.step(action)[0])
        assert result.observation["info"]["success"] and result.reward == 1.0
        state = client.state()
        assert state["env_id"] == "regym/ToolUse-v0" and state["step_count"] == len(seen) - 1
    assert seen == expected


# --- bad requests --------------------------------------------------------------------------------

def _expert_episode_succeeds(url: str) -> bool:
    env = make_remote(url, "tool_use")
    try:
        return regym.rollout(env, ExpertAgent(), seeds=[7])[0].success
    finally:
        env.close()


def _http(url: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


WEBSOCKET_BAD_MESSAGES = [
    ("not json", "INVALID_JSON", "Invalid JSON"),
    (json.dumps({"type": "jump"}), "UNKNOWN_TYPE", "jump"),
    (json.dumps({"type": "step", "data": {"txt": "look"}}), "VALIDATION_ERROR", "Invalid message"),
    (json.dumps({"type": "step", "data": {"text": "look"}}), "EXECUTION_ERROR", "RuntimeError: no episode is running"),
    (json.dumps({"type": "reset", "data": {"env": "chess"}}), "EXECUTION_ERROR", "ValueError: unknown env 'chess'"),
    (json.dumps({"type": "reset", "data": {}}), "EXECUTION_ERROR", "name an env"),
    (json.dumps({"type": "reset", "data": {"env": "tool_use", "options": "x"}}), "EXECUTION_ERROR",
     "TypeError: options must be a dict"),
    (json.dumps({"type": "reset", "data": {"env": "tool_use", "seed": -1}}), "EXECUTION_ERROR", "ValueError: seed"),
    (json.dumps({"type": "reset", "data": {"env": "tool_use", "colour": "red"}}), "EXECUTION_ERROR",
     "unknown reset field"),
    (json.dumps({"type": "reset", "data": {"env": "tool_use", "env_kwargs": {"max_turns": "many"}}}),
     "EXECUTION_ERROR", "TypeError"),
    (json.dumps({"type": "reset", "data": {"env": "tool_use", "env_kwargs": {"colour": 1}}}),
     "EXECUTION_ERROR", "colour"),
]


def test_bad_websocket_messages_get_an_error_frame_and_the_session_goes_on(server):
    with connect(server.replace("http", "ws", 1) + "/ws", open_timeout=10) as socket:
        for message, code, words in WEBSOCKET_BAD_MESSAGES:
            socket.send(message)
            answer = json.loads(socket.recv(timeout=30))
            assert answer["type"] == "error" and answer["data"]["code"] == code, (message, answer)
            assert words in answer["data"]["message"], (message, answer)
        socket.send(json.dumps({"type": "reset", "data": {"env": "tool_use", "seed": 0}}))  # same session, good reset
        answer = json.loads(socket.recv(timeout=30))
        assert answer["type"] == "observation" and answer["data"]["observation"]["info"]["task_id"]
    assert _expert_episode_succeeds(server)


def test_bad_http_requests_get_a_4xx_with_a_message_and_the_server_goes_on(server):
    cases = [
        ("/reset", {"env": "tool_use", "options": "x"}, 400, "options must be a dict"),
        ("/reset", {"env": "chess"}, 400, "unknown env"),
        ("/reset", {"env": "tool_use", "seed": -1}, 422, "greater than or equal to 0"),
        ("/step", {"action": {"txt": "look"}}, 422, "text"),
        ("/step", {"action": {"text": "look"}}, 409, "no episode is running"),
    ]
    for path, body, status, words in cases:
        got_status, answer = _http(server, path, body)
        assert got_status == status and words in json.dumps(answer), (path, body, got_status, answer)
        assert _http(server, "/health") == (200, {"status": "healthy"})
    assert _http(server, "/reset", {"env": "tool_use", "seed": 0})[0] == 200
    assert _expert_episode_succeeds(server)


def test_remote_errors_are_the_local_ones_and_a_refused_reset_leaves_the_episode_running(servers):
    env = make_remote(servers["any"], "tool_use")
    _, info = env.reset(seed=0)
    env.step(info["expert_action"])
    for seed, error in [("1", TypeError), (True, TypeError), (-1, ValueError)]:
        with pytest.raises(error, match=r"\bseed\b"):
            env.reset(seed=seed)
    for options in ["x", ["task_id"], 3, b"task_id"]:
        with pytest.raises(TypeError, match=r"\boptions\b"):
            env.reset(options=options)
    _, _, _, _, after = env.step(info["expert_action"])
    assert after["turn"] == 2 and after["task_id"] == info["task_id"]
    env.close()

    elsewhere = RemoteEnv(servers["tool_use"], "math", reconnect_timeout=30)
    with pytest.raises(ValueError, match="this server serves regym/ToolUse-v0, not regym/Math-v0"):
        elsewhere.reset(seed=0)
    elsewhere.close()


# --- timeouts, reaping, dying servers ------------------------------------------------------------

def test_idle_sessions_are_reaped_and_their_slot_freed(servers):
    url = servers["tool_use"]  # one session at most, reaped after 1 s idle
    first = RemoteEnv(url, "tool_use", reconnect_timeout=30)
    second = RemoteEnv(url, "tool_use", reconnect_timeout=0.5)
    try:
        _, info = first.reset(seed=0)
        last_call = time.monotonic()
        with pytest.raises(ConnectionError, match="server full"):
            second.reset(seed=1)
        second.reconnect_timeout = 30
        second.reset(seed=1)  # taken once the reaper frees the idle first session (it looks every 5 s)
        assert 1.0 <= time.monotonic() - last_call < 30
        with pytest.raises(SessionExpired, match="idle-timeout"):
            first.step(info["expert_action"])
        second.close()
        _, info = first.reset(seed=0)  # reconnects to a new session
        assert first.step(info["expert_action"])[4]["turn"] == 1
    finally:
        first.close()
        second.close()


def test_a_dead_server_fails_the_episode_in_flight_and_a_restarted_one_is_picked_up():
    process, url = start_server("--env", "tool_use", "--port", "0")
    port = url.rsplit(":", 1)[1]
    restarted = []

    class KillingExpert(ExpertAgent):
        """Kills the server before the second move, then starts a new one on the same port."""

        calls = 0

        def act(self, trajectories):
            self.calls += 1
            if self.calls == 2:
                stop(process)
                restarted.append(subprocess.Popen([*SERVE_ENV, "--env", "tool_use", "--port", port],
                                                  stdout=subprocess.DEVNULL))
            return super().act(trajectories)

    remote = [RemoteEnv(url, "tool_use", max_turns=MAX_TURNS) for _ in range(2)]
    local = [gym.make("regym/ToolUse-v0", max_turns=MAX_TURNS) for _ in range(2)]
    try:
        started = time.monotonic()
        played = regym.rollout(remote, KillingExpert(), seeds=range(6))
        assert time.monotonic() - started < 120
        expected = regym.rollout(local, ExpertAgent(), seeds=range(6))
        failed = [trajectory for trajectory in played if trajectory.error is not None]
        assert len(failed) == 2  # the two episodes in flight, and only those
        for trajectory in failed:
            assert trajectory.error.startswith("step failed: RemoteEnvError: the env server at ")
            assert "went away mid-episode" in trajectory.error
        for got, want in zip(played, expected, strict=True):
            if got.error is None:
                assert got.to_dict() == want.to_dict()
        assert sum(trajectory.success for trajectory in played) == 4
    finally:
        for env in remote:
            env.close()
        for server in restarted:
            stop(server)


def test_no_call_hangs_on_a_frozen_or_absent_server(servers):
    url, process = servers["tool_use"], servers["processes"]["tool_use"]
    env = RemoteEnv(url, "tool_use", call_timeout=1.0, reconnect_timeout=30)
    try:
        _, info = env.reset(seed=0)
        os.kill(process.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(RemoteEnvError, match="no answer within 1 s"):
            env.step(info["expert_action"])
        env.reconnect_timeout = 1.0
        with pytest.raises(ConnectionError, match="within 1 s"):
            env.reset(seed=0)
        assert time.monotonic() - started < 10
        os.kill(process.pid, signal.SIGCONT)
        env.reconnect_timeout = 30
        _, info = env.reset(seed=0)
        assert env.step(info["expert_action"])[4]["turn"] == 1
    finally:
        os.kill(process.pid, signal.SIGCONT)
        env.close()

    absent = RemoteEnv("http://127.0.0.1:9", "tool_use", reconnect_timeout=1.0)  # port 9: discard, nothing listens
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="no env server at http://127.0.0.1:9 "):
        absent.reset(seed=0)
    assert time.monotonic() - started < 5
    with pytest.raises(RemoteEnvError, match="call reset"):
        absent.step("look")


def test_rl_train_and_rl_eval_on_a_server_play_what_they_play_locally(server, tmp_path, monkeypatch):
    """``rl-train --env-url`` and ``rl-eval --env-urls``: training episodes, evals and scores equal local ones."""
    from tiny_chat import tiny_chat_model

    remote_resets = []
    reset = RemoteEnv.reset
    monkeypatch.setattr(RemoteEnv, "reset", lambda self, **kw: remote_resets.append(self.url) or reset(self, **kw))

    from regym.cli.rl_eval import EvalConfig, evaluate_config
    from regym.rl.config import RLConfig
    from regym.rl.train import train

    model, tokenizer = tiny_chat_model(seed=0)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    logs = {}
    for where, url in (("local", None), ("remote", server)):
        out = tmp_path / f"train-{where}"
        train(RLConfig(env="math", model=str(tmp_path / "model"), output_dir=str(out), env_url=url, num_generations=2,
                       tasks_per_step=2, num_envs=2, num_tasks=4, max_turns=2, max_new_tokens=6,
                       max_episode_tokens=256, max_steps=1, eval_every=1, eval_episodes=4, save_steps=0,
                       report_to=[], progress=False, use_cpu=True))
        evals = [{split: cells for split, cells in row.items() if isinstance(cells, dict)}
                 for row in map(json.loads, (out / "eval.jsonl").read_text().splitlines())]
        logs[where] = ((out / "rollouts.jsonl").read_text().splitlines(), evals)
    assert len(logs["local"][0]) == 4 and len(logs["local"][1]) == 2
    assert logs["remote"] == logs["local"]
    assert len(remote_resets) == 4 + 2 * 2 * 4 and set(remote_resets) == {server}  # training; 2 evals of 2 splits

    scores = {}
    for where, urls in (("local", {}), ("remote", {"math": server})):
        result = evaluate_config(EvalConfig(agent="expert", suite="math", num_tasks=3, k=1, num_envs=2, workers=1,
                                            env_urls=urls, output_dir=str(tmp_path / f"runs-{where}")))
        scores[where] = [cell.to_dict() for cell in result.metrics]
    assert scores["remote"] == scores["local"] and scores["local"][0]["success_rate"] > 0
    assert len(remote_resets) == 20 + 2 * 3  # the suite "math" has both splits
