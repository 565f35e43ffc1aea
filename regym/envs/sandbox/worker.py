"""The process that runs one piece of untrusted Python, then exits.

This file is standalone (standard library only, no ``regym`` import) because it runs as
a fresh interpreter inside the sandbox: the local backend hands it to bubblewrap, which
places it at ``/sandbox/worker.py`` (``--serve`` mode), and the Docker image copies it
(``--from-env`` mode).

``--serve``: by the time this file runs, bubblewrap has already built the call's world
(namespaces, allowlisted file system, seccomp; see ``bubblewrap.py``). The worker points
stdout and stderr at the output pipe the parent passed, closes every other inherited
descriptor above stderr, makes its work dir in the private ``/tmp``,
installs the audit hook, reports what took effect (with the rlimits it runs under, set
by the parent before bubblewrap started) on a ``ready`` line, waits for ONE job on
stdin, runs it and exits.

The audit hook (PEP 578) refuses ``open`` outside the work dir and the Python install,
sockets, signals, fork/exec/subprocess and ctypes calls, with a clear ``PermissionError``.
It is defence in depth only: code in the same interpreter can get past it (it is a
Python object, and C code never calls it). Every escape it refuses is also refused by
the kernel, and ``tests/envs/test_sandbox_escapes.py`` checks that with the hook off.

The job's stdout and stderr share the pipe to the parent, which bounds what it keeps.
"""

from __future__ import annotations

import ast
import base64
import builtins
import json
import os
import resource
import sys
import sysconfig
import traceback

STATUS_FD = 3
RLIMITS = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "fsize": resource.RLIMIT_FSIZE,
           "nofile": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE, "nproc": resource.RLIMIT_NPROC}


def measured_rlimits() -> str:
    """The limits this process runs under (set by the parent before bubblewrap started)."""
    def show(value: int) -> str:
        return "unlimited" if value == resource.RLIM_INFINITY else str(value)

    return " ".join(f"{name}={show(resource.getrlimit(limit)[1])}" for name, limit in RLIMITS.items())


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
    realpath, fspath = os.path.realpath, os.fspath
    workdir = realpath(workdir)
    read_roots = [realpath(r) for r in read_roots] + [workdir]
    read_files = {"/dev/null", "/dev/urandom", "/dev/zero"}

    def resolve(path) -> str | None:
        if isinstance(path, int):
            return None
        path = fspath(path)
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        return realpath(path)  # relative to the current directory, wherever the job moved it

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


def report_status(status: int) -> None:
    """Flush, tell the parent the status, close the output, exit.

    The parent reads the status here rather than from bwrap, which reports it only after
    the call's namespaces are torn down. The job could write a status of its own first;
    that only changes its own exit code, and the parent kills the call either way.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(STATUS_FD, b"%d" % (status & 0xFF))
    except Exception:  # noqa: BLE001 - the job may have broken its streams; the status is best effort
        pass
    for descriptor in (STATUS_FD, 1, 2):
        try:
            os.close(descriptor)
        except OSError:
            pass
    os._exit(status)


def serve(config: dict) -> None:
    """Finish isolating, announce the active layers, run one job from stdin, exit."""
    output = config["output_fd"]  # the parent's pipes; bwrap's own stdout stays with bwrap
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.dup2(config["status_fd"], STATUS_FD)
    os.closerange(STATUS_FD + 1, 1 << 16)  # bwrap passes on what it was given; the job keeps only 0-3
    workdir = config["workdir"]
    for module in config.get("preload", []):
        try:
            __import__(module)
        except ImportError:
            pass
    os.makedirs(workdir, mode=0o700, exist_ok=True)
    os.chdir(workdir)
    layers = {"rlimits": "hard limits " + measured_rlimits(),
              "sandbox_root": "the call's / holds only: " + " ".join(sorted(os.listdir("/")))}
    if config.get("audit_hook", True):
        layers["audit_hook"] = install_audit_hook(workdir, config["read_roots"])
    sys.dont_write_bytecode = True
    sys.stdout.write("ready " + json.dumps({"layers": layers, "errors": {}}) + "\n")
    sys.stdout.flush()

    line = sys.stdin.readline()
    if not line:
        os._exit(0)
    job = json.loads(line)
    status = run_code(job["code"])
    report_status(status)


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
