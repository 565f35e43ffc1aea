"""Progress of long jobs, readable on a terminal and in a log file alike.

A new user who runs ``make demo`` on a fresh machine waits minutes while the tiny
pipeline builds; they must see from the first minute which stage runs and how long
it has left. On a terminal that is a rich bar with an ETA; when stdout is a file or
a pipe (CI logs, ``nohup``), one plain line per tenth of the stage, so logs stay short.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO


class StageProgress:
    """One stage of a job with a known number of units (steps, episodes, envs).

    Use as a context manager; call ``advance()`` per unit, with an optional status
    (for example the running loss) shown beside the count.
    """

    def __init__(self, description: str, total: int, *, stream: TextIO | None = None,
                 terminal: bool | None = None):
        self.description, self.total = description, max(int(total), 0)
        self.stream = stream if stream is not None else sys.stdout
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.done, self.status = 0, ""
        self._bar = self._task = None
        self._next_line = 0
        self.started = time.perf_counter()

    def __enter__(self) -> StageProgress:
        self.started = time.perf_counter()
        if self.terminal:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                                 console=Console(file=self.stream), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total or None, status="")
        else:
            self._line(f"{self.description}: started ({self.total} to do)")
            self._next_line = max(1, self.total // 10)
        return self

    def advance(self, count: int = 1, status: str = "") -> None:
        self.done += count
        self.status = status
        if self._bar is not None:
            self._bar.update(self._task, advance=count, status=status)
        elif self.done >= self._next_line and self.done < self.total:
            elapsed = time.perf_counter() - self.started
            left = elapsed / self.done * (self.total - self.done)
            extra = f", {status}" if status else ""
            self._line(f"{self.description}: {self.done}/{self.total}{extra}, about {_duration(left)} left")
            self._next_line = self.done + max(1, self.total // 10)

    def __exit__(self, kind, error, traceback) -> None:
        if self._bar is not None:
            self._bar.stop()
        elapsed = _duration(time.perf_counter() - self.started)
        if error is None:
            extra = f" ({self.status})" if self.status else ""
            self._line(f"{self.description}: done in {elapsed}{extra}")
        else:
            self._line(f"{self.description}: failed after {elapsed}: {type(error).__name__}")

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


_QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


@contextlib.contextmanager
def library_progress_bars_off(models: bool = True) -> Iterator[None]:
    """Inside the block, the libraries' own bars stay silent: transformers' "Loading weights" and
    "Writing model shards", its GGUF de-quantising, the Hub's and datasets' bars.

    A command shows its own stages (``StageProgress``); a loader's bar in between says nothing
    the stage does not, and on a pipe it is hundreds of lines. ``models``: the command loads models,
    so transformers is imported here (a second or two) to switch its bars off; otherwise only the
    environment variables that the Hub and datasets read on import are set. The switches of
    libraries already imported are restored on exit.
    """
    restore: list[Callable[[], object]] = []
    if models:
        import transformers.modeling_gguf_pytorch_utils as gguf
        import transformers.utils.logging as transformers_logging

        if transformers_logging.is_progress_bar_enabled():
            transformers_logging.disable_progress_bar()
            restore.append(transformers_logging.enable_progress_bar)
        if hasattr(gguf, "tqdm"):  # the GGUF loader calls tqdm directly, past transformers' switch
            original = gguf.tqdm
            gguf.tqdm = functools.partial(original, disable=True)
            restore.append(lambda: setattr(gguf, "tqdm", original))
    hub = sys.modules.get("huggingface_hub.utils")
    if hub is not None and not hub.are_progress_bars_disabled():
        hub.disable_progress_bars()
        restore.append(hub.enable_progress_bars)
    datasets = sys.modules.get("datasets")
    if datasets is not None and datasets.is_progress_bar_enabled():
        datasets.disable_progress_bars()
        restore.append(datasets.enable_progress_bars)
    saved_env = {name: os.environ.get(name) for name in _QUIET_ENV}
    os.environ.update(_QUIET_ENV)
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
