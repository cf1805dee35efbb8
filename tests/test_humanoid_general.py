"""The general tracker's infrastructure (issue 13): motion specs and sets, blended
concatenation, per-clip modes and weights, hard-negative sampling, fail-state recovery."""

from __future__ import annotations

import math
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import torch

import rlkd
from rlkd.core.rng import BatchRNG
from rlkd.envs.humanoid import Skeleton, procedural_clip
from rlkd.envs.humanoid.motions import MotionLibrary, load_library
from rlkd.envs.humanoid.motions.mix import concatenate
from rlkd.envs.humanoid.motions.spec import ASSETS, SETS_DIR, parse_spec
from rlkd.envs.humanoid.recovery import DROP_CLEARANCE
from rlkd.sim.rotations import quat_rotate, quat_yaw

ID = "HumanoidMotion-v0"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def skel():
    return Skeleton.from_mjcf()


def _make(n=8, **kw):
    return rlkd.make(ID, num_envs=n, seed=0, num_threads=1, **kw)


# ------------------------------------------------------------------------------ motion specs
def test_spec_names_weights_and_turn_rates(skel):
    lib = load_library("walk*2,turn@0.8:-0.5,turn@1.0:0.75*0.5,squat", skel, "cpu", "wrap")
    assert lib.names == ("walk", "turn@0.8:-0.5", "turn@1.0:0.75", "squat")
    assert lib.weights.tolist() == [2.0, 1.0, 0.5, 1.0]
    # The turn's heading changes at the rate and in the direction written (right is < 0).
    for i, rate in ((1, -0.5), (2, 0.75)):
        t = torch.tensor([0.0, 1.0])
        st = lib.sample(torch.full((2,), i), t)
        dyaw = float(torch.atan2(torch.sin(quat_yaw(st.root_rot[1]) - quat_yaw(st.root_rot[0])),
                                 torch.cos(quat_yaw(st.root_rot[1]) - quat_yaw(st.root_rot[0]))))
        assert dyaw == pytest.approx(rate, abs=0.08)


@pytest.mark.parametrize("spec, problem", [
    ("turn@0.8:2.5", "yaw rate"), ("turn@0.8:left", "yaw rate"), ("walk@1.0:0.3", "only turn"),
    ("walk*0", "weight"), ("walk*x", "weight"), ("squat@1.0", "only walk and turn"),
    ("walk+", "empty part"), ("@nosuchset", "no such shipped motion set"),
])
def test_bad_specs_name_the_problem(skel, spec, problem):
    with pytest.raises(ValueError, match=problem):
        load_library(spec, skel, "cpu", "wrap")


def test_yaml_motion_set_with_weights_modes_and_relative_files(skel, tmp_path):
    (tmp_path / "clips").mkdir()
    bvh = ROOT / "tests/data/mocap/cmu/131_01.bvh"
    (tmp_path / "clips" / "cmu.bvh").write_bytes(bvh.read_bytes())
    f = tmp_path / "set.yaml"
    f.write_text("blend: 0.4\nclips:\n  - walk@1.0\n  - {motion: wave, weight: 3}\n"
                 "  - {motion: [walk@1.0, squat], name: w_sq}\n"
                 "  - {motion: 'clips/cmu.bvh', mode: clamp, weight: 2}\n")
    lib = load_library(f"@{f},jog_in_place*2", skel, "cpu", "wrap")
    assert lib.names == ("walk@1.0", "wave", "w_sq", "cmu", "jog_in_place")
    assert lib.weights.tolist() == [1.0, 3.0, 1.0, 2.0, 2.0]
    assert lib.modes == ("wrap", "wrap", "wrap", "clamp", "wrap")
    with_blend = parse_spec(f"@{f}")[2]
    assert with_blend.blend == 0.4 and with_blend.parts == ("walk@1.0", "squat")


