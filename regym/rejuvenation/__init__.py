"""Rejuvenation: base-anchored fusion and attribution-guided neuron reset toward the base.

Method: Liu et al., "When RL Fails after SFT: Rejuvenating Model Plasticity for Robust
SFT-to-RL Handoff", arXiv 2606.09932, Algorithm 1. See docs/rejuvenation.md.
"""

from regym.rejuvenation.calibration import CalibrationExample, encode_calibration, load_calibration_file
from regym.rejuvenation.checkpoint import CheckpointError
from regym.rejuvenation.criteria import select_units, shrink_perturb
from regym.rejuvenation.fusion import fuse, fuse_checkpoints, fuse_tensor
from regym.rejuvenation.pipeline import RejuvenationSummary, rejuvenate, rejuvenate_checkpoint
from regym.rejuvenation.reset import ResetPlan, reset_neurons

__all__ = [
    "CalibrationExample", "CheckpointError", "RejuvenationSummary", "ResetPlan", "encode_calibration", "fuse",
    "fuse_checkpoints", "fuse_tensor", "load_calibration_file", "rejuvenate",
    "rejuvenate_checkpoint", "reset_neurons", "select_units", "shrink_perturb",
]
