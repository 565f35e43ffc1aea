"""The seccomp filter of a sandboxed call: the system calls no untrusted program needs.

bubblewrap loads it (``--seccomp FD``) as the last step before it starts the worker, so
it binds the worker and everything the worker starts; a filter can only ever be tightened.
Every refused call fails with ``EPERM`` (``clone3`` with ``ENOSYS``, so that libc falls back
to ``clone``, whose flags a filter can read); a call from another ABI (32-bit ``int 0x80``
on x86_64) kills the process, and x32 calls are refused.

Refused:

* new namespaces and mounts: ``unshare``, ``setns``, ``clone``/``clone3`` with a
  ``CLONE_NEW*`` flag, ``mount``, ``umount2``, ``pivot_root``, ``chroot``, the new mount API;
* device nodes and FIFOs (``mknod``, ``mknodat``);
* looking into other processes: ``ptrace``, ``process_vm_readv/writev``, ``kcmp``,
  ``pidfd_getfd``, ``process_madvise``;
* kernel surfaces a program has no use for and that have carried privilege escalations:
  keyrings, ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring``,
  ``open_by_handle_at``, ``personality``, modules, kexec, reboot, swap, clocks, quotas...;
* signals to pid 1, to process groups and to every process (a pid <= 1 or negative):
  the sandbox's init and its parent are off limits, the program's own children are not;
* sockets other than ``AF_UNIX``, ``AF_INET`` and ``AF_INET6`` (``AF_VSOCK`` reaches the
  hypervisor without any network namespace seeing it; netlink and packet sockets are
  kernel attack surface);
* with ``allow_fork=False`` ("one process per call", used where no cgroup bounds the
  whole call): ``fork``, ``vfork`` and ``clone`` without ``CLONE_THREAD``; threads share
  the address space, so ``RLIMIT_AS`` still bounds the call's memory. Also the ways to
  hold memory outside the address space: ``memfd_create``, System V ``shmget`` and
  ``msgget`` (a cgroup charges those to the call; ``RLIMIT_AS`` does not see them).

Why hand-assembled classic BPF rather than libseccomp: the program is one fixed deny
list of about 90 instructions, readable here in full; libseccomp would add a C library
(and ctypes glue around it) to produce the same bytes. The syscall numbers are checked
against the kernel headers by ``tests/envs/test_sandbox_isolation.py``, and each rule is
observed from inside a real sandbox by ``tests/envs/test_sandbox_escapes.py``.
"""

from __future__ import annotations

import errno
import platform
import struct
import sys
from dataclasses import dataclass, field

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (linux/seccomp.h)
NR_OFFSET, ARCH_OFFSET, ARGS_OFFSET = 0, 4, 16
# classic BPF opcodes (linux/bpf_common.h)
LOAD_WORD = 0x20  # BPF_LD | BPF_W | BPF_ABS
JUMP_EQUAL, JUMP_GREATER, JUMP_GREATER_EQUAL, JUMP_ANY_BIT = 0x15, 0x25, 0x35, 0x45  # BPF_JMP | op | BPF_K
RETURN = 0x06  # BPF_RET | BPF_K
RET_KILL_PROCESS, RET_ERRNO, RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000

CLONE_THREAD = 0x00010000
CLONE_NEW_NAMESPACES = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
# (CLONE_NEWTIME exists only for clone3 and unshare, both refused whole: in clone it is exit-signal bits)
SOCKET_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6
X32_SYSCALL_BIT = 0x40000000

DENIED = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "open_tree_attr",
    "mknod", "mknodat",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise", "process_mrelease",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "open_by_handle_at", "name_to_handle_at", "personality", "modify_ldt", "uselib",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
    "acct", "quotactl", "quotactl_fd", "syslog", "iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "lookup_dcookie", "vhangup", "nfsservctl", "fanotify_init", "migrate_pages", "move_pages",
    "sethostname", "setdomainname",
)
SIGNALLING = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open")
SOCKETS = ("socket", "socketpair")
NEW_PROCESS = ("fork", "vfork")
MEMORY_OUTSIDE_ADDRESS_SPACE = ("memfd_create", "shmget", "msgget")

