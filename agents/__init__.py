"""Agents (installed as ``rlkd.agents``): one module per method, each registering itself.

``ppo`` (PPO), ``ppo-rnd`` (PPO + Random Network Distillation), ``ppo-rdd`` (PPO + Random
Distribution Distillation), ``aacd`` (asymmetric actor-critic distillation, TacSL),
``vision-distill`` (DAgger from experts to a camera student, then PPO fine-tuning; PhysHMR).
:data:`AGENTS` maps every registered name to its
:class:`~rlkd.agents.registry.AgentSpec`; :func:`register_agent` adds one (see
:mod:`rlkd.agents.registry` for the algorithm contract).
"""

from rlkd.agents.registry import AGENTS, Algorithm, AgentSpec, get_agent, register_agent, \
    unregister_agent

# Built-in agents register themselves on import (order = `rlkd list agents` order).
from rlkd.agents import ppo as _ppo  # noqa: E402,F401
from rlkd.agents import rnd as _rnd  # noqa: E402,F401
from rlkd.agents import rdd as _rdd  # noqa: E402,F401
from rlkd.agents import aacd as _aacd  # noqa: E402,F401
from rlkd.agents import vision_distill as _vision_distill  # noqa: E402,F401

__all__ = ["AGENTS", "Algorithm", "AgentSpec", "get_agent", "register_agent", "unregister_agent"]
