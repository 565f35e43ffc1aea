"""Handoff measures on calibration text: token entropy, top-1 confidence, loss, sharpness, dormant units.

These measure the signs of over-SFT listed in METHOD.md (Liu et al., arXiv 2606.09932):
low teacher-forced entropy, near-zero SFT loss, large drift from the base, and a sharp loss
landscape. Sharpness is measured two ways because the paper does not say how it measured it:
the Hessian's largest-magnitude eigenvalue, signed (power iteration on Hessian-vector products,
Pearlmutter 1994: it finds the λ of largest |λ|, which is negative where the loss curves down more
steeply than it curves up anywhere, so it is not "the top eigenvalue"; see ``HessianEigenvalue``) and
the mean loss increase under random weight perturbations of a fixed relative radius
(Keskar et al. 2017, "On large-batch training", Sec. 2.2, in its random-direction form).
Both change when a function-preserving rescaling moves weight between layers, so a third,
``adaptive_sharpness``, measures it in ASAM's weight-normalised ball (Kwon et al., ICML 2021),
which such a rescaling leaves unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from regym.rejuvenation.calibration import CalibrationExample
from regym.rejuvenation.diagnostics import mlp_neuron_scores, model_device, next_token_stats


def token_statistics(model: nn.Module, examples: Sequence[CalibrationExample],
                     temperature: float = 1.0) -> dict[str, object]:
    """Mean entropy (nats), mean top-1 probability and SFT loss over scored tokens, plus all entropies.

    Entropy and top-1 at ``temperature`` (``next_token_stats``), so an over-trained model's
    entropy can be matched by sampling hotter; the SFT loss is always at temperature 1.
    """
    entropies, top1, nll = [], [], []
    for example in examples:
        stats = next_token_stats(model, example, temperature)
        mask = stats["mask"]
        entropies.append(stats["entropy"][mask])
        top1.append(stats["top1"][mask])
        nll.append(stats["nll"][mask])
    entropy, top, loss = torch.cat(entropies), torch.cat(top1), torch.cat(nll)
    return {
        "entropy": float(entropy.mean()),
        "top1_prob": float(top.mean()),
        "sft_loss": float(loss.mean()),
        "tokens": int(entropy.numel()),
        "entropies": entropy.tolist(),
    }


def calibration_loss(model: nn.Module, examples: Sequence[CalibrationExample]) -> torch.Tensor:
    """Mean next-token NLL over scored tokens (differentiable)."""
    total, count = 0.0, 0
    for example in examples:
        ids = example.input_ids.to(model_device(model))
        logits = model(input_ids=ids).logits[0, :-1].float()
        mask = example.loss_mask[0, 1:].to(logits.device)
        nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")
        total = total + (nll * mask).sum()
        count += int(mask.sum())
    return total / max(count, 1)


@dataclass(frozen=True)
class HessianEigenvalue:
    """What power iteration on the Hessian found: the eigenvalue of largest magnitude, with its sign.

    Power iteration multiplies by H and so converges to the eigenvector of largest |λ|; the Rayleigh
    quotient vᵀHv then gives that λ signed. A negative value means the steepest curvature is downward
    (a saddle or a maximum along that direction), not a flat model. When the two ends of the spectrum
    are near in magnitude, the iteration converges slowly or not at all: ``converged`` says whether the
    last step moved the estimate by less than ``tolerance`` of its size.
    """

    value: float
    """λ of largest |λ| (signed)."""
    iterations: int
    """Power-iteration steps run."""
    relative_change: float
    """|λ_k − λ_(k−1)| / |λ_k| at the last step (inf after one step)."""
    converged: bool
    """relative_change ≤ the tolerance asked for."""


def hessian_max_abs_eigenvalue(model: nn.Module, examples: Sequence[CalibrationExample], iterations: int = 10,
                               seed: int = 0, tolerance: float = 0.01) -> HessianEigenvalue:
    """The calibration-loss Hessian's eigenvalue of largest magnitude, signed (power iteration on HVPs), and
    whether the iteration converged (its last relative change ≤ ``tolerance``)."""
    parameters = [p for p in model.parameters() if p.is_floating_point()]
    flags = [p.requires_grad for p in parameters]
    for p in parameters:
        p.requires_grad_(True)
    try:
        # Double backward needs SDPA's math kernel (the fused CPU/GPU kernels have no second derivative).
        with sdpa_kernel([SDPBackend.MATH]):
            loss = calibration_loss(model, examples)
            grads = torch.autograd.grad(loss, parameters, create_graph=True)
        generator = torch.Generator().manual_seed(seed)
        vector = [torch.randn(p.shape, generator=generator).to(p) for p in parameters]
        norm = torch.sqrt(sum((v * v).sum() for v in vector))
        vector = [v / norm for v in vector]
        eigenvalue, change = 0.0, math.inf
        for step in range(1, iterations + 1):
            products = torch.autograd.grad(grads, parameters, grad_outputs=vector, retain_graph=True)
            previous, eigenvalue = eigenvalue, float(sum((h * v).sum() for h, v in zip(products, vector, strict=True)))
            if step > 1:
                change = abs(eigenvalue - previous) / max(abs(eigenvalue), 1e-12)
            norm = torch.sqrt(sum((h * h).sum() for h in products))
            if float(norm) == 0.0:  # H v = 0: this direction is flat, and so is the estimate
                return HessianEigenvalue(0.0, step, 0.0, True)
            vector = [h.detach() / norm for h in products]
        return HessianEigenvalue(eigenvalue, iterations, change, change <= tolerance)
    finally:
        for p, flag in zip(parameters, flags, strict=True):
            p.requires_grad_(flag)
        model.zero_grad(set_to_none=True)


def perturbation_sharpness(model: nn.Module, examples: Sequence[CalibrationExample], radius: float = 0.01,
                           samples: int = 5, seed: int = 0) -> float:
    """Mean loss increase when every tensor moves by a random direction of norm ``radius · ‖θ‖`` (fixed seed)."""
    parameters = [p for p in model.parameters() if p.is_floating_point()]
    with torch.no_grad():
        clean = float(calibration_loss(model, examples))
        generator = torch.Generator().manual_seed(seed)
        increases = []
        for _ in range(samples):
            saved = [p.detach().clone() for p in parameters]
            try:
                for p in parameters:
                    noise = torch.randn(p.shape, generator=generator).to(p)
                    p.add_(noise * (radius * p.norm() / noise.norm().clamp_min(1e-12)))
                increases.append(float(calibration_loss(model, examples)) - clean)
            finally:
                for p, original in zip(parameters, saved, strict=True):
                    p.copy_(original)
    return sum(increases) / len(increases)


def adaptive_sharpness(model: nn.Module, examples: Sequence[CalibrationExample], radius: float = 0.05) -> float:
    """ASAM's scale-invariant sharpness: the loss increase at the first-order worst case of the
    weight-normalised ball ``‖T⁻¹ε‖ ≤ radius``, with ``T = diag(|θ|)`` (Kwon et al., "ASAM", ICML 2021):

        ε = radius · T² g / ‖T g‖,   sharpness = L(θ + ε) − L(θ),   g = ∇L(θ).

    A rescaling that leaves the function unchanged (a neuron's input weights × c, its output
    weights ÷ c) leaves this unchanged too, so, unlike the Hessian's eigenvalues, it cannot
    rise or fall by weight moving between layers. No randomness; the weights are restored exactly.
    """
    parameters = [p for p in model.parameters() if p.is_floating_point()]
    flags = [p.requires_grad for p in parameters]
    for p in parameters:
        p.requires_grad_(True)
    try:
        loss = calibration_loss(model, examples)
        grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    finally:
        for p, flag in zip(parameters, flags, strict=True):
            p.requires_grad_(flag)
    with torch.no_grad():
        scaled = [p.detach().abs() * g if g is not None else torch.zeros_like(p) for p, g in
                  zip(parameters, grads, strict=True)]  # T g
        norm = torch.sqrt(sum((s.float() * s.float()).sum() for s in scaled))
        if float(norm) == 0.0:
            return 0.0
        steps = [(radius * p.detach().abs() * s / norm).to(p.dtype) for p, s in
                 zip(parameters, scaled, strict=True)]  # ε = radius · T (T g) / ‖T g‖
        saved = [p.detach().clone() for p in parameters]
        try:
            for p, step in zip(parameters, steps, strict=True):
                p.add_(step)
            perturbed = float(calibration_loss(model, examples))
        finally:
            for p, original in zip(parameters, saved, strict=True):
                p.copy_(original)
    return perturbed - float(loss.detach())


def dormant_fraction(model: nn.Module, examples: Sequence[CalibrationExample], tau: float = 0.025) -> float:
    """Fraction of MLP neurons with ReDo score ≤ τ (τ = 0.025 as in Sokar et al. 2023)."""
    scores = torch.cat(list(mlp_neuron_scores(model, examples).values()))
    return float((scores <= tau).float().mean())


def hessian_metrics(found: HessianEigenvalue) -> dict[str, object]:
    """The report's keys for a ``HessianEigenvalue``: the signed value, whether it converged, its last change."""
    return {"hessian_max_abs_eigenvalue": found.value, "hessian_converged": found.converged,
            "hessian_relative_change": found.relative_change}
