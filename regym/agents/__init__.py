"""Policies that act in regym envs: scripted baselines and LLM policies."""

from regym.agents.base import Agent
from regym.agents.expert import ExpertAgent
from regym.agents.random_agent import RandomAgent

__all__ = ["Agent", "ExpertAgent", "RandomAgent"]
