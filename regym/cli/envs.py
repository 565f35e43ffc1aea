"""``regym envs``: list every registered env with its splits, and the difficulty levels of those that have them."""

from __future__ import annotations

from dataclasses import dataclass

from regym.configs import parse
from regym.envs import list_envs


@dataclass
class EnvsArgs:
    """List every registered env with its splits and difficulty levels (no options)."""


def main(argv: list[str] | None = None) -> int:
    parse(EnvsArgs, argv, prog="regym envs", description=__doc__)
    from rich.console import Console
    from rich.table import Column, Table

    console, listings = Console(), list_envs()
    table = Table("id", "short name", "splits")
    for listing in listings:
        table.add_row(listing.env_id, listing.short_name, ", ".join(listing.splits))
    console.print(table)
    for listing in listings:
        if not listing.levels:
            continue
        names = Column("level", no_wrap=True, min_width=max(len(level) for level, _ in listing.levels))
        levels = Table(names, "asks", "splits", title=f"{listing.env_id} difficulty levels")  # names whole: they are typed
        for level, asks in listing.levels:
            splits = [split for split, its_levels in listing.level_splits if level in its_levels]
            levels.add_row(level, asks, ", ".join(splits))
        console.print(levels)
    return 0
