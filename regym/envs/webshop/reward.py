"""WebShop's purchase reward: how well the bought item matches the instruction.

Mirrors ``get_reward`` of WebShop (``web_agent_site/engine/goal.py``; Yao et al., 2022,
Sec. 3.2)::

    r_total = r_type * (n_attributes_matched + n_options_matched + r_price)
                     / (n_goal_attributes + n_goal_options + 1)

* ``r_type`` (``get_type_reward``): 1 when the bought item is of the wanted kind. The
  "title score" is the fraction of the goal's product-type words found in the bought
  item's title (WebShop uses spaCy nouns of the product name; our product types are
  noun phrases, so their words serve). Not same-category and title score <= 0.2 gives
  0.5; title score < 0.1 gives 0.1; title score 0 gives 0.
* attributes (``get_attribute_reward``): a goal attribute matches when it is one of
  the item's attributes or appears in its title, bullet points or description
  (WebShop's fallback; its fuzzy ``token_set_ratio > 85`` is replaced by this
  normalised containment test, which needs no extra library).
* options (``get_option_reward``): each goal option matches when the buyer chose that
  exact value for that option (WebShop matches sizes exactly and other options
  fuzzily; our option vocabularies are closed, so exact is the same thing).
* price: 1 when the price is at most the goal's ceiling.

The result is in [0, 1]; WebShop counts an episode a success when it is 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from regym.envs.webshop.catalog import Product
from regym.envs.webshop.instructions import Goal

_WORD = re.compile(r"[a-z0-9][a-z0-9\-\.]*")
_STOPWORDS = frozenset({"a", "an", "and", "the", "for", "with", "of"})


@dataclass(frozen=True)
class RewardBreakdown:
    """The reward and its parts, as ``get_reward(..., verbose=True)`` reports them."""

    total: float
    r_type: float
    title_score: float
    category_match: bool
    attributes_matched: int
    attributes_wanted: int
    options_matched: int
    options_wanted: int
    price_ok: bool


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def type_reward(product: Product, goal: Goal) -> tuple[float, float, bool]:
    """(r_type, title_score, category_match), following WebShop's ``get_type_reward``."""
    category_match = product.category == goal.category
    desired = set(_words(goal.product_type))
    title_words = set(_words(product.title)) | set(_words(product.product_type))
    title_score = len(desired & title_words) / len(desired) if desired else 0.2
    r_type = 1.0
    if not (category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type, title_score, category_match


def attribute_matches(product: Product, goal: Goal) -> int:
    own = {a.lower() for a in product.attributes}
    text = " ".join([product.title, *product.features, product.description]).lower()
    return sum(1 for attribute in goal.attributes if attribute.lower() in own or attribute.lower() in text)


def option_matches(goal: Goal, chosen_options: dict[str, str]) -> int:
    chosen = {name.lower(): str(value).lower() for name, value in chosen_options.items()}
    return sum(1 for name, value in goal.options.items() if chosen.get(name.lower()) == value.lower())


def get_reward(product: Product, goal: Goal, chosen_options: dict[str, str]) -> RewardBreakdown:
    """Score buying ``product`` with ``chosen_options`` against ``goal`` (WebShop's ``get_reward``)."""
    r_type, title_score, category_match = type_reward(product, goal)
    n_attributes = attribute_matches(product, goal)
    n_options = option_matches(goal, chosen_options)
    price_ok = product.price <= goal.price_upper
    denominator = len(goal.attributes) + len(goal.options) + 1
    total = r_type * (n_attributes + n_options + float(price_ok)) / denominator
    return RewardBreakdown(
        total=round(total, 6),
        r_type=r_type,
        title_score=title_score,
        category_match=category_match,
        attributes_matched=n_attributes,
        attributes_wanted=len(goal.attributes),
        options_matched=n_options,
        options_wanted=len(goal.options),
        price_ok=price_ok,
    )


def can_fully_satisfy(product: Product, goal: Goal) -> bool:
    """Whether buying ``product`` with the goal's options would earn reward 1 (the expert's test)."""
    if any(value not in product.options.get(name, ()) for name, value in goal.options.items()):
        return False
    return get_reward(product, goal, goal.options).total >= 1.0
