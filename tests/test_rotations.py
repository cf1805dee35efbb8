"""Rotation helpers (rlkd.sim.rotations): wxyz quaternions, matrices, rotation vectors, slerp,
yaw. Pure torch, a fraction of a second."""

from __future__ import annotations

import math

import pytest
import torch

from rlkd.sim.rotations import (
    quat_between,
    quat_conj,
    quat_from_axis_angle,
    quat_from_matrix,
    quat_from_rotvec,
    quat_from_yaw,
    quat_mul,
    quat_normalize,
    quat_rotate,
    quat_slerp,
    quat_to_matrix,
    quat_to_rot6,
    quat_to_rotvec,
    quat_yaw,
    unyaw,
    wrap_angle,
)


def _random_quats(n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return quat_normalize(torch.randn(n, 4, generator=gen, dtype=dtype))


def test_quat_mul_with_conjugate_is_identity():
    q = _random_quats(64)
    ident = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64).expand(64, 4)
    assert torch.allclose(quat_mul(q, quat_conj(q)), ident, atol=1e-12)
    assert torch.allclose(quat_mul(quat_conj(q), q), ident, atol=1e-12)
    # The product composes rotations: b first, then a.
    a, b = _random_quats(64, 1), _random_quats(64, 2)
    v = torch.randn(64, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(quat_rotate(quat_mul(a, b), v), quat_rotate(a, quat_rotate(b, v)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_quat_to_matrix_matches_quat_rotate_on_random_vectors(dtype):
    q = _random_quats(128, 4, dtype)
    v = torch.randn(128, 3, generator=torch.Generator().manual_seed(5), dtype=dtype)
    m = quat_to_matrix(q)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose((m @ v.unsqueeze(-1)).squeeze(-1), quat_rotate(q, v), atol=tol)
    assert torch.allclose(m @ m.transpose(-1, -2), torch.eye(3, dtype=dtype).expand(128, 3, 3),
                          atol=tol)
    assert torch.allclose(quat_to_rot6(q), torch.cat((m[..., 0], m[..., 1]), -1))
    # Back to a quaternion: the same rotation (up to the sign of q), with w >= 0.
    back = quat_from_matrix(m)
    assert (back[:, 0] >= 0).all()
    assert torch.allclose((back * q).sum(-1).abs(), torch.ones(128, dtype=dtype), atol=tol)


def test_rotvec_axis_angle_and_between_round_trips():
    gen = torch.Generator().manual_seed(6)
    rv = torch.randn(32, 3, generator=gen, dtype=torch.float64)
    angle = torch.rand(32, 1, generator=gen, dtype=torch.float64) * 3.0     # rad, below pi
    rv = rv / rv.norm(dim=-1, keepdim=True) * angle
    q = quat_from_rotvec(rv)
    assert torch.allclose(quat_to_rotvec(q), rv, atol=1e-10)
    angle = rv.norm(dim=-1)
    assert torch.allclose(quat_from_axis_angle(rv / angle[:, None], angle), q, atol=1e-12)
    u = torch.randn(32, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(32, 3, generator=gen, dtype=torch.float64)
    r = quat_between(u, w)
    assert torch.allclose(quat_rotate(r, u / u.norm(dim=-1, keepdim=True)),
                          w / w.norm(dim=-1, keepdim=True), atol=1e-10)
    flipped = quat_between(u, -u)                                   # opposite: still a rotation
    assert torch.allclose(quat_rotate(flipped, u), -u, atol=1e-10)


def test_yaw_helpers_agree():
    yaw = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    q = quat_from_yaw(yaw)
    assert torch.allclose(quat_yaw(q), yaw, atol=1e-12)
    # unyaw is the rotation by -yaw: the heading frame of a body with that yaw.
    v = torch.randn(13, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert torch.allclose(unyaw(v, torch.cos(yaw), torch.sin(yaw)),
                          quat_rotate(quat_conj(q), v), atol=1e-12)
    a = torch.tensor([0.0, math.pi, -math.pi, 3 * math.pi, 7.0, -7.0], dtype=torch.float64)
    w = wrap_angle(a)
    assert ((w > -math.pi) & (w <= math.pi + 1e-12)).all()
    assert torch.allclose(torch.cos(w), torch.cos(a)) and torch.allclose(torch.sin(w), torch.sin(a))


def test_slerp_midpoint_unit_norm_and_shortest_arc():
    z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    q0 = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    q1 = quat_from_axis_angle(z, torch.tensor(math.pi / 2, dtype=torch.float64))
    mid = quat_slerp(q0, q1, torch.tensor(0.5, dtype=torch.float64))
    quarter = quat_from_axis_angle(z, torch.tensor(math.pi / 4, dtype=torch.float64))
    assert torch.allclose(mid, quarter)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    path = quat_slerp(q0.expand(11, 4), q1.expand(11, 4), t)
    assert torch.allclose(path.norm(dim=-1), torch.ones(11, dtype=torch.float64))
    assert torch.allclose(path[0], q0) and torch.allclose(path[-1], q1)
    # Constant angular speed: equal steps between consecutive samples.
    steps = torch.acos((path[1:] * path[:-1]).sum(-1).clamp(max=1.0))
    assert torch.allclose(steps, torch.full_like(steps, math.pi / 40))
    # -q1 is the same rotation: the shortest arc still passes through 45 deg.
    mid_neg = quat_slerp(q0, -q1, torch.tensor(0.5, dtype=torch.float64))
    assert torch.allclose(quat_to_matrix(mid_neg), quat_to_matrix(mid))
    # Nearly equal rotations: no 0/0.
    tiny = quat_from_axis_angle(z, torch.tensor(1e-9, dtype=torch.float64))
    assert torch.isfinite(quat_slerp(q0, tiny, torch.tensor(0.3, dtype=torch.float64))).all()
