"""``regym serve-env`` against a client that has read its code: real servers on loopback, real envs.

Each class of attack from issue 24, with inputs of its own: options that reach the host are refused
by name; an action that hangs a grade or sleeps in the sandbox ends only its own session, within
``--call-timeout``, while ``/health`` and the other sessions answer; bodies, frames and sessions are
capped over HTTP and WebSocket alike; a connection that never resets is closed.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from test_env_service import launch, stop, url_of
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from regym.envs.service import RemoteEnv, SessionExpired

pytestmark = pytest.mark.timeout(180)

LIMITS = ("--call-timeout", "3", "--reset-deadline", "2", "--max-sessions", "6", "--max-body-bytes", "65536")
HANGING_GRADE = r"\boxed{9^{9^{9^{9}}}}"
SLEEPING_CODE = "<python>\nimport time\ntime.sleep(30)\n</python>"


@pytest.fixture(scope="module")
def servers():
    """Started together: one serving every family, one serving Math with tight limits (LIMITS)."""
    started = {"any": launch("--port", "0"), "math": launch("--env", "math", "--port", "0", *LIMITS)}
    try:
        yield {name: url_of(process) for name, process in started.items()} | {"processes": started}
    finally:
        for process in started.values():
            stop(process)


def http(url: str, path: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ws_url(url: str) -> str:
    return url.replace("http", "ws", 1) + "/ws"


def exchange(socket_, message: dict, timeout: float = 30) -> dict:
    socket_.send(json.dumps(message))
    return json.loads(socket_.recv(timeout=timeout))


def health_latency(url: str) -> float:
    started = time.monotonic()
    assert http(url, "/health", timeout=5) == (200, {"status": "healthy"})
    return time.monotonic() - started


# --- what a client may choose -------------------------------------------------------------------

HOST_REACHING_OPTIONS = [
    ("math", {"dataset": "/etc", "question_column": "x"}, "dataset"),
    ("math", {"question_column": "passwd"}, "question_column"),
    ("math", {"sandbox": "docker"}, "sandbox"),
    ("textworld", {"cache": "/tmp/anywhere"}, "cache"),
    ("alfworld", {"data_path": "/root"}, "data_path"),
    ("webshop", {"server_url": "http://169.254.169.254", "backend": "http"}, "backend"),
    ("webshop", {"backend": "browser"}, "backend"),
    ("webshop", {"browser_executable": "/bin/sh"}, "browser_executable"),
    ("webshop", {"catalog_seed": 12345}, "catalog_seed"),
    ("tool_use", {"render_mode": "human"}, "render_mode"),
    ("tool_use", {"__class__": 1}, "__class__"),
]


@pytest.mark.parametrize("env,options,named", HOST_REACHING_OPTIONS)
def test_options_a_family_does_not_declare_safe_are_refused_by_name(servers, env, options, named):
    status, answer = http(servers["any"], "/reset", {"env": env, "env_kwargs": options})
    assert status == 400 and named in answer["detail"], answer
    assert "may not be set by a client" in answer["detail"]


@pytest.mark.parametrize("options,words", [
    ({"max_turns": 10**9}, "max_turns must be in [1, 1000]"),
    ({"max_turns": True}, "max_turns must be an integer"),
    ({"num_tasks": -1}, "num_tasks must be in"),
    ({"dense_reward": "yes"}, "dense_reward must be true or false"),
    ({"invalid_action_penalty": "nan"}, "invalid_action_penalty must be a number"),
])
def test_declared_options_are_checked_against_their_schema(servers, options, words):
    status, answer = http(servers["any"], "/reset", {"env": "textworld", "env_kwargs": options})
    assert status == 400 and words in answer["detail"], answer


def test_declared_options_still_reach_the_env_over_both_transports(servers):
    status, answer = http(servers["any"], "/reset", {"env": "tool_use", "seed": 1,
                                                     "env_kwargs": {"max_turns": 2, "reward_wrong": -1.0}})
    assert status == 200 and answer["observation"]["info"]["task_id"]
    with connect(ws_url(servers["any"]), open_timeout=10) as session:
        answer = exchange(session, {"type": "reset", "data": {"env": "tool_use", "env_kwargs": {"max_turns": 1}}})
        assert answer["type"] == "observation"
        answer = exchange(session, {"type": "step", "data": {"text": "no tool call"}})
        assert answer["data"]["observation"]["truncated"]  # max_turns=1 reached the env
        answer = exchange(session, {"type": "reset", "data": {"env": "math", "env_kwargs": {"dataset": "/etc"}}})
        assert answer["type"] == "error" and "dataset" in answer["data"]["message"]


# --- one session cannot stall or kill the rest --------------------------------------------------

def test_a_hanging_grade_ends_only_its_own_session(servers):
    url = servers["math"]
    hostile, bystander = RemoteEnv(url, "math", max_turns=4), RemoteEnv(url, "math", max_turns=4)
    try:
        hostile.reset(seed=0)
        _, info = bystander.reset(seed=1)
        failure: list[BaseException] = []

        def attack() -> None:
            try:
                hostile.step(HANGING_GRADE)
            except BaseException as error:  # noqa: BLE001 - inspected below
                failure.append(error)

        attacker = threading.Thread(target=attack)
        started = time.monotonic()
        attacker.start()
        time.sleep(0.5)
        assert health_latency(url) < 1.0
        step_started = time.monotonic()
        observation = bystander.step(info["expert_action"])[0]  # a tool call: runs in the sandbox
        assert "Python output" in observation and time.monotonic() - step_started < 2.0
        attacker.join(timeout=30)
        assert time.monotonic() - started < 3 + 5  # --call-timeout 3, then the kill
        assert failure and isinstance(failure[0], SessionExpired), failure
        assert "took longer than 3 s" in str(failure[0])
        assert health_latency(url) < 1.0
        _, info = hostile.reset(seed=0)  # the next reset opens a new session, and it plays
        assert "Python output" in hostile.step(info["expert_action"])[0]
    finally:
        hostile.close()
        bystander.close()


def test_sleeping_sandbox_code_in_several_sessions_does_not_slow_the_others(servers):
    url = servers["math"]
    sleepers = [RemoteEnv(url, "math", max_turns=4) for _ in range(3)]
    bystander = RemoteEnv(url, "math", max_turns=10)
    threads = []
    try:
        for env in sleepers:
            env.reset(seed=0)
        bystander.reset(seed=2)
        for env in sleepers:
            threads.append(threading.Thread(target=lambda env=env: pytest.raises(SessionExpired, env.step,
                                                                                SLEEPING_CODE)))
            threads[-1].start()
        time.sleep(0.5)
        latencies = []
        for _ in range(5):
            started = time.monotonic()
            bystander.step("no answer here")
            latencies.append(time.monotonic() - started)
        assert max(latencies) < 0.5, latencies  # today's engine lock made this 38 s
        assert health_latency(url) < 1.0
    finally:
        for thread in threads:
            thread.join(timeout=30)
        for env in [*sleepers, bystander]:
            env.close()


# --- caps ---------------------------------------------------------------------------------------

def raw_request(url: str, head: str, body_chunks, timeout: float = 10) -> tuple[int, str]:
    """Send a hand-made request (``body_chunks`` lazily, stopping once the server answers); its status and body."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(head.encode())
        try:
            for chunk in body_chunks:
                if select.select([connection], [], [], 0)[0]:
                    break  # answered before the body ended, as it should be
                connection.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    status_line, _, rest = answer.decode(errors="replace").partition("\r\n")
    return int(status_line.split()[1]), rest.partition("\r\n\r\n")[2]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def refusal_reads_right(body: str) -> bool:
    """The 413's reason, where it arrived: the server closes with the client's bytes unread, and the kernel's
    reset can drop the body's segment before the client reads it (the status line has come by then)."""
    return body == "" or "over 65536 bytes" in body


