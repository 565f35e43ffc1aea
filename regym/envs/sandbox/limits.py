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
    """Address space (``RLIMIT_AS``); allocations past it raise MemoryError."""
    file_size_bytes: int = 16 << 20
    """Largest file the code may write (``RLIMIT_FSIZE``); writes past it fail with EFBIG."""
    disk_bytes: int = 32 << 20
    """Size of the private tmpfs work dir (and /tmp) when mount namespaces are available."""
    max_processes: int = 32
    """Processes and threads of the call's uid (``RLIMIT_NPROC``; enforced for non-root uids)."""
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
