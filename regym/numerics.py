"""CPU numerics that rebuild the same bits on any x86-64 machine with AVX2.

A seed fixes what a job computes, not how the CPU rounds it: ATen, MKL and oneDNN pick their
kernels by the CPU they find (AVX-512 here, AVX2 there), and the kernels sum in different orders.
An SFT run rebuilt from its seed on another machine then agrees to three or four digits but not
bit for bit, and the lab refuses to mix it with results measured on the recorded checkpoints.
Pinning all three libraries to their AVX2 paths (MKL's conditional numerical reproducibility mode,
ATen's dispatch, oneDNN's ISA cap) makes a rebuild bit-identical for the same thread count; it
costs nothing measurable on a 2-core SmolLM2 SFT step. The libraries read the variables at their first
computation, not at import, so ``pin_cpu_numerics`` works anywhere before the process's first tensor op
(a process that has already computed keeps its kernels, and ``cpu_numerics`` says so).
"""

from __future__ import annotations

import os

PINNED_CPU_NUMERICS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
"""The environment that pins ATen, MKL and oneDNN to their AVX2 code paths."""


def pinned_in_environment(environ: dict[str, str] | None = None) -> bool:
    """Whether every variable of ``PINNED_CPU_NUMERICS`` is set to its pinned value."""
    environ = os.environ if environ is None else environ
    return all(environ.get(name) == value for name, value in PINNED_CPU_NUMERICS.items())


def cpu_numerics() -> str:
    """The code path this process computes on: ``pinned-avx2`` or ``native-<ATen capability>``.

    Recorded with a job's settings, so that results built on one path are never reused as if they
    came from another. Pinned only counts when ATen really runs AVX2 (a CPU without it falls back).
    """
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if pinned_in_environment() and capability == "AVX2":
        return "pinned-avx2"
    return f"native-{capability.lower()}"


def pin_cpu_numerics() -> str:
    """Pin this process's CPU kernels (call it before any tensor op) and return ``cpu_numerics()``: the
    path it really computes on, ``native-…`` when the pin came too late or the CPU has no AVX2."""
    if cpu_has_avx2():
        os.environ.update(PINNED_CPU_NUMERICS)
    return cpu_numerics()


def cpu_has_avx2() -> bool:
    """AVX2 support as the kernel reports it (``/proc/cpuinfo``); True where that file is absent and
    the CPU is x86-64 (macOS), False on other architectures."""
    try:
        with open("/proc/cpuinfo") as handle:
            return any(line.startswith("flags") and " avx2" in line for line in handle)
    except OSError:
        import platform

        return platform.machine().lower() in ("x86_64", "amd64")
