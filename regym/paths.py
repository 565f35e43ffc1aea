"""Where regym keeps what it builds (compiled games, tiny models, demos)."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """A folder under ``$REGYM_CACHE`` (default ``~/.cache/regym``), created on first use."""
    root = Path(os.environ.get("REGYM_CACHE", Path.home() / ".cache" / "regym")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield an empty folder to fill; on success it replaces ``final`` in one rename.

    Checkpoints, datasets and caches are written this way so a killed writer never
    leaves a half folder where a reader expects a whole one. Whatever ``final`` was (a
    folder, a file or a link) is first moved into the scratch folder beside it, and the
    scratch folder is deleted however the block ends, so nothing is left behind; if the
    last rename fails, the old ``final`` is put back.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    staging = scratch / final.name
    staging.mkdir(parents=True)
    try:
        yield staging
        if final.exists() or final.is_symlink():
            retired = scratch / f"{final.name}.replaced"
            os.replace(final, retired)
            try:
                os.replace(staging, final)
            except BaseException:
                os.replace(retired, final)
                raise
        else:
            os.replace(staging, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
