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

LAYER_BANDS = ("early", "middle", "late")


def layer_band(layer: int, layers: int) -> str:
    """Which third of the decoder a layer sits in: early, middle or late."""
    return LAYER_BANDS[min(2, 3 * layer // max(layers, 1))]


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
    targets: list[tuple[int, int]] = field(default_factory=list)  # (example, position) scored, for attribution

    def counts_by_band(self, layers: int) -> dict[str, dict[str, int]]:
        """Selected units per layer band (early/middle/late thirds of the ``layers``) and type."""
        found: dict[str, dict[str, int]] = {band: {} for band in LAYER_BANDS}
        for group in self.groups:
            if group.indices:
                row = found[layer_band(group.layer, layers)]
                row[group.role] = row.get(group.role, 0) + len(group.indices)
        return found

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


def plan_from_target_scores(units: list[tuple[str, int, str, str, int]], scores: dict[str, torch.Tensor],
                            fraction: float, criterion: str, diagnostics: dict | None = None) -> ResetPlan:
    """The union over target tokens of each token's top-scoring units, filled up to ``fraction`` of all units.

    ``scores[module]`` is (n_targets, units): how strongly each unit supports each target token
    (Algorithm 1, step 2d of Liu et al., arXiv 2606.09932: "the union over tokens of the top-scoring
    units"). Units are taken in rounds: round r adds every target's r-th best unit, so each target
    keeps an equal share and no single token's scale decides the set. A round that would pass the
    budget is cut by score (highest first; ties by target order, then unit position). Only units with
    a positive score are taken: a round with none left ends the selection below the budget, and the
    diagnostics say so. A unit's recorded score is its best over the targets.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"reset fraction must be in [0, 1], got {fraction}")
    total = sum(count for *_, count in units)
    flat = torch.cat([scores[name].float().cpu() for name, *_ in units], dim=1)  # (n_targets, total)
    if flat.shape[1] != total:
        raise ValueError("scores do not cover every unit")
    budget = round(fraction * total)
    selected = torch.zeros(total, dtype=torch.bool)
    rounds = 0
    if budget and flat.shape[0]:
        depth = min(budget, total)
        ranked_scores, ranked = torch.sort(flat, dim=1, descending=True, stable=True)
        # Python lists: the rounds below read one entry at a time, which tensor indexing makes slow at 8B scale.
        ranked_scores, ranked = ranked_scores[:, :depth].tolist(), ranked[:, :depth].tolist()
        chosen: set[int] = set()
        taken = 0
        for rounds in range(1, depth + 1):
            column = rounds - 1
            fresh: dict[int, tuple[float, int]] = {}  # unit -> (score, target), first target wins a tie
            supported = False  # some target still has a unit with a positive score at this depth
            for target in range(flat.shape[0]):
                unit, value = ranked[target][column], ranked_scores[target][column]
                supported = supported or value > 0
                if value > 0 and unit not in chosen and unit not in fresh:
                    fresh[unit] = (value, target)
            if not supported:
                rounds -= 1
                break
            if taken + len(fresh) > budget:
                order = sorted(fresh, key=lambda unit: (-fresh[unit][0], fresh[unit][1], unit))
                fresh = {unit: fresh[unit] for unit in order[:budget - taken]}
            chosen.update(fresh)
            taken += len(fresh)
            if taken >= budget:
                break
        selected[sorted(chosen)] = True
    best = flat.max(0).values if flat.shape[0] else torch.zeros(total)
    groups, start = [], 0
    for name, layer, role, axis, count in units:
        mask = selected[start:start + count]
        groups.append(UnitGroup(name, layer, role, axis, torch.nonzero(mask).flatten().tolist(),
                                best[start:start + count][mask].tolist(), count))
        start += count
    found = dict(diagnostics or {})
    found.update({"selection": "union over target tokens", "rounds": rounds,
                  "budget": budget, "selected_below_budget": int(budget - int(selected.sum()))})
    return ResetPlan(criterion, fraction, groups, total, found)


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
