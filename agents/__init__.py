"""Agents (installed as ``rlkd.agents``): one module per method.

``ppo`` (PPO), ``rnd`` (Random Network Distillation), ``rdd`` (Random Distribution
Distillation). :func:`build_agent` turns an agent name of ``rlkd train --agent`` into a PPO with
the right intrinsic module.
"""

from __future__ import annotations

from typing import Any

AGENTS = ("ppo", "ppo-rnd", "ppo-rdd")


def intrinsic_config(agent: str, overrides: dict[str, Any] | None = None):
    """The intrinsic module's config of ``agent`` (``None`` for plain PPO), with overrides."""
    from rlkd.agents.rdd import RDDConfig
    from rlkd.agents.rnd import RNDConfig
    from rlkd.core.config import apply_overrides

    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; choose from {list(AGENTS)}")
    if agent == "ppo":
        if overrides:
            raise KeyError(f"agent 'ppo' has no intrinsic module; cannot set {sorted(overrides)}")
        return None
    cfg = RNDConfig() if agent == "ppo-rnd" else RDDConfig()
    return apply_overrides(cfg, overrides or {}, owner=f"{agent} intrinsic config")


def build_agent(agent: str, env, ppo_cfg, intr_cfg, seed: int = 0):
    """A :class:`~rlkd.agents.ppo.PPO` on ``env`` with RND / RDD attached as ``agent`` says."""
    from rlkd.agents.ppo import PPO
    from rlkd.agents.rdd import RDD
    from rlkd.agents.rnd import RND

    intrinsic = None
    if intr_cfg is not None:
        if intr_cfg.obs_group not in env.observation_spaces:
            intr_cfg.obs_group = "policy"
        dim = env.observation_spaces[intr_cfg.obs_group].shape[0]
        cls = RDD if agent == "ppo-rdd" else RND
        intrinsic = cls(dim, env.num_envs, intr_cfg, device=env.device, seed=seed)
    return PPO(env, ppo_cfg, intrinsic=intrinsic, seed=seed)
