"""Evaluation suites: named sets of (env, split, tasks) resolved from the env registry.

Where a split is a finite list of tasks (``TextEnv.task_ids``: ALFWorld's downloaded games,
WebShop's goals), a suite plays each task once, in the list's order, as published benchmarks
count them: ``reset(options={"task_index": i})`` for i < the split's size (or the first
``num_tasks`` when asked). Elsewhere (generated tasks) a task is ``(env_id, split, seed)``:
``reset(seed=seed)`` of an env made with that split. Task seeds are fixed
(``TASK_SEED_BASE + i``), so two runs of a suite score the same tasks. Suites are built from
``regym.envs.list_envs()`` at run time: registering an env is the only step to put it on
every suite, and an env that cannot load fails loudly with its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from regym import seeds
from regym.envs import TextEnv, declared_splits, env_class, list_envs, normalize_split, resolve_env_id

ID, OOD = "in_distribution", "out_of_distribution"
NEAR = "near_out_of_distribution"
SPLIT_SHORT = {ID: "id", NEAR: "near", OOD: "ood"}
"""Short names of the usual splits in columns and suite names; other splits (``smollm2_id``) keep their own."""

TASK_SEED_BASE = seeds.EVAL_SUITE_FIRST
"""Eval tasks use reset seeds from here on, far from the small seeds training usually draws."""

DEFAULT_NUM_TASKS = 8
"""Tasks per (env, split) where the split is generated; a finite split plays all its tasks."""


@dataclass(frozen=True)
class Suite:
    """A named collection: which splits of which envs, how many tasks each."""

    name: str
    description: str
    splits: tuple[str, ...]
    env_names: tuple[str, ...] | None = None
    """Envs to include (ids or short names); None means every registered env."""
    num_tasks: int | None = None
    """Tasks per (env, split); None: every task of a finite split, ``DEFAULT_NUM_TASKS`` seeded ones elsewhere."""
    skip_missing: bool = False
    """Leave out the splits an env does not declare (Math has no near-OOD without a level set) instead of
    refusing the suite."""


@dataclass(frozen=True)
class SuiteEntry:
    """One (env, split) of a suite with its fixed task seeds."""

    env_id: str
    split: str
    num_tasks: int
    seed: int = TASK_SEED_BASE
    split_size: int | None = None
    """Tasks in the split when it is a finite list: task i is ``reset(options={"task_index": i})``, i < num_tasks,
    each played once; None: task i is ``reset(seed=seed + i)``."""

    @property
    def task_seeds(self) -> list[int]:
        return [self.seed + index for index in range(self.num_tasks)]

    @property
    def task_indices(self) -> list[int] | None:
        """The indices into a finite split's task list this entry plays (None: seeded tasks)."""
        return None if self.split_size is None else list(range(self.num_tasks))

    @property
    def column(self) -> str:
        """The leaderboard column name, e.g. ``textworld/ood``."""
        return column_name(self.env_id, self.split)


def column_name(env_id: str, split: str) -> str:
    short = env_id.split("/", 1)[-1].rsplit("-v", 1)[0].lower()
    return f"{short}/{SPLIT_SHORT.get(split, split)}"


SUITES = {
    "agentic-id": Suite("agentic-id", "the in-distribution split of every registered env", (ID,)),
    "agentic-ood": Suite("agentic-ood", "the far out-of-distribution split of every registered env, under the "
                         "family's own name where it has one (ALFWorld: held_out_rooms, 28 generated rooms)", (OOD,)),
    "all": Suite("all", "the in-distribution and far out-of-distribution splits of every registered env "
                 "(ALFWorld's far-OOD: held_out_rooms)", (ID, OOD)),
    "smollm2-math": Suite("smollm2-math", "Math's SmolLM2 suite, single-turn boxed answers: ID levels, harder "
                          "settings of them (near) and other families (far); docs/math.md",
                          ("smollm2_id", "smollm2_near", "smollm2_far"), env_names=("regym/Math-v0",), num_tasks=64),
    "baselines": Suite("baselines", "ID, near-OOD where the family has it, and far-OOD of every registered env: "
                       "where the headroom is (docs/baselines.md, benchmarks/baselines.py)", (ID, NEAR, OOD),
                       skip_missing=True),
}