@pytest.mark.parametrize("body, problem", [
    ("clips:\n  - {motion: walk, speed: 2}\n", "entry 1: unknown keys \\['speed'\\]"),
    ("- walk\n- {weight: 2}\n", "entry 2: missing 'motion'"),
    ("- walk\n- {motion: walk, weight: -1}\n", "entry 2: 'weight' must be a number > 0"),
    ("- {motion: walk, mode: loop}\n", "entry 1: 'mode' must be 'wrap' or 'clamp'"),
    ("- '@general'\n", "entry 1.*do not nest"),
    ("- moonwalk\n", "moonwalk.*entry 1"),
    ("- 'walk,squat'\n", "entry 1: 'motion' must be one clip"),
    ("clips: 3\n", "non-empty list"),
    ("- [walk\n", "not valid YAML"),
])
def test_bad_motion_set_names_file_entry_and_problem(skel, tmp_path, body, problem):
    f = tmp_path / "bad.yaml"
    f.write_text(body)
    with pytest.raises(ValueError, match=problem) as info:
        load_library(f"@{f}", skel, "cpu", "wrap")
    assert "bad.yaml" in str(info.value)


def test_the_shipped_general_set_and_its_mocap_are_package_data(skel):
    lib = load_library("@general", skel, "cpu", "wrap")
    names = lib.names
    walks = [n for n in names if n.startswith("walk@") and "+" not in n]
    assert [float(n[5:]) for n in walks] == pytest.approx([0.6, 0.8, 1.0, 1.2, 1.4, 1.6])
    rates = {float(n.split(":")[1]) for n in names if n.startswith("turn@") and "+" not in n}
    assert {-0.75, -0.5, -0.25, 0.25, 0.5, 0.75} <= rates
    assert {"jog_in_place", "squat", "wave", "131_01", "131_02"} <= set(names)
    assert sum("+" in n for n in names) >= 4
    assert lib.modes[names.index("131_02")] == "clamp"
    for f in ("mocap/cmu/131_01.bvh", "mocap/cmu/131_02.bvh", "mocap/README.md"):
        assert (ASSETS / f).exists()
    assert "mocap.cs.cmu.edu" in (ASSETS / "mocap/README.md").read_text()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["rlkd.envs.humanoid"]
    pkg = ASSETS.parent
    for f in [*ASSETS.glob("mocap/**/*.*"), *SETS_DIR.glob("*.yaml")]:
        assert any(fnmatch(str(f.relative_to(pkg)), g) for g in globs), f


# ------------------------------------------------------------------------------ concatenation
def _max_rates(clip):
    dq = np.abs(np.diff(clip.joint_pos, axis=0)).max()
    dp = np.linalg.norm(np.diff(clip.root_pos, axis=0), axis=1).max()
    return dq, dp


@pytest.mark.parametrize("kinds", [(("walk", 1.0, None), ("turn", 0.8, 0.5)),
                                   (("walk", 1.2, None), ("wave", None, None)),
                                   (("turn", 0.6, -0.75), ("turn", 0.6, 0.75))])
@pytest.mark.parametrize("loop", [True, False])
def test_blended_concatenation_has_no_joint_jump(skel, kinds, loop):
    parts = [procedural_clip(k, skel, speed=v, yaw_rate=r) for k, v, r in kinds]
    out = concatenate(parts, blend=0.5, loop=loop)
    dq, dp = _max_rates(out)
    rates = [_max_rates(p) for p in parts]
    # Joints: within the parts' own per-frame change plus the blend's share of the pose gap
    # (1.5 x gap / blend frames), and within 1.25x the parts' own; the root moves no faster
    # than the faster part.
    lo = np.minimum(*[p.joint_pos.min(0) for p in parts])
    hi = np.maximum(*[p.joint_pos.max(0) for p in parts])
    own = max(r[0] for r in rates)
    assert dq <= own + 1.5 * (hi - lo).max() / (0.5 * out.fps) + 1e-9
    assert dq <= 1.25 * own
    assert dp <= max(r[1] for r in rates) * 1.05 + 1e-9
    naive = np.concatenate([p.joint_pos for p in parts])
    if kinds[1][0] == "wave":  # played back to back, the arm would jump by > 1.5 rad
        assert np.abs(np.diff(naive, axis=0)).max() > 1.5
    if loop:  # last frame = first frame up to a planar motion: the library loops it smoothly
        np.testing.assert_allclose(out.joint_pos[0], out.joint_pos[-1], atol=1e-9)
        assert out.root_pos[0, 2] == pytest.approx(out.root_pos[-1, 2], abs=1e-9)


