"""Humanoid motion library (rlkd.envs.humanoid.motions.library): batched sampling against a
plain per-sample reference, looping, phase sampling; and the tracking metrics
(rlkd.envs.humanoid.metrics), including the one fall definition shared with the env."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlkd.envs.humanoid import metrics
from rlkd.envs.humanoid.config import HumanoidMotionConfig
from rlkd.envs.humanoid.motions import (
    MotionLibrary,
    clip_velocities,
    procedural_clip,
)



# ------------------------------------------------------------------------------------- sampling

def _np_slerp(a, b, t):
    if np.dot(a, b) < 0:
        b = -b
    th = math.acos(min(1.0, float(np.dot(a, b))))
    if th < 1e-9:
        return a
    return (math.sin((1 - t) * th) * a + math.sin(t * th) * b) / math.sin(th)


def _reference_sample(clip, t, mode):
    """One sample, written plainly (the library's spec)."""
    lin, ang, jv = clip_velocities(clip)
    dur = clip.duration
    loops = math.floor(t / dur) if mode == "wrap" else 0
    tau = t - loops * dur if mode == "wrap" else min(max(t, 0.0), dur)
    f = tau * clip.fps
    f0 = min(max(int(math.floor(f)), 0), clip.num_frames - 1)
    f1 = min(f0 + 1, clip.num_frames - 1)
    a = min(max(f - f0, 0.0), 1.0)
    out = {k: (1 - a) * x[f0] + a * x[f1] for k, x in (
        ("root_pos", clip.root_pos), ("joint_pos", clip.joint_pos), ("lin", lin), ("ang", ang),
        ("jv", jv))}
    out["root_rot"] = _np_slerp(clip.root_rot[f0], clip.root_rot[f1], a)

    def yaw(q):
        w, x, y, z = q
        return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))

    dyaw = yaw(clip.root_rot[-1]) - yaw(clip.root_rot[0])
    c, s = math.cos(dyaw), math.sin(dyaw)
    rot2 = np.array([[c, -s], [s, c]])
    step = clip.root_pos[-1, :2] - rot2 @ clip.root_pos[0, :2]
    yaw_q = np.array([math.cos(dyaw / 2), 0, 0, math.sin(dyaw / 2)])
    rot3 = np.eye(3)
    rot3[:2, :2] = rot2
    for _ in range(abs(loops)):  # apply the loop transform (or its inverse) loop by loop
        if loops > 0:
            out["root_pos"][:2] = rot2 @ out["root_pos"][:2] + step
            out["root_rot"] = _qmul(yaw_q, out["root_rot"])
            out["lin"], out["ang"] = rot3 @ out["lin"], rot3 @ out["ang"]
        else:
            out["root_pos"][:2] = rot2.T @ (out["root_pos"][:2] - step)
            out["root_rot"] = _qmul(yaw_q * [1, -1, -1, -1], out["root_rot"])
            out["lin"], out["ang"] = rot3.T @ out["lin"], rot3.T @ out["ang"]
    return out


def _qmul(a, b):
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw])


@pytest.mark.parametrize("mode", ["wrap", "clamp"])
def test_batched_sampling_matches_per_sample_reference(skel, cmu, mode):
    clips = [procedural_clip("walk", skel), procedural_clip("turn", skel), cmu[1]]
    lib = MotionLibrary(clips, skel, mode=mode, dtype=torch.float64, exact_fk=True)
    gen = torch.Generator().manual_seed(0)
    n = 48
    ids = lib.sample_clip_ids(n, gen)
    times = torch.rand(n, generator=gen, dtype=torch.float64) * 20.0 - 3.0   # before, in, after
    times[:3] = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64) * lib.duration[ids[:3]]
    s = lib.sample(ids, times)
    for field, shape in (("root_pos", (n, 3)), ("root_rot", (n, 4)), ("joint_vel", (n, 28)),
                         ("body_pos", (n, 15, 3)), ("keypoints", (n, 20, 3))):
        assert getattr(s, field).shape == shape
    for i in range(n):
        ref = _reference_sample(clips[int(ids[i])], float(times[i]), mode)
        assert np.allclose(s.root_pos[i].numpy(), ref["root_pos"], atol=1e-9)
        assert np.allclose(s.joint_pos[i].numpy(), ref["joint_pos"], atol=1e-9)
        assert abs(abs(float((s.root_rot[i].numpy() * ref["root_rot"]).sum())) - 1) < 1e-9
        assert np.allclose(s.root_lin_vel[i].numpy(), ref["lin"], atol=1e-9)
        assert np.allclose(s.root_ang_vel[i].numpy(), ref["ang"], atol=1e-9)
        assert np.allclose(s.joint_vel[i].numpy(), ref["jv"], atol=1e-9)
    pos, rot = skel.fk(s.root_pos, s.root_rot, s.joint_pos)
    assert torch.allclose(s.body_pos, pos) and torch.allclose(s.keypoints, skel.keypoints(pos, rot))
    # The default blends per-frame body poses: exact at frames, close to FK in between.
    fast = MotionLibrary(clips, skel, mode=mode, dtype=torch.float64).sample(ids, times)
    for field in ("root_pos", "root_rot", "joint_pos", "joint_vel"):
        assert torch.equal(getattr(fast, field), getattr(s, field))
    err = (fast.keypoints - s.keypoints).norm(dim=-1)
    assert err.max() < 0.01 and err.mean() < 1e-3, (err.max(), err.mean())
    assert torch.allclose(fast.keypoints[:3], s.keypoints[:3], atol=1e-9)  # frame times


