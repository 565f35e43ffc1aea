"""Models regym ships or builds, and the one loader: the packaged SmolLM2-135M-Instruct, tiny random
test models, and ``regym.models.loading`` (every checkpoint folder becomes a model there).

Import-light on purpose: ``import regym.models`` pulls in neither torch nor transformers;
the loaders live in submodules (``regym.models.loading``, ``regym.models.smollm2``,
``regym.models.testing``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_smollm2", "smollm2_checkpoint", "smollm2_gguf_path"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from regym.models import smollm2

        return getattr(smollm2, name)
    raise AttributeError(f"module 'regym.models' has no attribute {name!r}")
