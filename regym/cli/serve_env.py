"""``regym serve-env``: serve a regym env over OpenEnv's protocol, one env per session.

Play it from Python with ``gym.make("regym/Remote-v0", url="http://HOST:PORT", env="alfworld")``,
or with any OpenEnv client (``GenericEnvClient(base_url=...)``: reset, then step ``{"text": ...}``).
``GET /health`` answers while the server is up (the containers' healthcheck).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from regym.cli import preflight
from regym.configs import UsageError, parse, report_error
from regym.envs.service.app import build_app, serve
from regym.envs.service.environment import ServiceConfig


@dataclass
class ServeEnvArgs(ServiceConfig):
    """Serve a regym env over OpenEnv's protocol (WebSocket sessions at /ws, health at /health)."""

    host: str = "127.0.0.1"
    """Address to bind (0.0.0.0 inside a container)."""
    port: int = 8000
    """TCP port (0 picks a free one; the URL is printed)."""


def main(argv: list[str] | None = None) -> int:
    args = parse(ServeEnvArgs, argv, prog="regym serve-env", description=__doc__)
    served = " ".join(filter(None, [args.env or "every env family", args.split]))

    def ready(url: str) -> None:
        print(f"serving {served} on {url} (sessions at /ws, health at /health; Ctrl-C to stop)", flush=True)

    try:
        preflight.port(args.port)
        if args.env is not None:
            preflight.env_name(args.env)
        app = build_app(args)  # with --env, one env is made now: bad --env-kwargs fail here, not per session
    except (UsageError, TypeError, ValueError) as error:
        report_error("regym serve-env", error)
        return 2
    try:
        serve(app, host=args.host, port=args.port, on_ready=ready)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
