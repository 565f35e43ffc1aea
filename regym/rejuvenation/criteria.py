"""Which units to reset: the paper's attribution criterion and the alternatives regym offers.

- ``attribution`` (default): Liu et al., arXiv 2606.09932, Algorithm 1 step 2, scored as the
  first-order effect of each unit's reset on each target token's log-probability and chosen as
  the union over target tokens (see ``attribution.py``, ``reset_effects.py``).
- ``logit_attribution``: the paper's text read literally (writers' exact logit contributions,
  readers' gradient × activation, one global ranking); it mixes two scales, kept for comparison.
- ``redo``: ReDo dormancy, Sokar et al., ICML 2023: MLP neurons whose score
  E|h_i| / mean_j E|h_j| ≤ τ (τ = 0.025); a neuron's gate/up rows and down column are reset
  together, lowest scores first, at most ``fraction`` of the model's units. SiLU-gated LLM
  MLPs are rarely dormant, so this often selects nothing (the plan's diagnostics say so).
- ``drift``: units whose weights moved most from the base, relative to their base norm
  ‖Δ_unit‖ / ‖θ_base,unit‖; needs no calibration data.
- ``random``: a seeded uniform sample of units, the control for any criterion.
- Shrink & Perturb (Ash & Adams, NeurIPS 2020) is not a unit selection; see ``shrink_perturb``.
- ``none``: fusion alone, no unit reset.

Adding a criterion (docs/contributing.md): its name in ``CRITERIA`` (and ``NEEDS_CALIBRATION`` when it scores
calibration text), a branch of ``select_units`` returning its ``ResetPlan``, a line here and in
docs/rejuvenation.md; tests/test_extending.py checks each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from regym.rejuvenation.blocks import Structure, find_structure
from regym.rejuvenation.calibration import CalibrationExample
from regym.rejuvenation.drift import drift
from regym.rejuvenation.reset import ResetPlan, UnitGroup, plan_from_scores, plan_from_target_scores
from regym.rejuvenation.reset_effects import BaseTensor
from regym.rejuvenation.stages import Stages, silent

CRITERIA = ("attribution", "logit_attribution", "redo", "drift", "random", "shrink_perturb", "none")
NEEDS_CALIBRATION = ("attribution", "logit_attribution", "redo")


def check_criteria(criterion: str, fallback_criterion: str | None = None) -> None:
    """A ``ValueError`` naming the choices unless ``criterion`` is one of ``CRITERIA`` and the fallback (if any)
    is one that needs no calibration data: checked where a run is configured, before anything loads."""
    for name in (criterion, fallback_criterion):
        if name is not None and name not in CRITERIA:
            raise ValueError(f"unknown criterion {name!r}; choose from {', '.join(CRITERIA)}")
    if fallback_criterion in NEEDS_CALIBRATION:
        raise ValueError(f"fallback_criterion {fallback_criterion!r} needs calibration texts too; "
                         f"choose one that needs none: {', '.join(c for c in CRITERIA if c not in NEEDS_CALIBRATION)}")


def select_units(base_model: nn.Module | None, sft_model: nn.Module,
                 calib: Sequence[CalibrationExample] | None = None, criterion: str = "attribution",
                 fraction: float = 0.01, *, top_n_targets: int = 64, tau: float = 0.025, seed: int = 0,
                 stages: Stages = silent, base_entropies: Sequence[torch.Tensor] | None = None,
                 base_tensor: BaseTensor | None = None, max_delta_bytes: int | None = None) -> ResetPlan:
    """A ``ResetPlan``: the top ``fraction`` of all q/k/v/o/gate/up/down units under ``criterion``.

    Scoring is reported through ``stages``: per calibration example and target token
    (attribution), per calibration example (redo), per projection matrix (drift, random).
    Of the base, attribution needs only its token entropies and projection weights, drift only its
    projection weights: ``base_entropies`` (``attribution.token_entropies``) and ``base_tensor(name)``
    (a reader by parameter name) stand in for ``base_model`` (then None), so a checkpoint-sized caller
    never holds two models. ``max_delta_bytes``: see ``reset_effects.reset_effects``.
    """
    if criterion not in CRITERIA or criterion in ("shrink_perturb", "none"):
        raise ValueError(f"unknown unit criterion {criterion!r}; choose from "
                         "attribution, logit_attribution, redo, drift, random")
    if criterion in NEEDS_CALIBRATION and not calib:
        raise ValueError(f"criterion {criterion!r} needs a calibration set")
    structure = find_structure(sft_model)
    units = structure.units()
    if criterion == "attribution":
        from regym.rejuvenation.attribution import attribution_scores

        effects = attribution_scores(base_model, sft_model, calib, top_n=top_n_targets, stages=stages,
                                     base_entropies=base_entropies, base_tensor=base_tensor,
                                     max_delta_bytes=max_delta_bytes)
        plan = plan_from_target_scores(units, effects.support, fraction, criterion, effects.diagnostics())
        plan.targets = [(target.example, target.position) for target in effects.targets]
        return plan
    if criterion == "logit_attribution":
        from regym.rejuvenation.attribution import logit_attribution_scores

        result = logit_attribution_scores(base_model, sft_model, calib, top_n=top_n_targets, stages=stages,
                                          base_entropies=base_entropies)
        return plan_from_scores(units, result.scores, fraction, criterion, result.diagnostics())
    if criterion == "drift":
        with stages("scoring units by drift (matrices)", len(units)) as stage:
            scores = drift(base_model, sft_model, "unit", structure=structure, advance=stage.advance,
                           base_tensor=base_tensor)
        return plan_from_scores(units, scores, fraction, criterion)
    if criterion == "random":
        generator = torch.Generator().manual_seed(seed)
        with stages("scoring units at random (matrices)", len(units)) as stage:
            scores = {}
            for name, _, _, _, count in units:
                scores[name] = torch.rand(count, generator=generator)
                stage.advance()
        return plan_from_scores(units, scores, fraction, criterion, {"seed": seed})
    with stages("scoring units by dormancy (calibration examples)", len(calib)) as stage:
        return redo_plan(sft_model, calib, structure, fraction, tau, advance=stage.advance)


def redo_plan(model: nn.Module, calib: Sequence[CalibrationExample], structure: Structure, fraction: float,
              tau: float = 0.025, advance: Callable[[int], object] | None = None) -> ResetPlan:
    from regym.rejuvenation.diagnostics import mlp_neuron_scores

    scores = mlp_neuron_scores(model, calib, advance=advance)
    units = structure.units()
    total = sum(count for *_, count in units)
    budget = round(fraction * total)
    candidates = []  # (score, block, neuron)
    for block in structure.blocks:
        neuron_scores = scores[block.names["down"]]
        for neuron in torch.nonzero(neuron_scores <= tau).flatten().tolist():
            candidates.append((float(neuron_scores[neuron]), block.index, neuron))
    candidates.sort()
    roles = ("gate", "up", "down")
    per_neuron = sum(role in structure.blocks[0].linears for role in roles)
    chosen = candidates[: budget // max(per_neuron, 1)]
    groups = []
    for block in structure.blocks:
        neurons = sorted((n, s) for s, b, n in chosen if b == block.index)
        for role in roles:
            if role in block.linears:
                linear = block.linears[role]
                axis = "column" if role == "down" else "row"
                groups.append(UnitGroup(block.names[role], block.index, role, axis, [n for n, _ in neurons],
                                        [s for _, s in neurons],
                                        linear.in_features if axis == "column" else linear.out_features))
    dormant = len(candidates) / max(sum(len(s) for s in scores.values()), 1)
    return ResetPlan("redo", fraction, groups, total, {"tau": tau, "dormant_fraction": dormant,
                                                       "dormant_neurons": len(candidates)})


def shrink_perturb(model: nn.Module, base_model: nn.Module, shrink: float = 0.8, noise: float = 0.0,
                   seed: int = 0, stages: Stages = silent) -> nn.Module:
    """Shrink & Perturb toward the base, in place: θ ← λθ + (1 − λ)θ_base + σ·std(θ_base)·ε.

    Ash & Adams, "On Warm-Starting Neural Network Training", NeurIPS 2020, shrink toward zero and
    add fresh-init noise; regym shrinks toward the base (the anchor the paper's fusion uses) and
    scales the noise by each tensor's base std. λ = ``shrink``, σ = ``noise`` (0 = no noise).
    One stage of ``stages``, a unit per parameter tensor.
    """
    base = dict(base_model.named_parameters())
    generator = torch.Generator().manual_seed(seed)
    parameters = list(model.named_parameters())
    with torch.no_grad(), stages("shrink & perturb toward the base (tensors)", len(parameters)) as stage:
        for name, parameter in parameters:
            if parameter.is_floating_point():
                anchor = base[name].detach().float()
                mixed = torch.mul(parameter.float(), shrink).add_(anchor * (1.0 - shrink))
                if noise:
                    spread = anchor.std() if anchor.numel() > 1 else anchor.abs()
                    mixed += noise * spread * torch.randn(parameter.shape, generator=generator)
                parameter.copy_(mixed.to(parameter.dtype))
            stage.advance()
    return model
