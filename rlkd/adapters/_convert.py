"""Small torch -> numpy helpers shared by the numpy adapters (gymnasium, SB3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from gymnasium import spaces


def to_numpy(t: torch.Tensor, dtype=None) -> np.ndarray:
    """``t`` as a numpy array (one device->host copy when ``t`` is not on the CPU).

    The array may share memory with ``t``; callers pass tensors the env handed out (the env
    clones its observations), so nothing mutates them afterwards.
    """
    a = t.detach().cpu().numpy()
    return a if dtype is None or a.dtype == dtype else a.astype(dtype)


def resolve_groups(env, obs_groups: str | Sequence[str] | None) -> tuple[list[str], bool]:
    """Normalise an ``obs_groups`` argument to ``(group names, as_dict)``.

    ``None`` -> ``["policy"]`` as a plain Box; a string -> that group as a plain Box; a list ->
    those groups as a ``spaces.Dict``. Unknown groups raise ``KeyError`` naming the valid ones.
    """
    if obs_groups is None:
        groups, as_dict = ["policy"], False
    elif isinstance(obs_groups, str):
        groups, as_dict = [obs_groups], False
    else:
        groups, as_dict = list(obs_groups), True
        if not groups:
            raise ValueError("obs_groups must name at least one observation group")
    for g in groups:
        if g not in env.observation_spaces:
            raise KeyError(f"unknown observation group {g!r}; the env has "
                           f"{sorted(env.observation_spaces)}")
    return groups, as_dict


def single_space(env, groups: list[str], as_dict: bool) -> spaces.Space:
    """Per-env observation space: the group's Box, or a ``spaces.Dict`` of Boxes."""
    if as_dict:
        return spaces.Dict({g: env.observation_spaces[g] for g in groups})
    return env.observation_spaces[groups[0]]


def actions_to_torch(actions, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """numpy/list/tensor actions of exactly ``shape`` -> float32 tensor on ``device``.

    Raises ``ValueError`` naming the expected shape (the BatchedEnv then checks NaN/Inf).
    """
    if isinstance(actions, torch.Tensor):
        t = actions.to(device=device, dtype=torch.float32)
    else:
        a = np.asarray(actions)
        if a.dtype.kind not in "fiu":
            raise ValueError(f"actions must be numeric, got dtype {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"actions have shape {tuple(t.shape)}, expected {tuple(shape)}")
    return t
