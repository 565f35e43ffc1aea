"""How far a model's weights moved from its base: ‖θ − θ_base‖ / ‖θ_base‖, per unit, per layer or in total.

One function for the three readings regym uses: the ``drift`` reset criterion ranks units by it
(``per="unit"``), the plasticity report shows it per decoder layer (``per="layer"``) and the lab's
ladder records the whole model's (``per="total"``). Always ``drift(base, model)``: the base first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from regym.rejuvenation.blocks import Structure, _decoder_layers, find_structure
from regym.rejuvenation.reset_effects import BaseTensor, base_tensors_of

PER = ("unit", "layer", "total")


def drift(base: nn.Module | None, model: nn.Module, per: str = "total", *, structure: Structure | None = None,
          base_tensor: BaseTensor | None = None, advance: Callable[[int], object] | None = None):
    """Relative drift of ``model`` from ``base``, aggregated ``per`` unit, layer or in total.

    - ``"unit"``: ``{projection name: tensor of ‖Δ_unit‖ / ‖θ_base,unit‖}`` over each q/k/v/o/gate/up/down unit's
      row (readers) or column (writers), on the CPU; ``base_tensor(parameter name)`` (e.g. read from the base
      checkpoint) may stand in for ``base``, and ``advance(1)`` is called after each projection matrix.
    - ``"layer"``: one row per group, in order (embeddings, layer 0, 1, ..., other):
      ``{"group", "relative_drift", "mean_squared_difference"}``.
    - ``"total"``: ``{"drift_relative", "drift_mean_squared"}`` over every parameter.

    Layer and total drift sum squared differences over ``model.named_parameters()`` (tied weights once).
    """
    if per not in PER:
        raise ValueError(f"drift per {per!r}: choose one of {PER}")
    if per == "unit":
        return _unit_drift(base, model, structure or find_structure(model), base_tensor, advance)
    if base is None:
        raise ValueError(f"drift per {per} needs the base model")
    if per == "total":
        squared, base_squared, count = _squared_sums(base, model, lambda name, parameter: "total")["total"]
        return {"drift_relative": math.sqrt(squared) / max(math.sqrt(base_squared), 1e-12),
                "drift_mean_squared": squared / count}
    names = {module: name for name, module in model.named_modules()}
    prefixes = [names[layer] for layer in _decoder_layers(model)]
    embedding_params = {id(parameter) for parameter in model.get_input_embeddings().parameters()}

    def group_of(name: str, parameter: torch.Tensor) -> str:
        layer = next((f"layer {i}" for i, prefix in enumerate(prefixes) if name.startswith(prefix + ".")), None)
        return layer or ("embeddings" if id(parameter) in embedding_params else "other")

    groups = _squared_sums(base, model, group_of)
    order = ["embeddings", *[f"layer {i}" for i in range(len(prefixes))], "other"]
    return [{"group": group, "relative_drift": math.sqrt(groups[group][0]) / max(math.sqrt(groups[group][1]), 1e-12),
             "mean_squared_difference": groups[group][0] / groups[group][2]} for group in order if group in groups]


def _squared_sums(base: nn.Module, model: nn.Module,
                  group_of: Callable[[str, torch.Tensor], str]) -> dict[str, list[float]]:
    """Per group: [Σ(θ − θ_base)², Σθ_base², parameter count], summed in parameter order."""
    base_params = dict(base.named_parameters())
    groups: dict[str, list[float]] = {}
    for name, parameter in model.named_parameters():
        if name not in base_params:
            raise ValueError(f"parameter {name!r} is not in the base model")
        reference = base_params[name].detach().float()
        sums = groups.setdefault(group_of(name, parameter), [0.0, 0.0, 0])
        sums[0] += float((parameter.detach().float() - reference).pow(2).sum())
        sums[1] += float(reference.pow(2).sum())
        sums[2] += reference.numel()
    return groups


def _unit_drift(base: nn.Module | None, model: nn.Module, structure: Structure, base_tensor: BaseTensor | None,
                advance: Callable[[int], object] | None) -> dict[str, torch.Tensor]:
    if base_tensor is None:
        if base is None:
            raise ValueError("drift needs the base model or a base_tensor reader")
        base_tensor = base_tensors_of(base)
    modules = dict(model.named_modules())
    scores = {}
    for name, _, _, axis, _ in structure.units():
        weight = modules[name].weight.detach().float().cpu()
        anchor = base_tensor(f"{name}.weight").float().cpu()
        dim = 0 if axis == "column" else 1
        scores[name] = (weight - anchor).norm(dim=dim) / anchor.norm(dim=dim).clamp_min(1e-12)
        if advance is not None:
            advance(1)
    return scores
