"""``regym serve-web``: serve the WebShop site over HTTP (for containers and humans).

Open ``http://HOST:PORT/<any session id>?task_id=id-00042`` in a browser to shop, or
point ``WebShopEnv(backend="http", server_url=...)`` at it. The limits below keep one
client from crowding out the others; none of them ever ends a session in use.
"""

from __future__ import annotations

import argparse
import sys

from regym.envs.webshop.app import MAX_SESSIONS, MAX_SESSIONS_PER_CLIENT, SESSION_TTL_S, WebShopApp
from regym.envs.webshop.catalog import CATALOG_SEED
from regym.envs.webshop.server import MAX_CONNECTIONS, RECEIVE_TIMEOUT_S, WebShopServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="regym serve-web", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 inside a container)")
    parser.add_argument("--port", type=int, default=3000, help="TCP port (0 picks a free one)")
    parser.add_argument(
        "--catalog-seed",
        type=int,
        default=CATALOG_SEED,
        help="seed of the generated catalog; clients' envs must use the same",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=MAX_SESSIONS,
        help="sessions held at once; past it new ones get 503",
    )
    parser.add_argument(
        "--max-sessions-per-client",
        type=int,
        default=MAX_SESSIONS_PER_CLIENT,
        help="sessions one client address may hold; past it new ones get 429",
    )
    parser.add_argument(
        "--session-ttl",
        type=float,
        default=SESSION_TTL_S,
        help="seconds without a request after which a session expires (then 410 Gone)",
    )
    parser.add_argument(
        "--receive-timeout",
        type=float,
        default=RECEIVE_TIMEOUT_S,
        help="seconds a connection has to send its whole request; then 408 and closed",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        help="connections open at once; past it new ones get 503",
    )
    args = parser.parse_args(argv)

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
