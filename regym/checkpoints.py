"""Writing a model as a Hugging Face folder, atomically: the one model saver.

A model folder is what ``from_pretrained`` reads: the weights (``model.safetensors``, or
shards and their index), ``config.json``, ``generation_config.json`` and the tokenizer's
files, plus at most one JSON file saying how the model was made (``sft_summary.json``,
``tiny_base.json``, ...). SFT, RL's final model, rejuvenation, the tiny pipeline and the
SmolLM2 export all write their models here. The folder is filled under a scratch name and
renamed into place (``regym.paths.atomic_directory``), so a reader never finds half a
checkpoint and a killed writer leaves nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from regym.paths import atomic_directory


class CheckpointError(ValueError):
    """A checkpoint folder is missing, malformed, or does not match another one."""


def write_model_files(
    model: Any,
    folder: str | Path,
    *,
    tokenizer: Any = None,
    metadata: Mapping[str, Any] | None = None,
    metadata_name: str | None = None,
    generation_ids_from_tokenizer: bool = False,
    extra_files: Callable[[Path], object] | None = None,
) -> Path:
    """Write a model folder's files into ``folder``, an existing folder the caller makes atomic.

    ``save_model`` is this inside ``atomic_directory``; call this one only to put a model at
    the top of a larger atomic folder (SFT's output, which also holds its ``epochs/`` ladder).
    The order is fixed: weights and config (``save_pretrained``), tokenizer, ``extra_files``,
    metadata last, so that the metadata describes the folder as written.
    """
    if (metadata is None) != (metadata_name is None):
        raise ValueError("metadata and metadata_name go together: give both or neither")
    if generation_ids_from_tokenizer:
        if tokenizer is None:
            raise ValueError("generation_ids_from_tokenizer needs the tokenizer")
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder = Path(folder)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    if extra_files is not None:
        extra_files(folder)
    if metadata is not None:
        (folder / metadata_name).write_text(json.dumps(metadata, indent=2, default=str))
    return folder


def save_model(
    model: Any,
    folder: str | Path,
    *,
    tokenizer: Any = None,
    metadata: Mapping[str, Any] | None = None,
    metadata_name: str | None = None,
    generation_ids_from_tokenizer: bool = False,
    extra_files: Callable[[Path], object] | None = None,
) -> Path:
    """Save ``model`` (and ``tokenizer``) as a Hugging Face folder at ``folder``, atomically.

    - ``metadata``/``metadata_name``: a JSON file (e.g. ``"sft_summary.json"``) saying how the
      model was made.
    - ``generation_ids_from_tokenizer``: set ``generation_config``'s EOS and pad ids to the
      tokenizer's first, so ``generate`` stops at the chat template's end token.
    - ``extra_files(staging)``: a hook that adds or replaces files (e.g. copies another
      checkpoint's config and tokenizer verbatim) before the rename; whatever it raises
      leaves no folder.

    Whatever ``folder`` was is replaced only once the new folder is whole.
    """
    with atomic_directory(folder) as staging:
        write_model_files(model, staging, tokenizer=tokenizer, metadata=metadata, metadata_name=metadata_name,
                          generation_ids_from_tokenizer=generation_ids_from_tokenizer, extra_files=extra_files)
    return Path(folder)
