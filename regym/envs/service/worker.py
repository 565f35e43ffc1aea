"""One session's env in a process of its own, killed (not waited for) when a call overruns its limit.

A served env runs a stranger's actions: a ``\\boxed{9^{9^{9^{9}}}}`` that math-verify chews on while
holding the GIL, code that sleeps in the sandbox, a web page that never loads. In the server's own
process any of these stalls every session (one GIL, one event loop) and a crash ends them all.
So each session's env lives in an ``EnvWorker``: a process forked from multiprocessing's fork
server (which imported the env families once, so a worker starts in milliseconds), driven over
a pipe. The server thread that serves the session waits on the pipe with a deadline and without
the GIL; past the deadline the worker's whole process group gets SIGKILL, and only that session
ends. In the worker the env runs on the main thread, so signal-based limits (math-verify's
timeouts) work as they do locally.

Cost: a round trip over the pipe per call (measured in ``benchmarks/serve_env_soak.py``) and one
process per session.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

from regym.trajectory import _jsonable

CLOSE_GRACE_S = 2.0
"""How long a closing env (e.g. WebShop ending its shop session) gets before its worker is killed."""
MAX_ERROR_CHARS = 2000
_PR_SET_PDEATHSIG = 1


class WorkerTimeout(Exception):
    """The env did not answer within its limit; its worker was killed."""


class WorkerGone(Exception):
    """The worker process died (crashed, killed by the OOM killer) before answering."""


class EnvFailed(Exception):
    """The env raised: ``kind`` is its exception type's name, ``message`` its text."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


def _context(preload: Sequence[str]) -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["regym.envs.service.worker", *preload])
    return context


def start_fork_server(preload: Sequence[str]) -> None:
    """Start the workers' fork server now, so its imports overlap the server's start, not a first reset."""
    _context(preload)
    multiprocessing.forkserver.ensure_running()


class EnvWorker:
    """A process holding one env made with ``gym.make(env_id, **kwargs)``; ``call`` runs one method in it."""

    def __init__(self, env_id: str, kwargs: dict[str, Any], timeout: float, preload: Sequence[str] = ()):
        context = _context(preload)
        self._connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, env_id, kwargs), name=f"env {env_id}")
        self.process.start()
        child.close()
        self._lock = threading.Lock()
        self.call("make", timeout=timeout)

    def call(self, method: str, *args: Any, timeout: float) -> Any:
        """``method``'s result, or raise ``EnvFailed`` (the env raised), ``WorkerTimeout`` or ``WorkerGone``
        (the worker is killed either way)."""
        with self._lock:
            try:
                self._connection.send((method, args))
                if not self._connection.poll(timeout):
                    self.kill()
                    raise WorkerTimeout(f"the env took longer than {timeout:g} s to {method}")
                answer = self._connection.recv()
            except (EOFError, OSError, BrokenPipeError) as error:
                self.kill()
                code = self.process.exitcode
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                raise WorkerGone(f"the env's process died during {method} ({how})") from error
        if answer[0] == "error":
            raise EnvFailed(answer[1], answer[2])
        return answer[1]

    def close(self) -> None:
        """Let the env close itself for ``CLOSE_GRACE_S``, then kill what is left. Never raises."""
        with contextlib.suppress(WorkerTimeout, WorkerGone, EnvFailed):
            self.call("close", timeout=CLOSE_GRACE_S)
        self.kill()

    def close_in_background(self) -> None:
        """``close`` on a thread of its own: OpenEnv closes the env of an HTTP reset on its event loop."""
        threading.Thread(target=self.close, name="close env worker", daemon=True).start()

    def kill(self) -> None:
        """SIGKILL the worker's process group (the env's own children, e.g. a browser, go with it)."""
        pid = self.process.pid
        if pid is not None and self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # if it died before it could make its group
        self.process.join(timeout=5)
        self._connection.close()


def _serve(connection, env_id: str, kwargs: dict[str, Any]) -> None:
    """The worker's main loop: one request at a time, answered ``("ok", result)`` or ``("error", kind, text)``."""
    import gymnasium as gym

    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _die_with_parent()
    env = None
    while True:
        try:
            method, args = connection.recv()
        except (EOFError, OSError):  # the server went away: free what the env holds elsewhere (a shop session)
            with contextlib.suppress(Exception):
                if env is not None:
                    env.close()
            break
        try:
            if method == "make":
                env = gym.make(env_id, **kwargs)
                result = None
            elif method == "reset":
                seed, options = args
                observation, info = env.reset(seed=seed, options=options)
                result = (observation, _jsonable(info))
            elif method == "step":
                observation, reward, terminated, truncated, info = env.step(*args)
                result = (observation, float(reward), bool(terminated), bool(truncated), _jsonable(info))
            elif method == "close":
                if env is not None:
                    env.close()
                connection.send(("ok", None))
                break
            else:
                raise ValueError(f"unknown worker method {method!r}")
            answer = ("ok", result)
        except Exception as error:  # noqa: BLE001 - every env failure goes back to the session, named
            answer = ("error", type(error).__name__, str(error)[:MAX_ERROR_CHARS])
        try:
            connection.send(answer)
        except (OSError, ValueError):
            break
    os._exit(0)  # nothing of the fork server's state (its atexit hooks) is this process's to run


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its parent (the fork server) exits with the server."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
