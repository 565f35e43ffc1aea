"""The shop's product catalog, generated procedurally and deterministically.

WebShop (Yao et al., 2022, "WebShop: Towards Scalable Real-World Web Interaction with
Grounded Language Agents") scrapes 1.18M Amazon products. regym needs no download:
it generates a catalog of the same shape (ASIN, title, category, product type,
attributes, buying options such as colour and size, price, rating, bullet points,
description, reviews) from a fixed seed, so every machine sees the same shop.

Fifteen categories of three product types each; the last three categories
(``OOD_CATEGORIES``) only appear in out-of-distribution instructions (see
``instructions.py``), but their products are on the shelves for every split, as in a
real shop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

CATALOG_SEED = 2022
PRODUCTS_PER_CATEGORY = 100

COLORS = ("black", "white", "navy", "blue", "red", "green", "grey", "olive", "yellow", "pink", "beige")
CLOTHING_SIZES = ("xs", "s", "m", "l", "xl", "xxl")


@dataclass(frozen=True)
class Category:
    """One shelf of the shop: its product types, attribute pool and buying options."""

    name: str
    types: tuple[str, ...]
    attributes: tuple[str, ...]
    options: dict[str, tuple[str, ...]]
    price_range: tuple[float, float]
    audiences: tuple[str, ...] = ("",)


CATEGORIES: tuple[Category, ...] = (
    Category(
        "outerwear",
        ("rain jacket", "softshell jacket", "windbreaker jacket"),
        (
            "waterproof",
            "breathable",
            "lightweight",
            "hooded",
            "packable",
            "windproof",
            "machine washable",
            "zip pockets",
        ),
        {"color": COLORS, "size": CLOTHING_SIZES},
        (25.0, 120.0),
        ("for men", "for women", ""),
    ),
    Category(
        "shoes",
        ("running shoe", "trail running shoe", "walking shoe"),
        (
            "non slip",
            "breathable mesh",
            "lightweight",
            "cushioned",
            "arch support",
            "wide toe box",
            "memory foam",
            "rubber sole",
        ),
        {"color": COLORS, "size": ("6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "12")},
        (30.0, 140.0),
        ("for men", "for women", ""),
    ),
    Category(
        "tops",
        ("crew neck t-shirt", "v-neck t-shirt", "long sleeve t-shirt"),
        (
            "cotton",
            "moisture wicking",
            "slim fit",
            "relaxed fit",
            "tagless",
            "quick dry",
            "pre shrunk",
            "machine washable",
        ),
        {"color": COLORS, "size": CLOTHING_SIZES},
        (8.0, 40.0),
        ("for men", "for women", ""),
    ),
    Category(
        "audio",
        ("wireless headphones", "noise cancelling headphones", "wireless earbuds"),
        (
            "bluetooth",
            "active noise cancellation",
            "long battery life",
            "built-in microphone",
            "foldable",
            "sweatproof",
            "fast charging",
            "low latency",
        ),
        {"color": ("black", "white", "silver", "rose gold", "midnight blue", "sage green")},
        (20.0, 250.0),
    ),
    Category(
        "phone accessories",
        ("phone case", "wallet phone case", "rugged phone case"),
        (
            "shockproof",
            "slim",
            "magnetic",
            "card holder",
            "kickstand",
            "scratch resistant",
            "wireless charging compatible",
            "clear back",
        ),
        {
            "color": COLORS,
            "phone model": (
                "iphone 13",
                "iphone 14",
                "iphone 15",
                "galaxy s22",
                "galaxy s23",
                "pixel 7",
                "pixel 8",
            ),
        },
        (7.0, 45.0),
    ),
    Category(
        "coffee",
        ("ground coffee", "whole bean coffee", "coffee pods"),
        (
            "organic",
            "fair trade",
            "dark roast",
            "medium roast",
            "decaf",
            "low acid",
            "single origin",
            "kosher",
        ),
        {
            "flavor": ("original", "vanilla", "hazelnut", "caramel", "mocha", "cinnamon"),
            "size": ("12 ounce", "24 ounce", "2 pound", "pack of 6"),
        },
        (6.0, 45.0),
    ),
    Category(
        "snacks",
        ("protein bar", "granola bar", "nut bar"),
        (
            "gluten free",
            "high protein",
            "low sugar",
            "vegan",
            "keto friendly",
            "non gmo",
            "dairy free",
            "individually wrapped",
        ),
        {
            "flavor": (
                "chocolate",
                "peanut butter",
                "almond",
                "mixed berry",
                "cookie dough",
                "salted caramel",
            ),
            "size": ("pack of 6", "pack of 12", "pack of 24"),
        },
        (8.0, 50.0),
    ),
    Category(
        "hair care",
        ("shampoo", "conditioner", "shampoo and conditioner set"),
        (
            "sulfate free",
            "paraben free",
            "for dry hair",
            "for curly hair",
            "natural ingredients",
            "cruelty free",
            "color safe",
            "moisturizing",
        ),
        {
            "scent": ("lavender", "coconut", "tea tree", "citrus", "unscented", "rose"),
            "size": ("8 fl oz", "16 fl oz", "32 fl oz"),
        },
        (6.0, 40.0),
    ),
    Category(
        "skin care",
        ("face moisturizer", "night cream", "eye cream"),
        (
            "fragrance free",
            "hyaluronic acid",
            "spf 30",
            "oil free",
            "anti aging",
            "for sensitive skin",
            "non comedogenic",
            "vitamin c",
        ),
        {"size": ("1 ounce", "1.7 ounce", "2.5 ounce", "4 ounce")},
        (9.0, 70.0),
    ),
    Category(
        "lighting",
        ("desk lamp", "floor lamp", "table lamp"),
        (
            "dimmable",
            "usb charging port",
            "energy efficient",
            "touch control",
            "adjustable arm",
            "eye caring",
            "remote control",
            "led",
        ),
        {
            "color": ("black", "white", "silver", "gold", "walnut"),
            "light color": ("warm white", "daylight", "cool white"),
        },
        (18.0, 110.0),
    ),
    Category(
        "bedding",
        ("bed sheet set", "fitted sheet", "duvet cover set"),
        (
            "deep pocket",
            "wrinkle free",
            "cooling",
            "hypoallergenic",
            "egyptian cotton",
            "microfiber",
            "breathable",
            "machine washable",
        ),
        {"color": COLORS, "size": ("twin", "full", "queen", "king", "california king")},
        (20.0, 130.0),
    ),
    Category(
        "furniture",
        ("office chair", "gaming chair", "desk chair"),
        (
            "ergonomic",
            "lumbar support",
            "adjustable height",
            "swivel",
            "mesh back",
            "padded armrests",
            "easy assembly",
            "heavy duty",
        ),
        {"color": ("black", "white", "grey", "blue", "red", "pink")},
        (60.0, 300.0),
    ),
    Category(
        "pet supplies",
        ("dog bed", "cat bed", "pet blanket"),
        (
            "orthopedic",
            "washable cover",
            "non slip bottom",
            "waterproof",
            "calming",
            "chew resistant",
            "memory foam",
            "machine washable",
        ),
        {"color": COLORS, "size": ("small", "medium", "large", "x-large")},
        (15.0, 90.0),
    ),
    Category(
        "drinkware",
        ("water bottle", "insulated tumbler", "camping mug"),
        (
            "bpa free",
            "leak proof",
            "double wall insulated",
            "dishwasher safe",
            "stainless steel",
            "wide mouth",
            "keeps drinks cold",
            "lightweight",
        ),
        {"color": COLORS, "capacity": ("12 oz", "20 oz", "32 oz", "40 oz")},
        (10.0, 50.0),
    ),
    Category(
        "bags",
        ("hiking backpack", "laptop backpack", "travel backpack"),
        (
            "water resistant",
            "anti theft",
            "usb charging port",
            "padded laptop sleeve",
            "lightweight",
            "tsa friendly",
            "large capacity",
            "ergonomic straps",
        ),
        {"color": COLORS, "capacity": ("20l", "30l", "40l", "50l")},
        (20.0, 120.0),
    ),
)

OOD_CATEGORIES = ("pet supplies", "drinkware", "bags")
"""Categories no in-distribution instruction asks for: the 'unseen categories' OOD axis."""

BRANDS = (
    "Northpeak",
    "Aurelio",
    "Brightfold",
    "Cobaltine",
    "Dunmore",
    "Everwell",
    "Fernway",
    "Glenrose",
    "Harborline",
    "Ivyhill",
    "Juniper & Co",
    "Kestrel",
    "Lumora",
    "Maplewood",
    "Nordvik",
    "Oakhurst",
    "Pinecrest",
    "Quillon",
    "Redwater",
    "Solenne",
    "Tidewell",
    "Umbra",
    "Velora",
    "Westbay",
    "Yarrow",
    "Zephra",
    "Alder",
    "Bramble",
    "Cinder",
    "Driftwood",
)


@dataclass(frozen=True)
class Product:
    """One item on sale, with the fields WebShop's product pages show."""

    asin: str
    title: str
    category: str
    product_type: str
    attributes: tuple[str, ...]
    options: dict[str, tuple[str, ...]] = field(hash=False)
    price: float
    rating: float
    features: tuple[str, ...]
    description: str
    reviews: tuple[str, ...]


