"""The ``regym`` command: one entry point whose subcommands are small scripts.

Each subcommand is a function ``main(argv)`` in its own module under ``regym.cli`` (one config
dataclass parsed by ``regym.configs``, then the library); this file only dispatches, so adding
a command is one line.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence

SUBCOMMANDS = {
    "envs": ("regym.cli.envs:main", "list registered envs and their splits"),
    "collect-demos": ("regym.cli.collect_demos:main", "play an agent and save trajectories as a datasets.Dataset"),
    "serve-web": ("regym.cli.serve_web:main", "serve the WebShop site over HTTP"),
    "serve-env": ("regym.cli.serve_env:main", "serve a regym env over OpenEnv's protocol (for RemoteEnv)"),
    "lab": ("regym.cli.lab:main", "experiments (lab handoff: over-SFT vs rejuvenation under RL)"),
    "rl-train": ("regym.cli.rl_train:main", "multi-turn RL (same as the rl-train command)"),
    "rl-eval": ("regym.cli.rl_eval:main", "evaluation and leaderboard (same as rl-eval)"),
    "rejuvenate": ("regym.cli.rejuvenate:main", "fuse and reset a checkpoint (same as rejuvenate)"),
    "plasticity-report": ("regym.cli.plasticity_report:main", "handoff report (same as plasticity-report)"),
}
"""name: ("module:function", one line of help). The module is imported only when its command runs."""


def usage(prog: str, commands: Mapping[str, tuple[str, str]]) -> str:
    lines = [f"usage: {prog} COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<18} {help_text}" for name, (_, help_text) in commands.items()]
    lines += ["", f"`{prog} COMMAND --help` lists a command's flags."]
    return "\n".join(lines)


def dispatch(prog: str, commands: Mapping[str, tuple[str, str]], argv: Sequence[str] | None) -> int:
    """Run ``commands[argv[0]]`` on the rest of ``argv``; usage on no command or --help."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(prog, commands))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"{prog}: error: unknown command {name!r}; commands: {', '.join(commands)} "
              f"(`{prog} --help` says what each does)", file=sys.stderr)
        return 2
    module, function = commands[name][0].split(":")
    return int(getattr(importlib.import_module(module), function)(rest) or 0)


def main(argv: list[str] | None = None) -> int:
    return dispatch("regym", SUBCOMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
