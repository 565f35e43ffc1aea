"""The ``regym`` command: one entry point whose subcommands are small scripts.

Each subcommand lives in its own module under ``regym.cli`` and exposes
``main(argv)``; this file only dispatches, so adding a command is one line.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "envs": ("regym.cli.envs", "list registered envs and their splits"),
    "collect-demos": ("regym.cli.collect_demos", "play an agent and save trajectories as a datasets.Dataset"),
    "serve-web": ("regym.cli.serve_web", "serve the WebShop site over HTTP"),
    "lab": ("regym.cli.lab", "experiments (lab handoff: over-SFT vs rejuvenation under RL)"),
    "rl-train": ("regym.cli.rl_train", "multi-turn RL (same as the rl-train command)"),
    "rl-eval": ("regym.cli.rl_eval", "evaluation and leaderboard (same as rl-eval)"),
    "rejuvenate": ("regym.cli.rejuvenate", "fuse and reset a checkpoint (same as rejuvenate)"),
    "plasticity-report": ("regym.cli.plasticity_report", "handoff report (same as plasticity-report)"),
}


def usage() -> str:
    lines = ["usage: regym COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<18} {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"regym: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
