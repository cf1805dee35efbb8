"""Fail-state recovery (PHC's perpetual control, Luo et al. 2023): resets that start fallen or
away from the reference, so that a tracker learns to get back instead of needing a reset.

A mixin of :class:`~rlkd.envs.humanoid.env.HumanoidMotionEnv`, off unless
``recovery_fraction > 0`` (then nothing here draws, writes or adds a term: resets, rewards and
flags are those of the env without it).

**Recovery starts**: a reset is one with probability ``recovery_fraction``; of those, a share
``recovery_fallen`` starts *fallen*, the rest *offset*. The reference is drawn as usual (clip and
phase); then

* fallen (``recovery_kind`` 1): the reference pose is turned rigidly about its pelvis by 90 deg
  about a horizontal axis of uniform azimuth (so it lies on its back, front or a side, at any
  heading), then lowered until the lowest point of its collision geometry (capsule ends, spheres
  and box corners: the MJCF's geoms, placed by FK) is ``DROP_CLEARANCE`` above the floor, at
  rest (zero velocities). It is a physically valid state (the pose is the reference's, nothing
  penetrates); it settles onto the floor in the first control steps, within the grace period.
* offset (``recovery_kind`` 2): the reference pose and velocities moved ``r`` metres
  horizontally (``r`` uniform in ``recovery_offset``, uniform direction) and turned about the
  vertical through its pelvis by a heading offset uniform in ``+-recovery_yaw``.

**Termination** of a recovery episode is relaxed (PHC does so while the humanoid gets back):
until it has recovered and while its time is within ``recovery_grace`` seconds, it ends neither
on a fall nor on tracking error. **Recovered**: the first step at which the mean keypoint error
is below ``recovery_tolerance`` with the pelvis above ``fall_height``; from then on it is an
ordinary tracking episode. **Reward**: the env's tracking terms plus ``recovery = w_recovery
exp(-k_recovery d)`` (``d`` the pelvis distance to the reference's, m; in every episode of an
env with recovery on), whose wide basin leads back from metres away where the tracking terms
(``exp(-10 d^2)``, ``exp(-100 e^2)``) are flat.

**Getting up** (``recovery_residual_scale``, residual actions): the residual range widens from
``residual_scale`` toward ``recovery_residual_scale`` as the pelvis drops
:data:`RECOVERY_DROP` metres below the reference's, so a lying humanoid can reach joint targets
far from the standing frame it is offset from; it depends on the state alone (any episode).

**Episode flags** (with recovery on): ``recovery_start`` (the episode started in a recovery
state), ``recovered`` (it recovered) and ``recovery_time`` (seconds from the reset to recovery,
0 if it did not; a study divides its sum by the number recovered: runner logs show it as
``charts/recovery_time_rate``, a mean over all episodes). Recovery rate = recovered /
recovery_start; "within 5 s" = ``recovered & recovery_time <= 5``.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import torch

from rlkd.sim.rotations import quat_from_axis_angle, quat_from_yaw, quat_mul, quat_rotate

#: Height of a fallen start's lowest geometry point above the floor, m.
DROP_CLEARANCE = 0.02
#: Pelvis drop below the reference pelvis, m, over which ``recovery_residual_scale`` widens the
#: residual range: from none at the first to all of it at the second (standing 0.93 m, lying
#: about 0.15 m; a squat's reference drops with the humanoid, so it widens nothing).
RECOVERY_DROP = (0.15, 0.45)


def geom_support(model: mujoco.MjModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The collision geometry of the humanoid's bodies as support points: ``(body (G,) int64``
    in skeleton order, ``points (G, 8, 3)`` in the body frame, m, ``radius (G,)`` m): a geom's
    lowest world point is ``min_k z(points_k) - radius`` (capsule: its two axis ends and its
    radius; sphere: its centre; box: its 8 corners, radius 0)."""
    bodies, points, radii = [], [], []
    for g in range(model.ngeom):
        if model.geom_bodyid[g] == 0:  # the floor
            continue
        t, size = int(model.geom_type[g]), model.geom_size[g]
        if t == mujoco.mjtGeom.mjGEOM_SPHERE:
            local, r = np.zeros((1, 3)), size[0]
        elif t == mujoco.mjtGeom.mjGEOM_CAPSULE:
            local, r = np.array([[0, 0, -size[1]], [0, 0, size[1]]]), size[0]
        elif t == mujoco.mjtGeom.mjGEOM_BOX:
            local = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1)
                              for sz in (-1, 1)]) * size
            r = 0.0
        else:
            raise ValueError(f"geom {g}: type {t} has no support points here")
        q = torch.as_tensor(model.geom_quat[g], dtype=torch.float64).expand(len(local), 4)
        pts = quat_rotate(q, torch.as_tensor(local, dtype=torch.float64)).numpy() + model.geom_pos[g]
        bodies.append(int(model.geom_bodyid[g]) - 1)
        points.append(np.concatenate((pts, np.repeat(pts[-1:], 8 - len(pts), 0))))
        radii.append(float(r))
    return (torch.as_tensor(bodies), torch.as_tensor(np.stack(points), dtype=torch.float32),
            torch.as_tensor(radii, dtype=torch.float32))


