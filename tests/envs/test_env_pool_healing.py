"""A fleet that heals itself: env workers and env servers killed mid-run cost only their episodes.

Everything is real: Ray actors killed by ``ray.kill`` and by SIGKILL of their process, and
``regym serve-env`` servers SIGKILLed and brought back on the same port by a supervisor (the
part a container's restart policy plays in production). Each run must end with a trajectory
for every job (episodes lost beyond those marked failed: 0), within a deadline (hung calls: 0),
and every episode not marked failed must be exactly the one the in-process env plays.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import gymnasium as gym
import pytest

import regym  # noqa: F401 - registers the env ids
from regym.agents import ExpertAgent
from regym.rollout import rollout

TEXTWORLD = ("regym/TextWorld-v0", {"num_tasks": 4, "max_turns": 8})
TIMEOUT_WORDS = ("TimeoutError", "timed out", "did not answer")


def local_reference(count: int):
    env_id, kwargs = TEXTWORLD
    return rollout([gym.make(env_id, **kwargs)], ExpertAgent(), seeds=list(range(count)))


def run_with_deadline(play, deadline: float):
    """``play()`` on a thread: its result, and whether it was still running at the deadline."""
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("results", play()), daemon=True)
    thread.start()
    thread.join(deadline)
    return box.get("results"), thread.is_alive()


def check_healed_run(results, reference, hung, causes):
    """No episode lost, none hung, failures name their cause; the rest are the in-process episodes.

    Returns (failed, timed_out): the episodes marked failed, and those among them whose call hit
    its timeout.
    """
    assert not hung, "the rollout did not finish before its deadline"
    assert len(results) == len(reference) and all(t is not None for t in results)
    failed = [t for t in results if t.error is not None]
    for trajectory in failed:
        assert any(cause in trajectory.error for cause in causes), trajectory.error
    for trajectory, expected in zip(results, reference, strict=True):
        if trajectory.error is None:
            assert trajectory.to_dict() == expected.to_dict()
    timed_out = [t for t in failed if any(word in t.error for word in TIMEOUT_WORDS)]
    return failed, timed_out


class RandomKiller:
    """A thread that kills at random moments spread over the whole run, however fast it goes.

    After every ``gap`` (random in ``gaps``) finished episodes it waits a random 0-0.3 s, so the
    kill lands mid-step as often as between steps, then calls ``kill(rng)``.
    """

    def __init__(self, kill, gaps: tuple[int, int], seed: int = 0):
        self.kill, self.gaps, self.rng = kill, gaps, random.Random(seed)
        self.finished = 0
        self.kills = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def on_done(self, job, trajectory) -> None:
        self.finished += 1

    def _run(self) -> None:
        threshold = self.rng.randint(*self.gaps)
        while not self.stop.wait(0.01):
            if self.finished >= threshold:
                if self.stop.wait(self.rng.uniform(0, 0.3)):
                    return
                self.kill(self.rng)
                self.kills += 1
                threshold = self.finished + self.rng.randint(*self.gaps)

    def __enter__(self) -> RandomKiller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


# --- Ray env workers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray")
    from regym.envs.workers import ensure_ray

    started = ensure_ray(num_cpus=4)
    yield ray
    if started:
        ray.shutdown()


def kill_worker(ray, pool, number: int, how: str) -> None:
    worker = pool.workers[number]
    if how == "ray.kill":
        ray.kill(worker.actor, no_restart=False)
    else:
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:  # already dead, not yet restarted
            pass


def test_killed_workers_end_only_their_episodes_and_the_run_goes_on(ray):
    """20 expert episodes on 2 workers; one worker killed by ray.kill, the other by SIGKILL, mid-run."""
    from regym.envs.workers import EnvPool

    reference = local_reference(20)
    with EnvPool(TEXTWORLD[0], 4, workers=2, call_timeout=30, **TEXTWORLD[1]) as pool:
        kills = {4: (0, "ray.kill"), 10: (1, "SIGKILL")}  # after that many episodes have ended
        finished = []

        def on_done(job, trajectory):
            finished.append(job)
            if len(finished) in kills:
                kill_worker(ray, pool, *kills[len(finished)])

        results, hung = run_with_deadline(
            lambda: rollout(pool.envs, ExpertAgent(), seeds=list(range(20)), on_done=on_done), 120)
        failed, timed_out = check_healed_run(results, reference, hung, ["EnvWorkerDied"])
        assert pool.timeouts == 0 == len(timed_out)
        assert pool.restarts >= 1 and len(failed) <= 2 * 2  # a kill fails at most the 2 episodes on its worker
        print(f"\nworker kill test (20 episodes, 2 kills): failed {len(failed)}, lost 0, hung 0, "
              f"timeouts {pool.timeouts}, restarts {pool.restarts}")


@pytest.mark.slow
def test_workers_killed_at_random_lose_no_episode_over_200_episodes(ray):
    """200 expert episodes on 3 workers; a random worker is killed (ray.kill or SIGKILL, at random)
    after every 3-12 finished episodes, at a random moment."""
    from regym.envs.workers import EnvPool

    reference = local_reference(200)
    with EnvPool(TEXTWORLD[0], 6, workers=3, call_timeout=30, **TEXTWORLD[1]) as pool:
        def kill(rng):
            kill_worker(ray, pool, rng.randrange(len(pool.workers)), rng.choice(["ray.kill", "SIGKILL"]))

        started = time.monotonic()
        with RandomKiller(kill, (3, 12)) as killer:
            results, hung = run_with_deadline(
                lambda: rollout(pool.envs, ExpertAgent(), seeds=list(range(200)), on_done=killer.on_done), 600)
        failed, timed_out = check_healed_run(results, reference, hung, ["EnvWorkerDied"])
        print(f"\nworker kill test (200 episodes, {killer.kills} kills in {time.monotonic() - started:.0f} s): "
              f"failed {len(failed)}, lost 0, hung 0, timeouts {pool.timeouts}, restarts {pool.restarts}")
        assert killer.kills >= 5 and pool.restarts >= 1 and pool.timeouts == 0 == len(timed_out)


# --- regym serve-env servers ------------------------------------------------------------------------
class SupervisedServer:
    """One ``regym serve-env`` on a fixed port, started again whenever it exits.

    This is what a container's restart policy (containers/compose.yaml) does for a real fleet.
    """

    def __init__(self, env: str, log: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "regym.cli.main", "serve-env", "--env", env, "--port", str(self.port)]
        self.log = log.open("ab")
        self.starts = 0
        self.stopping = threading.Event()
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        while not self.stopping.is_set():
            with self._lock:
                self.process = subprocess.Popen(self.command, stdout=self.log, stderr=self.log)
                self.starts += 1
            self.process.wait()

    def healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except OSError:
                time.sleep(0.2)
        return False

    def kill(self) -> None:
        with self._lock:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        self.stopping.set()
        self.kill()
        self._thread.join(30)
        self.log.close()


@pytest.fixture
def servers(tmp_path):
    pytest.importorskip("websockets")
    pytest.importorskip("openenv")
    started = []

    def start(count: int) -> list[SupervisedServer]:
        started.extend(SupervisedServer("textworld", tmp_path / f"server-{i}.log") for i in range(count))
        assert all(server.healthy(120) for server in started), "serve-env did not come up"
        return started

    yield start
    for server in started:
        server.stop()


def remote_envs(servers, copies_per_server: int):
    return [gym.make("regym/Remote-v0", url=server.url, env="textworld", call_timeout=30, reconnect_timeout=120,
                     **TEXTWORLD[1]) for server in servers for _ in range(copies_per_server)]


SERVER_CAUSES = ["RemoteEnvError", "ConnectionError", "SessionExpired"]


def test_a_killed_server_ends_only_its_episodes_and_its_restart_is_picked_up(servers):
    """20 expert episodes over 2 servers (2 sessions each); one server is SIGKILLed mid-run."""
    fleet = servers(2)
    reference = local_reference(20)
    finished = []

    def on_done(job, trajectory):
        finished.append(job)
        if len(finished) == 6:
            fleet[0].kill()

    envs = remote_envs(fleet, 2)
    try:
        results, hung = run_with_deadline(lambda: rollout(envs, ExpertAgent(), seeds=list(range(20)),
                                                          on_done=on_done), 240)
    finally:
        for env in envs:
            env.close()
    failed, timed_out = check_healed_run(results, reference, hung, SERVER_CAUSES)
    assert fleet[0].starts == 2 and fleet[1].starts == 1 and not timed_out
    assert len(failed) <= 2  # the two sessions the killed server held
    print(f"\nserver kill test (20 episodes, 1 kill): failed {len(failed)}, lost 0, hung 0, "
          f"timeouts {len(timed_out)}, restarts {fleet[0].starts - 1}")


@pytest.mark.slow
def test_servers_killed_at_random_lose_no_episode_over_200_episodes(servers):
    """200 expert episodes over 3 servers (2 sessions each); a random server is SIGKILLed after every
    20-40 finished episodes, at a random moment, and its supervisor starts it again."""
    fleet = servers(3)
    reference = local_reference(200)
    envs = remote_envs(fleet, 2)
    started = time.monotonic()
    try:
        with RandomKiller(lambda rng: rng.choice(fleet).kill(), (20, 40)) as killer:
            results, hung = run_with_deadline(
                lambda: rollout(envs, ExpertAgent(), seeds=list(range(200)), on_done=killer.on_done), 900)
    finally:
        for env in envs:
            env.close()
    failed, timed_out = check_healed_run(results, reference, hung, SERVER_CAUSES)
    restarts = sum(server.starts - 1 for server in fleet)
    print(f"\nserver kill test (200 episodes, {killer.kills} kills in {time.monotonic() - started:.0f} s): "
          f"failed {len(failed)}, lost 0, hung 0, timeouts {len(timed_out)}, restarts {restarts}")
    assert killer.kills >= 4 and restarts >= 1 and not timed_out
