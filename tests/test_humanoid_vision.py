"""The humanoid's camera on the reference performer (``vision="rays"|"keypoints2d"``): pinhole
geometry, pixel-aligned rays, the detector's noise / dropout / occlusion, per-env camera params,
the ``keypoints`` / ``student`` / ``teacher`` groups, ``to_absolute`` and the added metrics."""

from __future__ import annotations

import pytest
import torch

import rlkd
from rlkd.envs.humanoid import metrics
from rlkd.envs.humanoid.vision import intrinsics, look_at, pixel_rays, project

CLEAN = dict(keypoint_noise_px=(0.0, 0.0), keypoint_dropout=(0.0, 0.0))


def _run(env, steps: int, actions=None):
    obs, _ = env.reset(seed=3)
    for _ in range(steps):
        a = torch.zeros(env.num_envs, env.act_dim) if actions is None else actions(obs)
        obs, *_ = env.step(a)
    return obs


def test_optical_axis_hits_the_principal_point_and_rays_round_trip():
    c = torch.tensor([[1.0, -4.0, 1.5], [0.0, 3.0, 0.4]])
    target = torch.tensor([[0.0, 0.0, 0.9], [0.5, 0.2, 1.1]])
    R = look_at(c, target)
    assert torch.allclose(R.transpose(-1, -2) @ R, torch.eye(3).expand(2, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(2), atol=1e-6)
    assert (R[:, 2, 1] < 0).all()  # image y (down) points towards world -z: upright image
    K = intrinsics(torch.tensor([50.0, 70.0]), 640, 480)
    on_axis = c + 3.0 * R[:, :, 2]
    uv, depth = project(on_axis[:, None], R, c, K)
    assert torch.allclose(uv[:, 0], torch.tensor([[320.0, 240.0]] * 2), atol=1e-3)
    assert torch.allclose(depth[:, 0], torch.full((2,), 3.0), atol=1e-5)
    pts = target[:, None] + torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(0)) * 0.3
    uv, _ = project(pts, R, c, K)
    d = pixel_rays(uv, R, K)
    assert torch.allclose(d.norm(dim=-1), torch.ones(2, 7), atol=1e-6)
    to_p = torch.nn.functional.normalize(pts - c[:, None], dim=-1)
    assert torch.allclose(d, to_p, atol=1e-5)


def test_env_rays_are_unit_and_pass_through_the_reference_keypoints():
    env = rlkd.make("HumanoidMotion-v0", num_envs=6, seed=0, vision="rays", **CLEAN)
    _run(env, 4)
    rays, (uv, vis) = env.keypoint_rays(), env.keypoints_2d()
    cam = env.camera()
    assert vis.float().mean() > 0.9  # the default rig keeps the performer in the image
    seen = rays[vis]
    assert torch.allclose(seen.norm(dim=-1), torch.ones(len(seen)), atol=1e-5)
    assert (rays[~vis] == 0).all() and (uv[~vis] == 0).all()
    to_kp = env.reference_keypoints() - cam["c"][:, None]
    miss = torch.linalg.cross(rays, torch.nn.functional.normalize(to_kp, dim=-1)).norm(dim=-1)
    assert miss[vis].max() < 1e-4
    # Not the simulated body: the camera films the performer.
    to_sim = torch.nn.functional.normalize(env.keypoints() - cam["c"][:, None], dim=-1)
    assert torch.linalg.cross(rays, to_sim).norm(dim=-1)[vis].max() > 1e-3
    env.close()


def test_noise_moves_pixels_only_dropout_visibility_only_and_neither_the_physics():
    base = dict(num_envs=5, seed=0, vision="rays")
    runs = {}
    for name, kw in {"clean": CLEAN, "noisy": dict(CLEAN, keypoint_noise_px=(6.0, 6.0)),
                     "dropped": dict(CLEAN, keypoint_dropout=(0.5, 0.5))}.items():
        env = rlkd.make("HumanoidMotion-v0", **base, **kw)
        _run(env, 6)
        runs[name] = (*env.keypoints_2d(), env.sim.qpos.clone())
        env.close()
    (uv0, v0, q0), (uv1, v1, q1), (uv2, v2, q2) = runs["clean"], runs["noisy"], runs["dropped"]
    assert torch.equal(q0, q1) and torch.equal(q0, q2)
    assert torch.equal(v0, v1)
    d = (uv1 - uv0).norm(dim=-1)[v0]
    assert 3.0 < d.mean() < 12.0  # ~ 6 px * sqrt(pi / 2)
    assert (v2 <= v0).all() and 0.3 < v2[v0].float().mean() < 0.7
    both = v0 & v2
    assert torch.equal(uv0[both], uv2[both])


