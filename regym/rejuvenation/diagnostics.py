"""What the reset criteria measure on calibration text: teacher-forced next-token statistics (attribution's
target tokens and entropies) and ReDo's MLP-neuron scores (the ``redo`` criterion).

The handoff diagnostics built on them (token entropy, sharpness, Hessian, dormant fraction, drift reports)
live in ``regym.eval.plasticity``; drift itself is ``regym.rejuvenation.drift``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from regym.rejuvenation.calibration import CalibrationExample


def model_device(model: nn.Module) -> torch.device:
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
        logits = model(input_ids=example.input_ids.to(model_device(model))).logits[0, :-1].float()
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
                model(input_ids=example.input_ids.to(model_device(model)))
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