# System call numbers per ABI (arch/x86/entry/syscalls/syscall_64.tbl; include/uapi/asm-generic/unistd.h).
_SHARED = {  # numbers from 424 on are the same on every architecture
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "pidfd_open": 434, "clone3": 435, "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442,
    "quotactl_fd": 443, "process_mrelease": 448, "open_tree_attr": 467,
}
X86_64 = {
    **_SHARED,
    "shmget": 29, "socket": 41, "socketpair": 53, "clone": 56, "fork": 57, "vfork": 58, "kill": 62,
    "msgget": 68, "ptrace": 101, "syslog": 103, "rt_sigqueueinfo": 129, "mknod": 133, "uselib": 134,
    "personality": 135, "vhangup": 153, "modify_ldt": 154, "pivot_root": 155, "adjtimex": 159, "chroot": 161,
    "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168,
    "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "nfsservctl": 180, "tkill": 200, "lookup_dcookie": 212,
    "clock_settime": 227, "tgkill": 234, "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
    "migrate_pages": 256, "mknodat": 259, "unshare": 272, "move_pages": 279, "rt_tgsigqueueinfo": 297,
    "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "finit_module": 313, "memfd_create": 319, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
}
AARCH64 = {
    **_SHARED,
    "lookup_dcookie": 18, "mknodat": 33, "umount2": 39, "mount": 40, "pivot_root": 41, "nfsservctl": 42,
    "chroot": 51, "vhangup": 58, "quotactl": 60, "acct": 89, "personality": 92, "unshare": 97,
    "kexec_load": 104, "init_module": 105, "delete_module": 106, "clock_settime": 112, "syslog": 116,
    "ptrace": 117, "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138, "reboot": 142,
    "sethostname": 161, "setdomainname": 162, "settimeofday": 170, "adjtimex": 171, "msgget": 186,
    "shmget": 194, "socket": 198, "socketpair": 199, "add_key": 217, "request_key": 218, "keyctl": 219,
    "clone": 220, "swapon": 224, "swapoff": 225, "migrate_pages": 238, "move_pages": 239,
    "rt_tgsigqueueinfo": 240, "perf_event_open": 241, "fanotify_init": 262, "name_to_handle_at": 264,
    "open_by_handle_at": 265, "clock_adjtime": 266, "setns": 268, "process_vm_readv": 270,
    "process_vm_writev": 271, "kcmp": 272, "finit_module": 273, "memfd_create": 279, "bpf": 280,
    "userfaultfd": 282, "kexec_file_load": 294,
}


@dataclass(frozen=True)
class Architecture:
    """One system-call ABI: its ``AUDIT_ARCH_*`` value (linux/audit.h) and its numbers."""

    name: str
    audit_arch: int
    syscalls: dict[str, int] = field(repr=False)
    x32_bit: int | None = None
    """x86_64 only: the bit that marks an x32 call, which shares ``AUDIT_ARCH_X86_64``."""


ARCHITECTURES = {
    "x86_64": Architecture("x86_64", 0xC000003E, X86_64, x32_bit=X32_SYSCALL_BIT),
    "aarch64": Architecture("aarch64", 0xC00000B7, AARCH64),
}


