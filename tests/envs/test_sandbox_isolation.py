"""The local sandbox's own walls: seccomp tables, the allowlisted file system, cgroups, other ABIs."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from regym.envs.sandbox import LocalSandbox, SandboxLimits
from regym.envs.sandbox.cgroups import CgroupLimits
from regym.envs.sandbox.filesystem import python_filesystem
from regym.envs.sandbox.seccomp import (
    ARCHITECTURES,
    DENIED,
    MEMORY_OUTSIDE_ADDRESS_SPACE,
    NEW_PROCESS,
    SIGNALLING,
)

REPO = Path(__file__).resolve().parents[2]
LIMITS = SandboxLimits(cpu_seconds=5, wall_seconds=15.0, memory_bytes=512 << 20)
HEADERS = {"x86_64": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "aarch64": "/usr/include/asm-generic/unistd.h"}


@pytest.mark.parametrize("machine", list(ARCHITECTURES))
def test_seccomp_syscall_numbers_match_the_kernel_headers(machine):
    header = Path(HEADERS[machine])
    if not header.exists():
        pytest.skip(f"{header} not installed (Debian: linux-libc-dev)")
    defined = {name: int(number) for name, number in re.findall(r"#define __NR_(\w+)\s+(\d+)\b", header.read_text())}
    table = ARCHITECTURES[machine].syscalls
    checked = [name for name in table if name in defined]
    assert len(checked) >= 0.9 * len(table), f"most names should be in {header}"
    assert {name: table[name] for name in checked} == {name: defined[name] for name in checked}


def test_every_refused_call_has_a_number():
    """A name missing from a table would be skipped silently by the filter: only legacy calls may be."""
    wanted = set(DENIED + SIGNALLING + NEW_PROCESS + MEMORY_OUTSIDE_ADDRESS_SPACE) | {"clone", "clone3", "socket"}
    assert wanted <= set(ARCHITECTURES["x86_64"].syscalls)
    legacy = {"fork", "vfork", "mknod", "uselib", "modify_ldt", "iopl", "ioperm"}  # absent from newer ABIs
    assert wanted - legacy <= set(ARCHITECTURES["aarch64"].syscalls)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="int 0x80 is the x86 32-bit ABI")
def test_a_32_bit_system_call_kills_the_call():
    """The classic filter bypass: the same numbers mean other calls in the i386 ABI."""
    code = textwrap.dedent("""
        import ctypes, mmap
        machine_code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax, 20 (i386 getpid); int 0x80; ret
        page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(machine_code)
        function = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
        print("i386 getpid returned", function())
    """)
    unsandboxed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if "returned" not in unsandboxed.stdout:
        pytest.skip(f"this kernel runs no i386 system calls: {unsandboxed.returncode}")
    with LocalSandbox(LIMITS, pool_size=0, audit_hook=False) as box:
        result = box.run(code)
    assert "returned" not in result.output and result.signal == "SIGSYS", result


def test_the_call_sees_only_the_python_install():
    binds = python_filesystem().binds
    for path in binds:
        for private in (REPO / ".git", REPO / "regym", REPO / "tests", Path("/home"), Path("/etc")):
            assert not Path(path).is_relative_to(private) and not private.is_relative_to(path), path
    with LocalSandbox(LIMITS, pool_size=0, audit_hook=False) as box:
        root = box.run("import os\nprint(sorted(os.listdir('/')))")
        checkout = box.run(f"import os\nprint(sorted(os.listdir({str(REPO)!r})))")
    assert root.ok, root
    assert not {"etc", "home", "proc", "sys", "var", "run", "boot", "mnt"} & set(eval(root.output))
    assert "FileNotFoundError" in checkout.output or set(eval(checkout.output)) <= {".venv"}


def test_threads_work_in_one_process_mode():
    """Without a cgroup, clone is allowed only with CLONE_THREAD: threads must still start."""
    code = textwrap.dedent("""
        import threading
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(sum(range(i * 1000)))) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(len(results))
    """)
    with LocalSandbox(LIMITS, pool_size=0, audit_hook=False, cgroup=False) as box:
        assert box.run(code).output.strip() == "4"
        forked = box.run("import os\nos.fork()")
    assert "PermissionError" in forked.output


def test_no_cgroup_is_left_behind():
    limits = CgroupLimits.detect()
    if limits is None:
        pytest.skip("no writable cgroup on this host")
    def groups() -> set[str]:
        return {os.path.join(h.parent, name) for h in limits.hierarchies for name in os.listdir(h.parent)
                if name.startswith("regym-sandbox-")}

    before = groups()
    with LocalSandbox(SandboxLimits(wall_seconds=2.0), pool_size=2, audit_hook=False) as box:
        assert box.run("print(1)").ok
        assert box.run("import os, time\nfor _ in range(4):\n    os.fork()\ntime.sleep(30)").timed_out  # 16 processes
        assert groups() - before  # the two waiting workers have theirs
    assert not groups() - before


def test_a_venv_under_tmp_is_exposed():
    """CI venvs may live anywhere, /tmp included, which the sandbox covers with its own tmpfs."""
    root = Path(tempfile.mkdtemp(prefix="regym-venv-", dir="/tmp"))  # mode 0700: a fresh uid cannot enter
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True, timeout=120)
        python = root / ".venv" / "bin" / "python"
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        host_paths = [str(REPO)] + [p for p in sys.path if p.endswith("site-packages")]
        Path(purelib, "regym-host.pth").write_text("\n".join(host_paths) + "\n")
        script = ("from regym.envs.sandbox import LocalSandbox\n"
                  "with LocalSandbox(pool_size=0) as box:\n"
                  "    print(box.run('import sys, fractions\\nprint(sys.prefix, fractions.Fraction(1, 3))').output)")
        completed = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=300, cwd="/")
        assert completed.stdout.split() == [str(root / ".venv"), "1/3"], completed.stdout + completed.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)
