"""Resetting selected units toward the base: θ_unit ← ω·θ_base + (1 − ω)·θ_unit.

Step 2d of Algorithm 1 (Liu et al., arXiv 2606.09932): units go back *toward the base*,
not to random values; ω = 1 (default) is a full reset to the base's values. A unit is an
output row of q/k/v/gate/up (with its bias entry, if any) or an input column of o/down.
Nothing else in the model changes.

Two callers, one arithmetic (``move_toward_base``): ``reset_neurons`` edits a model in memory;
``StreamingReset`` edits the fused row blocks ``fusion.fuse_checkpoints`` streams from the
checkpoints, where the base rows are already in hand, so a reset of an 8B checkpoint reads
each file once and never holds a model. Both mix in float32 from the unrounded fused value
and round once to the stored dtype, so they write the same bits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from regym.rejuvenation.fusion import fuse_tensor
from regym.rejuvenation.stages import Stages, silent


@dataclass
class UnitGroup:
    """The selected units of one projection matrix."""

    module: str  # full module name, e.g. "model.layers.3.self_attn.k_proj"
    layer: int
    role: str  # q, k, v, o, gate, up, down
    axis: str  # "row" (output rows) or "column" (input columns)
    indices: list[int]
    scores: list[float]
    total: int  # rows (or columns) the matrix has


@dataclass
class ResetPlan:
    """Which units to reset, why (criterion, scores) and how the selection went (diagnostics)."""

    criterion: str
    fraction: float
    groups: list[UnitGroup]
    total_units: int
    diagnostics: dict[str, object] = field(default_factory=dict)

    @property
    def selected(self) -> int:
        return sum(len(group.indices) for group in self.groups)

    def counts(self) -> dict[tuple[int, str], int]:
        """Selected units per (layer, role)."""
        counts: Counter = Counter()
        for group in self.groups:
            counts[(group.layer, group.role)] += len(group.indices)
        return dict(counts)

    def to_dict(self) -> dict[str, object]:
        return {
            "criterion": self.criterion, "fraction": self.fraction, "selected": self.selected,
            "total_units": self.total_units, "diagnostics": self.diagnostics,
            "groups": [group.__dict__ for group in self.groups if group.indices],
        }


def plan_from_scores(units: list[tuple[str, int, str, str, int]], scores: dict[str, torch.Tensor],
                     fraction: float, criterion: str, diagnostics: dict | None = None) -> ResetPlan:
    """Pick the global top ``fraction`` of units by score (ties broken by position, deterministically)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"reset fraction must be in [0, 1], got {fraction}")
    total = sum(count for *_, count in units)
    flat = torch.cat([scores[name].float().cpu().reshape(-1) for name, *_ in units])
    if flat.numel() != total:
        raise ValueError("scores do not cover every unit")
    chosen = round(fraction * total)
    selected = torch.zeros(total, dtype=torch.bool)
    if chosen:
        order = torch.sort(flat, descending=True, stable=True).indices
        selected[order[:chosen]] = True
    groups, start = [], 0
    for name, layer, role, axis, count in units:
        mask = selected[start:start + count]
        indices = torch.nonzero(mask).flatten().tolist()
        values = flat[start:start + count][mask].tolist()
        groups.append(UnitGroup(name, layer, role, axis, indices, values, count))
        start += count
    return ResetPlan(criterion, fraction, groups, total, dict(diagnostics or {}))


def move_toward_base(current: torch.Tensor, base: torch.Tensor, axis: str, index: torch.Tensor,
                     strength: float) -> None:
    """In place: rows (``axis="row"``) or columns ``index`` of ``current`` ← ω·base + (1 − ω)·current."""
    keep = 1.0 - strength  # fuse_tensor's alpha: the weight of the current value
    if axis == "row":
        current[index] = fuse_tensor(base[index], current[index], keep)
    else:
        current[:, index] = fuse_tensor(base[:, index], current[:, index], keep)


def _check_strength(strength: float) -> None:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"reset strength must be in [0, 1], got {strength}")


def reset_neurons(model: nn.Module, base_model: nn.Module, plan: ResetPlan, strength: float = 1.0, *,
                  stages: Stages = silent) -> nn.Module:
    """Move each planned row/column of ``model`` to ω·base + (1 − ω)·current, in place; returns ``model``.

    One stage of ``stages``, a unit per projection matrix that has selected units.
    """
    _check_strength(strength)
    modules = dict(model.named_modules())
    base_modules = dict(base_model.named_modules())
    groups = [group for group in plan.groups if group.indices]
    with torch.no_grad(), stages("resetting units toward the base (matrices)", len(groups)) as stage:
        for group in groups:
            linear, base_linear = modules[group.module], base_modules[group.module]
            index = torch.tensor(group.indices, device=linear.weight.device)
            base_weight = base_linear.weight.detach().to(linear.weight.device)
            move_toward_base(linear.weight, base_weight, group.axis, index, strength)
            if group.axis == "row" and linear.bias is not None:
                move_toward_base(linear.bias, base_linear.bias.detach().to(linear.bias.device), "row", index, strength)
            stage.advance()
    return model


class StreamingReset:
    """A ``fuse_block`` for ``fusion.fuse_checkpoints``: fuses a row block and resets its planned units.

    For a block of a planned tensor (``<module>.weight``, and ``<module>.bias`` for row units)
    it returns fuse(base, sft, α) computed in float32, with the planned rows (or columns) moved
    toward the base rows of the same block, rounded once to the SFT block's dtype: the values
    ``fuse`` + ``reset_neurons`` give on float32 models saved in the stored dtypes. Other
    blocks get None (the plain formula).
    """

    def __init__(self, plan: ResetPlan, alpha: float, strength: float = 1.0):
        _check_strength(strength)
        self.alpha, self.strength = float(alpha), float(strength)
        self.units: dict[str, tuple[str, torch.Tensor]] = {}  # tensor name -> (axis, sorted unit indices)
        for group in plan.groups:
            if group.indices:
                index = torch.tensor(sorted(group.indices))
                self.units[f"{group.module}.weight"] = (group.axis, index)
                if group.axis == "row":
                    self.units[f"{group.module}.bias"] = (group.axis, index)
        self.matrices = sorted(name for name in self.units if name.endswith(".weight"))

    def __call__(self, name: str, first: int, base: torch.Tensor, sft: torch.Tensor) -> torch.Tensor | None:
        if name not in self.units:
            return None
        axis, index = self.units[name]
        if axis == "row":  # block rows first .. first + len(sft) - 1
            index = index[(index >= first) & (index < first + len(sft))] - first
            if not len(index):
                return None
        anchor = base.float()
        fused = fuse_tensor(anchor, sft.float(), self.alpha)  # (rows, ...) float32, not yet rounded
        move_toward_base(fused, anchor, axis, index, self.strength)
        return fused.to(sft.dtype)
