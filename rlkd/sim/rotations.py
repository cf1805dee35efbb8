"""Batched rotation math in torch, shared by the tasks (humanoid poses, tactile poses, camera rays).

Conventions:

* quaternions are ``(w, x, y, z)`` (scalar first, MuJoCo's order), unit norm unless a function
  says otherwise, as torch tensors ``(..., 4)`` with any leading batch shape ``...``; every
  function broadcasts over those leading dimensions and keeps the input dtype and device;
* a quaternion ``q`` maps vectors of a body frame to the parent (world) frame:
  ``v_world = quat_rotate(q, v_body)``; ``quat_mul(a, b)`` applies ``b`` first, then ``a``;
* rotation matrices are ``(..., 3, 3)`` with the same meaning (``v_world = R @ v_body``);
* angles are radians; a rotation vector is ``axis * angle`` ``(..., 3)``;
* yaw (heading) is about the world z axis (z up), counter-clockwise seen from above.

Nothing here allocates per-element Python objects: all functions are a handful of tensor ops,
differentiable except at the documented singular points.
"""

from __future__ import annotations

import math

import torch


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` of ``(..., 4)`` quaternions (rotation b first, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack((aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw), -1)


def quat_conj(q: torch.Tensor) -> torch.Tensor:
    """Conjugate (= inverse for unit quaternions), ``(..., 4)``."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors ``v (..., 3)`` by unit quaternions ``q (..., 4)`` (broadcasting)."""
    w, xyz = q[..., :1], q[..., 1:]
    t = 2.0 * torch.linalg.cross(xyz, v)
    return v + w * t + torch.linalg.cross(xyz, t)


def quat_normalize(q: torch.Tensor) -> torch.Tensor:
    """``q (..., 4)`` scaled to unit norm (a zero quaternion stays zero instead of NaN)."""
    return q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def quat_from_axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation by ``angle (...)`` radians about unit ``axis (..., 3)`` -> ``(..., 4)``."""
    half = 0.5 * angle.unsqueeze(-1)
    return torch.cat((torch.cos(half), torch.sin(half) * axis), -1)


def quat_from_yaw(yaw: torch.Tensor) -> torch.Tensor:
    """Rotation by ``yaw (...)`` radians about the world z axis -> ``(..., 4)``."""
    half = 0.5 * yaw
    z = torch.zeros_like(half)
    return torch.stack((torch.cos(half), z, z, torch.sin(half)), -1)


def quat_from_rotvec(v: torch.Tensor) -> torch.Tensor:
    """Rotation vector (axis * angle, rad) ``(..., 3)`` -> quaternion ``(..., 4)``."""
    angle = v.norm(dim=-1, keepdim=True)
    half = 0.5 * angle
    # sin(x/2)/x -> 1/2 as x -> 0; the series keeps gradients and small angles exact.
    small = angle < 1e-6
    k = torch.where(small, 0.5 - angle ** 2 / 48.0, torch.sin(half) / angle.clamp_min(1e-12))
    return torch.cat((torch.cos(half), k * v), -1)


def quat_to_rotvec(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion ``(..., 4)`` -> rotation vector ``(..., 3)`` with angle in ``[0, pi]``."""
    q = torch.where(q[..., :1] < 0, -q, q)  # shortest rotation
    s = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(s, q[..., :1])
    k = torch.where(s < 1e-7, 2.0 / q[..., :1].clamp_min(1e-12), angle / s.clamp_min(1e-12))
    return k * q[..., 1:]


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion ``(..., 4)`` -> rotation matrix ``(..., 3, 3)``."""
    w, x, y, z = q.unbind(-1)
    return torch.stack((
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)), -1
    ).reshape(q.shape[:-1] + (3, 3))


def quat_to_rot6(q: torch.Tensor) -> torch.Tensor:
    """``(..., 6)``: the first two columns of the rotation matrix of ``q (..., 4)``, column after
    column (Zhou et al. 2019's continuous 6D encoding; unlike quaternions it has no sign flip)."""
    m = quat_to_matrix(q)
    return torch.cat((m[..., :, 0], m[..., :, 1]), -1)


def quat_from_matrix(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``(..., 3, 3)`` -> unit quaternion ``(..., 4)`` with ``w >= 0``.

    Picks the numerically best of the four Shepperd branches per element."""
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    cand = torch.stack((
        torch.stack((1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2],
                     m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]), -1),
        torch.stack((m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22,
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]), -1),
        torch.stack((m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 - m00 + m11 - m22, m[..., 1, 2] + m[..., 2, 1]), -1),
        torch.stack((m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                     m[..., 1, 2] + m[..., 2, 1], 1 - m00 - m11 + m22), -1)), -2)
    # Row k of cand equals 4 q_k * q; the row with the largest q_k^2 is the best conditioned.
    diag = torch.stack((1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                        1 - m00 + m11 - m22, 1 - m00 - m11 + m22), -1)
    best = diag.argmax(-1, keepdim=True)
    q = torch.gather(cand, -2, best.unsqueeze(-1).expand(best.shape + (4,))).squeeze(-2)
    q = quat_normalize(q)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_slerp(q0: torch.Tensor, q1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation along the shortest arc.

    ``q0, q1 (..., 4)`` unit, ``t (...)`` in [0, 1]; returns unit ``(..., 4)``. Nearly equal
    rotations fall back to normalized lerp (the slerp weights are 0/0 there)."""
    t = t.unsqueeze(-1)
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    near = sin_theta < 1e-6
    safe = torch.where(near, torch.ones_like(sin_theta), sin_theta)
    w0 = torch.where(near, 1.0 - t, torch.sin((1.0 - t) * theta) / safe)
    w1 = torch.where(near, t, torch.sin(t * theta) / safe)
    return quat_normalize(w0 * q0 + w1 * q1)


def quat_between(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Minimal rotation taking direction ``u`` to direction ``v`` (``(..., 3)``, any length).

    Opposite directions rotate by pi about an axis perpendicular to ``u``."""
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w = 1.0 + (u * v).sum(-1, keepdim=True)
    xyz = torch.linalg.cross(u, v)
    # Fallback axis for u = -v: u x e_x, or u x e_y when u is along x.
    ex = torch.zeros_like(u)
    ex[..., 0] = 1.0
    ey = torch.zeros_like(u)
    ey[..., 1] = 1.0
    perp = torch.linalg.cross(u, torch.where(u[..., :1].abs() < 0.9, ex, ey))
    opposite = w < 1e-9
    q = torch.where(opposite, torch.cat((torch.zeros_like(w), perp), -1), torch.cat((w, xyz), -1))
    return quat_normalize(q)


def quat_yaw(q: torch.Tensor) -> torch.Tensor:
    """Heading angle (rad) of the rotated x axis projected on the ground plane, ``(...)``."""
    fwd = quat_rotate(q, q.new_tensor([1.0, 0.0, 0.0]).expand(q.shape[:-1] + (3,)))
    return torch.atan2(fwd[..., 1], fwd[..., 0])


def unyaw(v: torch.Tensor, cos_yaw: torch.Tensor, sin_yaw: torch.Tensor) -> torch.Tensor:
    """World-frame vectors ``v (..., 3)`` expressed in the heading frame of a yaw given by its
    ``cos_yaw, sin_yaw`` (broadcast against ``v[..., 0]``): a planar rotation by -yaw, cheaper
    than a general quaternion rotation (z is unchanged)."""
    x, y, z = v.unbind(-1)
    return torch.stack((cos_yaw * x + sin_yaw * y, cos_yaw * y - sin_yaw * x, z), -1)


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    """Angles ``(...)`` wrapped to (-pi, pi], rad."""
    return a - 2 * math.pi * torch.ceil((a - math.pi) / (2 * math.pi))


__all__ = ["quat_between", "quat_conj", "quat_from_axis_angle", "quat_from_matrix",
           "quat_from_rotvec", "quat_from_yaw", "quat_mul", "quat_normalize", "quat_rotate",
           "quat_slerp", "quat_to_matrix", "quat_to_rot6", "quat_to_rotvec", "quat_yaw", "unyaw",
           "wrap_angle"]
