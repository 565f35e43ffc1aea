"""The local backend: every call runs in its own freshly started, isolated interpreter.

A worker (``worker.py``) is a new ``python -I`` process started inside bubblewrap
(``bubblewrap.py``): its own namespaces, an allowlisted read-only file system, a seccomp
filter, a unique unprivileged uid when regym runs as root, and a cgroup with memory and
pids limits on the whole call where the host allows one (else one process per call).
It waits for one job. The parent sends the code, keeps at most ``output_bytes`` of the
output (head and tail; the rest is read and dropped, never buffered), kills every
process of the call at the wall-time limit, and throws the worker, its namespaces and
its tmpfs work dir away. With a warm pool (``pool.py``) the start is paid ahead of time,
so a call costs about a millisecond.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import queue
import secrets
import selectors
import signal
import subprocess
import threading
import time

from regym.envs.sandbox.bubblewrap import WORKER_SCRIPT, Launcher
from regym.envs.sandbox.limits import SandboxLimits
from regym.envs.sandbox.pool import WorkerPool
from regym.envs.sandbox.result import OutputBudget, SandboxResult, signal_name

STARTUP_TIMEOUT_S = 60.0
PRELOAD = ("math", "cmath", "fractions", "decimal", "itertools", "functools", "collections", "statistics",
           "random", "re", "string", "heapq", "bisect", "json")
_counter = itertools.count()
__all__ = ["WORKER_SCRIPT", "LocalSandbox", "Worker", "kill_uid"]


def kill_uid(uid: int) -> int:
    """SIGKILL every process whose owner is ``uid``; returns how many were signalled."""
    killed = 0
    for _ in range(20):
        found = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    os.kill(int(entry.name), signal.SIGKILL)
                    found += 1
            except (FileNotFoundError, ProcessLookupError):
                continue
        killed += found
        if not found:
            break
    return killed


def _exit_status(returncode: int | None) -> int | None:
    """bwrap reports a worker killed by signal N as exit status 128 + N (like a shell): undo that."""
    if returncode is not None and 128 < returncode <= 128 + 64:
        return -(returncode - 128)
    return returncode


class _Reaper:
    """Finishes the clean-up of stopped workers off the caller's path.

    A stopped call's processes are already sent SIGKILL; what remains (waiting for its
    namespaces to be torn down, removing its cgroup, closing pipes) takes a millisecond or
    two that a warm call need not wait for.
    """

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, finish) -> None:
        if os.getpid() != self._pid:  # a forked host: the parent's queue and thread are not ours
            self._reset()
        with self._condition:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sandbox-reaper", daemon=True)
                self._thread.start()
        self._queue.put(finish)

    def _run(self) -> None:
        while True:
            finish = self._queue.get()
            try:
                finish()
            finally:
                with self._condition:
                    self._pending -= 1
                    self._condition.notify_all()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted clean-up is done."""
        if os.getpid() != self._pid:
            return True
        with self._condition:
            return self._condition.wait_for(lambda: self._pending == 0, timeout)


_reaper = _Reaper()
atexit.register(_reaper.drain, 10.0)


