"""The resource budget of one sandboxed call, shared by every backend."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SandboxLimits:
    """What one call of untrusted code may use before it is stopped."""

    cpu_seconds: int = 5
    """CPU time (``RLIMIT_CPU``); past it the kernel sends SIGXCPU."""
    wall_seconds: float = 10.0
    """Wall-clock time; past it the parent kills every process of the call."""
    memory_bytes: int = 1 << 30
    """Memory of the whole call: its cgroup's limit where the host allows one (the OOM killer
    stops the call past it), and each process's address space (``RLIMIT_AS``: allocations
    past it raise MemoryError; without a cgroup the call is one process, so this bounds it)."""
    file_size_bytes: int = 16 << 20
    """Largest file the code may write (``RLIMIT_FSIZE``); writes past it fail with EFBIG."""
    disk_bytes: int = 32 << 20
    """Size of the call's private tmpfs ``/tmp``, which holds its work dir."""
    max_processes: int = 32
    """Processes and threads of the call: its cgroup's ``pids.max``, and ``RLIMIT_NPROC`` where
    the call has a host uid of its own. Without a cgroup the call may not fork at all."""
    max_open_files: int = 64
    """Open file descriptors (``RLIMIT_NOFILE``)."""
    output_bytes: int = 16 << 10
    """Bytes of stdout+stderr kept (head and tail); the rest is counted and dropped."""
    max_code_bytes: int = 64 << 10
    """Longest program accepted."""

    def __post_init__(self):
        for name, value in asdict(self).items():
            if value <= 0:
                raise ValueError(f"SandboxLimits.{name} must be positive, got {value}")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)
