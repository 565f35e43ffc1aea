"""The Docker backend: one throw-away container per call, same interface as the local one.

The image (``containers/sandbox/Dockerfile``) holds Python, sympy/numpy and the same
``worker.py`` the local backend runs, in ``--from-env`` mode. Each call creates a
container with no network, a read-only root, a small tmpfs work dir, memory, pids and
CPU limits, an unprivileged user, every capability dropped and ``no-new-privileges``;
the code travels base64-encoded in an environment variable. Containers start in about
a second, so this backend suits hosts where the local kernel layers are unavailable,
not latency-bound RL loops.
"""

from __future__ import annotations

import base64
import io
import tarfile
import time
from pathlib import Path

from regym.envs.sandbox.limits import SandboxLimits
from regym.envs.sandbox.result import OutputBudget, SandboxResult, signal_name

DOCKERFILE = Path(__file__).resolve().parents[3] / "containers" / "sandbox" / "Dockerfile"
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
DEFAULT_IMAGE = "regym-sandbox:latest"
SANDBOX_USER = "65534:65534"


def _docker():
    try:
        import docker
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError("the Docker backend needs the docker SDK: pip install 'regym[docker]'") from error
    return docker


def build_context() -> io.BytesIO:
    """The image's build context as a tar: the Dockerfile and worker.py, nothing else."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(DOCKERFILE, arcname="Dockerfile")
        tar.add(WORKER_SCRIPT, arcname="worker.py")
    buffer.seek(0)
    return buffer


class DockerSandbox:
    """Run untrusted Python in a fresh container per call."""

    backend = "docker"

    def __init__(self, limits: SandboxLimits | None = None, *, image: str = DEFAULT_IMAGE,
                 client=None, base_url: str | None = None, cpus: float = 1.0):
        docker = _docker()
        self.limits = limits or SandboxLimits()
        self.image = image
        self.cpus = cpus
        self.client = client or (docker.DockerClient(base_url=base_url) if base_url else docker.from_env())

    def build_image(self) -> str:
        """Build the sandbox image from ``containers/sandbox/Dockerfile``; returns its id."""
        image, _ = self.client.images.build(fileobj=build_context(), custom_context=True, tag=self.image, rm=True)
        return image.id

    def container_options(self, code: str) -> dict:
        """Keyword arguments of ``containers.create`` for one call (the whole security policy)."""
        docker = _docker()
        limits = self.limits
        return {
            "environment": {"SANDBOX_CODE_B64": base64.b64encode(code.encode()).decode()},
            "network_mode": "none",
            "read_only": True,
            "user": SANDBOX_USER,
            "working_dir": "/work",
            "tmpfs": {"/work": f"size={limits.disk_bytes},mode=1777", "/tmp": f"size={limits.disk_bytes},mode=1777"},
            "mem_limit": limits.memory_bytes,
            "memswap_limit": limits.memory_bytes,
            "pids_limit": limits.max_processes,
            "nano_cpus": int(self.cpus * 1e9),
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "ulimits": [
                docker.types.Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds + 1),
                docker.types.Ulimit(name="fsize", soft=limits.file_size_bytes, hard=limits.file_size_bytes),
                docker.types.Ulimit(name="nofile", soft=limits.max_open_files, hard=limits.max_open_files),
                docker.types.Ulimit(name="core", soft=0, hard=0),
            ],
            "labels": {"regym.sandbox": "1"},
        }

    def run(self, code: str) -> SandboxResult:
        if not isinstance(code, str):
            return SandboxResult("", None, error=f"code must be text, got {type(code).__name__}")
        if len(code.encode(errors="replace")) > self.limits.max_code_bytes:
            return SandboxResult("", None, error=f"code longer than {self.limits.max_code_bytes} bytes")
        docker = _docker()
        started = time.monotonic()
        try:
            container = self.client.containers.create(self.image, **self.container_options(code))
        except docker.errors.DockerException as error:
            return SandboxResult("", None, error=f"docker: {error}")
        timed_out = False
        exit_code = None
        output = OutputBudget(self.limits.output_bytes)
        try:
            container.start()
            try:
                exit_code = container.wait(timeout=self.limits.wall_seconds).get("StatusCode")
            except Exception:  # noqa: BLE001 - requests' ReadTimeout/ConnectionError on the wait
                timed_out = True
                container.kill()
            for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
                output.add(chunk)
        except docker.errors.DockerException as error:
            return SandboxResult(output.text(), exit_code, error=f"docker: {error}")
        finally:
            try:
                container.remove(force=True)
            except docker.errors.DockerException:
                pass
        signal = None
        if exit_code is not None and exit_code > 128 and not timed_out:
            signal = signal_name(exit_code - 128)
        return SandboxResult(output.text(), None if timed_out else exit_code, timed_out=timed_out, signal=signal,
                             omitted_bytes=output.omitted, duration_s=time.monotonic() - started)

    def protections(self) -> dict[str, str]:
        limits = self.limits
        return {
            "network": "--network none",
            "filesystem": f"read-only root; tmpfs /work and /tmp of {limits.disk_bytes} bytes",
            "privileges": f"user {SANDBOX_USER}, all capabilities dropped, no-new-privileges",
            "memory": f"--memory {limits.memory_bytes} (no swap)",
            "processes": f"--pids-limit {limits.max_processes}",
            "rlimits": f"cpu={limits.cpu_seconds}s fsize={limits.file_size_bytes} nofile={limits.max_open_files}",
            "audit_hook": "same audit hook as the local worker",
            "wall_time": f"container killed after {limits.wall_seconds} s",
            "output": f"{limits.output_bytes} bytes kept (head+tail)",
        }

    def close(self) -> None:
        self.client.close()
