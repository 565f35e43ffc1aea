"""Serving the shop: a threaded HTTP server on 127.0.0.1 and two clients.

* ``WebShopServer``: the standard library's WSGI server with one thread per request
  (``socketserver.ThreadingMixIn``), run in a background thread; ``regym serve-web``
  runs it in the foreground.
* ``InProcessClient``: calls the WSGI app directly (no sockets), the fast path.
* ``HTTPClient``: real HTTP requests with ``urllib`` against a running server.

Both clients return the same ``Response`` for the same request, so an env sees the
same pages whichever it uses.
"""

from __future__ import annotations

import io
import socketserver
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urljoin, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import setup_testing_defaults

from regym.envs.webshop.app import WebShopApp, shared_app
from regym.envs.webshop.catalog import CATALOG_SEED

REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Response:
    status: int
    url: str
    html: str


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


class WebShopServer:
    """The shop over real HTTP, served from a background thread."""

    def __init__(self, app: WebShopApp, host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
        handler = _QuietHandler if quiet else WSGIRequestHandler
        self.app = app
        self.httpd = make_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=handler)
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

    def request(self, method: str, url: str, data: bytes = b"") -> Response:
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

    def __init__(self, base_url: str, timeout: float = REQUEST_TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, url: str, data: bytes = b"") -> Response:
        full_url = urljoin(self.base_url + "/", url.lstrip("/"))
        request = urllib.request.Request(
            full_url, data=data if method.upper() == "POST" else None, method=method.upper()
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Response(response.status, url, response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            return Response(error.code, url, error.read().decode("utf-8", errors="replace"))
