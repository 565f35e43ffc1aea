"""``regym serve-web``: serve the WebShop site over HTTP (for containers and humans).

Open ``http://HOST:PORT/<any session id>`` in a browser to shop, or point
``WebShopEnv(backend="http", server_url=...)`` at it.
"""

from __future__ import annotations

import argparse
import sys

from regym.envs.webshop.catalog import CATALOG_SEED


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
    args = parser.parse_args(argv)

    from regym.envs.webshop.app import WebShopApp
    from regym.envs.webshop.server import WebShopServer

    app = WebShopApp(catalog_seed=args.catalog_seed)
    server = WebShopServer(app, host=args.host, port=args.port, quiet=not args.access_log)
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
