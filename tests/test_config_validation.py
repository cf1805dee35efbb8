"""Config, clip and param validation (issue 17, item 5): every field of every task config has a
range/type rule (rlkd.core.config.knob) checked whenever a config is built, so ``rlkd.make``
refuses a bad value naming the field, the value and the allowed range; motion clips far outside
the skeleton's joint ranges are refused at load; a NaN/Inf written into the AGV's ``env.params``
is refused at the next step. Fast (a few seconds)."""

from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import rlkd
from rlkd.core.config import (
    ConfigError,
    apply_overrides,
    field_rules,
    integer,
    integers,
    knob,
    number,
    one_of,
    validate_fields,
)
from rlkd.core.registry import spec
from rlkd.envs.agv_warehouse import AGVWarehouseConfig, AGVWarehouseEnv
from rlkd.envs.humanoid.config import HumanoidMotionConfig
from rlkd.envs.humanoid.motions import (
    JOINT_RANGE_TOLERANCE,
    PROCEDURAL,
    MotionError,
    MotionLibrary,
    load_bvh,
    load_motion,
    load_npz,
    procedural_clip,
    retarget,
    save_npz,
)


BVH = Path(__file__).resolve().parent / "data" / "mocap" / "cmu" / "131_01.bvh"
AGV, HUM = "AGVWarehouse-v0", "HumanoidMotion-v0"
NAN, INF = math.nan, math.inf


def _config_classes() -> list[type]:
    return sorted({type(spec(e).default_config()) for e in rlkd.list_envs()},
                  key=lambda c: c.__name__)


# ------------------------------------------------------------------------- every field a rule
@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_config_field_has_a_rule_that_accepts_its_default(cls):
    rules = field_rules(cls)
    assert set(rules) == {f.name for f in dataclasses.fields(cls)}
    missing = [name for name, rule in rules.items() if rule is None]
    assert not missing, f"{cls.__name__} fields without a validation rule (use knob): {missing}"
    default = cls()
    for name, rule in rules.items():
        assert rule.problem(getattr(default, name)) is None, name


def test_task_config_classes_are_the_known_ones():
    # A new task config must get rules too: this list grows with the registry.
    assert {c.__name__ for c in _config_classes()} == {"AGVWarehouseConfig",
                                                       "HumanoidMotionConfig",
                                                       "TactilePegConfig"}


def test_a_field_without_a_rule_is_an_error():
    @dataclasses.dataclass
    class Half:
        ok: int = knob(1, integer(lo=0))
        forgotten: float = 0.5

    with pytest.raises(TypeError, match="'forgotten' has no validation rule"):
        validate_fields(Half())


