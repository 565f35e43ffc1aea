"""The local backend: every call runs in its own freshly started, isolated interpreter.

A worker (``worker.py``) is a new ``python -I`` process that isolates itself, reports
the layers that took effect and waits for one job. The parent sends the code, keeps at
most ``output_bytes`` of the output (head and tail; the rest is read and dropped, never
buffered), kills every process of the call at the wall-time limit, and throws the
worker and its work dir away. With a warm pool (``pool.py``) the interpreter start is
paid ahead of time, so a call costs milliseconds.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

from regym.envs.sandbox.limits import SandboxLimits
from regym.envs.sandbox.pool import WorkerPool
from regym.envs.sandbox.result import OutputBudget, SandboxResult, signal_name

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
STARTUP_TIMEOUT_S = 60.0
PRELOAD = ("math", "cmath", "fractions", "decimal", "itertools", "functools", "collections", "statistics",
           "random", "re", "string", "heapq", "bisect", "json")
_counter = itertools.count()


def _read_roots() -> list[str]:
    """What the job may read: the Python install (stdlib and site-packages), nothing else."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        roots.add(sysconfig.get_path(key))
    return sorted(os.path.realpath(r) for r in roots if r and os.path.isdir(r))


def _unique_uid() -> int:
    """A uid no other process uses, so that "kill everything of this uid" is exact."""
    return (1 << 30) + secrets.randbelow(1 << 29)


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


class Worker:
    """One isolated interpreter waiting for its single job."""

    def __init__(self, limits: SandboxLimits, *, network_namespace=True, mount_namespace=True,
                 drop_privileges=True, audit_hook=True, preload=PRELOAD):
        self.limits = limits
        # The worker creates its work dir: inside its private tmpfs when it has a mount
        # namespace, so nothing lands on the host disk even if this process dies first.
        name = f"regym-sandbox-{os.getpid()}-{next(_counter)}-{secrets.token_hex(4)}"
        self.workdir = os.path.join(tempfile.gettempdir(), name)
        self.uid = _unique_uid() if drop_privileges and os.geteuid() == 0 else None
        config = {
            "workdir": self.workdir,
            "uid": self.uid,
            "limits": limits.as_dict(),
            "read_roots": _read_roots(),
            "network_namespace": network_namespace,
            "mount_namespace": mount_namespace,
            "audit_hook": audit_hook,
            "preload": list(preload),
            "parent_pid": os.getpid(),
        }
        environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": self.workdir,
                       "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-u", "-B", str(WORKER_SCRIPT), "--serve", json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
            cwd="/", env=environment, start_new_session=True, close_fds=True,
        )
        self.layers: dict[str, str] = {}
        self.layer_errors: dict[str, str] = {}
        self._announce()

    def _announce(self) -> None:
        """Wait for the ``ready`` line and record which isolation layers took effect."""
        line = b""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n") and len(line) < 1 << 16:
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    break
                chunk = os.read(self.process.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                line += chunk
        if not line.startswith(b"ready "):
            self.kill()
            raise RuntimeError(f"sandbox worker failed to start: {line.decode(errors='replace')[-2000:]!r}")
        report = json.loads(line[len(b"ready "):])
        self.layers, self.layer_errors = report["layers"], report["errors"]

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, code: str) -> SandboxResult:
        """Run ``code`` once; this worker is finished afterwards, whatever happened."""
        started = time.monotonic()
        deadline = started + self.limits.wall_seconds
        output = OutputBudget(self.limits.output_bytes)
        timed_out = False
        try:
            try:
                self.process.stdin.write((json.dumps({"code": code}) + "\n").encode())
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            stream = self.process.stdout.fileno()
            with selectors.DefaultSelector() as selector:
                selector.register(stream, selectors.EVENT_READ)
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not selector.select(remaining):
                        timed_out = True
                        break
                    chunk = os.read(stream, 1 << 16)
                    if not chunk:
                        break
                    output.add(chunk)
            if not timed_out:
                try:
                    self.process.wait(timeout=max(0.05, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    timed_out = True
        finally:
            self.kill()
        exit_code = self.process.returncode
        stopped_by = signal_name(-exit_code) if exit_code is not None and exit_code < 0 else None
        if timed_out:
            stopped_by = None
        return SandboxResult(
            output=output.text(), exit_code=exit_code, timed_out=timed_out, signal=stopped_by,
            omitted_bytes=output.omitted, duration_s=time.monotonic() - started,
        )

    def kill(self) -> None:
        """Kill the worker and everything it started, then delete its work dir."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.uid is not None:
            kill_uid(self.uid)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class LocalSandbox:
    """Run untrusted Python locally, one fresh isolated process per call.

    ``pool_size`` workers are kept started and waiting (0: start one per call).
    ``protections()`` reports the layers that really took effect on this machine.
    Isolation switches exist so that tests can check each kernel layer on its own.
    """

    backend = "local"

    def __init__(self, limits: SandboxLimits | None = None, *, pool_size: int = 2,
                 network_namespace: bool = True, mount_namespace: bool = True,
                 drop_privileges: bool = True, audit_hook: bool = True):
        self.limits = limits or SandboxLimits()
        self._options = dict(network_namespace=network_namespace, mount_namespace=mount_namespace,
                             drop_privileges=drop_privileges, audit_hook=audit_hook)
        self._pool = WorkerPool(self._spawn, pool_size)
        self._last_layers: dict[str, str] | None = None
        self._last_errors: dict[str, str] = {}
        self._lock = threading.Lock()

    def _spawn(self) -> Worker:
        return Worker(self.limits, **self._options)

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
        """Each protection and how it is enforced here (measured from a real worker)."""
        if self._last_layers is None:
            worker = self._pool.take()
            self._last_layers, self._last_errors = worker.layers, worker.layer_errors
            worker.kill()
        report = dict(self._last_layers)
        for name, error in self._last_errors.items():
            report[name] = f"UNAVAILABLE ({error})"
        for name in ("network", "filesystem", "privileges"):
            report.setdefault(name, "disabled")
        if "filesystem" not in self._last_layers:
            report["filesystem"] += "; work dir on the host disk, limited by the file-size rlimit only"
        if "network" not in self._last_layers and "audit_hook" in self._last_layers:
            report["network"] = "no network namespace; the audit hook refuses socket creation"
        report["wall_time"] = f"parent kills the worker's process group and uid after {self.limits.wall_seconds} s"
        report["output"] = f"parent keeps {self.limits.output_bytes} bytes (head+tail), drops the rest unbuffered"
        report["isolation_per_call"] = "fresh interpreter and work dir per call; a worker is never reused"
        return report

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> LocalSandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
