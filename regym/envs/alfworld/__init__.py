"""ALFWorld: household text games on ALFWorld's own engine (TextWorld's PDDL env).

See ``docs/alfworld.md``. ``ALFWorldEnv`` (``env``) is registered as ``regym/ALFWorld-v0``;
``engine`` builds ALFWorld's engine stack with compiled games cached, ``tasks`` loads the
downloaded task set or generates one, ``levels`` names its room sets, ``expert`` plans from the
engine's current facts (``shortest`` checks it by breadth-first search), ``progress`` is the dense
reward's milestones, and ``search_expert`` runs ALFWorld's own handcoded expert, which searches
receptacles.
"""

from regym.envs.alfworld.engine import make_engine
from regym.envs.alfworld.env import ALFWorldEnv
from regym.envs.alfworld.expert import expert_plan
from regym.envs.alfworld.search_expert import SearchExpert
from regym.envs.alfworld.tasks import export_real_layout, generate_task, generated_task_id

__all__ = [
    "ALFWorldEnv",
    "SearchExpert",
    "expert_plan",
    "export_real_layout",
    "generate_task",
    "generated_task_id",
    "make_engine",
]
