"""``regym serve-web``: serve the WebShop site over HTTP (for containers and humans).

Open ``http://HOST:PORT/<any session id>?task_id=id-00042`` in a browser to shop, or
point ``WebShopEnv(backend="http", server_url=...)`` at it. The limits below keep one
client from crowding out the others; none of them ever ends a session in use.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from regym.cli import preflight
from regym.configs import UsageError, parse, report_error
from regym.envs.webshop.app import MAX_SESSIONS, MAX_SESSIONS_PER_CLIENT, SESSION_TTL_S, WebShopApp
from regym.envs.webshop.catalog import CATALOG_SEED
from regym.envs.webshop.server import MAX_CONNECTIONS, RECEIVE_TIMEOUT_S, WebShopServer


@dataclass
class ServeWebArgs:
    """Serve the WebShop site over HTTP."""

    host: str = "127.0.0.1"
    """Address to bind (0.0.0.0 inside a container)."""
    port: int = 3000
    """TCP port (0 picks a free one)."""
    catalog_seed: int = CATALOG_SEED
    """Seed of the generated catalog; clients' envs must use the same."""
    access_log: bool = False
    """Log every request to stderr."""
    max_sessions: int = MAX_SESSIONS
    """Sessions held at once; past it new ones get 503."""
    max_sessions_per_client: int = MAX_SESSIONS_PER_CLIENT
    """Sessions one owner may hold (an env's own token, else the client's address); past it new ones get 429."""
    session_ttl: float = SESSION_TTL_S
    """Seconds without a request after which a session expires (then 410 Gone)."""
    receive_timeout: float = RECEIVE_TIMEOUT_S
    """Seconds a connection has to send its whole request; then 408 and closed."""
    max_connections: int = MAX_CONNECTIONS
    """Connections open at once; past it new ones get 503."""


def main(argv: list[str] | None = None) -> int:
    args = parse(ServeWebArgs, argv, prog="regym serve-web", description=__doc__)
    try:
        preflight.port(args.port)
        if min(args.max_sessions, args.max_sessions_per_client, args.max_connections) < 1 \
                or min(args.session_ttl, args.receive_timeout) <= 0:
            raise UsageError("--max-sessions, --max-sessions-per-client and --max-connections must be >= 1, "
                             "--session-ttl and --receive-timeout > 0")
    except UsageError as error:
        report_error("regym serve-web", error)
        return 2

    app = WebShopApp(
        catalog_seed=args.catalog_seed,
        max_sessions=args.max_sessions,
        max_sessions_per_client=args.max_sessions_per_client,
        session_ttl_s=args.session_ttl,
    )
    server = WebShopServer(
        app,
        host=args.host,
        port=args.port,
        quiet=not args.access_log,
        receive_timeout_s=args.receive_timeout,
        max_connections=args.max_connections,
    )
    print(f"WebShop: {len(app.catalog)} products, serving on {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
