"""A warm pool: workers started ahead of time so a call never waits for an interpreter.

Each worker serves exactly one call and is then thrown away (a process that ran
untrusted code is never trusted again); a background thread starts replacements.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol


class PooledWorker(Protocol):
    def alive(self) -> bool: ...

    def kill(self) -> None: ...


class WorkerPool:
    """Keep ``size`` workers started and waiting; hand one out per call."""

    def __init__(self, spawn: Callable[[], PooledWorker], size: int = 2):
        if size < 0:
            raise ValueError("pool size must be >= 0")
        self.spawn = spawn
        self.size = size
        self.last_error: str | None = None
        self._ready: collections.deque[PooledWorker] = collections.deque()
        self._condition = threading.Condition()
        self._closed = False
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None
        self._start_thread()

    def _start_thread(self) -> None:
        if self.size > 0:
            self._thread = threading.Thread(target=self._replenish, name="sandbox-pool", daemon=True)
            self._thread.start()

    def _after_fork(self) -> None:
        """A forked host shares the parent's worker pipes: forget them and start afresh."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._ready = collections.deque()
            self._condition = threading.Condition()
            self._start_thread()

    def _replenish(self) -> None:
        failures = 0
        while True:
            with self._condition:
                while not self._closed and len(self._ready) >= self.size:
                    self._condition.wait()
                if self._closed:
                    return
            try:
                worker = self.spawn()
                failures = 0
            except Exception as error:  # noqa: BLE001 - reported by take()
                self.last_error = f"{type(error).__name__}: {error}"
                failures += 1
                time.sleep(min(5.0, 0.1 * 2**failures))
                continue
            with self._condition:
                if self._closed:
                    worker.kill()
                    return
                self._ready.append(worker)
                self._condition.notify_all()

    def take(self) -> PooledWorker:
        """A started worker: a warm one if any is waiting, else one started now."""
        self._after_fork()
        if self._closed:
            raise RuntimeError("sandbox pool is closed")
        while True:
            with self._condition:
                worker = self._ready.popleft() if self._ready else None
                self._condition.notify_all()
            if worker is None:
                return self.spawn()
            if worker.alive():
                return worker
            worker.kill()

    def warm(self, timeout: float = 60.0) -> bool:
        """Block until the pool is full (e.g. before timing calls); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while len(self._ready) < self.size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Kill the waiting workers, and wait for a start in progress to be killed too."""
        with self._condition:
            self._closed = True
            workers, self._ready = list(self._ready), collections.deque()
            self._condition.notify_all()
        for worker in workers:
            worker.kill()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and os.getpid() == self._pid:
            thread.join(timeout)
