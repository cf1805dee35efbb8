"""Skeleton of the rlkd humanoid, read from its MJCF, and batched forward kinematics in torch.

The MJCF (``assets/humanoid.xml``) is the single source of truth: :meth:`Skeleton.from_mjcf`
compiles it with MuJoCo and copies out the tree (body names, parents, offsets), the 28 actuated
hinges (names, order = qpos/actuator order, axes, ranges) and the end-effector sites. Nothing
about the body plan is hard-coded here, so an edited MJCF is picked up as it is.

Conventions used throughout ``rlkd.envs.humanoid``:

* world frame: x forward, y left, z up, metres, floor at z = 0;
* quaternions are ``(w, x, y, z)``, unit norm, torch tensors with any leading batch shape
  (the rotation helpers live in :mod:`rlkd.sim.rotations`);
* ``root_pos (..., 3)`` / ``root_rot (..., 4)`` is the pelvis (free joint) pose in the world;
  ``joint_pos (..., 28)`` are the hinge angles in radians in :attr:`Skeleton.dof_names` order
  (``qpos[7:]`` of the MuJoCo model);
* a body's position is its origin (the joint centre it rotates about), its rotation maps body-frame
  vectors to the world frame. MuJoCo's ``xpos`` / ``xquat`` are the same quantities.

:meth:`Skeleton.fk` reproduces MuJoCo's ``mj_kinematics`` for this tree (free root, hinges with
optional anchors and ``ref``), vectorized over the batch; the loop runs over the 15 bodies only.
:meth:`Skeleton.joint_pos_from_body_rot` is its inverse on rotations (used by retargeting and by
the npz round-trip check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rlkd.sim.rotations import (
    quat_conj,
    quat_from_axis_angle,
    quat_mul,
    quat_normalize,
    quat_rotate,
    quat_to_matrix,
    wrap_angle,
)

#: The humanoid's MJCF, shipped with the package.
ASSET_PATH = Path(__file__).resolve().parent / "assets" / "humanoid.xml"

#: End-effector sites (also keypoints), in :attr:`Skeleton.site_names` order of the shipped MJCF.
END_EFFECTORS = ("head", "right_hand", "left_hand", "right_foot", "left_foot")
#: Body names of the feet (ankle frames); their box geoms are the soles.
FEET = ("right_foot", "left_foot")


# --------------------------------------------------------------------------- skeleton

@dataclass(frozen=True, eq=False)
class Skeleton:
    """Kinematic tree of the humanoid (numpy arrays, float64; see the module docstring).

    Bodies are indexed as in MuJoCo minus the world body (0 = pelvis, the root); parents come
    before children. DoFs are the hinges after the free root joint, in qpos order.
    """

    body_names: tuple[str, ...]
    """``nbody`` body names (MuJoCo order, world excluded)."""
    parents: tuple[int, ...]
    """Parent body index per body; -1 for the root."""
    body_offset: np.ndarray
    """``(nbody, 3)`` body origin in its parent's frame at zero angles, metres."""
    body_quat: np.ndarray
    """``(nbody, 4)`` body frame orientation in its parent's frame at zero angles."""
    dof_names: tuple[str, ...]
    """``ndof`` hinge joint names in qpos / actuator order."""
    dof_body: np.ndarray
    """``(ndof,)`` body index moved by each hinge."""
    dof_axis: np.ndarray
    """``(ndof, 3)`` unit hinge axis in its body frame."""
    dof_anchor: np.ndarray
    """``(ndof, 3)`` hinge anchor in its body frame, metres (zero in the shipped MJCF)."""
    dof_ref: np.ndarray
    """``(ndof,)`` angle of the zero pose (MuJoCo ``qpos0``), rad."""
    dof_range: np.ndarray
    """``(ndof, 2)`` joint limits, rad."""
    site_names: tuple[str, ...]
    """End-effector site names."""
    site_body: np.ndarray
    """``(nsite,)`` body index of each site."""
    site_pos: np.ndarray
    """``(nsite, 3)`` site position in its body frame, metres."""
    foot_sole: np.ndarray
    """``(2, 4, 3)`` bottom corners of the right and left foot boxes in the foot frames."""
    mass: float
    """Total mass, kg."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mjcf(cls, path: str | Path = ASSET_PATH) -> "Skeleton":
        """Compile the MJCF at ``path`` with MuJoCo and read the skeleton from it."""
        import mujoco

        return cls.from_model(mujoco.MjModel.from_xml_path(str(path)))

    @classmethod
    def from_model(cls, model) -> "Skeleton":
        """Read the skeleton from a compiled ``mujoco.MjModel`` (free root + hinges only)."""
        import mujoco

        def name(obj, i):
            return mujoco.mj_id2name(model, obj, i)

        nb = model.nbody - 1
        body_names = tuple(name(mujoco.mjtObj.mjOBJ_BODY, i + 1) for i in range(nb))
        parents = tuple(int(model.body_parentid[i + 1]) - 1 for i in range(nb))
        jt = model.jnt_type
        if jt[0] != mujoco.mjtJoint.mjJNT_FREE or model.jnt_bodyid[0] != 1:
            raise ValueError("the humanoid's first joint must be a free joint on the root body")
        if not (jt[1:] == mujoco.mjtJoint.mjJNT_HINGE).all():
            raise ValueError("all joints after the free root joint must be hinges")
        hinges = range(1, model.njnt)
        dof_body = np.array([model.jnt_bodyid[j] - 1 for j in hinges], dtype=np.int64)
        if (np.diff(dof_body) < 0).any():
            raise ValueError("hinges must be listed body by body in tree order")
        sites = range(model.nsite)
        site_names = tuple(name(mujoco.mjtObj.mjOBJ_SITE, s) for s in sites)
        keep = [i for i, s in enumerate(site_names) if s in END_EFFECTORS]
        sole = []
        for foot in FEET:
            b = body_names.index(foot) + 1
            g = [g for g in range(model.ngeom) if model.geom_bodyid[g] == b
                 and model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX]
            if len(g) != 1:
                raise ValueError(f"body {foot!r} needs exactly one box geom (the sole)")
            c, h = model.geom_pos[g[0]], model.geom_size[g[0]]
            if not np.allclose(model.geom_quat[g[0]], [1, 0, 0, 0]):
                raise ValueError(f"the sole box of {foot!r} must be axis-aligned")
            sole.append([c + np.array([sx * h[0], sy * h[1], -h[2]])
                         for sx in (-1, 1) for sy in (-1, 1)])
        skel = cls(
            body_names=body_names, parents=parents,
            body_offset=np.array(model.body_pos[1:], dtype=np.float64),
            body_quat=np.array(model.body_quat[1:], dtype=np.float64),
            dof_names=tuple(name(mujoco.mjtObj.mjOBJ_JOINT, j) for j in hinges),
            dof_body=dof_body,
            dof_axis=np.array(model.jnt_axis[1:], dtype=np.float64),
            dof_anchor=np.array(model.jnt_pos[1:], dtype=np.float64),
            dof_ref=np.array([model.qpos0[model.jnt_qposadr[j]] for j in hinges]),
            dof_range=np.array(model.jnt_range[1:], dtype=np.float64),
            site_names=tuple(site_names[i] for i in keep),
            site_body=np.array([model.site_bodyid[i] - 1 for i in keep], dtype=np.int64),
            site_pos=np.array(model.site_pos[keep], dtype=np.float64),
            foot_sole=np.array(sole, dtype=np.float64),
            mass=float(model.body_subtreemass[1]),
        )
        skel._check_hinge_groups()
        return skel

    def _check_hinge_groups(self) -> None:
        # The inverse (joint_pos_from_body_rot) handles 0, 1 or 3 orthogonal hinges per body.
        for b, dofs in enumerate(self.body_dofs):
            if len(dofs) not in (0, 1, 3):
                raise ValueError(f"body {self.body_names[b]!r} has {len(dofs)} hinges; "
                                 "only 0, 1 or 3 (ball-like) are supported")
            if len(dofs) == 3:
                a = self.dof_axis[list(dofs)]
                if not np.allclose(a @ a.T, np.eye(3), atol=1e-6):
                    raise ValueError(f"the 3 hinges of {self.body_names[b]!r} must be orthogonal")

    # ------------------------------------------------------------------ tables
    @property
    def num_bodies(self) -> int:
        return len(self.body_names)

    @property
    def num_dofs(self) -> int:
        return len(self.dof_names)

    @property
    def body_dofs(self) -> tuple[tuple[int, ...], ...]:
        """DoF indices per body (in application order)."""
        return tuple(tuple(int(j) for j in np.flatnonzero(self.dof_body == b))
                     for b in range(self.num_bodies))

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        """Tracked keypoints: every body origin (joint centre), then the end-effector sites."""
        return self.body_names + tuple(f"{s}_site" for s in self.site_names)

    @property
    def num_keypoints(self) -> int:
        return self.num_bodies + len(self.site_names)

    @property
    def bone_dir(self) -> np.ndarray:
        """``(nbody, 3)`` unit rest direction of each body's bone in its own frame.

        Toward the first child body, else toward the body's end-effector site, else +z. Used to
        project a rotation onto a 1-DoF hinge (the angle that best aligns the bone)."""
        out = np.tile([0.0, 0.0, 1.0], (self.num_bodies, 1))
        for b in range(self.num_bodies):
            kids = [c for c, p in enumerate(self.parents) if p == b]
            sites = np.flatnonzero(self.site_body == b)
            v = (self.body_offset[kids[0]] if kids
                 else self.site_pos[sites[0]] if len(sites) else out[b])
            out[b] = v / max(np.linalg.norm(v), 1e-12)
        return out

    def body_index(self, name: str) -> int:
        return self.body_names.index(name)

    def dof_index(self, name: str) -> int:
        return self.dof_names.index(name)

    def leg_length(self) -> float:
        """Hip-to-ankle length of the right leg at zero angles (thigh + shin), metres."""
        shin, foot = self.body_index("right_shin"), self.body_index("right_foot")
        return float(np.linalg.norm(self.body_offset[shin]) + np.linalg.norm(self.body_offset[foot]))

    def _t(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Cached torch copy of a numpy table on ``like``'s device and dtype."""
        cache = self.__dict__.setdefault("_cache", {})
        key = (name, like.device, like.dtype)
        if key not in cache:
            cache[key] = torch.as_tensor(getattr(self, name), dtype=like.dtype, device=like.device)
        return cache[key]

    # ------------------------------------------------------------------ kinematics
    def fk(self, root_pos: torch.Tensor, root_rot: torch.Tensor,
           joint_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward kinematics (MuJoCo ``mj_kinematics`` semantics).

        Args:
            root_pos: ``(..., 3)`` pelvis position in the world, metres.
            root_rot: ``(..., 4)`` pelvis orientation (wxyz, unit).
            joint_pos: ``(..., ndof)`` hinge angles, rad.

        Returns:
            ``body_pos (..., nbody, 3)`` world positions of the body origins (metres) and
            ``body_rot (..., nbody, 4)`` world orientations (wxyz).
        """
        if joint_pos.shape[-1] != self.num_dofs:
            raise ValueError(f"joint_pos has {joint_pos.shape[-1]} angles, expected {self.num_dofs}")
        offset, bquat = self._t("body_offset", joint_pos), self._t("body_quat", joint_pos)
        axis, anchor = self._t("dof_axis", joint_pos), self._t("dof_anchor", joint_pos)
        hinge = quat_from_axis_angle(axis, joint_pos - self._t("dof_ref", joint_pos))
        has_anchor = bool(np.any(self.dof_anchor != 0))
        pos: list[torch.Tensor] = []
        rot: list[torch.Tensor] = []
        for b, dofs in enumerate(self.body_dofs):
            p = self.parents[b]
            if p < 0:  # free joint: the root pose is the qpos, body_pos/quat are not applied
                x, q = root_pos, quat_normalize(root_rot)
            else:
                x = pos[p] + quat_rotate(rot[p], offset[b].expand_as(pos[p]))
                q = quat_mul(rot[p], bquat[b].expand_as(rot[p]))
            for j in dofs:
                if has_anchor:  # rotate about the anchor, not the body origin
                    a = anchor[j].expand_as(x)
                    x_anchor = x + quat_rotate(q, a)
                    q = quat_mul(q, hinge[..., j, :])
                    x = x_anchor - quat_rotate(q, a)
                else:
                    q = quat_mul(q, hinge[..., j, :])
            pos.append(x)
            rot.append(q)
        return torch.stack(pos, -2), torch.stack(rot, -2)

    def sites(self, body_pos: torch.Tensor, body_rot: torch.Tensor) -> torch.Tensor:
        """End-effector site positions ``(..., nsite, 3)`` (world, metres) from FK output."""
        idx = self._t("site_body", body_pos.new_zeros((), dtype=torch.long))
        local = self._t("site_pos", body_pos)
        # index_select: torch's advanced indexing on an inner dim is several times slower.
        return body_pos.index_select(-2, idx) + quat_rotate(
            body_rot.index_select(-2, idx), local.expand(body_pos.shape[:-2] + local.shape))

    def keypoints(self, body_pos: torch.Tensor, body_rot: torch.Tensor) -> torch.Tensor:
        """Keypoints ``(..., nkeypoint, 3)``: body origins then sites (:attr:`keypoint_names`)."""
        return torch.cat((body_pos, self.sites(body_pos, body_rot)), -2)

    def sole_points(self, body_pos: torch.Tensor, body_rot: torch.Tensor) -> torch.Tensor:
        """World positions ``(..., 2, 4, 3)`` of the sole corners (right foot, left foot)."""
        idx = [self.body_index(f) for f in FEET]
        local = self._t("foot_sole", body_pos)                      # (2, 4, 3)
        p, q = body_pos[..., idx, :], body_rot[..., idx, :]         # (..., 2, 3|4)
        shape = body_pos.shape[:-2] + local.shape
        return p.unsqueeze(-2) + quat_rotate(q.unsqueeze(-2).expand(shape[:-1] + (4,)),
                                             local.expand(shape))

    # ------------------------------------------------------------------ inverse on rotations
    def joint_pos_from_body_rot(self, body_rot: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Hinge angles ``(..., ndof)`` that best reproduce world body orientations.

        Args:
            body_rot: ``(..., nbody, 4)`` desired world orientations (wxyz); ``body_rot[..., 0]``
                is the root's, which the free joint reproduces exactly.
            clamp: clip each angle to its joint range.

        Each body's local rotation is taken relative to its parent's *achieved* orientation, so
        what a clamp or a 1-DoF projection loses upstream is corrected downstream where possible.
        Three orthogonal hinges are an exact Euler decomposition (of the two solutions, the one
        closer to the joint ranges); a single hinge takes the angle that best aligns the body's
        bone direction (:attr:`bone_dir`). Bodies without hinges follow their parent.
        """
        bquat = self._t("body_quat", body_rot)
        axis, ref = self._t("dof_axis", body_rot), self._t("dof_ref", body_rot)
        lo, hi = self._t("dof_range", body_rot).unbind(-1)
        bone = self._t("bone_dir", body_rot)
        angles = [None] * self.num_dofs
        achieved: list[torch.Tensor] = []
        for b, dofs in enumerate(self.body_dofs):
            p = self.parents[b]
            if p < 0:
                achieved.append(body_rot[..., b, :])
                continue
            frame = quat_mul(achieved[p], bquat[b].expand_as(achieved[p]))
            local = quat_mul(quat_conj(frame), body_rot[..., b, :])
            dofs = list(dofs)
            if len(dofs) == 3:
                q = _euler_from_quat(local, axis[dofs], lo[dofs] - ref[dofs], hi[dofs] - ref[dofs])
            elif len(dofs) == 1:
                q = _hinge_from_quat(local, axis[dofs[0]], bone[b]).unsqueeze(-1)
            else:
                q = local.new_zeros(local.shape[:-1] + (0,))
            q = q + ref[dofs]
            if clamp:
                q = torch.maximum(torch.minimum(q, hi[dofs]), lo[dofs])
            for k, j in enumerate(dofs):
                angles[j] = q[..., k]
                frame = quat_mul(frame, quat_from_axis_angle(axis[j].expand(frame.shape[:-1] + (3,)),
                                                             q[..., k] - ref[j]))
            achieved.append(frame)
        return torch.stack(angles, -1)


def _euler_from_quat(q: torch.Tensor, axes: torch.Tensor, lo: torch.Tensor,
                     hi: torch.Tensor) -> torch.Tensor:
    """Angles ``(..., 3)`` with ``q = R(a1, t1) R(a2, t2) R(a3, t3)`` for orthonormal hinge axes.

    In the basis ``B = [a1, a2, a1 x a2]`` the rotation is an x-y-z intrinsic Euler sequence
    (the third axis is ``s (a1 x a2)``, ``s = +-1``). Both solutions are computed; the one whose
    range-clamped rotation is closer to ``q`` wins (the principal one on ties, e.g. when both are
    within range), so an unreachable rotation maps to the nearer reachable one of the two."""
    a1, a2, a3 = axes.unbind(0)
    basis = torch.stack((a1, a2, torch.linalg.cross(a1, a2)), -1)      # columns
    s = torch.sign((a3 * torch.linalg.cross(a1, a2)).sum())
    m = basis.transpose(-1, -2) @ quat_to_matrix(q) @ basis
    t2 = torch.asin(m[..., 0, 2].clamp(-1.0, 1.0))
    t1 = torch.atan2(-m[..., 1, 2], m[..., 2, 2])
    t3 = torch.atan2(-m[..., 0, 1], m[..., 0, 0])
    first = torch.stack((t1, t2, s * t3), -1)
    second = wrap_angle(torch.stack((t1 + math.pi, math.pi - t2, s * (t3 + math.pi)), -1))

    def error(t):  # |sin(half geodesic angle)| between q and the clamped rotation
        t = torch.maximum(torch.minimum(t, hi), lo)
        r = q.new_tensor([1.0, 0.0, 0.0, 0.0]).expand(q.shape)
        for k in range(3):
            r = quat_mul(r, quat_from_axis_angle(axes[k].expand(q.shape[:-1] + (3,)), t[..., k]))
        return 1.0 - (r * q).sum(-1, keepdim=True).abs()

    return torch.where(error(second) < error(first) - 1e-9, second, first)


def _hinge_from_quat(q: torch.Tensor, axis: torch.Tensor, bone: torch.Tensor) -> torch.Tensor:
    """Angle ``(...)`` about ``axis`` that best maps ``bone`` onto ``q``'s image of it.

    Both vectors are projected onto the plane normal to the axis; if the bone lies along the
    axis the twist angle of ``q`` about the axis is used instead."""
    v = quat_rotate(q, bone.expand(q.shape[:-1] + (3,)))
    d = bone - (bone @ axis) * axis
    v = v - (v @ axis).unsqueeze(-1) * axis
    if float(d.norm()) < 1e-6:
        return 2.0 * torch.atan2(q[..., 1:] @ axis, q[..., 0])
    return torch.atan2((torch.linalg.cross(d.expand_as(v), v) * axis).sum(-1), (v * d).sum(-1))
