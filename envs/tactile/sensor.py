"""Batched tactile force field of two finger pads touching a cylindrical peg (after TacSL 2024).

Computed once per control step on torch tensors, for every env at once, from what
:class:`~rlkd.sim.mujoco.MujocoBatch` exposes on both backends (``xpos``, ``xquat``, ``cvel``,
``cfrc_ext``); no MuJoCo sensor or plugin is involved (MuJoCo Warp takes no sensor plugins).

**Pad frame** (one per pad, right-handed, metres): origin at the centre of the pad surface that
faces the peg; ``z`` = the surface normal pointing out of the pad towards the peg; ``y`` =
towards the fingertip (the hand's -z axis); ``x = y cross z``. Taxel ``(row, col)`` of an
``R x C`` grid sits on the surface at ``x = (col - (C-1)/2) * width / C``, ``y = (row -
(R-1)/2) * height / R``, ``z = 0``: rows run along the finger to its tip, columns across it.

**Depth** ``(N, 2, R, C)``, m: how far each taxel point lies inside the peg, ``max(0,
-sdf(p))`` with ``sdf`` the exact signed distance of a capped cylinder (radius ``r``, half
length ``h``, axis = the peg body's z). This is what MuJoCo's native ``<tactile>`` sensor
reports for a cylinder (the tests check it to 1e-6 m).

**Field** ``(N, 2, 3, R, C)`` float32, per taxel ``[normal, shear_x, shear_y]`` in the pad
frame: the force the peg exerts on the pad, normal = pressing into the pad (>= 0), shear =
tangential components along the pad's x and y. Two models (``mode``):

* ``"contact"``: the pad's MuJoCo contact force (``cfrc_ext`` of the finger body, the forces of
  the last physics substep), expressed in the pad frame and spread over the taxels in proportion
  to their depth: ``f_i = F * d_i / sum(d)``. The field sums to the simulated force exactly,
  normal and shear (a still hold reads the static friction that carries the peg). Only the peg
  is sensed: a pad touching nothing else, which is how the tasks are built.
* ``"penalty"``: TacSL's penalty model per taxel: ``normal_i = kn * d_i``, shear = ``min(kt *
  |v_i|, mu * normal_i)`` along ``v_i``, the peg surface's velocity relative to the pad at the
  taxel, tangential part (TacSL: kn 1, kt 0.1, mu 2, SI units: depth m, velocity m/s).
  Velocities come from ``cvel``: bodies have their inertial frame at their origin, so a body's
  COM is its ``xpos`` and the hand tree's subtree COM is their mass-weighted mean.

Noise (``noise_std``, the field's units) and dropout (probability that a taxel reads zero on all
three channels) are per env and drawn from the env's random streams.
"""

from __future__ import annotations

import math

import torch

from rlkd.sim.rotations import quat_to_matrix

MODES = ("contact", "penalty")


def cylinder_sdf(p: torch.Tensor, radius: float, half_length: float) -> torch.Tensor:
    """Exact signed distance of points ``p (..., 3)`` (cylinder frame: axis z, centred) to a
    capped cylinder, m: negative inside."""
    rho = torch.linalg.vector_norm(p[..., :2], dim=-1) - radius
    dz = p[..., 2].abs() - half_length
    outside = torch.sqrt(rho.clamp_min(0).square() + dz.clamp_min(0).square())
    return outside + torch.maximum(rho, dz).clamp_max(0)


def taxel_grid(rows: int, cols: int, width: float, height: float) -> torch.Tensor:
    """``(rows * cols, 3)`` taxel points in the pad frame (row-major; see the module doc)."""
    y = (torch.arange(rows, dtype=torch.float64) - (rows - 1) / 2) * (height / rows)
    x = (torch.arange(cols, dtype=torch.float64) - (cols - 1) / 2) * (width / cols)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack((xx, yy, torch.zeros_like(xx)), -1).reshape(-1, 3)


