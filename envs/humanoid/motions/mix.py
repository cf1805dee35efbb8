"""Clip concatenation with a blended transition (:func:`concatenate`) and resampling.

Concatenation (``walk@1.0+turn@0.8:0.5`` in a motion spec)
-----------------------------------------------------------
The parts play one after the other. Each part after the first is moved rigidly in the ground
plane (a rotation about the vertical axis and a horizontal translation; its height is kept) so
that its first frame's pelvis position and heading (yaw) coincide with the frame of the running
result where the transition starts, ``blend`` seconds before that result's end. Over the
``blend`` seconds that follow, both play at once and are cross-faded with the smoothstep weight
``w(s) = 3 s^2 - 2 s^3`` (``s`` from 0 to 1): joint angles and the pelvis height are lerped, the
pelvis orientation is slerped, and the pelvis moves in the plane by the blend of the two parts'
frame-to-frame displacements (so its speed stays between theirs); the rest of the later part
follows on from where the blend ends. At ``s = 0`` the result is the earlier part, at ``s = 1``
the later one (up to that shift), so joint angles, root position and root orientation are
continuous, and joint rates stay within the parts' own rates plus ``1.5 |q_b - q_a| / blend``
(the smoothstep's peak slope times the gap between the two poses).

``loop=True`` (the clip is played in ``wrap`` mode) also blends the last part back into the first:
the result then starts ``blend`` seconds into the first part and ends at the same frame of a
copy of it (placed after the last part), so its last frame equals its first up to a rigid
ground-plane motion, which :class:`~.library.MotionLibrary`'s loop carry then continues without
a jump. ``loop=False`` (``clamp`` mode) plays the parts once.

Parts of different frame rates are resampled to the highest one first (:func:`resample`). Each
part must last at least ``blend`` seconds (``2 blend`` with ``loop``) plus a frame.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from rlkd.sim.rotations import quat_from_yaw, quat_mul, quat_rotate, quat_slerp, quat_yaw

from .clip import MotionClip, MotionError

#: Default cross-fade of a concatenation, seconds.
BLEND_S = 0.5


def resample(clip: MotionClip, fps: float) -> MotionClip:
    """``clip`` at ``fps`` frames per second over its duration (lerped angles and positions,
    slerped root orientation; the last frame is the last whole frame that fits, at most one
    frame period before the clip's end). Returns ``clip`` itself when the rate already matches."""
    if abs(clip.fps - fps) < 1e-9:
        return clip
    n = int(np.floor(clip.duration * fps + 1e-6)) + 1
    f = np.arange(n) / fps * clip.fps
    f0 = np.minimum(np.floor(f).astype(int), clip.num_frames - 1)
    f1 = np.minimum(f0 + 1, clip.num_frames - 1)
    a = (f - f0)[:, None]
    rot = quat_slerp(torch.as_tensor(clip.root_rot[f0]), torch.as_tensor(clip.root_rot[f1]),
                     torch.as_tensor(a[:, 0])).numpy()
    return replace(clip, fps=float(fps), root_pos=(1 - a) * clip.root_pos[f0] + a * clip.root_pos[f1],
                   root_rot=rot, joint_pos=(1 - a) * clip.joint_pos[f0] + a * clip.joint_pos[f1])


def _smoothstep(n: int) -> np.ndarray:
    """``(n + 1,)`` cross-fade weights from 0 to 1."""
    s = np.linspace(0.0, 1.0, n + 1)
    return s * s * (3 - 2 * s)


def _placed(clip: MotionClip, frame: int, pos: np.ndarray, yaw: float) -> tuple[np.ndarray, ...]:
    """``clip``'s root trajectory moved in the ground plane so that its frame ``frame`` has the
    planar position ``pos (2,)`` and heading ``yaw`` (rad): ``(root_pos (T, 3), root_rot (T, 4))``."""
    q = torch.as_tensor(clip.root_rot, dtype=torch.float64)
    d_yaw = yaw - float(quat_yaw(q[frame]))
    rz = quat_from_yaw(torch.full((len(q),), d_yaw, dtype=torch.float64))
    p = torch.as_tensor(clip.root_pos, dtype=torch.float64)
    rel = p - p[frame]
    rel[:, 2] = 0.0
    moved = quat_rotate(rz, rel).numpy()
    moved[:, :2] += pos
    moved[:, 2] = clip.root_pos[:, 2]
    return moved, quat_mul(rz, q).numpy()


def _append(pos, rot, q, part: MotionClip, nb: int) -> tuple[np.ndarray, ...]:
    """The running result ``(pos, rot, q)`` with ``part`` cross-faded in over its last ``nb + 1``
    frames (see the module docstring)."""
    start = len(pos) - 1 - nb
    yaw = float(quat_yaw(torch.as_tensor(rot[start])))
    p_pos, p_rot = _placed(part, 0, pos[start, :2], yaw)
    w = _smoothstep(nb)[:, None]
    ov = slice(start, None)
    # Planar root: the blended displacement per frame, summed from the transition's first frame
    # (a lerp of the two positions would add w' x their growing gap: a lurch); then the rest of
    # the part continues from where the blend ends.
    wm = 0.5 * (w[1:] + w[:-1])
    step = (1 - wm) * np.diff(pos[ov, :2], axis=0) + wm * np.diff(p_pos[:nb + 1, :2], axis=0)
    b_pos = np.empty((nb + 1, 3))
    b_pos[:, :2] = pos[start, :2] + np.concatenate((np.zeros((1, 2)), np.cumsum(step, 0)))
    b_pos[:, 2] = (1 - w[:, 0]) * pos[ov, 2] + w[:, 0] * p_pos[:nb + 1, 2]
    p_pos[:, :2] += b_pos[nb, :2] - p_pos[nb, :2]
    b_q = (1 - w) * q[ov] + w * part.joint_pos[:nb + 1]
    b_rot = quat_slerp(torch.as_tensor(rot[ov]), torch.as_tensor(p_rot[:nb + 1]),
                       torch.as_tensor(w[:, 0])).numpy()
    cat = lambda a, b, c: np.concatenate((a[:start], b, c[nb + 1:]))  # noqa: E731
    return cat(pos, b_pos, p_pos), cat(rot, b_rot, p_rot), cat(q, b_q, part.joint_pos)


def concatenate(clips: Sequence[MotionClip], blend: float = BLEND_S, loop: bool = True,
                name: str | None = None) -> MotionClip:
    """One clip playing ``clips`` in order with ``blend``-second cross-fades (module docstring).

    Args:
        clips: two or more validated clips with the same joint columns (``joint_names`` equal
            or ``None``).
        blend: cross-fade duration, seconds (> 0; rounded to whole frames, at least one).
        loop: also blend the last part back into the first (for ``wrap`` mode).
        name: the result's name (default: the parts' names joined by ``+``).

    Raises:
        MotionError: fewer than two parts, a part too short for the blend, or joint columns
            that differ.
    """
    clips = list(clips)
    label = name or "+".join(c.name for c in clips)
    if len(clips) < 2:
        raise MotionError(f"{label}: a concatenation needs at least two clips")
    if not blend > 0:
        raise MotionError(f"{label}: blend must be > 0 s, got {blend}")
    names = {tuple(c.joint_names) for c in clips if c.joint_names is not None}
    widths = {c.joint_pos.shape[1] for c in clips}
    if len(names) > 1 or len(widths) > 1:
        raise MotionError(f"{label}: the parts' joint columns differ; load them on one skeleton")
    fps = max(c.fps for c in clips)
    clips = [resample(c, fps) for c in clips]
    nb = max(1, int(round(blend * fps)))
    need = (2 * nb if loop else nb) + 2
    for c in clips:
        if c.num_frames < need:
            raise MotionError(f"{label}: part {c.name!r} has {c.num_frames} frames at {fps:g} fps; "
                              f"a {nb / fps:.3g} s blend needs at least {need}")
    first = clips[0]
    pos, rot, q = first.root_pos.copy(), first.root_rot.copy(), first.joint_pos.copy()
    for part in clips[1:] + ([first] if loop else []):
        pos, rot, q = _append(pos, rot, q, part, nb)
    if loop:  # from the first part's frame nb to the same frame of its closing copy
        end = len(pos) - first.num_frames + nb
        pos, rot, q = pos[nb:end + 1], rot[nb:end + 1], q[nb:end + 1]
    out = MotionClip(fps=fps, root_pos=pos, root_rot=rot, joint_pos=q, name=label,
                     joint_names=next(iter(names)) if names else None)
    return out.validate(label, q.shape[1])


__all__ = ["BLEND_S", "concatenate", "resample"]
