"""Loading a causal LM and its tokenizer: the one path from a checkpoint to a model.

rl-train, SFT, the evaluator's HF policy, rejuvenation, the plasticity report, the lab and the
SmolLM2 export all load here, so a checkpoint whose config.json does not describe its weights fails
the same way everywhere instead of being silently half random (``transformers`` initialises a missing
weight at random and only logs it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from regym.checkpoints import CheckpointError

SMOLLM2 = "smollm2"
"""The model name that means the packaged SmolLM2-135M-Instruct (exported once to an HF folder)."""


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` as a folder; the name ``smollm2`` is the packaged SmolLM2-135M-Instruct's folder."""
    if str(path) == SMOLLM2:
        from regym.models.smollm2 import smollm2_checkpoint

        return smollm2_checkpoint()
    return Path(path)


def load_model(path: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
               gguf_file: str | None = None) -> Any:
    """The causal LM of an HF folder (or of the GGUF file ``gguf_file`` inside it), in eval mode.

    ``device`` (e.g. "cuda"): the weights are loaded straight onto it, shard by shard, not via a host copy.
    Strict where ``transformers`` is lenient: a weight the config.json's model lacks, expects and does not
    find, or expects in another shape is a ``CheckpointError``. A GGUF file is converted by transformers' own
    tensor mapping, which has no config.json to check against, so it is loaded as converted.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_checkpoint(path)
    placement = {"device_map": str(device)} if device is not None else {}
    if gguf_file is not None:
        model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, dtype=dtype, **placement)
        return model.eval()
    try:
        model, loading = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, output_loading_info=True,
                                                              **placement)
    except RuntimeError as error:  # transformers raises RuntimeError for size mismatches
        raise CheckpointError(f"{path}: config.json does not describe these weights: {str(error).splitlines()[0]}") \
            from None
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(map(str, loading.get(kind) or []))
        if keys:
            raise CheckpointError(f"{path}: config.json does not describe these weights ({len(keys)} "
                                  f"{kind.replace('_', ' ')}, e.g. {keys[0]!r})")
    return model.eval()


def load_tokenizer(path: str | Path, *, gguf_file: str | None = None) -> Any:
    """The tokenizer of an HF folder (or of the GGUF file ``gguf_file`` inside it)."""
    from transformers import AutoTokenizer

    extra = {"gguf_file": gguf_file} if gguf_file is not None else {}
    return AutoTokenizer.from_pretrained(resolve_checkpoint(path), **extra)


def load_causal_lm(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
                   gguf_file: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a checkpoint: ``load_model`` and ``load_tokenizer`` of the same folder."""
    return (load_model(path, dtype=dtype, device=device, gguf_file=gguf_file),
            load_tokenizer(path, gguf_file=gguf_file))
