"""``regym envs``: list every registered env with its splits."""

from __future__ import annotations

import argparse

from regym.envs import list_envs


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="regym envs", description=__doc__).parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "short name", "splits")
    for listing in list_envs():
        table.add_row(listing.env_id, listing.short_name, ", ".join(listing.splits))
    Console().print(table)
    return 0