class FailStateRecovery:
    """Mixin: recovery starts, relaxed termination, ``recovered`` flags (module docstring)."""

    def _init_recovery(self) -> None:
        N, dev = self.num_envs, self.device
        #: ``(N,)`` int64: 0 an ordinary episode, 1 started fallen, 2 started offset.
        self.recovery_kind = torch.zeros(N, dtype=torch.int64, device=dev)
        #: ``(N,)`` int64: episode step at which a recovery episode recovered (-1: not yet).
        self.recovered_at = torch.full((N,), -1, dtype=torch.int64, device=dev)
        self._recovery_on = self.cfg.recovery_fraction > 0
        if self._recovery_on:
            body, pts, rad = geom_support(self.sim.model)
            self._geom_body, self._geom_pts, self._geom_rad = (body.to(dev), pts.to(dev),
                                                               rad.to(dev))

    def lowest_point(self, qpos: torch.Tensor) -> torch.Tensor:
        """``(M,)`` height of the lowest collision-geometry point of poses ``qpos (M, 35)``
        (pelvis position, wxyz orientation, 28 joint angles; world frame), m."""
        qpos = qpos.float()
        body_pos, body_rot = self.skeleton.fk(qpos[:, :3], qpos[:, 3:7], qpos[:, 7:])
        p = body_pos.index_select(1, self._geom_body)[:, :, None]            # (M, G, 1, 3)
        r = body_rot.index_select(1, self._geom_body)[:, :, None].expand(-1, -1, 8, -1)
        z = (p + quat_rotate(r, self._geom_pts.expand(len(qpos), -1, -1, -1)))[..., 2]
        return (z.amin(-1) - self._geom_rad).amin(-1)

    def _recovery_reset(self, env_ids: torch.Tensor, qpos: torch.Tensor,
                        qvel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reset state ``qpos (M, 35)``, ``qvel (M, 34)`` of ``env_ids`` turned into recovery
        starts where drawn (module docstring); draws nothing with recovery off."""
        self.recovered_at[env_ids] = -1
        if not self._recovery_on:
            return qpos, qvel
        c = self.cfg
        u = self.rng.uniform(env_ids, 5)
        kind = torch.where(u[:, 0] < c.recovery_fraction,
                           torch.where(u[:, 1] < c.recovery_fallen, 1, 2), 0)
        self.recovery_kind[env_ids] = kind
        azim = 2 * math.pi * u[:, 2]
        qpos, qvel = qpos.clone(), qvel.clone()
        # Offset: moved r m toward the azimuth and turned about the vertical through the pelvis
        # (the angular velocity in the body frame is unchanged by that turn).
        off = kind == 2
        lo, hi = c.recovery_offset
        r = (lo + (hi - lo) * u[:, 3]) * off
        dyaw = c.recovery_yaw * (2 * u[:, 4] - 1) * off
        qpos[:, 0] += r * torch.cos(azim)
        qpos[:, 1] += r * torch.sin(azim)
        qz = quat_from_yaw(dyaw.to(qpos.dtype))
        qpos[:, 3:7] = quat_mul(qz, qpos[:, 3:7])
        qvel[:, :3] = quat_rotate(qz, qvel[:, :3])
        # Fallen: turned 90 deg about a horizontal axis, lowered onto the floor, at rest.
        fell = kind == 1
        if bool(fell.any()):
            axis = torch.stack((torch.cos(azim), torch.sin(azim), torch.zeros_like(azim)), -1)
            tilt = quat_from_axis_angle(axis[fell].to(qpos.dtype),
                                        torch.full((int(fell.sum()),), math.pi / 2,
                                                   dtype=qpos.dtype, device=qpos.device))
            lying = qpos[fell].clone()
            lying[:, 3:7] = quat_mul(tilt, lying[:, 3:7])
            lying[:, 2] += DROP_CLEARANCE - self.lowest_point(lying).to(qpos.dtype)
            qpos[fell] = lying
            qvel[fell] = 0.0
        return qpos, qvel

    def _recovery_evaluate(self, kp_dist: torch.Tensor, pelvis_z: torch.Tensor,
                           fall: torch.Tensor, lost: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """After a step: ``(fall, lost, flags)`` with termination relaxed for recovery episodes
        in their grace period; ``kp_dist`` mean keypoint error (m), ``pelvis_z`` (m), (N,)."""
        if not self._recovery_on:
            return fall, lost, {}
        c = self.cfg
        active = self.recovery_kind > 0
        ok = (kp_dist < c.recovery_tolerance) & (pelvis_z >= c.fall_height)
        newly = active & (self.recovered_at < 0) & ok
        self.recovered_at = torch.where(newly, self.episode_length_buf, self.recovered_at)
        recovered = active & (self.recovered_at >= 0)
        grace = active & ~recovered & (self.episode_length_buf.float() * self.dt
                                       <= c.recovery_grace + 1e-6)
        flags = {"recovery_start": active, "recovered": recovered,
                 "recovery_time": torch.where(recovered, self.recovered_at.float() * self.dt,
                                              torch.zeros_like(kp_dist))}
        return fall & ~grace, lost & ~grace, flags

    def residual_range(self, nxt) -> float | torch.Tensor:
        """The residual range of the coming step, rad, for its reference frame ``nxt``
        (a MotionState): ``residual_scale``, or ``(N, 1)`` widened toward
        ``recovery_residual_scale`` by the pelvis drop below ``nxt``'s pelvis over
        :data:`RECOVERY_DROP` (config docstring). Also kept as ``_last_range``."""
        c = self.cfg
        out = c.residual_scale
        if c.recovery_residual_scale > c.residual_scale:
            lo, hi = RECOVERY_DROP
            drop = nxt.root_pos[:, 2] - self.sim.qpos[:, 2].to(nxt.root_pos.dtype)
            w = ((drop - lo) / (hi - lo)).clamp(0.0, 1.0)
            out = (c.residual_scale + (c.recovery_residual_scale - c.residual_scale) * w)[:, None]
        self._last_range = out
        return out

    def _recovery_terms(self, root_err: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"recovery": (N,)}`` from the pelvis position error ``root_err (N, 3)`` (m), or
        nothing with recovery off."""
        if not self._recovery_on:
            return {}
        c = self.cfg
        return {"recovery": c.w_recovery * torch.exp(-c.k_recovery * root_err.norm(dim=-1))}
