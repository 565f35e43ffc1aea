"""Shopping instructions (goals), one per task id, and the ID/OOD splits.

A goal follows WebShop's synthetic goals (``web_agent_site/engine/goal.py``,
``get_synthetic_goals``): a target product's attributes (here 2 or 3 of its 3), one
value per buying option, and a price ceiling drawn as WebShop does (two of the first
four multiples of $10 above the price, keep the larger). The instruction reads like
WebShop's: "i need a waterproof, hooded rain jacket for men with color: blue, and
size: m, and price lower than 60.00 dollars".

Splits:

* ``in_distribution``: goals in the twelve seen categories whose attribute pairs are
  all "seen" pairs.
* ``out_of_distribution``: goals in an unseen category (``OOD_CATEGORIES``: pet
  supplies, drinkware, bags) or, in a seen category, goals that combine a held-out
  attribute pair (about one pair in five per category, chosen by a fixed hash).

Every product stays on sale in every split; only the instructions differ.

Levels (``webshop/levels.py``) write instructions other ways, each from its own random stream and task
ids (``near-00042``, ``title.1-00042``): ``title.1`` names the product by its exact title (no options, no
price); ``attributes.1`` gives attributes and product type (no options); ``options.1`` is the
in-distribution split; ``options.2`` (near-OOD) asks for all three attributes, every option and the
tightest price ceiling; ``unseen.1`` is the out-of-distribution split.
"""

from __future__ import annotations

import itertools
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from regym.envs.webshop.catalog import CATALOG_SEED, CATEGORIES, OOD_CATEGORIES, Catalog, build_catalog

PRICE_STEPS = [10.0 * i for i in range(1, 100)]
_OPENERS = ("i need", "i am looking for", "i want to buy", "find me", "i'd like")


@dataclass(frozen=True)
class GoalStyle:
    """How a kind of task writes its goals: the generator settings of a WebShop level."""

    prefix: str
    """Task ids are ``<prefix>-<index>``."""
    size: int
    """Tasks in the level: indices 0 .. size-1."""
    stream: int
    """The goal generator's random stream (0: ID, 1: OOD; each style its own)."""
    ood: bool = False
    """Unseen categories or held-out attribute pairs (else seen categories and pairs only)."""
    exact_title: bool = False
    """The instruction is the product's exact title; the goal counts all the product's attributes."""
    all_attributes: bool = False
    options: bool = True
    """Ask one value per buying option."""
    price: str = "webshop"
    """``webshop``: WebShop's ceiling; ``tightest``: the first multiple of $10 above the price; ``none``."""


GOAL_STYLES = {style.prefix: style for style in (
    GoalStyle("id", 2000, 0),
    GoalStyle("ood", 500, 1, ood=True),
    GoalStyle("near", 500, 2, all_attributes=True, price="tightest"),
    GoalStyle("title.1", 500, 3, exact_title=True, options=False, price="none"),
    GoalStyle("attributes.1", 500, 4, options=False),
)}
SPLIT_PREFIX = {"in_distribution": "id", "near_out_of_distribution": "near", "out_of_distribution": "ood"}
SPLIT_SIZES = {split: GOAL_STYLES[prefix].size for split, prefix in SPLIT_PREFIX.items()}
_TASK_ID = re.compile(rf"^({'|'.join(re.escape(prefix) for prefix in GOAL_STYLES)})-(\d+)$")


@dataclass(frozen=True)
class Goal:
    """What the shopper wants: the reward compares the bought item against this."""

    task_id: str
    asin: str
    category: str
    product_type: str
    attributes: tuple[str, ...]
    options: dict[str, str]
    price_upper: float
    instruction: str

    @property
    def search_query(self) -> str:
        """The expert's query: the instruction's key attributes and the product type."""
        return " ".join([*self.attributes, self.product_type])


def held_out_pair(category: str, first: str, second: str) -> bool:
    """Whether this attribute pair never appears together in an in-distribution goal."""
    key = "|".join([category, *sorted((first, second))]).encode()
    return zlib.crc32(key) % 5 == 0


def _is_ood(category: str, attributes: tuple[str, ...]) -> bool:
    if category in OOD_CATEGORIES:
        return True
    return any(held_out_pair(category, a, b) for a, b in itertools.combinations(attributes, 2))


