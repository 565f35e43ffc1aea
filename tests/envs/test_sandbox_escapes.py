"""The sandbox holds with the audit hook gone: one fault probe per escape class (issue 13, section 2).

Each probe is Python an attacker who has read ``regym/envs/sandbox`` would send. It makes
several attempts of one class; an attempt that should have been refused and was not prints
``ESCAPED``. The host plants secrets the sandbox must never see (canary files in its
``/tmp`` and ``/var/tmp``, the command line of a host process, a TCP server's greeting, the
checkout's ``.git/HEAD``, ``/etc/passwd``) and checks afterwards that nothing was written to
its disk and no host process was signalled. Every probe runs with the audit hook on and
off; with it off, each refusal must be an ``OSError`` (or ``MemoryError`` / a kill): the
kernel or bubblewrap refused, not Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
from pathlib import Path

import gymnasium as gym
import pytest

import regym  # noqa: F401 - registers the env ids
from regym.envs.sandbox import LocalSandbox, SandboxLimits

LIMITS = SandboxLimits(cpu_seconds=5, wall_seconds=15.0, memory_bytes=512 << 20, output_bytes=64 << 10)
REPO = Path(__file__).resolve().parents[2]
NAME = f"regym-escape-{secrets.token_hex(4)}"
HOST_WRITE_DIRS = ["/var/tmp", "/run/lock", "/dev/shm", "/tmp", str(REPO)]
KERNEL_ERRORS = {"PermissionError", "FileNotFoundError", "OSError", "ProcessLookupError", "ConnectionRefusedError",
                 "BlockingIOError", "NotADirectoryError", "IsADirectoryError", "ChildProcessError",
                 "ConnectionResetError", "TimeoutError", "MemoryError", "FileExistsError"}

PRELUDE = r'''
import ctypes, os, platform, resource, signal, socket, stat, sys, time
attempts = 0
def attempt(label, action, must_refuse=True):
    global attempts
    attempts += 1
    try:
        value = action()
    except BaseException as error:
        print(f"REFUSED [{label}] {type(error).__name__}: {error}"[:300], flush=True)
    else:
        print(f"{'ESCAPED' if must_refuse else 'RAN'} [{label}] {value!r}"[:3000], flush=True)
def done():
    print(f"PROBE DONE {attempts}", flush=True)
def read(path):
    with open(path, "rb") as handle:
        return handle.read(4096)
def clear_audit_tables():
    """The worker's audit hook reads its tables from __main__: empty every set and dict there."""
    import __main__
    for value in list(vars(__main__).values()):
        if isinstance(value, (set, dict)) and value is not vars(__main__):
            with __import__("contextlib").suppress(Exception):
                value.clear()
'''

SYSCALLS = r'''
NR = {"x86_64": dict(unshare=272, clone=56, mount=165, setns=308, ptrace=101, process_vm_readv=310, keyctl=250,
                     add_key=248, bpf=321, userfaultfd=323, io_uring_setup=425, perf_event_open=298, personality=135,
                     open_by_handle_at=304, mknodat=259, pidfd_open=434, kcmp=312),
      "aarch64": dict(unshare=97, clone=220, mount=40, setns=268, ptrace=117, process_vm_readv=270, keyctl=219,
                      add_key=217, bpf=280, userfaultfd=282, io_uring_setup=425, perf_event_open=241, personality=92,
                      open_by_handle_at=265, mknodat=33, pidfd_open=434, kcmp=272)}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
def syscall(number, *args):
    converted = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    result = libc.syscall(ctypes.c_long(number), *converted)
    if result == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID = 0x10000000, 0x00020000, 0x40000000, 0x20000000
'''


# --- the probes: one per escape class ----------------------------------------------------------------
def probe_hook_relative_path(host) -> str:
    return f'''
os.chdir("/")
attempt("chdir / then etc/passwd", lambda: read("etc/passwd"))
attempt("chdir / then listdir home", lambda: os.listdir("home"))
attempt("chdir / then host /tmp canary", lambda: read({host["tmp_canary"][1:]!r}))
attempt("chdir / then host /var/tmp canary", lambda: read({host["vartmp_canary"][1:]!r}))
attempt("chdir checkout then .git/HEAD", lambda: (os.chdir({str(REPO)!r}), read(".git/HEAD"))[1])
attempt("dir_fd of / then etc/passwd", lambda: os.read(os.open("etc/passwd", os.O_RDONLY,
        dir_fd=os.open("/", os.O_RDONLY | os.O_DIRECTORY)), 4096))
