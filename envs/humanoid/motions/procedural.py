"""Procedural reference clips (:func:`procedural_clip`, :data:`PROCEDURAL`): no data needed.

Procedural clips (:func:`procedural_clip`)
------------------------------------------
``walk``, ``turn``, ``jog_in_place``, ``squat``, ``wave``: periodic joint-angle patterns; the root
height comes from FK so the lowest sole point is on the floor, and the root moves so that the
stance foot does not slide (it pivots on its heel, centre or toe edge, whichever is lowest). They
are loop-closed (last pose = first pose), so the default library needs no data.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rlkd.sim.rotations import quat_from_axis_angle, quat_from_yaw, quat_mul, quat_normalize

from ..skeleton import Skeleton
from .clip import MotionClip


#: Procedural clip kinds understood by :func:`procedural_clip`.
PROCEDURAL = ("walk", "turn", "jog_in_place", "squat", "wave")


def procedural_clip(kind: str, skeleton: Skeleton | None = None, fps: float = 30.0,
                    cycles: int = 2, speed: float | None = None,
                    yaw_rate: float | None = None) -> MotionClip:
    """A loop-closed procedural clip on our skeleton.

    Args:
        kind: one of :data:`PROCEDURAL`. ``walk``: 1 s gait cycle at ``speed`` (default 1.2 m/s)
            along +x. ``turn``: walking on a circle at ``speed`` (default 0.8 m/s), turning left
            at ``yaw_rate`` (default 0.5 rad/s; > 0 turns left, counter-clockwise seen from
            above, < 0 right). ``jog_in_place``: 0.7 s cycle, knees up, arms pumping. ``squat``: 3 s
            down and up, feet flat, arms forward. ``wave``: standing, right forearm waving at
            1.5 Hz.
        skeleton: target skeleton (DoF names of the shipped MJCF are used).
        fps: frame rate of the clip.
        cycles: number of periods in the clip.
        speed: walking speed for ``walk`` / ``turn`` (m/s); the stride amplitude is calibrated
            to reach it.
        yaw_rate: heading rate of ``turn``, rad/s (the circle's radius is ``speed / |yaw_rate|``;
            0 walks straight); only ``turn`` takes it.

    The root height puts the lowest sole point on the floor every frame; the root moves so the
    stance foot stays put (for the gaits the stance leg follows the gait phase, otherwise it is
    the lower foot), so feet neither penetrate the floor nor slide.
    """
    skeleton = skeleton or Skeleton.from_mjcf()
    if kind not in PROCEDURAL:
        raise ValueError(f"unknown procedural clip {kind!r}; choose from {PROCEDURAL}")
    if yaw_rate is not None and kind != "turn":
        raise ValueError(f"only 'turn' takes a yaw_rate, not {kind!r}")
    period = {"walk": 1.0, "turn": 1.0, "jog_in_place": 0.7, "squat": 3.0, "wave": 2 / 1.5}[kind]
    n = int(round(cycles * period * fps)) + 1
    t = np.arange(n) / fps
    phase = 2 * math.pi * t / period
    if kind in ("walk", "turn"):
        target = speed if speed is not None else (1.2 if kind == "walk" else 0.8)
        yaw_rate = (0.5 if yaw_rate is None else float(yaw_rate)) if kind == "turn" else 0.0
        # Stance foot speed ~ 2 L sin(amp) / (duty * period); refine since knees and heel-off
        # change it (speed is close to proportional to the amplitude).
        amp = math.asin(min(0.9, target * 0.6 * period / (2 * skeleton.leg_length())))
        for _ in range(4):
            clip = _gait_clip(skeleton, t, period, amp, yaw_rate, fps, kind)
            dist = np.linalg.norm(np.diff(clip.root_pos[:, :2], axis=0), axis=1).sum()
            amp *= target / max(dist / t[-1], 1e-6)
        return _gait_clip(skeleton, t, period, amp, yaw_rate, fps, kind)
    pose = _Pose(skeleton, n)
    yaw = np.zeros(n)
    pitch = np.zeros(n)
    if kind == "jog_in_place":
        for side, ph in (("left", phase), ("right", phase + math.pi)):
            lift = np.maximum(0.0, np.sin(ph)) ** 2
            pose[f"{side}_hip_y"] = -1.0 * lift
            pose[f"{side}_knee"] = 0.05 + 1.7 * lift
            pose[f"{side}_ankle_y"] = -(pose[f"{side}_hip_y"] + pose[f"{side}_knee"]) + 0.35 * lift
            sign = 1.0 if side == "left" else -1.0
            pose[f"{side}_shoulder_y"] = 0.55 * np.sin(ph)  # opposite arm swings with each leg
            pose[f"{side}_shoulder_x"] = sign * 0.1
            pose[f"{side}_elbow"] = 1.4
        pose["spine_y"] = 0.08
        pose["neck_y"] = -0.08
    elif kind == "squat":
        d = 0.5 * (1 - np.cos(phase))                  # depth 0 (standing) .. 1 (bottom)
        pitch = 0.35 * d                               # pelvis tilts forward
        thigh, shin = -1.2 * d, 0.5 * d                # world pitch of thigh / shin
        for side in ("left", "right"):
            pose[f"{side}_hip_y"] = thigh - pitch
            pose[f"{side}_knee"] = shin - thigh
            pose[f"{side}_ankle_y"] = -shin              # foot stays flat
            pose[f"{side}_shoulder_y"] = -1.3 * d        # arms forward for balance
            pose[f"{side}_elbow"] = 0.1
        pose["spine_y"] = 0.2 * d
        pose["neck_y"] = -(pitch + 0.2 * d) * 0.8
    elif kind == "wave":
        pose["right_shoulder_x"] = -1.75                 # upper arm out to the side, a bit up
        pose["right_shoulder_z"] = -1.4                  # elbow then bends in the frontal plane
        pose["right_elbow"] = 1.0 + 0.45 * np.sin(phase)
        pose["left_shoulder_x"] = 0.1
        pose["left_elbow"] = 0.2
        pose["spine_x"] = 0.04 * np.sin(phase)         # a little sway with the wave
        pose["neck_z"] = -0.2
    q, root_pos, root_rot = _place(skeleton, pose.q, yaw, pitch)
    return MotionClip(fps=fps, root_pos=root_pos, root_rot=root_rot, joint_pos=q,
                      name=kind, joint_names=skeleton.dof_names).validate(kind, skeleton.num_dofs)


class _Pose:
    """``(T, ndof)`` joint angle table addressed by DoF name."""

    def __init__(self, skeleton: Skeleton, n: int):
        self.skeleton, self.q = skeleton, np.zeros((n, skeleton.num_dofs))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.q[:, self.skeleton.dof_index(name)]

    def __setitem__(self, name: str, value) -> None:
        self.q[:, self.skeleton.dof_index(name)] = value


_PUSH = 0.35
"""Peak heel-rise (ankle plantarflexion, rad) of the procedural gait's push-off."""


