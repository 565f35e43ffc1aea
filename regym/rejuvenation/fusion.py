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
    CheckpointError,
    ShardWriter,
    atomic_folder,
    check_tokenizers_match,
    copy_side_files,
    read_rows,
    row_blocks,
    tensor_index,
)


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


def fuse(base: torch.nn.Module, sft: torch.nn.Module, alpha: float = 0.5) -> torch.nn.Module:
    """A new model (a copy of ``sft``) whose parameters are α·θ_sft + (1 − α)·θ_base.

    Raises ``CheckpointError`` naming the first parameter whose name or shape differs.
    """
    alpha = _check_alpha(alpha)
    base_state = dict(base.named_parameters())
    sft_state = dict(sft.named_parameters())
    _check_same_tensors({n: tuple(p.shape) for n, p in base_state.items()},
                        {n: tuple(p.shape) for n, p in sft_state.items()})
    fused = copy.deepcopy(sft)
    with torch.no_grad():
        for name, parameter in fused.named_parameters():
            parameter.copy_(fuse_tensor(base_state[name].detach(), parameter.detach(), alpha))
    return fused


def _check_same_tensors(base: dict[str, tuple[int, ...]], sft: dict[str, tuple[int, ...]]) -> None:
    only_base = sorted(set(base) - set(sft))
    only_sft = sorted(set(sft) - set(base))
    if only_base:
        raise CheckpointError(f"tensor {only_base[0]!r} is in the base checkpoint but not in the SFT one"
                              f" ({len(only_base)} such tensors)")
    if only_sft:
        raise CheckpointError(f"tensor {only_sft[0]!r} is in the SFT checkpoint but not in the base one"
                              f" ({len(only_sft)} such tensors)")
    for name in sorted(base):
        if base[name] != sft[name]:
            raise CheckpointError(f"tensor {name!r} has shape {list(base[name])} in base but "
                                  f"{list(sft[name])} in SFT")


def fuse_checkpoints(
    base_dir: str | Path,
    sft_dir: str | Path,
    out_dir: str | Path,
    alpha: float = 0.5,
    *,
    max_shard_bytes: int = 2 * 1024**3,
    max_block_bytes: int = 16 * 1024**2,
    overwrite: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> Path:
    """Fuse two HF checkpoint folders into ``out_dir``, streaming.

    Tensors are read in row blocks of at most ``max_block_bytes`` from both inputs' shards and
    written straight into the output shards, so peak memory is a few blocks, not the model.
    Tensor names, shapes and tokenizers must match (else ``CheckpointError`` naming what
    differs, before anything is written). The output gets config and tokenizer from the SFT
    folder and appears atomically: it is written to a temp folder, then renamed.
    ``progress(name, nbytes)`` is called after each tensor.
    """
    alpha = _check_alpha(alpha)
    base_dir, sft_dir, out_dir = Path(base_dir), Path(sft_dir), Path(out_dir)
    base_index, sft_index = tensor_index(base_dir), tensor_index(sft_dir)
    _check_same_tensors({n: i.shape for n, i in base_index.items()}, {n: i.shape for n, i in sft_index.items()})
    check_tokenizers_match(base_dir, sft_dir)
    if not (sft_dir / "config.json").is_file():
        raise CheckpointError(f"{sft_dir} has no config.json")

    # Output in the SFT checkpoint's order, grouped by shard, so reads are sequential.
    names = sorted(sft_index, key=lambda n: (sft_index[n].file.name, sft_index[n].start))
    plan = [(name, sft_index[name].dtype, sft_index[name].shape) for name in names]
    with atomic_folder(out_dir, overwrite=overwrite) as tmp:
        writer = ShardWriter(tmp, plan, max_shard_bytes=max_shard_bytes)
        handles: dict[Path, object] = {}
        try:
            for name in names:
                base_info, sft_info = base_index[name], sft_index[name]
                for path in (base_info.file, sft_info.file):
                    if path not in handles:
                        handles[path] = open(path, "rb")  # noqa: SIM115 - closed below
                for first, last in row_blocks(sft_info, max_block_bytes):
                    sft_block = read_rows(handles[sft_info.file], sft_info, first, last)
                    if alpha == 1.0 or not sft_block.is_floating_point():
                        writer.write(name, sft_block)
                        continue
                    base_block = read_rows(handles[base_info.file], base_info, first, last)
                    writer.write(name, fuse_tensor(base_block, sft_block, alpha))
                if progress is not None:
                    progress(name, sft_info.nbytes)
            writer.close()
        finally:
            for handle in handles.values():
                handle.close()
        copy_side_files(sft_dir, tmp)
    return out_dir
