"""Evaluation suites: named sets of (env, split, tasks) resolved from the env registry.

A task is ``(env_id, split, seed)``: ``reset(seed=seed)`` of an env made with that
split. Task seeds are fixed (``TASK_SEED_BASE + i``), so two runs of a suite score the
same tasks. Suites are built from ``regym.envs.list_envs()`` at run time: registering an
env is the only step to put it on every suite, and an env that cannot load fails
loudly with its name.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym

from regym import seeds
from regym.envs import declared_splits, env_class, list_envs, normalize_split, resolve_env_id

ID, OOD = "in_distribution", "out_of_distribution"
NEAR = "near_out_of_distribution"
SPLIT_SHORT = {ID: "id", NEAR: "near", OOD: "ood"}
"""Short names of the usual splits in columns and suite names; other splits (``smollm2_id``) keep their own."""

TASK_SEED_BASE = seeds.EVAL_SUITE_FIRST
"""Eval tasks use reset seeds from here on, far from the small seeds training usually draws."""

DEFAULT_NUM_TASKS = 8


@dataclass(frozen=True)
class Suite:
    """A named collection: which splits of which envs, how many tasks each."""

    name: str
    description: str
    splits: tuple[str, ...]
    env_names: tuple[str, ...] | None = None
    """Envs to include (ids or short names); None means every registered env."""
    num_tasks: int = DEFAULT_NUM_TASKS


@dataclass(frozen=True)
class SuiteEntry:
    """One (env, split) of a suite with its fixed task seeds."""

    env_id: str
    split: str
    num_tasks: int
    seed: int = TASK_SEED_BASE

    @property
    def task_seeds(self) -> list[int]:
        return [self.seed + index for index in range(self.num_tasks)]

    @property
    def column(self) -> str:
        """The leaderboard column name, e.g. ``textworld/ood``."""
        return column_name(self.env_id, self.split)


def column_name(env_id: str, split: str) -> str:
    short = env_id.split("/", 1)[-1].rsplit("-v", 1)[0].lower()
    return f"{short}/{SPLIT_SHORT.get(split, split)}"


SUITES = {
    "agentic-id": Suite("agentic-id", "the in-distribution split of every registered env", (ID,)),
    "agentic-ood": Suite("agentic-ood", "the out-of-distribution split of every registered env", (OOD,)),
    "all": Suite("all", "both splits of every registered env", (ID, OOD)),
    "smollm2-math": Suite("smollm2-math", "Math's SmolLM2 suite, single-turn boxed answers: ID levels, harder "
                          "settings of them (near) and other families (far); docs/math.md",
                          ("smollm2_id", "smollm2_near", "smollm2_far"), env_names=("regym/Math-v0",), num_tasks=64),
}


def env_splits(env_id: str) -> tuple[str, ...]:
    """The splits an env class plays with its default options; an env that cannot load raises with its name."""
    spec = gym.spec(env_id)
    try:
        registered = env_class(env_id)
    except Exception as error:
        raise RuntimeError(f"env {env_id} failed to load ({spec.entry_point}): {error}") from error
    return declared_splits(registered)


def get_suite(name: str) -> Suite:
    """A suite by name: a named suite, or ``<env>`` (ID and OOD) or ``<env>-<split>`` for one split of one env:
    ``-id``, ``-near``, ``-ood``, or any split name the env declares (``alfworld-valid_unseen``)."""
    if name in SUITES:
        return SUITES[name]
    base, splits = name, (ID, OOD)
    for split, short in SPLIT_SHORT.items():
        if name.endswith(f"-{short}"):
            base, splits = name[: -len(short) - 1], (split,)
    if splits == (ID, OOD) and "-" in name:  # a split by its own name, e.g. alfworld-valid_unseen
        head, tail = name.rsplit("-", 1)
        try:
            base, splits = head, (normalize_split(tail),)
        except ValueError:
            pass
    try:
        env_id = resolve_env_id(base)
    except ValueError:
        raise ValueError(
            f"unknown suite {name!r}; use one of {sorted(SUITES)} or <env>, "
            f"{', '.join(f'<env>-{short}' for short in SPLIT_SHORT.values())}, <env>-<split>"
        ) from None
    return Suite(name, f"{env_id}: {', '.join(splits)}", splits, env_names=(env_id,))


def suite_entries(
    suite: Suite | str,
    *,
    envs: list[str] | None = None,
    num_tasks: int | None = None,
    task_seed: int | None = None,
) -> list[SuiteEntry]:
    """Resolve a suite against the env registry now.

    ``envs`` narrows the suite to some envs; ``num_tasks`` overrides the task count;
    ``task_seed`` the first reset seed (None: ``TASK_SEED_BASE``; e.g. ``seeds.RL_EVAL_FIRST``
    plays ``rl-train``'s evaluation tasks). Every env must offer every split the suite asks for.
    """
    suite = get_suite(suite) if isinstance(suite, str) else suite
    count = suite.num_tasks if num_tasks is None else num_tasks
    if count < 1:
        raise ValueError("num_tasks must be >= 1")
    if suite.env_names is None and not envs:
        splits_by_env = {listing.env_id: listing.splits for listing in _listings()}
        env_ids = list(splits_by_env)
    else:
        env_ids = [resolve_env_id(name) for name in (suite.env_names or envs)]
        if envs:
            keep = {resolve_env_id(name) for name in envs}
            env_ids = [env_id for env_id in env_ids if env_id in keep]
            if not env_ids:
                raise ValueError(f"none of {envs} is in suite {suite.name!r}")
        splits_by_env = {env_id: env_splits(env_id) for env_id in env_ids}
    entries = []
    for env_id in env_ids:
        available = {normalize_split(split) for split in splits_by_env[env_id]}
        for split in suite.splits:
            if split not in available:
                raise ValueError(f"{env_id} has no {split!r} split (it has {sorted(available)})")
            entries.append(SuiteEntry(env_id, split, count, TASK_SEED_BASE if task_seed is None else task_seed))
    return entries


def _listings():
    """``list_envs()``, but an env that cannot load is named in the error."""
    try:
        return list_envs()
    except Exception:
        for env_id in sorted(gym.registry):
            if env_id.startswith("regym/"):
                env_splits(env_id)
        raise
