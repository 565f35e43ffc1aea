"""The pre-RL handoff report and the plasticity measures behind it (``plasticity-report``, the lab's ladder).

- ``measures``: teacher-forced token statistics, sharpness (Hessian eigenvalue of largest magnitude, random
  perturbations, ASAM), dormant neurons;
- ``on_policy``: the same measures on the policy's own sampled turns, and greedy success;
- ``report``: base / SFT / rejuvenated side by side, as JSON, Markdown and PNG.

Drift is ``regym.rejuvenation.drift.drift`` (the reset criteria rank units by it); the report shows it per
layer and in total.
"""

from regym.eval.plasticity.measures import (
    HessianEigenvalue,
    adaptive_sharpness,
    calibration_loss,
    dormant_fraction,
    hessian_max_abs_eigenvalue,
    hessian_metrics,
    perturbation_sharpness,
    token_statistics,
)
from regym.eval.plasticity.on_policy import (
    OnPolicyRun,
    OnPolicySettings,
    OnPolicyTurn,
    collapsed_group_share,
    greedy_success,
    on_policy_metrics,
    play_on_policy,
)
from regym.eval.plasticity.report import (
    ReportSettings,
    build_report,
    calibration_from_env,
    env_metrics,
    markdown,
    measurement_count,
    model_metrics,
    write_report,
)

__all__ = [
    "HessianEigenvalue", "OnPolicyRun", "OnPolicySettings", "OnPolicyTurn", "ReportSettings", "adaptive_sharpness",
    "build_report", "calibration_from_env", "calibration_loss", "collapsed_group_share", "dormant_fraction", "env_metrics", "greedy_success",
    "hessian_max_abs_eigenvalue", "hessian_metrics", "markdown", "measurement_count", "model_metrics",
    "on_policy_metrics", "perturbation_sharpness", "play_on_policy", "token_statistics", "write_report",
]
