"""The code sandbox: escape/fault suite on the real local backend, Docker wiring on a fake engine."""

import base64
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from regym.envs.sandbox import LocalSandbox, SandboxLimits, make_sandbox
from regym.envs.sandbox.local import WORKER_SCRIPT

LIMITS = SandboxLimits(cpu_seconds=2, wall_seconds=4.0, memory_bytes=512 << 20, output_bytes=8 << 10)
SLACK_S = 3.0  # process teardown and a loaded 2-core machine


@pytest.fixture(scope="module")
def sandbox():
    with LocalSandbox(LIMITS, pool_size=2) as box:
        report = box.protections()
        print("\nactive protections:\n" + "\n".join(f"  {k}: {v}" for k, v in report.items()))
        yield box


def _refused(result) -> bool:
    """Refused by the audit hook or the kernel, or absent: the call's file system holds only the Python install."""
    return not result.ok and ("PermissionError" in result.output or "Operation not permitted" in result.output
                              or "Network is unreachable" in result.output or "FileNotFoundError" in result.output)


ESCAPES = {
    "infinite loop": ("while True:\n    pass", lambda r: r.signal == "SIGXCPU" or r.timed_out),
    "fork bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        lambda r: not r.ok,
    ),
    "10 GB allocation": ("x = bytearray(10 * 1024**3)\nprint('allocated')", lambda r: "MemoryError" in r.output),
    "write 1 GB to disk": (
        "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'a' * 2**20)\nprint('wrote')",
        lambda r: "File too large" in r.output or "No space left" in r.output,
    ),
    "read /etc/shadow": ("print(open('/etc/shadow').read())", lambda r: _refused(r) and "root:" not in r.output),
    "read outside work dir": ("print(open('../../etc/passwd').read())", lambda r: "root:" not in r.output),
    "socket to 127.0.0.1": (
        "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', 22))\nprint('CONNECTED')",
        lambda r: not r.ok and "CONNECTED" not in r.output,
    ),
    "kill the parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", _refused),
    "deep recursion": (
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)",
        lambda r: not r.ok,
    ),
    "print 100 MB": (
        "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2**20)",
        lambda r: r.truncated and len(r.output.encode()) <= LIMITS.output_bytes + 100,
    ),
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_escape_is_stopped_and_next_call_works(sandbox, name):
    code, stopped = ESCAPES[name]
    started = time.monotonic()
    result = sandbox.run(code)
    elapsed = time.monotonic() - started
    assert stopped(result), f"{name}: {result}"
    assert elapsed < LIMITS.wall_seconds + SLACK_S, f"{name} took {elapsed:.1f}s"
    assert sandbox.run("print(6 * 7)").output.strip() == "42"


KERNEL_ONLY = {
    "read /etc/shadow": ("privileges", ESCAPES["read /etc/shadow"]),
    "socket to 127.0.0.1": ("network", ESCAPES["socket to 127.0.0.1"]),
    "kill the parent": ("privileges", ESCAPES["kill the parent"]),
    "fork bomb": ("privileges", ESCAPES["fork bomb"]),
}


@pytest.mark.parametrize("name", list(KERNEL_ONLY))
def test_kernel_layers_hold_without_the_audit_hook(name):
    """Audit hooks are bypassable from C; the kernel layers alone must still stop each escape."""
    layer, (code, stopped) = KERNEL_ONLY[name]
    with LocalSandbox(LIMITS, pool_size=0, audit_hook=False) as box:
        report = box.protections()
        if "UNAVAILABLE" in report.get(layer, "UNAVAILABLE"):
            pytest.skip(f"{layer} layer not available here: {report.get(layer)}")
        result = box.run(code)
        assert stopped(result), f"{name}: {result}"
        assert box.run("print(1 + 1)").output.strip() == "2"


def test_protections_report_names_every_layer(sandbox):
    report = sandbox.protections()
    for key in ("network", "rlimits", "audit_hook", "wall_time", "output"):
        assert key in report
    assert "namespace" in report["network"] or "audit hook" in report["network"]
    if os.geteuid() == 0:
        assert report["privileges"].startswith("unprivileged uid")


def test_calls_are_isolated_from_each_other(sandbox):
    first = sandbox.run("open('note.txt', 'w').write('secret')\nimport os\nprint(os.getcwd())")
    second = sandbox.run("import os\nprint(os.path.exists('note.txt'), os.getcwd())")
    assert first.ok and second.ok
    assert second.output.split()[0] == "False"
    assert not os.path.exists(first.output.strip())  # the work dir is deleted after the call


