"""The env containers, checked without Docker: each Dockerfile's own CMD serves its family and its own
HEALTHCHECK answers, run here as subprocesses; compose.yaml brings up exactly those images.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_env_service import stop

from regym.agents.expert import ExpertAgent
from regym.cli import serve_env
from regym.envs import ENTRY_POINTS
from regym.envs.service import RemoteEnv
from regym.rollout import rollout

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "containers" / "compose.yaml"
FAMILIES = ["textworld", "alfworld", "math", "tool_use", "webshop"]
ENV_DOCKERFILES = sorted(path for path in (ROOT / "containers").glob("*/*Dockerfile") if "serve-env" in path.read_text())
"""The env-server images; containers/sandbox (the code sandbox) and containers/webshop/Dockerfile (the site) serve no env."""


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        logical.append(pending.strip())
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def commands(dockerfile: Path) -> tuple[list[str], list[str], int]:
    """The image's CMD and HEALTHCHECK command (exec form) and its EXPOSEd port."""
    found = dict(instructions(dockerfile))
    healthcheck = re.fullmatch(r"(?:--\S+\s+)*CMD\s+(\[.*\])", found["HEALTHCHECK"])
    assert healthcheck is not None, f"{dockerfile}: HEALTHCHECK must be CMD in exec form"
    return json.loads(found["CMD"]), json.loads(healthcheck.group(1)), int(found["EXPOSE"])


def compose_services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def dockerfile_of(service: dict) -> Path:
    context = (COMPOSE.parent / service["build"]["context"]).resolve()
    return context / service["build"]["dockerfile"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_compose_brings_up_one_server_per_family_on_distinct_ports():
    services = compose_services()
    assert sorted(services) == sorted(FAMILIES) and len(FAMILIES) == len(ENTRY_POINTS)
    host_ports = set()
    for family, service in services.items():
        dockerfile = dockerfile_of(service)
        assert dockerfile.is_file() and (dockerfile.parents[2] / "pyproject.toml").is_file()
        command, _, exposed = commands(dockerfile)
        assert command[:4] == ["regym", "serve-env", "--env", family]
        assert command[command.index("--host") + 1] == "0.0.0.0"
        assert int(command[command.index("--port") + 1]) == exposed
        (mapping,) = service["ports"]
        host, container = (int(port) for port in mapping.split(":"))
        assert container == exposed
        host_ports.add(host)
        assert ("seccomp=unconfined" in service.get("security_opt", [])) == (family == "math")
        assert "privileged" not in service and "cap_add" not in service
    assert len(host_ports) == len(services)
    assert {path.resolve() for path in ENV_DOCKERFILES} == {dockerfile_of(service) for service in services.values()}


@pytest.mark.slow  # five servers to start: about 15 s on 2 idle cores, a minute on loaded ones
def test_each_dockerfiles_own_command_serves_its_family_and_answers_its_healthcheck():
    """Start all five CMDs at once (each takes seconds to import), then poll each HEALTHCHECK as Docker
    would and play an expert episode on it. Only the port differs from the image: a free one."""
    bin_dir = str(Path(sys.executable).parent)
    environment = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    started = {}
    try:
        for family, service in compose_services().items():
            command, healthcheck, exposed = commands(dockerfile_of(service))
            port = free_port()
            command = [str(port) if arg == str(exposed) else arg for arg in command]
            healthcheck = [arg.replace(f":{exposed}/", f":{port}/") for arg in healthcheck]
            assert f":{port}/health" in " ".join(healthcheck)
            process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
            started[family] = (process, healthcheck, port)
        deadline = time.monotonic() + 180
        for family, (process, healthcheck, port) in started.items():
            while subprocess.run(healthcheck, env=environment, capture_output=True, timeout=30).returncode != 0:
                assert process.poll() is None, f"{family}: serve-env exited with {process.returncode}"
                assert time.monotonic() < deadline, f"{family}: healthcheck never answered"
                time.sleep(0.5)
            env = RemoteEnv(f"http://127.0.0.1:{port}", family, max_turns=8,
                            **({"num_tasks": 2} if family in ("textworld", "alfworld") else {}))
            (played,) = rollout(env, ExpertAgent(), seeds=[0])
            env.close()
            assert played.error is None and played.success, (family, played.error)
    finally:
        for process, _, _ in started.values():
            stop(process)


def test_serve_env_refuses_a_bad_command_line_before_serving(capsys):
    for flags, words in [(["--env", "chess"], "unknown env 'chess'"), (["--split", "test"], "unknown split"),
                         (["--env", "math", "--env-kwargs", '{"split": "id"}'], "--split"),
                         (["--max-sessions", "0"], "max_sessions"),
                         (["--env", "tool_use", "--env-kwargs", '{"colour": 1}'], "colour")]:
        try:
            status = serve_env.main(["--port", "0", *flags])
        except SystemExit as exit:
            status = exit.code
        assert status == 2 and words in capsys.readouterr().err, flags


@pytest.mark.parametrize("path", ENV_DOCKERFILES, ids=lambda path: path.parent.name)
def test_every_env_image_runs_unprivileged_with_a_writable_cache(path):
    found = instructions(path)
    assert ("USER", "65534:65534") in found
    assert any(name == "ENV" and "REGYM_CACHE=/var/cache/regym" in args for name, args in found)
    assert "chown -R 65534:65534 /var/cache/regym" in path.read_text()
