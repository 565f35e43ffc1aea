"""Playing groups of episodes in forked worker processes, for CPU-bound envs and scripted agents.

Workers take the next group in turn and send each finished record back to the parent,
which stays the log's only writer. The first error in any worker stops the run in the
parent, as the same error where it can cross the process boundary intact.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

Group = TypeVar("Group")
Record = dict[str, Any]


def play_in_processes(
    groups: Sequence[Group],
    play_group: Callable[[Group, Callable[[Record], None]], None],
    write: Callable[[Record], None],
    workers: int,
) -> None:
    """Run ``play_group(group, emit)`` for every group in up to ``workers`` forked processes;
    ``write`` each emitted record in this process as it arrives."""
    context = multiprocessing.get_context("fork")
    next_group, results = context.Value("i", 0), context.Queue()

    def work() -> None:
        try:
            while True:
                with next_group.get_lock():
                    index, next_group.value = next_group.value, next_group.value + 1
                if index >= len(groups):
                    break
                play_group(groups[index], lambda record: results.put(("record", record)))
        except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises
            results.put(("error", _portable(error)))
        results.put(("done", None))

    processes = [context.Process(target=work, daemon=True) for _ in range(min(workers, len(groups)))]
    for process in processes:
        process.start()
    running = len(processes)
    try:
        while running:
            try:
                kind, payload = results.get(timeout=1.0)
            except queue.Empty:
                if not any(process.is_alive() for process in processes):
                    raise RuntimeError("an eval worker died without reporting") from None
                continue
            if kind == "record":
                write(payload)
            elif kind == "error":
                raise payload  # groups still in other workers are replayed on resume
            else:
                running -= 1
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()


def _portable(error: BaseException) -> Exception:
    """``error`` itself if it crosses a process boundary intact (so a dead endpoint stays an
    ``EndpointError`` in the parent), else a ``RuntimeError`` with its type and message."""
    if isinstance(error, Exception):
        try:
            if type(pickle.loads(pickle.dumps(error))) is type(error):
                return error
        except Exception:  # noqa: BLE001 - anything unpicklable is sent as text
            pass
    return RuntimeError(f"{type(error).__name__}: {error}")


__all__ = ["play_in_processes"]
