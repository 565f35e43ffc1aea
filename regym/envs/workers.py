"""Where env copies run: in this process, or on Ray env workers that heal themselves.

``make_envs(env_id, count, split=..., env_workers=N)`` is the one way regym makes the
env copies a rollout plays in lock-step; callers reach it through ``regym.envs.spec.EnvSpec.make``. With ``env_workers=0`` they are plain
``gym.make`` envs. With ``N > 0`` an ``EnvPool`` starts N Ray actors (``EnvWorker``),
hands the copies out round-robin (copy i lives on worker i mod N) and returns one
``RayEnv`` proxy per copy: a ``gymnasium.Env`` whose ``reset``/``step`` run in the
worker. ``regym.rollout`` issues the steps of one turn on all such proxies at once
(``runs_remotely``), so the env steps of different workers overlap across cores and
nodes while trajectories stay those of the local envs, bit for bit.

Why Ray and not forked processes: the same pool runs on one machine (``ray.init`` with
local CPUs) or a cluster (``address=`` or ``RAY_ADDRESS``), restarts a dead worker
process by itself (``max_restarts``), and puts a timeout on every call.

Self-healing, per call:

* every ``ray.get`` has a timeout; a worker that does not answer in time is killed and
  restarted, and the call raises ``TimeoutError`` (so nothing hangs);
* a worker that dies (crash, OOM kill, node loss) fails the step of each episode it was
  hosting with ``EnvWorkerDied``, which ``rollout`` records as ``trajectory.error``;
  the episode ends there, and only it;
* the next ``reset`` of that copy waits for the restart (or starts a fresh actor when
  Ray gave up on the old one) and the run goes on. A worker restarted between a reset
  and a step is noticed by its new incarnation id, not by a confusing env error.

Ray is an optional extra (``pip install regym[ray]``); only ``env_workers > 0`` needs it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym


class EnvWorkerDied(RuntimeError):
    """The Ray worker hosting an env copy died or restarted while an episode was running on it."""


class WorkerRestarted(RuntimeError):
    """Raised inside a worker for a step of an episode begun by an earlier incarnation of it."""


def make_envs(env_id: str, count: int, *, split: str = "in_distribution", env_workers: int = 0,
              address: str | None = None, env_urls: dict[str, str] | None = None,
              **env_kwargs: Any) -> list[gym.Env]:
    """``count`` copies of one env split: made here (``env_workers=0``), hosted on Ray env workers,
    or played on a ``regym serve-env`` server.

    ``address`` joins an existing Ray cluster (else ``RAY_ADDRESS``, else a local Ray with this
    machine's CPUs). The workers' proxies close the pool when the last of them is closed.
    ``env_urls`` maps env families (ids or short names) to servers: a family found there is
    played through ``RemoteEnv`` sessions on its server, one per copy.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, not {count}")
    if env_workers < 0:
        raise ValueError(f"env_workers must be >= 0 (0 = in this process), not {env_workers}")
    url = served_at(env_id, env_urls)
    if url is not None:
        if env_workers:
            raise ValueError(f"{env_id} is served at {url}: env_workers and a server URL do not mix")
        from regym.envs.service.client import RemoteEnv

        return [RemoteEnv(url, env_id, split, **env_kwargs) for _ in range(count)]
    if env_workers == 0:
        from regym.envs import register_envs

        register_envs()
        return [gym.make(env_id, split=split, **env_kwargs) for _ in range(count)]
    return EnvPool(env_id, count, workers=env_workers, address=address, split=split, **env_kwargs).envs


def served_at(env_id: str, env_urls: dict[str, str] | None) -> str | None:
    """The server URL ``env_urls`` gives for ``env_id`` (keys are ids or short names), else None."""
    from regym.envs import resolve_env_id

    for name, url in (env_urls or {}).items():
        if resolve_env_id(name) == resolve_env_id(env_id):
            return url
    return None


@dataclass(frozen=True)
class EnvDescription:
    """What a proxy needs to look like the env it stands for (read once from a worker)."""

    spec: Any
    observation_space: gym.Space
    action_space: gym.Space
    metadata: dict[str, Any]
    render_mode: str | None
    pid: int
    incarnation: str


class EnvWorker:
    """One worker process hosting env copies; run as a Ray actor by ``EnvPool``.

    A plain class (Ray wraps it at pool creation) so importing this module needs no Ray.
    ``incarnation`` is new each time the actor's process (re)starts.
    """

    def __init__(self, env_id: str, copies: list[int], env_kwargs: dict[str, Any]):
        from regym.envs import register_envs

        register_envs()
        self.incarnation = uuid.uuid4().hex
        self.envs = {index: gym.make(env_id, **env_kwargs) for index in copies}

    def describe(self) -> EnvDescription:
        if not self.envs:
            raise RuntimeError("this worker hosts no env copies any more (all were closed)")
        env = next(iter(self.envs.values()))
        return EnvDescription(env.spec, env.observation_space, env.action_space, dict(env.metadata),
                              env.render_mode, os.getpid(), self.incarnation)

    def reset(self, index: int, seed: int | None, options: Mapping[str, Any] | None) -> tuple[str, dict, str, int]:
        observation, info = self.envs[index].reset(seed=seed, options=options)
        return observation, info, self.incarnation, os.getpid()

    def step(self, index: int, action: Any, incarnation: str | None) -> tuple:
        if incarnation is not None and incarnation != self.incarnation:  # None: never reset, the env says so
            raise WorkerRestarted(f"restarted (now pid {os.getpid()}) since this episode's reset")
        return self.envs[index].step(action)

    def render(self, index: int) -> Any:
        return self.envs[index].render()

    def close(self, index: int) -> None:
        env = self.envs.pop(index, None)
        if env is not None:
            env.close()


def _ray():
    try:
        import ray
    except ImportError as error:
        raise ImportError("env workers need Ray: pip install 'regym[ray]' (or run with --env-workers 0)") from error
    return ray


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to Ray once per process; True when this call started it.

    ``address`` (or ``RAY_ADDRESS``) joins a cluster; otherwise a local Ray starts with ``num_cpus``
    logical CPUs (default: this machine's).
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    import logging

    common = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address is not None or "RAY_ADDRESS" in os.environ:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=max(num_cpus or 1, os.cpu_count() or 1), **common)
    return True


class _Worker:
    """The driver's handle on one ``EnvWorker`` actor: calls with timeouts, restarts, counters."""

    def __init__(self, pool: EnvPool, number: int, copies: list[int]):
        self.pool, self.number, self.copies = pool, number, copies
        self.incarnation: str | None = None
        self.pid: int | None = None
        self.actor = self._create()

    def _create(self):
        ray = _ray()
        pool = self.pool
        remote = ray.remote(EnvWorker).options(num_cpus=pool.cpus_per_worker, max_restarts=pool.max_restarts,
                                               max_task_retries=0, scheduling_strategy="SPREAD")
        return remote.remote(pool.env_id, self.copies, pool.env_kwargs)

    def describe(self, timeout: float) -> EnvDescription:
        ray = _ray()
        try:
            description = ray.get(self.actor.describe.remote(), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(f"env worker {self.number} of {self.pool.env_id} did not start within {timeout:g} s "
                               "(a slow node, or too few free CPUs for cpus_per_worker?)") from None
        except ray.exceptions.RayError as error:
            raise RuntimeError(f"env worker {self.number} could not make {self.pool.env_id}: "
                               f"{_first_line(error)}") from None
        self.seen(description.incarnation, description.pid)
        return description

    def seen(self, incarnation: str, pid: int) -> None:
        with self.pool.lock:
            if self.incarnation is not None and incarnation != self.incarnation:
                self.pool.restarts += 1
            self.incarnation, self.pid = incarnation, pid

    def call(self, method: str, *args: Any) -> Any:
        """``ray.get`` of one call under the pool's timeout; a worker that misses it is restarted."""
        ray = _ray()
        reference = getattr(self.actor, method).remote(*args)
        try:
            return ray.get(reference, timeout=self.pool.call_timeout)
        except ray.exceptions.GetTimeoutError:
            with self.pool.lock:
                self.pool.timeouts += 1
            try:
                ray.kill(self.actor, no_restart=False)
            except Exception:  # noqa: BLE001 - already dead: Ray restarts it all the same
                pass
            raise TimeoutError(f"env worker {self.number} did not answer {method} within "
                               f"{self.pool.call_timeout:g} s; it is being restarted") from None
        except ray.exceptions.RayTaskError as error:
            raise _cause(error) from None

    def reset(self, index: int, seed: int | None, options: Mapping[str, Any] | None) -> tuple[str, dict, str]:
        """A reset survives its worker's restart: it is retried until the worker is back (or the deadline)."""
        ray = _ray()
        deadline = time.monotonic() + self.pool.restart_timeout
        while True:
            actor = self.actor
            try:
                observation, info, incarnation, pid = self.call("reset", index, seed, options)
                self.seen(incarnation, pid)
                return observation, info, incarnation
            except ray.exceptions.RayActorError as error:
                if time.monotonic() > deadline:
                    raise EnvWorkerDied(f"env worker {self.number} did not come back within "
                                        f"{self.pool.restart_timeout:g} s: {_first_line(error)}") from None
                if isinstance(error, ray.exceptions.ActorDiedError):  # Ray gave up on it: start a fresh one
                    with self.pool.lock:
                        if self.actor is actor:  # once, though several copies' resets saw it die
                            self.pool.recreated += 1
                            self.actor = self._create()
                time.sleep(0.1)

    def step(self, index: int, action: Any, incarnation: str | None) -> tuple:
        ray = _ray()
        try:
            return self.call("step", index, action, incarnation)
        except ray.exceptions.RayActorError as error:
            with self.pool.lock:
                self.pool.deaths += 1
            raise EnvWorkerDied(f"env worker {self.number} (pid {self.pid}) died mid-episode: "
                                f"{type(error).__name__}: {_first_line(error)}") from None
        except WorkerRestarted as error:
            raise EnvWorkerDied(f"env worker {self.number} {error}") from None


def _cause(error: Exception) -> Exception:
    """The env's own exception inside a Ray task error, so a failed step reads as it does locally."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, Exception) else error


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


class EnvPool:
    """``num_envs`` copies of one env spread over ``workers`` Ray actors; ``envs`` are their proxies.

    Counters (for reports and tests): ``restarts`` (worker processes seen to come back with a new
    incarnation), ``deaths`` (steps lost to a dead worker), ``timeouts`` (calls past
    ``call_timeout``), ``recreated`` (actors Ray gave up on, replaced by the pool).

    Workers are placed with Ray's SPREAD strategy (evenly over the cluster's nodes) and reserve
    ``cpus_per_worker`` logical CPUs: 0 by default, so pools never wait on each other for cores on
    one machine; 1 makes Ray hold back workers until a core is free for each.
    """

    def __init__(self, env_id: str, num_envs: int, *, workers: int, address: str | None = None,
                 call_timeout: float = 120.0, start_timeout: float = 300.0, restart_timeout: float = 300.0,
                 max_restarts: int = -1, cpus_per_worker: float = 0.0, **env_kwargs: Any):
        if num_envs < 1 or workers < 1:
            raise ValueError("num_envs and workers must be >= 1")
        workers = min(workers, num_envs)
        self.env_id, self.env_kwargs = env_id, env_kwargs
        self.call_timeout, self.restart_timeout = call_timeout, restart_timeout
        self.max_restarts, self.cpus_per_worker = max_restarts, cpus_per_worker
        self.lock = threading.Lock()
        self.restarts = self.deaths = self.timeouts = self.recreated = 0
        self.owns_ray = ensure_ray(address)
        self.workers = [_Worker(self, number, list(range(number, num_envs, workers))) for number in range(workers)]
        try:
            descriptions = [worker.describe(start_timeout) for worker in self.workers]
        except Exception:
            self._kill()
            raise
        self.envs: list[RayEnv] = [RayEnv(self, self.workers[index % workers], index, descriptions[index % workers])
                                   for index in range(num_envs)]
        self._open = set(range(num_envs))

    def pids(self) -> list[int | None]:
        """The process id of each worker, as last seen (for tests that kill them)."""
        return [worker.pid for worker in self.workers]

    def _released(self, index: int) -> None:
        with self.lock:
            self._open.discard(index)
            last = not self._open
        if last:
            self._kill()

    def _kill(self) -> None:
        ray = _ray()
        for worker in self.workers:
            try:
                ray.kill(worker.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RayEnv(gym.Env):
    """A ``gymnasium.Env`` whose env copy lives in a Ray worker; made by ``EnvPool``."""

    runs_remotely: ClassVar[bool] = True
    """``regym.rollout`` issues the calls of remote envs concurrently (their waits release the GIL)."""

    def __init__(self, pool: EnvPool, worker: _Worker, index: int, description: EnvDescription):
        self.pool, self.worker, self.index = pool, worker, index
        self.spec = description.spec
        self.observation_space, self.action_space = description.observation_space, description.action_space
        self.metadata, self.render_mode = description.metadata, description.render_mode
        self._incarnation: str | None = None
        self._closed = False

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        observation, info, self._incarnation = self.worker.reset(self.index, seed, options)
        return observation, info

    def step(self, action: Any):
        return self.worker.step(self.index, action, self._incarnation)

    def render(self) -> Any:
        return self.worker.call("render", self.index)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.worker.call("close", self.index)
        except Exception:  # noqa: BLE001 - a dead worker has nothing left to close
            pass
        self.pool._released(self.index)

    def __repr__(self) -> str:
        return f"<RayEnv {self.spec.id if self.spec else '?'} copy {self.index} on worker {self.worker.number}>"
