"""``regym lab handoff``: reproduce "RL fails after over-SFT; rejuvenation restores it" at small scale.

    regym lab handoff                                      # tiny TextWorld, CPU (configs/lab/handoff.yaml: the frozen design)
    regym lab handoff --quick                              # fewer seeds and episodes, the same design
    regym lab handoff --env math --preset smollm2 --seeds-primary 1 --seeds-other 1   # on a GPU
    regym lab handoff --config lab.yaml                    # any HandoffConfig field; flags win over it

Stages (finished ones are reused, so rerunning resumes): base model and demos → SFT ladder →
on-policy diagnostics along it (over-SFT found by a stated rule) → arm starts (rejuvenated,
random-reset control, matched temperature) and their pre-RL evaluations → RL for seven arms ×
seeds → report.md with the verdict on post-RL success.
Settings: defaults < preset (and the tiny RL budget under rl) < --config file < flags.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from regym.cli.main import dispatch
from regym.configs import describe_config, parse_overrides, report_error
from regym.lab.handoff import PRESETS, HandoffConfig, load_handoff_config, run_handoff

EXPERIMENTS = {"handoff": ("regym.cli.lab:handoff", "over-SFT vs rejuvenation under identical RL budgets")}


@dataclass
class HandoffArgs(HandoffConfig):
    """The flags of ``regym lab handoff``: every ``HandoffConfig`` field, and one shortcut."""

    rl_steps: int | None = None
    """RL optimizer steps per run, identical for every arm: sets rl's max_steps, and its eval_every to half
    of it (None: the preset's)."""


def main(argv: list[str] | None = None) -> int:
    return dispatch("regym lab", EXPERIMENTS, argv)


def handoff(argv: list[str] | None = None) -> int:
    config_file, overrides = parse_overrides(HandoffArgs, argv, prog="regym lab handoff", description=__doc__,
                                             choices={"preset": sorted(PRESETS)})
    rl_steps = overrides.pop("rl_steps", None)
    try:
        config = load_handoff_config(config_file, **overrides)
    except (OSError, ValueError) as error:  # a missing --config, an unknown field, a ladder without its marks
        report_error("regym lab handoff", error)
        return 2
    from regym.numerics import pin_cpu_numerics

    numerics = pin_cpu_numerics()  # checkpoints must rebuild bit-identically on the next machine too
    if numerics != "pinned-avx2":
        print(f"regym lab handoff: CPU numerics {numerics} (not pinned): a checkpoint rebuilt on another machine "
              "may differ in its last bits, and the lab will then refuse it", file=sys.stderr, flush=True)
    if rl_steps is not None:
        config.rl.update(max_steps=rl_steps, eval_every=max(1, rl_steps // 2))
    print(f"regym lab handoff: {describe_config(config, always=('env', 'preset', 'out'))}", file=sys.stderr,
          flush=True)
    from regym.progress import library_progress_bars_off

    with library_progress_bars_off():
        data = run_handoff(config)
    print(open(data["report"]["markdown"]).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