def test_a_camera_write_changes_that_envs_view_only():
    env = rlkd.make("HumanoidMotion-v0", num_envs=4, seed=0, vision="rays", **CLEAN)
    obs = _run(env, 2)
    before = env.camera()
    env.params["camera_distance"][2] = 9.0
    env.params["camera_fovy"][2] = 30.0
    obs2, *_ = env.step(torch.zeros(4, env.act_dim))
    after = env.camera()
    moved = (after["c"] - before["c"]).norm(dim=-1)
    assert moved[2] > 3.0 and (moved[[0, 1, 3]] < 0.2).all()  # the others follow the walk only
    assert not torch.equal(after["K"][2], before["K"][2])
    assert torch.equal(after["K"][[0, 1, 3]], before["K"][[0, 1, 3]])
    horiz = (after["c"][2, :2] - env.reference_keypoints()[2, 0, :2]).norm()
    assert abs(float(horiz) - 9.0) < 1e-3
    env.close()


def test_occluders_hide_keypoints_and_a_fixed_camera_loses_a_walker():
    env = rlkd.make("HumanoidMotion-v0", num_envs=32, seed=0, vision="rays", keypoint_occlusion=3,
                    **CLEAN)
    _run(env, 1)
    occluded = 1 - env.keypoints_2d()[1].float().mean()
    env.close()
    assert 0.05 < occluded < 0.9
    # Fixed camera 1 m in front, looking back: the walker at 1.2 m/s passes it and leaves.
    env = rlkd.make("HumanoidMotion-v0", num_envs=2, seed=0, vision="rays", camera_mode="fixed",
                    camera_distance=(1.5, 1.5), camera_azimuth=(0.0, 0.0), camera_fovy=(40, 40),
                    max_tracking_error=float("inf"), fall_height=0.0, **CLEAN)
    env.reset(seed=0)
    seen = [env.keypoints_2d()[1].float().mean()]
    for _ in range(60):
        env.step(torch.zeros(2, env.act_dim))
        seen.append(env.keypoints_2d()[1].float().mean())
    assert seen[0] > 0.5 and min(seen) < 0.2
    env.close()


def test_keypoints_group_layout_and_student_is_unchanged_by_future_steps():
    obs = {}
    for fs in ((1, 3, 6), (2, 5)):
        env = rlkd.make("HumanoidMotion-v0", num_envs=3, seed=0, vision="rays", future_steps=fs)
        obs[fs] = _run(env, 5)
        lay = env.observation_layout
        assert list(lay["student"]) == list(lay["proprio"]) + list(lay["keypoints"])
        assert torch.equal(obs[fs]["student"],
                           torch.cat((obs[fs]["proprio"], obs[fs]["keypoints"]), -1))
        P = len(env.skeleton.keypoint_names)
        assert [k for k in lay["keypoints"] if k.endswith("_rays")] == [
            f"kp{k}_rays" for k in env.cfg.keypoint_steps]
        assert lay["keypoints"]["kp0_visible"].stop - lay["keypoints"]["kp0_visible"].start == P
        env.close()
    assert torch.equal(obs[(1, 3, 6)]["student"], obs[(2, 5)]["student"])
    env = rlkd.make("HumanoidMotion-v0", num_envs=3, seed=0, vision="keypoints2d", **CLEAN)
    o = _run(env, 2)
    lay = env.observation_layout["keypoints"]
    uv = o["keypoints"][:, lay["kp0_uv"]].view(3, -1, 2)
    assert uv.abs().max() <= 1.0 and uv.abs().max() > 0.05  # pixels scaled to [-1, 1]
    W, H = env.cfg.image_size
    fx = o["keypoints"][:, lay["kp0_intrinsics"]][:, 0] * W
    assert torch.allclose(fx, env.camera()["K"][:, 0, 0], rtol=1e-5)
    env.close()


def test_vision_none_keeps_the_groups_and_values():
    a = rlkd.make("HumanoidMotion-v0", num_envs=3, seed=0)
    b = rlkd.make("HumanoidMotion-v0", num_envs=3, seed=0, vision="rays")
    oa, ob = _run(a, 4), _run(b, 4)
    assert "keypoints" not in oa and "student" not in oa
    for g in ("policy", "critic", "teacher"):
        assert torch.equal(oa[g], ob[g]), g
    with pytest.raises(ValueError, match="no camera"):
        a.camera()
    a.close()
    b.close()


