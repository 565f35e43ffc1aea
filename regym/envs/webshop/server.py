"""Serving the shop: a threaded HTTP server on 127.0.0.1 and two clients.

* ``WebShopServer``: the standard library's WSGI server with one thread per connection
  (``socketserver.ThreadingMixIn``), run in a background thread; ``regym serve-web``
  runs it in the foreground. Each connection carries one request, which must arrive
  whole (request line, headers and body) within ``receive_timeout_s`` or is answered
  408 and closed: a deadline on the whole request, not on each read, so a client
  trickling a byte at a time (slowloris) cannot hold a thread either. Past
  ``max_connections`` open connections a new one is answered 503 at once, and heads
  over ``MAX_HEAD_BYTES`` or bodies over ``MAX_BODY_BYTES`` are refused unread.
* ``InProcessClient``: calls the WSGI app directly (no sockets), the fast path.
* ``HTTPClient``: real HTTP requests with ``urllib`` against a running server; an answer
  over ``MAX_RESPONSE_BYTES`` is cut off unread past that size and reported as HTTP 502, so
  a misbehaving (or hostile) upstream cannot fill the env's memory.

Both clients return the same ``Response`` for the same request, so an env sees the
same pages whichever it uses.
"""

from __future__ import annotations

import io
import math
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urljoin, urlsplit
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer
from wsgiref.util import setup_testing_defaults

from regym.envs.webshop.app import WebShopApp, shared_app
from regym.envs.webshop.catalog import CATALOG_SEED

REQUEST_TIMEOUT_S = 30.0
RECEIVE_TIMEOUT_S = 10.0
"""How long the server waits for a whole request; the env's requests take milliseconds on loopback."""
MAX_CONNECTIONS = 1024
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024
"""The shop's only body is the empty Buy Now form; anything near this size is not a shopper."""
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Largest page an ``HTTPClient`` reads: the shop's pages are tens of kilobytes."""


@dataclass(frozen=True)
class Response:
    status: int
    url: str
    html: str


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for slow clients' threads
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address, handler, receive_timeout_s: float, max_connections: int, quiet: bool):
        super().__init__(address, handler)
        self.receive_timeout_s = receive_timeout_s
        self.max_connections = max_connections
        self.quiet = quiet
        self._open_connections = 0
        self._connections_lock = threading.Lock()

    def process_request(self, request, client_address):
        with self._connections_lock:
            admitted = self._open_connections < self.max_connections
            self._open_connections += admitted
        if not admitted:
            _refuse_unblocking(request, "503 Service Unavailable", "too many open connections; retry shortly")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release_connection()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release_connection()

    def _release_connection(self) -> None:
        with self._connections_lock:
            self._open_connections -= 1

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # a client that hung up or timed out is no news
            super().handle_error(request, client_address)


class _HeadTooLarge(Exception):
    pass


class _DeadlineReader(io.RawIOBase):
    """A socket's input that must arrive before ``deadline`` (monotonic), within ``byte_limit`` bytes."""

    def __init__(self, sock: socket.socket, deadline: float, byte_limit: float):
        self.sock = sock
        self.deadline = deadline
        self.byte_limit = byte_limit
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        if self.received >= self.byte_limit:
            raise _HeadTooLarge
        self.sock.settimeout(remaining)
        count = self.sock.recv_into(buffer)
        self.received += count
        return count


