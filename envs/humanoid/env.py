"""Humanoid motion tracking: a PD-controlled MuJoCo humanoid follows reference motion clips.

After DeepMimic (Peng et al. 2018) and PhysHMR (Feng et al. 2025, arXiv 2510.02566). Physics is
:class:`rlkd.sim.mujoco.MujocoBatch` (native MuJoCo on CPU threads, or MuJoCo Warp); everything
else is batched torch, so the same code runs on both backends.

**Action** ``(num_envs, 28)`` in [-1, 1]: PD position targets of the 28 hinges, mapped linearly
onto each joint's range (0 = mid-range); with ``action_mode="residual"``, offsets of up to
``residual_scale`` rad from the next reference frame's angles instead. The MJCF's ``<position>`` actuators (kp per joint
group, critical damping) turn them into torques; the target is held for ``frame_skip`` physics
steps of 5 ms.

**Observations** (heading frame = world frame rotated by the pelvis yaw; m, rad, s). Groups
(sizes for the defaults: 28 joints, 5 end effectors, ``future_steps=(1, 3, 6)``) and their
named parts (``env.observation_layout[group][part]`` is the slice of each):

==========  =====  ============================================================================
group       size   parts (size): content
==========  =====  ============================================================================
proprio     112    what the robot senses of itself: ``pelvis_height`` (1);
                   ``pelvis_rot6`` (6) pelvis orientation in the heading frame as the first two
                   rotation-matrix columns; ``pelvis_lin_vel``, ``pelvis_ang_vel`` (3 + 3) in
                   the heading frame; ``joint_pos`` (28) joint angles; ``joint_vel`` (28)
                   joint velocities x 0.1; ``end_effectors`` (15) head, hands, feet relative
                   to the pelvis in the heading frame; ``prev_action`` (28) the last action.
                   ``obs_noise_std`` noise is added to every part but ``prev_action``
reference   156    privileged: for each of ``future_steps`` (part prefix ``ref{k}_``, k = the
                   step offset, e.g. ``ref3_`` = 3 control steps ahead): ``pelvis_pos`` (3) and
                   ``pelvis_rot6`` (6) of the reference pelvis relative to the pelvis in the
                   heading frame, ``joint_pos`` (28) reference joint angles, ``end_effectors``
                   (15) relative to the reference pelvis
policy      268    ``proprio`` then ``reference`` (exactly their concatenation; the parts keep
                   their names): what the expert tracker reads
critic      350    ``policy`` without noise, then the current tracking errors ``err_joint_pos``
                   (28), ``err_joint_vel`` (28, x 0.1), ``err_end_effectors`` (15),
                   ``err_pelvis_pos`` (3), ``foot_forces`` (2 x 3) foot contact forces / body
                   weight in the world frame, ``phase`` (2) the clip phase as (sin, cos)
teacher     268    ``policy`` with ``prev_action`` re-expressed in ``teacher_action_mode``
                   (0 at an episode's first step, as in the expert's own env): what a residual
                   expert reads inside an absolute-action student env
keypoints   356    only with ``vision`` != ``"none"``: what a camera filming the *reference
                   performer* shows, per frame of ``keypoint_steps`` (prefix ``kp{k}_``):
                   ``rays`` (60) unit rays through the 20 detected keypoints in the heading
                   frame (``keypoints2d``: ``uv`` (40) pixels scaled to [-1, 1] and
                   ``intrinsics`` (4) fx/W, fy/H, cx/W, cy/H), ``visible`` (20) 1 if seen,
                   ``camera_pos`` (3) camera centre relative to the pelvis and ``camera_rot6``
                   (6) camera axes, heading frame; unseen keypoints are zeros
student     468    ``proprio`` then ``keypoints``: what a vision student reads
==========  =====  ============================================================================

**Camera** (``vision="rays"|"keypoints2d"``, :mod:`rlkd.envs.humanoid.camera_obs`): a pinhole
camera (OpenCV axes) looks at the reference performer's pelvis from ``camera_distance``
(horizontal), ``camera_height`` and ``camera_azimuth`` (from its heading at reset), with
``camera_fovy``; ``follow`` keeps the offset as the performer moves, ``fixed`` stays put.
A 2D detector adds ``keypoint_noise_px`` pixel noise, drops keypoints with
``keypoint_dropout``; ``keypoint_occlusion`` boxes hide some; keypoints behind the camera or
outside the image are unseen. ``env.camera()``, ``env.keypoints_2d()`` and
``env.keypoint_rays()`` return the latest frame-0 view; :meth:`to_absolute` turns a residual
expert's actions into absolute labels.

**Reward** (DeepMimic, plus PHC's global keypoint term): ``w_pose exp(-k_pose e_pose) + w_vel
exp(-k_vel e_vel) + w_end_effector exp(-k_end_effector e_ee) + w_root exp(-k_root e_root) +
w_keypoint exp(-k_keypoint e_kp)`` with ``e_pose`` the summed squared joint-angle error plus the
squared pelvis orientation error (rad^2), ``e_vel`` the summed squared joint-velocity error,
``e_ee`` the summed squared error of the root-relative end effectors (m^2), ``e_root`` the
squared pelvis position error (m^2) and ``e_kp`` the mean squared world-frame keypoint error
(m^2). Per-term values are in ``info["reward_terms"]``.

**Reset**: reference-state initialization: a clip (by weight, or PHC hard-negative mining:
:mod:`~rlkd.envs.humanoid.sampling`, ``env.clip_stats()``) at a random time; the humanoid
starts in that reference pose and velocity (``recovery_fraction``: some start fallen or offset,
:mod:`~rlkd.envs.humanoid.recovery`). **Termination**: the pelvis below ``fall_height``
(``fall``) or the mean keypoint error above ``max_tracking_error`` (``tracking_failure``). **Truncation**:
``max_episode_steps``; an episode that reaches it counts as ``success``.

**Params** (per-env tensors in ``env.params``): the backend's ``body_mass``, ``geom_friction``,
``actuator_gain`` (PD kp), ``dof_damping`` and ``geom_solref``, plus ``obs_noise_std`` and
``action_noise_std``; with a camera also ``camera_distance``, ``camera_height``,
``camera_azimuth`` (deg), ``camera_fovy`` (deg), ``keypoint_noise_px``, ``keypoint_dropout``
(drawn per env at reset from the config ranges of the same names; a write moves that env's
camera at once) and ``keypoint_noise_scale`` (1; sim-to-real kind ``keypoint_noise`` scales
it). **Metrics** (``info["metrics"]``): ``mpjpe`` (mean world-frame keypoint
error, mm), ``mpjpe_local`` (the same after moving the pelvis onto the reference's: root-aligned
MPJPE, mm), ``root_error`` (pelvis position error, mm), ``accel_error`` (keypoint second
differences against the reference's, mm/frame^2; 0 for an episode's first two steps),
``foot_sliding`` (horizontal travel of a sole that stays within 2 cm of the floor, mm/frame,
mean over such feet, 0 when none is down) and, with a camera, ``reprojection_error`` (px, the
simulated body projected by the camera against the detections, over the seen keypoints).

**Version history**: v0 (first release; the ``proprio``, ``reference``, ``teacher`` groups, the
opt-in camera groups and the metrics ``accel_error``, ``foot_sliding`` were added later
without changing ``policy`` or ``critic``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlkd.core.env import BatchedEnv, Obs
from rlkd.sim.mujoco.env_state import MujocoEnvState
from rlkd.core.spaces import action_box, box
from rlkd.render.frames import tile_frames

from rlkd.sim.rotations import (
    quat_conj,
    quat_from_yaw,
    quat_mul,
    quat_rotate,
    quat_to_rot6,
    quat_to_rotvec,
    quat_yaw,
    unyaw,
)

from . import metrics
from .actions import ActionModes, convert_actions
from .camera_obs import CameraObservations
from .config import HumanoidMotionConfig
from .motions import MotionState, load_library
from .obs_layout import observation_parts
from .recovery import FailStateRecovery
from .sampling import ClipSampling
from .skeleton import ASSET_PATH, END_EFFECTORS, FEET, Skeleton

_SKELETON: Skeleton | None = None


def _skeleton() -> Skeleton:
    global _SKELETON
    if _SKELETON is None:  # compiled once per process: the MJCF does not change
        _SKELETON = Skeleton.from_mjcf()
    return _SKELETON


class HumanoidMotionEnv(ActionModes, ClipSampling, FailStateRecovery, CameraObservations,
                        MujocoEnvState, BatchedEnv):
    """Batched humanoid motion tracking; see the module docstring for the full manual."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    PERTURBATIONS = {
        "mass": (("body_mass", "scale"),),
        "friction": (("geom_friction", "scale"),),
        "pd_gains": (("actuator_gain", "scale"),),
        "obs_noise": (("obs_noise_std", "set"),),
        "action_noise": (("action_noise_std", "set"),),
        "keypoint_noise": (("keypoint_noise_scale", "scale"),),
    }
    REPORT_METRICS = {"mpjpe": "mean", "mpjpe_local": "mean", "root_error": "mean",
                      "accel_error": "mean", "foot_sliding": "mean"}
    STEP_TORCH_THREADS = 1  # MuJoCo's own thread pool occupies the cores during the physics

    def __init__(self, cfg: HumanoidMotionConfig, num_envs: int = 1, device="cpu", seed: int = 0,
                 validate_actions: bool = True):
        from rlkd.sim.mujoco import MujocoBatch

        super().__init__(cfg, num_envs, device, seed, validate_actions)
        c = cfg.validate()  # every field's range (again: the config may have been edited)
        self.skeleton = sk = _skeleton()
        self.sim = MujocoBatch(ASSET_PATH, num_envs, backend=c.backend, device=self.device,
                               num_threads=c.num_threads or None, nstep=c.frame_skip,
                               fields=("xpos", "xquat", "cfrc_ext"))
        self.motions = load_library(c.motion, sk, self.device, c.motion_mode,
                                    c.motion_range_tolerance)
        self.dt = float(self.sim.model.opt.timestep) * c.frame_skip
        self.metadata = dict(self.metadata, render_fps=int(round(1.0 / self.dt)))
        dev, nd = self.device, sk.num_dofs
        lo, hi = (torch.as_tensor(sk.dof_range[:, i], dtype=torch.float32, device=dev) for i in (0, 1))
        #: (28,) joint-range centre and half width, rad: action a -> target mid + a * half.
        self.q_mid, self.q_half = (lo + hi) / 2, (hi - lo) / 2
        self.ee_idx = torch.as_tensor([sk.num_bodies + sk.site_names.index(n) for n in END_EFFECTORS],
                                      device=dev)
        self.feet_mj = torch.as_tensor([sk.body_index(f) + 1 for f in FEET], device=dev)
        self.body_weight = float(sk.mass * 9.81)
        self.future = torch.as_tensor(c.future_steps, dtype=torch.float32, device=dev) * self.dt
        self._next_step = torch.full((1,), self.dt, device=dev)  # residual targets: t + dt
        #: Residual range of the last step's actions, rad: a float or ``(N, 1)``.
        self._applied_range = self._last_range = self.cfg.residual_scale
        # Reference offsets per observation: now, the future frames, then the camera's video
        # frames not among them (_kp_rows picks the video frames).
        offsets = [0.0] + [float(k) for k in c.future_steps]
        if c.vision != "none":
            offsets += [float(k) for k in c.keypoint_steps if float(k) not in offsets]
            self._kp_rows = [offsets.index(float(k)) for k in c.keypoint_steps]
        self._ref_offsets = torch.as_tensor(offsets, dtype=torch.float32, device=dev) * self.dt

        full = lambda v: torch.full((num_envs,), v, dtype=torch.float32, device=dev)  # noqa: E731
        # The backend's physical params are shared tensors: a write here reaches the physics.
        self.params = {**self.sim.params, "obs_noise_std": full(c.obs_noise_std),
                       "action_noise_std": full(c.action_noise_std)}
        self.clip_ids = torch.zeros(num_envs, dtype=torch.int64, device=dev)
        self.t0 = torch.zeros(num_envs, device=dev)
        self.prev_action = torch.zeros(num_envs, nd, device=dev)
        self._action_rate = torch.zeros(num_envs, device=dev)
        self._cache: dict[str, Any] = {}

        self._parts = observation_parts(nd, 3 * len(END_EFFECTORS), c.future_steps, c.vision,
                                         P := len(sk.keypoint_names), c.keypoint_steps)
        size = {g: sum(n for _, n in parts) for g, parts in self._parts.items()}
        # Noise hits the sensed quantities of proprio, not the last action (its last part).
        self._n_prop_noisy = size["proprio"] - nd
        self.observation_spaces = {g: box((n,)) for g, n in size.items()}
        self.action_space = action_box(nd)
        # Metric history: the last two frames' keypoints (simulated, reference) and soles.
        self._hist_kp, self._hist_sole = (torch.zeros(num_envs, 2, 2, P, 3, device=dev),
                                          torch.zeros(num_envs, 2, 3, device=dev))
        self._init_vision()
        self._init_sampling()
        self._init_recovery()

    # ------------------------------------------------------------------ state
    def _sim_state(self, env_ids: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The simulated humanoid in the reference's terms (float32, world frame)."""
        sel = (lambda t: t) if env_ids is None else (lambda t: t[env_ids])  # noqa: E731
        qpos, qvel = sel(self.sim.qpos).float(), sel(self.sim.qvel).float()
        root_rot = qpos[:, 3:7]
        body_pos = sel(self.sim.xpos)[:, 1:].float()
        body_rot = sel(self.sim.xquat)[:, 1:].float()
        return {"root_pos": qpos[:, 0:3], "root_rot": root_rot, "joint_pos": qpos[:, 7:],
                # MuJoCo's free joint: linear velocity in world axes, angular in the body frame.
                "root_lin_vel": qvel[:, 0:3], "root_ang_vel": quat_rotate(root_rot, qvel[:, 3:6]),
                "joint_vel": qvel[:, 6:],
                "keypoints": self.skeleton.keypoints(body_pos, body_rot)}

    def _time(self, env_ids: torch.Tensor | None) -> torch.Tensor:
        sel = (lambda t: t) if env_ids is None else (lambda t: t[env_ids])  # noqa: E731
        return sel(self.t0) + sel(self.episode_length_buf).float() * self.dt

    def _reference(self, env_ids: torch.Tensor | None, offsets: torch.Tensor | None = None
                   ) -> MotionState:
        """Reference at the current time (+ ``offsets (F,)`` seconds: rows grouped per offset)."""
        clip = self.clip_ids if env_ids is None else self.clip_ids[env_ids]
        t = self._time(env_ids)
        if offsets is not None:
            clip = clip.repeat(len(offsets))
            t = (t[None] + offsets[:, None]).reshape(-1)
        return self.motions.sample(clip, t, rotations=False)

    # ------------------------------------------------------------------ reset
    def _reset_idx(self, env_ids: torch.Tensor) -> None:
        # Reference-state initialization: a clip (weights, hard negatives) at a phase.
        clip, t0 = self._draw_starts(env_ids, self.rng.uniform(env_ids, 2))
        self.clip_ids[env_ids], self.t0[env_ids] = clip, t0
        self.prev_action[env_ids] = 0.0
        ref = self.motions.sample(clip, self.t0[env_ids], rotations=False)
        self._hist_kp[env_ids, 1] = ref.keypoints[:, None]
        self._hist_sole[env_ids] = float("nan")  # no sliding before a first frame on the floor
        self._vision_reset(env_ids, ref.root_pos, quat_yaw(ref.root_rot))
        qpos = torch.cat((ref.root_pos, ref.root_rot, ref.joint_pos), -1)
        ang_local = quat_rotate(quat_conj(ref.root_rot), ref.root_ang_vel)
        qvel = torch.cat((ref.root_lin_vel, ang_local, ref.joint_vel), -1)
        qpos, qvel = self._recovery_reset(env_ids, qpos, qvel)  # fallen / offset starts
        self.sim.reset(env_ids, qpos.to(self.sim.dtype), qvel.to(self.sim.dtype))
        # Metric history: both frames before the first read the reset pose, simulated and
        # reference (the acceleration error counts from the episode's third frame).
        self._hist_kp[env_ids, 0] = self._sim_state(env_ids)["keypoints"][:, None]

    def _state_finite(self) -> torch.Tensor:
        return torch.isfinite(self.sim.qpos).all(-1) & ~self.sim.unstable.to(self.device)

    # ------------------------------------------------------------------ step
    def _step_sim(self, actions: torch.Tensor) -> None:
        std = self.params["action_noise_std"]
        a = actions
        if bool((std > 0).any()):
            a = (a + self.rng.normal(None, a.shape[1]) * std[:, None]).clamp(-1.0, 1.0)
        # Mean squared change from this episode's last action (the 2D reward's realism term).
        self._action_rate = (actions - self.prev_action).square().mean(-1) * (
            self.episode_length_buf > 0)
        self.prev_action = actions
        targets = self.pd_targets(a)
        if self.cfg.action_mode != "residual" and self.cfg.recovery_residual_scale > 0:
            self.residual_range(self._reference(None, self._next_step))
        # The residual range at this action, for the teacher's view of it (teacher_action_mode).
        self._applied_range = self._last_range
        self.sim.step(targets.to(self.sim.dtype))

    def _errors(self, s: dict[str, torch.Tensor], ref: MotionState) -> dict[str, torch.Tensor]:
        """Per-env tracking errors of state ``s`` against ``ref``."""
        ee = self.ee_idx
        rel = s["keypoints"].index_select(1, ee) - s["root_pos"][:, None]
        ref_rel = ref.keypoints.index_select(1, ee) - ref.root_pos[:, None]
        root_ang = quat_to_rotvec(quat_mul(ref.root_rot, quat_conj(s["root_rot"]))).norm(dim=-1)
        kp_err = s["keypoints"] - ref.keypoints
        return {
            "joint": s["joint_pos"] - ref.joint_pos,
            "joint_vel": s["joint_vel"] - ref.joint_vel,
            "ee": rel - ref_rel,
            "root": s["root_pos"] - ref.root_pos,
            "root_angle": root_ang,
            "keypoint_dist": kp_err.norm(dim=-1).mean(-1),
            "keypoint_sq": kp_err.square().sum(-1).mean(-1),
        }

    def _evaluate(self):
        c = self.cfg
        err = self._cache["errors"]
        s = self._cache["state"]
        e_pose = err["joint"].square().sum(-1) + err["root_angle"].square()
        e_vel = err["joint_vel"].square().sum(-1)
        e_ee = err["ee"].square().sum((-1, -2))
        e_root = err["root"].square().sum(-1)
        e_kp = err["keypoint_sq"]
        terms = {"pose": c.w_pose * torch.exp(-c.k_pose * e_pose),
                 "velocity": c.w_vel * torch.exp(-c.k_vel * e_vel),
                 "end_effector": c.w_end_effector * torch.exp(-c.k_end_effector * e_ee),
                 "root": c.w_root * torch.exp(-c.k_root * e_root),
                 "keypoint": c.w_keypoint * torch.exp(-c.k_keypoint * e_kp)
                 } if c.reward == "3d" else self._reward_2d_terms(s["keypoints"], self._soles())
        terms.update(self._recovery_terms(err["root"]))
        reward = sum(terms.values())
        fall = metrics.fallen(s["root_pos"][:, 2], c.fall_height)
        lost = err["keypoint_dist"] > c.max_tracking_error
        fall, lost, flags = self._recovery_evaluate(err["keypoint_dist"], s["root_pos"][:, 2],
                                                    fall, lost)
        terminated = fall | lost
        self._record_episodes(terminated | (self.episode_length_buf >= self.max_episode_length),
                              terminated, self.recovery_kind == 0)
        return reward, terminated, terms, {"success": ~terminated, "fall": fall,
                                           "tracking_failure": lost & ~fall, **flags}

    def _soles(self) -> torch.Tensor:
        """``(N, 2, 3)`` per foot this step: sole-centre x, y and the lowest corner's height, m."""
        if "sole" not in self._cache:
            soles = self.skeleton.sole_points(self.sim.xpos[:, 1:].float(),
                                              self.sim.xquat[:, 1:].float())  # (N, 2, 4, 3)
            self._cache["sole"] = torch.cat((soles[..., :2].mean(-2),
                                             soles[..., 2].amin(-1, keepdim=True)), -1)
        return self._cache["sole"]

    def _metrics(self) -> dict[str, torch.Tensor]:
        s, ref = self._cache["state"], self._cache["reference"]
        out = {"mpjpe": metrics.mpjpe(s["keypoints"], ref.keypoints),
               "mpjpe_local": metrics.root_aligned_mpjpe(s["keypoints"], ref.keypoints),
               "root_error": metrics.root_position_error(s["root_pos"], ref.root_pos)}
        now = torch.stack((s["keypoints"], ref.keypoints), 1)            # (N, 2, P, 3)
        acc_err = metrics.step_acceleration_error(now, self._hist_kp)
        out["accel_error"] = torch.where(self.episode_length_buf >= 2, acc_err,
                                         torch.zeros_like(acc_err))
        self._hist_kp = torch.stack((now, self._hist_kp[:, :, 0]), 2)
        sole = self._soles()
        out["foot_sliding"] = metrics.step_foot_sliding(sole, self._hist_sole,
                                                        metrics.FOOT_CONTACT_HEIGHT)
        self._hist_sole = sole
        if self._camera is not None:
            out["reprojection_error"] = self._reprojection_error(s["keypoints"])
        return out

    # ------------------------------------------------------------------ observations
    def _observe(self, env_ids: torch.Tensor | None = None) -> Obs:
        c = self.cfg
        s = self._sim_state(env_ids)
        M = s["root_pos"].shape[0]
        F = len(c.future_steps)
        # The reference now, at every future step (and at the camera's extra video frames) in
        # one sample: rows grouped per offset, M each; `ref` keeps now + the future steps.
        ref_all = self._reference(env_ids, self._ref_offsets)
        ref_now = MotionState(**{k: None if v is None else v[:M] for k, v in vars(ref_all).items()})
        ref = MotionState(**{k: None if v is None else v[:(1 + F) * M]
                             for k, v in vars(ref_all).items()})
        errors = self._errors(s, ref_now)
        if env_ids is None:  # the whole batch's errors serve _evaluate and _metrics of this step
            self._cache = {"state": s, "reference": ref_now, "errors": errors}
        # Every heading-frame vector in one rotation (M, V, 3), V = 5 end effectors, the two
        # root velocities, then per future frame its root offset and its 5 end effectors.
        root = s["root_pos"][:, None]
        fut_root = ref.root_pos[M:].view(F, M, 1, 3).transpose(0, 1)
        fut_ee = (ref.keypoints[M:].index_select(1, self.ee_idx).view(F, M, -1, 3).transpose(0, 1)
                  - fut_root)
        vecs = torch.cat((s["keypoints"].index_select(1, self.ee_idx) - root,
                          s["root_lin_vel"][:, None], s["root_ang_vel"][:, None],
                          torch.cat((fut_root - root[:, None], fut_ee), 2).reshape(M, -1, 3)), 1)
        yaw = quat_yaw(s["root_rot"])
        local = unyaw(vecs, torch.cos(yaw)[:, None], torch.sin(yaw)[:, None])
        inv = quat_from_yaw(-yaw)
        rot6 = quat_to_rot6(quat_mul(inv[:, None], torch.cat(
            (s["root_rot"][:, None], ref.root_rot[M:].view(F, M, 4).transpose(0, 1)), 1)))
        ne = len(self.ee_idx)
        prev = self.prev_action if env_ids is None else self.prev_action[env_ids]
        sensed = torch.cat((s["root_pos"][:, 2:3], rot6[:, 0], local[:, ne], local[:, ne + 1],
                            s["joint_pos"], 0.1 * s["joint_vel"],
                            local[:, :ne].reshape(M, -1)), -1)
        fut_local = local[:, ne + 2:].reshape(M, F, 1 + ne, 3)
        reference = torch.cat((fut_local[:, :, 0], rot6[:, 1:],
                               ref.joint_pos[M:].view(F, M, -1).transpose(0, 1),
                               fut_local[:, :, 1:].reshape(M, F, -1)), -1).reshape(M, -1)
        proprio_clean = torch.cat((sensed, prev), -1)
        std = self.params["obs_noise_std"] if env_ids is None else self.params["obs_noise_std"][env_ids]
        proprio = proprio_clean
        if bool((std > 0).any()):
            noise = self.rng.normal(env_ids, self._n_prop_noisy) * std[:, None]
            proprio = torch.cat((sensed + noise, prev), -1)
        # policy = proprio then reference, by construction (the one cat the split costs).
        policy = torch.cat((proprio, reference), -1)
        teacher = policy
        if c.teacher_action_mode != c.action_mode:  # its own form of the last action (0 at t=0)
            rr = self._applied_range
            if isinstance(rr, torch.Tensor) and env_ids is not None:
                rr = rr[env_ids]
            t_prev = convert_actions(prev, c.action_mode, c.teacher_action_mode, ref_now.joint_pos,
                                     self.q_mid, self.q_half, rr)
            steps = self.episode_length_buf if env_ids is None else self.episode_length_buf[env_ids]
            teacher = torch.cat((proprio[:, :self._n_prop_noisy], t_prev * (steps > 0)[:, None],
                                 reference), -1)
        # Privileged: tracking errors, foot contact forces, clip phase.
        cfrc = self.sim.cfrc_ext if env_ids is None else self.sim.cfrc_ext[env_ids]
        feet = cfrc.index_select(1, self.feet_mj)[..., 3:].float() / self.body_weight
        phase = 2 * np.pi * self._time(env_ids) / self.motions.duration[
            self.clip_ids if env_ids is None else self.clip_ids[env_ids]].float()
        critic = torch.cat((proprio_clean, reference, errors["joint"], 0.1 * errors["joint_vel"],
                            errors["ee"].reshape(M, -1), errors["root"], feet.reshape(M, -1),
                            torch.sin(phase)[:, None], torch.cos(phase)[:, None]), -1)
        obs = {"policy": policy, "proprio": proprio, "reference": reference, "critic": critic,
               "teacher": teacher}
        if self._camera is not None:
            kp_ref = ref_all.keypoints.view(-1, M, *ref_all.keypoints.shape[1:])[self._kp_rows]
            keypoints = self._keypoint_features(env_ids, s["root_pos"], yaw,
                                                kp_ref.transpose(0, 1))
            obs.update(keypoints=keypoints, student=torch.cat((proprio, keypoints), -1))
        return obs

    def _observation_layout(self) -> dict[str, dict[str, slice]]:
        """Named parts of ``policy``, ``proprio``, ``reference`` and ``critic`` (see the module
        docstring's table); ``policy``'s parts are ``proprio``'s then ``reference``'s."""
        layout = {}
        for group, parts in self._parts.items():
            end, layout[group] = 0, {}
            for name, n in parts:
                layout[group][name] = slice(end, end + n)
                end += n
        return layout

    def scripted_policy(self):
        """Open-loop PD tracking baseline, ``obs -> actions``: the PD targets are the next
        reference frame's joint angles (read from ``obs["policy"]``). It balances only as long as
        the reference happens to be balanced for this body; a trained tracker must do better."""
        nd = self.skeleton.num_dofs
        # The first future frame's joint angles (``ref1_joint_pos`` by default).
        first = next(n for n, _ in self._parts["reference"] if n.endswith("_joint_pos"))
        start = self.observation_layout["policy"][first].start

        def policy(obs: Obs) -> torch.Tensor:
            if self.cfg.action_mode == "residual":  # the env adds the reference already
                return torch.zeros(obs["policy"].shape[0], nd, device=self.device)
            q = obs["policy"][:, start:start + nd]
            return ((q - self.q_mid) / self.q_half).clamp(-1.0, 1.0)

        return policy

    # ------------------------------------------------------------------ camera hooks
    def keypoints(self, env_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``(M, K, 3)`` world keypoints of the simulated humanoid (body origins then end-effector
        sites, :attr:`Skeleton.keypoint_names`), metres: what a camera-based student observes."""
        return self._sim_state(env_ids)["keypoints"]

    def reference_keypoints(self, env_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``(M, K, 3)`` the reference's keypoints at the current time, metres."""
        return self._reference(env_ids).keypoints

    def render(self, env_ids: Any = None, width: int = 320, camera: str = "track",
               reference: bool = True, cols: int | None = None) -> np.ndarray:
        """``uint8 (H, W, 3)``: each env rendered offscreen by MuJoCo (``camera``: ``track``,
        ``fixed`` or ``None`` for the free camera), with the reference pose beside it when
        ``reference`` (the same model posed by the clip), tiled."""
        ids = torch.as_tensor([0] if env_ids is None else env_ids, device=self.device).reshape(-1)
        height = int(width * 3 / 4)
        frames = list(self.sim.render(ids, width=width, height=height, camera=camera))
        if reference:
            from rlkd.sim.mujoco import MujocoBatch

            if getattr(self, "_ref_sim", None) is None or self._ref_sim.num_envs != len(ids):
                self._ref_sim = MujocoBatch(ASSET_PATH, len(ids), backend="cpu",
                                            fields=("xpos", "xquat"))
            ref = self._reference(ids)
            self._ref_sim.reset(None, torch.cat((ref.root_pos, ref.root_rot, ref.joint_pos), -1)
                                .double().cpu())
            refs = self._ref_sim.render(list(range(len(ids))), width=width, height=height,
                                        camera=camera)
            frames = [np.concatenate((f, r), axis=1) for f, r in zip(frames, refs)]
        return tile_frames(frames, cols=cols)

    # ------------------------------------------------------------------ resources
    def close(self) -> None:
        for sim in (self.sim, getattr(self, "_ref_sim", None)):
            if sim is not None:
                sim.close()