def test_looping_concatenation_is_continuous_through_the_library(skel):
    lib = load_library("walk@1.0+turn@0.8:0.5,walk@1.0,turn@0.8:0.5", skel, "cpu", "wrap")

    def max_step(i):  # largest keypoint move between samples 12.5 ms apart, m
        t = torch.arange(0.0, 2.5 * float(lib.duration[i]), 0.0125)
        st = lib.sample(torch.full((len(t),), i), t)
        return float((st.keypoints[1:] - st.keypoints[:-1]).norm(dim=-1).max()), st

    mixed, st = max_step(0)
    assert mixed <= 1.1 * max(max_step(1)[0], max_step(2)[0])  # no jump at seams or the loop
    assert float((st.root_pos[-1, :2] - st.root_pos[0, :2]).norm()) > 2.0  # keeps travelling


def test_per_clip_modes_in_one_library(skel):
    walk, wave = procedural_clip("walk", skel), procedural_clip("wave", skel)
    lib = MotionLibrary([walk, wave], skel, mode="wrap", modes=[None, "clamp"])
    t = torch.tensor([5.0, 5.0])
    st = lib.sample(torch.tensor([0, 1]), t)
    assert float(st.root_pos[0, 0]) > 4.0                             # the walk carried on
    end = lib.sample(torch.tensor([1]), torch.tensor([float(lib.duration[1])]))
    torch.testing.assert_close(st.joint_pos[1], end.joint_pos[0])     # the wave held its end


# ------------------------------------------------------------------------------ reset draws
def test_equal_weights_draw_as_before_and_start_phase(skel):
    env = _make(16, motion="walk,squat,wave")
    env.reset(seed=7)
    u = BatchRNG(16, 7).uniform(None, 2)
    clip = torch.minimum((u[:, 0] * 3).long(), torch.tensor(2))
    assert torch.equal(env.clip_ids, clip)
    assert torch.equal(env.t0, u[:, 1] * env.motions.duration[clip].float())
    env.close()
    env = _make(16, motion="walk,squat", init_phase="start")
    env.reset(seed=7)
    assert torch.equal(env.t0, torch.zeros(16))
    env.close()


def test_forced_starts_run_chosen_clips_from_chosen_times():
    env, free = _make(6, motion="walk,squat,wave"), _make(6, motion="walk,squat,wave")
    env.force_starts(torch.tensor([2, 2, 1, 0, -1, 1]),
                     torch.tensor([0.0, 0.5, 1.0, 0.25, 0.0, 99.0]))
    env.reset(seed=0)
    free.reset(seed=0)
    assert env.clip_ids.tolist()[:4] == [2, 2, 1, 0] and int(env.clip_ids[5]) == 1
    torch.testing.assert_close(env.t0[[0, 1, 2, 3, 5]], torch.tensor([0.0, 0.5, 1.0, 0.25, 6.0]))
    assert env.clip_ids[4] == free.clip_ids[4] and env.t0[4] == free.t0[4]  # -1: drawn
    env.force_starts(None)
    env.reset(seed=0)
    assert torch.equal(env.clip_ids, free.clip_ids) and torch.equal(env.t0, free.t0)
    with pytest.raises(ValueError, match="force_starts"):
        env.force_starts(torch.tensor([3, 0, 0, 0, 0, 0]))
    env.close()
    free.close()


def test_weights_set_the_reset_frequencies():
    env = _make(512, motion="walk*3,squat")
    env.reset(seed=0)
    share = float((env.clip_ids == 0).float().mean())
    assert share == pytest.approx(0.75, abs=0.05)
    p, _ = env.sampling_probabilities()
    torch.testing.assert_close(p, torch.tensor([0.75, 0.25]))
    env.close()


