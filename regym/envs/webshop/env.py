"""``regym/WebShop-v0``: shop on a website regym serves itself.

Each episode opens a fresh session on the shop (``app.py``) with one instruction;
the agent acts with WebShop's two actions, ``search[query]`` (only where the page has
a search bar) and ``click[text]`` (a button, product link or option on the page),
and sees WebShop's simple text observation of the served page. Buying ends the
episode with WebShop's reward in [0, 1] (``reward.py``); success is reward 1.

Backends (same pages, same text):

* ``"inprocess"`` (default): calls the WSGI app directly, no sockets;
* ``"http"``: urllib against a threaded server on 127.0.0.1 (started once per
  process), or against ``server_url`` (e.g. a ``regym serve-web`` container);
* ``"browser"``: Chromium driven by Playwright; observations come from the page's
  accessibility tree (``browser.py``).

The expert (``info["expert_action"]``) reads the current page and the goal: search
the instruction's key attributes and product type, open the first result that can
earn reward 1, choose the wanted options, buy; from a wrong page it goes back.

Levels (``webshop/levels.py``): ``level="title.1"`` plays one way of writing instructions in place of the
split's. ``dense_reward=True`` (rl-train's default, never evaluation's) pays progress on WebShop's own
score before the purchase: half the best ``get_reward`` seen so far, on a results page that of its best
listed product with no options chosen, on an item page that product with the options selected, paid as it
rises; the purchase then pays the rest of its reward (never below 0), so a win sums to exactly 1.

Each episode's session is ended on the next reset, on ``close()``, and when an env that
was never closed is garbage-collected (or its process exits), so an abandoned env does not
hold a session until the shop's idle timeout. Sessions count against the env's own quota on
the shop (a random owner token per env), not its host's. If the shop no longer holds it (HTTP 410: expired or evicted), the episode ends there, truncated,
with ``info["error"]`` saying why, never continuing on another goal.
"""

from __future__ import annotations

import re
import uuid
import weakref
from typing import Any
from urllib.parse import urlencode

import numpy as np

from regym.envs.base import Outcome, TextEnv
from regym.envs.options import ClientOption
from regym.envs.webshop.app import end_session_path, session_path, shared_app
from regym.envs.webshop.catalog import CATALOG_SEED, build_catalog
from regym.envs.webshop.instructions import GOAL_STYLES, SPLIT_PREFIX, Goal, make_goal, task_ids, task_prefix
from regym.envs.webshop.levels import WEBSHOP_LEVELS
from regym.envs.webshop.reward import can_fully_satisfy, get_reward
from regym.envs.webshop.server import HTTPClient, InProcessClient, shared_server
from regym.envs.webshop.text import SEP, Page, parse_page

BACKENDS = ("inprocess", "http", "browser")
MAX_RESULT_PAGES = 5
END_TIMEOUT_S = 2.0
"""Ending a session is a courtesy (the shop's idle timeout frees it anyway): never wait long for it."""
DENSE_SHARE = 0.5
"""The part of WebShop's score the dense reward pays before the purchase."""
_ACTION = re.compile(r"^\s*(search|click)\s*\[(.*)\]\s*$", re.IGNORECASE | re.DOTALL)


class _UrlBackend:
    """Drives the site by requesting the URLs the page's links and forms point to."""

    def __init__(self, client):
        self.client = client

    def open(self, url: str) -> tuple[Page, int]:
        response = self.client.request("GET", url)
        return parse_page(response.html), response.status

    def click(self, name: str, page: Page) -> tuple[Page, int]:
        target = page.clickables[name]
        response = self.client.request(target.method, target.url)
        return parse_page(response.html), response.status

    def search(self, query: str, page: Page) -> tuple[Page, int]:
        response = self.client.request("GET", f"{page.search_url}?{urlencode({'q': query, 'page': 1})}")
        return parse_page(response.html), response.status

    def end(self, url: str) -> None:
        try:
            self.client.request("POST", url, timeout=END_TIMEOUT_S)
        except OSError:  # the shop is unreachable: nothing to free, or its idle timeout will
            pass

    def close(self) -> None:
        pass