def architecture(machine: str | None = None) -> Architecture:
    machine = machine or platform.machine()
    if machine not in ARCHITECTURES or sys.byteorder != "little":
        raise RuntimeError(f"the sandbox's seccomp filter has no system-call table for {machine} "
                           f"({sys.byteorder}-endian); supported: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[machine]


class _Program:
    """A tiny classic-BPF assembler: jump targets are labels, resolved by ``assemble``."""

    def __init__(self):
        self.instructions: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.instructions)

    def load(self, offset: int) -> None:
        self.instructions.append((LOAD_WORD, 0, 0, offset))

    def jump(self, opcode: int, value: int, if_true: str | None, if_false: str | None = None) -> None:
        """Compare the accumulator with ``value``; ``None`` means the next instruction."""
        self.instructions.append((opcode, if_true, if_false, value))

    def ret(self, value: int) -> None:
        self.instructions.append((RETURN, 0, 0, value))

    def assemble(self) -> bytes:
        code = b""
        for index, (opcode, if_true, if_false, value) in enumerate(self.instructions):
            offsets = []
            for target in (if_true, if_false):
                offset = 0 if target in (0, None) else self.labels[target] - index - 1
                if not 0 <= offset <= 255:
                    raise ValueError(f"seccomp jump from {index} to {target} out of range")
                offsets.append(offset)
            code += struct.pack("=HBBI", opcode, offsets[0], offsets[1], value)  # struct sock_filter
        return code


def build_filter(allow_fork: bool, machine: str | None = None) -> bytes:
    """The filter as bubblewrap's ``--seccomp`` wants it: an array of ``struct sock_filter``."""
    arch = architecture(machine)
    numbers = arch.syscalls
    program = _Program()
    program.load(ARCH_OFFSET)
    program.jump(JUMP_EQUAL, arch.audit_arch, None, "kill")
    program.load(NR_OFFSET)
    if arch.x32_bit is not None:
        program.jump(JUMP_GREATER_EQUAL, arch.x32_bit, "deny")
    denied = DENIED + (() if allow_fork else NEW_PROCESS + MEMORY_OUTSIDE_ADDRESS_SPACE)
    for name in denied:
        if name in numbers:
            program.jump(JUMP_EQUAL, numbers[name], "deny")
    program.jump(JUMP_EQUAL, numbers["clone3"], "no_such_call")
    program.jump(JUMP_EQUAL, numbers["clone"], "clone_flags")
    for name in SIGNALLING:
        program.jump(JUMP_EQUAL, numbers[name], "signal_target")
    for name in SOCKETS:
        program.jump(JUMP_EQUAL, numbers[name], "socket_family")
    program.ret(RET_ALLOW)

    program.label("clone_flags")  # clone(flags, ...): flags is the first argument on both ABIs
    program.load(ARGS_OFFSET)
    program.jump(JUMP_ANY_BIT, CLONE_NEW_NAMESPACES, "deny")
    if not allow_fork:
        program.jump(JUMP_ANY_BIT, CLONE_THREAD, "allow", "deny")
    program.ret(RET_ALLOW)

    program.label("signal_target")  # the target pid is the first argument; pid_t is the low 32 bits
    program.load(ARGS_OFFSET)
    program.jump(JUMP_ANY_BIT, 0x80000000, "deny")
    program.jump(JUMP_GREATER, 1, "allow", "deny")

    program.label("socket_family")
    program.load(ARGS_OFFSET)
    for family in SOCKET_FAMILIES:
        program.jump(JUMP_EQUAL, family, "allow")
    program.ret(RET_ERRNO | errno.EPERM)

    program.label("allow")
    program.ret(RET_ALLOW)
    program.label("deny")
    program.ret(RET_ERRNO | errno.EPERM)
    program.label("no_such_call")
    program.ret(RET_ERRNO | errno.ENOSYS)
    program.label("kill")
    program.ret(RET_KILL_PROCESS)
    return program.assemble()


def describe(allow_fork: bool) -> str:
    """One line for ``protections()``."""
    forks = "" if allow_fork else ("; fork/vfork/clone without CLONE_THREAD (one process per call) and "
                                   "memfd_create/shmget/msgget")
    return ("seccomp filter refuses namespaces (unshare, setns, clone with CLONE_NEW*), mount, mknod, ptrace, "
            "keyrings, bpf, perf, userfaultfd, io_uring, personality, open_by_handle_at, signals to pid <= 1 "
            f"or groups, sockets other than unix/inet/inet6{forks}; other ABIs are killed")