# ---------------------------------------------------------------------- bad values -> ValueError
BAD = [
    # (env id, field, bad value, expected text of the allowed range)
    (AGV, "num_obstacles", -3, "integer >= 0"),
    (AGV, "map_width", -1.0, "finite number > 0"),
    (AGV, "map_height", 0.0, "finite number > 0"),
    (AGV, "dt", 0.0, "finite number > 0"),
    (AGV, "dt", NAN, "finite number > 0"),
    (AGV, "dt", INF, "finite number > 0"),
    (AGV, "goal_radius", -1.0, "finite number >= 0; 0: goals are never reached"),
    (AGV, "lidar_range", -1.0, "finite number > 0"),
    (AGV, "lidar_dropout", 2.0, "finite number in [0, 1]"),
    (AGV, "slip", 1.0, "finite number in [0, 1)"),
    (AGV, "action_latency", 99, "integer in [0, max_action_latency=5]"),
    (AGV, "action_latency", -1, "integer >= 0"),
    (AGV, "max_action_latency", -1, "integer in [0, 1000]"),
    (AGV, "reward_goal", NAN, "finite number"),
    (AGV, "reward_collision", INF, "finite number"),
    (AGV, "progress_reward_scale", NAN, "finite number"),
    (AGV, "shelf_rows", -1, "integer >= 0"),
    (AGV, "clutter_boxes", -2, "integer >= 0"),
    (AGV, "num_layouts", 0, "integer >= 1"),
    (AGV, "lidar_rays", 0, "integer >= 1"),
    (AGV, "num_goals", 0, "integer >= 1"),
    (AGV, "max_episode_steps", 0, "integer >= 1"),
    (AGV, "lidar_fov", 7.0, "finite number in (0, 6.28319]"),
    (AGV, "lidar_noise_std", -0.1, "finite number >= 0"),
    (AGV, "lidar_mode", "sonar", "one of 'table', 'exact'"),
    (AGV, "goal_distance_min", 9.0, "number in [0, goal_distance_max=8.0]"),
    (AGV, "obstacle_speed_min", 2.0, "number in [0, obstacle_speed_max=1.0]"),
    (AGV, "layout_seed", -2, "integer >= -1"),
    (HUM, "future_steps", (), "a tuple of at least 1 element(s), each integer >= 1"),
    (HUM, "future_steps", (1, 0), "a tuple of at least 1 element(s), each integer >= 1"),
    (HUM, "w_pose", NAN, "finite number >= 0"),
    (HUM, "k_keypoint", -1.0, "finite number >= 0"),
    (HUM, "motion_mode", "loop", "one of 'wrap', 'clamp'"),
    (HUM, "backend", "gpu", "one of 'cpu', 'warp'"),
    (HUM, "action_mode", "torque", "one of 'absolute', 'residual'"),
    (HUM, "frame_skip", 0, "integer >= 1"),
    (HUM, "num_threads", -1, "integer >= 0"),
    (HUM, "fall_height", NAN, "finite number >= 0"),
    (HUM, "max_tracking_error", 0.0, "number > 0 (inf allowed)"),
    (HUM, "max_episode_steps", 0, "integer >= 1"),
    (HUM, "obs_noise_std", -1.0, "finite number >= 0"),
    (HUM, "motion", " ", "a non-empty string"),
    (HUM, "motion_range_tolerance", NAN, "number >= 0 (inf allowed)"),
]


@pytest.mark.parametrize("env_id, key, value, allowed", BAD,
                         ids=[f"{b[1]}={b[2]!r}" for b in BAD])
def test_make_refuses_a_bad_value_naming_field_value_and_range(env_id, key, value, allowed):
    with pytest.raises(ValueError) as err:
        rlkd.make(env_id, num_envs=1, **{key: value})
    e = err.value
    assert isinstance(e, ConfigError) and e.field == key
    msg = str(e)
    assert msg.startswith(f"{env_id} config: {key}={value!r} "), msg
    assert f"allowed: {allowed}" in msg, msg


def test_example_message_of_the_issue():
    with pytest.raises(ValueError) as err:
        rlkd.make(AGV, num_obstacles=-3)
    assert str(err.value) == ("AGVWarehouse-v0 config: num_obstacles=-3 is out of range; "
                              "allowed: integer >= 0")


@pytest.mark.parametrize("cls, key, value", [
    (AGVWarehouseConfig, "num_obstacles", "3"),
    (AGVWarehouseConfig, "num_obstacles", 3.0),
    (AGVWarehouseConfig, "compile", 1),
    (AGVWarehouseConfig, "map_width", True),
    (AGVWarehouseConfig, "lidar_mode", 1),
    (HumanoidMotionConfig, "future_steps", [1, 3]),
    (HumanoidMotionConfig, "future_steps", (1, 2.5)),
    (HumanoidMotionConfig, "motion", None),
])
def test_direct_construction_refuses_wrong_types(cls, key, value):
    with pytest.raises(ConfigError, match=rf"^{cls.__name__}: {key}=.* has the wrong type"):
        cls(**{key: value})


def test_every_way_of_building_a_config_validates():
    with pytest.raises(ConfigError, match="^AGVWarehouseConfig: dt=0.0"):
        AGVWarehouseConfig(dt=0.0)
    with pytest.raises(ConfigError, match="^AGVWarehouseConfig: dt=-1"):
        dataclasses.replace(AGVWarehouseConfig(), dt=-1.0)
    with pytest.raises(ConfigError, match="^AGVWarehouseConfig: dt=-1"):  # owner "config"
        apply_overrides(AGVWarehouseConfig(), {"dt": -1.0})
    # A config edited after construction is caught when an env is built from it.
    cfg = AGVWarehouseConfig()
    cfg.lidar_rays = 0
    with pytest.raises(ConfigError, match="lidar_rays=0"):
        AGVWarehouseEnv(cfg, num_envs=1)