class TactileSensor:
    """Force field of ``num_pads`` pads on one peg, batched over envs.

    Args:
        rows, cols: taxels per pad (``R x C``), each >= 1.
        width, height: pad surface size along the pad's x (columns) and y (rows), m.
        peg_radius, peg_half_length: the peg cylinder, m.
        pad_offsets: ``(P, 3)`` pad-surface origin in its finger body's frame, m.
        pad_rotations: ``(P, 3, 3)`` pad-frame axes in the finger body's frame (columns).
        mode: ``"contact"`` or ``"penalty"``.
        kn, kt, mu: penalty-model stiffness (N/m), tangential damping (N s/m), friction.
        device: torch device.

    Raises ``ValueError`` naming the argument for an unknown mode, an empty grid, a
    non-positive size or a negative / non-finite coefficient.
    """

    def __init__(self, rows: int, cols: int, width: float, height: float, peg_radius: float,
                 peg_half_length: float, pad_offsets: torch.Tensor, pad_rotations: torch.Tensor,
                 mode: str = "contact", kn: float = 1.0, kt: float = 0.1, mu: float = 2.0,
                 device: str | torch.device = "cpu"):
        if mode not in MODES:
            raise ValueError(f"unknown tactile mode {mode!r}; choose one of {MODES}")
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"tactile grid {name}={v!r}: the taxel grid must not be empty "
                                 f"(rows and cols are ints >= 1)")
        for name, v in (("width", width), ("height", height), ("peg_radius", peg_radius),
                        ("peg_half_length", peg_half_length)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"tactile sensor {name}={v!r} must be a finite number > 0")
        for name, v in (("kn", kn), ("kt", kt), ("mu", mu)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"tactile sensor {name}={v!r} must be a finite number >= 0")
        self.rows, self.cols, self.mode = rows, cols, mode
        self.radius, self.half_length = float(peg_radius), float(peg_half_length)
        self.kn, self.kt, self.mu = float(kn), float(kt), float(mu)
        self.device = torch.device(device)
        f32 = dict(dtype=torch.float32, device=self.device)
        #: (T, 3) taxel points in the pad frame, T = R * C.
        self.points = taxel_grid(rows, cols, width, height).to(**f32)
        self.pad_offsets = torch.as_tensor(pad_offsets).to(**f32)
        self.pad_rotations = torch.as_tensor(pad_rotations).to(**f32)
        self.num_pads = self.pad_offsets.shape[0]
        #: Outputs of the last :meth:`compute` (``None`` before).
        self.depth: torch.Tensor | None = None
        self.field: torch.Tensor | None = None

    # ------------------------------------------------------------------ geometry
    def pad_frames(self, finger_pos: torch.Tensor, finger_quat: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """World pose of each pad frame: origins ``(N, P, 3)`` and axes ``(N, P, 3, 3)``
        (columns = pad x, y, z in world) from finger body poses ``(N, P, 3)``, ``(N, P, 4)``."""
        rf = quat_to_matrix(finger_quat.float())
        origin = finger_pos.float() + torch.einsum("npij,pj->npi", rf, self.pad_offsets)
        return origin, rf @ self.pad_rotations

    def depth_at(self, points_world: torch.Tensor, peg_pos: torch.Tensor,
                 peg_quat: torch.Tensor) -> torch.Tensor:
        """Penetration depth ``max(0, -sdf)`` (m) of world points ``(N, ..., 3)`` into the peg
        (pose ``(N, 3)``, ``(N, 4)``); used by :meth:`compute` and by the native-sensor test."""
        rp = quat_to_matrix(peg_quat)
        shape = points_world.shape
        rel = points_world.reshape(shape[0], -1, 3) - peg_pos[:, None]
        local = torch.einsum("nki,nij->nkj", rel, rp)          # R_peg^T (p - x_peg)
        return (-cylinder_sdf(local, self.radius, self.half_length)).clamp_min(0).reshape(
            shape[:-1])

    def compute_depth(self, finger_pos: torch.Tensor, finger_quat: torch.Tensor,
                      peg_pos: torch.Tensor, peg_quat: torch.Tensor) -> torch.Tensor:
        """``(N, P, R, C)`` float32 taxel depths, m."""
        origin, axes = self.pad_frames(finger_pos, finger_quat)
        # Peg in each pad frame, then the constant taxel points in the peg frame.
        rp = quat_to_matrix(peg_quat.float())
        r_rel = axes.transpose(-1, -2) @ rp[:, None]                        # (N, P, 3, 3)
        t_rel = torch.einsum("npji,npj->npi", axes, peg_pos.float()[:, None] - origin)
        local = torch.einsum("npkj,npji->npki", self.points[None, None] - t_rel[:, :, None],
                             r_rel)                                          # R_rel^T (q - t)
        d = (-cylinder_sdf(local, self.radius, self.half_length)).clamp_min(0)
        return d.reshape(*d.shape[:2], self.rows, self.cols)

    # ------------------------------------------------------------------ field
    def compute(self, finger_pos: torch.Tensor, finger_quat: torch.Tensor,
                peg_pos: torch.Tensor, peg_quat: torch.Tensor, *,
                pad_force: torch.Tensor | None = None, finger_vel: torch.Tensor | None = None,
                peg_vel: torch.Tensor | None = None, tree_com: torch.Tensor | None = None,
                noise_std: torch.Tensor | None = None, dropout: torch.Tensor | None = None,
                rng=None, env_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The field ``(N, P, 3, R, C)`` float32 (also kept in :attr:`field`; depths in
        :attr:`depth`).

        Args:
            finger_pos, finger_quat: ``(N, P, 3)``, ``(N, P, 4)`` finger body poses, world.
            peg_pos, peg_quat: ``(N, 3)``, ``(N, 4)`` peg body pose (its frame = the cylinder's).
            pad_force: ``contact`` mode: ``(N, P, 3)`` world contact force on each finger body
                (``cfrc_ext[..., 3:]``), N.
            finger_vel, peg_vel: ``penalty`` mode: MuJoCo ``cvel`` rows ``(N, P, 6)``, ``(N, 6)``
                (``[angular, linear]``; linear at ``tree_com`` for the fingers, at the peg's
                COM = origin for the peg).
            tree_com: ``penalty`` mode: ``(N, 3)`` subtree COM of the fingers' kinematic tree.
            noise_std, dropout: ``(N,)`` per-env noise std (field units) and taxel dropout
                probability, or ``None``; drawn from ``rng`` (a :class:`BatchRNG`) for
                ``env_ids`` (``None`` = all envs).
        """
        origin, axes = self.pad_frames(finger_pos, finger_quat)
        depth = self.compute_depth(finger_pos, finger_quat, peg_pos, peg_quat)
        n, p = depth.shape[:2]
        d = depth.reshape(n, p, -1)                                          # (N, P, T)
        if self.mode == "contact":
            if pad_force is None:
                raise ValueError("tactile mode 'contact' needs pad_force (cfrc_ext of the pads)")
            f_pad = torch.einsum("npji,npj->npi", axes, pad_force.float())   # pad frame
            total = d.sum(-1, keepdim=True)
            w = torch.where(total > 0, d / total.clamp_min(1e-30), torch.zeros_like(d))
            force = torch.stack((-f_pad[..., 2], f_pad[..., 0], f_pad[..., 1]), -1)
            force = torch.cat((force[..., :1].clamp_min(0), force[..., 1:]), -1)
            field = force[..., :, None] * w[:, :, None]                      # (N, P, 3, T)
        else:
            if finger_vel is None or peg_vel is None or tree_com is None:
                raise ValueError("tactile mode 'penalty' needs finger_vel, peg_vel and tree_com "
                                 "(cvel rows and the hand tree's COM)")
            normal = self.kn * d
            pts = origin[:, :, None] + torch.einsum("npij,tj->npti", axes, self.points)
            fv, pv = finger_vel.float(), peg_vel.float()
            v_pad = fv[:, :, None, 3:] + torch.linalg.cross(
                fv[:, :, None, :3].expand_as(pts), pts - tree_com.float()[:, None, None])
            v_peg = pv[:, None, None, 3:] + torch.linalg.cross(
                pv[:, None, None, :3].expand_as(pts), pts - peg_pos.float()[:, None, None])
            v_rel = torch.einsum("npji,nptj->npti", axes, v_peg - v_pad)[..., :2]
            speed = torch.linalg.vector_norm(v_rel, dim=-1)
            mag = torch.minimum(self.kt * speed, self.mu * normal)
            shear = v_rel * (mag / speed.clamp_min(1e-12))[..., None]
            shear = torch.where((normal > 0)[..., None], shear, torch.zeros_like(shear))
            field = torch.cat((normal[:, :, None], shear.transpose(-1, -2)), 2)
        field = field.reshape(n, p, 3, self.rows, self.cols)
        if rng is not None and dropout is not None and bool((dropout > 0).any()):
            keep = rng.uniform(env_ids, p * self.rows * self.cols) >= dropout[:, None]
            field = field * keep.reshape(n, p, 1, self.rows, self.cols)
        if rng is not None and noise_std is not None and bool((noise_std > 0).any()):
            noise = rng.normal(env_ids, p * 3 * self.rows * self.cols)
            field = field + noise.reshape(field.shape) * noise_std[:, None, None, None, None]
        self.depth, self.field = depth, field
        return field
