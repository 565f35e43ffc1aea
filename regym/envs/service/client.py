"""``RemoteEnv``: a Gymnasium env whose game runs in a ``regym serve-env`` server.

``gym.make("regym/Remote-v0", url="http://127.0.0.1:8000", env="alfworld", split="held_out_rooms", max_turns=20)``
plays exactly what ``gym.make("regym/ALFWorld-v0", split="held_out_rooms", max_turns=20)`` plays locally: every
seed, reset option and ``info`` key crosses the wire, so by seed the trajectories are the same bit
for bit, and ``regym.rollout`` (hence ``rl-train`` and ``rl-eval``) uses it as any env.

One ``RemoteEnv`` is one session: one OpenEnv WebSocket (``/ws``) holding one env on the server.
It speaks OpenEnv's messages over the ``websockets`` synchronous client rather than OpenEnv's
``EnvClient``, which is async and whose sync wrapper has no deadline per call; here every call has one:

* ``step`` waits at most ``call_timeout``. A server that dies, hangs or reaps the session mid-episode
  makes ``step`` raise ``RemoteEnvError`` naming the cause; ``regym.rollout`` then ends only that
  episode, as failed with that cause. The connection is dropped, so no late answer is ever read as
  the next one.
* ``reset`` reconnects: it retries with backoff (connection refused, server full, session reaped)
  until ``reconnect_timeout``, so a restarted server is picked up, then raises ``ConnectionError``.
  No call blocks longer than ``reconnect_timeout + call_timeout`` (a slow reset, e.g. a first game
  compiling, may use all of ``call_timeout``).
"""

from __future__ import annotations

import copy
import itertools
import json
import numbers
import time
from typing import Any, ClassVar

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from regym.envs.base import FreeText, normalize_split
from regym.envs.service.wire import RemoteEnvError, SessionExpired, family_id, raise_remote

try:
    from websockets.exceptions import ConnectionClosed, InvalidHandshake
    from websockets.sync.client import ClientConnection, connect
