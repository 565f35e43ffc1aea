"""Running untrusted Python from a policy: the code tool of the Math and ToolUse envs.

Two backends behind one interface (``run(code) -> SandboxResult``, ``protections()``,
``close()``):

* ``LocalSandbox`` (default): a fresh interpreter per call inside bubblewrap (its own
  namespaces, an allowlisted read-only file system holding only the Python install, a
  seccomp filter, a unique unprivileged uid, a cgroup or else one process per call,
  rlimits; the audit hook is defence in depth only), with a warm pool so a call costs
  about a millisecond;
* ``DockerSandbox``: one container per call from ``containers/sandbox/Dockerfile`` with
  ``--network none``, a read-only root and memory/pids limits.
"""

from __future__ import annotations

import atexit
import threading
from typing import Protocol

from regym.envs.sandbox.limits import SandboxLimits
from regym.envs.sandbox.local import LocalSandbox
from regym.envs.sandbox.result import SandboxResult


class Sandbox(Protocol):
    backend: str

    def run(self, code: str) -> SandboxResult: ...

    def protections(self) -> dict[str, str]: ...

    def close(self) -> None: ...


def make_sandbox(backend: str = "local", limits: SandboxLimits | None = None, **options) -> Sandbox:
    """Build a sandbox by backend name ("local" or "docker")."""
    if backend == "local":
        return LocalSandbox(limits, **options)
    if backend == "docker":
        from regym.envs.sandbox.docker_backend import DockerSandbox

        return DockerSandbox(limits, **options)
    raise ValueError(f"unknown sandbox backend {backend!r}; use 'local' or 'docker'")


_shared: LocalSandbox | None = None
_shared_lock = threading.Lock()


def shared_sandbox() -> LocalSandbox:
    """One local sandbox per host process, shared by all envs (one warm pool, not one per env)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = LocalSandbox()
            atexit.register(_shared.close)
        return _shared


__all__ = ["LocalSandbox", "Sandbox", "SandboxLimits", "SandboxResult", "make_sandbox", "shared_sandbox"]
