"""gymnasium space helpers for per-env observation groups."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces


def box(shape: tuple[int, ...], low: float = -np.inf, high: float = np.inf,
        dtype=np.float32) -> spaces.Box:
    """A per-env Box of ``shape`` (no batch dimension)."""
    return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)


def action_box(act_dim: int) -> spaces.Box:
    """The per-env action space shared by every rlkd task: ``[-1, 1]^act_dim`` float32."""
    return spaces.Box(low=-1.0, high=1.0, shape=(act_dim,), dtype=np.float32)
