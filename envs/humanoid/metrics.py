"""Motion-tracking metrics (DESIGN.md section 9.5, as reported by PhysHMR and its peers).

All functions are batched torch ops over any leading shape ``...`` (envs, sequences) and
differentiable where that makes sense. Inputs are positions in **metres** in the world frame
(z up); outputs are in **millimetres** (per frame where a time difference is involved).
Keypoints ``K`` are whatever set both sides agree on, e.g.
:meth:`rlkd.envs.humanoid.skeleton.Skeleton.keypoints` (body origins then end-effector sites).
"""

from __future__ import annotations

import torch

from .config import HumanoidMotionConfig

#: Metres -> millimetres.
MM = 1000.0
#: A sole whose lowest corner is this close to the floor is on the ground (foot sliding), m.
FOOT_CONTACT_HEIGHT = 0.02
#: Pelvis height below which the humanoid has fallen, metres: the task's ``fall_height`` default,
#: so the env's ``fall`` termination and offline fall rates count the same events.
FALL_HEIGHT = HumanoidMotionConfig.fall_height


def _check(pred: torch.Tensor, target: torch.Tensor, min_dims: int) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs "
                         f"{tuple(target.shape)}")
    if pred.dim() < min_dims or pred.shape[-1] != 3:
        raise ValueError(f"expected positions of shape (..., {'T, ' if min_dims > 2 else ''}K, 3), "
                         f"got {tuple(pred.shape)}")


def mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-joint position error.

    Args:
        pred, target: ``(..., K, 3)`` keypoint positions, metres.

    Returns:
        ``(...)`` mean over the K keypoints of the Euclidean distance, mm.
    """
    _check(pred, target, 2)
    return (pred - target).norm(dim=-1).mean(-1) * MM


def root_aligned_mpjpe(pred: torch.Tensor, target: torch.Tensor, root_index: int = 0) -> torch.Tensor:
    """MPJPE after translating both skeletons so their root keypoints coincide.

    Args:
        pred, target: ``(..., K, 3)`` keypoint positions, metres.
        root_index: index of the root keypoint in K (0 = pelvis for our keypoints).

    Returns:
        ``(...)`` mm; insensitive to a global translation of either skeleton (not to rotation).
    """
    _check(pred, target, 2)
    # Error first, then its root component removed: the same as aligning both skeletons, one
    # subtraction fewer (and the env's per-step arithmetic, so its metric is reproducible here).
    err = pred - target
    return (err - err[..., root_index: root_index + 1, :]).norm(dim=-1).mean(-1) * MM


def root_position_error(pred_root: torch.Tensor, target_root: torch.Tensor) -> torch.Tensor:
    """Distance between root positions.

    Args:
        pred_root, target_root: ``(..., 3)`` root (pelvis) positions, metres.

    Returns:
        ``(...)`` Euclidean distance, mm.
    """
    if pred_root.shape != target_root.shape or pred_root.shape[-1] != 3:
        raise ValueError(f"expected two (..., 3) tensors, got {tuple(pred_root.shape)} and "
                         f"{tuple(target_root.shape)}")
    return (pred_root - target_root).norm(dim=-1) * MM


def acceleration_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Acceleration error: keypoint second differences compared frame by frame.

    The acceleration of frame t is ``x[t+1] - 2 x[t] + x[t-1]`` (per frame squared, no division
    by the frame time, as in the HMR literature), so values depend on the frame rate.

    Args:
        pred, target: ``(..., T, K, 3)`` keypoint trajectories, metres, ``T >= 3``.

    Returns:
        ``(..., T - 2)`` mean over keypoints of the acceleration difference norm, mm/frame^2.
    """
    _check(pred, target, 3)
    if pred.shape[-3] < 3:
        raise ValueError(f"acceleration needs at least 3 frames, got {pred.shape[-3]}")

    def acc(x):
        return x[..., 2:, :, :] - 2 * x[..., 1:-1, :, :] + x[..., :-2, :, :]

    return (acc(pred) - acc(target)).norm(dim=-1).mean(-1) * MM


