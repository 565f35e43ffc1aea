"""Handoff diagnostics: drift, token entropy, top-1 confidence, loss, sharpness, dormant units.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from regym.rejuvenation.calibration import CalibrationExample


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def next_token_stats(model: nn.Module, example: CalibrationExample,
                     temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """Teacher-forced per-position stats, each (T − 1,): entropy, top-1 prob, NLL of the next token, mask.

    Entropy and top-1 are those of ``softmax(logits / temperature)``, the distribution a policy
    sampling at that temperature draws from; the NLL stays the temperature-1 training loss.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, not {temperature}")
    with torch.no_grad():
        logits = model(input_ids=example.input_ids.to(_device(model))).logits[0, :-1].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    tempered = log_probs if temperature == 1.0 else torch.log_softmax(logits / temperature, dim=-1)
    probs = tempered.exp()
    targets = example.input_ids[0, 1:].to(logits.device)
    return {
        "entropy": -(probs * tempered).sum(-1).cpu(),
        "top1": probs.max(-1).values.cpu(),
        "nll": -log_probs.gather(-1, targets[:, None])[:, 0].cpu(),
        "mask": example.loss_mask[0, 1:].bool(),
    }


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


def _decoder_layer_names(model: nn.Module) -> list[str]:
    from regym.rejuvenation.blocks import _decoder_layers

    layers = _decoder_layers(model)
    names = {module: name for name, module in model.named_modules()}
    return [names[layer] for layer in layers]


def layer_drift(base: nn.Module, model: nn.Module) -> list[dict[str, object]]:
    """Per decoder layer (and embeddings/other): relative drift ‖Δ‖/‖θ_base‖ and mean-squared difference."""
    prefixes = _decoder_layer_names(model)
    groups: dict[str, list[float]] = {}
    order = ["embeddings", *[f"layer {i}" for i in range(len(prefixes))], "other"]
    base_params = dict(base.named_parameters())
    embedding_params = {id(p) for p in model.get_input_embeddings().parameters()}
    for name, parameter in model.named_parameters():
        if name not in base_params:
            raise ValueError(f"parameter {name!r} is not in the base model")
        group = next((f"layer {i}" for i, prefix in enumerate(prefixes) if name.startswith(prefix + ".")), None)
        if group is None:
            group = "embeddings" if id(parameter) in embedding_params else "other"
        delta = parameter.detach().float() - base_params[name].detach().float()
        sums = groups.setdefault(group, [0.0, 0.0, 0])
        sums[0] += float(delta.pow(2).sum())
        sums[1] += float(base_params[name].detach().float().pow(2).sum())
        sums[2] += delta.numel()
    rows = []
    for group in order:
        if group in groups:
            squared, base_squared, count = groups[group]
            rows.append({"group": group, "relative_drift": math.sqrt(squared) / max(math.sqrt(base_squared), 1e-12),
                         "mean_squared_difference": squared / count})
    return rows


def calibration_loss(model: nn.Module, examples: Sequence[CalibrationExample]) -> torch.Tensor:
    """Mean next-token NLL over scored tokens (differentiable)."""
    total, count = 0.0, 0
    for example in examples:
        ids = example.input_ids.to(_device(model))
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


def mlp_neuron_scores(model: nn.Module, examples: Sequence[CalibrationExample],
                      advance: Callable[[int], object] | None = None) -> dict[str, torch.Tensor]:
    """ReDo scores per MLP neuron (input of each down projection): E|h_i| / mean_j E|h_j| within the layer.

    Sokar et al., "The Dormant Neuron Phenomenon in Deep RL", ICML 2023, Def. 3.1.
    ``advance(1)`` is called after each example.
    """
    from regym.rejuvenation.blocks import find_structure

    structure = find_structure(model)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def hook(name):
        def record(module, inputs):
            activation = inputs[0].detach().float().abs().reshape(-1, inputs[0].shape[-1])
            sums[name] = sums.get(name, 0) + activation.sum(0).cpu()
            counts[name] = counts.get(name, 0) + activation.shape[0]
        return record

    for block in structure.blocks:
        handles.append(block.linears["down"].register_forward_pre_hook(hook(block.names["down"])))
    try:
        with torch.no_grad():
            for example in examples:
                model(input_ids=example.input_ids.to(_device(model)))
                if advance is not None:
                    advance(1)
    finally:
        for handle in handles:
            handle.remove()
    scores = {}
    for name, total in sums.items():
        mean = total / counts[name]
        scores[name] = mean / mean.mean().clamp_min(1e-12)
    return scores


def dormant_fraction(model: nn.Module, examples: Sequence[CalibrationExample], tau: float = 0.025) -> float:
    """Fraction of MLP neurons with ReDo score ≤ τ (τ = 0.025 as in Sokar et al. 2023)."""
    scores = torch.cat(list(mlp_neuron_scores(model, examples).values()))
    return float((scores <= tau).float().mean())
