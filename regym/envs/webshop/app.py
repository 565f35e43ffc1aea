"""The shop itself: a WSGI app with real HTML pages and per-session state.

The pages and their flow follow WebShop's Flask site (``web_agent_site/app.py`` and
``templates/``): a search page, a results page (10 per page, "Next >"/"< Prev"),
an item page with its buying options, "Description"/"Features"/"Reviews" sub-pages,
"Buy Now", and a done page with the score. As in WebShop, each shopper is a session
named in the URL path (``/<session_id>/...``); the session holds its own goal,
query, results page, product, chosen options and purchase, so concurrent shoppers
never see each other's state.

Sessions are never replaced behind a shopper's back. Only ``?task_id=`` starts one;
a request naming a session the shop does not hold (never started, ended, or expired
after ``session_ttl_s`` without a request) gets ``410 Gone``, so a client learns its
episode is lost instead of being handed another goal.

Quotas are per session owner: a start may name its owner (``&owner=<token>``; every
``WebShopEnv`` sends a random one of its own), and each owner holds at most
``max_sessions_per_client`` sessions (``429``). A start naming no owner is owned by its
socket's address (never a forwarded header). So one local client holding its quota, or
flooding without an owner, costs every other env on the same host nothing; only the whole
store is shared, and a full store refuses new sessions (``503``) rather than evict one in use.

Routes::

    GET  /                                   home page
    GET  /healthz                            "ok"
    GET  /<sid>?task_id=id-00042[&owner=tok]  start (or restart) a session: search page
    GET  /<sid>                              search page of a running session
    GET  /<sid>/search?q=...&page=N          results
    GET  /<sid>/item/<asin>                  item page
    GET  /<sid>/item/<asin>/option?name=&value=   choose a buying option
    GET  /<sid>/item/<asin>/<description|features|reviews>
    POST /<sid>/buy/<asin>                   buy with the chosen options -> done page
    POST /<sid>/end                          end the session (frees its place in the store)

No JavaScript is needed: options are links and "Buy Now" is a form, so the same pages
work for urllib, a WSGI call and a real browser.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape
from urllib.parse import parse_qs, quote, urlencode

from regym.envs.webshop.catalog import CATALOG_SEED, Catalog, Product, build_catalog
from regym.envs.webshop.instructions import Goal, make_goal, parse_task_id
from regym.envs.webshop.reward import RewardBreakdown, get_reward
from regym.envs.webshop.search import RESULTS_PER_PAGE, SearchEngine

MAX_SESSIONS = 4096
MAX_SESSIONS_PER_CLIENT = 64
"""Sessions one owner holds at once: an env holds one (its episode's), a person in a browser a few tabs."""
SESSION_TTL_S = 900.0
"""A session with no request for this long expires (then 410): far above a policy's time per step,
short enough that sessions a client abandoned soon free its quota."""
IN_PROCESS_CLIENT = "in-process"
MAX_QUERY_CHARS = 256
_SESSION_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
SUB_PAGES = {"description": "Description", "features": "Features", "reviews": "Reviews"}

_STYLE = """
body{font-family:sans-serif;margin:2em;max-width:60em}
#instruction-text{background:#f4f4f4;padding:.5em 1em;border-radius:6px}
.btn{display:inline-block;margin:.2em;padding:.3em .8em;border:1px solid #888;border-radius:4px;
text-decoration:none;color:#000;background:#fafafa;cursor:pointer;font-size:1em}
.option.selected{background:#2a6;color:#fff}
.product{border-bottom:1px solid #ddd;padding:.5em 0}
"""


@dataclass
class Session:
    """One shopper's state: what they want, where they are, what they chose and bought."""

    goal: Goal
    keywords: str | None = None
    page: int = 1
    asin: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    purchase: dict | None = None
    client: str = IN_PROCESS_CLIENT
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


class HTTPError(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class WebShopApp:
    """The WSGI application. One instance serves any number of concurrent sessions."""

    def __init__(
        self,
        catalog_seed: int = CATALOG_SEED,
        max_sessions: int = MAX_SESSIONS,
        max_sessions_per_client: int = MAX_SESSIONS_PER_CLIENT,
        session_ttl_s: float = SESSION_TTL_S,
    ):
        self.catalog_seed = catalog_seed
        self.catalog: Catalog = build_catalog(catalog_seed)
        self.search_engine = SearchEngine(self.catalog)
        self.max_sessions = max_sessions
        self.max_sessions_per_client = max_sessions_per_client
        self.session_ttl_s = session_ttl_s
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._sessions_per_client: dict[str, int] = {}
        self._sessions_lock = threading.Lock()

    # --- sessions ---------------------------------------------------------------
    def start_session(self, session_id: str, task_id: str, client: str = IN_PROCESS_CLIENT) -> Session:
        """Start (or restart) ``session_id`` on ``task_id`` for ``client``.

        Only sessions idle past ``session_ttl_s`` are ever evicted. Raises 429 when ``client``
        already holds its quota and 503 when every stored session is in use.
        """
        if not _SESSION_ID.match(session_id):
            raise HTTPError("400 Bad Request", f"bad session id {session_id!r}")
        session = Session(goal=make_goal(task_id, self.catalog_seed), client=client)
        with self._sessions_lock:
            session.last_used = time.monotonic()
            self._evict_idle(session.last_used)
            replaced = self._sessions.get(session_id)
            held = self._sessions_per_client.get(client, 0)
            if replaced is not None and replaced.client == client:
                held -= 1
            if held >= self.max_sessions_per_client:
                raise HTTPError(
                    "429 Too Many Requests",
                    f"{client} already holds {self.max_sessions_per_client} sessions; "
                    f"end one (POST /<sid>/end) or let it expire ({self.session_ttl_s:g} s idle)",
                )
            if replaced is None and len(self._sessions) >= self.max_sessions:
                raise HTTPError(
                    "503 Service Unavailable",
                    f"all {self.max_sessions} sessions are in use; retry when one ends or expires",
                )
            if replaced is not None:
                self._remove(session_id)
            self._sessions[session_id] = session
            self._sessions_per_client[client] = self._sessions_per_client.get(client, 0) + 1
        return session

    def session(self, session_id: str) -> Session:
        """The running session named ``session_id``; 410 Gone when the shop does not hold it."""
        if not _SESSION_ID.match(session_id):
            raise HTTPError("400 Bad Request", f"bad session id {session_id!r}")
        with self._sessions_lock:
            now = time.monotonic()
            self._evict_idle(now)
            session = self._sessions.get(session_id)
            if session is None:
                raise HTTPError(
                    "410 Gone",
                    f"session {session_id!r} is unknown or expired (ended, or idle over "
                    f"{self.session_ttl_s:g} s); start a new one with /<sid>?task_id=...",
                )
            session.last_used = now
            self._sessions.move_to_end(session_id)
            return session

    def end_session(self, session_id: str) -> None:
        with self._sessions_lock:
            if session_id in self._sessions:
                self._remove(session_id)

    @property
    def num_sessions(self) -> int:
        return len(self._sessions)

    def _evict_idle(self, now: float) -> None:
        """Drop sessions unused for ``session_ttl_s``, oldest first (the store is in order of use)."""
        while self._sessions:
            session_id, oldest = next(iter(self._sessions.items()))
            if now - oldest.last_used <= self.session_ttl_s:
                return
            self._remove(session_id)

    def _remove(self, session_id: str) -> None:
        client = self._sessions.pop(session_id).client
        self._sessions_per_client[client] -= 1
        if not self._sessions_per_client[client]:
            del self._sessions_per_client[client]

    # --- WSGI -------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "/") or "/"
        query = {
            k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()
        }
        content_type = "text/html; charset=utf-8"
        try:
            # The owner a start names, else the socket's address (never X-Forwarded-For: any client writes that).
            client = session_owner(query.get("owner"), environ.get("REMOTE_ADDR"))
            status, body = "200 OK", self.route(method, path, query, client)
            if path == "/healthz":
                content_type = "text/plain; charset=utf-8"
        except HTTPError as error:
            status, body = error.status, _error_page(error.status, error.message)
        except Exception as error:  # a bug must not take the server down; show it as a 500 page
            status, body = "500 Internal Server Error", _error_page("500", f"{type(error).__name__}: {error}")
        payload = body.encode("utf-8")
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(payload)))])
        return [payload]

    def route(self, method: str, path: str, query: dict[str, str], client: str = IN_PROCESS_CLIENT) -> str:
        parts = [p for p in path.split("/") if p]
        if not parts:
            return _home_page()
        if parts == ["healthz"]:
            return "ok"
        session_id, rest = parts[0], parts[1:]
        if not rest and "task_id" in query:
            try:
                parse_task_id(query["task_id"])
            except ValueError as error:
                raise HTTPError("400 Bad Request", str(error)) from None
            session = self.start_session(session_id, query["task_id"], client)
            return self.search_page(session_id, session)
        if rest == ["end"]:
            if method != "POST":
                raise HTTPError("405 Method Not Allowed", "ending a session needs POST")
            self.session(session_id)
            self.end_session(session_id)
            return _page("ended", "", f"<p>Session {escape(session_id)} ended.</p>")
        session = self.session(session_id)
        with session.lock:
            if session.purchase:
                return self.done_page(session_id, session)
            if not rest:
                return self.search_page(session_id, session)
            if rest == ["search"]:
                return self.results_page(session_id, session, query)
            if rest[0] == "item" and len(rest) >= 2:
                product = self._product(rest[1])
                if len(rest) == 2:
                    return self.item_page(session_id, session, product)
                if len(rest) == 3 and rest[2] == "option":
                    return self.choose_option(session_id, session, product, query)
                if len(rest) == 3 and rest[2] in SUB_PAGES:
                    return self.sub_page(session_id, session, product, rest[2])
            if rest[0] == "buy" and len(rest) == 2:
                if method != "POST":
                    raise HTTPError("405 Method Not Allowed", "buying needs POST (the Buy Now button)")
                return self.buy(session_id, session, self._product(rest[1]))
        raise HTTPError("404 Not Found", f"no page at {path}")

    def _product(self, asin: str) -> Product:
        product = self.catalog.get(asin)
        if product is None:
            raise HTTPError("404 Not Found", f"no product {asin!r}")
        return product

    # --- pages ------------------------------------------------------------------
    def search_page(self, sid: str, session: Session) -> str:
        body = (
            '<div id="logo"><h1>WebShop</h1></div>'
            + _instruction(session.goal)
            + f'<form id="search-form" method="get" action="/{sid}/search">'
            '<input id="search_input" type="text" name="q" placeholder="Search..." aria-label="Search">'
            '<button type="submit" class="btn search-button">Search</button></form>'
        )
        return _page("search", sid, body)

    def results_page(self, sid: str, session: Session, query: dict[str, str]) -> str:
        keywords = " ".join(query.get("q", "").split())[:MAX_QUERY_CHARS]
        if not keywords:
            raise HTTPError("400 Bad Request", "empty search")
        try:
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            raise HTTPError("400 Bad Request", "page must be a number") from None
        results = self.search_engine.search(keywords)
        session.keywords, session.page, session.asin, session.options = keywords, page, None, {}
        shown = results[(page - 1) * RESULTS_PER_PAGE : page * RESULTS_PER_PAGE]
        nav = [_link("Back to Search", f"/{sid}", "btn back-to-search")]
        if page > 1:
            nav.append(_link("< Prev", _results_url(sid, keywords, page - 1), "btn prev"))
        if page * RESULTS_PER_PAGE < len(results):
            nav.append(_link("Next >", _results_url(sid, keywords, page + 1), "btn next"))
        items = "".join(
            f'<div class="product" data-asin="{p.asin}">'
            + _link(p.asin, f"/{sid}/item/{p.asin}", "product-link")
            + f'<h4 class="product-title">{escape(p.title)}</h4>'
            f'<h5 class="product-price">${p.price:.2f}</h5></div>'
            for p in shown
        )
        body = (
            _instruction(session.goal)
            + f'<div class="nav">{nav[0]}</div>'
            + f'<p class="results-count">Page {page} (Total results: {len(results)})</p>'
            + f'<div class="nav">{"".join(nav[1:])}</div>'
            + f'<div id="results">{items}</div>'
        )
        return _page("results", sid, body, {"page-number": str(page)})

    def item_page(self, sid: str, session: Session, product: Product) -> str:
        if session.asin != product.asin:
            session.asin, session.options = product.asin, {}
        option_blocks = []
        for name, values in product.options.items():
            links = "".join(
                f'<a class="btn option{" selected" if session.options.get(name) == value else ""}" '
                f'data-option-name="{escape(name)}" '
                f'data-selected="{"true" if session.options.get(name) == value else "false"}" '
                f'href="/{sid}/item/{product.asin}/option?{urlencode({"name": name, "value": value})}">'
                f"{escape(value)}</a>"
                for value in values
            )
            option_blocks.append(f'<div class="option-group"><h4>{escape(name)}</h4>{links}</div>')
        selected = ""
        if session.options:
            chosen = ", ".join(f"{k}: {v}" for k, v in session.options.items())
            selected = f'<p id="selected-options">Selected options: {escape(chosen)}</p>'
        sub_links = "".join(
            _link(label, f"/{sid}/item/{product.asin}/{key}", "btn") for key, label in SUB_PAGES.items()
        )
        body = (
            _instruction(session.goal)
            + self._back_links(sid, session, prev_url=None)
            + f'<div id="item" data-asin="{product.asin}">'
            + "".join(option_blocks)
            + selected
            + f'<h2 class="product-title">{escape(product.title)}</h2>'
            f"<h4>Price: ${product.price:.2f}</h4><h4>Rating: {product.rating}</h4>"
            f'<div class="sub-pages">{sub_links}</div>'
            f'<form method="post" action="/{sid}/buy/{product.asin}">'
            '<button type="submit" class="btn purchase">Buy Now</button></form></div>'
        )
        return _page("item", sid, body)

    def choose_option(self, sid: str, session: Session, product: Product, query: dict[str, str]) -> str:
        name, value = query.get("name", ""), query.get("value", "")
        if value not in product.options.get(name, ()):
            raise HTTPError("400 Bad Request", f"{product.asin} has no option {name}: {value}")
        if session.asin != product.asin:
            session.asin, session.options = product.asin, {}
        session.options[name] = value
        return self.item_page(sid, session, product)

    def sub_page(self, sid: str, session: Session, product: Product, which: str) -> str:
        if which == "description":
            content = f"<p>{escape(product.description)}</p>"
        elif which == "features":
            content = "<ul>" + "".join(f"<li>{escape(f)}</li>" for f in product.features) + "</ul>"
        else:
            content = "".join(f'<p class="review">{escape(r)}</p>' for r in product.reviews)
        body = (
            _instruction(session.goal)
            + self._back_links(sid, session, prev_url=f"/{sid}/item/{product.asin}")
            + f'<div id="item-sub" data-asin="{product.asin}" data-sub-page="{which}">{content}</div>'
        )
        return _page("item-sub", sid, body)

    def buy(self, sid: str, session: Session, product: Product) -> str:
        options = dict(session.options) if session.asin == product.asin else {}
        reward: RewardBreakdown = get_reward(product, session.goal, options)
        session.purchase = {
            "asin": product.asin,
            "options": options,
            "reward": reward.total,
            "breakdown": reward.__dict__,
        }
        return self.done_page(sid, session)

    def done_page(self, sid: str, session: Session) -> str:
        purchase = session.purchase or {}
        body = (
            '<div id="thankyou"><h1>Thank you for shopping with us!</h1></div>'
            '<div id="purchase"><h3>Purchased</h3>'
            f'<h4>asin</h4><p id="purchased-asin">{purchase["asin"]}</p>'
            f'<h4>options</h4><p id="purchased-options">{escape(json.dumps(purchase["options"]))}</p></div>'
            '<div id="score"><h3>Your score (min 0.0, max 1.0)</h3>'
            f'<p id="reward" data-reward="{purchase["reward"]}">{purchase["reward"]:.4g}</p></div>'
        )
        return _page("done", sid, body)

    def _back_links(self, sid: str, session: Session, prev_url: str | None) -> str:
        if prev_url is None:
            prev_url = _results_url(sid, session.keywords, session.page) if session.keywords else f"/{sid}"
        return (
            '<div class="nav">'
            + _link("Back to Search", f"/{sid}", "btn back-to-search")
            + _link("< Prev", prev_url, "btn prev")
            + "</div>"
        )


