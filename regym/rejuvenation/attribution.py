"""Attribution-guided unit scores (step 2 of Algorithm 1, Liu et al., arXiv 2606.09932).

1. Targets: teacher-forced on the calibration set, the top-N scored positions by
   |H_sft(t) − H_base(t)|, the per-token entropy gap between the over-SFT model and the base.
   The target token is the reference next token (the one SFT was trained to predict).
2. Scores (``attribution_scores``, the default ``attribution`` criterion): for every unit and
   target, the first-order change of the target token's log-probability when the unit moves to
   its base value (``reset_effects``). A unit's support for a target is minus that change: how
   much its SFT deviation holds the target up. Units are then chosen per target token and
   united (``reset.plan_from_target_scores``).
3. Check: the exact writer decomposition. With the final RMSNorm's per-position factor frozen,
   the target logit is linear in the residual stream, ``logit = v · h_L + b_U[y]`` with
   ``v = W_U[y] ⊙ g / rms(h_L)``, and ``h_L = h_0 + Σ_layers (attn_out + mlp_out)``. Each writer's
   output splits per input column (``o_proj`` per attention unit, ``down_proj`` per MLP neuron),
   contribution ``a_j · (v · W[:, j])``; Gemma 2/3 norms on a writer's output are frozen the same
   way. The pieces must sum back to the logit; the error is reported (float32: about 1e-5 relative).

``logit_attribution_scores`` (criterion ``logit_attribution``) is the paper's text taken
literally: writers' exact contributions and readers' gradient × activation summed over positions,
ranked in one global list. It mixes two scales (docs/rejuvenation.md measures how much) and is kept
for reproducing that reading only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from regym.rejuvenation.blocks import READERS, WRITERS, Structure, find_structure
from regym.rejuvenation.calibration import CalibrationExample
from regym.rejuvenation.diagnostics import next_token_stats
from regym.rejuvenation.reset_effects import BaseTensor, TargetPositions, base_tensors_of, reset_effects
from regym.rejuvenation.stages import Stages, silent


@dataclass
class Target:
    example: int
    position: int  # prediction position t; the target token sits at t + 1
    token: int
    entropy_gap: float  # H_sft(t) − H_base(t)
    sft_entropy: float = float("nan")  # H_sft(t), nats


def token_entropies(model: nn.Module, examples: Sequence[CalibrationExample],
                    advance: Callable[[int], object] | None = None) -> list[torch.Tensor]:
    """Teacher-forced next-token entropy per position, (T − 1,) per example, on the CPU.

    What ``entropy_targets`` needs of the base model: computed first, it lets the base be
    freed before the SFT model is loaded, so only one model is ever in memory.
    ``advance(1)`` is called after each example.
    """
    entropies = []
    for example in examples:
        entropies.append(next_token_stats(model, example)["entropy"])
        if advance is not None:
            advance(1)
    return entropies


def entropy_targets(base: nn.Module | None, sft: nn.Module, examples: Sequence[CalibrationExample],
                    top_n: int = 64, advance: Callable[[int], object] | None = None,
                    base_entropies: Sequence[torch.Tensor] | None = None) -> list[Target]:
    """The ``top_n`` scored positions with the largest |H_sft − H_base| (teacher-forced).

    ``base_entropies`` (``token_entropies`` of the base) replace running ``base``, which may then be None.
    ``advance(1)`` is called after each example.
    """
    if base_entropies is None:
        if base is None:
            raise ValueError("entropy_targets needs the base model or its token entropies")
        base_entropies = token_entropies(base, examples)
    if len(base_entropies) != len(examples):
        raise ValueError(f"{len(base_entropies)} base entropy vectors for {len(examples)} calibration examples")
    candidates = []
    for index, example in enumerate(examples):
        sft_stats = next_token_stats(sft, example)
        gap = sft_stats["entropy"] - base_entropies[index]
        for position in torch.nonzero(sft_stats["mask"]).flatten().tolist():
            token = int(example.input_ids[0, position + 1])
            candidates.append(Target(index, position, token, float(gap[position]),
                                     float(sft_stats["entropy"][position])))
        if advance is not None:
            advance(1)
    candidates.sort(key=lambda target: -abs(target.entropy_gap))
    return candidates[:top_n]


@dataclass
class ExampleAttribution:
    """Per-target pieces of one example's target logits. Tensors have a leading target dim (n,)."""

    writers: dict[str, torch.Tensor]  # writer module name -> (n, in_features) signed contributions
    readers: dict[str, torch.Tensor]  # reader module name -> (n, out_features) grad × activation
    embedding: torch.Tensor  # (n,) v · h_0
    bias: torch.Tensor  # (n,) writer biases + lm_head bias
    logit: torch.Tensor  # (n,) the model's own (pre-softcap) logit

    @property
    def reconstructed(self) -> torch.Tensor:
        total = self.embedding + self.bias
        for contribution in self.writers.values():
            total = total + contribution.sum(-1)
        return total


