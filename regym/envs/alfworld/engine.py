"""ALFWorld's text engine, with compiled games cached.

ALFWorld plays its games on TextWorld's ``PddlEnv`` wrapped in ALFWorld's
``AlfredDemangler`` (ids such as ``mug_bar__plus_00_dot_32...`` become "mug 1") and
``AlfredInfos``. ``make_engine(cached=False)`` builds exactly that stack;
``make_engine()`` swaps in ``CachedPddlEnv``, which plays the same rules but translates a
game's PDDL with Fast Downward once per process instead of on every reset.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

WELCOME_BANNER = "-= Welcome to TextWorld, ALFRED! =-"
COMPILED_GAMES_IN_MEMORY = 64


@contextmanager
def keep_argv() -> Iterator[None]:
    """Fast Downward's translator overwrites ``sys.argv``; give the host its own back."""
    saved = list(sys.argv)
    try:
        yield
    finally:
        sys.argv[:] = saved


def room_observation(feedback: str) -> str:
    """ALFWorld's opening text without TextWorld's welcome banner."""
    if feedback.startswith(WELCOME_BANNER):
        return feedback[len(WELCOME_BANNER):].lstrip("\n")
    return feedback


class CompiledGame:
    """A game's parsed logic and Fast Downward translation, made once and reused by every reset.

    TextWorld's ``PddlEnv`` re-translates the PDDL problem (two ``pddl2sas`` runs, about a
    second for an ALFWorld room) on every ``reset``; here the translated initial state is
    kept as a template and each episode plays on a copy.
    """

    def __init__(self, downward_lib, data: dict[str, Any]):
        from textworld.envs.pddl import logic as pddl_logic

        with keep_argv():
            self.logic = pddl_logic.GameLogic(domain=data["pddl_domain"], grammar=data["grammar"])
            self.template = pddl_logic.PddlState(downward_lib, data["pddl_problem"], self.logic)
        self._sas = self.template.sas.encode("utf-8")
        self._sas_replan = self.template.sas_replan.encode("utf-8")
        self.initial_game_state = None  # the engine's first GameState, once derived
        self.initial_operators = None

    def fresh_state(self, downward_lib):
        """A copy of the initial state, with Fast Downward's search state reset to match."""
        template = self.template
        state = object.__new__(type(template))
        state.__dict__.update(template.__dict__)
        state.downward_lib = downward_lib
        state._facts = defaultdict(set, {name: set(facts) for name, facts in template._facts.items()})
        state._vars_by_name = dict(template._vars_by_name)
        state._vars_by_type = defaultdict(set, {name: set(v) for name, v in template._vars_by_type.items()})
        state._var_counts = Counter(template._var_counts)
        downward_lib.load_sas(self._sas)
        downward_lib.load_sas_replan(self._sas_replan)
        return state


_COMPILED: OrderedDict[str, CompiledGame] = OrderedDict()


@cache
def cached_pddl_env_class():
    from textworld.core import GameState
    from textworld.envs import PddlEnv

    class CachedPddlEnv(PddlEnv):
        """TextWorld's ``PddlEnv`` with compiled games cached in memory (same text, same rules)."""

        def load(self, filename: str) -> None:
            text = Path(filename).read_text()
            key = hashlib.sha1(text.encode("utf-8")).hexdigest()
            data = json.loads(text)
            self._game_file = filename
            self._game_data = data
            self.walkthrough = data.get("walkthrough")
            compiled = _COMPILED.get(key)
            if compiled is None:
                compiled = CompiledGame(self.downward_lib, data)
                _COMPILED[key] = compiled
                while len(_COMPILED) > COMPILED_GAMES_IN_MEMORY:
                    _COMPILED.popitem(last=False)
            _COMPILED.move_to_end(key)
            self._game = compiled
            self._logic = compiled.logic
            self._pddl_state = compiled.fresh_state(self.downward_lib)
            self._entity_infos = self._get_entity_infos()

        def reset(self):
            # PddlEnv.reset, with the translated state copied instead of re-translated and
            # the opening GameState (text, admissible commands) derived once per game.
            game = self._game
            self._pddl_state = game.fresh_state(self.downward_lib)
            self.prev_state = None
            self._last_action = None
            self._moves = 0
            if game.initial_game_state is not None:
                self.state = GameState(game.initial_game_state)
                self._pddl_state._operators = game.initial_operators
                return self.state
            self.state = GameState()
            context = {
                "state": self._pddl_state,
                "facts": list(self._pddl_state.facts),
                "variables": {},
                "mapping": {},
                "entity_infos": self._entity_infos,
            }
            self.state.feedback = self._logic.grammar.derive("#intro#", context)
            self.state.raw = self.state.feedback
            self._gather_infos()
            game.initial_game_state = GameState(self.state)
            game.initial_operators = self._pddl_state._operators
            return self.state

    return CachedPddlEnv


def make_engine(cached: bool = True, policy_commands: bool = False):
    """ALFWorld's engine stack: ``AlfredInfos(AlfredDemangler(PddlEnv))`` with ALFWorld's infos.

    ``request_infos`` are those ``AlfredTWEnv.init_env`` asks for (won, admissible
    commands, the game file); ``policy_commands`` adds a Fast Downward plan on every step.
    """
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
    from textworld.envs import PddlEnv

    infos = textworld.EnvInfos(
        won=True, admissible_commands=True, policy_commands=policy_commands, extras=["gamefile"]
    )
    pddl_env = cached_pddl_env_class()(infos) if cached else PddlEnv(infos)
    return AlfredInfos(AlfredDemangler(pddl_env, shuffle=False))
