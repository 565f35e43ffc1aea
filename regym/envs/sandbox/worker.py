"""The process that runs one piece of untrusted Python, then exits.

This file is standalone (standard library only, no ``regym`` import) because it is
started as a fresh interpreter, ``python -I -u -B worker.py --serve CONFIG``, by the
local backend, and copied into the Docker image (``--from-env`` mode).

``--serve``: the worker isolates itself (in this order), reports which layers took
effect on a ``ready`` line, waits for ONE job on stdin, runs it and exits:

1. new network namespace (``unshare(CLONE_NEWNET)``): no interface but a down loopback;
2. new mount namespace: private tmpfs on ``/tmp``, ``/dev/shm`` and the work dir (a disk
   quota), and when root: the Python install re-exposed over a tmpfs so that an
   unprivileged uid can still import the standard library;
3. when root: ``setuid`` to a unique unprivileged uid (no file of the host is readable
   unless world-readable, no process of the host can be signalled), ``no_new_privs``;
4. ``resource`` rlimits: CPU time, address space, file size, process count, open files;
5. an audit hook (PEP 578) refusing ``open`` outside the work dir and the Python install,
   sockets, signals, fork/exec/subprocess and ctypes symbol lookup. Audit hooks are
   defence in depth, not a boundary (C code can bypass them); layers 1-4 are the kernel's.

The job's stdout and stderr share the pipe to the parent, which bounds what it keeps.
"""

from __future__ import annotations

import ast
import base64
import builtins
import ctypes
import ctypes.util
import json
import os
import resource
import signal
import sys
import sysconfig
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def encode(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    _check(_libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)), f"mount {target}")


# --- isolation layers (each returns a description of what took effect) -------------------
def unshare_network() -> str:
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    except OSError:
        if os.geteuid() == 0:
            raise
        _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare(CLONE_NEWUSER|CLONE_NEWNET)")
        return "network namespace (inside a user namespace): no interfaces"
    return "network namespace: no interfaces"


def _untraversable_ancestor(path: str) -> str | None:
    """The top-most ancestor of ``path`` that 'other' users cannot enter (e.g. /root)."""
    current = "/"
    for part in [p for p in path.split("/") if p]:
        current = os.path.join(current, part)
        if not os.stat(current).st_mode & 0o001:
            return current
    return None


def private_filesystem(workdir: str, disk_bytes: int, uid: int | None, expose: list[str]) -> str:
    """New mount namespace: tmpfs /tmp, /dev/shm and work dir; re-expose ``expose`` paths."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    # Hold a handle on each path to re-expose before anything covers it (a hidden ancestor
    # such as /root, or /tmp itself when the install lives there), then bind it back.
    expose = sorted({os.path.realpath(p) for p in expose if os.path.isdir(p)})
    expose = [p for p in expose if not any(p.startswith(q.rstrip("/") + "/") for q in expose if q != p)]
    hidden = sorted({a for a in (_untraversable_ancestor(p) for p in expose) if a})
    covered = [*hidden, "/tmp"]
    handles = [(os.open(p, os.O_PATH | os.O_DIRECTORY), p) for p in expose
               if any(p == c or p.startswith(c + "/") for c in covered)]
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_bytes},mode=1777")
    for directory in hidden:
        _mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    for handle, path in handles:
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{handle}", path, None, MS_BIND | MS_REC, None)
        os.close(handle)
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=1777")
    os.makedirs(workdir, exist_ok=True)
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_bytes},mode=0700{owner}")
    hidden_text = f"; {', '.join(hidden)} hidden behind tmpfs" if hidden else ""
    return f"mount namespace: private tmpfs /tmp, /dev/shm and work dir ({disk_bytes} bytes){hidden_text}"


def drop_privileges(uid: int) -> str:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    return f"unprivileged uid/gid {uid} (no supplementary groups)"


def no_new_privileges() -> str:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    return "no_new_privs (setuid binaries cannot raise privileges)"


def apply_rlimits(limits: dict) -> str:
    wanted = {
        "cpu": (resource.RLIMIT_CPU, limits["cpu_seconds"]),
        "as": (resource.RLIMIT_AS, limits["memory_bytes"]),
        "fsize": (resource.RLIMIT_FSIZE, limits["file_size_bytes"]),
        "nproc": (resource.RLIMIT_NPROC, limits["max_processes"]),
        "nofile": (resource.RLIMIT_NOFILE, limits["max_open_files"]),
        "core": (resource.RLIMIT_CORE, 0),
    }
    for name, (limit, value) in wanted.items():
        # CPU: soft < hard so the kernel sends SIGXCPU (a named reason) before SIGKILL.
        resource.setrlimit(limit, (value, value + 1) if name == "cpu" else (value, value))
    return " ".join(f"{name}={value}" for name, (_, value) in wanted.items())


_BLOCKED_EVENTS = {
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
    "os.kill", "os.killpg", "signal.pthread_kill",
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen",
    "pty.spawn", "os.startfile",
    "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.call_function",
    "sys.remote_exec", "os.setuid", "os.setgid",
}
_PATH_WRITE_EVENTS = {
    "os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.chmod", "os.chown", "os.symlink", "os.link",
    "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def install_audit_hook(workdir: str, read_roots: list[str]) -> str:
    """Refuse, from inside the interpreter, what the job has no business doing."""
    realpath, join, fspath = os.path.realpath, os.path.join, os.fspath
    workdir = realpath(workdir)
    read_roots = [realpath(r) for r in read_roots] + [workdir]
    read_files = {"/dev/null", "/dev/urandom", "/dev/zero"}

    def resolve(path) -> str | None:
        if isinstance(path, int):
            return None
        path = fspath(path)
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        return realpath(join(workdir, path))

    def inside(path: str, roots: list[str]) -> bool:
        return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)

    def hook(event: str, args: tuple) -> None:
        if event in _BLOCKED_EVENTS:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path = resolve(args[0])
            if path is None:
                return
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & _WRITE_FLAGS)
            allowed = inside(path, [workdir]) or path == "/dev/null"
            if not writing:
                allowed = allowed or path in read_files or inside(path, read_roots)
            if not allowed:
                raise PermissionError(f"sandbox: may not open {args[0]!r} (only the work dir is accessible)")
        elif event in ("os.listdir", "os.scandir"):
            path = resolve(args[0] if args and args[0] is not None else ".")
            if path is not None and not inside(path, read_roots):
                raise PermissionError(f"sandbox: may not list {args[0]!r}")
        elif event in _PATH_WRITE_EVENTS:
            for arg in args[:2]:
                if isinstance(arg, str | bytes | os.PathLike):
                    path = resolve(arg)
                    if path is not None and not inside(path, [workdir]):
                        raise PermissionError(f"sandbox: {event} outside the work dir is not allowed")

    sys.addaudithook(hook)
    return "audit hook refuses open/listdir outside work dir+python, sockets, kill, fork/exec, ctypes calls"


# --- running the job -------------------------------------------------------------------------
def run_code(code: str) -> int:
    """Run ``code`` as a script; echo the value of a final bare expression (like a notebook)."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        tree = ast.parse(code, "<sandbox>", "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<sandbox>", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<sandbox>", "eval"), namespace)
            if value is not None:
                print(repr(value))
        return 0
    except SystemExit as exit_request:
        code = exit_request.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException as error:  # noqa: BLE001 - the job's error is its output
        sys.stdout.flush()
        frames = traceback.extract_tb(error.__traceback__)
        skip = next((i for i, f in enumerate(frames) if f.filename == "<sandbox>"), len(frames))
        lines = traceback.format_list([f for f in frames[skip:] if f.filename != __file__])
        tail = traceback.format_exception_only(type(error), error)
        text = "Traceback (most recent call last):\n" + "".join(lines) if lines else ""
        sys.stderr.write(text + "".join(tail))
        return 1