done()
'''


def probe_hook_mknod(host) -> str:
    return f'''
attempt("mkfifo in /tmp", lambda: os.mkfifo("/tmp/{NAME}-fifo"))
attempt("mkfifo in /var/tmp", lambda: os.mkfifo("/var/tmp/{NAME}-fifo"))
attempt("mknod regular file in /run/lock", lambda: os.mknod("/run/lock/{NAME}-node", 0o644 | stat.S_IFREG))
attempt("mknod char device 1:3", lambda: os.mknod("null-device", 0o666 | stat.S_IFCHR, os.makedev(1, 3)))
attempt("mkfifo in the work dir", lambda: os.mkfifo("fifo"))
done()
'''


def probe_hook_table_cleared(host) -> str:
    return f'''
clear_audit_tables()
import subprocess
attempt("open /etc/passwd", lambda: read("/etc/passwd"))
attempt("listdir /home", lambda: os.listdir("/home"))
attempt("run /bin/sh", lambda: subprocess.run(["/bin/sh", "-c", "cat /etc/passwd"], capture_output=True,
        timeout=5).stdout)
attempt("connect to a host server", lambda: socket.create_connection(("127.0.0.1", {host["port"]}), timeout=2).recv(64))
attempt("kill a host process", lambda: os.kill({host["victim_pid"]}, signal.SIGKILL))
attempt("write /var/tmp", lambda: open("/var/tmp/{NAME}-cleared", "w").write("x"))
done()
'''


def probe_hook_fork_exec(host) -> str:
    return '''
import _posixsubprocess
def fork_exec(argv):
    errpipe_read, errpipe_write = os.pipe()
    pid = _posixsubprocess.fork_exec(argv, [os.fsencode(argv[0])], True, (errpipe_write,), None, None,
        -1, -1, -1, -1, -1, -1, errpipe_read, errpipe_write, False, False, -1, None, None, None, -1, None, False)
    os.close(errpipe_write)
    failure = os.read(errpipe_read, 200)
    os.waitpid(pid, 0)
    if failure:
        raise OSError(int(failure.split(b":")[1], 16) if failure.count(b":") >= 2 else 0, failure.decode())
    return pid
clear_audit_tables()
attempt("fork_exec /bin/sh", lambda: fork_exec(["/bin/sh", "-c", "cat /etc/passwd"]))
attempt("fork_exec /usr/bin/env", lambda: fork_exec(["/usr/bin/env", "cat", "/etc/passwd"]))
attempt("fork_exec /bin/cat", lambda: fork_exec(["/bin/cat", "/etc/passwd"]))
done()
'''


def probe_hook_ctypes_namespaces(host) -> str:
    return SYSCALLS + '''