except ImportError as missing:  # pragma: no cover - the serve extra is not installed
    raise ImportError("RemoteEnv needs the websockets client: pip install 'regym[serve]'") from missing

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest answer accepted (an observation with a long page or tool output stays far below)."""
CLOSE_WAIT_S = 2.0
"""How long ``close`` waits for the server to end the session before dropping the connection anyway."""
RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
"""Waits between reset attempts; the last repeats until ``reconnect_timeout``."""


class _Retry(Exception):
    """A reset attempt that may succeed later: no server yet, server full, or session reaped."""


class RemoteEnv(gym.Env[str, str]):
    """A regym env played on a server (``regym serve-env``), by seed identical to the local one.

    ``env`` names the family the server must be serving (a server started with another ``--env``
    refuses the session); ``split`` and ``**env_kwargs`` are the env's own constructor options.
    ``spec`` is the served game's spec (its family id, this split and these options), so a remote
    episode is logged, prompted and grouped as the game it plays; how this client itself was made
    is ``client_spec``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}
    runs_remotely: ClassVar[bool] = True
    """``regym.rollout`` overlaps the calls of remote envs on threads (they wait on the network)."""

    def __init__(self, url: str, env: str, split: str | None = None, *, connect_timeout: float = 10.0,
                 call_timeout: float = 120.0, reconnect_timeout: float = 60.0, render_mode: str | None = None,
                 **env_kwargs: Any):
        if not url.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError(f"url must start with http://, https://, ws:// or wss://, not {url!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', not {render_mode!r}")
        for name, value in (("connect_timeout", connect_timeout), ("call_timeout", call_timeout),
                            ("reconnect_timeout", reconnect_timeout)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, not {value!r}")
        try:
            json.dumps(env_kwargs)
        except (TypeError, ValueError) as error:
            raise TypeError(f"env_kwargs must be JSON values to cross the wire: {error}") from error
        self.url = url.rstrip("/")
        self.env_id = family_id(env)
        self.split = normalize_split(split) if split is not None else None
        self.env_kwargs = env_kwargs
        self.connect_timeout, self.call_timeout, self.reconnect_timeout = connect_timeout, call_timeout, reconnect_timeout
        self.render_mode = render_mode
        self.observation_space = FreeText()
        self.action_space = FreeText()
        self.client_spec: EnvSpec | None = None
        self._game_spec = _game_spec(self.env_id, self.split, env_kwargs)
        self._socket: ClientConnection | None = None
        self._lost = "no reset yet"
        self._last_observation = ""

    # --- Gymnasium API ---------------------------------------------------------------------
    @property
    def spec(self) -> EnvSpec | None:
        return self._game_spec

    @spec.setter
    def spec(self, made_with: EnvSpec | None) -> None:  # gym.make records how it made this client
        self.client_spec = made_with

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            seed = int(seed)  # numpy integers play the same task as ints, as locally
        request = {"seed": seed, "options": options, "env": self.env_id, "split": self.split,
                   "env_kwargs": self.env_kwargs}
        for name in ("seed", "options"):
            try:
                json.dumps(request[name])
            except (TypeError, ValueError) as error:
                raise TypeError(f"{name} must be JSON values to cross the wire, not {request[name]!r:.80}") from error
        message = json.dumps({"type": "reset", "data": request})
        deadline = time.monotonic() + self.reconnect_timeout
        for attempt in itertools.count():
            try:
                answer = self._exchange(message, retry=True,
                                        open_timeout=min(self.connect_timeout, max(deadline - time.monotonic(), 0.1)))
                break
            except _Retry as error:
                delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
                if time.monotonic() + delay > deadline:
                    raise ConnectionError(f"no env server at {self.url} took a session within "
                                          f"{self.reconnect_timeout:g} s (last: {error})") from error
                time.sleep(delay)
        observation = answer["observation"]
        self._last_observation = observation["text"]
        return observation["text"], observation["info"]

    def step(self, action: str):
        if not isinstance(action, str):
            raise TypeError(f"a RemoteEnv action is text (str), not {type(action).__name__}")
        if self._socket is None:
            raise RemoteEnvError(f"no session with {self.url} ({self._lost}): call reset() to start one")
        answer = self._exchange(json.dumps({"type": "step", "data": {"text": action}}), retry=False)
        observation = answer["observation"]
        self._last_observation = observation["text"]
        return (observation["text"], float(answer["reward"]), observation["terminated"],
                observation["truncated"], observation["info"])

    def render(self) -> str | None:
        return self._last_observation if self.render_mode == "ansi" else None

    def close(self) -> None:
        if self._socket is not None:
            try:  # OpenEnv's "close", then wait for the server to close first (it frees the env as it does)
                self._socket.send(json.dumps({"type": "close"}))
                self._socket.recv(timeout=CLOSE_WAIT_S)
            except (ConnectionClosed, OSError):
                pass
        self._drop("closed")

    def __getstate__(self) -> dict[str, Any]:
        """A copy (pickled to a worker process) is a new client: it opens its own session at its reset."""
        return {**self.__dict__, "_socket": None, "_lost": "copied to another process, no reset yet"}

    # --- the session ---------------------------------------------------------------------------
    def _exchange(self, message: str, *, retry: bool, open_timeout: float | None = None) -> dict[str, Any]:
        """Send one message and return the observation payload of its answer, or raise.

        ``retry``: failures a later attempt may cure raise ``_Retry`` (reset); otherwise they raise
        ``RemoteEnvError`` (step: the episode's state is on the server and gone with it)."""
        waiting_for = "WebSocket handshake"
        try:
            if self._socket is None:
                self._socket = connect(self._ws_url(), open_timeout=open_timeout or self.connect_timeout,
                                       close_timeout=1.0, max_size=MAX_MESSAGE_BYTES)
            waiting_for = "answer"
            try:
                self._socket.send(message)
            except ConnectionClosed:
                pass  # a server refusing the session (full) closes at once: its reason is read below
            answer = json.loads(self._socket.recv(timeout=self.call_timeout))
        except (ConnectionClosed, InvalidHandshake, OSError) as error:  # OSError includes TimeoutError
            closed = getattr(getattr(error, "rcvd", None), "reason", "")
            if closed.startswith(f"{SessionExpired.__name__}: "):  # the server ended the session and said why
                self._drop(f"session expired: {closed}")
                if retry:
                    raise _Retry(closed) from error
                raise SessionExpired(closed.partition(": ")[2]) from error
            cause = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            if isinstance(error, TimeoutError):
                limit = self.call_timeout if waiting_for == "answer" else open_timeout or self.connect_timeout
                cause = f"no {waiting_for} within {limit:g} s"
            self._drop(f"lost: {cause}")
            if retry:
                raise _Retry(cause) from error
            raise RemoteEnvError(f"the env server at {self.url} went away mid-episode ({cause}); this "
                                 "episode is lost and the next reset reconnects") from error
        if answer.get("type") == "observation":
            return answer["data"]
        data = answer.get("data", {})
        code, text = data.get("code"), str(data.get("message", "unknown error"))
        if code == "CAPACITY_REACHED":
            self._drop("the server was full")
            if retry:
                raise _Retry(f"server full: {text}")
            raise RemoteEnvError(f"the env server at {self.url} is full: {text}")
        if code == "VALIDATION_ERROR":
            raise RemoteEnvError(f"the env server at {self.url} refused the message: {text} {data.get('errors', '')}")
        try:
            raise_remote(text)
        except SessionExpired as error:
            self._drop(f"session expired: {error}")
            if retry:
                raise _Retry(str(error)) from error
            raise
        raise AssertionError("raise_remote always raises")  # pragma: no cover

    def _ws_url(self) -> str:
        scheme, rest = self.url.split("://", 1)
        websocket_scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
        return f"{websocket_scheme}://{rest}/ws"

    def _drop(self, why: str) -> None:
        socket, self._socket, self._lost = self._socket, None, why
        if socket is not None:
            socket.close()


def _game_spec(env_id: str, split: str | None, env_kwargs: dict[str, Any]) -> EnvSpec:
    """The spec of the game a client plays: its family's registered spec with this split and options."""
    spec = copy.deepcopy(gym.spec(env_id))
    spec.kwargs = {**spec.kwargs, **({"split": split} if split else {}), **env_kwargs}
    return spec