def foot_sliding(foot_pos: torch.Tensor, contact_height: float = 0.05) -> torch.Tensor:
    """Horizontal foot displacement per frame while the foot is on the ground.

    A foot is in contact between frames t and t+1 when its height is below ``contact_height``
    in both frames; sliding is the mean x-y displacement over all such (frame, foot) pairs.

    Args:
        foot_pos: ``(..., T, F, 3)`` foot point positions (e.g. the foot sites or sole
            centres), metres, z up.
        contact_height: contact threshold on z, metres.

    Returns:
        ``(...)`` mm/frame; 0 for a sequence without any contact.
    """
    if foot_pos.dim() < 3 or foot_pos.shape[-1] != 3:
        raise ValueError("expected foot positions of shape (..., T, F, 3), got "
                         f"{tuple(foot_pos.shape)}")
    low = foot_pos[..., 2] < contact_height                     # (..., T, F)
    contact = low[..., 1:, :] & low[..., :-1, :]                 # (..., T-1, F)
    step = (foot_pos[..., 1:, :, :2] - foot_pos[..., :-1, :, :2]).norm(dim=-1)
    total = (step * contact).sum((-1, -2))
    return total / contact.sum((-1, -2)).clamp_min(1) * MM


def step_acceleration_error(now: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """One step of :func:`acceleration_error` in a batched env.

    Args:
        now: ``(N, 2, P, 3)`` this frame's keypoints, simulated then reference, metres.
        history: ``(N, 2, 2, P, 3)`` the same at the last two frames (``[:, :, 0]`` the last).

    Returns:
        ``(N,)`` mm/frame^2.
    """
    acc = now - 2 * history[:, :, 0] + history[:, :, 1]
    return (acc[:, 0] - acc[:, 1]).norm(dim=-1).mean(-1) * MM


def step_foot_sliding(sole: torch.Tensor, prev: torch.Tensor, contact_height: float
                      ) -> torch.Tensor:
    """One step of :func:`foot_sliding` in a batched env, with contact read from the soles.

    Args:
        sole, prev: ``(N, F, 3)`` per foot this frame and the last: sole-centre x, y and the
            lowest sole corner's height, metres (NaN heights: no last frame).
        contact_height: a foot is down when its lowest corner is below this, metres.

    Returns:
        ``(N,)`` mm/frame: mean horizontal travel over the feet down in both frames (0 when
        none is).
    """
    down = (sole[..., 2] < contact_height) & (prev[..., 2] < contact_height)
    travel = torch.where(down, (sole[..., :2] - prev[..., :2]).norm(dim=-1),
                         torch.zeros_like(sole[..., 0]))
    return travel.sum(-1) / down.sum(-1).clamp_min(1) * MM


def fallen(root_height: torch.Tensor, threshold: float = FALL_HEIGHT) -> torch.Tensor:
    """Whether the humanoid is down at each frame: the root below ``threshold``.

    The one fall definition of the task: ``HumanoidMotion-v0`` terminates with ``fall`` exactly
    where this is true for its pelvis height and its config's ``fall_height``.

    Args:
        root_height: ``(...)`` root (pelvis) height above the floor, metres.
        threshold: metres (our pelvis stands at ~0.93 m, ~0.65 m in a deep squat).

    Returns:
        ``(...)`` bool.
    """
    return root_height < threshold


def fell(root_height: torch.Tensor, threshold: float = FALL_HEIGHT) -> torch.Tensor:
    """Whether each sequence fell: :func:`fallen` at some frame.

    Args:
        root_height: ``(..., T)`` root (pelvis) height above the floor, metres.
        threshold: metres.

    Returns:
        ``(...)`` bool.
    """
    return fallen(root_height, threshold).any(-1)


def fall_rate(root_height: torch.Tensor, threshold: float = FALL_HEIGHT) -> torch.Tensor:
    """Fraction of sequences that fell (see :func:`fell`).

    Args:
        root_height: ``(..., T)`` root heights, metres; every leading index is one sequence.
        threshold: metres.

    Returns:
        scalar tensor in [0, 1].
    """
    return fell(root_height, threshold).float().mean()


__all__ = ["FALL_HEIGHT", "MM", "acceleration_error", "fall_rate", "fallen", "fell", "foot_sliding",
           "mpjpe", "root_aligned_mpjpe", "root_position_error"]