def _asin(rng: np.random.Generator) -> str:
    alphabet = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"))
    return "B0" + "".join(rng.choice(alphabet, size=8))


def _make_product(category: Category, rng: np.random.Generator, asin: str) -> Product:
    product_type = str(rng.choice(category.types))
    attribute_indices = sorted(rng.choice(len(category.attributes), size=3, replace=False))
    attributes = tuple(category.attributes[i] for i in attribute_indices)
    options = {}
    for name, vocabulary in category.options.items():
        count = int(rng.integers(2, min(5, len(vocabulary)) + 1))
        chosen = sorted(rng.choice(len(vocabulary), size=count, replace=False))
        options[name] = tuple(vocabulary[i] for i in chosen)
    low, high = category.price_range
    price = round(float(rng.uniform(low, high)), 0) - 0.01
    brand = str(rng.choice(BRANDS))
    audience = str(rng.choice(category.audiences))
    title_attributes = [a for a in attributes[:2] if not a.startswith("for ")]
    title = " ".join([brand, *(a.title() for a in title_attributes), product_type.title(), audience]).strip()
    features = tuple(
        f"{attribute.capitalize()}: {template}"
        for attribute, template in zip(
            attributes,
            rng.choice(
                (
                    "designed for everyday use",
                    "tested to last",
                    "a customer favourite",
                    "built to a high standard",
                    "loved by reviewers",
                ),
                size=len(attributes),
            ),
            strict=True,
        )
    )
    description = (
        f"The {brand} {product_type} is a {', '.join(attributes)} {product_type} "
        f"from our {category.name} range."
    )
    stars = int(rng.integers(3, 6))
    reviews = (
        f"{stars} stars. Does what it says: {attributes[0]}.",
        f"{max(stars - 1, 1)} stars. Good {product_type}, arrived quickly.",
    )
    return Product(
        asin=asin,
        title=title,
        category=category.name,
        product_type=product_type,
        attributes=attributes,
        options=options,
        price=price,
        rating=round(float(rng.uniform(3.0, 5.0)), 1),
        features=features,
        description=description,
        reviews=reviews,
    )