def test_hard_negative_probabilities_follow_the_formula():
    env = _make(4, motion="walk*2,squat,wave", hard_negative=True, hard_negative_bins=2,
                hard_negative_eps=0.1, hard_negative_alpha=2.0)
    env.hn_fail[:] = torch.tensor([[0.0, 0.0], [1.0, 0.5], [0.2, 0.0]])
    p, q = env.sampling_probabilities()
    F = torch.tensor([0.0, 0.75, 0.1])
    want = torch.tensor([2.0, 1.0, 1.0]) * (0.1 + F) ** 2
    torch.testing.assert_close(p, want / want.sum())
    torch.testing.assert_close(q[1], torch.tensor([1.1 ** 2, 0.6 ** 2]) / (1.1 ** 2 + 0.6 ** 2))
    env.close()


@pytest.mark.parametrize("mining", [False, True])
def test_failures_on_one_clip_shift_the_sampling_toward_it(mining):
    # Zero residual actions: the standing wave holds, the 2.5 m/s walk loses tracking at once.
    env = _make(32, motion="wave,walk@2.5", action_mode="residual", max_episode_steps=25,
                hard_negative=mining, hard_negative_bins=4)
    env.reset(seed=0)
    for _ in range(100):
        env.step(torch.zeros(32, 28))
    stats = {s["name"]: s for s in env.clip_stats()}
    assert stats["walk@2.5"]["fail_rate"] > 0.8 and stats["wave"]["fail_rate"] < 0.1
    assert stats["walk@2.5"]["failures"] > 50 and stats["wave"]["episodes"] > 10
    # The statistics are env tensors: saved and restored with the env's state.
    state = env.state_dict()
    assert torch.equal(state["tensors"]["hn_fail"], env.hn_fail)
    p_walk = stats["walk@2.5"]["probability"]
    if mining:
        assert p_walk > 0.85
    else:
        assert p_walk == pytest.approx(0.5)
    drawn = []
    for seed in range(3, 11):  # fresh resets draw in those proportions
        env.reset(seed=seed)
        drawn.append(env.clip_ids.clone())
    drawn = torch.cat(drawn)
    share = float((drawn == 1).float().mean())
    assert share == pytest.approx(p_walk, abs=0.08)
    env.close()


def test_phase_bins_concentrate_starts_where_failures_are():
    env = _make(256, motion="walk", hard_negative=True, hard_negative_bins=4)
    env.hn_fail[0] = torch.tensor([0.0, 0.0, 1.0, 0.0])
    env.reset(seed=0)
    frac = env.t0 / env.motions.duration[0]
    in_bin = ((frac >= 0.5) & (frac < 0.75)).float().mean()
    assert float(in_bin) == pytest.approx(1.1 / 1.4, abs=0.07)
    assert torch.equal(env.start_bin, (frac * 4).long().clamp(0, 3))
    env.close()


# ------------------------------------------------------------------------------ recovery
def test_recovery_resets_start_where_they_say():
    env = _make(64, motion="walk,squat", recovery_fraction=0.75, recovery_fallen=0.5,
                recovery_offset=(1.0, 1.5), recovery_yaw=0.5)
    env.reset(seed=0)
    kind = env.recovery_kind
    assert 0.6 < float((kind > 0).float().mean()) < 0.9
    fell, off, plain = kind == 1, kind == 2, kind == 0
    assert fell.sum() >= 10 and off.sum() >= 10
    qpos = env.sim.qpos.float()
    ref = env._reference(None)
    # Fallen: lying (pelvis low, its vertical axis turned horizontal), its lowest geometry
    # point just above the floor, at rest.
    up = quat_rotate(qpos[:, 3:7], torch.tensor([0.0, 0.0, 1.0]).expand(64, 3))[:, 2]
    assert bool((qpos[fell, 2] < 0.45).all()) and bool((up[fell].abs() < 0.45).all())
    low = env.lowest_point(qpos)
    torch.testing.assert_close(low[fell], torch.full_like(low[fell], DROP_CLEARANCE))
    assert float(env.sim.qvel[fell].abs().max()) == 0.0
    # Offset: upright, 1-1.5 m from the reference pelvis, heading within 0.5 rad of it.
    d = (qpos[:, :2] - ref.root_pos[:, :2]).norm(dim=-1)
    assert bool((d[off] >= 1.0 - 1e-4).all() and (d[off] <= 1.5 + 1e-4).all())
    dyaw = torch.remainder(quat_yaw(qpos[:, 3:7]) - quat_yaw(ref.root_rot) + math.pi,
                           2 * math.pi) - math.pi
    assert bool((dyaw[off].abs() <= 0.5 + 1e-4).all()) and bool((qpos[off, 2] == ref.root_pos[off, 2]).all())
    assert float(d[plain].max()) < 1e-5
    env.close()


