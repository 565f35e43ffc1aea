"""Where regym keeps what it builds (compiled games, tiny models, demos)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """A folder under ``$REGYM_CACHE`` (default ``~/.cache/regym``), created on first use."""
    root = Path(os.environ.get("REGYM_CACHE", Path.home() / ".cache" / "regym")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