def _results_url(sid: str, keywords: str, page: int) -> str:
    return f"/{sid}/search?{urlencode({'q': keywords, 'page': page})}"


def _link(text: str, href: str, css_class: str) -> str:
    return f'<a class="{css_class}" href="{escape(href)}">{escape(text)}</a>'


def _instruction(goal: Goal) -> str:
    return (
        '<div id="instruction-text"><h4>Instruction:</h4>'
        f'<h4 id="instruction">{escape(goal.instruction)}</h4></div>'
    )


def _page(kind: str, sid: str, body: str, data: dict[str, str] | None = None) -> str:
    attributes = "".join(f' data-{k}="{escape(v)}"' for k, v in (data or {}).items())
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>WebShop</title>'
        f"<style>{_STYLE}</style></head>"
        f'<body data-page="{kind}" data-session="{escape(sid)}"{attributes}>{body}</body></html>'
    )


def _home_page() -> str:
    body = (
        "<h1>WebShop</h1><p>A shop served by regym. Open a session to start shopping:</p>"
        + _link("Start shopping", "/demo?task_id=id-00000", "btn")
        + "<p>Or open /&lt;session id&gt;?task_id=id-00042 for a given task.</p>"
    )
    return _page("home", "", body)


def _error_page(status: str, message: str) -> str:
    return _page("error", "", f"<h1>{escape(status)}</h1><p>{escape(message)}</p>")


@lru_cache(maxsize=4)
def shared_app(catalog_seed: int = CATALOG_SEED) -> WebShopApp:
    """One app per catalog seed per process, shared by every env (catalog and index built once)."""
    return WebShopApp(catalog_seed)


def session_owner(owner: str | None, address: str | None) -> str:
    """Whose quota a session counts against: the owner it names, else its socket's address."""
    if owner is not None:
        if not _SESSION_ID.match(owner):
            raise HTTPError("400 Bad Request", f"bad owner {owner[:80]!r}: 1-64 letters, digits, _ or -")
        return f"owner {owner}"
    return f"address {address}" if address else IN_PROCESS_CLIENT


def session_path(session_id: str, task_id: str, owner: str | None = None) -> str:
    query = {"task_id": task_id, **({"owner": owner} if owner is not None else {})}
    return f"/{quote(session_id)}?{urlencode(query)}"


def end_session_path(session_id: str) -> str:
    return f"/{quote(session_id)}/end"