import __main__
clear_audit_tables()
handle = getattr(__main__, "_libc", None) or libc
def raw_clone_newuser():
    pid = syscall(NR["clone"], CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
def checked(result):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result
attempt("worker handle unshare(CLONE_NEWUSER)", lambda: checked(handle.unshare(CLONE_NEWUSER)))
attempt("syscall unshare(CLONE_NEWUSER)", lambda: syscall(NR["unshare"], CLONE_NEWUSER))
attempt("syscall unshare(CLONE_NEWNS|CLONE_NEWNET)", lambda: syscall(NR["unshare"], CLONE_NEWNS | CLONE_NEWNET))
attempt("raw clone(CLONE_NEWUSER)", raw_clone_newuser)
attempt("mount tmpfs", lambda: syscall(NR["mount"], b"none", b"/tmp", b"tmpfs", 0, 0))
attempt("setns", lambda: syscall(NR["setns"], 0, 0))
attempt("ptrace(TRACEME)", lambda: syscall(NR["ptrace"], 0, 0, 0, 0))
attempt("ptrace(ATTACH, parent)", lambda: syscall(NR["ptrace"], 16, os.getppid(), 0, 0))
attempt("process_vm_readv(parent)", lambda: syscall(NR["process_vm_readv"], os.getppid(), 0, 0, 0, 0, 0))
attempt("kcmp", lambda: syscall(NR["kcmp"], os.getpid(), os.getppid(), 0, 0, 0))
attempt("keyctl(GET_KEYRING_ID, session)", lambda: syscall(NR["keyctl"], 0, -3, 1))
attempt("add_key", lambda: syscall(NR["add_key"], b"user", b"regym", b"x", 1, -3))
attempt("bpf(PROG_LOAD)", lambda: syscall(NR["bpf"], 5, 0, 0))
attempt("userfaultfd(USER_MODE_ONLY)", lambda: syscall(NR["userfaultfd"], 1))
params = ctypes.create_string_buffer(120)
attempt("io_uring_setup", lambda: syscall(NR["io_uring_setup"], 1, ctypes.addressof(params)))
attr = ctypes.create_string_buffer(128)
attempt("perf_event_open", lambda: syscall(NR["perf_event_open"], ctypes.addressof(attr), 0, -1, -1, 0))
attempt("personality(ADDR_NO_RANDOMIZE)", lambda: syscall(NR["personality"], 0x0040000))
attempt("open_by_handle_at", lambda: syscall(NR["open_by_handle_at"], -100, ctypes.addressof(attr), 0))
attempt("mknodat char device", lambda: syscall(NR["mknodat"], -100, b"tty0", 0o20666, os.makedev(4, 0)))
attempt("pidfd_open(1)", lambda: syscall(NR["pidfd_open"], 1, 0))
if platform.machine() == "x86_64":
    attempt("x32 unshare(CLONE_NEWUSER)", lambda: syscall(0x40000000 | NR["unshare"], CLONE_NEWUSER))
attempt("setuid(0)", lambda: os.setuid(0))
done()
'''


def probe_host_files(host) -> str:
    return f'''
def all_cmdlines():
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                found.append(read(f"/proc/{{pid}}/cmdline"))
            except OSError:
                pass
    return found
def open_directory_descriptors():
    found = []
    for fd in range(3, 1024):
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                found.append((fd, os.listdir(fd)))
        except OSError:
            pass
    if found:
        return found
    raise OSError(9, "no directory descriptor is open")
attempt("/etc/passwd", lambda: read("/etc/passwd"))
attempt("listdir /home", lambda: os.listdir("/home"))
attempt("checkout .git/HEAD", lambda: read({str(REPO / ".git" / "HEAD")!r}))
attempt("checkout pyproject.toml", lambda: read({str(REPO / "pyproject.toml")!r}))
attempt("host /tmp canary", lambda: read({host["tmp_canary"]!r}))
attempt("host /var/tmp canary", lambda: read({host["vartmp_canary"]!r}))
attempt("host process cmdline", lambda: read("/proc/{host["victim_pid"]}/cmdline"))
attempt("every /proc/*/cmdline", all_cmdlines)
attempt("/proc/1/cmdline", lambda: read("/proc/1/cmdline"))
attempt("/proc/1/environ", lambda: read("/proc/1/environ"))
attempt("/proc/self/root/etc/passwd", lambda: read("/proc/self/root/etc/passwd"))
attempt("listdir /sys/class/net", lambda: os.listdir("/sys/class/net"))
attempt("symlink to /etc/passwd", lambda: (os.symlink("/etc/passwd", "passwd-link"), read("passwd-link"))[1])
attempt("hard link to /etc/passwd", lambda: (os.link("/etc/passwd", "passwd-hard"), read("passwd-hard"))[1])
attempt("inherited directory descriptors", open_directory_descriptors)
attempt("the environment", lambda: dict(os.environ), must_refuse=False)
done()
'''


def probe_host_writes(host) -> str:
    # Inside the sandbox /tmp and /dev/shm are private tmpfs: a write there (or under them, as
    # to a checkout that lives in the host's /tmp) may succeed but must not reach the host,
    # which ``_host_writes`` checks from outside.
    def private(directory: str) -> bool:
        return any(directory == root or directory.startswith(root + "/") for root in ("/tmp", "/dev/shm"))

    lines = [f'attempt("write {d}", lambda: open("{d}/{NAME}", "w").write("x"), must_refuse={not private(d)})'
             for d in HOST_WRITE_DIRS]
    lines.append(f'attempt("mkdir /var/tmp", lambda: os.mkdir("/var/tmp/{NAME}-dir"))')
    for key in ("purelib", "stdlib"):  # a .pth or sitecustomize there would run in every later call
        lines.append(f'attempt("write the Python install ({key})", lambda: open(__import__("sysconfig")'
                     f'.get_path("{key}") + "/{NAME}.pth", "w").write("import os"))')
    lines.append(f'attempt("rename into /var/tmp", lambda: (open("f", "w").close(), os.rename("f", "/var/tmp/{NAME}-mv")))')
    return "\n".join(lines) + "\ndone()\n"


def probe_memory_across_children(host) -> str:
    share = int(LIMITS.memory_bytes * 0.45)
    return f'''
def hold_in_children(count, size):
    readers = []
    for _ in range(count):
        reader, writer = os.pipe()
        if os.fork() == 0:
            block = b"\\x01" * size
            os.write(writer, b"1")
            time.sleep(10)
            os._exit(len(block) & 0)
        os.close(writer)
        readers.append(reader)
    held = sum(len(os.read(reader, 1)) for reader in readers)
    if held < count:
        raise MemoryError(f"only {{held}} of {{count}} children could hold their memory")
    return f"{{count}} children hold {{count * size >> 20}} MiB"
attempt("4 children x {share >> 20} MiB", lambda: hold_in_children(4, {share}))
attempt("8 children x {share >> 21} MiB", lambda: hold_in_children(8, {share // 2}))
def fill(path, size):
    chunk, written = b"\\x01" * (1 << 20), 0
    with open(path, "wb") as handle:
        while written < size:
            written += handle.write(chunk)
    return f"wrote {{written >> 20}} MiB to {{path}}"
attempt("fill /dev/shm", lambda: fill("/dev/shm/fill", {LIMITS.memory_bytes}))
attempt("fill /tmp", lambda: fill("/tmp/fill", {LIMITS.memory_bytes}))
attempt("fill the work dir", lambda: fill("fill", {LIMITS.memory_bytes}))
done()
'''


def probe_memory_outside_address_space(host) -> str:
    return f'''
clear_audit_tables()
def hold_memfds(count, size):
    chunk, held = b"\\x01" * (1 << 20), []
    for _ in range(count):
        descriptor = os.memfd_create("hold")
        for _ in range(size >> 20):
            os.write(descriptor, chunk)
        held.append(descriptor)
    return f"{{count}} memfds hold {{count * size >> 20}} MiB"
def hold_sysv_segments(count, size):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    for _ in range(count):
        segment = libc.shmget(0, ctypes.c_size_t(size), 0o1600)
        if segment < 0:
            raise OSError(ctypes.get_errno(), "shmget")
        address = libc.shmat(segment, None, 0)
        if address is None or address == ctypes.c_void_p(-1).value:
            raise OSError(ctypes.get_errno(), "shmat")
        ctypes.memset(address, 1, size)
        libc.shmdt(ctypes.c_void_p(address))
    return f"{{count}} detached segments hold {{count * size >> 20}} MiB"
attempt("System V segments past the memory limit", lambda: hold_sysv_segments(4, {int(LIMITS.memory_bytes * 0.3)}))
attempt("memfds past the memory limit", lambda: hold_memfds(48, 16 << 20))
done()
'''


def probe_processes(host) -> str:
    return '''
children = []
def fork_many(count):
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        children.append(pid)
    return len(children)
attempt("fork 200 children", lambda: fork_many(200))
print("CHILDREN", len(children), flush=True)
done()
'''


def probe_network(host) -> str:
    return f'''
def only_loopback():
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        return names
    raise OSError(19, f"interfaces: {{names}}")
attempt("connect 127.0.0.1 host server", lambda: socket.create_connection(("127.0.0.1", {host["port"]}), timeout=2).recv(64))
attempt("connect host address", lambda: socket.create_connection(({host["host_ip"]!r}, {host["port"]}), timeout=2).recv(64))
attempt("interfaces other than lo", only_loopback)
attempt("AF_VSOCK socket", lambda: socket.socket(40, socket.SOCK_STREAM))
attempt("AF_NETLINK socket", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
attempt("AF_PACKET socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
done()
'''


def probe_signals(host) -> str:
    return f'''
attempt("SIGKILL a host process", lambda: os.kill({host["victim_pid"]}, signal.SIGKILL))
attempt("SIGKILL the parent", lambda: os.kill(os.getppid(), signal.SIGKILL))
attempt("SIGKILL pid 1", lambda: os.kill(1, signal.SIGKILL))
attempt("signal 0 to every process (kill -1)", lambda: os.kill(-1, 0))
attempt("signal 0 to process group 0", lambda: os.kill(0, 0))
done()
'''


def probe_limits_back_up(host) -> str:
    return '''
for name in ("RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE"):
    limit = getattr(resource, name)
    attempt(f"raise {name}", lambda limit=limit: resource.setrlimit(limit, (resource.RLIM_INFINITY,) * 2))
attempt("prlimit pid 1 RLIMIT_AS", lambda: resource.prlimit(1, resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2))
done()
'''


PROBES = {
    "hook: chdir / then relative paths": probe_hook_relative_path,
    "hook: mknod / mkfifo": probe_hook_mknod,
    "hook: clear the worker's blocked-events table": probe_hook_table_cleared,
    "hook: _posixsubprocess.fork_exec": probe_hook_fork_exec,
    "hook: ctypes namespaces and raw syscalls": probe_hook_ctypes_namespaces,
    "kernel: read host files and processes": probe_host_files,
    "kernel: write host dirs": probe_host_writes,
    "kernel: memory across children": probe_memory_across_children,
    "kernel: memory outside the address space": probe_memory_outside_address_space,
    "kernel: process count": probe_processes,
    "kernel: network": probe_network,
    "kernel: signals": probe_signals,
    "kernel: raise limits back up": probe_limits_back_up,
}
VALUE_ERROR_OK = {"kernel: raise limits back up"}  # setrlimit turns the kernel's EPERM into ValueError
MAY_BE_KILLED = {"kernel: memory across children", "kernel: memory outside the address space"}  # by the OOM killer


# --- host side ---------------------------------------------------------------------------------------
def _host_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        with contextlib.suppress(OSError):
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
    return "127.0.0.1"


@pytest.fixture(scope="module")
def host():
    """Secrets planted on the host, a victim process, a TCP server; removed afterwards."""
    tokens = {key: secrets.token_hex(8) for key in ("tmp", "vartmp", "victim", "server", "env")}
    canaries = {"tmp_canary": f"/tmp/{NAME}-canary.txt", "vartmp_canary": f"/var/tmp/{NAME}-canary.txt"}
    for key, path in canaries.items():
        Path(path).write_text(f"canary {tokens[key.split('_')[0]]}\n")
        os.chmod(path, 0o644)
    os.environ["REGYM_ESCAPE_CANARY"] = tokens["env"]
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)", f"victim-{tokens['victim']}"])
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.5)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            with contextlib.suppress(OSError):
                connection, _ = server.accept()
                connection.sendall(f"server {tokens['server']}\n".encode())
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    passwd = Path("/etc/passwd").read_text().splitlines()[0]
    head = (REPO / ".git" / "HEAD").read_text().strip() if (REPO / ".git" / "HEAD").exists() else None
    secret_texts = [f"canary {tokens['tmp']}", f"canary {tokens['vartmp']}", f"victim-{tokens['victim']}",
                    f"server {tokens['server']}", tokens["env"], passwd[:20]] + ([head] if head else [])
    yield {**canaries, "victim_pid": victim.pid, "victim": victim, "port": server.getsockname()[1],
           "host_ip": _host_address(), "secrets": secret_texts}
    stop.set()
    thread.join(timeout=2)
    server.close()
    victim.kill()
    victim.wait()
    os.environ.pop("REGYM_ESCAPE_CANARY", None)
    for path in canaries.values():
        Path(path).unlink(missing_ok=True)
    _remove_host_writes()


def _host_writes() -> list[str]:
    found = []
    for directory in HOST_WRITE_DIRS:
        with contextlib.suppress(OSError):
            found += [os.path.join(directory, n) for n in os.listdir(directory)
                      if n.startswith(NAME) and not n.endswith("-canary.txt")]
    return found


def _remove_host_writes() -> None:
    for path in _host_writes():
        with contextlib.suppress(OSError):
            os.rmdir(path) if os.path.isdir(path) else os.unlink(path)


@pytest.fixture(scope="module", params=[True, False], ids=["hook-on", "hook-off"])
def sandbox(request):
    with LocalSandbox(LIMITS, pool_size=1, audit_hook=request.param) as box:
        yield box, request.param


def check_probe(name: str, result, host, *, hook_on: bool) -> list[str]:
    """Every way the probe's result can show an escape; empty when the sandbox held."""
    problems = []
    output = result.output
    for secret in host["secrets"]:
        if secret in output:
            problems.append(f"host secret visible: {secret!r}")
    problems += [line for line in output.splitlines() if line.startswith("ESCAPED")]
    problems += [f"host file written: {path}" for path in _host_writes()]
    if host["victim"].poll() is not None:
        problems.append("a host process was killed")
    if result.error:
        problems.append(f"sandbox error: {result.error}")
    done = re.search(r"^PROBE DONE (\d+)$", output, re.M)
    outcomes = re.findall(r"^(?:REFUSED|RAN|ESCAPED) \[", output, re.M)
    if done is None and not (name in MAY_BE_KILLED and result.signal == "SIGKILL"):
        problems.append(f"probe did not finish: {result.describe()[-600:]}")
    elif done is not None and int(done.group(1)) != len(outcomes):
        problems.append(f"{done.group(1)} attempts but {len(outcomes)} outcomes")
    if not hook_on:
        allowed = KERNEL_ERRORS | ({"ValueError"} if name in VALUE_ERROR_OK else set())
        for line in output.splitlines():
            refused = re.match(r"REFUSED \[(.*?)\] (\w+):", line)
            if refused and refused.group(2) not in allowed:
                problems.append(f"refused by Python, not the kernel: {line}")
    return problems


@pytest.mark.parametrize("name", list(PROBES))
def test_escape_class_is_refused_by_the_kernel(sandbox, host, name):
    box, hook_on = sandbox
    result = box.run(PRELUDE + PROBES[name](host))
    problems = check_probe(name, result, host, hook_on=hook_on)
    _remove_host_writes()
    assert not problems, f"{name}:\n" + "\n".join(problems) + f"\n--- output ---\n{result.output[-4000:]}"
    if name == "kernel: process count":
        children = int(re.search(r"^CHILDREN (\d+)$", result.output, re.M).group(1))
        assert children <= LIMITS.max_processes
    assert box.run("print(6 * 7)").output.strip() == "42"


@pytest.mark.parametrize("name", ["kernel: memory across children", "kernel: memory outside the address space",
                                  "kernel: process count", "hook: _posixsubprocess.fork_exec"])
def test_one_process_per_call_where_no_cgroup_is_used(host, name):
    """Without a cgroup the call may not start a second process: rlimits then bound the whole call."""
    with LocalSandbox(LIMITS, pool_size=0, audit_hook=False, cgroup=False) as box:
        report = box.protections()
        assert "one process per call" in report["memory"]
        result = box.run(PRELUDE + PROBES[name](host))
    problems = check_probe(name, result, host, hook_on=False)
    _remove_host_writes()
    assert not problems, "\n".join(problems) + f"\n--- output ---\n{result.output[-3000:]}"
    assert "PermissionError: [Errno 1] Operation not permitted" in result.output  # fork refused by seccomp


def test_memory_limit_covers_the_whole_call_where_a_cgroup_is_used(host):
    with LocalSandbox(LIMITS, pool_size=0, audit_hook=False) as box:
        report = box.protections()
        if "cgroup" not in report["memory"]:
            pytest.skip(f"no writable cgroup here: {report['memory']}")
        result = box.run(PRELUDE + probe_memory_across_children(host))
    assert "ESCAPED" not in result.output, result.output
    assert "could hold their memory" in result.output or result.signal == "SIGKILL", result.output


def test_math_env_tool_calls_cannot_escape(host, tmp_path):
    """The same attacks sent as `regym/Math-v0` actions (the shared sandbox, audit hook on)."""
    dataset = tmp_path / "problems.jsonl"
    dataset.write_text(json.dumps({"q": "What is 6 times 7?", "a": "42"}) + "\n")
    env = gym.make("regym/Math-v0", dataset=str(dataset), question_column="q", answer_column="a", max_turns=20)
    env.reset(seed=0)
    names = ["hook: chdir / then relative paths", "hook: mknod / mkfifo", "hook: ctypes namespaces and raw syscalls",
             "hook: clear the worker's blocked-events table", "kernel: read host files and processes",
             "kernel: write host dirs", "kernel: memory across children"]
    for name in names:
        observation, *_ = env.step(f"<python>\n{PRELUDE + PROBES[name](host)}\n</python>")
        assert observation.startswith("Python output:")
        assert "ESCAPED" not in observation, f"{name}: {observation}"
        assert not [s for s in host["secrets"] if s in observation], f"{name}: {observation}"
        assert not _host_writes(), f"{name}: {_host_writes()}"
        assert host["victim"].poll() is None
    _remove_host_writes()
    env.close()
