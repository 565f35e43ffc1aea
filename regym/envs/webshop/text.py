"""From a served HTML page to what the model sees and what it can click.

WebShop's text environment (``web_agent_site/envs/web_agent_text_env.py``) turns a
page into its "simple" observation by joining the visible text nodes with
``" [SEP] "`` (``convert_html_to_text(html, simple=True)``), and finds the clickables
(``get_available_actions``): buttons, product links and buying options, keyed by
their lower-cased text, plus the search bar when the page has one. The actions are
``search[query]`` and ``click[text]``. This module does the same with the standard
library's HTML parser (no BeautifulSoup needed), and also reads the page's
``data-*`` markers (page kind, result ASINs, chosen options, score) that the expert
and the reward read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

SEP = " [SEP] "
_INVISIBLE = {"head", "title", "style", "script", "template"}


@dataclass(frozen=True)
class Clickable:
    """Where clicking an element leads (HTTP method, site-relative URL) and how a browser finds it."""

    method: str
    url: str
    label: str = ""
    role: str = "link"


@dataclass
class Page:
    """One parsed page of the shop."""

    kind: str
    text: str
    clickables: dict[str, Clickable] = field(default_factory=dict)
    search_url: str | None = None
    asins: list[str] = field(default_factory=list)
    item_asin: str | None = None
    selected_options: dict[str, str] = field(default_factory=dict)
    page_number: int | None = None
    reward: float | None = None
    purchased_asin: str | None = None

    @property
    def has_search_bar(self) -> bool:
        return self.search_url is not None


class _ShopParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.page = Page(kind="unknown", text="")
        self._stack: list[str] = []
        self._invisible_depth = 0
        self._link: dict | None = None
        self._form: dict | None = None
        self._button: list[str] | None = None
        self._capture_purchased = False

    def handle_starttag(self, tag, attrs):
        attributes = {k: (v or "") for k, v in attrs}
        if tag in _INVISIBLE:
            self._invisible_depth += 1
        if tag == "body":
            self.page.kind = attributes.get("data-page", "unknown")
            if "data-page-number" in attributes:
                self.page.page_number = int(attributes["data-page-number"])
        if "data-asin" in attributes:
            if "product" in attributes.get("class", "").split():
                self.page.asins.append(attributes["data-asin"])
            elif attributes.get("id") in ("item", "item-sub"):
                self.page.item_asin = attributes["data-asin"]
        if "data-reward" in attributes:
            self.page.reward = float(attributes["data-reward"])
        if attributes.get("id") == "purchased-asin":
            self._capture_purchased = True
        if tag == "a" and "href" in attributes:
            self._link = {"href": attributes["href"], "text": [], "attributes": attributes}
        elif tag == "form":
            self._form = {
                "method": attributes.get("method", "get").upper(),
                "action": attributes.get("action", ""),
                "id": attributes.get("id"),
            }
        elif tag == "button":
            self._button = []
        if tag not in ("br", "img", "input", "meta", "link", "hr"):
            self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag in _INVISIBLE:
            self._invisible_depth = max(0, self._invisible_depth - 1)
        if tag == "a" and self._link is not None:
            text = " ".join(" ".join(self._link["text"]).split())
            attributes = self._link["attributes"]
            if text:
                self.page.clickables[text.lower()] = Clickable("GET", self._link["href"], text, "link")
                if attributes.get("data-selected") == "true" and "data-option-name" in attributes:
                    self.page.selected_options[attributes["data-option-name"]] = text
            self._link = None
        elif tag == "button" and self._button is not None and self._form is not None:
            text = " ".join(" ".join(self._button).split())
            if self._form["id"] == "search-form":
                self.page.search_url = self._form["action"]
            elif text:
                self.page.clickables[text.lower()] = Clickable(
                    self._form["method"], self._form["action"], text, "button"
                )
            self._button = None
        elif tag == "form":
            self._form = None
        if self._stack and tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass

    def handle_data(self, data):
        if self._invisible_depth:
            return
        text = data.strip()
        if not text:
            return
        self.texts.append(" ".join(text.split()))
        if self._link is not None:
            self._link["text"].append(text)
        if self._button is not None:
            self._button.append(text)
        if self._capture_purchased:
            self.page.purchased_asin = text
            self._capture_purchased = False


def parse_page(html: str) -> Page:
    """Parse a shop page: its simple text observation, clickables and data markers."""
    parser = _ShopParser()
    parser.feed(html)
    parser.close()
    page = parser.page
    page.text = SEP.join(parser.texts)
    return page

