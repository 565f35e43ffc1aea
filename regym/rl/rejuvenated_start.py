"""rl-train's rejuvenated start (``--rejuvenate``): the SFT checkpoint fused with its base, units reset.

The folder is made once per settings (``regym_rejuvenation.json`` is compared before reuse), from
calibration text that ``regym.demos.expert_calibration`` builds: the same expert turns the plasticity
report measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from regym.agents.prompts import PromptFormat
from regym.cache import reusable, write_stamp
from regym.models.loading import load_tokenizer
from regym.rejuvenation import rejuvenate_checkpoint
from regym.rejuvenation.criteria import NEEDS_CALIBRATION
from regym.rl.config import RLConfig


def rejuvenated_checkpoint(config: RLConfig, base: Path | None, sft: Path, folder: Path,
                           calibration_envs: Sequence[gym.Env]) -> Path:
    """rejuvenate(base, sft) into ``folder`` (reused when it was made with the same settings).

    The attribution and redo criteria score tokens of a calibration set: expert episodes of
    the training env in THE prompt format (``calibration_episodes`` of them). When that set
    cannot be made (the env has no expert), this raises naming the fix, unless
    ``reset_fallback_criterion`` asks for another criterion then; the switch is recorded
    (``rejuvenation.json``: ``fallback_from``, ``warnings``; ``regym_rejuvenation.json``:
    ``calibration_error``). ``regym_rejuvenation.json`` records the settings (the fallback
    included, so a folder made without it is not reused) and rejuvenation's summary. With
    ``config.progress``, each stage of the rejuvenation shows its progress on stderr.
    """
    import sys

    from regym.progress import StageProgress
    from regym.rejuvenation.stages import silent

    if base is None:
        raise ValueError("--rejuvenate needs the base checkpoint: pass --base PATH")
    settings = {"base": str(base), "sft": str(sft), "alpha": config.alpha, "reset_fraction": config.reset_fraction,
                "reset_strength": config.reset_strength, "criterion": config.reset_criterion,
                "calibration_episodes": config.calibration_episodes,
                "fallback_criterion": config.reset_fallback_criterion}
    stamp = folder / "regym_rejuvenation.json"
    if reusable(stamp, settings, rebuild=True):  # other settings: rejuvenate again into the same folder
        return folder
    calibration, calibration_error = None, None
    if config.reset_criterion in NEEDS_CALIBRATION and config.reset_fraction > 0:
        try:
            calibration = expert_calibration(config, calibration_envs, load_tokenizer(sft))
        except ValueError as error:
            if config.reset_fallback_criterion is None:
                raise
            calibration_error = str(error)  # rejuvenate_checkpoint then uses the fallback and records it
    stages = (lambda description, total: StageProgress(f"rejuvenate: {description}", total, stream=sys.stderr)) \
        if config.progress else silent
    summary = rejuvenate_checkpoint(base, sft, folder, alpha=config.alpha, reset_fraction=config.reset_fraction,
                                    reset_strength=config.reset_strength, criterion=config.reset_criterion,
                                    calib_texts=calibration, fallback_criterion=config.reset_fallback_criterion,
                                    overwrite=True, seed=config.seed, stages=stages)
    write_stamp(stamp, settings, summary=summary.to_dict(), calibration_error=calibration_error)
    return folder


def expert_calibration(config: RLConfig, envs: Sequence[gym.Env], tokenizer: Any) -> list[dict[str, Any]]:
    """``regym.demos.expert_calibration`` of ``config.calibration_episodes`` in the policy's prompt format;
    a ``ValueError`` naming the flags that avoid calibration when no set can be made."""
    from regym.demos import CalibrationError
    from regym.demos import expert_calibration as expert_turns

    instead = ("pass --reset-criterion drift (it needs no calibration data), --reset-fallback-criterion drift "
               "(drift only when this calibration set cannot be made; recorded in rejuvenation.json), "
               "or --reset-fraction 0 (fusion alone)")
    if config.calibration_episodes <= 0:
        raise ValueError(f"--reset-criterion {config.reset_criterion} calibrates on expert episodes, and "
                         f"--calibration-episodes is {config.calibration_episodes}: raise it, or {instead}")
    try:
        return expert_turns(envs, tokenizer, episodes=config.calibration_episodes,
                            prompt_format=PromptFormat(style=config.prompt_style))
    except CalibrationError as error:
        raise ValueError(f"--reset-criterion {config.reset_criterion} calibrates on expert episodes of "
                         f"{config.env}: {error}. Instead, {instead}") from error
