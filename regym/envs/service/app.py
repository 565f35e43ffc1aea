"""The env server: OpenEnv's FastAPI app around ``RegymEnvironment``, run by uvicorn.

Everything on the wire is OpenEnv's: sessions on the ``/ws`` WebSocket (one env each), the
stateless HTTP ``/reset`` and ``/step``, ``/state``, ``/schema``, ``/metadata`` and ``/health`` (the
containers' healthcheck). regym adds, in front of it, ``limits.SessionLimits`` (one cap on
sessions over WebSocket and HTTP, body and frame sizes, the reset deadline and idle timeout);
an exception handler, so a ``RequestError`` answers HTTP with its 4xx/5xx status and message
instead of a bare 500; and keeps a client's disconnect out of the error log. Every env runs in a
worker process of its session (``worker.py``), so no env call ever runs on the event loop.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from openenv.core.env_server.http_server import create_fastapi_app
from openenv.core.env_server.types import ConcurrencyConfig
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

from regym.envs.service.environment import MAX_BODY_BYTES, RegymEnvironment, ServiceConfig
from regym.envs.service.limits import SessionLimits
from regym.envs.service.messages import TextAction, TextObservation
from regym.envs.service.wire import RequestError
from regym.envs.service.worker import EnvFailed, EnvWorker, start_fork_server

SHUTDOWN_GRACE_S = 5
STARTUP_TIMEOUT_S = 300.0
"""The first env of a fixed family is made at start, fork server included: importing a family takes seconds."""
"""On SIGTERM, open sessions get this long to finish their call before the server exits."""


def build_app(config: ServiceConfig) -> FastAPI:
    """OpenEnv's app serving ``config``; with a fixed env, one is made first (in a worker, which also
    starts the workers' fork server) so bad options fail at start."""
    if config.env is not None:
        try:
            EnvWorker(config.env, {**({"split": config.split} if config.split else {}), **config.env_kwargs},
                      timeout=max(config.call_timeout, STARTUP_TIMEOUT_S), preload=config.preload()).close()
        except EnvFailed as error:
            failure = {"TypeError": TypeError}.get(error.kind, ValueError)
            raise failure(f"--env-kwargs: {error}") from None
    else:
        start_fork_server(config.preload())
    app = create_fastapi_app(  # idle sessions are closed by SessionLimits, which also frees their place
        functools.partial(RegymEnvironment, config), TextAction, TextObservation,
        concurrency_config=ConcurrencyConfig(max_concurrent_envs=config.max_sessions, session_timeout=None),
    )

    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse(status_code=error.status, content={"detail": str(error)})

    app.add_exception_handler(RequestError, refused)
    app.add_middleware(QuietDisconnects)
    app.add_middleware(SessionLimits, config=config)  # added last: outermost, before anything reads a body
    app.state.max_message_bytes = config.max_body_bytes
    return app


class QuietDisconnects:
    """A client that leaves without OpenEnv's ``close`` message (killed, timed out, reconnecting) makes
    OpenEnv's handler raise as it closes the already closed socket, after it has freed the session:
    the peer is gone and nothing is wrong with the server, so that error is not logged as one."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except (WebSocketDisconnect, WebSocketDisconnected):
            pass


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` until SIGINT/SIGTERM. The socket is bound first, so ``port=0`` works and
    ``on_ready`` gets the real URL (``regym serve-env`` prints it; tests read it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)  # connections queue from now on, so a client told the URL is never refused
    bound_port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
                                           ws_max_size=getattr(app.state, "max_message_bytes", MAX_BODY_BYTES)))
    if on_ready is not None:
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        on_ready(f"http://{shown}:{bound_port}")
    server.run(sockets=[listener])
