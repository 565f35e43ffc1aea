"""Soak: one ``regym serve-env`` holding 64 busy sessions while hostile clients attack it.

A Math server (``--env math``) is started on a free loopback port. ``--sessions`` well-behaved
clients (``RemoteEnv``, one thread each) step as fast as they can for ``--seconds``: a reply the env
refuses before its grader ("no answer"), so what is measured is the server's own path (WebSocket,
session thread, worker process) under load, not a grader. Then the same run again beside three
hostile clients, each looping its attack for the whole run:

* **hanging grade**: ``\\boxed{9^{9^{9^{9}}}}`` (math-verify's big-integer work holds the GIL; the
  worker is killed at ``--call-timeout``, the client reconnects and attacks again);
* **sleeping sandbox code**: ``time.sleep(30)`` in the Python tool (killed at ``--call-timeout``);
* **oversized body**: 8 MiB HTTP ``/reset`` bodies and WebSocket messages (refused: 413, close 1009).

One table: per run, the well-behaved sessions' steps/s and step latency (p50, p99, max), the
worst ``/health`` latency (polled every 0.2 s), and what the attacks got. A worker's own cost per
step (the pipe round trip) is printed first.

    python benchmarks/serve_env_soak.py [--sessions 64] [--seconds 20] [--call-timeout 3]
"""

from __future__ import annotations

import argparse
import json
import re
import selectors
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import gymnasium as gym

import regym  # noqa: F401 - registers the envs
from regym.envs.service import RemoteEnv, RemoteEnvError
from regym.envs.service.worker import EnvWorker

HANGING_GRADE = r"\boxed{9^{9^{9^{9}}}}"
SLEEPING_CODE = "<python>\nimport time\ntime.sleep(30)\n</python>"
BIG = 8 * 2**20


def start_server(sessions: int, call_timeout: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "regym.cli.main", "serve-env", "--env", "math", "--port", "0",
                                "--max-sessions", str(sessions + 8), "--call-timeout", str(call_timeout)],
                               stdout=subprocess.PIPE, text=True)
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=300):
            process.kill()
            raise RuntimeError("serve-env printed no URL within 300 s")
    found = re.search(r"on (http://\S+)", process.stdout.readline())
    if found is None:
        process.kill()
        raise RuntimeError("serve-env did not start")
    return process, found.group(1)


def worker_overhead_ms(steps: int = 300) -> tuple[float, float]:
    """Per-step milliseconds of the same refused step, in process and through an ``EnvWorker``."""
    local = gym.make("regym/Math-v0", max_turns=1000)
    worker = EnvWorker("regym/Math-v0", {"max_turns": 1000}, timeout=120, preload=["regym.envs.math"])
    try:
        timings = []
        for step, reset in ((local.step, lambda: local.reset(seed=0)),
                            (lambda text: worker.call("step", text, timeout=30),
                             lambda: worker.call("reset", 0, None, timeout=30))):
            reset()
            started = time.perf_counter()
            for _ in range(steps):
                step("no answer")
            timings.append((time.perf_counter() - started) / steps * 1000)
        return timings[0], timings[1]
    finally:
        worker.close()
        local.close()


def polite(url: str, stop: threading.Event, latencies: list[float], errors: list[str]) -> None:
    env = RemoteEnv(url, "math", max_turns=1000, call_timeout=60)
    try:
        env.reset(seed=0)
        while not stop.is_set():
            started = time.perf_counter()
            _, _, terminated, truncated, _ = env.step("no answer")
            latencies.append(time.perf_counter() - started)
            if terminated or truncated:
                env.reset(seed=0)
    except Exception as error:  # noqa: BLE001 - counted and shown in the table
        errors.append(f"{type(error).__name__}: {error}")
    finally:
        env.close()


def attacker(url: str, action: str, stop: threading.Event, outcomes: list[str]) -> None:
    env = RemoteEnv(url, "math", max_turns=1000, call_timeout=120)
    while not stop.is_set():
        try:
            env.reset(seed=0)
            env.step(action)
            outcomes.append("answered")
        except RemoteEnvError as error:
            outcomes.append(type(error).__name__)
    env.close()


