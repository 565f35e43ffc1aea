"""What cannot run stops with an error that names the fix; nothing quietly runs something else instead.

The fallbacks of rejuvenation's own entry points (``fallback_criterion``, recorded in
``rejuvenation.json``) are tested in test_rejuvenate_cli.py; ``rl-train --rejuvenate`` on an
env without an expert in test_rl_train.py.
"""

from __future__ import annotations

import gymnasium as gym
import pytest

from regym.agents.prompts import PromptFormat, build_messages, env_instructions, system_prompt
from regym.envs.base import TextEnv
from regym.models.testing import perturbed_copy, tiny_llama
from regym.rejuvenation import rejuvenate
from regym.trajectory import Trajectory


@pytest.mark.parametrize("criterion", ["attribution", "redo"])
def test_rejuvenate_without_calibration_names_the_fixes(criterion):
    base = tiny_llama(seed=0)
    with pytest.raises(ValueError, match=rf"'{criterion}' criterion needs calibration texts.*criterion='drift'"):
        rejuvenate(base, perturbed_copy(base, 0.1), criterion=criterion, calib=None)


def test_an_unregistered_env_id_has_no_prompt_to_guess():
    """A ``regym/...`` id nobody registered (a typo, an env renamed since the log) is an error, not generic text."""
    with pytest.raises(ValueError, match=r"no env is registered as 'regym/TextWrold-v0'.*fix the id, or register"):
        build_messages(Trajectory("regym/TextWrold-v0", None, "", observation="You are in a room."))
    # An env built from its class, never registered, is named by its class: it has only the generic text.
    assert env_instructions("CountingGame") == TextEnv.instructions


def test_a_registered_env_whose_class_does_not_import_is_an_error():
    env_id = "regym-test/Unimportable-v0"
    gym.register(id=env_id, entry_point="regym_no_such_module.games:Game")
    try:
        with pytest.raises(ImportError, match=rf"env '{env_id}' is registered but its class does not import.*"
                                              r"regym_no_such_module"):
            system_prompt(env_id, PromptFormat())
    finally:
        del gym.registry[env_id]
