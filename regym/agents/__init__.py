"""Policies that act in regym envs: scripted baselines and LLM policies.

The LLM policies load lazily (``HFPolicy`` needs torch, ``VLLMPolicy`` vLLM,
``OpenAIPolicy`` the openai client), so ``import regym`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from regym.agents.base import Agent
from regym.agents.expert import ExpertAgent
from regym.agents.llm import Generation, LLMAgent, Policy, TokenPolicy
from regym.agents.random_agent import RandomAgent

_LAZY = {
    "HFPolicy": "regym.agents.hf_policy",
    "OpenAIPolicy": "regym.agents.openai_policy",
    "VLLMPolicy": "regym.agents.vllm_policy",
}

__all__ = ["Agent", "ExpertAgent", "Generation", "LLMAgent", "Policy", "RandomAgent", "TokenPolicy", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'regym.agents' has no attribute {name!r}")