def test_oversized_bodies_are_refused_without_being_kept(servers):
    url, pid = servers["math"], servers["processes"]["math"].pid
    before = rss_bytes(pid)
    declared = ("POST /reset HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {200 * 2**20}\r\n\r\n")
    status, body = raw_request(url, declared, (b"x" * 2**20 for _ in range(200)))
    assert status == 413 and refusal_reads_right(body)
    chunked = "POST /step HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, body = raw_request(url, chunked, (b"100000\r\n" + b"y" * 2**20 + b"\r\n" for _ in range(100)))
    assert status == 413 and refusal_reads_right(body)
    assert rss_bytes(pid) - before < 50 * 2**20
    assert health_latency(url) < 1.0


def test_oversized_websocket_messages_close_the_connection(servers):
    url = servers["math"]
    with connect(ws_url(url), open_timeout=10, max_size=None) as session:
        session.send(json.dumps({"type": "step", "data": {"text": "x" * 2**20}}))
        with pytest.raises(ConnectionClosed) as closed:
            session.recv(timeout=10)
        assert closed.value.rcvd.code == 1009
    assert health_latency(url) < 1.0


def test_websocket_and_http_sessions_share_one_cap(servers):
    url = servers["math"]
    sessions = []
    try:
        for _ in range(6):  # each resets at once: --reset-deadline is 2 s
            sessions.append(connect(ws_url(url), open_timeout=10))
            assert exchange(sessions[-1], {"type": "reset", "data": {"seed": 0}})["type"] == "observation"
        status, answer = http(url, "/reset", {"seed": 0})
        assert status == 503 and "all 6 sessions" in answer["detail"]
        with connect(ws_url(url), open_timeout=10) as extra:
            assert json.loads(extra.recv(timeout=10))["data"]["code"] == "CAPACITY_REACHED"
        sessions.pop().close()
        deadline = time.monotonic() + 10
        while (status := http(url, "/reset", {"seed": 0})[0]) == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 200
    finally:
        for session in sessions:
            session.close()


