"""regym's multi-turn text environments, registered with Gymnasium.

``import regym`` registers every id below (``register_envs``; regym declares no Gymnasium plugin entry
point, so ``gym.make("regym/ALFWorld-v0")`` works after ``import regym``). Adding an env family is its
package ``regym/envs/<family>/`` plus one line in ``ENTRY_POINTS`` (docs/contributing.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym

from regym.envs.actions import ParsedAction, parse_action
from regym.envs.base import FreeText, Outcome, TextEnv, normalize_split

ENTRY_POINTS = {
    "regym/TextWorld-v0": "regym.envs.textworld:TextWorldEnv",
    "regym/ALFWorld-v0": "regym.envs.alfworld:ALFWorldEnv",
    "regym/Math-v0": "regym.envs.math:MathEnv",
    "regym/ToolUse-v0": "regym.envs.tool_use:ToolUseEnv",
    "regym/WebShop-v0": "regym.envs.webshop:WebShopEnv",
}

SERVICE_ENTRY_POINTS = {
    "regym/Remote-v0": "regym.envs.service.client:RemoteEnv",
}
"""Ids that reach an env family elsewhere (a ``regym serve-env`` server) rather than being one:
registered like the families, but not listed by ``list_envs`` nor played by suites and corpora."""


def register_envs() -> None:
    """Register every regym env id with Gymnasium (idempotent)."""
    for env_id, entry_point in {**ENTRY_POINTS, **SERVICE_ENTRY_POINTS}.items():
        if env_id not in gym.registry:
            # Gymnasium 1.4's PassiveEnvChecker marks the first reset as checked before it runs,
            # so a first reset that raises leaves the wrapper broken for good (its next step fails
            # with "cannot unpack non-iterable NoneType"). regym envs recover from a failed reset;
            # tests/envs/test_registry.py runs the full ``check_env`` on every env instead.
            gym.register(id=env_id, entry_point=entry_point, disable_env_checker=True)


def env_class(env_id: str) -> type:
    """The class (or factory) registered for ``env_id``, whether its entry point is a string or a callable."""
    register_envs()
    entry_point = gym.spec(env_id).entry_point
    return entry_point if callable(entry_point) else gym.envs.registration.load_env_creator(entry_point)


def accepts_option(env_id: str, option: str) -> bool:
    """Whether the env's constructor takes keyword ``option`` (e.g. ``num_tasks``)."""
    import inspect

    try:
        return option in inspect.signature(env_class(env_id)).parameters
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class EnvListing:
    env_id: str
    short_name: str
    splits: tuple[str, ...]
    levels: tuple[tuple[str, str], ...] = ()
    """(level, what it asks) for a family with difficulty levels (``TextEnv.difficulty_levels``)."""
    level_splits: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(split, its levels) for the splits made of levels (``TextEnv.level_splits``)."""


def declared_splits(registered: type) -> tuple[str, ...]:
    """The splits an env class plays with its default options (Math's near-OOD needs a ``level_set``)."""
    splits_with = getattr(registered, "splits_with", None)
    return tuple(splits_with()) if splits_with is not None else tuple(getattr(registered, "splits", ()))


def list_envs() -> list[EnvListing]:
    """Every registered regym env with its splits and levels (read from the env class)."""
    register_envs()
    listings = []
    for env_id in sorted(gym.registry):
        if not env_id.startswith("regym/") or env_id in SERVICE_ENTRY_POINTS:
            continue
        short = env_id.split("/", 1)[1].rsplit("-v", 1)[0].lower()
        registered = env_class(env_id)
        listings.append(EnvListing(env_id, short, declared_splits(registered),
                                   tuple(dict(getattr(registered, "difficulty_levels", None) or {}).items()),
                                   tuple(dict(getattr(registered, "level_splits", None) or {}).items())))
    return listings


def resolve_env_id(name: str) -> str:
    """Accept a full id ("regym/ALFWorld-v0") or a short name ("alfworld")."""
    register_envs()
    if name in gym.registry:
        return name
    wanted = name.lower().replace("_", "").replace("-", "")
    for env_id in ENTRY_POINTS:
        short = env_id.split("/", 1)[1].rsplit("-v", 1)[0].lower()
        if wanted in (short, short.replace("_", "")):
            return env_id
    known = ", ".join(env_id.split("/", 1)[1].rsplit("-v", 1)[0].lower() for env_id in ENTRY_POINTS)
    raise ValueError(f"unknown env {name!r}; known: {known}")


__all__ = [
    "ENTRY_POINTS",
    "SERVICE_ENTRY_POINTS",
    "EnvListing",
    "declared_splits",
    "FreeText",
    "Outcome",
    "ParsedAction",
    "TextEnv",
    "accepts_option",
    "env_class",
    "list_envs",
    "normalize_split",
    "parse_action",
    "register_envs",
    "resolve_env_id",
]