class WebShopEnv(TextEnv):
    """WebShop on a procedurally generated catalog served over (in-process or real) HTTP."""

    rl_defaults = {"max_turns": 10, "max_new_tokens": 32, "max_episode_tokens": 1024, "context": "window",
                   "history_turns": 1}
    """rl-train's episode shape (``regym.rl.config.resolve_config``): the expert buys in 5 turns, replies take up
    to 16 tokens, but its 5-turn sequence already runs to 1,200-1,600 tokens. Every page repeats the
    instruction and the selected options, so a window of 1 past exchange loses nothing and fits 1024 tokens."""
    splits = ("in_distribution", "near_out_of_distribution", "out_of_distribution")
    difficulty_levels = WEBSHOP_LEVELS.descriptions()
    level_splits = WEBSHOP_LEVELS.split_levels()
    client_options = {**TextEnv.client_options, "dense_reward": ClientOption(bool),
                      "level": ClientOption(str, choices=tuple(WEBSHOP_LEVELS.levels), nullable=True)}
    """Only the episode knobs: ``backend``, ``server_url``, ``browser_executable`` (a host program) and
    ``catalog_seed`` (a catalog built per value) are the operator's."""

    def __init__(
        self,
        split: str = "in_distribution",
        max_turns: int = 15,
        invalid_action_penalty: float = 0.0,
        render_mode: str | None = None,
        backend: str = "inprocess",
        server_url: str | None = None,
        catalog_seed: int = CATALOG_SEED,
        browser_executable: str = "/usr/bin/chromium",
        dense_reward: bool = False,
        level: str | None = None,
    ):
        """``level``: one difficulty level (``WEBSHOP_LEVELS``) in place of the split's instructions;
        ``dense_reward``: pay progress on WebShop's score before the purchase (module docstring)."""
        super().__init__(
            split=split,
            max_turns=max_turns,
            invalid_action_penalty=invalid_action_penalty,
            render_mode=render_mode,
        )
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.backend_name = backend
        self.dense_reward = bool(dense_reward)
        self.level = WEBSHOP_LEVELS.level(level) if level is not None else None
        self.task_prefix = self.level.settings["prefix"] if self.level else SPLIT_PREFIX[self.split]
        self._best_score = 0.0
        self.catalog_seed = catalog_seed
        self.catalog = build_catalog(catalog_seed)
        if backend == "inprocess":
            if server_url is not None:
                raise ValueError("server_url needs backend='http' or 'browser'")
            self._backend = _UrlBackend(InProcessClient(shared_app(catalog_seed)))
        else:
            self.server_url = server_url or shared_server(catalog_seed).url
            if backend == "http":
                self._backend = _UrlBackend(HTTPClient(self.server_url))
            else:
                from regym.envs.webshop.browser import BrowserBackend

                self._backend = BrowserBackend(self.server_url, executable_path=browser_executable)
        self.goal: Goal | None = None
        self.page: Page | None = None
        self.session_id: str | None = None
        self.owner = uuid.uuid4().hex
        self._session_ender: weakref.finalize | None = None
        self._searches = 0

    @property
    def task_ids(self) -> list[str]:
        """The split's (or level's) fixed goals, ``<prefix>-00000`` on: WebShop is scored on a fixed goal set."""
        return task_ids(self.task_prefix)

    # --- TextEnv hooks --------------------------------------------------------
    def _task_id_for(self, rng: np.random.Generator) -> str:
        index = int(rng.integers(GOAL_STYLES[self.task_prefix].size))
        return f"{self.task_prefix}-{index:05d}"

    def _begin(self, task_id: str) -> Outcome:
        prefix, _ = task_prefix(task_id)
        if prefix != self.task_prefix:
            playing = f"level {self.level.name!r}" if self.level else f"split {self.split!r}"
            raise ValueError(f"WebShop task {task_id!r} belongs to another split or level, not {playing} "
                             f"(its task ids are '{self.task_prefix}-<n>')")
        self.goal = make_goal(task_id, self.catalog_seed)
        self._end_session()
        self.session_id = uuid.uuid4().hex
        self._searches = 0
        self._best_score = 0.0
        self._session_ender = weakref.finalize(self, self._backend.end, end_session_path(self.session_id))
        self._session_ender.atexit = self.backend_name == "http"  # a browser may be gone by then
        page, status = self._backend.open(session_path(self.session_id, task_id, self.owner))
        if status != 200 or page.kind != "search":
            raise RuntimeError(f"the shop did not open a session (HTTP {status}: {page.text})")
        self.page = page
        return Outcome(page.text, info=self._extras())

    def _act(self, action: str) -> Outcome:
        match = _ACTION.match(action)
        if match is None:
            return self._invalid(f"{action!r} is not search[query] or click[button]")
        verb, argument = match.group(1).lower(), " ".join(match.group(2).split())
        if verb == "search":
            if not self.page.has_search_bar:
                return self._invalid("there is no search bar on this page; click[back to search] first")
            if not argument:
                return self._invalid("search[...] needs a query")
            page, status = self._backend.search(argument.lower(), self.page)
            self._searches += 1
        else:
            name = argument.lower()
            if name not in self.page.clickables:
                return self._invalid(f"there is no {argument!r} to click on this page")
            page, status = self._backend.click(name, self.page)
        if status == 410:
            error = f"the shop lost this episode's session: {page.text}"
            info = {**self._extras(), "error": error, "admissible_actions": [], "expert_action": None}
            return Outcome(page.text, info=info)
        if status != 200 or page.kind == "error":
            return self._invalid(f"the shop answered HTTP {status}")
        self.page = page
        if page.kind == "done":
            reward = float(page.reward or 0.0)
            won = reward >= 1.0 - 1e-9
            paid = DENSE_SHARE * self._best_score if self.dense_reward else 0.0
            return Outcome(page.text, reward=max(reward - paid, 0.0), terminated=True, won=won, info=self._extras())
        return Outcome(page.text, reward=self._progress() if self.dense_reward else 0.0, info=self._extras())

    def _progress(self) -> float:
        """The rise of ``DENSE_SHARE`` x the best WebShop score seen on a page (0 when it does not rise)."""
        page, goal = self.page, self.goal
        if page.kind == "results":
            products = [self.catalog.get(asin) for asin in page.asins]
            score = max((get_reward(p, goal, {}).total for p in products if p is not None), default=0.0)
        elif page.kind == "item" and self.catalog.get(page.item_asin or "") is not None:
            score = get_reward(self.catalog.get(page.item_asin), goal, page.selected_options).total
        else:
            return 0.0
        rise = DENSE_SHARE * max(score - self._best_score, 0.0)
        self._best_score = max(self._best_score, score)
        return rise

    def step(self, action: str):
        observation, reward, terminated, truncated, info = super().step(action)
        if "error" in info:  # the session is gone: nothing more can be played
            truncated = self._finished = True
        return observation, reward, terminated, truncated, info

    def close(self) -> None:
        self._end_session()
        self._backend.close()
        super().close()

    def _end_session(self) -> None:
        ender, self._session_ender, self.session_id = self._session_ender, None, None
        if ender is not None:
            ender()  # the backend's end, once: a finalizer called is detached

    # --- helpers ----------------------------------------------------------------
    def _invalid(self, reason: str) -> Outcome:
        return Outcome(f"Invalid action: {reason}.{SEP}{self.page.text}", valid=False, info=self._extras())

    def admissible_actions(self) -> list[str]:
        """WebShop's available actions: the search bar (as the expert's query) and every clickable."""
        actions = [f"search[{self.goal.search_query}]"] if self.page.has_search_bar else []
        return actions + [f"click[{name}]" for name in self.page.clickables]

    def expert_action(self) -> str | None:
        """The expert's next action from the current page (None once the item is bought)."""
        page, goal = self.page, self.goal
        if page.kind == "search":
            if self._searches == 0:
                return f"search[{goal.search_query}]"
            return f"search[{self.catalog.get(goal.asin).title.lower()}]"
        if page.kind == "results":
            for asin in page.asins:
                if can_fully_satisfy(self.catalog.get(asin), goal):
                    return f"click[{asin.lower()}]"
            if "next >" in page.clickables and (page.page_number or 1) < MAX_RESULT_PAGES:
                return "click[next >]"
            return "click[back to search]"
        if page.kind == "item":
            product = self.catalog.get(page.item_asin or "")
            if product is None or not can_fully_satisfy(product, goal):
                return "click[< prev]"
            for name, value in goal.options.items():
                if page.selected_options.get(name) != value:
                    return f"click[{value}]"
            return "click[buy now]"
        if page.kind == "item-sub":
            return "click[< prev]"
        return None

    def _extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {
            "admissible_actions": self.admissible_actions() if self.page.kind != "done" else [],
            "expert_action": self.expert_action(),
            "page": self.page.kind,
            "instruction": self.goal.instruction,
            "task_level": next(name for name, level in WEBSHOP_LEVELS.levels.items()
                               if level.settings["prefix"] == self.goal.task_id.rsplit("-", 1)[0]),
        }
        if self.page.kind == "done":
            extras["purchased_asin"] = self.page.purchased_asin
        return extras