class Worker:
    """One sandboxed interpreter waiting for its single job."""

    def __init__(self, launcher: Launcher, *, audit_hook: bool = True, preload=PRELOAD):
        self.limits = launcher.limits
        name = f"regym-sandbox-{os.getpid()}-{next(_counter)}-{secrets.token_hex(4)}"
        self.workdir = f"/tmp/{name}"  # inside the call's private tmpfs
        config = {
            "workdir": self.workdir,
            "read_roots": list(launcher.filesystem.binds),
            "audit_hook": audit_hook,
            "preload": list(preload),
        }
        environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": self.workdir,
                       "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.process, call, self.output, self.status = launcher.start(config, environment)
        self.uid, self.cgroup = call.uid, call.cgroup
        self.layers: dict[str, str] = {}
        self.layer_errors: dict[str, str] = {}
        self._announce()

    def _announce(self) -> None:
        """Wait for the ``ready`` line and record which isolation layers took effect."""
        line = b""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(self.output, selectors.EVENT_READ)
            while not line.endswith(b"\n") and len(line) < 1 << 16:
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    break
                chunk = os.read(self.output, 1 << 16)
                if not chunk:
                    break
                line += chunk
        if not line.startswith(b"ready "):
            self.stop(sweep_uid=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
            os.set_blocking(self.process.stdout.fileno(), False)
            with contextlib.suppress(OSError):
                line = (self.process.stdout.read() or b"") + line  # launch.py's and bwrap's own messages
            self.finish()
            raise RuntimeError(f"sandbox worker failed to start: {line.decode(errors='replace')[-2000:]!r}")
        report = json.loads(line[len(b"ready "):])
        self.layers, self.layer_errors = report["layers"], report["errors"]

    def alive(self) -> bool:
        return self.process.poll() is None

    def _reported_status(self) -> int | None:
        """The status the worker wrote before it closed its output, if it got that far."""
        os.set_blocking(self.status, False)
        try:
            text = os.read(self.status, 16)
        except BlockingIOError:
            return None
        return int(text) if text.strip().isdigit() else None

    def run(self, code: str) -> SandboxResult:
        """Run ``code`` once; this worker is finished afterwards, whatever happened."""
        started = time.monotonic()
        deadline = started + self.limits.wall_seconds
        output = OutputBudget(self.limits.output_bytes)
        timed_out = False
        exit_code = None
        try:
            try:
                self.process.stdin.write((json.dumps({"code": code}) + "\n").encode())
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            with selectors.DefaultSelector() as selector:
                selector.register(self.output, selectors.EVENT_READ)
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not selector.select(remaining):
                        timed_out = True
                        break
                    chunk = os.read(self.output, 1 << 16)
                    if not chunk:
                        break
                    output.add(chunk)
            if not timed_out:
                exit_code = self._reported_status()
            if not timed_out and exit_code is None:  # killed or crashed: bwrap has the signal
                try:
                    exit_code = _exit_status(self.process.wait(timeout=max(0.05, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    timed_out = True
        finally:
            out_of_memory = self.cgroup is not None and self.cgroup.out_of_memory()
            self.stop(sweep_uid=timed_out or exit_code is None)
            _reaper.submit(self.finish)
        stopped_by = signal_name(-exit_code) if exit_code is not None and exit_code < 0 else None
        if timed_out:
            exit_code, stopped_by = None, None
        return SandboxResult(
            output=output.text(), exit_code=exit_code, timed_out=timed_out, signal=stopped_by,
            omitted_bytes=output.omitted, duration_s=time.monotonic() - started, out_of_memory=out_of_memory,
        )

    def stop(self, *, sweep_uid: bool) -> None:
        """SIGKILL bwrap and every process of the call, now.

        Killing bwrap's monitor ends the call's pid namespace (``--die-with-parent``), and
        with it every process of the call; the cgroup's processes (where there is one) are
        killed too. Sweeping ``/proc`` for the call's uid (about 10 ms) is the last resort
        for a call with no cgroup that did not end on its own.
        """
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill(wait=False)
        elif self.uid is not None and sweep_uid:
            kill_uid(self.uid)

    def finish(self) -> None:
        """After ``stop``: wait for the call to be gone, remove its cgroup, close its pipes."""
        if self.cgroup is not None:
            self.cgroup.kill(wait=True)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        for descriptor in (self.output, self.status):
            with contextlib.suppress(OSError):
                os.close(descriptor)
        if self.cgroup is not None:
            self.cgroup.remove()

    def kill(self) -> None:
        """Stop the worker and clean up, waiting for both (the pool's way to discard one)."""
        self.stop(sweep_uid=True)
        self.finish()


class LocalSandbox:
    """Run untrusted Python locally, one fresh sandboxed process per call.

    ``pool_size`` workers are kept started and waiting (0: start one per call).
    ``protections()`` reports how each protection is enforced on this machine. The
    constructor starts one worker, so a host that cannot sandbox (no bubblewrap, user
    namespaces refused) fails here, loudly, not at the first call. Switches exist so
    that tests can check layers on their own: ``audit_hook=False`` leaves only the
    kernel's walls, ``cgroup=False`` forces one process per call.
    """

    backend = "local"

    def __init__(self, limits: SandboxLimits | None = None, *, pool_size: int = 2,
                 network_namespace: bool = True, mount_namespace: bool = True,
                 drop_privileges: bool = True, audit_hook: bool = True, cgroup: bool = True,
                 cgroup_parent: str | None = None):
        """``cgroup_parent``: a cgroup v2 directory with the memory and pids controllers
        delegated to this user, when the host's own cgroup cannot be used."""
        if not mount_namespace:
            raise ValueError("the local sandbox's allowlisted file system cannot be turned off")
        self.limits = limits or SandboxLimits()
        self._launcher = Launcher(self.limits, network_namespace=network_namespace,
                                  drop_privileges=drop_privileges, cgroup=cgroup, cgroup_parent=cgroup_parent)
        self._audit_hook = audit_hook
        first = self._spawn()  # fails here, loudly, where this host cannot sandbox
        first.kill()
        self._last_layers: dict[str, str] = first.layers
        self._last_errors: dict[str, str] = first.layer_errors
        self._pool = WorkerPool(self._spawn, pool_size)
        self._lock = threading.Lock()

    def _spawn(self) -> Worker:
        return Worker(self._launcher, audit_hook=self._audit_hook)

    def run(self, code: str) -> SandboxResult:
        if not isinstance(code, str):
            return SandboxResult("", None, error=f"code must be text, got {type(code).__name__}")
        if len(code.encode(errors="replace")) > self.limits.max_code_bytes:
            return SandboxResult("", None, error=f"code longer than {self.limits.max_code_bytes} bytes")
        try:
            worker = self._pool.take()
        except RuntimeError as error:
            return SandboxResult("", None, error=str(error))
        with self._lock:
            self._last_layers, self._last_errors = worker.layers, worker.layer_errors
        return worker.run(code)

    def warm(self, timeout: float = 60.0) -> bool:
        """Wait until ``pool_size`` workers are started and waiting."""
        return self._pool.warm(timeout)

    def protections(self) -> dict[str, str]:
        """Each protection and how it is enforced here (the launcher's set-up and a real worker's report)."""
        with self._lock:
            layers, errors = dict(self._last_layers), dict(self._last_errors)
        report = {**self._launcher.describe(), **layers}
        for name, error in errors.items():
            report[name] = f"UNAVAILABLE ({error})"
        report.setdefault("audit_hook", "disabled")
        killed = ["bwrap, which ends the call's pid namespace"]
        if self._launcher.cgroups is not None:
            killed.append("every process of the call's cgroup")
        report["wall_time"] = f"parent kills {' and '.join(killed)} after {self.limits.wall_seconds} s"
        report["output"] = f"parent keeps {self.limits.output_bytes} bytes (head+tail), drops the rest unbuffered"
        report["isolation_per_call"] = ("fresh interpreter, namespaces, tmpfs work dir, host uid and cgroup per call "
                                        "(where used); a worker is never reused")
        return report

    def close(self) -> None:
        self._pool.close()
        _reaper.drain()

    def __enter__(self) -> LocalSandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
