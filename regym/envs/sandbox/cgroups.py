"""Memory and process limits on a whole call: one cgroup per call, where the host allows it.

``RLIMIT_AS`` and ``RLIMIT_NPROC`` are per process (or per uid): three children may each
hold ``memory_bytes``. A cgroup counts every process of the call together: ``memory.max``
(v2) or ``memory.limit_in_bytes`` (v1) covers their memory, tmpfs pages included, and the
kernel's OOM killer stops the call past it; ``pids.max`` caps its processes and threads.

Where a cgroup can be made, in order: cgroup v2 under a parent that has the ``memory``
and ``pids`` controllers for its children and that this user may write (a given one, this
process's own cgroup, or its parent, e.g. a systemd-delegated ``app.slice``); else
cgroup v1 ``memory`` and ``pids`` hierarchies below this process's own groups (root on
hybrid hosts). With none, ``detect()`` returns ``None`` and the sandbox falls back to
one process per call (see ``seccomp.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

SUPERVISOR_PROCESSES = 2
"""bubblewrap's monitor and its pid-1 reaper live in the call's cgroup too."""

_counter = itertools.count()


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


@dataclass(frozen=True)
class Hierarchy:
    """A cgroup directory under which per-call groups are made."""

    version: int
    parent: str
    controllers: tuple[str, ...]
    """v1: the controller this hierarchy carries; v2: ("memory", "pids")."""


class CallCgroup:
    """The cgroup(s) of one call: created with the limits set, joined before bubblewrap starts."""

    def __init__(self, hierarchies: tuple[Hierarchy, ...], memory_bytes: int, max_processes: int):
        name = f"regym-sandbox-{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"
        self.directories = [os.path.join(h.parent, name) for h in hierarchies]
        self.versions = [h.version for h in hierarchies]
        try:
            for hierarchy, directory in zip(hierarchies, self.directories, strict=True):
                os.mkdir(directory)
                if "memory" in hierarchy.controllers:
                    self._limit_memory(hierarchy.version, directory, memory_bytes)
                if "pids" in hierarchy.controllers:
                    _write(os.path.join(directory, "pids.max"), str(max_processes + SUPERVISOR_PROCESSES))
        except OSError:
            self.remove()
            raise
        self.procs_files = [os.path.join(d, "cgroup.procs") for d in self.directories]
        """Where ``launch.py`` writes its own pid to join the call's groups before it execs bwrap."""

    @staticmethod
    def _limit_memory(version: int, directory: str, memory_bytes: int) -> None:
        if version == 2:
            _write(os.path.join(directory, "memory.max"), str(memory_bytes))
            swap = os.path.join(directory, "memory.swap.max")
            if os.path.exists(swap):
                _write(swap, "0")
            return
        _write(os.path.join(directory, "memory.limit_in_bytes"), str(memory_bytes))
        with contextlib.suppress(OSError):  # only where swap accounting is on
            _write(os.path.join(directory, "memory.memsw.limit_in_bytes"), str(memory_bytes))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for directory in self.directories:
            with contextlib.suppress(OSError):
                found |= {int(line) for line in _read(os.path.join(directory, "cgroup.procs")).split()}
        return found

    def kill(self, wait: bool = True) -> None:
        """SIGKILL every process in the call's cgroups (``cgroup.kill`` where v2 has it);
        with ``wait``, until none is left (a process forking meanwhile is caught too)."""
        for directory, version in zip(self.directories, self.versions, strict=True):
            if version == 2 and os.path.exists(os.path.join(directory, "cgroup.kill")):
                with contextlib.suppress(OSError):
                    _write(os.path.join(directory, "cgroup.kill"), "1")
        for attempt in range(500):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if not wait:
                return
            time.sleep(0.0005 if attempt < 100 else 0.01)

    def out_of_memory(self) -> bool:
        """Whether the kernel's OOM killer stopped a process of this call."""
        for directory, version in zip(self.directories, self.versions, strict=True):
            name = "memory.events" if version == 2 else "memory.oom_control"
            with contextlib.suppress(OSError):
                for line in _read(os.path.join(directory, name)).splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        return False

    def remove(self) -> None:
        for directory in getattr(self, "directories", []):
            for attempt in range(300):
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while the last process is being reaped
                    time.sleep(0.0005 if attempt < 100 else 0.01)