def test_wrap_keeps_walking_and_velocities_match_positions(skel, walk):
    lib = MotionLibrary([walk], skel)                            # float32, wrap
    ids = torch.zeros(3, dtype=torch.long)
    d = float(lib.duration[0])
    s = lib.sample(ids, torch.tensor([0.4, 0.4 + d, 0.4 + 2 * d]))
    step = walk.root_pos[-1, 0] - walk.root_pos[0, 0]
    assert torch.allclose(s.root_pos[1:, 0] - s.root_pos[:-1, 0], torch.full((2,), step), atol=1e-4)
    assert torch.allclose(s.joint_pos[1:], s.joint_pos[:1].expand(2, -1), atol=1e-5)
    # The sampled velocity is the derivative of the sampled position (mid-clip, smooth part).
    t = torch.tensor([0.7, 0.7 + 1e-2])
    a, b = lib.sample(ids[:2], t).root_pos
    v = lib.sample(ids[:1], t[:1] + 5e-3).root_lin_vel[0]
    assert torch.allclose((b - a) / 1e-2, v, atol=0.15)


def test_sample_times_are_uniform_phases(skel):
    lib = MotionLibrary.procedural(skel, kinds=("walk", "squat"))
    gen = torch.Generator().manual_seed(0)
    ids = lib.sample_clip_ids(4000, gen)
    t = lib.sample_times(ids, gen)
    assert t.shape == (4000,) and (t >= 0).all() and (t <= lib.duration[ids]).all()
    phase = t / lib.duration[ids]
    assert abs(float(phase.mean()) - 0.5) < 0.03
    assert abs(float((ids == 1).float().mean()) - 0.5) < 0.05


# ------------------------------------------------------------------------------------- metrics

def test_metrics_on_hand_made_examples():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 10, 20, 3, generator=gen)
    zero4, zero410 = torch.zeros(4), torch.zeros(4, 10)
    assert torch.allclose(metrics.mpjpe(x, x), zero410)
    offset = torch.tensor([0.03, 0.04, 0.0])                         # 5 cm
    assert torch.allclose(metrics.mpjpe(x + offset, x), torch.full((4, 10), 50.0))
    assert torch.allclose(metrics.root_aligned_mpjpe(x + offset, x), zero410, atol=1e-4)
    assert torch.allclose(metrics.root_position_error(x[..., 0, :] + offset, x[..., 0, :]),
                          torch.full((4, 10), 50.0))
    # Root-aligned keeps what is not a translation: one keypoint off by 2 cm of 20 -> 1 mm.
    bent = x.clone()
    bent[..., 5, 2] += 0.02
    assert torch.allclose(metrics.root_aligned_mpjpe(bent, x), torch.full((4, 10), 1.0), atol=1e-4)
    # Acceleration: a constant offset has none; x = a t^2 / 2 has a per frame^2.
    assert torch.allclose(metrics.acceleration_error(x + offset, x), torch.zeros(4, 8), atol=1e-4)
    t = torch.arange(6.0)
    traj = torch.zeros(6, 2, 3)
    traj[..., 0] = 0.5 * 0.004 * t[:, None] ** 2                      # 4 mm/frame^2 along x
    assert torch.allclose(metrics.acceleration_error(traj, torch.zeros_like(traj)),
                          torch.full((4,), 4.0))
    # Foot sliding: a grounded foot moving 1 cm/frame slides 10 mm/frame; a lifted one doesn't count.
    feet = torch.zeros(4, 5, 2, 3)
    feet[..., 0, 0] = 0.01 * torch.arange(5.0)                        # foot 0 slides along x
    feet[..., 1, 2] = 0.2                                             # foot 1 in the air, moving
    feet[..., 1, 1] = 0.5 * torch.arange(5.0)
    assert torch.allclose(metrics.foot_sliding(feet), torch.full((4,), 10.0))
    assert torch.allclose(metrics.foot_sliding(feet[..., 1:, :]), zero4)
    # Falls: the root went below the threshold in one of two sequences.
    heights = torch.tensor([[0.9, 0.92, 0.91], [0.9, 0.5, 0.2]])
    assert metrics.fell(heights).tolist() == [False, True]
    assert float(metrics.fall_rate(heights)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.mpjpe(x, x[..., :3, :])


def test_one_fall_threshold_shared_by_the_env_config_and_the_metrics():
    assert metrics.FALL_HEIGHT == HumanoidMotionConfig().fall_height
    heights = torch.tensor([[0.9, 0.51, 0.5], [0.9, 0.6, 0.49]])
    # Strictly below the threshold is a fall, per frame; a sequence fell if any frame did.
    assert metrics.fallen(heights).tolist() == [[False, False, False], [False, False, True]]
    assert metrics.fell(heights).tolist() == [False, True]
    assert metrics.fell(heights, threshold=0.45).tolist() == [False, False]