@dataclass(frozen=True)
class Catalog:
    """All products of the shop, indexable by ASIN."""

    products: tuple[Product, ...]
    seed: int

    def __post_init__(self):
        object.__setattr__(self, "_by_asin", {p.asin: p for p in self.products})
        shelves: dict[str, list[Product]] = {}
        for product in self.products:
            shelves.setdefault(product.category, []).append(product)
        object.__setattr__(self, "_shelves", shelves)

    def __len__(self) -> int:
        return len(self.products)

    def get(self, asin: str) -> Product | None:
        return self._by_asin.get(asin.upper())

    def in_category(self, name: str) -> list[Product]:
        return self._shelves.get(name, [])


@lru_cache(maxsize=4)
def build_catalog(seed: int = CATALOG_SEED, products_per_category: int = PRODUCTS_PER_CATEGORY) -> Catalog:
    """The shop's catalog for ``seed``: the same products, in the same order, on every machine."""
    if products_per_category < 1:
        raise ValueError("products_per_category must be >= 1")
    rng = np.random.default_rng(seed)
    products, seen_asins = [], set()
    for category in CATEGORIES:
        for _ in range(products_per_category):
            asin = _asin(rng)
            while asin in seen_asins:
                asin = _asin(rng)
            seen_asins.add(asin)
            products.append(_make_product(category, rng, asin))
    return Catalog(tuple(products), seed)

