"""Base-anchored fusion: θ = α·θ_sft + (1 − α)·θ_base over all parameters.

Step 1 of Algorithm 1 in Liu et al., "When RL Fails after SFT: Rejuvenating Model
Plasticity for Robust SFT-to-RL Handoff" (arXiv 2606.09932): one global α (default 0.5)
for attention, MLP, norms, embeddings and lm_head alike.

Arithmetic (shared by the in-memory and the streaming path, so both give the same bits):
α = 1 copies θ_sft and α = 0 copies θ_base exactly; otherwise the mix is computed in
float32 as ``α·sft + (1 − α)·base`` and cast back to the SFT tensor's stored dtype.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch

from regym.rejuvenation.checkpoint import (
    ShardReader,
    ShardWriter,
    atomic_folder,
    check_checkpoints,
    check_same_tensors,
    copy_side_files,
    require_finite,
    row_blocks,
)
from regym.rejuvenation.stages import Stages, silent


def fuse_tensor(base: torch.Tensor, sft: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·sft + (1 − α)·base in float32, in sft's dtype; exact copies at α ∈ {0, 1}; non-float tensors from sft."""
    if not sft.is_floating_point() or alpha == 1.0:
        return sft.clone()
    if alpha == 0.0:
        return base.to(sft.dtype, copy=True)
    mixed = torch.mul(sft.float(), alpha).add_(torch.mul(base.float(), 1.0 - alpha))
    return mixed.to(sft.dtype)


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha


def fuse(base: torch.nn.Module, sft: torch.nn.Module, alpha: float = 0.5, *,
         stages: Stages = silent) -> torch.nn.Module:
    """A new model (a copy of ``sft``) whose parameters are α·θ_sft + (1 − α)·θ_base.

    Raises ``CheckpointError`` naming the first parameter whose name, shape or dtype kind differs.
    The fusion is one stage of ``stages``, a unit per parameter tensor.
    """
    alpha = _check_alpha(alpha)
    base_state = dict(base.named_parameters())
    sft_state = dict(sft.named_parameters())
    check_same_tensors({n: (tuple(p.shape), p.dtype) for n, p in base_state.items()},
                       {n: (tuple(p.shape), p.dtype) for n, p in sft_state.items()})
    fused = copy.deepcopy(sft)
    parameters = list(fused.named_parameters())
    with torch.no_grad(), stages("fusing tensors", len(parameters)) as stage:
        for name, parameter in parameters:
            parameter.copy_(fuse_tensor(base_state[name].detach(), parameter.detach(), alpha))
            stage.advance()
    return fused


def fuse_checkpoints(
    base_dir: str | Path,
    sft_dir: str | Path,
    out_dir: str | Path,
    alpha: float = 0.5,
    *,
    max_shard_bytes: int = 2 * 1024**3,
    max_block_bytes: int = 16 * 1024**2,
    overwrite: bool = False,
    stages: Stages = silent,
    extra_files: Callable[[Path], object] | None = None,
    fuse_block: Callable[[str, int, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
) -> Path:
    """Fuse two HF checkpoint folders into ``out_dir``, streaming.

    Tensors are read in row blocks of at most ``max_block_bytes`` from both inputs' shards and
    written straight into the output shards, so peak memory is a few blocks, not the model.
    Both folders are checked first (``check_checkpoints``: whole safetensors files, a model
    config.json, the same architecture, tensor names, shapes and tokenizers), and every block
    read or fused must be finite; any fault is a ``CheckpointError`` naming it, and nothing is
    written. The output gets config and tokenizer from the SFT folder and appears atomically:
    it is written to a temp folder, then renamed. Fusing is one stage of ``stages`` (a unit per
    tensor); ``extra_files(temp_folder)`` runs last, before the rename (e.g. to add a summary).
    ``fuse_block(name, first_row, base_rows, sft_rows)`` may return the rows to write instead of
    the formula's (None: the formula); ``reset.StreamingReset`` resets units this way, in the same pass.
    """
    alpha = _check_alpha(alpha)
    base_dir, sft_dir, out_dir = Path(base_dir), Path(sft_dir), Path(out_dir)
    checkpoints = check_checkpoints({"base": base_dir, "SFT": sft_dir}, weights=False)  # weights: block by block below
    base_index, sft_index = checkpoints["base"].tensors, checkpoints["SFT"].tensors

    # Output in the SFT checkpoint's order, grouped by shard, so reads are sequential.
    names = sorted(sft_index, key=lambda n: (sft_index[n].file.name, sft_index[n].start))
    plan = [(name, sft_index[name].dtype, sft_index[name].shape) for name in names]
    with atomic_folder(out_dir, overwrite=overwrite) as tmp, ShardReader() as reader, \
            stages("fusing tensors", len(names)) as stage:
        writer = ShardWriter(tmp, plan, max_shard_bytes=max_shard_bytes)
        for name in names:
            base_info, sft_info = base_index[name], sft_index[name]
            for first, last in row_blocks(sft_info, max_block_bytes):
                sft_block = reader.rows(sft_info, first, last)
                base_block = reader.rows(base_info, first, last)
                require_finite(sft_block, f"{sft_info.file}: tensor {name!r}", first)
                require_finite(base_block, f"{base_info.file}: tensor {name!r}", first)
                fused = fuse_block(name, first, base_block, sft_block) if fuse_block is not None else None
                if fused is None:
                    fused = fuse_tensor(base_block, sft_block, alpha)
                require_finite(fused, f"fused tensor {name!r}", first)
                writer.write(name, fused)
            stage.advance()
        writer.close()
        copy_side_files(sft_dir, tmp)
        if extra_files is not None:
            extra_files(tmp)
    return out_dir