def test_teacher_group_and_to_absolute_reproduce_the_residual_expert():
    from rlkd.policies import load_policy

    expert = load_policy("expert:humanoid-walk")
    n, steps = 16, 90
    res = {}
    for mode in ("residual", "absolute"):
        env = rlkd.make("HumanoidMotion-v0", num_envs=n, seed=0, action_mode=mode)
        obs, _ = env.reset(seed=0)
        err = []
        for _ in range(steps):
            a = expert({"policy": obs["teacher"]})
            obs, _, _, _, info = env.step(env.to_absolute(a, "residual") if mode == "absolute"
                                          else a)
            err.append(info["metrics"]["mpjpe"])
        res[mode] = float(torch.stack(err).mean())
        if mode == "residual":
            assert torch.equal(obs["teacher"], obs["policy"])
        env.close()
    assert res["absolute"] <= 1.2 * res["residual"], res
    env = rlkd.make("HumanoidMotion-v0", num_envs=2, seed=0)
    env.reset(seed=0)
    a = torch.rand(2, env.act_dim) * 2 - 1
    assert torch.equal(env.to_absolute(a, "absolute"), a)
    assert torch.allclose(env.pd_targets(env.to_absolute(a * 0.3, "residual")),
                          env.pd_targets(a * 0.3, "residual"), atol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        env.to_absolute(a, "relative")
    env.close()


def test_accel_error_and_foot_sliding_match_their_trajectory_definitions():
    env = rlkd.make("HumanoidMotion-v0", num_envs=3, seed=0, max_tracking_error=float("inf"),
                    fall_height=0.0)
    obs, _ = env.reset(seed=0)
    policy = env.scripted_policy()
    sim, ref, acc, slide, soles = [env.keypoints()], [env.reference_keypoints()], [], [], []
    for _ in range(12):
        obs, _, _, _, info = env.step(policy(obs))
        sim.append(env.keypoints())
        ref.append(env.reference_keypoints())
        acc.append(info["metrics"]["accel_error"])
        slide.append(info["metrics"]["foot_sliding"])
        soles.append(env.skeleton.sole_points(env.sim.xpos[:, 1:].float(),
                                              env.sim.xquat[:, 1:].float()))
    want = metrics.acceleration_error(torch.stack(sim, 1), torch.stack(ref, 1))  # (3, 11)
    got = torch.stack(acc, 1)
    assert (got[:, 0] == 0).all()
    assert torch.allclose(got[:, 1:], want, rtol=1e-4, atol=1e-3)
    s = torch.stack(soles, 1)                                   # (3, T, 2, 4, 3)
    centre, low = s[..., :2].mean(-2), s[..., 2].amin(-1)
    down = (low[:, 1:] < 0.02) & (low[:, :-1] < 0.02)
    step = (centre[:, 1:] - centre[:, :-1]).norm(dim=-1)
    manual = (step * down).sum(-1) / down.sum(-1).clamp_min(1) * 1000
    assert torch.allclose(torch.stack(slide, 1)[:, 1:], manual, rtol=1e-4, atol=1e-3)
    env.close()


def test_reprojection_error_is_small_when_the_body_tracks_and_zero_without_detections():
    env = rlkd.make("HumanoidMotion-v0", num_envs=4, seed=0, vision="rays", **CLEAN)
    obs, _ = env.reset(seed=0)
    obs, _, _, _, info = env.step(env.scripted_policy()(obs))
    rep = info["metrics"]["reprojection_error"]
    mpjpe = info["metrics"]["mpjpe"]
    focal = env.camera()["K"][:, 0, 0]
    # ~ mpjpe / distance * focal: a few pixels for a body ~ 1 cm off the performer.
    assert (rep < 3 * mpjpe / 1000 / 2.5 * focal + 1).all() and (rep > 0).all()
    env.params["keypoint_dropout"][:] = 1.0
    _, _, _, _, info = env.step(torch.zeros(4, env.act_dim))
    assert (info["metrics"]["reprojection_error"] == 0).all()
    env.close()


@pytest.mark.parametrize("bad, match", [
    (dict(camera_distance=(5.0, 3.0)), "camera_distance"),
    (dict(camera_fovy=(0.0, 50.0)), "camera_fovy"),
    (dict(keypoint_dropout=(0.0, 1.5)), "keypoint_dropout"),
    (dict(vision="depth"), "vision"),
    (dict(motion="walk@fast"), "speed"),
    (dict(motion="squat@1.0"), "only walk and turn"),
])
def test_bad_camera_and_motion_settings_name_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        rlkd.make("HumanoidMotion-v0", num_envs=1, **bad)


def test_speed_specified_walks_move_at_their_speed():
    env = rlkd.make("HumanoidMotion-v0", num_envs=1, motion="walk@1.0,walk@1.5")
    assert env.motions.names == ("walk@1.0", "walk@1.5")
    lib = env.motions
    t = torch.tensor([0.0, 2.0])
    for i, v in enumerate((1.0, 1.5)):
        st = lib.sample(torch.tensor([i, i]), t, rotations=False)
        speed = float((st.root_pos[1, :2] - st.root_pos[0, :2]).norm()) / 2.0
        assert abs(speed - v) < 0.15 * v
    env.close()


def test_state_dict_round_trip_continues_the_camera_exactly():
    kw = dict(num_envs=3, seed=0, vision="rays", keypoint_occlusion=2, camera_mode="fixed")
    a = rlkd.make("HumanoidMotion-v0", **kw)
    _run(a, 3)
    state = a.state_dict()
    b = rlkd.make("HumanoidMotion-v0", **kw)
    b.reset(seed=99)
    b.load_state_dict(state)
    for _ in range(3):
        act = torch.rand(3, a.act_dim, generator=torch.Generator().manual_seed(1)) * 0.2
        oa, *_ = a.step(act)
        ob, *_ = b.step(act)
        assert torch.equal(oa["student"], ob["student"])
    a.close()
    b.close()


def test_2d_reward_aligns_with_the_video_and_penalizes_jerky_actions():
    with pytest.raises(ValueError, match="reward"):
        rlkd.make("HumanoidMotion-v0", num_envs=1, reward="2d")
    env = rlkd.make("HumanoidMotion-v0", num_envs=4, seed=0, vision="rays", reward="2d",
                    max_tracking_error=float("inf"), fall_height=0.0, **CLEAN)
    from rlkd.policies import load_policy

    expert = load_policy("expert:humanoid-walk")

    def track(o):
        return env.to_absolute(expert({"policy": o["teacher"]}), "residual")

    obs, _ = env.reset(seed=0)
    a = track(obs)
    obs, r, _, _, info = env.step(a)
    terms = info["reward_terms"]
    assert set(terms) == {"reprojection", "action_rate", "foot_sliding", "penetration"}
    assert (terms["action_rate"] == 0).all()  # no earlier action in this episode
    assert torch.allclose(r, sum(terms.values()))
    aligned, prev = [], a
    for t in range(25):
        # Envs 0-1 track the reference; envs 2-3 go limp and drift away from the video.
        a2 = track(obs)
        a2[2:] = 0.0
        obs, r, _, _, info = env.step(a2)
        aligned.append(info["reward_terms"]["reprojection"])
        want = -env.cfg.w_action_rate * (a2 - prev).square().mean(-1)
        assert torch.allclose(info["reward_terms"]["action_rate"], want, atol=1e-7)
        prev = a2
    aligned = torch.stack(aligned)[-5:].mean(0)
    assert aligned[:2].min() > 0.3 and aligned[2:].max() < 0.05, aligned
    env.params["keypoint_dropout"][:] = 1.0
    _, _, _, _, info = env.step(track(obs))
    assert (info["reward_terms"]["reprojection"] == 0).all()
    env.close()


def test_a_video_frame_keeps_its_detection_as_it_moves_through_the_window():
    env = rlkd.make("HumanoidMotion-v0", num_envs=3, seed=0, vision="keypoints2d",
                    keypoint_noise_px=(4.0, 4.0), keypoint_dropout=(0.2, 0.2),
                    max_tracking_error=float("inf"), fall_height=0.0)
    lay = env.observation_layout["keypoints"]
    obs, _ = env.reset(seed=0)
    seen = []
    for _ in range(4):
        seen.append(obs["keypoints"])
        obs, *_ = env.step(torch.zeros(3, env.act_dim))
    seen.append(obs["keypoints"])
    for part in ("uv", "visible"):
        ahead = seen[0][:, lay[f"kp3_{part}"]]      # frame t + 3 seen at step t
        now = seen[3][:, lay[f"kp0_{part}"]]        # the same frame at step t + 3
        assert torch.allclose(ahead, now, atol=1e-4), part
        assert torch.allclose(seen[1][:, lay[f"kp3_{part}"]], seen[4][:, lay[f"kp0_{part}"]],
                              atol=1e-4), part
    assert not torch.equal(seen[0][:, lay["kp0_uv"]], seen[1][:, lay["kp0_uv"]])
    env.close()
