"""HumanoidMotion-v0: reference-state init, reward and termination, params, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rlkd

ID = "HumanoidMotion-v0"


def test_reset_puts_the_humanoid_on_the_reference():
    env = rlkd.make(ID, num_envs=6, seed=1, motion="walk,squat")
    env.reset(seed=1)
    # Reference-state init: MuJoCo's pose equals FK of the clip's pose (same skeleton, same MJCF),
    # and the library's blended keypoints are within millimetres of it.
    ref = env.motions.sample(env.clip_ids, env.t0)
    exact = env.skeleton.keypoints(*env.skeleton.fk(ref.root_pos, ref.root_rot, ref.joint_pos))
    torch.testing.assert_close(env.keypoints(), exact, atol=1e-4, rtol=0)
    torch.testing.assert_close(env.reference_keypoints(), exact, atol=5e-3, rtol=0)
    assert set(env.clip_ids.tolist()) <= {0, 1}
    assert (env.t0 >= 0).all() and (env.t0 <= env.motions.duration[env.clip_ids]).all()


def test_reward_prefers_tracking_and_episodes_end_on_failure():
    env = rlkd.make(ID, num_envs=16, seed=0, motion="wave")
    pd = env.scripted_policy()
    obs, _ = env.reset(seed=0)
    r_track = []
    for _ in range(10):
        obs, r, *_ = env.step(pd(obs))
        r_track.append(r)
    env.reset(seed=0)
    r_zero, ended = [], None
    for _ in range(60):
        _, r, term, trunc, info = env.step(torch.full((16, 28), -1.0))  # all joints to one limit
        r_zero.append(r)
        if "episode" in info and ended is None:
            ended = info["episode"]
    assert torch.stack(r_track).mean() > 0.5 > torch.stack(r_zero[:10]).mean() + 0.2
    assert ended is not None and not ended["success"].any()
    assert (ended["fall"] | ended["tracking_failure"]).all()
    assert set(info["reward_terms"]) == {"pose", "velocity", "end_effector", "root", "keypoint"}
    assert (info["metrics"]["mpjpe"] >= 0).all()


def test_world_frame_drift_costs_the_keypoint_term_and_global_mpjpe_only():
    env = rlkd.make(ID, num_envs=2, seed=0)
    env.reset(seed=0)
    st = env.sim.get_state()[[0, 0]]
    env.sim.set_state(st)
    env.t0[1], env.clip_ids[1] = env.t0[0], env.clip_ids[0]
    qpos = env.sim.qpos.clone()
    qpos[1, 0] += 0.2  # the same pose 20 cm off the reference along x (flat floor: same physics)
    env.sim.reset(torch.tensor([1]), qpos[1:2], env.sim.qvel[1:2].clone())
    _, _, _, _, info = env.step(torch.zeros(2, 28))
    t, m = info["reward_terms"], info["metrics"]
    assert t["keypoint"][1] < 0.1 * t["keypoint"][0]
    for k in ("pose", "velocity", "end_effector"):
        assert torch.allclose(t[k][0], t[k][1], atol=1e-4), k
    assert torch.allclose(m["mpjpe_local"][0], m["mpjpe_local"][1], atol=0.5)
    assert m["mpjpe"][1] > m["mpjpe"][0] + 100 and m["root_error"][1] > 150


def test_deterministic_for_a_seed():
    def run():
        env = rlkd.make(ID, num_envs=4, seed=3)
        obs, _ = env.reset(seed=3)
        g = torch.Generator().manual_seed(0)
        for _ in range(15):
            obs, *_ = env.step(torch.rand(4, 28, generator=g) * 2 - 1)
        return obs["critic"]

    assert torch.equal(run(), run())


def test_mass_param_changes_the_physics_of_written_envs_only():
    env = rlkd.make(ID, num_envs=2, seed=0, motion="wave")
    env.reset(seed=0)
    st0 = env.sim.get_state()
    env.sim.set_state(st0[[0, 0]])  # both envs in the same state
    env.params["body_mass"][1] *= 3.0
    for _ in range(5):
        env.step(torch.full((2, 28), 0.3))
    qpos = env.sim.qpos
    assert not torch.allclose(qpos[0], qpos[1], atol=1e-4)


def test_humanoid_conditions_in_sim2real_suites():
    from rlkd.sim2real import load_suite

    env = rlkd.make(ID, num_envs=1)
    applicable = [c.name for c in load_suite("default").conditions if c.applicable(env) is None]
    assert {"mass_x1.5", "friction_x0.5", "pd_gains_x0.5", "obs_noise_0.05",
            "action_noise_0.1"} <= set(applicable)
    assert "lidar_noise_0.05" not in applicable


def test_bad_motion_spec_is_named():
    with pytest.raises(ValueError, match="moonwalk"):
        rlkd.make(ID, num_envs=1, motion="moonwalk")
    with pytest.raises(Exception, match="missing.bvh"):
        rlkd.make(ID, num_envs=1, motion="missing.bvh")


def test_render_expert_beside_reference():
    env = rlkd.make(ID, num_envs=2, seed=0)
    env.reset(seed=0)
    try:
        frame = env.render(env_ids=[0, 1], width=96)
    except RuntimeError as e:  # no OpenGL backend on this machine
        pytest.skip(f"no offscreen GL: {e}")
    assert frame.dtype == np.uint8 and frame.shape[2] == 3
    # Two envs tiled side by side, each beside its reference: four 96-pixel panels per row.
    assert frame.shape[:2] == (72, 4 * 96 + 2) and frame.std() > 5


def test_residual_actions_are_offsets_from_the_next_reference_frame():
    """Zero residual = PD targets on the next reference frame = the absolute-mode baseline."""
    runs = {}
    for mode in ("absolute", "residual"):
        env = rlkd.make(ID, num_envs=4, seed=2, action_mode=mode)
        pol = env.scripted_policy()
        obs, _ = env.reset(seed=2)
        for _ in range(12):
            obs, *_ = env.step(pol(obs))
        runs[mode] = env.sim.qpos.clone()  # the physics (observations differ: last action)
    torch.testing.assert_close(runs["absolute"], runs["residual"], atol=1e-6, rtol=0)
    env = rlkd.make(ID, num_envs=2, seed=0, action_mode="residual", residual_scale=0.2)
    env.reset(seed=0)
    base = env.pd_targets(torch.zeros(2, 28))
    moved = env.pd_targets(torch.full((2, 28), 0.5))
    inside = (base > env.q_mid - env.q_half + 0.1) & (base < env.q_mid + env.q_half - 0.1)
    torch.testing.assert_close((moved - base)[inside], torch.full_like(base[inside], 0.1))
    with pytest.raises(ValueError, match="action_mode"):
        rlkd.make(ID, num_envs=1, action_mode="torque")


def test_state_dict_restores_the_physics_exactly():
    env = rlkd.make(ID, num_envs=3, seed=5)
    obs, _ = env.reset(seed=5)
    g = torch.Generator().manual_seed(1)
    acts = [torch.rand(3, 28, generator=g) * 2 - 1 for _ in range(12)]
    for a in acts[:4]:
        env.step(a)
    saved = env.state_dict()
    first = [env.step(a)[0]["critic"] for a in acts[4:]]
    env.load_state_dict(saved)
    again = [env.step(a)[0]["critic"] for a in acts[4:]]
    for x, y in zip(first, again):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="'sim'"):
        env.load_state_dict({k: v for k, v in saved.items() if k != "sim"})


def test_bench_physics_limit_replays_the_envs_own_trajectories():
    """`rlkd bench`'s limit for a MuJoCo task re-simulates every control step of the env's run
    (resets included, random actions: many falls) from its recorded state: each step an env was
    not reset in ends where the replay ends."""
    from rlkd.bench import bench_task_physics_limit

    r = bench_task_physics_limit(ID, 16, 30, seed=0)
    assert r["steps_checked"] > 0.8 * 16 * 30 and r["max_qpos_diff_vs_env"] < 1e-9
    assert r["env_steps_per_s"] > 0 and r["nstep"] == 6


def test_shipped_walk_expert_tracks_the_default_walk():
    """The packaged expert (rlkd.policies.EXPERTS) loads by name, knows how it was trained, and
    tracks the default walk: no falls, world-frame MPJPE well under the 60 mm target."""
    from rlkd.policies import expert_path, policy_source
    from rlkd.train import load_checkpoint

    notes = load_checkpoint(expert_path("humanoid-walk"))["provenance"]["notes"]
    assert any("rlkd train HumanoidMotion-v0" in n and "--init-from" in n for n in notes)
    env_id, overrides, factory, _ = policy_source("expert:humanoid-walk")
    assert env_id == ID and overrides["action_mode"] == "residual"
    env = rlkd.make(env_id, num_envs=16, seed=5, **overrides)
    policy = factory(env)
    obs, _ = env.reset(seed=5)
    mpjpe, ended = [], 0
    with torch.no_grad():
        for _ in range(90):
            obs, _, term, _, info = env.step(policy(obs))
            mpjpe.append(info["metrics"]["mpjpe"])
            ended += int(term.sum())
    assert ended == 0
    assert torch.stack(mpjpe).mean() < 60.0
