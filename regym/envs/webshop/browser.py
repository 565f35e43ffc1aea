"""Optional real-browser backend: the same shop pages driven by Chromium via Playwright.

Clicks are real clicks on the element with that accessible role and name; a search
types into the search box and presses the Search button. The observation is read
from the page's accessibility tree (Playwright's ``aria_snapshot``): the accessible
names and texts in document order, joined with WebShop's ``[SEP]``. The page's HTML
(``page.content()``) still gives the clickables, the expert's view and the score.

Needs the ``playwright`` Python package (extra ``regym[browser]``) and a Chromium
binary; regym uses Debian's ``/usr/bin/chromium`` and never downloads a browser.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import yaml

from regym.envs.webshop.text import SEP, Page, parse_page

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
NAVIGATION_TIMEOUT_MS = 30_000
_NODE = re.compile(r'^(?P<role>[\w-]+)(?: "(?P<name>(?:[^"\\]|\\.)*)")?')
_SKIPPED_ROLES = {"textbox", "searchbox", "img"}


def browser_unavailable_reason(executable_path: str = "/usr/bin/chromium") -> str | None:
    """Why the browser backend cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install 'regym[browser]')"
    if not os.access(executable_path, os.X_OK):
        return f"no Chromium at {executable_path} (apt-get install chromium)"
    return None


def accessibility_text(snapshot: str) -> str:
    """The simple observation from an aria snapshot: accessible names and texts, in order."""
    texts: list[str] = []
    _walk(yaml.safe_load(snapshot) or [], texts)
    return SEP.join(texts)


def _walk(nodes: Any, texts: list[str]) -> None:
    if not isinstance(nodes, list):
        return
    for node in nodes:
        if isinstance(node, dict):
            if not node:
                continue
            key, value = next(iter(node.items()))
        else:
            key, value = str(node), None
        key = str(key)
        if key.startswith("/"):
            continue
        match = _NODE.match(key)
        role = match.group("role") if match else ""
        name = json.loads(f'"{match.group("name")}"') if match and match.group("name") is not None else ""
        if role in _SKIPPED_ROLES:
            continue
        if name:
            texts.append(" ".join(name.split()))
        if isinstance(value, list):
            _walk(value, texts)
        elif value is not None and not name:
            text = " ".join(str(value).split())
            if text:
                texts.append(text)


class BrowserBackend:
    """One headless Chromium tab per env, launched on first use."""

    def __init__(self, base_url: str, executable_path: str = "/usr/bin/chromium"):
        reason = browser_unavailable_reason(executable_path)
        if reason:
            raise RuntimeError(f"browser backend unavailable: {reason}")
        self.base_url = base_url.rstrip("/")
        self.executable_path = executable_path
        self._playwright = None
        self._browser = None
        self._page = None

    def _tab(self):
        if self._page is None:
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable_path, args=list(CHROMIUM_ARGS), headless=True
            )
            self._page = self._browser.new_page()
            self._page.set_default_timeout(NAVIGATION_TIMEOUT_MS)
        return self._page

    def _read(self, response) -> tuple[Page, int]:
        tab = self._tab()
        page = parse_page(tab.content())
        page.text = accessibility_text(tab.locator("body").aria_snapshot())
        return page, (response.status if response is not None else 200)

    def open(self, url: str) -> tuple[Page, int]:
        response = self._tab().goto(self.base_url + url)
        return self._read(response)

    def click(self, name: str, page: Page) -> tuple[Page, int]:
        target = page.clickables[name]
        tab = self._tab()
        with tab.expect_navigation() as navigation:
            tab.get_by_role(target.role, name=target.label, exact=True).first.click()
        return self._read(navigation.value)

    def search(self, query: str, page: Page) -> tuple[Page, int]:
        tab = self._tab()
        tab.fill("#search_input", query)
        with tab.expect_navigation() as navigation:
            tab.get_by_role("button", name="Search", exact=True).click()
        return self._read(navigation.value)

    def end(self, url: str) -> None:
        """Ends the session at ``url`` (a POST, as the shop wants) from the tab's own context."""
        if self._page is not None:
            from playwright.sync_api import Error

            try:
                self._page.request.post(self.base_url + url)
            except Error:  # the shop is unreachable: nothing to free, or its idle timeout will
                pass

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
            self._playwright.stop()
        self._page = self._browser = self._playwright = None