def attribute_example(model: nn.Module, example: CalibrationExample, positions: Sequence[int],
                      tokens: Sequence[int], structure: Structure | None = None,
                      readers: bool = True) -> ExampleAttribution:
    """Exact writer contributions and reader grad × activation for the given (position, token) targets."""
    structure = structure or find_structure(model)
    captured: dict[str, object] = {}
    handles = []

    def keep(name):
        def hook(module, inputs, output):
            captured[name] = (inputs[0], output)
        return hook

    def keep_layer_input(module, args, kwargs):
        captured["h0"] = args[0] if args else kwargs["hidden_states"]

    def embedding_requires_grad(module, inputs, output):
        return output.detach().requires_grad_(True)

    for block in structure.blocks:
        for role, linear in block.linears.items():
            if role in WRITERS or readers:
                handles.append(linear.register_forward_hook(keep(block.names[role])))
    handles.append(structure.blocks[0].layer.register_forward_pre_hook(keep_layer_input, with_kwargs=True))
    handles.append(structure.final_norm.module.register_forward_hook(keep("final_norm")))
    handles.append(structure.lm_head.register_forward_hook(keep("lm_head")))
    if readers:
        handles.append(structure.embedding.register_forward_hook(embedding_requires_grad))
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        with torch.set_grad_enabled(readers):
            model(input_ids=example.input_ids.to(structure.lm_head.weight.device))
    finally:
        for handle in handles:
            handle.remove()
        for parameter, flag in zip(model.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)

    device = structure.lm_head.weight.device  # every buffer below lives where the model does
    positions_t = torch.as_tensor(list(positions), device=device)
    tokens_t = torch.as_tensor(list(tokens), device=device)
    head_out = captured["lm_head"][1][0]  # (T, V)
    h_last = captured["final_norm"][0][0].detach().float()  # (T, H)
    final = structure.final_norm
    unembed = structure.lm_head.weight.detach()[tokens_t].float()  # (n, H); rows first: no float copy of the head
    v = unembed * final.scale() * final.inverse_rms(h_last[positions_t])  # (n, H)
    head_bias = structure.lm_head.bias
    bias = head_bias.detach().float()[tokens_t] if head_bias is not None else torch.zeros(len(tokens_t), device=device)
    embedding = (v * captured["h0"][0].detach().float()[positions_t]).sum(-1)

    writers = {}
    for block in structure.blocks:
        for role in WRITERS:
            name = block.names[role]
            linear = block.linears[role]
            inputs, output = captured[name]
            direction = v
            if role in block.post_norms:
                post = block.post_norms[role]
                direction = v * post.scale() * post.inverse_rms(output[0].detach()[positions_t])
            weight = linear.weight.detach().float()  # (H, D)
            writers[name] = inputs[0].detach().float()[positions_t] * (direction @ weight)  # (n, D)
            if linear.bias is not None:
                bias = bias + direction @ linear.bias.detach().float()

    reader_scores: dict[str, torch.Tensor] = {}
    if readers:
        names = [block.names[role] for block in structure.blocks for role in READERS if role in block.linears]
        activations = [captured[name][1] for name in names]
        for name in names:
            reader_scores[name] = torch.zeros(len(positions_t), captured[name][1].shape[-1], device=device)
        for row, (position, token) in enumerate(zip(positions_t.tolist(), tokens_t.tolist(), strict=True)):
            grads = torch.autograd.grad(head_out[position, token], activations, retain_graph=True,
                                        allow_unused=True)
            for name, activation, grad in zip(names, activations, grads, strict=True):
                if grad is not None:
                    reader_scores[name][row] = (activation.detach()[0] * grad[0]).sum(0).float()
    logit = head_out.detach().float()[positions_t, tokens_t]
    return ExampleAttribution(writers, reader_scores, embedding, bias, logit)


@dataclass
class AttributionScores:
    """The legacy (``logit_attribution``) scores: one global ranking signal per unit."""

    scores: dict[str, torch.Tensor]  # module name -> (units,) mean |contribution| over targets
    targets: list[Target]
    reconstruction_max_abs_error: float
    reconstruction_max_rel_error: float

    def diagnostics(self) -> dict[str, float]:
        gaps = [t.entropy_gap for t in self.targets]
        return {
            "targets": len(self.targets),
            "mean_entropy_gap": sum(gaps) / max(len(gaps), 1),
            "reconstruction_max_abs_error": self.reconstruction_max_abs_error,
            "reconstruction_max_rel_error": self.reconstruction_max_rel_error,
        }


