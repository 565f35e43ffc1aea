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
"""

from __future__ import annotations

import itertools
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from regym.envs.webshop.catalog import CATALOG_SEED, CATEGORIES, OOD_CATEGORIES, Catalog, build_catalog

SPLIT_SIZES = {"in_distribution": 2000, "out_of_distribution": 500}
SPLIT_PREFIX = {"in_distribution": "id", "out_of_distribution": "ood"}
PRICE_STEPS = [10.0 * i for i in range(1, 100)]
_OPENERS = ("i need", "i am looking for", "i want to buy", "find me", "i'd like")
_TASK_ID = re.compile(r"^(id|ood)-(\d+)$")


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
    """``"id-00042"`` -> ("in_distribution", 42)."""
    match = _TASK_ID.match(str(task_id))
    if not match:
        raise ValueError(f"bad WebShop task id {task_id!r}; expected 'id-<n>' or 'ood-<n>'")
    split = "in_distribution" if match.group(1) == "id" else "out_of_distribution"
    return split, int(match.group(2))


def task_ids(split: str) -> list[str]:
    prefix = SPLIT_PREFIX[split]
    return [f"{prefix}-{i:05d}" for i in range(SPLIT_SIZES[split])]


@lru_cache(maxsize=8192)
def make_goal(task_id: str, catalog_seed: int = CATALOG_SEED) -> Goal:
    """The goal of ``task_id``: the same instruction and target on every machine."""
    split, index = parse_task_id(task_id)
    catalog: Catalog = build_catalog(catalog_seed)
    rng = np.random.default_rng([catalog_seed, 0 if split == "in_distribution" else 1, index])
    want_ood = split == "out_of_distribution"
    seen = [c.name for c in CATEGORIES if c.name not in OOD_CATEGORIES]
    for _ in range(1000):
        if want_ood and rng.random() < 0.5:
            category = str(rng.choice(OOD_CATEGORIES))
        else:
            category = str(rng.choice(seen))
        shelf = catalog.in_category(category)
        product = shelf[int(rng.integers(len(shelf)))]
        count = int(rng.integers(2, len(product.attributes) + 1))
        indices = sorted(rng.choice(len(product.attributes), size=count, replace=False))
        attributes = tuple(product.attributes[i] for i in indices)
        if _is_ood(category, attributes) != want_ood:
            continue
        options = {name: str(rng.choice(values)) for name, values in product.options.items()}
        price_upper = _price_upper(product.price, rng)
        return Goal(
            task_id=task_id,
            asin=product.asin,
            category=category,
            product_type=product.product_type,
            attributes=attributes,
            options=options,
            price_upper=price_upper,
            instruction=_instruction(attributes, product.product_type, options, price_upper, rng),
        )
    raise RuntimeError(f"could not draw a {split} goal for {task_id!r}")