def test_a_connection_that_never_resets_is_closed_and_frees_its_place(servers):
    url = servers["math"]
    started = time.monotonic()
    with connect(ws_url(url), open_timeout=10) as idle:
        idle.send(json.dumps({"type": "state"}))  # talking without playing does not keep it open
        json.loads(idle.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            idle.recv(timeout=10)
    assert closed.value.rcvd.code == 4000 and closed.value.rcvd.reason.startswith("SessionExpired: no reset")
    assert 2 <= time.monotonic() - started < 6


def test_the_docs_list_every_option_a_client_may_send():
    """docs/envs_at_scale.md's table is what a client reads: every declared option is on its family's row."""
    from pathlib import Path

    from regym.envs import ENTRY_POINTS, TextEnv, env_class

    rows = {line.split("|")[1].strip().strip("`"): line for line in
            (Path(__file__).resolve().parents[2] / "docs" / "envs_at_scale.md").read_text().splitlines()
            if line.startswith("| `regym/") or line.startswith("| every family")}
    for name in TextEnv.client_options:
        assert f"`{name}`" in rows["every family"], name
    for env_id in ENTRY_POINTS:
        for name in set(env_class(env_id).client_options) - set(TextEnv.client_options):
            assert f"`{name}`" in rows[env_id], (env_id, name)


def test_a_worker_that_dies_ends_only_its_session(servers):
    """The OOM killer (or a crashing engine) takes one env process: its session ends, named; nothing else."""
    import psutil

    url, server = servers["math"], psutil.Process(servers["processes"]["math"].pid)
    doomed, bystander = RemoteEnv(url, "math", max_turns=10), RemoteEnv(url, "math", max_turns=10)
    try:
        before = {process.pid for process in server.children(recursive=True)}
        doomed.reset(seed=0)
        (worker,) = [process for process in server.children(recursive=True) if process.pid not in before]
        bystander.reset(seed=1)
        worker.kill()
        with pytest.raises(SessionExpired, match="died during step"):
            doomed.step("no answer")
        assert bystander.step("no answer")[4]["turn"] == 1
        assert health_latency(url) < 1.0
        doomed.reset(seed=0)
        assert doomed.step("no answer")[4]["turn"] == 1
    finally:
        doomed.close()
        bystander.close()
