"""Humanoid assets and motion sources (rlkd.envs.humanoid): MJCF, skeleton FK, npz/BVH clips,
retargeting and procedural clips. Fast (a few seconds). Sampling and metrics:
test_humanoid_motions_sampling.py."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

from rlkd.envs.humanoid import metrics
from rlkd.envs.humanoid.motions import (
    PROCEDURAL,
    MotionClip,
    MotionError,
    MotionLibrary,
    load_bvh,
    load_motion,
    load_npz,
    procedural_clip,
    save_npz,
)
from rlkd.envs.humanoid.skeleton import ASSET_PATH

DATA = Path(__file__).resolve().parent / "data" / "mocap"
BVH = DATA / "cmu" / "131_01.bvh"


@pytest.fixture(scope="module")
def model():
    return mujoco.MjModel.from_xml_path(str(ASSET_PATH))


def _fk(skel, clip, dtype=torch.float64):
    return skel.fk(*(torch.as_tensor(a, dtype=dtype)
                     for a in (clip.root_pos, clip.root_rot, clip.joint_pos)))


# ------------------------------------------------------------------------------------- MJCF

def test_mjcf_loads_with_the_documented_layout(model, skel):
    assert (model.nbody - 1, model.nu, model.nq, model.nv) == (15, 28, 35, 34)
    assert 60.0 < skel.mass < 70.0
    assert model.opt.timestep == pytest.approx(0.005)
    assert model.opt.solver == mujoco.mjtSolver.mjSOL_NEWTON     # MuJoCo Warp has no PGS
    # Actuators drive the hinges in qpos order, with the joint ranges as target ranges.
    acts = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, model.actuator_trnid[i, 0])
            for i in range(model.nu)]
    assert tuple(acts) == skel.dof_names
    assert np.allclose(model.actuator_ctrlrange, skel.dof_range)
    assert (model.actuator_biasprm[:, 2] < 0).all()             # damping from dampratio
    for cam in ("track", "fixed"):
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, cam) >= 0
    assert skel.site_names == ("head", "right_hand", "left_hand", "right_foot", "left_foot")
    assert len(skel.keypoint_names) == skel.num_keypoints == 20


def test_stands_for_two_seconds_with_pd_targets_at_the_default_pose(model):
    data = mujoco.MjData(model)
    z0 = data.qpos[2]
    data.ctrl[:] = 0.0
    for _ in range(400):                                        # 2 s at 200 Hz
        mujoco.mj_step(model, data)
    assert np.isfinite(data.qpos).all()
    assert abs(data.qpos[2] - z0) < 0.03                         # pelvis height kept
    assert data.qpos[3] > 0.995                                   # upright (tilt < ~11 deg)
    assert np.abs(data.qvel).max() < 0.2                          # at rest, not oscillating
    assert np.abs(data.qpos[7:]).max() < 0.1


def test_stable_under_random_pd_targets(model):
    rng = np.random.default_rng(0)
    lo, hi = model.actuator_ctrlrange.T
    for _ in range(3):
        data = mujoco.MjData(model)
        for i in range(400):
            if i % 20 == 0:                                       # new target every 0.1 s
                data.ctrl[:] = rng.uniform(lo, hi)
            mujoco.mj_step(model, data)
        assert np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all()
        assert data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number == 0
        assert np.abs(data.qvel).max() < 200.0


# ------------------------------------------------------------------------------------- FK

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fk_matches_mj_kinematics(model, skel, dtype):
    rng = np.random.default_rng(1)
    n = 32
    q = rng.uniform(skel.dof_range[:, 0], skel.dof_range[:, 1], (n, skel.num_dofs))
    root_pos = rng.normal(size=(n, 3))
    root_rot = rng.normal(size=(n, 4))
    root_rot /= np.linalg.norm(root_rot, axis=1, keepdims=True)
    pos, rot = skel.fk(*(torch.as_tensor(a, dtype=dtype) for a in (root_pos, root_rot, q)))
    kp = skel.keypoints(pos, rot)
    sites = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, s) for s in skel.site_names]
    data = mujoco.MjData(model)
    for i in range(n):
        data.qpos[:3], data.qpos[3:7], data.qpos[7:] = root_pos[i], root_rot[i], q[i]
        mujoco.mj_kinematics(model, data)
        assert np.abs(pos[i].double().numpy() - data.xpos[1:]).max() < 1e-5
        assert np.abs(kp[i, skel.num_bodies:].double().numpy() - data.site_xpos[sites]).max() < 1e-5
        dots = np.abs((rot[i].double().numpy() * data.xquat[1:]).sum(-1))
        assert (1 - dots).max() < 1e-6                            # same rotation (up to sign)


def test_fk_batches_over_leading_dims(skel):
    q = torch.zeros(2, 3, skel.num_dofs)
    root = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(2, 3, 4)
    pos, rot = skel.fk(torch.zeros(2, 3, 3), root, q)
    assert pos.shape == (2, 3, skel.num_bodies, 3) and rot.shape == (2, 3, skel.num_bodies, 4)
    with pytest.raises(ValueError, match="expected 28"):
        skel.fk(torch.zeros(3), torch.tensor([1.0, 0, 0, 0]), torch.zeros(27))


def test_joint_pos_from_body_rot_inverts_fk(skel):
    rng = np.random.default_rng(2)
    q = torch.as_tensor(rng.uniform(skel.dof_range[:, 0], skel.dof_range[:, 1], (64, 28)))
    root = torch.tensor([[0.9, 0.1, -0.2, 0.3]], dtype=torch.float64)
    root = (root / root.norm()).expand(64, 4)
    _, rot = skel.fk(torch.zeros(64, 3, dtype=torch.float64), root, q)
    assert (skel.joint_pos_from_body_rot(rot) - q).abs().max() < 1e-9


# ------------------------------------------------------------------------------------- npz

def test_npz_round_trip_through_fk(tmp_path, skel, walk):
    first = save_npz(walk, tmp_path / "walk.npz")
    a = load_npz(first, skel)
    assert (a.name, a.fps, a.num_frames, a.joint_names) == ("walk", walk.fps, walk.num_frames,
                                                            skel.dof_names)
    assert np.allclose(a.joint_pos, walk.joint_pos, atol=1e-6)   # float32 on disk
    # npz -> FK -> hinge angles and root pose back -> npz: the same clip.
    _, rot = _fk(skel, a)
    back = MotionClip(fps=a.fps, root_pos=a.root_pos, root_rot=rot[:, 0].numpy(),
                      joint_pos=skel.joint_pos_from_body_rot(rot).numpy(), name=a.name,
                      joint_names=skel.dof_names)
    b = load_npz(save_npz(back, tmp_path / "again.npz"), skel)
    assert np.abs(b.joint_pos - a.joint_pos).max() < 1e-5
    assert np.abs(np.abs((b.root_rot * a.root_rot).sum(-1)) - 1).max() < 1e-6
    assert np.allclose(b.root_pos, a.root_pos)


def test_npz_columns_are_reordered_by_joint_names(tmp_path, skel, walk):
    perm = np.random.default_rng(3).permutation(skel.num_dofs)
    shuffled = MotionClip(fps=walk.fps, root_pos=walk.root_pos, root_rot=walk.root_rot,
                          joint_pos=walk.joint_pos[:, perm],
                          joint_names=tuple(skel.dof_names[i] for i in perm))
    clip = load_npz(save_npz(shuffled, tmp_path / "shuffled.npz"), skel)
    assert np.allclose(clip.joint_pos, walk.joint_pos, atol=1e-6)


def _good_fields(walk):
    return dict(fps=np.float64(30.0), root_pos=walk.root_pos, root_rot=walk.root_rot,
                joint_pos=walk.joint_pos)


@pytest.mark.parametrize("field, change, problem", [
    ("root_rot", "missing", "missing"),
    ("fps", "missing", "missing"),
    ("joint_pos", "shape", "shape"),
    ("root_pos", "shape", "shape"),
    ("root_pos", "nan", "non-finite"),
    ("joint_pos", "nan", "non-finite"),
    ("root_rot", "scale", "norm"),
    ("fps", "zero", "positive"),
    ("joint_names", "unknown", "do not match"),
])
def test_malformed_npz_names_file_and_field(tmp_path, skel, walk, field, change, problem):
    fields = _good_fields(walk)
    if change == "missing":
        del fields[field]
    elif change == "shape":
        fields[field] = fields[field][:, :-1]
    elif change == "nan":
        fields[field] = fields[field].copy()
        fields[field][5, 0] = np.nan
    elif change == "scale":
        fields[field] = fields[field] * 1.5
    elif change == "zero":
        fields[field] = np.float64(0.0)
    elif change == "unknown":
        fields[field] = np.array(list(skel.dof_names[:-1]) + ["tail_z"])
    path = tmp_path / f"bad_{field}_{change}.npz"
    np.savez(path, **fields)
    with pytest.raises(MotionError) as err:
        load_npz(path, skel)
    msg = str(err.value)
    assert path.name in msg and f"'{field}'" in msg and problem in msg


def test_not_an_npz_is_a_motion_error(tmp_path, skel):
    path = tmp_path / "junk.npz"
    path.write_text("not a zip")
    with pytest.raises(MotionError, match="junk.npz"):
        load_npz(path, skel)
    with pytest.raises(MotionError, match="unknown motion file type"):
        load_motion(tmp_path / "clip.fbx", skel)


# ------------------------------------------------------------------------------------- BVH

def test_bvh_parses_and_matches_the_parser_fk(cmu):
    import pybvh

    src, _, _ = cmu
    assert src.num_frames == 994 and src.fps == pytest.approx(120.0)
    assert len([n for n in src.names if not n.startswith("EndSite")]) == 31
    ref = pybvh.read_bvh_file(BVH, warn_on_world_up_disagreement=False).node_positions()
    pos, _ = src.fk()
    assert np.abs(pos - ref).max() < 1e-9


def test_real_bvh_retargets_onto_our_skeleton(cmu, skel):
    _, clip, report = cmu
    assert clip.num_frames == 994 and clip.fps == pytest.approx(120.0)
    assert clip.joint_names == skel.dof_names
    # Keypoint distance to the leg-scaled source: proportions differ (our arms and torso are
    # longer than this subject's), the legs match within ~1-2 cm.
    assert 0.95 < report.scale < 1.02
    assert report.fk_error_mean < 0.07
    for name in ("right_thigh", "left_shin", "right_foot"):
        assert report.fk_error_per_keypoint[name] < 0.03
    assert report.bone_angle_error_mean < 10.0
    assert report.clamped_fraction < 0.05
    # Plausible: pelvis ~0.9 m up, a few metres walked forward (+x), soles on the floor.
    assert 0.8 < np.median(clip.root_pos[:, 2]) < 1.0
    assert 2.0 < clip.root_pos[-1, 0] - clip.root_pos[0, 0] < 3.5
    pos, rot = _fk(skel, clip)
    lowest = skel.sole_points(pos, rot)[..., 2].amin((-1, -2))
    assert abs(float(lowest.quantile(0.05))) < 1e-6 and float(lowest.min()) > -0.02
    # No jumps between frames: unreachable source poses (a decomposition switching branch)
    # are ramped at the 20 rad/s joint speed cap, which touches few angles.
    assert np.abs(np.diff(clip.joint_pos, axis=0)).max() <= 20.0 / 120 + 1e-9
    assert report.rate_limited_fraction < 0.02


def test_bvh_through_load_motion_and_library(skel):
    lib = MotionLibrary.from_files([BVH], skel)
    assert lib.names == ("131_01",) and float(lib.duration[0]) == pytest.approx(993 / 120)


def _bvh_lines():
    lines = BVH.read_text().splitlines()
    frames = next(i for i, ln in enumerate(lines) if ln.startswith("Frames:"))
    lines[frames] = "Frames: 4"
    return lines[:frames + 2 + 4], frames + 3                    # first data line, 1-based


@pytest.mark.parametrize("case", ["offset", "number", "count", "frames", "missing"])
def test_malformed_bvh_names_file_and_line(tmp_path, case):
    lines, first = _bvh_lines()
    path = tmp_path / f"bad_{case}.bvh"
    if case == "offset":     # a joint block without its OFFSET line
        k = next(i for i, ln in enumerate(lines) if "JOINT LeftKnee" in ln)
        del lines[k + 2]
        expect = "line"
    elif case == "number":
        tok = lines[first].split()
        tok[7] = "abc"
        lines[first] = " ".join(tok)
        expect = f"line {first + 1}: not a number: 'abc'"
    elif case == "count":
        lines[first + 2] = " ".join(lines[first + 2].split()[:-1])
        expect = f"line {first + 3}: "
    elif case == "frames":
        lines = lines[:-1]
        expect = "field 'Frames': declares 4 frames, the file has 3"
    else:
        expect = "no such file"
    if case != "missing":
        path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MotionError) as err:
        load_bvh(path)
    assert path.name in str(err.value) and expect in str(err.value)


# ------------------------------------------------------------------------------------- procedural

@pytest.mark.parametrize("kind", PROCEDURAL)
def test_procedural_clips_touch_but_never_penetrate_the_floor(skel, kind):
    clip = procedural_clip(kind, skel)
    pos, rot = _fk(skel, clip)
    lowest = skel.sole_points(pos, rot)[..., 2].amin((-1, -2))
    assert float(lowest.min()) > -1e-6 and float(lowest.abs().max()) < 1e-6   # on the floor
    assert np.allclose(clip.joint_pos[0], clip.joint_pos[-1], atol=1e-6)     # loop-closed
    lo, hi = skel.dof_range.T
    assert ((clip.joint_pos >= lo - 1e-9) & (clip.joint_pos <= hi + 1e-9)).all()
    assert np.abs(np.diff(clip.joint_pos, axis=0)).max() * clip.fps < 20.0    # rad/s


def test_procedural_walk_advances_without_foot_sliding(skel, walk):
    disp = walk.root_pos[-1] - walk.root_pos[0]
    assert disp[0] / walk.duration == pytest.approx(1.2, abs=0.05) and abs(disp[1]) < 0.02
    assert 0.85 < walk.root_pos[:, 2].min() and walk.root_pos[:, 2].max() < 0.97
    pos, rot = _fk(skel, walk, torch.float32)
    sole = skel.sole_points(pos, rot)                              # (T, 2, 4, 3)
    toes = sole[:, :, 2:].mean(2)                                   # toe-edge midpoints (T, 2, 3)
    assert float(metrics.foot_sliding(toes, contact_height=0.005)) < 3.0   # mm/frame
    turn = procedural_clip("turn", skel)
    heading = np.unwrap(np.arctan2(*np.diff(turn.root_pos[:, :2], axis=0).T[::-1]))
    assert heading[-1] - heading[0] > 0.6                          # turned left