def logit_attribution_scores(base: nn.Module | None, sft: nn.Module, examples: Sequence[CalibrationExample],
                             top_n: int = 64, stages: Stages = silent,
                             base_entropies: Sequence[torch.Tensor] | None = None) -> AttributionScores:
    """The paper read literally: per-unit mean |logit contribution| over the top-``top_n`` entropy-gap targets.

    Two stages of ``stages``: entropy gaps (a unit per calibration example), then attribution
    (a unit per target token). ``base_entropies``: see ``entropy_targets``.
    """
    structure = find_structure(sft)
    with stages("attribution 1/2: entropy gaps (calibration examples)", len(examples)) as stage:
        targets = entropy_targets(base, sft, examples, top_n, advance=stage.advance, base_entropies=base_entropies)
    if not targets:
        raise ValueError("the calibration set has no scored tokens to attribute")
    totals: dict[str, torch.Tensor] = {}
    max_abs = max_rel = 0.0
    by_example: dict[int, list[Target]] = {}
    for target in targets:
        by_example.setdefault(target.example, []).append(target)
    with stages("attribution 2/2: target tokens", len(targets)) as stage:
        for index, chosen in sorted(by_example.items()):
            result = attribute_example(sft, examples[index], [t.position for t in chosen],
                                       [t.token for t in chosen], structure)
            error = (result.reconstructed - result.logit).abs()
            max_abs = max(max_abs, float(error.max()))
            max_rel = max(max_rel, float((error / result.logit.abs().clamp_min(1e-6)).max()))
            for name, values in {**result.writers, **result.readers}.items():
                totals[name] = totals.get(name, 0) + values.abs().sum(0)
            stage.advance(len(chosen))
    scores = {name: (total / len(targets)).cpu() for name, total in totals.items()}
    return AttributionScores(scores, targets, max_abs, max_rel)


@dataclass
class ResetEffectScores:
    """Per target token, each unit's first-order effect of a reset to base on log p(target)."""

    effects: dict[str, torch.Tensor]  # module name -> (n_targets, units) Δ log p, targets in ``targets`` order
    targets: list[Target]
    reconstruction_max_abs_error: float
    reconstruction_max_rel_error: float

    @property
    def support(self) -> dict[str, torch.Tensor]:
        """How much each unit's SFT value holds each target up: minus its reset's effect."""
        return {name: -effect for name, effect in self.effects.items()}

    def diagnostics(self) -> dict[str, float]:
        gaps = [t.entropy_gap for t in self.targets]
        predicted = sum(effect.sum(1) for effect in self.effects.values())
        return {
            "targets": len(self.targets),
            "mean_entropy_gap": sum(gaps) / max(len(gaps), 1),
            "target_entropy_sft": sum(t.sft_entropy for t in self.targets) / max(len(self.targets), 1),
            "estimator": "first-order change of log p(target) for a reset to base",
            "reconstruction_max_abs_error": self.reconstruction_max_abs_error,
            "reconstruction_max_rel_error": self.reconstruction_max_rel_error,
            "mean_abs_effect_all_units": float(predicted.abs().mean()) if len(self.targets) else 0.0,
        }


def group_targets(targets: Sequence[Target]) -> tuple[list[Target], list[TargetPositions]]:
    """Targets reordered example by example (positions ascending), and the same as per-example lists."""
    ordered = sorted(targets, key=lambda target: (target.example, target.position))
    grouped: dict[int, TargetPositions] = {}
    for target in ordered:
        entry = grouped.setdefault(target.example, TargetPositions(target.example, [], []))
        entry.positions.append(target.position)
        entry.tokens.append(target.token)
    return ordered, list(grouped.values())


def attribution_scores(base: nn.Module | None, sft: nn.Module, examples: Sequence[CalibrationExample],
                       top_n: int = 64, stages: Stages = silent,
                       base_entropies: Sequence[torch.Tensor] | None = None,
                       base_tensor: BaseTensor | None = None,
                       max_delta_bytes: int | None = None) -> ResetEffectScores:
    """Each unit's reset effect on each of the top-``top_n`` entropy-gap targets, on the SFT model (on the CPU).

    Of the base it needs the token entropies (``base_entropies`` or ``base``) and the projection
    weights (``base_tensor`` or ``base``). Three stages of ``stages``: entropy gaps (a unit per
    calibration example), reset effects (a unit per target) and the writer reconstruction check
    (a unit per example with targets). ``max_delta_bytes``: see ``reset_effects``.
    """
    if base_tensor is None:
        if base is None:
            raise ValueError("attribution needs the base model or a reader of its weights")
        base_tensor = base_tensors_of(base)
    structure = find_structure(sft)
    with stages("attribution 1/3: entropy gaps (calibration examples)", len(examples)) as stage:
        targets = entropy_targets(base, sft, examples, top_n, advance=stage.advance, base_entropies=base_entropies)
    if not targets:
        raise ValueError("the calibration set has no scored tokens to attribute")
    ordered, grouped = group_targets(targets)
    with stages("attribution 2/3: reset effects (target tokens)", len(ordered)) as stage:
        effects = reset_effects(sft, examples, grouped, base_tensor, structure, max_delta_bytes,
                                advance=stage.advance)
    max_abs = max_rel = 0.0
    with stages("attribution 3/3: logit reconstruction check (examples)", len(grouped)) as stage:
        for chosen in grouped:
            result = attribute_example(sft, examples[chosen.example], chosen.positions, chosen.tokens, structure,
                                       readers=False)
            error = (result.reconstructed - result.logit).abs()
            max_abs = max(max_abs, float(error.max()))
            max_rel = max(max_rel, float((error / result.logit.abs().clamp_min(1e-6)).max()))
            stage.advance()
    return ResetEffectScores(effects, ordered, max_abs, max_rel)
