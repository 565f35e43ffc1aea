"""TextWorld: procedurally generated text adventures on the real ``textworld`` engine.

See ``docs/textworld.md``. ``TextWorldEnv`` (``env``) is registered as ``regym/TextWorld-v0``;
``games`` generates, compiles and caches the game behind each task id.
"""

from regym.envs.textworld.env import REQUEST_INFOS, TextWorldEnv, clean_feedback
from regym.envs.textworld.games import (
    SPLIT_SPECS,
    GameSettings,
    WorldSpec,
    compile_game,
    game_settings,
)

__all__ = [
    "REQUEST_INFOS",
    "SPLIT_SPECS",
    "GameSettings",
    "TextWorldEnv",
    "WorldSpec",
    "clean_feedback",
    "compile_game",
    "game_settings",
]