def test_last_expression_is_echoed_and_errors_are_reported(sandbox):
    assert sandbox.run("x = 21\nx * 2").output.strip() == "42"
    broken = sandbox.run("def f(:\n  pass")
    assert broken.exit_code == 1 and "SyntaxError" in broken.describe()
    raised = sandbox.run("print('before')\n1 / 0")
    assert raised.output.startswith("before") and "ZeroDivisionError" in raised.output
    assert "worker.py" not in raised.output


def test_numeric_libraries_import_inside_the_sandbox(sandbox):
    result = sandbox.run("import sympy\nsympy.Rational(1, 3) + sympy.Rational(1, 6)")
    assert result.ok and result.output.strip() == "1/2"


def test_warm_pool_call_is_fast(sandbox):
    sandbox.warm()
    started = time.monotonic()
    assert sandbox.run("print(1)").ok
    assert time.monotonic() - started < 1.0


def test_bad_input_is_an_error_result_not_an_exception(sandbox):
    assert sandbox.run(None).error
    assert "longer than" in sandbox.run("x" * (LIMITS.max_code_bytes + 1)).error
    with pytest.raises(ValueError):
        SandboxLimits(cpu_seconds=0)
    with pytest.raises(ValueError):
        make_sandbox("vm")


def test_worker_from_env_mode_runs_code_like_the_container():
    """The Docker image's entry point is the same worker script in --from-env mode."""
    code = base64.b64encode(b"import math\nmath.factorial(5)").decode()
    completed = subprocess.run([sys.executable, "-I", str(WORKER_SCRIPT), "--from-env"], capture_output=True,
                               text=True, env={"SANDBOX_CODE_B64": code}, timeout=60, cwd="/tmp")
    assert completed.returncode == 0 and completed.stdout.strip() == "120"


# --- Docker backend: the real SDK against a fake Engine API (argument wiring only) --------------
class _FakeEngine(BaseHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def _reply(self, status, body=None, content_type="application/json"):
        payload = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        path = "/" + path.split("/", 2)[2] if path.startswith("/v1.") else path
        self.requests.append((self.command, path, json.loads(body) if body else None))
        if path == "/version":
            return self._reply(200, {"ApiVersion": "1.43", "Version": "24.0.0"})
        if path == "/containers/create":
            return self._reply(201, {"Id": "c0ffee", "Warnings": []})
        if path == "/containers/c0ffee/json":
            return self._reply(200, {"Id": "c0ffee", "Name": "/sbx", "Config": {"Tty": False, "Labels": {}},
                                     "State": {"Status": "exited"}})
        if path == "/containers/c0ffee/wait":
            return self._reply(200, {"StatusCode": 0})
        if path == "/containers/c0ffee/logs":
            frame = b"\x01\x00\x00\x00" + len(b"42\n").to_bytes(4, "big") + b"42\n"
            return self._reply(200, frame, "application/vnd.docker.raw-stream")
        if path in ("/containers/c0ffee/start", "/containers/c0ffee", "/containers/c0ffee/kill"):
            return self._reply(204)
        return self._reply(404, {"message": f"fake engine: no route {path}"})

    do_GET = do_POST = do_DELETE = _handle


@pytest.fixture
def fake_engine():
    _FakeEngine.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}", _FakeEngine.requests
    server.shutdown()


def test_docker_backend_wires_the_security_options(fake_engine):
    docker = pytest.importorskip("docker")
    from regym.envs.sandbox.docker_backend import DockerSandbox

    url, requests = fake_engine
    box = DockerSandbox(LIMITS, client=docker.DockerClient(base_url=url, version="1.43"))
    result = box.run("print(6 * 7)")
    assert result.ok and result.output == "42\n"
    create = next(body for method, path, body in requests if path == "/containers/create")
    host = create["HostConfig"]
    assert create["Image"] == "regym-sandbox:latest" and create["User"] == "65534:65534"
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["Memory"] == LIMITS.memory_bytes == host["MemorySwap"]
    assert host["PidsLimit"] == LIMITS.max_processes and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"] and "/work" in host["Tmpfs"]
    assert {u["Name"]: u["Soft"] for u in host["Ulimits"]}["cpu"] == LIMITS.cpu_seconds
    env = dict(item.split("=", 1) for item in create["Env"])
    assert base64.b64decode(env["SANDBOX_CODE_B64"]).decode() == "print(6 * 7)"
    assert ("DELETE", "/containers/c0ffee", None) in requests  # the container is always removed
    box.close()


def test_dockerfile_is_minimal_and_runs_the_worker():
    from regym.envs.sandbox.docker_backend import DOCKERFILE, build_context

    text = DOCKERFILE.read_text()
    assert text.splitlines()[[line.startswith("FROM") for line in text.splitlines()].index(True)].startswith(
        "FROM python:3.11")
    assert "USER 65534:65534" in text and "COPY worker.py" in text and "--from-env" in text
    with tarfile.open(fileobj=build_context()) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "worker.py"]
