"""The one base class of regym's text environments.

``TextEnv`` owns what every multi-turn text game shares: seeding and task choice,
action parsing, invalid-action penalties, turn counting and ``max_turns``
truncation, and the standard ``info`` keys. An env family implements three hooks:

* ``_task_id_for(rng)``: which task a seeded reset plays when none is named;
* ``_begin(task_id)``: start that task, returning the opening ``Outcome``;
* ``_act(action)``: play one parsed action, returning its ``Outcome``.

and may override ``parse`` (how a reply becomes an action) and ``_refuse`` (what a reply
with no action in it gets back).

A reply longer than ``MAX_REPLY_CHARS`` is an invalid action, refused before any
parsing, so no reply can make a step slow. A reset with bad arguments raises before
it changes anything; a reset whose hook fails leaves no episode to step, and the
next reset starts cleanly.

Standard ``info`` keys (present on every reset and step):
``task_id``, ``split``, ``turn``, ``won``, ``success``, ``invalid_action``,
``admissible_actions`` (list or None), ``expert_action`` (the next action an expert
would take from this state, or None when the env has no expert), ``split_size`` (the number of
tasks in the split when it is a finite list, ``task_ids``; None where seeded resets draw from a
generator).

A finite split is played by index, as benchmarks count it (each task once, in a fixed order):
``reset(options={"task_index": i})`` plays ``task_ids[i]``.

Every observation passes through ``printable_text`` once, here: control characters other
than newline and tab (terminal escape sequences, carriage returns, NUL, C1 controls) are
removed, whatever the family or its engine, tool output or web page put in them.
"""

from __future__ import annotations

import numbers
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from regym.envs.actions import ParsedAction, parse_action, reply_length_error
from regym.envs.options import ClientOption

MAX_TEXT_CHARS = 200_000
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, screen clears (ECMA-48)
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"  # every other C0/C1 control but tab and newline, and DEL
)


def printable_text(text: str) -> str:
    """``text`` without control characters other than newline and tab; a terminal escape
    sequence goes whole, so no ``[31m`` is left behind. A policy's prompt, a log or a
    terminal showing an observation sees only text."""
    return _CONTROL.sub("", text)

SPLIT_ALIASES = {
    "in_distribution": "in_distribution",
    "id": "in_distribution",
    "train": "in_distribution",
    "seen": "in_distribution",
    "near_out_of_distribution": "near_out_of_distribution",  # harder settings of the ID kinds (per family)
    "near_ood": "near_out_of_distribution",
    "near": "near_out_of_distribution",
    "out_of_distribution": "out_of_distribution",
    "ood": "out_of_distribution",
    "unseen": "out_of_distribution",
    "valid_unseen": "valid_unseen",  # ALFWorld's own valid_unseen rooms (regym/ALFWorld-v0 only)
    "held_out_rooms": "held_out_rooms",  # ALFWorld's 28 generated held-out rooms (regym/ALFWorld-v0 only)
    "smollm2_id": "smollm2_id",  # the SmolLM2 math suite's levels (regym/Math-v0 only)
    "smollm2_near": "smollm2_near",
    "smollm2_far": "smollm2_far",
    "smollm2_sft_id": "smollm2_sft_id",  # the same, calibrated after SFT (the lab's second exploration)
    "smollm2_sft_near": "smollm2_sft_near",
    "smollm2_sft_far": "smollm2_sft_far",
}


def normalize_split(split: str) -> str:
    """Map a split name or alias ("id", "ood", "seen", ...) to its canonical name."""
    try:
        return SPLIT_ALIASES[split.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLIT_ALIASES)}") from None