class CgroupLimits:
    """Where this host lets the sandbox make per-call cgroups; ``detect()`` finds it."""

    def __init__(self, hierarchies: tuple[Hierarchy, ...]):
        self.hierarchies = hierarchies

    @property
    def version(self) -> int:
        return self.hierarchies[0].version

    def create(self, memory_bytes: int, max_processes: int) -> CallCgroup:
        return CallCgroup(self.hierarchies, memory_bytes, max_processes)

    def describe(self, memory_bytes: int, max_processes: int) -> dict[str, str]:
        where = ", ".join(h.parent for h in self.hierarchies)
        if self.version == 2:
            memory = f"cgroup v2 memory.max={memory_bytes} (swap 0) on the whole call, under {where}"
            pids = f"cgroup v2 pids.max={max_processes} (+{SUPERVISOR_PROCESSES} for bubblewrap) on the whole call"
        else:
            memory = f"cgroup v1 memory.limit_in_bytes={memory_bytes} on the whole call, under {where}"
            pids = f"cgroup v1 pids.max={max_processes} (+{SUPERVISOR_PROCESSES} for bubblewrap) on the whole call"
        return {"memory": memory, "processes": pids}

    @classmethod
    def detect(cls, parent: str | None = None) -> CgroupLimits | None:
        """The first place where a test cgroup can really be made, limited and joined, else None."""
        candidates = [(Hierarchy(2, parent, ("memory", "pids")),)] if parent else _candidates()
        for hierarchies in candidates:
            limits = cls(hierarchies)
            try:
                group = limits.create(64 << 20, 4)
            except OSError:
                continue
            joined = _can_join(group)
            group.remove()
            if joined:
                limits.remove_stale()
                return limits
        return None

    def remove_stale(self) -> None:
        """Remove the empty groups left by sandboxes of host processes that died without ``close()``."""
        for hierarchy in self.hierarchies:
            with contextlib.suppress(OSError):
                for name in os.listdir(hierarchy.parent):
                    owner = re.fullmatch(r"regym-sandbox-(\d+)-\d+-\w+", name)
                    if owner is None or _alive(int(owner.group(1))):
                        continue
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.join(hierarchy.parent, name))


def _can_join(group: CallCgroup) -> bool:
    """Whether a child of this process may move itself into ``group``, as ``launch.py`` will
    (cgroup v2 also wants write access to the common ancestor's ``cgroup.procs``)."""
    join = "import sys\nfor path in sys.argv[1:]:\n    open(path, 'w').write('0')"
    completed = subprocess.run([sys.executable, "-S", "-c", join, *group.procs_files], capture_output=True,
                               timeout=60, cwd="/")
    return completed.returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount root, mount point, fs type, super options) of each cgroup file system."""
    found = []
    with contextlib.suppress(OSError):
        for line in _read("/proc/self/mountinfo").splitlines():
            fields = line.split()
            separator = fields.index("-")
            fstype, options = fields[separator + 1], set(fields[separator + 3].split(","))
            if fstype in ("cgroup", "cgroup2"):
                found.append((fields[3], fields[4], fstype, options))
    return found


def _own_groups() -> dict[str, str]:
    """This process's cgroup path per controller ("" for the v2 unified hierarchy)."""
    groups = {}
    with contextlib.suppress(OSError):
        for line in _read("/proc/self/cgroup").splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                groups[controller] = path
    return groups


def _directory(mount_root: str, mount_point: str, path: str) -> str | None:
    if mount_root != "/" and not (path == mount_root or path.startswith(mount_root + "/")):
        return None
    relative = path[len(mount_root):] if mount_root != "/" else path
    return os.path.normpath(mount_point + "/" + relative.lstrip("/"))


def _has_controllers(path: str, *names: str) -> bool:
    with contextlib.suppress(OSError):
        return set(names) <= set(_read(path).split())
    return False


def _candidates() -> list[tuple[Hierarchy, ...]]:
    mounts, groups = _mounts(), _own_groups()
    found: list[tuple[Hierarchy, ...]] = []
    for root, point, fstype, _ in mounts:
        if fstype == "cgroup2" and "" in groups:
            own = _directory(root, point, groups[""])
            if own is None:
                continue
            if _has_controllers(os.path.join(own, "cgroup.subtree_control"), "memory", "pids"):
                found.append((Hierarchy(2, own, ("memory", "pids")),))
            if own != point and _has_controllers(os.path.join(own, "cgroup.controllers"), "memory", "pids"):
                found.append((Hierarchy(2, os.path.dirname(own), ("memory", "pids")),))
    version_one = {}
    for controller in ("memory", "pids"):
        for root, point, fstype, options in mounts:
            if fstype == "cgroup" and controller in options and controller in groups:
                directory = _directory(root, point, groups[controller])
                if directory is not None:
                    version_one[controller] = Hierarchy(1, directory, (controller,))
                    break
    if len(version_one) == 2:
        found.append((version_one["memory"], version_one["pids"]))
    return found
