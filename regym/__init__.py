"""regym: agentic RL environments for LLM post-training, with plasticity rejuvenation built in."""

from regym.envs import list_envs, register_envs
from regym.rollout import rollout
from regym.trajectory import Trajectory, Turn, load_jsonl, save_jsonl

register_envs()

__all__ = ["Trajectory", "Turn", "list_envs", "load_jsonl", "register_envs", "rollout", "save_jsonl"]
__version__ = "0.1.0"
