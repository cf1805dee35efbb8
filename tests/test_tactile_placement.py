"""TactilePegPlacement-v0: the task is solvable (a privileged scripted policy places >= 90%),
its rules (success only after the full hold, a peg let go in the air or knocked over is
``dropped``, pressing too hard is ``over_force``), the marker observation, the 7-dim action,
the task knob choosing the class, the floor physics a standing peg needs, exact resume in the
middle of a hold, and insertion's MJCF left byte-identical. ~15 s on 2 cores."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch

import rlkd
from rlkd.core.config import ConfigError
from rlkd.envs.tactile.env import TactilePegEnv
from rlkd.envs.tactile.placement import TactilePegPlacementEnv, placement_spec
from rlkd.envs.tactile.scene import SceneSpec, scene_xml

ID = "TactilePegPlacement-v0"


def _make(n=4, **kw):
    env = rlkd.make(ID, num_envs=n, seed=0, num_threads=1, **kw)
    env.reset(seed=0)
    return env


def _episodes(env, policy, steps):
    """Run ``policy(obs, k)``; returns the finished episodes as dicts (env id, step, length,
    the true flags) and the largest critic ``hold`` seen per env."""
    obs = env.get_observations()
    hold_sl = env.observation_layout["critic"]["hold"]
    hold_max = torch.zeros(env.num_envs)
    out = []
    for k in range(steps):
        obs, _, _, _, info = env.step(policy(obs, k))
        if "episode" in info:
            e = info["episode"]
            for j, i in enumerate(e["env_ids"].tolist()):
                out.append({"env": i, "step": k, "length": int(e["length"][j]),
                            **{f: bool(e[f][j]) for f in ("success", "dropped", "over_force",
                                                          "timeout")}})
        hold_max = torch.maximum(hold_max, obs["critic"][:, hold_sl][:, 0])
    return out, hold_max


def _gripper(n, cmd, z=0.0):
    a = torch.zeros(n, 7)
    a[:, 2], a[:, 6] = z, cmd
    return a


# ----------------------------------------------------------------------- solvable
def test_privileged_scripted_policy_places_the_peg():
    """With ±20° in-hand turns, ±3 mm shifts and a ±5 mm marker: exact state (critic) and a
    simple controller place >= 90% of the episodes, each after the full 0.5 s hold."""
    env = _make(16)
    policy = env.scripted_policy()
    eps, _ = _episodes(env, lambda obs, k: policy(obs), 160)
    assert len(eps) >= 16
    rate = np.mean([e["success"] for e in eps])
    assert rate >= 0.9, eps
    # release, 25 placed steps, and the approach before: no success is quicker than the hold
    assert min(e["length"] for e in eps if e["success"]) > env.hold_steps == 25
    env.close()


def test_success_needs_the_whole_hold_time():
    """Success comes on the step the hold counter reaches ``hold_steps`` (the critic's ``hold``
    reads k / hold_steps); doubling ``hold_time`` delays every success by the extra steps."""
    lengths = {}
    for hold in (0.5, 1.0):
        env = _make(4, hold_time=hold)
        policy = env.scripted_policy()
        eps, hold_max = _episodes(env, lambda obs, k: policy(obs), 140)
        first = {}
        for e in eps:
            first.setdefault(e["env"], e)
        assert len(first) == 4 and all(e["success"] for e in first.values()), eps
        lengths[hold] = np.array([first[i]["length"] for i in range(4)])
        assert env.hold_steps == round(hold * 50)
        assert (hold_max > 0.9).all() and (hold_max < 1.0).all(), hold_max  # obs: after reset
        env.close()
    # same seed, same approach: the only difference is the hold
    np.testing.assert_array_equal(lengths[1.0] - lengths[0.5], 25)


def test_release_reward_pays_w_release_over_a_successful_hold():
    env = _make(2)
    policy = env.scripted_policy()
    obs, total, done = env.get_observations(), torch.zeros(2), torch.zeros(2, dtype=torch.bool)
    for _ in range(120):
        obs, _, term, _, info = env.step(policy(obs))
        total += info["reward_terms"]["release"] * ~done
        if "episode" in info:
            assert info["episode"]["success"].all()
            done[info["episode"]["env_ids"]] = True
        if done.all():
            break
    assert done.all()
    torch.testing.assert_close(total, torch.full((2,), env.cfg.w_release))
    env.close()


# ----------------------------------------------------------------------- failures
def test_opening_in_the_air_drops_the_peg():
    env = _make(8)
    eps, _ = _episodes(env, lambda obs, k: _gripper(8, -1.0), 3)
    first = [e for e in eps if e["step"] == 0]
    assert len(first) == 8 and all(e["dropped"] and not e["success"] for e in first), eps
    env.close()


def test_a_peg_slipping_out_of_a_closed_hand_is_dropped():
    env = rlkd.make(ID, num_envs=4, seed=0, num_threads=1)
    env.params["grip_force"][:] = 0.0            # commanded closed, but nothing holds it
    env.reset(seed=0)
    eps, _ = _episodes(env, lambda obs, k: _gripper(4, 1.0), 4)
    first = {e["env"]: e for e in reversed(eps)}
    assert len(first) == 4 and all(e["dropped"] for e in first.values()), eps
    env.close()


def test_a_placed_peg_knocked_over_before_the_hold_ends_is_no_success():
    """Release as the scripted policy does, then, instead of lifting, sweep a pad into the
    standing peg: the counter had started (critic ``hold`` > 0) but the peg falls: dropped."""
    env = _make(8)
    policy = env.scripted_policy()
    width = env.observation_layout["policy"]["gripper_width"]

    def knock(obs, k):
        a = policy(obs)
        opened = obs["policy"][:, width][:, 0] > 2 * env.spec.peg_radius + 0.004
        a[:, 2] = torch.where(opened, 0.0, a[:, 2])
        a[:, 1] = torch.where(opened, 1.0, a[:, 1])
        return a

    eps, hold_max = _episodes(env, knock, 110)
    first = {}
    for e in eps:
        first.setdefault(e["env"], e)
    assert len(first) == 8, eps
    assert all(e["dropped"] and not e["success"] for e in first.values()), first
    assert (hold_max > 0).all() and (hold_max < 0.5).all(), hold_max
    env.close()


def test_pressing_the_peg_into_the_floor_is_over_force():
    env = _make(4, max_force=5.0, in_hand_angle=0.0)
    eps, _ = _episodes(env, lambda obs, k: _gripper(4, 1.0, z=-0.5), 30)
    first = {}
    for e in eps:
        first.setdefault(e["env"], e)
    assert len(first) == 4 and all(e["over_force"] for e in first.values()), eps
    env.close()


# ----------------------------------------------------------------------- observations, actions
def test_the_marker_is_where_the_observation_says_up_to_the_noise():
    lay = None
    errs = {}
    for std in (0.0, 0.001):
        env = _make(64, socket_noise_std=std)
        lay = env.observation_layout["policy"]
        obs = env.get_observations()["policy"]
        m = env.sim.model
        marker = torch.as_tensor(m.geom_pos[m.geom("marker").id], dtype=torch.float32)
        marker[2] = 0.0                                   # the target: the disc's floor centre
        gid = m.geom("marker").id
        assert m.geom_contype[gid] == 0 and m.geom_conaffinity[gid] == 0   # visual only
        hand = env.sim.xpos[:, env.hand_id].float()
        seen = obs[:, lay["socket_pos"]] - obs[:, lay["wrist_pos"]]   # base frame = world axes
        errs[std] = seen - (marker[None] - hand)
        env.close()
    assert errs[0.0].abs().max() < 1e-6
    assert 0.0007 < float(errs[0.001].std()) < 0.0013, errs[0.001].std()
    assert "marker" in scene_xml(placement_spec(rlkd.spec(ID).default_config()))


def test_seven_dim_action_is_validated_and_spaces_match():
    env = _make(2)
    assert env.action_space.shape == (7,) and env.act_dim == 7
    assert env.observation_spaces["policy"].shape == (20,)
    assert env.observation_spaces["critic"].shape == (45,)
    assert env.observation_layout["policy"]["prev_action"] == slice(13, 20)
    assert list(env.observation_layout["critic"])[-1] == "hold"
    with pytest.raises(ValueError, match=r"expected \(2, 7\)"):
        env.step(torch.zeros(2, 6))
    env.close()


def test_the_task_knob_chooses_the_class_from_either_id():
    a = rlkd.make("TactilePegInsertion-v0", num_envs=1, num_threads=1, task="placement")
    b = rlkd.make(ID, num_envs=1, num_threads=1, task="insertion")
    c = rlkd.make(ID, num_envs=1, num_threads=1)
    assert type(a) is TactilePegPlacementEnv and a.act_dim == 7
    assert type(b) is TactilePegEnv and b.act_dim == 6
    assert type(c) is TactilePegPlacementEnv and c.cfg.task == "placement"
    assert "wall0" in scene_xml(b.spec) and "wall0" not in scene_xml(c.spec)
    for env in (a, b, c):
        env.close()


@pytest.mark.parametrize("key, value", [("place_height_max", 0.005), ("upright_tol", 0.0),
                                        ("hold_time", -1.0), ("task", "bolt")])
def test_bad_placement_config_raises_naming_the_field(key, value):
    with pytest.raises(ConfigError) as err:
        rlkd.make(ID, num_envs=1, **{key: value})
    assert err.value.field == key


# ----------------------------------------------------------------------- floor physics
def _standing(spec: SceneSpec, tilt_deg: float, steps=1000) -> float:
    """Raw MuJoCo: the peg alone on the floor (fingers open, hand far above), released at
    rest tilted by ``tilt_deg`` about y on its rim. Returns its final tilt, deg."""
    m = mujoco.MjModel.from_xml_string(scene_xml(spec))
    d = mujoco.MjData(m)
    th = math.radians(tilt_deg)
    d.qpos[2], d.qpos[6:8] = 0.15, -0.02
    d.qpos[8:11] = [0.0, 0.0, spec.peg_length / 2 * math.cos(th) + spec.peg_radius * math.sin(th)]
    d.qpos[11:15] = [math.cos(th / 2), 0.0, math.sin(th / 2), 0.0]
    d.ctrl[:6], d.ctrl[6:] = d.qpos[:6], -5.0
    for _ in range(steps):
        mujoco.mj_step(m, d)
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, d.xquat[m.body("peg").id])
    return math.degrees(math.acos(min(1.0, rot[8])))


def test_placement_floor_rights_a_peg_below_its_tipping_angle_and_topples_it_beyond():
    spec = placement_spec(rlkd.spec(ID).default_config())
    tip = math.degrees(math.atan(spec.peg_radius / (spec.peg_length / 2)))    # 9.1 deg
    assert _standing(spec, 1.0) < 0.5 and _standing(spec, tip - 1.0) < 0.5
    assert _standing(spec, tip + 1.0) > 80.0
    # The socket's stiff contact numbers on the floor: a peg tilted 1 deg falls over.
    stiff = SceneSpec(socket=False)
    assert _standing(stiff, 1.0) > 30.0


# ----------------------------------------------------------------------- resume, insertion scene
def test_state_dict_resumes_mid_hold_bit_identically():
    """The hold counters are env state: saved in the middle of a hold, a reloaded env steps on
    with the same observations, rewards and success steps (a counter lost on resume would
    delay or skip the success)."""
    env = _make(8)
    policy = env.scripted_policy()
    obs = env.get_observations()
    for _ in range(200):
        if (env.hold_count > 0).any():
            break
        obs, *_ = env.step(policy(obs))
    assert (env.hold_count > 0).any() and (env.hold_count < env.hold_steps).all()
    saved = env.state_dict()
    assert "hold_count" in saved["tensors"] and "_hold_lost" in saved["tensors"]

    def run(o):
        rows = []
        for _ in range(30):
            o, rew, term, _, info = env.step(policy(o))
            rows.append((o["critic"].clone(), rew.clone(), term.clone(), env.hold_count.clone()))
        return rows

    first = run(obs)
    assert any(r[2].any() for r in first)                # some envs finish their hold here
    env.load_state_dict(saved)
    second = run(env.get_observations())
    for a, b in zip(first, second):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    env.close()


#: sha256 of insertion's default MJCF (``scene_xml(SceneSpec())``), as before placement existed
#: (commit 57577dc^): placement's scene fields must not change insertion's physics. Change it
#: only with a deliberate change of insertion's scene.
INSERTION_MJCF_SHA256 = "89289c32bdfa031526510ae7c5b7f9967ef208af5dff18d25f8a8f99f9b369ad"


def test_insertion_mjcf_is_unchanged_by_the_placement_variant():
    import hashlib

    xml = scene_xml(SceneSpec())
    assert hashlib.sha256(xml.encode()).hexdigest() == INSERTION_MJCF_SHA256
    # placement-only fields leave a socket scene alone; the insertion env builds exactly it
    assert scene_xml(SceneSpec(marker_radius=0.02)) == xml
    env = rlkd.make("TactilePegInsertion-v0", num_envs=1, num_threads=1)
    assert scene_xml(env.spec) == xml and "marker" not in xml
    env.close()
