"""Finding a causal LM's residual-stream pieces by module structure, not by one model's names.

A probe forward pass records the order in which ``nn.Linear`` modules run inside each
decoder layer. In Llama, Qwen2/3, Gemma 1/2/3 (and any block written the same way) the
attention child runs four projections in the order q, k, v, o and the gated MLP child runs
three in the order gate, up, down (two, up and down, when it is not gated). Shapes are then
checked: o and down write the hidden size, q/k/v/gate/up read it. Norms that act on a
writer's output before the residual add (Gemma 2/3 "sandwich" norms) are found by tensor
identity: their input is the writer's output object. The final norm is the last module with
a hidden-size weight that runs between the last layer and the unembedding; whether it scales
by ``w`` (Llama) or ``1 + w`` (Gemma) is decided by running it, not by reading its class name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

READERS = ("q", "k", "v", "gate", "up")  # units are output rows
WRITERS = ("o", "down")  # units are input columns
ROLES = ("q", "k", "v", "o", "gate", "up", "down")


class UnsupportedModelError(ValueError):
    """The model's blocks do not look like pre-norm attention + MLP blocks with separate projections."""


@dataclass
class Norm:
    """An RMSNorm with its per-feature scale ``w`` or ``1 + w`` (``offset``) and epsilon."""

    module: nn.Module
    offset: float
    eps: float

    def scale(self) -> torch.Tensor:
        return self.module.weight.detach().float() + self.offset

    def inverse_rms(self, x: torch.Tensor) -> torch.Tensor:
        """1 / sqrt(mean(x²) + eps) over the last dim, in float32: the factor frozen for attribution."""
        x = x.float()
        return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


@dataclass
class Block:
    """One decoder layer: its projections by role, full module names, and writer post-norms."""

    index: int
    layer: nn.Module
    linears: dict[str, nn.Linear]
    names: dict[str, str]
    post_norms: dict[str, Norm] = field(default_factory=dict)  # role ("o"/"down") -> norm on its output


@dataclass
class Structure:
    embedding: nn.Module
    blocks: list[Block]
    final_norm: Norm
    lm_head: nn.Linear
    hidden_size: int

    def units(self) -> list[tuple[str, int, str, str, int]]:
        """``(module_name, layer, role, axis, count)`` for every row/column family that can be reset."""
        found = []
        for block in self.blocks:
            for role, linear in block.linears.items():
                axis = "column" if role in WRITERS else "row"
                count = linear.in_features if axis == "column" else linear.out_features
                found.append((block.names[role], block.index, role, axis, count))
        return found


def _norm_eps(module: nn.Module) -> float:
    for attribute in ("variance_epsilon", "eps", "epsilon"):
        value = getattr(module, attribute, None)
        if isinstance(value, float | int):
            return float(value)
    return 1e-6


def detect_norm(module: nn.Module, sample: torch.Tensor) -> Norm:
    """Which RMSNorm form ``module`` computes on ``sample``: ``x/rms·w`` or ``x/rms·(1 + w)``."""
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 1:
        raise UnsupportedModelError(f"{type(module).__name__} is not an RMSNorm with a per-feature weight")
    eps = _norm_eps(module)
    with torch.no_grad():
        output = module(sample)
        actual = output.float()
        # A bfloat16/float16 norm rounds its output (twice, in Llama's): allow a few of its ulps.
        rtol = 1e-3 if output.dtype == torch.float32 else 4 * torch.finfo(output.dtype).eps
        normed = sample.float() * torch.rsqrt(sample.float().pow(2).mean(-1, keepdim=True) + eps)
        for offset in (0.0, 1.0):
            expected = normed * (weight.float() + offset)
            if torch.allclose(actual, expected, rtol=rtol, atol=rtol / 10):
                return Norm(module, offset, eps)
    raise UnsupportedModelError(f"{type(module).__name__} is neither x/rms·w nor x/rms·(1+w) (LayerNorm?)")


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    best = None
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) and all(
            sum(isinstance(m, nn.Linear) for m in child.modules()) >= 4 for child in module
        ) and (best is None or len(module) > len(best)):
            best = module
    if best is None:
        raise UnsupportedModelError(f"{type(model).__name__}: no list of decoder layers with linear projections")
    return best


