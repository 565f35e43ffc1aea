"""rl-eval against an endpoint that stops answering: retries, then one line, and a rerun resumes.

The endpoints are real sockets on 127.0.0.1: one that accepts connections and never
answers, a closed port, and a minimal OpenAI-compatible chat server that answers "1" (or
HTTP 500 when told to fail).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gymnasium as gym
import pytest

from games import EVAL_COUNT_ID, register_eval_count
from regym.agents.openai_policy import EndpointError, OpenAIPolicy
from regym.eval.runner import TRAJECTORIES, read_log

SUPPORT = Path(__file__).resolve().parents[1] / "support"  # games.py, for the rl-eval subprocess
FAST = ["--request-timeout", "0.5", "--max-retries", "1"]


class ChatServer:
    """/v1/chat/completions answering "1"; after ``answers`` answers (None: never) it sends HTTP ``status``."""

    def __init__(self, answers: int | None = None, status: int = 500):
        self.answers, self.status, self.requests = answers, status, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests += 1
                if owner.answers is not None and owner.answers <= 0:
                    self.reply(owner.status, {"error": {"message": "model crashed", "type": "server_error"}})
                    return
                if owner.answers is not None:
                    owner.answers -= 1
                self.reply(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "1"},
                                              "finish_reason": "stop"}]})

            def reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat_server():
    servers = []

    def start(answers=None, status=500):
        servers.append(ChatServer(answers, status))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def silent_url():
    """A port that accepts connections (the kernel completes the handshake) and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    listener.close()


@pytest.fixture
def closed_url():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def count_game():
    register_eval_count()
    yield
    gym.registry.pop(EVAL_COUNT_ID, None)


def eval_argv(url: str, runs: Path, *extra: str) -> list[str]:
    return ["--openai-base-url", url, "--model-name", "served", "--suite", EVAL_COUNT_ID, "--num-tasks", "2", "--k", "2",
            "--max-turns", "1", "--num-envs", "1", "--no-baselines", "--output-dir", str(runs), *FAST, *extra]


def last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.strip()][-1]


def test_silent_endpoint_stops_with_one_line_in_bounded_time(silent_url, tmp_path):
    """The real command in a fresh process: exit 1, no traceback, the last line says what and how to resume."""
    code = ("import sys; sys.path.insert(0, {support!r}); from games import register_eval_count; "
            "register_eval_count(); from regym.cli.rl_eval import main; sys.exit(main({argv!r}))")
    argv = eval_argv(silent_url, tmp_path / "runs", "--num-envs", "2")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code.format(support=str(SUPPORT), argv=argv)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(SUPPORT.parents[1])})
    elapsed = time.monotonic() - start
    assert done.returncode == 1, done.stderr
    line = last_line(done.stderr)
    log = tmp_path / "runs" / "served--regym-EvalCount-v0--turns1" / TRAJECTORIES
    assert line == (f"rl-eval: error: endpoint {silent_url} did not answer after 2 tries (timeout 0.5 s each); "
                    f"0 finished episodes are kept in {log}: rerun the same command to resume")
    assert elapsed < 60  # two 0.5 s tries and one backoff, plus start-up; not 2 x 120 s


@pytest.mark.parametrize("workers", ["1", "2"])
def test_refused_connection_is_one_line(count_game, closed_url, tmp_path, capsys, workers):
    """Also when (env, split) groups are played in forked workers."""
    from regym.cli.rl_eval import main

    assert main(eval_argv(closed_url, tmp_path / "runs", "--workers", workers)) == 1
    line = last_line(capsys.readouterr().err)
    assert line.startswith(f"rl-eval: error: endpoint {closed_url} could not be reached after 2 tries: ")
    assert "refused" in line.lower() and line.endswith("rerun the same command to resume")


def test_server_errors_are_retried_then_reported(count_game, chat_server, tmp_path, capsys):
    from regym.cli.rl_eval import main

    server = chat_server(answers=0)
    assert main(eval_argv(server.url, tmp_path / "runs", "--max-retries", "2")) == 1
    line = last_line(capsys.readouterr().err)
    assert line.startswith(f"rl-eval: error: endpoint {server.url} answered HTTP 500 after 3 tries: ")
    assert "model crashed" in line and server.requests == 3


def test_rerun_after_the_endpoint_recovers_resumes(count_game, chat_server, tmp_path, capsys):
    """The server dies after three answers; the rerun keeps those episodes and plays only the rest."""
    from regym.cli.rl_eval import main

    server = chat_server(answers=3)
    argv = eval_argv(server.url, tmp_path / "runs")
    log = tmp_path / "runs" / "served--regym-EvalCount-v0--turns1" / TRAJECTORIES
    assert main(argv) == 1
    assert f"3 finished episodes are kept in {log}: rerun" in last_line(capsys.readouterr().err)
    before = read_log(log)
    assert len(before) == 3

    server.answers, server.requests = None, 0  # the endpoint is back
    assert main(argv) == 0
    assert "(3 already logged, resuming)" in capsys.readouterr().err
    after = read_log(log)
    assert len(after) == 2 * 2 * 2 and after[:3] == before  # 2 splits x 2 tasks x k=2; kept, not replayed
    assert server.requests == len(after) - len(before)  # one turn per episode
    assert json.loads(log.with_name("metrics.json").read_text())["complete"]


def test_policy_retries_only_what_retrying_can_fix(chat_server):
    failing, missing = chat_server(answers=0, status=503), chat_server(answers=0, status=404)
    conversation = [[{"role": "user", "content": "go"}]]
    with pytest.raises(EndpointError, match=r"answered HTTP 503 after 3 tries"):
        OpenAIPolicy("m", base_url=failing.url, timeout=1, max_retries=2).chat(conversation)
    with pytest.raises(EndpointError, match=r"answered HTTP 404: model crashed"):
        OpenAIPolicy("m", base_url=missing.url, timeout=1, max_retries=2).chat(conversation)
    assert (failing.requests, missing.requests) == (3, 1)


def test_a_failed_batch_drops_its_queued_requests(silent_url):
    """Eight conversations, two at a time, to a silent endpoint: it stops after the first pair's tries."""
    policy = OpenAIPolicy("m", base_url=silent_url, timeout=0.5, max_retries=0, max_workers=2)
    start = time.monotonic()
    with pytest.raises(EndpointError, match=r"did not answer after 1 try \(timeout 0.5 s each\)"):
        policy.chat([[{"role": "user", "content": str(i)}] for i in range(8)])
    assert time.monotonic() - start < 1.5  # not four rounds of 0.5 s