def _price_upper(price: float, rng: np.random.Generator) -> float:
    steps = [p for p in PRICE_STEPS if p > price][:4]
    if len(steps) < 2:
        return 1_000_000.0
    return float(max(rng.choice(steps, size=2, replace=False)))


def _instruction(attributes, product_type, options, price_upper, rng) -> str:
    opener = str(rng.choice(_OPENERS))
    article = "an" if attributes[0][0] in "aeiou" else "a"
    described = ", ".join(attributes[:-1]) + (" and " if len(attributes) > 1 else "") + attributes[-1]
    text = f"{opener} {article} {described} {product_type}"
    option_text = ", and ".join(f"{name}: {value}" for name, value in options.items())
    if option_text:
        text += f" with {option_text}"
    if price_upper < 1_000_000:
        text += f", and price lower than {price_upper:.2f} dollars"
    return text


def parse_task_id(task_id: str) -> tuple[str, int]:
    """``"id-00042"`` -> ("in_distribution", 42), ``"title.1-00003"`` -> ("title.1", 3): the split (or the level
    outside the splits) and the index, or a ValueError saying which task ids exist."""
    prefix, index = task_prefix(task_id)
    split = next((split for split, its_prefix in SPLIT_PREFIX.items() if its_prefix == prefix), prefix)
    return split, index


def task_prefix(task_id: str) -> tuple[str, int]:
    """``"id-00042"`` -> ("id", 42): the goal style's prefix and the index (``parse_task_id``'s checks)."""
    match = _TASK_ID.match(str(task_id))
    known = ", ".join(f"'{style.prefix}-<n>' (n < {style.size})" for style in GOAL_STYLES.values())
    if not match:
        raise ValueError(f"unknown WebShop task id {task_id!r}; task ids are {known}")
    prefix, index = match.group(1), int(match.group(2))
    if index >= GOAL_STYLES[prefix].size:
        raise ValueError(f"unknown WebShop task id {task_id!r}: {prefix!r} has tasks 0 to "
                         f"{GOAL_STYLES[prefix].size - 1}")
    return prefix, index


def task_ids(prefix: str) -> list[str]:
    """Every task id of a split (``in_distribution``) or goal style (``title.1``)."""
    style = GOAL_STYLES[SPLIT_PREFIX.get(prefix, prefix)]
    return [f"{style.prefix}-{i:05d}" for i in range(style.size)]


@lru_cache(maxsize=8192)
def make_goal(task_id: str, catalog_seed: int = CATALOG_SEED) -> Goal:
    """The goal of ``task_id``: the same instruction and target on every machine."""
    prefix, index = task_prefix(task_id)
    style = GOAL_STYLES[prefix]
    catalog: Catalog = build_catalog(catalog_seed)
    rng = np.random.default_rng([catalog_seed, style.stream, index])
    want_ood = style.ood
    seen = [c.name for c in CATEGORIES if c.name not in OOD_CATEGORIES]
    for _ in range(1000):
        if want_ood and rng.random() < 0.5:
            category = str(rng.choice(OOD_CATEGORIES))
        else:
            category = str(rng.choice(seen))
        shelf = catalog.in_category(category)
        product = shelf[int(rng.integers(len(shelf)))]
        count = int(rng.integers(2, len(product.attributes) + 1))
        if style.all_attributes or style.exact_title:
            count = len(product.attributes)
        indices = sorted(rng.choice(len(product.attributes), size=count, replace=False))
        attributes = tuple(product.attributes[i] for i in indices)
        if _is_ood(category, attributes) != want_ood:
            continue
        options = {name: str(rng.choice(values)) for name, values in product.options.items()}
        price_upper = _price_upper(product.price, rng)
        if not style.options:
            options = {}
        if style.price == "tightest":
            price_upper = next((p for p in PRICE_STEPS if p > product.price), 1_000_000.0)
        elif style.price == "none":
            price_upper = 1_000_000.0
        instruction = _instruction(attributes, product.product_type, options, price_upper, rng)
        if style.exact_title:
            instruction = f"{rng.choice(_OPENERS)} the {product.title.lower()}"
        return Goal(
            task_id=task_id,
            asin=product.asin,
            category=category,
            product_type=product.product_type,
            attributes=attributes,
            options=options,
            price_upper=price_upper,
            instruction=instruction,
        )
    raise RuntimeError(f"could not draw a {prefix!r} goal for {task_id!r}")