def test_recovery_grace_then_termination_and_recovered_flags():
    env = _make(16, motion="squat", action_mode="residual", recovery_fraction=1.0,
                recovery_fallen=1.0, recovery_grace=0.5)
    env.reset(seed=0)
    ended_at = torch.zeros(16, dtype=torch.long)
    for t in range(1, 40):
        _, _, term, _, info = env.step(torch.zeros(16, 28))
        assert "recovery" in info["reward_terms"]
        ep = info.get("episode")
        if ep is not None:
            assert bool(ep["recovery_start"].all()) and not bool(ep["recovered"].any())
            assert bool(ep["fall"].all())
            ended_at[ep["env_ids"]] = torch.where(ended_at[ep["env_ids"]] == 0, t,
                                                  ended_at[ep["env_ids"]])
    # Lying still, nobody recovers: every episode ends on a fall right after its grace.
    grace_steps = int(0.5 / env.dt + 1e-6)
    assert bool((ended_at == grace_steps + 1).all()), ended_at
    env.close()
    # Offset 0: the start is on the reference, so it has recovered at the first step.
    env = _make(8, motion="squat", action_mode="residual", recovery_fraction=1.0,
                recovery_fallen=0.0, recovery_offset=(0.0, 0.0), recovery_yaw=0.0,
                max_episode_steps=3)
    env.reset(seed=0)
    for _ in range(3):
        _, _, _, _, info = env.step(torch.zeros(8, 28))
    ep = info["episode"]
    assert bool(ep["recovered"].all())
    torch.testing.assert_close(ep["recovery_time"], torch.full((8,), env.dt))
    assert env.hn_episodes.sum() == 0  # recovery episodes stay out of the failure statistics
    env.close()


def test_recovery_off_leaves_flags_and_terms_alone():
    env = _make(4)
    env.reset(seed=0)
    _, _, _, _, info = env.step(torch.zeros(4, 28))
    assert "recovery" not in info["reward_terms"]
    assert not hasattr(env, "_geom_pts")
    env.close()


def test_recovery_residual_scale_widens_the_range_only_far_below_the_reference():
    # Half the envs start lying (pelvis ~0.75 m below the reference), half as the reference.
    kw = dict(motion="walk", action_mode="residual", recovery_fraction=0.5, recovery_fallen=1.0)
    env = _make(32, recovery_residual_scale=1.5, **kw)
    env.reset(seed=0)
    fell = env.recovery_kind == 1
    assert 0 < int(fell.sum()) < 32
    nxt = env._reference(None, env._next_step)
    rr = env.residual_range(nxt)[:, 0]
    # Lying pelvises sit 0.15-0.45 m high (a leg in a stride, turned, can hold one up).
    assert bool((rr[fell] > 1.0).all()) and float((rr[fell] == 1.5).float().mean()) > 0.5, rr
    torch.testing.assert_close(rr[~fell], torch.full_like(rr[~fell], 0.5))
    a = torch.full((32, 28), 0.8)
    t = env.pd_targets(a)
    hi = env.q_mid + env.q_half
    want = torch.minimum(nxt.joint_pos + rr[:, None] * 0.8, hi)
    torch.testing.assert_close(t, want)
    # The absolute action with the same targets (a residual teacher's label) agrees.
    torch.testing.assert_close(env.pd_targets(env.to_absolute(a, "residual"), "absolute"), t,
                               atol=1e-5, rtol=0)
    # Off (the default): the same starts get the plain range.
    off = _make(32, **kw)
    off.reset(seed=0)
    assert off.residual_range(off._reference(None, off._next_step)) == 0.5
    torch.testing.assert_close(off.pd_targets(a), torch.minimum(nxt.joint_pos + 0.4, hi))
    env.close()
    off.close()


