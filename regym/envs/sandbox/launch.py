"""The few steps between the host and bubblewrap, run as their own tiny process.

``python -I -S -B launch.py PLAN -- bwrap ...``: joins the call's cgroups, re-exposes a
Python install hidden under an untraversable directory (root only), drops to the call's
unique uid (root only), applies the rlimits, then ``exec``s bwrap. Standard library only,
no ``regym`` import (it starts without ``site``).

Why a process of its own rather than a ``preexec_fn``: a ``preexec_fn`` forces
``subprocess`` to ``fork()`` the host (``vfork()`` otherwise), and forking a process
holding a model copies its page tables with the GIL held: measured here, 200 ms for a
3 GB host against 0.6 ms with ``vfork``. This script costs about 14 ms of CPU per worker,
paid in the pool's background thread.

The re-exposure: bwrap runs as the unprivileged uid and cannot bind a path it cannot
reach, such as a pyenv install under ``/root`` (mode 0700). In a private mount namespace
of this process (never the host's), a tmpfs covers the hidden directory and the
allowlisted paths below it are bound back; the sandbox still sees only bwrap's
allowlist. This is the only mount code regym runs itself.
"""

from __future__ import annotations

import json
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18


def join_cgroups(procs_files: list[str]) -> None:
    for path in procs_files:
        with open(path, "w") as handle:
            handle.write("0")


def reexpose(hidden: list[str], exposed: list[str]) -> None:
    import ctypes  # only a root host with a hidden install gets here; it costs 2 ms of start-up

    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            number = ctypes.get_errno()
            raise OSError(number, f"{what}: {os.strerror(number)}")

    def mount(source: bytes | None, target: str, fstype: bytes | None, flags: int, data: bytes | None) -> None:
        check(libc.mount(source, target.encode(), fstype, flags, data), f"mount {target}")

    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    # Handles opened in the new namespace (a bind source must belong to it), before the tmpfs hides them.
    handles = [(path, os.open(path, os.O_PATH), os.path.isdir(path)) for path in exposed]
    for directory in hidden:
        mount(b"tmpfs", directory, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755")
    for path, handle, is_directory in handles:
        os.makedirs(path if is_directory else os.path.dirname(path), mode=0o755, exist_ok=True)
        if not is_directory:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        mount(f"/proc/self/fd/{handle}".encode(), path, None, MS_BIND | MS_REC, None)
        os.close(handle)


def drop_to(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def main() -> None:
    plan = json.loads(sys.argv[1])
    command = sys.argv[3:]
    if sys.argv[2] != "--" or not command:
        sys.stderr.write("usage: launch.py PLAN_JSON -- COMMAND...\n")
        sys.exit(2)
    try:
        join_cgroups(plan["cgroup_procs"])
        if plan["hidden"]:
            reexpose(plan["hidden"], plan["exposed"])
        if plan["uid"] is not None:
            drop_to(plan["uid"])
        for limit, soft, hard in plan["rlimits"]:
            resource.setrlimit(limit, (soft, hard))
        os.execv(command[0], command)
    except OSError as error:
        sys.stderr.write(f"regym sandbox launch failed: {error}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