def serve(config: dict) -> None:
    """Isolate, announce the active layers, run one job from stdin, exit."""
    workdir, uid, limits = config["workdir"], config.get("uid"), config["limits"]
    read_roots = config["read_roots"]
    layers: dict[str, str] = {}
    errors: dict[str, str] = {}

    def layer(name: str, function, *args) -> None:
        try:
            layers[name] = function(*args)
        except OSError as error:
            errors[name] = str(error)

    for module in config.get("preload", []):
        try:
            __import__(module)
        except ImportError:
            pass
    if config.get("network_namespace", True):
        layer("network", unshare_network)
    if config.get("mount_namespace", True):
        layer("filesystem", private_filesystem, workdir, limits["disk_bytes"], uid, read_roots)
    if not os.path.isdir(workdir):
        os.makedirs(workdir, mode=0o700, exist_ok=True)
        if uid is not None and os.geteuid() == 0:
            os.chown(workdir, uid, uid)
    os.chdir(workdir)
    os.environ["HOME"] = workdir
    if uid is not None and os.geteuid() == 0:
        blocked = [r for r in read_roots if _untraversable_ancestor(r)]
        if "filesystem" not in layers and blocked:
            # Without the re-exposing mount namespace an unprivileged uid could not import the stdlib.
            errors["privileges"] = f"kept root: the Python install {blocked[0]} is not reachable by other users"
        else:
            layer("privileges", drop_privileges, uid)
    layer("no_new_privs", no_new_privileges)
    # Die with the parent (set after setuid, which clears it).
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != config["parent_pid"]:
        os._exit(1)
    layer("rlimits", apply_rlimits, limits)
    if config.get("audit_hook", True):
        layers["audit_hook"] = install_audit_hook(workdir, read_roots)
    sys.dont_write_bytecode = True
    sys.stdout.write("ready " + json.dumps({"layers": layers, "errors": errors}) + "\n")
    sys.stdout.flush()

    line = sys.stdin.readline()
    if not line:
        os._exit(0)
    job = json.loads(line)
    status = run_code(job["code"])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(json.loads(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "--from-env":
        # Inside the Docker image: the container provides namespaces and limits.
        code = base64.b64decode(os.environ.get("SANDBOX_CODE_B64", "")).decode("utf-8", errors="replace")
        roots = {sys.prefix, sys.base_prefix} | {sysconfig.get_path(k) for k in ("stdlib", "purelib", "platlib")}
        install_audit_hook(os.getcwd(), sorted(r for r in roots if r))
        status = run_code(code)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    else:
        sys.stderr.write("usage: worker.py --serve CONFIG_JSON | --from-env\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