# ------------------------------------------------------------------------------ the study
def _study():
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import humanoid_general_stats as stats
    import humanoid_general_tracker as study

    return study, stats


def test_study_motion_files_hold_131_02_out(skel, tmp_path):
    study, _ = _study()
    files = study.motion_files(tmp_path)
    train = load_library(files["no_131_02"], skel, "cpu", "wrap").names
    full = load_library("@general", skel, "cpu", "wrap").names
    assert set(full) - set(train) == {"131_02"}
    ev = load_library(files["eval"], skel, "cpu", "wrap")
    assert ev.names == full + study.HELDOUT
    assert ev.modes[ev.names.index("131_02")] == "clamp"
    assert not set(study.HELDOUT) & set(full)


def test_study_statistics_split_families_and_targets():
    study, stats = _study()
    held = (study.HELDOUT, study.HELD_OUT_CMU)

    def ev(trained, good):
        clips = {}
        for c in ("walk@1.2", "turn@1.0:0.5", "squat", "walk@1.0+wave", "131_01", "131_02",
                  "walk@0.5", "turn@0.8:0.4"):
            e = 30.0 if good else 200.0
            clips[c] = {"completion": [1.0 if good else 0.0] * 4, "fall": [0.0] * 4,
                        "mpjpe": [e, e + 2, e - 2, e], "mpjpe_local": [e / 2] * 4,
                        "root_error": [e] * 4}
        rec = {"fallen": {"recovered": [1.0, 1.0, 0.0, 1.0], "recovery_time": [1.0, 2.0, 0, 6.0]}}
        return {"trained_on": trained, "clips": clips, "recovery": rec}

    evals = {"specialist": ev("walk", False), "general_s2": ev("no_131_02", True)}
    fam, clips, rec = stats.analyse(evals, "general_s2", held)
    assert clips["general_s2"]["131_02"]["split"] == "heldout"
    assert clips["specialist"]["131_02"]["split"] == "heldout"   # labelled like the general one
    assert clips["general_s2"]["walk@1.0+wave"]["family"] == "concat"
    assert fam["general_s2"]["train"]["procedural"]["mpjpe"]["clips"] == 4
    assert fam["general_s2"]["heldout"]["walk"]["mpjpe"]["mean"] == pytest.approx(30.0)
    assert rec["general_s2"]["fallen"]["rate_5s"]["mean"] == pytest.approx(0.5)  # 6 s is late
    tg = stats.targets(fam, clips, rec, "general_s2")
    assert tg["train_mpjpe_mm"]["met"] and tg["cmu_completion"]["met"]
    assert tg["fall_recovery_within_5s"]["met"] is False
    assert tg["walk_mpjpe_over_specialist"]["value"] == pytest.approx(30.0 / 200.0)
    evals["general_all"] = ev("all", True)
    _, clips, _ = stats.analyse(evals, "general_all", held)
    assert clips["general_all"]["131_02"]["split"] == "train"


@pytest.mark.slow
def test_study_quick_runs_end_to_end(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(ROOT / "scripts/humanoid_general_tracker.py"), "--quick",
                    "--threads", "1", "--runs", str(tmp_path)], check=True, cwd=ROOT, env=env,
                   capture_output=True, text=True, timeout=900)
    rep = json.loads((tmp_path / "humanoid_general_tracker_quick.json").read_text())
    assert rep["headline"] == "general_s2" and not rep["missing"]
    assert set(rep["targets"]) >= {"train_completion", "heldout_mpjpe_mm", "cmu_completion",
                                   "fall_recovery_within_5s", "walk_mpjpe_over_specialist"}
