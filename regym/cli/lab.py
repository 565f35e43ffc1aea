"""``regym lab handoff``: reproduce "RL fails after over-SFT; rejuvenation restores it" at small scale.

    regym lab handoff --env textworld --seeds 3            # tiny preset, CPU
    regym lab handoff --env alfworld --preset smollm2 --seeds 1   # on a GPU

Stages (finished ones are reused, so rerunning resumes): base model and demos → SFT
ladder → handoff report → RL from five starting points × seeds (+ α sweep) → report.md.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="regym lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="experiment", required=True)
    handoff = sub.add_parser("handoff", help="over-SFT vs rejuvenation under identical RL budgets")
    handoff.add_argument("--env", default=None, help="env id or short name (default: textworld)")
    handoff.add_argument("--seeds", type=int, default=None, help="RL seeds per arm (default: 3)")
    handoff.add_argument("--preset", choices=["tiny", "smollm2"], default=None, help="default: tiny")
    handoff.add_argument("--out", default=None, help="output folder (default: lab)")
    handoff.add_argument("--rl-steps", type=int, default=None, help="RL optimizer steps per run (identical for every arm)")
    handoff.add_argument("--config", default=None, help="YAML file of HandoffConfig fields")
    args = parser.parse_args(argv)

    from regym.lab.handoff import load_handoff_config, run_handoff

    config = load_handoff_config(args.config, env=args.env, seeds=args.seeds, preset=args.preset, out=args.out)
    if args.rl_steps is not None:
        config.rl["max_steps"] = args.rl_steps
        config.rl["eval_every"] = max(1, args.rl_steps // 3)
    print(json.dumps(asdict(config), indent=2))
    data = run_handoff(config)
    print(open(data["report"]["markdown"]).read())
    return 0
