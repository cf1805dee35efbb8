"""A reactive goal-seeking controller for the AGV (stand-in policy for ``rlkd play`` and a
baseline): heads for the goal while lidar returns closer than ``clearance`` push it away."""

from __future__ import annotations

import torch


class GoalSeekingController:
    """Potential-field navigation from the ``policy`` observation group.

    Args:
        env: the AGV env (for ray angles and the observation scales).
        clearance: metres at which lidar returns start repelling.
    """

    def __init__(self, env, clearance: float = 1.0):
        self.cos = torch.cos(env.ray_offsets)
        self.sin = torch.sin(env.ray_offsets)
        self.range = env.cfg.lidar_range
        self.clearance = clearance
        self.rays = env.cfg.lidar_rays

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(N, 2)`` actions in [-1, 1] from ``obs["policy"]``."""
        p = obs["policy"]
        goal = p[:, 0:2] / p[:, 2:3].clamp_min(1e-6)  # unit vector to goal, robot frame
        ranges = p[:, 8:8 + self.rays] * self.range
        push = ((self.clearance - ranges) / self.clearance).clamp_min(0.0) ** 2  # (N, R)
        desired = goal - 1.5 * torch.stack([(push * self.cos).sum(-1), (push * self.sin).sum(-1)], -1)
        err = torch.atan2(desired[:, 1], desired[:, 0])
        front = ranges[:, (self.cos > 0.9)].amin(dim=-1) if bool((self.cos > 0.9).any()) else ranges.amin(-1)
        lin = torch.cos(err).clamp_min(0.0) * (front / 1.5).clamp(0.0, 1.0)
        ang = (2.0 * err).clamp(-1.0, 1.0)
        return torch.stack([lin, ang], dim=-1)