class _Handler(WSGIRequestHandler):
    """One request per connection, read whole under the server's deadline, then the app's reply."""

    def setup(self):
        super().setup()
        self.rfile.close()  # the socket's plain reader; ours enforces the deadline and the head size
        deadline = time.monotonic() + self.server.receive_timeout_s
        self._reader = _DeadlineReader(self.connection, deadline, MAX_HEAD_BYTES)
        self.rfile = io.BufferedReader(self._reader)
        self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""  # for early errors

    def handle(self):
        try:
            body = self._receive()
        except TimeoutError:
            self._reply_error(408, f"the request did not arrive within {self.server.receive_timeout_s:g} s")
            return
        except _HeadTooLarge:
            self._reply_error(431, f"request line and headers over {MAX_HEAD_BYTES} bytes")
            return
        if body is None:
            return
        self.connection.settimeout(self.server.receive_timeout_s)  # bounds each write of the reply
        handler = ServerHandler(
            io.BytesIO(body), self.wfile, self.get_stderr(), self.get_environ(), multithread=False
        )
        handler.request_handler = self
        handler.run(self.server.get_app())

    def _receive(self) -> bytes | None:
        """The request's body once its line and headers are parsed; None when already answered."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self._reply_error(414, "request line too long")
            return None
        if not self.parse_request():  # the stdlib has answered (400, 431, 505, ...)
            return None
        length = self.headers.get("Content-Length", "0").strip()
        if not length.isdigit():
            self._reply_error(400, f"bad Content-Length {length!r}")
            return None
        if int(length) > MAX_BODY_BYTES:
            self._reply_error(413, f"body over {MAX_BODY_BYTES} bytes")
            return None
        self._reader.byte_limit = math.inf
        body = self.rfile.read(int(length))
        return body if len(body) == int(length) else None  # None: the client hung up mid-body

    def _reply_error(self, code: int, message: str) -> None:
        self.connection.settimeout(self.server.receive_timeout_s)
        self.send_error(code, message)

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        if not self.server.quiet:
            super().log_message(format, *args)


def _refuse_unblocking(sock: socket.socket, status: str, message: str) -> None:
    """Answer ``status`` on a fresh connection without ever blocking the accepting thread."""
    payload = message.encode()
    head = f"HTTP/1.0 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
    try:
        sock.setblocking(False)
        sock.send(f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    except OSError:
        pass


class WebShopServer:
    """The shop over real HTTP, served from a background thread."""

    def __init__(
        self,
        app: WebShopApp,
        host: str = "127.0.0.1",
        port: int = 0,
        quiet: bool = True,
        receive_timeout_s: float = RECEIVE_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ):
        self.app = app
        self.httpd = _ThreadingWSGIServer((host, port), _Handler, receive_timeout_s, max_connections, quiet)
        self.httpd.set_app(app)
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> WebShopServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.httpd.serve_forever, name="webshop-server", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> WebShopServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@lru_cache(maxsize=4)
def shared_server(catalog_seed: int = CATALOG_SEED) -> WebShopServer:
    """One background server per process (per catalog seed), on a free port of 127.0.0.1."""
    return WebShopServer(shared_app(catalog_seed)).start()


class InProcessClient:
    """Requests answered by calling the WSGI app in this thread: same pages, no sockets."""

    def __init__(self, app: WebShopApp):
        self.app = app

    def request(self, method: str, url: str, data: bytes = b"", timeout: float | None = None) -> Response:
        parts = urlsplit(url)
        environ: dict = {
            "REQUEST_METHOD": method.upper(),
            "PATH_INFO": parts.path or "/",
            "QUERY_STRING": parts.query,
            "CONTENT_LENGTH": str(len(data)),
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "wsgi.input": io.BytesIO(data),
        }
        setup_testing_defaults(environ)
        status: list[str] = []

        def start_response(status_line, headers, exc_info=None):
            status.append(status_line)

        body = b"".join(self.app(environ, start_response))
        return Response(int(status[0].split()[0]), url, body.decode("utf-8"))


class HTTPClient:
    """Requests over HTTP with urllib against a server at ``base_url``."""

    def __init__(self, base_url: str, timeout: float = REQUEST_TIMEOUT_S, max_response_bytes: int = MAX_RESPONSE_BYTES):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes

    def request(self, method: str, url: str, data: bytes = b"", timeout: float | None = None) -> Response:
        full_url = urljoin(self.base_url + "/", url.lstrip("/"))
        request = urllib.request.Request(
            full_url, data=data if method.upper() == "POST" else None, method=method.upper()
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return self._bounded(response.status, url, response)
        except urllib.error.HTTPError as error:
            with error:
                return self._bounded(error.code, url, error)

    def _bounded(self, status: int, url: str, body) -> Response:
        """The answer, or a 502 naming the cap when it is larger (read no further than the cap)."""
        payload = body.read(self.max_response_bytes + 1)
        if len(payload) > self.max_response_bytes:
            return Response(502, url, f"<p>the shop's answer is over {self.max_response_bytes} bytes: refused</p>")
        return Response(status, url, payload.decode("utf-8", errors="replace"))
