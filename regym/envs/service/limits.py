"""The env server's caps, applied before a request reaches OpenEnv: sessions, bodies, frames, deadlines.

One ASGI middleware (``SessionLimits``) in front of OpenEnv's app, so every cap holds whatever
OpenEnv's handlers do:

* **Sessions**: WebSocket connections and HTTP ``/reset`` calls (each makes an env process) count
  against one ``max_sessions``. Past it a WebSocket gets OpenEnv's own ``CAPACITY_REACHED`` error
  frame (``RemoteEnv`` retries on it) and close code 1013; an HTTP reset gets 503.
* **Size**: an HTTP body over ``max_body_bytes`` is answered 413 without being kept (a declared
  ``Content-Length`` is refused unread); a WebSocket message over it closes the connection with
  code 1009 (uvicorn's ``ws_max_size`` stops it before it is buffered whole; this is the second wall).
* **Deadlines**: a WebSocket must ask for its first reset within ``reset_deadline`` of connecting,
  and send something at least every ``idle_timeout`` after that (time spent inside an env call
  does not count); else it is closed with code 4000 and a reason starting ``SessionExpired:``,
  which ``RemoteEnv`` raises as ``SessionExpired``. Closing the connection ends OpenEnv's session,
  which closes its env and frees its place.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regym.envs.service.environment import ServiceConfig

CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013
CLOSE_EXPIRED = 4000
COUNTED_HTTP_PATHS = ("/reset",)
"""HTTP calls that make an env (OpenEnv's stateless reset makes one per call)."""


class SessionLimits:
    """ASGI middleware enforcing ``ServiceConfig``'s caps on sessions, sizes and deadlines."""

    def __init__(self, app: ASGIApp, config: ServiceConfig):
        self.app = app
        self.config = config
        self.sessions = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # --- HTTP -------------------------------------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.config.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.strip().isdigit() or int(declared) > limit:
            await _reply(send, 413, f"request body over {limit} bytes (the server's --max-body-bytes); refused unread")
            return
        body, more, received = [], True, 0
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            received += len(message.get("body", b""))
            if received > limit:
                await _reply(send, 413, f"request body over {limit} bytes (the server's --max-body-bytes)")
                return
            body.append(message.get("body", b""))
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(body), "more_body": False}
            return await receive()

        if scope["path"] not in COUNTED_HTTP_PATHS:
            await self.app(scope, replay, send)
            return
        if self.sessions >= self.config.max_sessions:
            await _reply(send, 503, f"server full: all {self.config.max_sessions} sessions (WebSocket and HTTP) "
                                    "are in use; retry later")
            return
        self.sessions += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self.sessions -= 1

    # --- WebSocket --------------------------------------------------------------------------------
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.sessions >= self.config.max_sessions:
            if (await receive())["type"] == "websocket.connect":
                full = {"type": "error", "data": {
                    "code": "CAPACITY_REACHED", "max_sessions": self.config.max_sessions,
                    "message": f"server full: all {self.config.max_sessions} sessions (WebSocket and HTTP) are in use"}}
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.send", "text": json.dumps(full)})
                await send({"type": "websocket.close", "code": CLOSE_TRY_LATER, "reason": "server full"})
            return
        self.sessions += 1
        try:
            await self.app(scope, *_LimitedSocket(self.config, receive, send).channels())
        finally:
            self.sessions -= 1


class _LimitedSocket:
    """One WebSocket's receive and send, with its size cap and its deadlines."""

    def __init__(self, config: ServiceConfig, receive: Receive, send: Send):
        self.config, self._receive, self._send = config, receive, send
        self.reset_by = time.monotonic() + config.reset_deadline
        self.has_reset = False
        self.closed = False

    def channels(self) -> tuple[Receive, Send]:
        return self.receive, self.send

    async def receive(self) -> Message:
        if self.closed:
            return {"type": "websocket.disconnect", "code": 1000}
        if self.has_reset:
            wait, why = self.config.idle_timeout, (f"no request for {self.config.idle_timeout:g} s "
                                                   "(--idle-timeout); reconnect to open a new session")
        else:
            wait, why = max(self.reset_by - time.monotonic(), 0.0), (
                f"no reset within {self.config.reset_deadline:g} s of connecting (--reset-deadline)")
        try:
            message = await asyncio.wait_for(self._receive(), timeout=wait)
        except TimeoutError:
            return await self._close(CLOSE_EXPIRED, f"SessionExpired: {why}")
        if message["type"] == "websocket.receive":
            data = message.get("text") if message.get("text") is not None else message.get("bytes") or b""
            if len(data) > self.config.max_body_bytes:
                return await self._close(CLOSE_TOO_BIG, f"message over {self.config.max_body_bytes} bytes")
            if not self.has_reset and _is_reset(data):
                self.has_reset = True
        return message

    async def send(self, message: Message) -> None:
        if not self.closed:  # after this side closed, OpenEnv's own close is a no-op
            await self._send(message)

    async def _close(self, code: int, reason: str) -> Message:
        self.closed = True
        await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})
        return {"type": "websocket.disconnect", "code": code}


def _is_reset(data: str | bytes) -> bool:
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return isinstance(message, dict) and message.get("type") == "reset"


async def _reply(send: Send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