def _swing_bend(sw: np.ndarray) -> np.ndarray:
    """Swing knee-flexion profile over swing phase ``sw`` in [0, 1]: 0 at both ends, peak 1
    a little before mid-swing (at ~0.45)."""
    def f(s):
        return np.sin(np.pi * s) * (1 + 0.3 * np.cos(np.pi * s))

    return f(sw) / f(np.linspace(0, 1, 1001)).max()


def _gait_clip(skeleton: Skeleton, t: np.ndarray, period: float, amp: float, yaw_rate: float,
               fps: float, kind: str, duty: float = 0.6) -> MotionClip:
    """Walking gait with thigh amplitude ``amp`` (rad) and stance fraction ``duty``.

    Per leg, gait phase u in [0, 1) from foot strike: in stance the thigh sweeps back at a
    constant rate (+amp -> -amp, so the body moves at a near-constant speed) with a small knee
    flexion wave; in swing a C1 cubic brings it forward while the knee bends (peak ~60 deg early
    in swing). Stance feet are flat; where that would pass the ankle's dorsiflexion limit the
    clip to the joint range lifts the heel (terminal stance). The right leg strikes at u = 0, the
    left half a cycle later."""
    n = len(t)
    pose = _Pose(skeleton, n)
    thighs = {}
    for side, offset in (("right", 0.0), ("left", 0.5)):
        u = (t / period + offset) % 1.0
        st = u < duty
        us, sw = u / duty, np.clip((u - duty) / (1 - duty), 0.0, 1.0)
        rate = -2 * amp / duty * (1 - duty)            # stance d(thigh)/d(sw), for C1 joins
        h00, h10 = 2 * sw**3 - 3 * sw**2 + 1, sw**3 - 2 * sw**2 + sw
        h01, h11 = -2 * sw**3 + 3 * sw**2, sw**3 - sw**2
        thigh = np.where(st, amp * (1 - 2 * us), -amp * h00 + rate * h10 + amp * h01 + rate * h11)
        bend = _swing_bend(sw)
        # Stance knee: a loading bump in the first half, nearly straight after (the stance leg
        # must stay longer than the swinging one while that one passes under the body).
        load = np.sin(np.pi * np.clip(2 * us, 0.0, 1.0))
        knee = np.where(st, 0.05 + 0.2 * load, 0.05 + 1.05 * bend)
        # Ankle: flat foot in stance, the heel rising over its last third (push-off); in swing
        # it blends from the toe-off angle to keeping the sole level (the
        # joint-range clip leaves the toes down while the knee is deeply bent early in swing).
        push = _PUSH * np.clip((us - 0.67) / 0.33, 0.0, 1.0) ** 2
        off = -amp - 0.05 + _PUSH                       # ankle at toe-off
        e = np.clip(sw / 0.3, 0.0, 1.0)
        e = e * e * (3 - 2 * e)
        pose[f"{side}_hip_y"] = -thigh
        pose[f"{side}_knee"] = knee
        pose[f"{side}_ankle_y"] = np.where(
            st, thigh - knee + push,
            (1 - e) * off + e * (thigh - knee))
        sign = 1.0 if side == "left" else -1.0
        pose[f"{side}_shoulder_y"] = 0.35 * thigh / amp   # arm forward while its leg is back
        pose[f"{side}_shoulder_x"] = sign * 0.08
        pose[f"{side}_elbow"] = 0.35 - 0.15 * thigh / amp
        thighs[side] = (thigh, u, st, sw)
    pelvis_yaw = -0.07 * (thighs["left"][0] - thighs["right"][0]) / (2 * amp)  # hip follows its leg
    pose["spine_z"] = -pelvis_yaw                     # shoulders stay square
    # A stance foot keeps the heading it struck with (pelvis yaw and turning happen at the hip);
    # in swing it turns to the heading of its next strike.
    heading = yaw_rate * t + pelvis_yaw
    for side, (_, u, st, sw) in thighs.items():
        strike = yaw_rate * (t - u * period)
        e = sw * sw * (3 - 2 * sw)
        pose[f"{side}_hip_z"] = np.where(st, strike, strike + e * yaw_rate * period) - heading
    pose["spine_y"] = 0.05
    pose["neck_y"] = -0.05
    # The root follows one stance foot at a time: each leg from the other's toe-off to its own
    # (u in [duty - 0.5, duty); exactly one leg is there at any time).
    u_right = (t / period) % 1.0
    stance = np.where((u_right >= duty - 0.5) & (u_right < duty), 0, 1)  # 0: right, 1: left
    q, root_pos, root_rot = _place(skeleton, pose.q, yaw_rate * t + pelvis_yaw, np.zeros(n), stance)
    return MotionClip(fps=fps, root_pos=root_pos, root_rot=root_rot, joint_pos=q, name=kind,
                      joint_names=skeleton.dof_names).validate(kind, skeleton.num_dofs)