def find_structure(model: nn.Module) -> Structure:
    """Locate embeddings, decoder blocks (q/k/v/o/gate/up/down by call order), final norm and lm_head."""
    names = {module: name for name, module in model.named_modules()}
    layers = _decoder_layers(model)
    lm_head = model.get_output_embeddings()
    embedding = model.get_input_embeddings()
    if not isinstance(lm_head, nn.Linear):
        raise UnsupportedModelError("the output embedding is not an nn.Linear")
    hidden = lm_head.in_features
    layer_of = {}
    for index, layer in enumerate(layers):
        for module in layer.modules():
            layer_of[module] = index

    calls: list[tuple[nn.Module, tuple, object]] = []  # (module, inputs, output) in call order

    def record(module, inputs, output):
        calls.append((module, inputs, output))

    handles = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        probe = torch.arange(1, 7, device=lm_head.weight.device).clamp(max=lm_head.out_features - 1)[None]
        with torch.no_grad():
            model(input_ids=probe)
    finally:
        for handle in handles:
            handle.remove()

    blocks = []
    for index, layer in enumerate(layers):
        in_layer = [(m, i, o) for m, i, o in calls if layer_of.get(m) == index and m is not layer]
        by_child: dict[nn.Module, list[nn.Linear]] = {}
        for module, _, _ in in_layer:
            if isinstance(module, nn.Linear):
                child = _direct_child(layer, module)
                if module not in by_child.setdefault(child, []):
                    by_child[child].append(module)
        attention = [ls for ls in by_child.values() if len(ls) == 4]
        mlp = [ls for ls in by_child.values() if len(ls) in (2, 3)]
        if len(attention) != 1 or len(mlp) != 1:
            raise UnsupportedModelError(
                f"layer {index}: expected one attention child with 4 projections (q, k, v, o) and one MLP child "
                f"with 2-3 projections; found groups of sizes {[len(ls) for ls in by_child.values()]}"
            )
        roles = dict(zip(("q", "k", "v", "o"), attention[0], strict=True))
        roles.update(zip(("gate", "up", "down") if len(mlp[0]) == 3 else ("up", "down"), mlp[0], strict=True))
        for role, linear in roles.items():
            ok = linear.out_features == hidden if role in WRITERS else linear.in_features == hidden
            if not ok:
                raise UnsupportedModelError(f"layer {index}: {names[linear]} has unexpected shape for role {role}")
        outputs = {id(o): role for m, _, o in in_layer for role, linear in roles.items() if m is linear}
        post_norms = {}
        for module, inputs, _ in in_layer:
            if inputs and id(inputs[0]) in outputs and not isinstance(module, nn.Linear):
                role = outputs[id(inputs[0])]
                if role in WRITERS and getattr(module, "weight", None) is not None:
                    post_norms[role] = detect_norm(module, inputs[0])
        blocks.append(Block(index, layer, roles, {r: names[m] for r, m in roles.items()}, post_norms))

    last_layer_call = max(i for i, (m, _, _) in enumerate(calls) if m is layers[-1])
    head_call = next(i for i, (m, _, _) in enumerate(calls) if m is lm_head)
    candidates = [(m, i) for m, i, _ in calls[last_layer_call + 1:head_call]
                  if getattr(m, "weight", None) is not None and tuple(m.weight.shape) == (hidden,)]
    if not candidates:
        raise UnsupportedModelError("no final norm between the last decoder layer and the unembedding")
    norm_module, norm_inputs = candidates[-1]
    final_norm = detect_norm(norm_module, norm_inputs[0])
    return Structure(embedding, blocks, final_norm, lm_head, hidden)


def _direct_child(parent: nn.Module, descendant: nn.Module) -> nn.Module:
    for child in parent.children():
        if child is descendant or any(m is descendant for m in child.modules()):
            return child
    return descendant