def family_split(env_id: str, split: str) -> str:
    """The env family's own name for a usual split (``TextEnv.split_roles``: ALFWorld's near-OOD is
    ``valid_unseen``, its far-OOD ``held_out_rooms``), so a suite's column says what it plays."""
    return dict(getattr(env_class(env_id), "split_roles", None) or {}).get(split, split)


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


def split_size(env_id: str, split: str, env_kwargs: dict[str, Any] | None = None) -> int | None:
    """How many tasks the split holds when it is a finite list (``TextEnv.task_ids`` of an env made with
    ``env_kwargs``, e.g. ALFWorld's ``data_path``); None where seeded resets draw generated tasks. Only a
    family that overrides ``task_ids`` is built to ask."""
    registered = env_class(env_id)
    if not (isinstance(registered, type) and issubclass(registered, TextEnv)) or registered.task_ids is TextEnv.task_ids:
        return None
    env = registered(split=split, **(env_kwargs or {}))
    try:
        ids = env.task_ids
    finally:
        env.close()
    return None if ids is None else len(ids)


def resolve_task_lists(entries: list[SuiteEntry], num_tasks: int | None,
                       env_kwargs: dict[str, Any] | None = None) -> list[SuiteEntry]:
    """``entries`` with each finite split's size and count: all its tasks once unless ``num_tasks`` asks
    for its first ones (more than it holds is an error: a task is not played twice as another task).
    Seeded entries keep ``num_tasks`` (``DEFAULT_NUM_TASKS`` when None)."""
    if num_tasks is not None and num_tasks < 1:
        raise ValueError("num_tasks must be >= 1")
    resolved = []
    for entry in entries:
        size = split_size(entry.env_id, entry.split, env_kwargs)
        if size is None:
            resolved.append(SuiteEntry(entry.env_id, entry.split, num_tasks or DEFAULT_NUM_TASKS, entry.seed))
            continue
        if num_tasks is not None and num_tasks > size:
            raise ValueError(f"{entry.env_id} split {entry.split!r} holds {size} tasks, fewer than num_tasks="
                             f"{num_tasks}: ask for at most {size} (k samples each for repeats)")
        resolved.append(SuiteEntry(entry.env_id, entry.split, num_tasks or size, entry.seed, split_size=size))
    return resolved


def suite_entries(
    suite: Suite | str,
    *,
    envs: list[str] | None = None,
    num_tasks: int | None = None,
    task_seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> list[SuiteEntry]:
    """Resolve a suite against the env registry now.

    ``envs`` narrows the suite to some envs; ``num_tasks`` overrides the task count (of a finite split:
    its first ``num_tasks`` tasks); ``task_seed`` the first reset seed (None: ``TASK_SEED_BASE``; e.g.
    ``seeds.RL_EVAL_FIRST`` plays ``rl-train``'s evaluation tasks); ``env_kwargs`` the options the envs
    will be made with, which can decide a split's tasks (ALFWorld's ``data_path``). Every env must
    offer every split the suite asks for.
    """
    suite = get_suite(suite) if isinstance(suite, str) else suite
    count = suite.num_tasks if num_tasks is None else num_tasks
    if count is not None and count < 1:
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
                if suite.skip_missing:
                    continue
                raise ValueError(f"{env_id} has no {split!r} split (it has {sorted(available)})")
            entries.append(SuiteEntry(env_id, family_split(env_id, split), count or DEFAULT_NUM_TASKS,
                                      TASK_SEED_BASE if task_seed is None else task_seed))
    return resolve_task_lists(entries, count, env_kwargs)


def _listings():
    """``list_envs()``, but an env that cannot load is named in the error."""
    try:
        return list_envs()
    except Exception:
        for env_id in sorted(gym.registry):
            if env_id.startswith("regym/"):
                env_splits(env_id)
        raise