def test_config_error_pickles():
    e = ConfigError("X config", "dt", 0.0, "finite number > 0")
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) and back.field == "dt"


def test_rules_in_words_and_edge_cases():
    assert number(0, 1, hi_open=True).describe() == "finite number in [0, 1)"
    assert integer(lo=1).describe() == "integer >= 1"
    assert one_of("a", "b").describe() == "one of 'a', 'b'"
    assert integers(lo=1).describe() == "a tuple of at least 1 element(s), each integer >= 1"
    inf_ok = number(lo=0, allow_inf=True)
    assert inf_ok.problem(INF) is None and inf_ok.problem(NAN) == "is out of range"
    assert integer(lo=0).problem(np.int64(3)) is None       # numpy scalars are numbers too
    assert number().problem(np.float32(0.5)) is None
    assert integer().problem(True).startswith("has the wrong type")


def test_valid_edges_and_defaults_are_unchanged():
    ok = dict(slip=0.99, lidar_dropout=1.0, action_latency=5, lidar_fov=2 * math.pi,
              goal_distance_min=8.0, time_penalty=-0.01, reward_collision=-5.0, num_obstacles=0,
              shelf_rows=0, cross_aisles=0, layout_seed=0, max_lin_vel=2)
    cfg = apply_overrides(AGVWarehouseConfig(), ok, owner=AGV)
    assert all(getattr(cfg, k) == v for k, v in ok.items())
    hum = apply_overrides(HumanoidMotionConfig(), dict(
        max_tracking_error=INF, fall_height=0.0, residual_scale=0.0, future_steps=[2],
        motion_range_tolerance=INF), owner=HUM)
    assert hum.future_steps == (2,) and hum.max_tracking_error == INF
    # Validation adds no field value of its own: defaults as documented before the rules.
    a, h = AGVWarehouseConfig(), HumanoidMotionConfig()
    assert (a.num_obstacles, a.dt, a.lidar_fov, a.max_action_latency, a.lidar_mode) == (
        4, 0.1, 2 * math.pi, 5, "table")
    assert (h.future_steps, h.frame_skip, h.motion, h.motion_range_tolerance) == (
        (1, 3, 6), 6, "walk", JOINT_RANGE_TOLERANCE)


# ------------------------------------------------------------------------------------ presets
@pytest.mark.parametrize("env_id", rlkd.list_envs())
def test_every_registered_env_and_preset_constructs(env_id):
    cfg = spec(env_id).default_config()
    assert type(cfg).validate(cfg) is cfg
    fast = {"lidar_mode": "exact"} if env_id.startswith("AGVWarehouse") else {}
    env = rlkd.make(env_id, num_envs=2, **fast)
    try:
        env.reset(seed=0)
        obs, reward, *_ = env.step(torch.zeros(2, env.act_dim))
        assert torch.isfinite(obs["critic"]).all() and torch.isfinite(reward).all()
    finally:
        env.close()


# ------------------------------------------------------------------------ clips out of range
def _excess(skel, clip) -> float:
    lo, hi = skel.dof_range[:, 0], skel.dof_range[:, 1]
    return float(np.maximum(lo - clip.joint_pos, clip.joint_pos - hi).max())


def test_shipped_and_test_clips_sit_well_inside_the_tolerance(skel, tmp_path):
    clips = [procedural_clip(k, skel) for k in PROCEDURAL]
    clips.append(retarget(load_bvh(BVH), skel)[0])
    for c in clips:  # measured: 0.0 for all (npz float32 round trip: < 1e-6)
        assert _excess(skel, c) <= 1e-6, (c.name, _excess(skel, c))
        back = load_npz(save_npz(c, tmp_path / f"{c.name}.npz"), skel)
        assert _excess(skel, back) <= 1e-6
    assert load_motion(BVH, skel).num_frames == clips[-1].num_frames


def _bad_knee(skel, tmp_path, angle=-3.0):
    walk = procedural_clip("walk", skel)
    walk.joint_pos = walk.joint_pos.copy()
    walk.joint_pos[10:, skel.dof_index("right_knee")] = angle   # range [0, 2.618]
    return walk, save_npz(walk, tmp_path / "bad_knee.npz")