def _place(skeleton: Skeleton, q: np.ndarray, yaw: np.ndarray, pitch: np.ndarray,
           stance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint angles clipped to their ranges, and the root trajectory for them and the root
    yaw/pitch ``(T,)``: ``(joint_pos (T, ndof), root_pos (T, 3), root_rot (T, 4))``.

    Height: the lowest sole corner touches z = 0. Planar position: frame to frame, the stance
    foot (``stance (T,)``: 0 right, 1 left; default: the lower sole centre) keeps its world x-y
    position from the earlier frame to the next."""
    dt = torch.float64
    q = np.clip(q, skeleton.dof_range[:, 0], skeleton.dof_range[:, 1])
    zq = torch.as_tensor(yaw, dtype=dt)
    yq = torch.as_tensor(pitch, dtype=dt)
    y_axis = torch.tensor([0.0, 1.0, 0.0], dtype=dt).expand(len(q), 3)
    root_rot = quat_mul(quat_from_yaw(zq), quat_from_axis_angle(y_axis, yq))
    body_pos, body_rot = skeleton.fk(torch.zeros(len(q), 3, dtype=dt), root_rot,
                                     torch.as_tensor(q, dtype=dt))
    sole = skeleton.sole_points(body_pos, body_rot).numpy()       # (T, 2, 4, 3), root at origin
    # Candidate pivots on each sole's centre line: heel edge, centre, toe edge (T, 2, 3, 3).
    heel, toe = sole[:, :, :2].mean(2), sole[:, :, 2:].mean(2)
    pivots = np.stack((heel, 0.5 * (heel + toe), toe), 2)
    height = -sole[..., 2].min((1, 2))
    if stance is None:
        stance = pivots[:, :, 1, 2].argmin(1)                      # lower foot per frame
    # The pivot is the stance foot's lowest point (centre when flat within 1 mm: heel-off
    # turns about the toe edge), the same material point in both frames of a step.
    z = pivots[np.arange(len(q)), stance, :, 2]                    # (T, 3)
    pivot = np.where(z[:, 1] - z.min(1) < 1e-3, 1, z.argmin(1))
    xy = np.zeros((len(q), 2))
    for i in range(1, len(q)):  # sequential by nature (a running sum over stance switches)
        s, k = stance[i - 1], pivot[i - 1]
        xy[i] = xy[i - 1] + pivots[i - 1, s, k, :2] - pivots[i, s, k, :2]
    root_pos = np.concatenate((xy, height[:, None]), 1)
    return q, root_pos, quat_normalize(root_rot).numpy()


__all__ = ["PROCEDURAL", "procedural_clip"]
