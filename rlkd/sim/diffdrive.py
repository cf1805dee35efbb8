"""Differential-drive (unicycle) kinematics on batched tensors.

All tensors are ``(N,)`` unless noted; world frame, metres, radians, seconds.
"""

from __future__ import annotations

import math

import torch


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    """Wrap angles to ``[-pi, pi)``."""
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def unicycle_step(pos: torch.Tensor, heading: torch.Tensor, lin_vel: torch.Tensor,
                  ang_vel: torch.Tensor, lin_cmd: torch.Tensor, ang_cmd: torch.Tensor,
                  lin_acc: torch.Tensor, ang_acc: torch.Tensor, slip: torch.Tensor,
                  dt: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One control step of a velocity-commanded differential drive.

    The body velocities move toward the commands within the acceleration limits (m/s^2, rad/s^2);
    the wheels realise ``(1 - slip)`` of them; the pose integrates with the midpoint rule.

    Args:
        pos: ``(N, 2)`` position; heading: yaw; lin_vel / ang_vel: current body velocities;
        lin_cmd / ang_cmd: commanded velocities; lin_acc / ang_acc / slip: per-env params.

    Returns:
        ``(pos, heading, lin_vel, ang_vel)`` after ``dt`` seconds.
    """
    dv = (lin_cmd - lin_vel).clamp(-lin_acc * dt, lin_acc * dt)
    dw = (ang_cmd - ang_vel).clamp(-ang_acc * dt, ang_acc * dt)
    lin_vel = lin_vel + dv
    ang_vel = ang_vel + dw
    grip = 1.0 - slip
    yaw_step = ang_vel * grip * dt
    mid = heading + 0.5 * yaw_step
    step = lin_vel * grip * dt
    pos = pos + torch.stack([step * torch.cos(mid), step * torch.sin(mid)], dim=-1)
    return pos, wrap_angle(heading + yaw_step), lin_vel, ang_vel
