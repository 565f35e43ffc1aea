"""The allowlisted file system of a call: the Python install and its libraries, nothing else.

A sandboxed call sees a fresh, read-only tmpfs root holding only what the interpreter
needs, bound read-only at the same paths as on the host (so ``sys.prefix`` and compiled
``RPATH``s stay valid, and a venv anywhere, even under ``/tmp``, works):

* the interpreter, with every symlink on its path recreated (``.venv/bin/python ->
  python3 -> /root/.pyenv/.../python3.11``), and ``pyvenv.cfg`` for a venv;
* each directory of the interpreter's ``sys.path`` that lies inside the install
  (stdlib, ``lib-dynload``, site-packages), never an entry a ``.pth`` file added from
  elsewhere, such as an editable checkout;
* the directories of the shared libraries the interpreter and its standard extension
  modules load (measured from ``/proc/self/maps`` of a probe interpreter), and the ELF
  program interpreter (``ld-linux``).

No ``/etc``, ``/home``, ``/proc``, ``/sys``, ``/var``, ``/run`` or checkout: they do not
exist inside. ``/tmp`` (work dir), ``/dev/shm`` and a minimal ``/dev`` are private to the call.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass

_PROBE = r"""
import importlib, json, os, sys, sysconfig
dynload = os.path.join(sysconfig.get_path("platstdlib", vars={"platbase": sys.base_exec_prefix}), "lib-dynload")
for name in sorted(os.listdir(dynload)) if os.path.isdir(dynload) else []:
    if not name.startswith(("_test", "_xx", "xx")):
        try:
            importlib.import_module(name.split(".")[0])
        except Exception:
            pass
with open("/proc/self/maps") as maps:
    libraries = sorted({line.split()[-1] for line in maps if ".so" in line and "/" in line})
print(json.dumps({"path": sys.path, "libraries": libraries, "prefix": sys.prefix, "base_prefix": sys.base_prefix,
                  "prefixes": [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]}))
"""


@dataclass(frozen=True)
class Filesystem:
    """What bubblewrap builds in the call's root, in order: symlinks, then read-only binds."""

    symlinks: tuple[tuple[str, str], ...]
    """(target, link path) pairs, recreated as on the host."""
    binds: tuple[str, ...]
    """Host paths bound read-only at the same path, none inside another."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def mirror(path: str, symlinks: dict[str, str]) -> str:
    """Resolve ``path`` one component at a time, recording each symlink met; return the real path."""
    current = "/"
    parts = [p for p in path.split("/") if p]
    for index, part in enumerate(parts):
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            target = os.readlink(candidate)
            symlinks.setdefault(candidate, target)
            resolved = os.path.normpath(os.path.join(current, target))
            return mirror(os.path.join(resolved, *parts[index + 1:]), symlinks)
        current = candidate
    return current


def elf_interpreter(executable: str) -> str | None:
    """The ``PT_INTERP`` path of a 64-bit little-endian ELF file (e.g. /lib64/ld-linux-x86-64.so.2)."""
    with open(executable, "rb") as handle:
        header = handle.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return None
        program_headers, entry_size, count = struct.unpack_from("<Q", header, 32)[0], *struct.unpack_from(
            "<HH", header, 54)
        for index in range(count):
            handle.seek(program_headers + index * entry_size)
            kind, _, offset, _, _, size = struct.unpack("<IIQQQQ", handle.read(40))
            if kind == 3:  # PT_INTERP
                handle.seek(offset)
                return handle.read(size).rstrip(b"\0").decode()
    return None


def _probe(python: str) -> dict:
    completed = subprocess.run([python, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=120,
                               cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, check=True)
    return json.loads(completed.stdout.splitlines()[-1])


@functools.cache
def python_filesystem(python: str = sys.executable) -> Filesystem:
    """The allowlist for ``python`` (cached: measured once per host process)."""
    probe = _probe(python)
    prefixes = [os.path.realpath(p) for p in set(probe["prefixes"])]
    symlinks: dict[str, str] = {}
    wanted = {mirror(python, symlinks)}
    interpreter = elf_interpreter(os.path.realpath(python))
    if interpreter:
        wanted.add(mirror(interpreter, symlinks))
    venv_config = os.path.join(probe["prefix"], "pyvenv.cfg")
    if probe["prefix"] != probe["base_prefix"] and os.path.isfile(venv_config):
        wanted.add(mirror(venv_config, symlinks))
    for entry in probe["path"]:
        if entry and os.path.isdir(entry):
            real = mirror(os.path.abspath(entry), symlinks)
            if any(_inside(real, prefix) for prefix in prefixes):
                wanted.add(real)
    for library in probe["libraries"]:
        if os.path.exists(library):
            wanted.add(os.path.dirname(mirror(library, symlinks)))
    binds = sorted(wanted)
    binds = [p for p in binds if not any(q != p and _inside(p, q) for q in binds)]
    # A symlink inside a bound directory already exists there; bubblewrap must not make it again.
    links = tuple((target, link) for link, target in sorted(symlinks.items())
                  if not any(_inside(link, bound) for bound in binds))
    return Filesystem(symlinks=links, binds=tuple(binds))


def untraversable_ancestor(path: str) -> str | None:
    """The top-most ancestor of ``path`` that other users cannot enter (e.g. /root, mode 0700)."""
    current = "/"
    for part in [p for p in path.split("/") if p][:-1]:
        current = os.path.join(current, part)
        if not os.stat(current).st_mode & 0o001:
            return current
    return None