def oversized(url: str, stop: threading.Event, outcomes: list[str]) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    body = json.dumps({"seed": 0, "options": {"task_id": "x" * BIG}}).encode()
    while not stop.is_set():
        request = urllib.request.Request(url + "/reset", data=body, headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30).close()
            outcomes.append("http accepted")
        except urllib.error.HTTPError as error:
            outcomes.append(f"http {error.code}")
        except OSError:
            outcomes.append("http reset")
        try:
            with connect(url.replace("http", "ws", 1) + "/ws", max_size=None, open_timeout=30) as session:
                session.send(json.dumps({"type": "step", "data": {"text": "x" * BIG}}))
                session.recv(timeout=30)
            outcomes.append("ws answered")
        except ConnectionClosed as closed:
            outcomes.append(f"ws close {closed.rcvd.code if closed.rcvd else '?'}")
        except OSError:
            outcomes.append("ws reset")


def health(url: str, stop: threading.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            urllib.request.urlopen(url + "/health", timeout=30).close()
            latencies.append(time.perf_counter() - started)
        except OSError:
            latencies.append(float("inf"))
        time.sleep(0.2)


def run(url: str, sessions: int, seconds: float, hostile: bool) -> dict:
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(sessions)]
    errors: list[str] = []
    health_latencies: list[float] = []
    attacks: dict[str, list[str]] = {"hanging grade": [], "sleeping code": [], "oversized body": []}
    threads = [threading.Thread(target=polite, args=(url, stop, latencies[i], errors)) for i in range(sessions)]
    threads.append(threading.Thread(target=health, args=(url, stop, health_latencies)))
    if hostile:
        threads += [threading.Thread(target=attacker, args=(url, HANGING_GRADE, stop, attacks["hanging grade"])),
                    threading.Thread(target=attacker, args=(url, SLEEPING_CODE, stop, attacks["sleeping code"])),
                    threading.Thread(target=oversized, args=(url, stop, attacks["oversized body"]))]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=180)
    steps = sorted(latency for per_session in latencies for latency in per_session)
    quantile = statistics.quantiles(steps, n=100) if len(steps) >= 2 else [float("nan")] * 99
    return {"run": "64 + hostile" if hostile else "64 alone", "steps_per_s": len(steps) / seconds,
            "p50_ms": quantile[49] * 1000, "p99_ms": quantile[98] * 1000, "max_ms": steps[-1] * 1000 if steps else 0,
            "health_max_ms": max(health_latencies) * 1000 if health_latencies else float("nan"),
            "session_errors": len(errors), "sessions_stepped": sum(1 for per in latencies if per),
            "attacks": {name: {kind: got.count(kind) for kind in sorted(set(got))} for name, got in attacks.items()
                        if hostile}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--call-timeout", type=float, default=3.0)
    args = parser.parse_args()

    in_process, in_worker = worker_overhead_ms()
    print(f"one refused Math step: {in_process:.3f} ms in process, {in_worker:.3f} ms through an EnvWorker "
          f"(+{in_worker - in_process:.3f} ms: the pipe round trip)")
    process, url = start_server(args.sessions, args.call_timeout)
    try:
        rows = [run(url, args.sessions, args.seconds, hostile) for hostile in (False, True)]
    finally:
        process.kill()
        process.wait()
    print(f"\n{'run':<14} {'steps/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'/health max ms':>15} "
          f"{'stepped':>8} {'errors':>7}")
    for row in rows:
        print(f"{row['run']:<14} {row['steps_per_s']:>8.0f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
              f"{row['max_ms']:>8.1f} {row['health_max_ms']:>15.1f} {row['sessions_stepped']:>8} "
              f"{row['session_errors']:>7}")
    for name, outcomes in rows[1]["attacks"].items():
        print(f"  {name}: {outcomes}")


if __name__ == "__main__":
    main()
