"""What a sandboxed call returns, whatever backend ran it."""

from __future__ import annotations

import signal
from dataclasses import dataclass

_SIGNAL_MEANING = {
    "SIGXCPU": "CPU time limit",
    "SIGKILL": "killed",
    "SIGSEGV": "crashed (stack overflow or bad memory access)",
    "SIGXFSZ": "file size limit",
}


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class OutputBudget:
    """Keep the head and tail of a stream within ``limit`` bytes, counting what is dropped.

    Memory stays bounded however much the code prints: only ``limit`` bytes are held.
    """

    def __init__(self, limit: int):
        self.tail_size = limit // 4
        self.head_size = limit - self.tail_size
        self.head = bytearray()
        self.tail = b""
        self.omitted = 0

    def add(self, chunk: bytes) -> None:
        room = self.head_size - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            joined = self.tail + chunk
            self.omitted += max(0, len(joined) - self.tail_size)
            self.tail = joined[-self.tail_size :] if self.tail_size else b""

    def text(self) -> str:
        middle = f"\n...[{self.omitted} bytes omitted]...\n" if self.omitted else ""
        return self.head.decode(errors="replace") + middle + self.tail.decode(errors="replace")


@dataclass
class SandboxResult:
    """Output and fate of one call.

    ``output`` is stdout and stderr interleaved as a terminal shows them, cut to the
    byte budget (head and tail kept, ``omitted_bytes`` dropped in between).
    """

    output: str
    exit_code: int | None
    timed_out: bool = False
    signal: str | None = None
    omitted_bytes: int = 0
    duration_s: float = 0.0
    error: str | None = None
    """Set when the sandbox itself failed (no worker could start, the code was refused)."""
    out_of_memory: bool = False
    """The kernel's OOM killer stopped a process of the call (its cgroup's memory limit)."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None

    @property
    def truncated(self) -> bool:
        return self.omitted_bytes > 0

    def describe(self) -> str:
        """The text a policy sees: the output, then a note on anything abnormal."""
        notes = []
        if self.error:
            notes.append(f"sandbox error: {self.error}")
        if self.out_of_memory:
            notes.append("a process was killed: memory limit of the call reached")
        if self.timed_out:
            notes.append("stopped: wall-time limit reached")
        elif self.signal:
            notes.append(f"stopped by {self.signal} ({_SIGNAL_MEANING.get(self.signal, 'signal')})")
        elif self.exit_code not in (0, None):
            notes.append(f"exit code {self.exit_code}")
        if self.omitted_bytes:
            notes.append(f"output truncated: {self.omitted_bytes} bytes omitted")
        text = self.output if self.output.strip() else ("(no output)" if not notes else "")
        return (text.rstrip("\n") + ("\n" if text.strip() and notes else "") + "\n".join(f"[{n}]" for n in notes)).strip()