def test_out_of_range_clip_is_refused_naming_file_joint_frame_value(skel, tmp_path):
    walk, path = _bad_knee(skel, tmp_path)
    with pytest.raises(MotionError) as err:
        load_npz(path, skel)
    msg = str(err.value)
    for part in (str(path), "'right_knee'", "frame 10", "-3.0000 rad", "3.0000 rad outside",
                 "[0.0000, 2.6180]", "tolerance 0.5 rad"):
        assert part in msg, (part, msg)
    with pytest.raises(MotionError, match="right_knee"):
        load_motion(path, skel)
    with pytest.raises(MotionError, match="right_knee"):      # in-memory clips too
        MotionLibrary([walk], skel)
    # The tolerance is configurable: inf switches the check off.
    assert load_npz(path, skel, joint_range_tolerance=INF).num_frames == walk.num_frames
    MotionLibrary([walk], skel, joint_range_tolerance=INF)
    with pytest.raises(ValueError, match="tolerance"):
        walk.check_joint_ranges(skel, tolerance=-1.0)


def test_clip_just_within_the_tolerance_loads(skel, tmp_path):
    _, path = _bad_knee(skel, tmp_path, angle=-0.3)          # 0.3 rad beyond, tolerance 0.5
    knee = load_npz(path, skel).joint_pos[:, skel.dof_index("right_knee")]
    assert knee.min() == pytest.approx(-0.3, abs=1e-6)
    with pytest.raises(MotionError, match="tolerance 0.2 rad"):
        load_npz(path, skel, joint_range_tolerance=0.2)


def test_make_refuses_an_out_of_range_clip(skel, tmp_path):
    _, path = _bad_knee(skel, tmp_path)
    with pytest.raises(MotionError, match="bad_knee.npz.*right_knee"):
        rlkd.make(HUM, num_envs=1, motion=str(path))


# ------------------------------------------------------------------------- NaN params (AGV)
def _agv(n=8):
    env = rlkd.make(AGV, num_envs=n, lidar_mode="exact", num_layouts=1)
    env.reset(seed=0)
    return env


def test_nan_param_is_refused_at_the_next_step_naming_param_and_envs():
    env = _agv()
    zero = torch.zeros(8, 2)
    env.step(zero)
    env.params["slip"][[2, 5]] = NAN
    with pytest.raises(ValueError) as err:
        env.step(zero)
    msg = str(err.value)
    assert "params['slip']" in msg and "env ids [2, 5]" in msg and "nan" in msg, msg
    with pytest.raises(ValueError, match=r"params\['slip'\].*\[2, 5\]"):  # until fixed
        env.step(zero)
    env.params["slip"][[2, 5]] = 0.0
    obs, *_ = env.step(zero)
    assert torch.isfinite(obs["critic"]).all()
    # Inf too, and a replaced tensor; reset refuses it as well.
    env.params["lidar_noise_std"] = torch.full((8,), INF)
    with pytest.raises(ValueError, match=r"params\['lidar_noise_std'\].*\[0, 1, 2, 3, 4, 5, 6"):
        env.step(zero)
    with pytest.raises(ValueError, match="lidar_noise_std"):
        env.reset(seed=0)
    env.params["lidar_noise_std"] = torch.zeros(8)
    env.params["max_lin_vel"] = torch.ones(3)
    with pytest.raises(ValueError, match=r"params\['max_lin_vel'\] must be a tensor of shape"):
        env.step(zero)


def test_param_check_scans_only_written_params(monkeypatch):
    env = _agv()
    zero = torch.zeros(8, 2)
    env.step(zero)                                            # first step scanned everything
    guard, scanned = env._param_guard, []
    real = guard._scan
    monkeypatch.setattr(guard, "_scan", lambda name, t: (scanned.append(name), real(name, t)))
    for _ in range(5):
        env.step(zero)
    assert scanned == []
    env.params["slip"].fill_(0.1)
    env.params["obs_noise_std"][0] = 0.01
    env.step(zero)
    assert sorted(scanned) == ["obs_noise_std", "slip"]
