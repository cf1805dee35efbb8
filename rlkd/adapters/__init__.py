"""Adapters that expose a :class:`~rlkd.core.env.BatchedEnv` to other RL libraries.

* :class:`GymnasiumEnv` / :class:`GymnasiumVectorEnv` — gymnasium 1.x single and vector envs
  (also reached through ``gymnasium.make("rlkd/<id>")`` / ``gymnasium.make_vec``);
* :class:`SB3VecEnv` — Stable-Baselines3 ``VecEnv``;
* :class:`RslRlVecEnv` — rsl_rl (rsl-rl-lib) ``VecEnv`` with TensorDict observations;
* :class:`IsaacGymVecTask` — the IsaacGymEnvs ``VecTask`` API shape (no Isaac Gym inside).

Imports are lazy so that using one adapter does not import the other libraries.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "GymnasiumEnv": "rlkd.adapters.gymnasium_env",
    "GymnasiumVectorEnv": "rlkd.adapters.gymnasium_env",
    "SB3VecEnv": "rlkd.adapters.sb3",
    "RslRlVecEnv": "rlkd.adapters.rsl_rl",
    "IsaacGymVecTask": "rlkd.adapters.isaacgym",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rlkd.adapters' has no attribute {name!r}")
