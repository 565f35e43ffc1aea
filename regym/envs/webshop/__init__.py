"""WebShop, served by regym itself: a procedurally generated shop on 127.0.0.1.

See ``docs/webshop.md``. ``WebShopEnv`` is registered as ``regym/WebShop-v0``.
"""

from regym.envs.webshop.app import WebShopApp, shared_app
from regym.envs.webshop.env import WebShopEnv
from regym.envs.webshop.server import HTTPClient, InProcessClient, WebShopServer, shared_server

__all__ = [
    "HTTPClient",
    "InProcessClient",
    "WebShopApp",
    "WebShopEnv",
    "WebShopServer",
    "shared_app",
    "shared_server",
]
