"""The first-order effect of each unit's reset on the target tokens: regym's attribution scores.

Step 2 of Algorithm 1 (Liu et al., arXiv 2606.09932) ranks units by their share of the target
tokens' logits. regym ranks them by what the reset actually changes: for target token y at
position t and unit u (an output row of q/k/v/gate/up, an input column of o/down),

    effect(u, t) = ∇_{θ_u} log p(y | x_{≤t}) · (θ_base,u − θ_u)

the first-order change of the target token's log-probability when the unit's slice moves from
its current (SFT) value to the base value, with the gradient through every later layer and the
final norm, at the target position only. One quantity on one scale for every unit type, so one
ranking per target token is meaningful (the paper's exact writer contributions and readers'
gradient × activation were not: see ``docs/rejuvenation.md``).

Why the log-probability and not the logit: a change that raises every logit alike (the final
norm's scale, a shared direction of the unembedding) moves the logit and leaves the model's
distribution unchanged; log p is what sampling, the entropy and the RL loss read.

For a linear map ``out = x Wᵀ + b`` with ``g = ∂ log p / ∂ out`` (T, out), x (T, in) and
Δ = W_base − W, the slice sums are ``Σ_t g[t, r] (x Δᵀ)[t, r] + Δb[r] Σ_t g[t, r]`` for row r
and ``Σ_t x[t, c] (g Δ)[t, c]`` for column c: one backward pass per target gives every unit.
``benchmarks/reset_attribution.py`` checks the estimate against single-unit resets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from regym.rejuvenation.blocks import WRITERS, Structure, find_structure
from regym.rejuvenation.calibration import CalibrationExample

BaseTensor = Callable[[str], "torch.Tensor | None"]
"""Reads a base tensor by its parameter name (``<module>.weight`` / ``<module>.bias``); None if absent."""


def base_tensors_of(base_model: nn.Module) -> BaseTensor:
    """A ``BaseTensor`` over an in-memory base model."""
    parameters = dict(base_model.named_parameters())

    def read(name: str) -> torch.Tensor | None:
        tensor = parameters.get(name)
        return None if tensor is None else tensor.detach()
    return read


@dataclass
class TargetPositions:
    """The target tokens of one calibration example: prediction positions t and the tokens at t + 1."""

    example: int
    positions: list[int]
    tokens: list[int]


def _module_groups(structure: Structure, max_delta_bytes: int | None) -> list[list[tuple[str, str, nn.Linear]]]:
    """Projection modules, last layer first, split so that each group's Δ fits ``max_delta_bytes``.

    Later layers come first because the backward pass to their outputs is the shortest.
    """
    modules = [(block.names[role], "column" if role in WRITERS else "row", linear)
               for block in reversed(structure.blocks) for role, linear in block.linears.items()]
    if max_delta_bytes is None:
        return [modules]
    groups: list[list[tuple[str, str, nn.Linear]]] = [[]]
    used = 0
    for module in modules:
        size = module[2].weight.numel() * module[2].weight.element_size()
        if groups[-1] and used + size > max_delta_bytes:
            groups.append([])
            used = 0
        groups[-1].append(module)
        used += size
    return groups


def reset_effects(model: nn.Module, examples: Sequence[CalibrationExample], targets: Sequence[TargetPositions],
                  base_tensor: BaseTensor, structure: Structure | None = None,
                  max_delta_bytes: int | None = None,
                  advance: Callable[[int], object] | None = None) -> dict[str, torch.Tensor]:
    """Per module, the (n_targets, units) first-order change of each target's log p when a unit moves to base.

    Targets are numbered in the order of ``targets`` (example by example, positions in order).
    ``max_delta_bytes`` bounds the Δ = base − current held at once: modules are then scored in
    groups, each with its own forward pass (None: one group). ``advance(k)`` is called after
    each example's k targets of the last group. The model is left unchanged.
    """
    structure = structure or find_structure(model)
    device = structure.lm_head.weight.device
    total = sum(len(chosen.positions) for chosen in targets)
    effects: dict[str, torch.Tensor] = {}
    groups = _module_groups(structure, max_delta_bytes)
    for number, group in enumerate(groups):
        deltas: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        for name, axis, linear in group:
            base_weight = base_tensor(f"{name}.weight")
            if base_weight is None or tuple(base_weight.shape) != tuple(linear.weight.shape):
                raise ValueError(f"the base has no weight {name}.weight of shape {list(linear.weight.shape)}")
            delta = base_weight.to(device=device, dtype=linear.weight.dtype) - linear.weight.detach()
            bias_delta = None
            if linear.bias is not None:
                base_bias = base_tensor(f"{name}.bias")
                bias_delta = (base_bias.to(device=device).float() - linear.bias.detach().float()
                              if base_bias is not None else -linear.bias.detach().float())
            deltas[name] = (delta, bias_delta)
            effects.setdefault(name, torch.zeros(total, linear.in_features if axis == "column" else linear.out_features))
        row = 0
        for chosen in targets:
            _example_effects(model, examples[chosen.example], chosen, group, deltas, effects, row, structure)
            row += len(chosen.positions)
            if advance is not None and number == len(groups) - 1:
                advance(len(chosen.positions))
        del deltas
    return effects


def _example_effects(model: nn.Module, example: CalibrationExample, chosen: TargetPositions,
                     group: list[tuple[str, str, nn.Linear]],
                     deltas: dict[str, tuple[torch.Tensor, torch.Tensor | None]],
                     effects: dict[str, torch.Tensor], first_row: int, structure: Structure) -> None:
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(name: str):
        def hook(module, inputs, output):
            captured[name] = (inputs[0], output)
        return hook

    def embedding_requires_grad(module, inputs, output):
        return output.detach().requires_grad_(True)

    handles = [linear.register_forward_hook(keep(name)) for name, _, linear in group]
    handles.append(structure.embedding.register_forward_hook(embedding_requires_grad))
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    device = structure.lm_head.weight.device
    try:
        with torch.enable_grad():
            logits = model(input_ids=example.input_ids.to(device)).logits[0]  # (T, V)
            positions = torch.as_tensor(chosen.positions, device=device)
            tokens = torch.as_tensor(chosen.tokens, device=device)
            log_probs = torch.log_softmax(logits[positions].float(), dim=-1)[torch.arange(len(tokens)), tokens]  # (n,)
    finally:
        for handle in handles:
            handle.remove()
        for parameter, flag in zip(model.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)

    names = [name for name, _, _ in group]
    outputs = [captured[name][1] for name in names]
    inputs = {name: captured[name][0][0].detach() for name in names}  # (T, in)
    # Rows: Σ_t g[t, r] (x Δᵀ)[t, r]; x Δᵀ is the same for every target of the example.
    projected = {name: (inputs[name] @ deltas[name][0].T).float() for name, axis, _ in group if axis == "row"}
    for offset in range(len(tokens)):
        grads = torch.autograd.grad(log_probs[offset], outputs, retain_graph=offset + 1 < len(tokens),
                                    allow_unused=True)
        for (name, axis, _), grad in zip(group, grads, strict=True):
            if grad is None:  # the unit cannot reach this target (a later position's projection)
                continue
            g = grad[0].float()  # (T, out)
            delta, bias_delta = deltas[name]
            if axis == "row":
                value = (g * projected[name]).sum(0)
                if bias_delta is not None:
                    value = value + bias_delta * g.sum(0)
            else:
                value = (inputs[name].float() * (grad[0].to(delta.dtype) @ delta).float()).sum(0)
            effects[name][first_row + offset] = value.cpu()
