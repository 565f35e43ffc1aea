"""``rl-train``: multi-turn RL (GRPO family, on TRL) on a regym env, optionally from a rejuvenated init.

    rl-train --env textworld --rejuvenate              # tiny CPU pipeline, built and cached on first use
    rl-train --env alfworld --model SFT --base BASE --rejuvenate --alpha 0.5
    rl-train --config run.yaml --resume

Every field of ``regym.rl.config.RLConfig`` is a flag; a YAML file (``--config``) sets
fields too, and flags win over it. The resolved config is printed at start and saved
as ``OUTPUT_DIR/config.yaml``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from regym.rl.config import PRESETS, RLConfig, field_docs, load_config


def _scalar_type(annotation: str):
    if annotation.startswith("int"):
        return int
    if annotation.startswith("float"):
        return float
    return str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rl-train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of config fields (flags override it)")
    docs = field_docs()
    defaults = RLConfig()
    for field in dataclasses.fields(RLConfig):
        flag = "--" + field.name.replace("_", "-")
        annotation = str(field.type)
        default = getattr(defaults, field.name)
        help_text = f"{docs.get(field.name, '')} [default: {default!r}]"
        if annotation.startswith("bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif annotation.startswith("dict"):
            parser.add_argument(flag, type=json.loads, default=None, metavar="JSON", help=help_text)
        elif annotation.startswith("list"):
            parser.add_argument(flag, nargs="+", default=None, help=help_text)
        else:
            choices = sorted(PRESETS) if field.name == "preset" else None
            parser.add_argument(flag, type=_scalar_type(annotation), default=None, choices=choices,
                                help=help_text)
    return parser


def print_config(config: RLConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    defaults = RLConfig(preset=config.preset)
    table = Table(title="rl-train config", show_lines=False)
    table.add_column("field")
    table.add_column("value")
    table.add_column("default")
    for field in dataclasses.fields(RLConfig):
        value, default = getattr(config, field.name), getattr(defaults, field.name)
        style = "bold" if value != default else ""
        table.add_row(field.name, repr(value), repr(default), style=style)
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    try:
        config = load_config(args.config, overrides)
    except (ValueError, FileNotFoundError) as error:
        print(f"rl-train: {error}", file=sys.stderr)
        return 2
    print_config(config)
    from regym.rl.train import summary_table, train

    summary = train(config)
    print(summary_table(summary))
    print(f"outputs in {config.output_dir} (summary.json, learning_curve.png, final/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
