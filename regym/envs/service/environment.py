"""Any registered regym env as an OpenEnv ``Environment``: one per session, its env in a worker process.

OpenEnv's server gives each WebSocket connection its own ``Environment`` (``SUPPORTS_CONCURRENT_SESSIONS``)
and runs its calls on that session's own thread. The adapter makes the Gymnasium env lazily, from
what the reset names (``env``, ``split``, ``env_kwargs``): a reconnecting client needs no separate
"create" step, and a restarted server is picked up by the next reset alone.

The env itself runs in the session's ``EnvWorker`` (``worker.py``), a process of its own: the
session's thread waits for it without the GIL and without any lock another session needs, and
an env call that overruns ``call_timeout`` has its worker killed and ends that session alone
(``/health`` and every other session go on answering).

What a client may choose: what the server was started with (``--env``, ``--split``,
``--env-kwargs``) is fixed, and a request naming something else is refused (400). Of the rest,
a client may set only the options its env family declares safe (``client_options``, checked by
``regym.envs.options``: episode knobs, task pool, level, reward shape); any other option is a 400
naming it. Paths, URLs, executables and backends are the operator's alone.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

try:
    from openenv.core.env_server.interfaces import Environment
    from openenv.core.env_server.types import EnvironmentMetadata
except ImportError as missing:  # pragma: no cover - the serve extra is not installed
    raise ImportError("serving envs needs openenv-core: pip install 'regym[serve]'") from missing

from regym.envs import ENTRY_POINTS, env_class, normalize_split
from regym.envs.options import checked_client_options
from regym.envs.service.messages import SessionState, TextAction, TextObservation
from regym.envs.service.wire import RESET_FIELDS, RequestError, SessionExpired, family_id
from regym.envs.service.worker import EnvFailed, EnvWorker, WorkerGone, WorkerTimeout

MAX_SESSIONS = 64
"""Sessions one server holds at once, WebSocket connections and HTTP resets together; past it a new
one is refused (OpenEnv's CAPACITY_REACHED on the WebSocket, 503 over HTTP). Each session with an
episode is one worker process."""
IDLE_TIMEOUT_S = 600.0
"""A session with no request for this long is closed. Long enough for a trainer's slowest generation
round, short enough that a crashed trainer's sessions are freed within minutes."""
RESET_DEADLINE_S = 30.0
"""A WebSocket that has not asked for a reset this long after connecting is closed: a connection
that never plays must not hold a session for the whole idle timeout."""
CALL_TIMEOUT_S = 60.0
"""Longest one env call (make, reset, step) may take; past it the session's worker is killed and the
session ends. Far above any family's slowest first reset (TextWorld compiling a game: seconds)."""
MAX_BODY_BYTES = 1 << 20
"""Largest HTTP request body and WebSocket message: a step's reply is capped at 64 KiB of text by the env."""


@dataclass
class ServiceConfig:
    """What one env server serves, how many sessions it holds, and the limits on each."""

    env: str | None = None
    """Env family to serve (short name or id); none serves every family, each session naming its own."""
    split: str | None = None
    """Split of every session ("id", "ood", ...); none lets each session choose (else the env's default)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor options of every session's env (JSON object), fixed by the operator: paths, URLs and
    backends go here. A client may add only the options its family declares safe (docs/envs_at_scale.md)."""
    max_sessions: int = MAX_SESSIONS
    """Sessions held at once, WebSocket and HTTP together (each its own env process); past it new ones are refused."""
    idle_timeout: float = IDLE_TIMEOUT_S
    """Seconds without a request after which a session is closed and its env freed."""
    reset_deadline: float = RESET_DEADLINE_S
    """Seconds a new WebSocket has to ask for its first reset; then it is closed."""
    call_timeout: float = CALL_TIMEOUT_S
    """Seconds one env call (make, reset, step) may take; past it the env's process is killed and the session ends."""
    max_body_bytes: int = MAX_BODY_BYTES
    """Largest HTTP request body and WebSocket message accepted (413 / close code 1009 past it)."""

    def __post_init__(self) -> None:
        if self.env is not None:
            self.env = family_id(self.env)
        if self.split is not None:
            self.split = normalize_split(self.split)
        if not isinstance(self.env_kwargs, dict):
            raise ValueError(f"env_kwargs must be a JSON object, not {self.env_kwargs!r}")
        if "split" in self.env_kwargs:
            raise ValueError("give the split as --split, not inside --env-kwargs")
        if self.max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        for name in ("idle_timeout", "reset_deadline", "call_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be >= 1024")

    def preload(self) -> list[str]:
        """Modules the env workers' fork server imports once: the served family's (or every family's),
        with the modules it imports lazily."""
        served = [self.env] if self.env is not None else list(ENTRY_POINTS)
        return [module for env_id in served
                for module in (ENTRY_POINTS[env_id].split(":")[0], *getattr(env_class(env_id), "lazy_imports", ()))]


class RegymEnvironment(Environment[TextAction, TextObservation, SessionState]):
    """One session: a regym env (in its worker process) behind OpenEnv's ``reset``/``step``/``state``.

    Errors the client caused are ``RequestError``s with a 4xx status (400 bad argument, 409 step
    before reset, 410 session ended); an env that fails on its own is a 500 naming the error, and
    the session goes on. An env call past ``call_timeout`` (504) or a worker that dies (500) ends
    the session: its later calls get 410 and the client's next reset opens a new one.
    """

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, config: ServiceConfig):
        super().__init__()
        self.config = config
        self._worker: EnvWorker | None = None
        self._made_with: tuple[str, str | None, str] | None = None
        self._episode_id: str | None = None
        self._task_id: str | None = None
        self._steps = 0
        self._ended: str | None = None
        self._lock = threading.Lock()  # this session's own: a second call of the same session waits for the first

    # --- OpenEnv's Environment ---------------------------------------------------------------
    def reset(self, seed: Any = None, episode_id: str | None = None, **request: Any) -> TextObservation:
        unknown = sorted(set(request) - set(RESET_FIELDS))
        if unknown:
            raise RequestError(400, "TypeError", f"unknown reset field(s) {unknown}; a reset takes seed, "
                               f"episode_id, {', '.join(RESET_FIELDS)}")
        with self._lock:
            self._check_open()
            worker = self._worker_for(request.get("env"), request.get("split"), request.get("env_kwargs"))
            observation, info = self._call(worker, "reset", seed, request.get("options"))
            self._episode_id, self._steps, self._task_id = episode_id, 0, info.get("task_id")
        return TextObservation(text=observation, info=info, reward=None, done=False)

    def step(self, action: TextAction, timeout_s: float | None = None, **kwargs: Any) -> TextObservation:
        with self._lock:
            self._check_open()
            if self._worker is None:
                raise RequestError(409, "RuntimeError", "no episode is running: call reset() before step() "
                                   "(sessions live on the /ws WebSocket; OpenEnv's HTTP /step is stateless)")
            observation, reward, terminated, truncated, info = self._call(self._worker, "step", action.text)
            self._steps += 1
        return TextObservation(text=observation, info=info, reward=reward, done=terminated or truncated,
                               terminated=terminated, truncated=truncated)

    @property
    def state(self) -> SessionState:
        env_id, split, _ = self._made_with or (self.config.env, self.config.split, "")
        return SessionState(episode_id=self._episode_id, step_count=self._steps, env_id=env_id,
                            split=split, task_id=self._task_id)

    def get_metadata(self) -> EnvironmentMetadata:
        served = self.config.env or "any regym env family"
        return EnvironmentMetadata(name=f"regym: {served}", version="1",
                                   description="A regym multi-turn text env: actions and observations are text.")

    def close(self) -> None:
        """Called by OpenEnv when the connection ends, and on its event loop after an HTTP reset: never blocks."""
        if self._ended is None:
            self._ended = (f"the server closed this session after {self.config.idle_timeout:g} s without a request "
                           "(--idle-timeout); reconnect to open a new one")
        self._drop_worker(kill=False)

    # --- the session's env --------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._ended is not None:
            raise RequestError(410, SessionExpired.__name__, self._ended)

    def _call(self, worker: EnvWorker, method: str, *args: Any) -> Any:
        """One env call in the worker, its failures turned into the session's ``RequestError``s."""
        try:
            return worker.call(method, *args, timeout=self.config.call_timeout)
        except EnvFailed as error:
            raise RequestError(400 if error.kind in ("TypeError", "ValueError") else 500,
                               error.kind, error.message) from None
        except (WorkerTimeout, WorkerGone) as error:
            self._ended = (f"this session was ended: {error} (--call-timeout {self.config.call_timeout:g} s); "
                           "reconnect to open a new one")
            self._drop_worker(kill=True)
            raise RequestError(504 if isinstance(error, WorkerTimeout) else 500, SessionExpired.__name__,
                               self._ended) from None

    def _worker_for(self, env: Any, split: Any, env_kwargs: Any) -> EnvWorker:
        """The session's worker for this reset: the one it has, or a new one if the request names another env."""
        env_id = self._pick_env(env)
        split = self._pick_split(split)
        kwargs = self._pick_kwargs(env_id, env_kwargs)
        made_with = (env_id, split, json.dumps(kwargs, sort_keys=True))
        if made_with != self._made_with or self._worker is None:
            self._drop_worker(kill=False)
            try:
                self._worker = EnvWorker(env_id, {**({"split": split} if split else {}), **kwargs},
                                         timeout=self.config.call_timeout, preload=self.config.preload())
            except EnvFailed as error:
                raise RequestError(400 if error.kind in ("TypeError", "ValueError") else 500,
                                   error.kind, error.message) from None
            except (WorkerTimeout, WorkerGone) as error:
                raise RequestError(500, "RuntimeError", f"the env could not be made: {error}") from None
            self._made_with = made_with
        return self._worker

    def _pick_env(self, requested: Any) -> str:
        fixed = self.config.env
        if requested is None:
            if fixed is None:
                raise RequestError(400, "ValueError", "name an env: this server serves every family "
                                   f"({', '.join(ENTRY_POINTS)}); reset with env=...")
            return fixed
        if not isinstance(requested, str):
            raise RequestError(400, "TypeError", f"env must be a name such as 'alfworld', not {requested!r:.80}")
        try:
            env_id = family_id(requested)
        except ValueError as error:
            raise RequestError.of(400, error) from error
        if fixed is not None and env_id != fixed:
            raise RequestError(400, "ValueError", f"this server serves {fixed}, not {env_id}")
        return env_id

    def _pick_split(self, requested: Any) -> str | None:
        fixed = self.config.split
        if requested is None:
            return fixed
        try:
            split = normalize_split(requested)
        except ValueError as error:
            raise RequestError.of(400, error) from error
        if fixed is not None and split != fixed:
            raise RequestError(400, "ValueError", f"this server serves split {fixed}, not {split}")
        return split

    def _pick_kwargs(self, env_id: str, requested: Any) -> dict[str, Any]:
        """The operator's options plus the client's, each of those one its family declares safe."""
        fixed = self.config.env_kwargs
        if requested is None:
            return dict(fixed)
        if not isinstance(requested, dict):
            raise RequestError(400, "TypeError", f"env_kwargs must be a JSON object, not {requested!r:.80}")
        if "split" in requested:
            raise RequestError(400, "ValueError", "give the split as split, not inside env_kwargs")
        changed = sorted(key for key in requested if key in fixed and requested[key] != fixed[key])
        if changed:
            raise RequestError(400, "ValueError", "this server fixes " + ", ".join(
                f"{key}={fixed[key]!r}" for key in changed) + "; a session may not change it")
        try:
            chosen = checked_client_options(env_class(env_id), {k: v for k, v in requested.items() if k not in fixed})
        except (TypeError, ValueError) as error:
            raise RequestError.of(400, error) from error
        return {**fixed, **chosen}

    def _drop_worker(self, kill: bool) -> None:
        worker, self._worker, self._made_with = self._worker, None, None
        if worker is not None:
            worker.kill() if kill else worker.close_in_background()
