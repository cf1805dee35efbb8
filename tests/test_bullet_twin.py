"""The PyBullet twin of the AGV task (``AGVWarehouseBullet-v0``) against the torch env: same task
(starts, goals, lidar), comparable motion, contacts, drivability, determinism and its params."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("pybullet")

from rlkd.envs.agv_warehouse import AGVWarehouseBulletEnv, AGVWarehouseConfig, AGVWarehouseEnv  # noqa: E402

#: An empty 16 x 12 m hall (no shelves, no obstacles) and goals that cannot be reached, so that
#: motion tests never end an episode by accident.
OPEN = dict(shelf_rows=0, num_obstacles=0, goal_radius=0.0, num_layouts=1)


def _pair(n, seed=0, **over):
    cfg = AGVWarehouseConfig(**over)
    return AGVWarehouseBulletEnv(cfg, num_envs=n, seed=seed), AGVWarehouseEnv(cfg, num_envs=n, seed=seed)


def _drive(twin, ref, pos, heading, action, steps):
    """Both envs from ``pos``/``heading`` at rest under a constant ``action``; returns the
    displacement norms and heading changes ``(twin_d, ref_d, twin_dh, ref_dh)``."""
    n = twin.num_envs
    twin.set_pose(range(n), pos, heading)
    ref.pos[:] = pos
    ref.heading[:] = heading
    h0 = heading.clone()
    act = torch.tensor([action] * n)
    unwrap = lambda env, prev: prev + torch.remainder(env.heading - prev + math.pi, 2 * math.pi) - math.pi  # noqa: E731
    ht, hr = h0.clone(), h0.clone()
    for _ in range(steps):
        for env in (twin, ref):
            _, _, term, trunc, _ = env.step(act)
            assert not (term | trunc).any(), "an episode ended during a free-space drive"
        ht, hr = unwrap(twin, ht), unwrap(ref, hr)
    return ((twin.pos - pos).norm(dim=-1), (ref.pos - pos).norm(dim=-1), ht - h0, hr - h0)


def test_same_starts_goals_and_obstacles_as_the_torch_env():
    twin, ref = _pair(8, seed=3, lidar_mode="exact")  # exact: skip building range tables
    twin.reset(seed=3)
    ref.reset(seed=3)
    for name in ("pos", "heading", "goals", "obs_pos"):
        assert torch.equal(getattr(twin, name), getattr(ref, name)), name
    # The PyBullet bodies are where the torch state says.
    for i in (0, 7):
        xyz, _ = twin._p.getBasePositionAndOrientation(twin.robot_ids[i])
        assert abs(xyz[0] - twin.grid_offset[i, 0] - twin.pos[i, 0]) < 1e-5
        assert abs(xyz[1] - twin.grid_offset[i, 1] - twin.pos[i, 1]) < 1e-5
    twin.close()


def test_lidar_agrees_with_the_exact_torch_cast():
    twin, ref = _pair(8, num_obstacles=0, lidar_mode="exact")
    twin.reset(seed=0)
    ref.reset(seed=0)
    got, want = twin._lidar(None), ref._lidar(None)
    assert got.shape == want.shape == (8, twin.cfg.lidar_rays) and got.dtype == torch.float32
    assert (got - want).abs().le(0.03).float().mean() >= 0.95
    assert got.min() < twin.cfg.lidar_range - 0.5  # shelves and walls are seen at all
    ids = torch.tensor([5, 2])
    assert torch.allclose(twin._lidar(ids), got[ids])  # rows in env_ids order
    twin.close()


def test_straight_and_turning_motion_match_the_torch_env():
    twin, ref = _pair(2, **OPEN)
    twin.reset(seed=0)
    ref.reset(seed=0)
    pos, hd = torch.tensor([[4.0, 6.0], [8.0, 4.0]]), torch.tensor([0.0, 2.0])
    dt, dr, _, _ = _drive(twin, ref, pos, hd, (1.0, 0.0), 15)
    assert torch.all((dt - dr).abs() <= 0.15 * dr), (dt, dr)
    _, _, ht, hr = _drive(twin, ref, pos, hd, (0.0, 1.0), 15)
    assert torch.all((ht - hr).abs() <= 0.2 * hr.abs()), (ht, hr)
    twin.close()


def test_driving_into_a_wall_ends_the_episode_with_a_collision():
    twin = AGVWarehouseBulletEnv(AGVWarehouseConfig(**OPEN), num_envs=2, seed=0)
    twin.reset(seed=0)
    # Env 0 faces the x = 0 wall from 1 m; env 1 drives parallel to it.
    twin.set_pose([0, 1], torch.tensor([[1.0, 6.0], [1.0, 3.0]]), torch.tensor([math.pi, math.pi / 2]))
    for step in range(20):
        _, _, term, _, info = twin.step(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        if term[0]:
            break
    assert term[0] and not term[1]
    assert info["episode"]["env_ids"].tolist() == [0]
    assert bool(info["episode"]["collision"][0]) and not bool(info["episode"]["success"][0])
    assert 4 <= step <= 12  # ~0.7 m to go at up to 1 m/s: it did not stop early or pass through
    twin.close()


def test_scripted_controller_reaches_goals_in_the_twin():
    twin = AGVWarehouseBulletEnv(AGVWarehouseConfig(num_obstacles=0), num_envs=16, seed=0)
    policy = twin.scripted_policy()
    obs, _ = twin.reset(seed=0)
    success = ended = 0
    for _ in range(150):
        obs, _, _, _, info = twin.step(policy(obs))
        if "episode" in info:
            success += int(info["episode"]["success"].sum())
            ended += int(info["episode"]["success"].numel())
    assert ended >= 8 and success / ended > 0.3, (success, ended)
    twin.close()


def _rollout(env, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    out, ends = [obs["critic"]], 0
    for _ in range(steps):
        obs, _, term, trunc, _ = env.step(torch.rand(env.num_envs, 2, generator=gen) * 2 - 1)
        out.append(obs["critic"])
        ends += int((term | trunc).sum())
    return torch.stack(out), ends


def test_same_seed_and_actions_give_identical_observations():
    cfg = AGVWarehouseConfig(max_episode_steps=15)  # with obstacles and autoresets
    a = AGVWarehouseBulletEnv(cfg, num_envs=4, seed=1)
    b = AGVWarehouseBulletEnv(cfg, num_envs=4, seed=1)
    ra, ends = _rollout(a, 40)
    rb, _ = _rollout(b, 40)
    assert ends >= 4 and torch.equal(ra, rb)
    # A reset with the same seed replays the same physics (no state left from the last episode,
    # such as Bullet's cached contacts, which survive when the robot is put back where it was).
    for steps in (2, 40):
        first, _ = _rollout(a, steps)
        again, _ = _rollout(a, steps)
        assert torch.equal(again, first) and torch.equal(again, ra[:steps + 1])
    a.close()
    b.close()


def test_mass_and_friction_params_change_the_dynamics():
    twin = AGVWarehouseBulletEnv(AGVWarehouseConfig(**OPEN), num_envs=3, seed=0)
    twin.reset(seed=0)
    twin.params["mass_scale"][1] = 3.0
    twin.params["wheel_friction"][2] = 0.1
    start = torch.tensor([[4.0, 6.0], [4.0, 6.0], [4.0, 6.0]])
    twin.set_pose([0, 1, 2], start, torch.zeros(3))
    for _ in range(6):
        twin.step(torch.tensor([[1.0, 0.0]] * 3))
    d = (twin.pos - start).norm(dim=-1)
    assert d[1] < 0.8 * d[0] and d[2] < 0.8 * d[0], d  # heavier / slipperier: slower start
    assert d[0] > 0.3  # the nominal robot keeps up with the firmware's 2 m/s^2 ramp
    # Applied to the PyBullet bodies, and kept when an episode rebuilds the robot.
    twin.reset(seed=1)
    assert twin._p.getDynamicsInfo(twin.robot_ids[1], -1)[0] == pytest.approx(75.0)
    assert twin._p.getDynamicsInfo(twin.robot_ids[2], 0)[1] == pytest.approx(0.1)
    twin.close()


def test_perturbation_table_names_existing_params():
    twin = AGVWarehouseBulletEnv(AGVWarehouseConfig(), num_envs=1)
    table = AGVWarehouseBulletEnv.PERTURBATIONS
    assert "inertia" not in table and table["mass"] == (("mass_scale", "scale"),)
    assert table["sensor_dropout"] == AGVWarehouseEnv.PERTURBATIONS["sensor_dropout"]
    for entries in table.values():
        for param, _ in entries:
            assert param in twin.params, param
    twin.close()


def test_cpu_only_and_unsupported_state_dict():
    cfg = AGVWarehouseConfig()
    for device in ("cuda", "meta"):
        with pytest.raises(ValueError, match="CPU"):
            AGVWarehouseBulletEnv(cfg, num_envs=1, device=device)
    twin = AGVWarehouseBulletEnv(cfg, num_envs=1)
    with pytest.raises(NotImplementedError):
        twin.state_dict()
    with pytest.raises(NotImplementedError):
        twin.load_state_dict({})
    twin.close()
    twin.close()  # idempotent


def test_set_state_carries_velocity_into_the_physics():
    """A replayed state starts moving at its logged velocity (not from rest), in both engines."""
    twin, ref = _pair(2, seed=0, **OPEN)
    twin.reset(seed=0)
    ref.reset(seed=0)
    state = torch.tensor([[8.0, 6.0, 0.0, 0.8, 0.0, 15.0, 6.0]] * 2)
    for env in (twin, ref):
        env.set_state(torch.arange(2), state)
        torch.testing.assert_close(env.get_state(), state)
        env.step(torch.tensor([[0.8, 0.0]] * 2))
    # 0.8 m/s held for 0.1 s: ~0.08 m; from rest under the 2 m/s^2 ramp it would be ~0.01 m.
    for env in (twin, ref):
        moved = (env.pos - state[:, :2]).norm(dim=-1)
        assert (moved > 0.06).all() and (moved < 0.1).all(), (type(env).__name__, moved)
    twin.close()
