"""Difficulty levels of the WebShop env, read off how its instructions are written (``GOAL_STYLES``).

* ``title.1``: the instruction is the product's exact title: search it, open it, buy;
* ``attributes.1``: attributes and product type, a price ceiling, no options to choose;
* ``options.1``: attributes, one value per buying option and a price ceiling (the in-distribution split);
* ``options.2``: all three attributes, every option and the tightest price ceiling (near-OOD);
* ``unseen.1``: unseen categories or held-out attribute pairs (the out-of-distribution split).
"""

from __future__ import annotations

from regym.envs.levels import Level, LevelTable

WEBSHOP_LEVELS = LevelTable.of("WebShop", (
    Level("title.1", "the product's exact title; any options, no price ceiling", {"prefix": "title.1"}),
    Level("attributes.1", "2-3 attributes and the product type under a price ceiling; no options",
          {"prefix": "attributes.1"}),
    Level("options.1", "2-3 attributes, one value per buying option, a price ceiling", {"prefix": "id"}),
    Level("options.2", "all 3 attributes, every option, the tightest price ceiling (next $10 above the price)",
          {"prefix": "near"}),
    Level("unseen.1", "options.1's form in unseen categories or with held-out attribute pairs", {"prefix": "ood"}),
), {"in_distribution": ("options.1",), "near_out_of_distribution": ("options.2",),
    "out_of_distribution": ("unseen.1",)})
