"""Caching and resume, written once: atomic JSON files and settings stamps that are compared before reuse.

Everything regym builds once and reuses (the tiny pipeline, rl-train's rejuvenated start, eval run
folders, lab jobs) records the settings it was made with beside it. Before reusing a folder or file,
its stamp is compared with the settings wanted: equal means reuse, absent means build, and different
means ``SettingsMismatch`` naming what differs, or a rebuild where the caller asks for one. Reusing
whatever JSON lies in a folder would silently mix results of two designs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class SettingsMismatch(ValueError):
    """A cached result was made with other settings than the ones asked for now."""


def plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, paths and other objects strings)."""
    return json.loads(json.dumps(value, default=str))


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a scratch file beside it, then one rename): a reader sees the old
    file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, path)
    return path


def write_json(path: str | Path, data: Any, *, indent: int = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (``write_text``); objects JSON lacks are written as strings."""
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")


def write_stamp(path: str | Path, settings: Mapping[str, Any], **extra: Any) -> Path:
    """Record ``settings`` (and ``extra`` fields, e.g. a result) in the stamp file ``path``, atomically."""
    return write_json(path, {"settings": plain(dict(settings)), **extra})


def read_stamp(path: str | Path) -> dict[str, Any] | None:
    """The stamp at ``path``, None when there is none; an unreadable one raises ``SettingsMismatch``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SettingsMismatch(f"{path} is unreadable ({error})") from None
    if not isinstance(stamp, dict) or "settings" not in stamp:
        raise SettingsMismatch(f"{path} records no settings, so what it holds cannot be checked")
    return stamp


def differing(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The names of the settings whose values differ between two settings records (as JSON reads them)."""
    saved, wanted = plain(dict(saved)), plain(dict(wanted))
    return sorted(name for name in set(saved) | set(wanted) if saved.get(name) != wanted.get(name))


def reusable(path: str | Path, settings: Mapping[str, Any], *, rebuild: bool = False, fix: str = "") -> bool:
    """Whether the stamp at ``path`` records exactly ``settings``, so what it stamps may be reused.

    False when there is no stamp (build it). A stamp with other settings, or an unreadable one, raises
    ``SettingsMismatch`` naming the settings that differ and ``fix`` (what the user can do), unless
    ``rebuild`` asks to build again instead, which returns False.
    """
    try:
        stamp = read_stamp(path)
    except SettingsMismatch:
        if rebuild:
            return False
        raise
    if stamp is None:
        return False
    changed = differing(stamp["settings"], settings)
    if not changed:
        return True
    if rebuild:
        return False
    raise SettingsMismatch(f"{path} was made with other settings ({', '.join(changed)})" + (f": {fix}" if fix else ""))
