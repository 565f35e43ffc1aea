"""``regym envs``: list every registered env with its splits."""

from __future__ import annotations

from dataclasses import dataclass

from regym.configs import parse
from regym.envs import list_envs


@dataclass
class EnvsArgs:
    """List every registered env with its splits (no options)."""


def main(argv: list[str] | None = None) -> int:
    parse(EnvsArgs, argv, prog="regym envs", description=__doc__)
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "short name", "splits")
    for listing in list_envs():
        table.add_row(listing.env_id, listing.short_name, ", ".join(listing.splits))
    Console().print(table)
    return 0