class FreeText(gym.spaces.Text):
    """A text space that holds any string up to ``max_length`` characters.

    Gymnasium's ``Text`` only admits a fixed charset; game text and policy output use
    all of unicode. Sampling still draws from printable ASCII.
    """

    def __init__(self, max_length: int = MAX_TEXT_CHARS, seed: int | None = None):
        super().__init__(max_length=max_length, min_length=0, charset=string.printable, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"FreeText({self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FreeText) and other.max_length == self.max_length


@dataclass
class Outcome:
    """What an env family returns from ``_begin`` and ``_act``."""

    observation: str
    reward: float = 0.0
    terminated: bool = False
    won: bool = False
    valid: bool = True
    info: dict[str, Any] = field(default_factory=dict)


def _checked_seed(seed: object) -> int | None:
    """``seed`` as Gymnasium takes it (None or an int >= 0), or a TypeError/ValueError naming it."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative int or None, not {type(seed).__name__} {seed!r:.80}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, not {seed}")
    return int(seed)


class TextEnv(gym.Env[str, str]):
    """Base class: a multi-turn text game whose actions are a policy's raw text."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"]}
    splits: ClassVar[tuple[str, ...]] = ("in_distribution", "out_of_distribution")
    invalid_observation: ClassVar[str] = "Nothing happens."
    instructions: ClassVar[str] = (
        "You are an agent in a text-based environment. Read each observation and reply with one action."
    )
    """What a policy is told about this env family (the system prompt of ``regym.agents.prompts``)."""
    client_options: ClassVar[dict[str, ClientOption]] = {
        "max_turns": ClientOption(int, 1, 1000),
        "invalid_action_penalty": ClientOption(float, 0.0, 100.0),
    }
    """Constructor options a client of an env server may set (``regym.envs.options``); a family adds its own."""
    lazy_imports: ClassVar[tuple[str, ...]] = ()
    """Modules the family imports only when first used; an env server imports them once in the fork server
    of its env workers (``regym.envs.service.worker``), so no session pays for them."""
    difficulty_levels: ClassVar[dict[str, str]] = {}
    """The family's named difficulty levels, each with what it asks (``regym envs`` lists them); none: {}."""
    level_splits: ClassVar[dict[str, tuple[str, ...]]] = {}
    """The splits made of levels, each with its levels in ``difficulty_levels``."""
    split_roles: ClassVar[dict[str, str]] = {}
    """The family's own split that plays a usual role (``near_out_of_distribution``, ``out_of_distribution``)
    where the family names it otherwise (ALFWorld's near-OOD is ``valid_unseen``); eval suites play it."""

    @classmethod
    def splits_with(cls, **options: Any) -> tuple[str, ...]:
        """The splits an env made with these constructor options can play (all of ``splits`` unless a family
        defines some splits only under an option, as Math's near-OOD under ``level_set``)."""
        return cls.splits

    def __init__(
        self,
        split: str = "in_distribution",
        max_turns: int = 50,
        invalid_action_penalty: float = 0.0,
        render_mode: str | None = None,
    ):
        self.split = normalize_split(split)
        if self.split not in self.splits:
            raise ValueError(f"{type(self).__name__} has splits {self.splits}, not {split!r}")
        if max_turns < 1:
            raise ValueError("max_turns must be >= 1")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.max_turns = max_turns
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.render_mode = render_mode
        self.observation_space = FreeText()
        self.action_space = FreeText()
        self.task_id: str | None = None
        self.turn = 0
        self._last_observation = ""
        self._last_info: dict[str, Any] = {}
        self._split_size: int | None = None
        self._finished = True

    # --- hooks for env families -------------------------------------------------
    def _task_id_for(self, rng: np.random.Generator) -> str:
        raise NotImplementedError

    def _begin(self, task_id: str) -> Outcome:
        raise NotImplementedError

    def _act(self, action: str) -> Outcome:
        raise NotImplementedError

    @property
    def task_ids(self) -> Sequence[str] | None:
        """The split's tasks in their fixed order when the split is a finite list (a data set's games, a
        fixed set of goals); None where a seeded reset draws from a generator. A family with a finite split
        overrides this; evaluation suites then play each task once, in this order."""
        return None

    def task_at(self, index: object) -> str:
        """``task_ids[index]``, or an error naming why there is no such task."""
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"task_index must be an int, not {type(index).__name__} {index!r:.80}")
        ids = self.task_ids
        if ids is None:
            raise ValueError(f"{type(self).__name__}'s split {self.split!r} is not a finite list of tasks: "
                             "reset with a seed or a task_id instead of a task_index")
        if not 0 <= index < len(ids):
            raise ValueError(f"task_index {index} is outside {type(self).__name__}'s split {self.split!r} "
                             f"(tasks 0 to {len(ids) - 1})")
        return ids[int(index)]

    def parse(self, text: str) -> ParsedAction:
        """Turn a policy's raw text into the action the game receives (override for code/tool envs)."""
        return parse_action(text)

    def _refuse(self, reason: str) -> Outcome:
        """The outcome of a reply with no action in it (unparseable, or over ``MAX_REPLY_CHARS`` and
        left unread); the game never sees it. Override to answer in the family's own words."""
        return Outcome(f"{self.invalid_observation} ({reason})", valid=False, info=self.unchanged_info())

    # --- Gymnasium API ----------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None):
        seed = _checked_seed(seed)
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(f"options must be a dict such as {{'task_id': ...}} or None, "
                            f"not {type(options).__name__} {options!r:.80}")
        options = options or {}
        task_id, task_index = options.get("task_id"), options.get("task_index")
        if task_id is not None and task_index is not None:
            raise ValueError("reset takes a task_id or a task_index, not both")
        if task_index is not None:
            task_id = self.task_at(task_index)
        super().reset(seed=seed)
        self._finished = True  # until the new task has begun there is no episode to step
        ids = self.task_ids
        self._split_size = None if ids is None else len(ids)
        self.task_id = str(task_id) if task_id is not None else self._task_id_for(self.np_random)
        self.turn = 0
        outcome = self._begin(self.task_id)
        self._finished = False
        return self._emit(outcome, invalid=False)[0], self._last_info

    def step(self, action: str):
        if self._finished:
            raise RuntimeError("no episode is running: call reset() before step()")
        self.turn += 1
        too_long = reply_length_error(action)
        parsed = ParsedAction(None, error=too_long) if too_long is not None else self.parse(action)
        outcome = self._act(parsed.action) if parsed.valid else self._refuse(parsed.error)
        invalid = not outcome.valid
        if invalid:
            outcome.reward -= self.invalid_action_penalty
        observation, reward, terminated = self._emit(outcome, invalid=invalid)
        truncated = not terminated and self.turn >= self.max_turns
        self._finished = terminated or truncated
        return observation, reward, terminated, truncated, self._last_info

    def render(self) -> str | None:
        if self.render_mode == "human":
            print(self._last_observation)
            return None
        return self._last_observation

    # --- bookkeeping --------------------------------------------------------------
    _PER_STEP_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"task_id", "split", "turn", "won", "success", "invalid_action", "split_size"}
    )

    def unchanged_info(self) -> dict[str, Any]:
        """The env-specific info of the current state, for a move that changed nothing."""
        return {key: value for key, value in self._last_info.items() if key not in self._PER_STEP_KEYS}

    def _emit(self, outcome: Outcome, invalid: bool) -> tuple[str, float, bool]:
        info: dict[str, Any] = {
            "task_id": self.task_id,
            "split": self.split,
            "turn": self.turn,
            "won": bool(outcome.won),
            "success": bool(outcome.won),
            "invalid_action": invalid,
            "admissible_actions": None,
            "expert_action": None,
            "split_size": self._split_size,
        }
        info.update(outcome.info)
        observation = printable_text(outcome.observation)
        self._last_info = info
        self._last_observation = observation
        return observation, float(outcome.reward), bool(outcome.terminated)
