"""rlkd.sim.mujoco.MujocoBatch: batched MuJoCo stepping, state access, resets, per-env parameters,
rendering and input checks, on the CPU path (both implementations) and MuJoCo Warp when
installed (warp's CPU device; kernel compilation makes that test slow)."""

from __future__ import annotations

import importlib.util
import os
import sys

import mujoco
import numpy as np
import pytest
import torch

from rlkd.sim.mujoco import MujocoBatch

# A free box that falls onto the floor (contacts), a two-link arm on hinges with position
# servos, a puck on a slider pushed by a motor, and a wheel spinning about a vertical axis
# (no gravity torque): each parameter has a body whose motion it alone shapes.
XML = """
<mujoco model="rlkd_test">
  <option timestep="0.005" solver="Newton"/>
  <worldbody>
    <light pos="0 0 3" dir="0 0 -1"/>
    <camera name="side" pos="0 -3 1" xyaxes="1 0 0 0 0.3 1"/>
    <geom name="floor" type="plane" size="5 5 0.1" rgba=".8 .8 .8 1"/>
    <body name="box" pos="0 0 0.3">
      <freejoint name="root"/>
      <geom name="box_geom" type="box" size="0.1 0.08 0.05" mass="1" rgba="1 0 0 1"/>
      <site name="imu"/>
    </body>
    <body name="arm" pos="0 1 0.8">
      <joint name="shoulder" type="hinge" axis="0 1 0" damping="0.05"/>
      <geom type="capsule" fromto="0 0 0 0.25 0 0" size="0.03" mass="0.3" rgba="0 1 0 1"/>
      <body name="forearm" pos="0.25 0 0">
        <joint name="elbow" type="hinge" axis="0 1 0" damping="0.05"/>
        <geom name="hand" type="capsule" fromto="0 0 0 0.25 0 0" size="0.03" mass="0.2"/>
      </body>
    </body>
    <body name="puck" pos="1 -1 0.5">
      <joint name="puck_x" type="slide" axis="1 0 0"/>
      <geom type="box" size="0.05 0.05 0.05" mass="0.5" contype="0" conaffinity="0"/>
    </body>
    <body name="wheel" pos="-1 -1 0.5">
      <joint name="spin" type="hinge" axis="0 0 1"/>
      <geom type="cylinder" size="0.1 0.02" mass="0.4" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
  <actuator>
    <position name="shoulder_pos" joint="shoulder" kp="20"/>
    <position name="elbow_pos" joint="elbow" kp="10"/>
    <motor name="push" joint="puck_x" gear="1"/>
  </actuator>
  <sensor>
    <framepos name="box_pos" objtype="body" objname="box"/>
    <framequat name="forearm_quat" objtype="body" objname="forearm"/>
    <jointpos name="shoulder_q" joint="shoulder"/>
    <jointvel name="elbow_qd" joint="elbow"/>
    <velocimeter name="imu_vel" site="imu"/>
    <gyro name="imu_gyro" site="imu"/>
    <accelerometer name="imu_acc" site="imu"/>
  </sensor>
</mujoco>
"""
MODEL = mujoco.MjModel.from_xml_string(XML)
# qpos / qvel addresses in the test model
BOX_Z, SHOULDER, PUCK, SPIN = 2, 7, 9, 10  # qpos
V_BOX_X, V_PUCK, V_SPIN = 0, 8, 9  # qvel
BOX, PUCK_BODY = 1, 4  # body ids
FLOOR, BOX_GEOM = 0, 1  # geom ids
CPU_IMPLS = ["batch", "threads"]
HAS_WARP = (importlib.util.find_spec("mujoco_warp") is not None
            and importlib.util.find_spec("warp") is not None)


def humanoid_path() -> str:
    import gymnasium

    return os.path.join(os.path.dirname(gymnasium.__file__), "envs/mujoco/assets/humanoid.xml")


def initial_states(m: mujoco.MjModel, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct initial states: perturbed heights, joint angles and velocities."""
    rng = np.random.default_rng(seed)
    qpos = np.tile(m.qpos0, (n, 1))
    qvel = rng.uniform(-0.5, 0.5, (n, m.nv))
    if m.nq == MODEL.nq:
        qpos[:, BOX_Z] += rng.uniform(-0.2, 0.2, n)
        qpos[:, SHOULDER:] += rng.uniform(-0.5, 0.5, (n, m.nq - SHOULDER))
    else:
        qpos[:, 7:] += rng.uniform(-0.05, 0.05, (n, m.nq - 7))
    return qpos, qvel


def reference(m: mujoco.MjModel, qpos, qvel, ctrls: np.ndarray, nstep: int) -> list[mujoco.MjData]:
    """Plain mj_step loops, one MjData per env; ``ctrls`` (steps, N, nu) held nstep steps."""
    out = []
    for i in range(len(qpos)):
        d = mujoco.MjData(m)
        d.qpos[:], d.qvel[:] = qpos[i], qvel[i]
        mujoco.mj_forward(m, d)
        for c in ctrls[:, i]:
            d.ctrl[:] = c
            mujoco.mj_step(m, d, nstep)
        out.append(d)
    return out


def random_ctrls(m: mujoco.MjModel, steps: int, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (steps, n, m.nu))


def run(batch: MujocoBatch, ctrls: np.ndarray) -> None:
    for c in ctrls:
        batch.step(torch.from_numpy(c))


# ---------------------------------------------------------------------------- stepping
@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_cpu_matches_plain_mj_step_loop(impl):
    n, steps, nstep = 5, 25, 2  # 50 physics steps
    qpos, qvel = initial_states(MODEL, n)
    ctrls = random_ctrls(MODEL, steps, n)
    with MujocoBatch(XML, n, nstep=nstep, num_threads=2, cpu_impl=impl) as b:
        assert b.impl == impl and b.dtype == torch.float64
        b.reset(qpos=qpos, qvel=qvel)
        run(b, ctrls)
        ref = reference(MODEL, qpos, qvel, ctrls, nstep)
        for i, d in enumerate(ref):
            # bitwise: same engine, same operations, warm start carried across calls
            assert np.array_equal(b.qpos[i].numpy(), d.qpos), i
            assert np.array_equal(b.qvel[i].numpy(), d.qvel), i
            assert b.time[i].item() == pytest.approx(d.time)
        assert not b.unstable.any()


def test_humanoid_rk4_pgs_matches_plain_loop():
    """gymnasium's humanoid (RK4 integrator, PGS solver), frame skip 5."""
    m = mujoco.MjModel.from_xml_path(humanoid_path())
    n, steps, nstep = 3, 8, 5
    qpos, qvel = initial_states(m, n)
    ctrls = random_ctrls(m, steps, n) * 0.4
    with MujocoBatch(humanoid_path(), n, nstep=nstep, num_threads=2) as b:
        b.reset(qpos=qpos, qvel=qvel)
        run(b, ctrls)
        for i, d in enumerate(reference(m, qpos, qvel, ctrls, nstep)):
            assert np.array_equal(b.qpos[i].numpy(), d.qpos)
            assert np.array_equal(b.qvel[i].numpy(), d.qvel)
            mujoco.mj_forward(m, d)
            assert np.array_equal(b.xpos[i].numpy(), d.xpos)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_derived_fields_match_mj_forward(impl):
    """Poses, velocities and position/velocity sensors: those of mj_forward at the new state.
    Contact forces and acceleration sensors: those of the last physics substep."""
    n, steps = 3, 40  # the box lands on the floor: contact forces are non-zero
    qpos, qvel = initial_states(MODEL, n)
    ctrls = random_ctrls(MODEL, steps, n)
    acc = slice(MODEL.sensor_adr[6], MODEL.sensor_adr[6] + 3)  # accelerometer
    with MujocoBatch(XML, n, num_threads=2, cpu_impl=impl) as b:
        b.reset(qpos=qpos, qvel=qvel)
        run(b, ctrls)
        for i, d in enumerate(reference(MODEL, qpos, qvel, ctrls, 1)):
            mujoco.mj_rnePostConstraint(MODEL, d)  # contact forces of the last substep
            np.testing.assert_array_equal(b.cfrc_ext[i].numpy(), d.cfrc_ext)
            np.testing.assert_array_equal(b.sensordata[i, acc].numpy(), d.sensordata[acc])
            fresh = mujoco.MjData(MODEL)
            fresh.qpos[:], fresh.qvel[:], fresh.ctrl[:] = d.qpos, d.qvel, d.ctrl
            mujoco.mj_forward(MODEL, fresh)
            for name in ("xpos", "xquat", "cvel"):
                np.testing.assert_allclose(getattr(b, name)[i].numpy(), getattr(fresh, name),
                                           rtol=0, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(b.sensordata[i, :acc.start].numpy(),
                                       fresh.sensordata[:acc.start], rtol=0, atol=1e-12)
        assert np.abs(b.cfrc_ext[:, BOX].numpy()).max() > 1.0  # the box rests on the floor
        np.testing.assert_array_equal(b.sensor("box_pos").numpy(), b.xpos[:, BOX].numpy())


def test_fields_subset_and_nstep():
    with MujocoBatch(XML, 2, nstep=3, fields=("xpos",)) as b:
        b.step(torch.zeros(2, MODEL.nu))
        assert b.time[0].item() == pytest.approx(3 * MODEL.opt.timestep)
        assert b.xpos.shape == (2, MODEL.nbody, 3)
        with pytest.raises(RuntimeError, match="cfrc_ext"):
            b.cfrc_ext


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_state_roundtrip_continues_bitwise(impl):
    n = 3
    qpos, qvel = initial_states(MODEL, n)
    ctrl = torch.from_numpy(random_ctrls(MODEL, 1, n)[0])
    with MujocoBatch(XML, n, cpu_impl=impl) as b:
        b.reset(qpos=qpos, qvel=qvel)
        for _ in range(10):
            b.step(ctrl)
        b.set_state(b.get_state([0]), env_ids=[2])  # includes the solver warm start
        same = ctrl.clone()
        same[2] = same[0]
        for _ in range(10):
            b.step(same)
        assert torch.equal(b.qpos[0], b.qpos[2]) and torch.equal(b.qvel[0], b.qvel[2])


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_diverged_world_is_reported_and_others_go_on(impl, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo appends its warnings to ./MUJOCO_LOG.TXT
    with MujocoBatch(XML, 3, cpu_impl=impl) as b:
        qvel = np.zeros((1, MODEL.nv))
        qvel[0, V_SPIN] = 1e12  # beyond MuJoCo's mjMAXVAL: it warns and resets that world
        b.reset([1], qvel=qvel)
        b.step(torch.zeros(3, MODEL.nu))
        assert b.unstable.tolist() == [False, True, False]
        assert torch.isfinite(b.qvel).all()
        b.step(torch.zeros(3, MODEL.nu))
        assert not b.unstable.any()


# ---------------------------------------------------------------------------- resets
@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_reset_by_ids_touches_only_those_envs(impl):
    n = 4
    qpos, qvel = initial_states(MODEL, n)
    with MujocoBatch(XML, n, cpu_impl=impl) as b:
        b.reset(qpos=qpos, qvel=qvel)
        run(b, random_ctrls(MODEL, 5, n))
        before = {k: getattr(b, k).clone() for k in ("qpos", "qvel", "time", "ctrl", "xpos")}
        new_q, new_v = initial_states(MODEL, 2, seed=7)
        b.reset([3, 1], qpos=new_q, qvel=new_v)
        assert np.array_equal(b.qpos[[3, 1]].numpy(), new_q)
        assert np.array_equal(b.qvel[[3, 1]].numpy(), new_v)
        assert (b.time[[1, 3]] == 0).all() and (b.ctrl[[1, 3]] == 0).all()
        for k, v in before.items():
            assert torch.equal(getattr(b, k)[[0, 2]], v[[0, 2]]), k
        # derived fields of the reset envs are those of mj_forward at the new state
        d = mujoco.MjData(MODEL)
        d.qpos[:], d.qvel[:] = new_q[0], new_v[0]
        mujoco.mj_forward(MODEL, d)
        np.testing.assert_array_equal(b.xpos[3].numpy(), d.xpos)
        np.testing.assert_array_equal(b.sensordata[3].numpy(), d.sensordata)
        # defaults: qpos0, zero velocity; a boolean mask selects envs too
        b.reset(torch.tensor([True, False, False, False]))
        assert np.array_equal(b.qpos[0].numpy(), MODEL.qpos0)
        assert (b.qvel[0] == 0).all()
        assert torch.equal(b.qpos[2], before["qpos"][2])


# ---------------------------------------------------------------------------- parameters
def _three_identical(impl="batch", nstep=1) -> MujocoBatch:
    return MujocoBatch(XML, 3, nstep=nstep, cpu_impl=impl)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_mass_write_pushed_body_accelerates_less_falling_body_falls_the_same(impl):
    with _three_identical(impl) as b:
        b.params["body_mass"][1, PUCK_BODY] *= 4.0
        b.params["body_mass"][1, BOX] *= 3.0
        ctrl = torch.zeros(3, MODEL.nu, dtype=torch.float64)
        ctrl[:, 2] = 1.0  # 1 N on the puck
        for _ in range(20):  # 0.1 s: the box is still in free fall
            b.step(ctrl)
        v = b.qvel[:, V_PUCK]
        assert v[1].item() == pytest.approx(v[0].item() / 4, rel=1e-9)
        assert b.qpos[1, BOX_Z].item() == pytest.approx(b.qpos[0, BOX_Z].item(), abs=1e-12)
        # untouched envs are bitwise identical
        assert torch.equal(b.qpos[0], b.qpos[2]) and torch.equal(b.qvel[0], b.qvel[2])


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_friction_write_changes_sliding_distance(impl):
    with _three_identical(impl) as b:
        qpos = np.tile(MODEL.qpos0, (3, 1))
        qpos[:, BOX_Z] = 0.05  # resting on the floor
        qvel = np.zeros((3, MODEL.nv))
        qvel[:, V_BOX_X] = 2.0
        # MuJoCo combines the two geoms' friction with max: lower both floor and box
        b.params["geom_friction"][1, [FLOOR, BOX_GEOM], 0] = 0.05
        b.reset(qpos=qpos, qvel=qvel)
        for _ in range(60):
            b.step(torch.zeros(3, MODEL.nu))
        x = b.qpos[:, 0]
        assert x[1] > x[0] + 0.1  # slides further on the slippery floor
        assert torch.equal(b.qpos[0], b.qpos[2])


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_damping_write_slows_a_hinge(impl):
    with _three_identical(impl) as b:
        qvel = np.zeros((3, MODEL.nv))
        qvel[:, V_SPIN] = 5.0
        b.reset(qvel=qvel)
        b.params["dof_damping"][1, V_SPIN] = 0.01
        for _ in range(40):
            b.step(torch.zeros(3, MODEL.nu))
        w = b.qvel[:, V_SPIN]
        assert w[0].item() == pytest.approx(5.0)  # undamped wheel keeps spinning
        assert w[1] < 4.0
        assert torch.equal(b.qvel[0], b.qvel[2])


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_gain_write_changes_tracking_and_keeps_servo_consistent(impl):
    with _three_identical(impl, nstep=4) as b:
        b.params["actuator_gain"][1, 0] = 200.0  # shoulder kp 20 -> 200
        ctrl = torch.zeros(3, MODEL.nu, dtype=torch.float64)
        ctrl[:, 0] = 0.3
        for _ in range(150):  # 3 s: the servos settle
            b.step(ctrl)
        err = (b.qpos[:, SHOULDER] - 0.3).abs()
        # the stiffer servo sags less under gravity; with the bias left at -20 it would
        # settle near 0.3 * 200 / 20 = 3 rad instead
        assert err[1] < 0.5 * err[0]
        assert err[1] < 0.05
        assert torch.equal(b.qpos[0], b.qpos[2])


def test_param_writes_are_validated():
    with MujocoBatch(XML, 2) as b:
        b.params["body_mass"][1, BOX] = -1.0
        with pytest.raises(ValueError, match=r"body_mass.*env ids \[1\]"):
            b.step(torch.zeros(2, MODEL.nu))
        b.params["body_mass"][1, BOX] = 1.0
        b.params["geom_friction"][0, FLOOR, 0] = float("nan")
        with pytest.raises(ValueError, match="geom_friction"):
            b.step(torch.zeros(2, MODEL.nu))
        b.params["geom_friction"][0, FLOOR, 0] = 1.0
        b.params["dof_damping"] = torch.zeros(3, MODEL.nv)
        with pytest.raises(ValueError, match="dof_damping.*shape"):
            b.step(torch.zeros(2, MODEL.nu))
        b.params["dof_damping"] = torch.zeros(2, MODEL.nv, dtype=torch.float64)
        b.step(torch.zeros(2, MODEL.nu))  # valid again: applies


# ---------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_errors_naming_the_problem():
    with MujocoBatch(XML, 2) as b:
        with pytest.raises(ValueError, match=r"shape \(2, 2\), expected \(2, 3\)"):
            b.step(torch.zeros(2, 2))
        nan = torch.zeros(2, MODEL.nu)
        nan[1, 0] = float("nan")
        with pytest.raises(ValueError, match=r"NaN/Inf for env ids \[1\]"):
            b.step(nan)
        with pytest.raises(ValueError, match="torch.Tensor"):
            b.step(np.zeros((2, MODEL.nu)))
        with pytest.raises(ValueError, match="floating"):
            b.step(torch.zeros(2, MODEL.nu, dtype=torch.int64))
        with pytest.raises(ValueError, match="out of range"):
            b.reset([5])
        with pytest.raises(ValueError, match="qpos has shape"):
            b.reset([0], qpos=np.zeros((1, 3)))
        with pytest.raises(ValueError, match="unknown sensor"):
            b.sensor("nope")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        MujocoBatch(XML, 2, backend="gpu")
    with pytest.raises(ValueError, match="num_envs"):
        MujocoBatch(XML, 0)
    with pytest.raises(ValueError, match="nstep"):
        MujocoBatch(XML, 1, nstep=0)
    with pytest.raises(ValueError, match="unknown fields"):
        MujocoBatch(XML, 1, fields=("xpos", "qacc"))
    with pytest.raises(ValueError, match="device must be 'cpu'"):
        MujocoBatch(XML, 1, device="cuda")
    with pytest.raises(ValueError, match="does not exist"):
        MujocoBatch("no/such/model.xml", 1)


# ---------------------------------------------------------------------------- warp
def test_warp_path_checks_solver_and_names_missing_packages(monkeypatch):
    pgs = XML.replace('solver="Newton"', 'solver="PGS"')
    with pytest.raises(ValueError, match="PGS"):
        MujocoBatch(pgs, 2, backend="warp")
    monkeypatch.setitem(sys.modules, "mujoco_warp", None)  # as if not installed
    with pytest.raises(ImportError, match="mujoco-warp.*warp-lang"):
        MujocoBatch(XML, 2, backend="warp")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_WARP, reason="mujoco_warp / warp-lang not installed")
def test_warp_cpu_device_matches_native():
    """MuJoCo Warp on warp's CPU device (first run compiles kernels: slow) vs native MuJoCo."""
    n, steps = 4, 20
    qpos, qvel = initial_states(MODEL, n)
    ctrls = random_ctrls(MODEL, steps, n)
    w = MujocoBatch(XML, n, backend="warp", device="cpu")
    assert w.dtype == torch.float32 and w.impl == "warp"
    w.reset(qpos=qpos, qvel=qvel)
    run(w, ctrls.astype(np.float32))
    ref = reference(MODEL, qpos, qvel, ctrls, 1)
    for i, d in enumerate(ref):
        np.testing.assert_allclose(w.qpos[i].numpy(), d.qpos, atol=1e-4)
        fresh = mujoco.MjData(MODEL)
        fresh.qpos[:], fresh.qvel[:] = d.qpos, d.qvel
        mujoco.mj_forward(MODEL, fresh)
        np.testing.assert_allclose(w.xpos[i].numpy(), fresh.xpos, atol=1e-4)
        np.testing.assert_allclose(w.xquat[i].numpy(), fresh.xquat, atol=1e-4)
    # reset by ids and a parameter write on warp too
    before = w.qpos.clone()
    w.reset([2])
    np.testing.assert_allclose(w.qpos[2].numpy(), MODEL.qpos0, atol=1e-7)
    assert torch.equal(w.qpos[[0, 1, 3]], before[[0, 1, 3]])
    w.params["body_mass"][1, PUCK_BODY] *= 4.0
    ctrl = torch.zeros(n, MODEL.nu)
    ctrl[:, 2] = 1.0
    v0 = w.qvel[:, V_PUCK].clone()
    for _ in range(10):
        w.step(ctrl)
    dv = w.qvel[:, V_PUCK] - v0
    assert dv[1].item() == pytest.approx(dv[0].item() / 4, rel=1e-3)
    w.close()


# ---------------------------------------------------------------------------- rendering
def test_render_frames():
    with MujocoBatch(XML, 2) as b:
        try:
            frames = b.render([0, 1], width=64, height=48, camera="side")
        except RuntimeError as e:
            pytest.skip(f"no OpenGL backend: {e}")
        assert frames.shape == (2, 48, 64, 3) and frames.dtype == np.uint8
        assert frames.min() != frames.max()
        assert b.render(width=32, height=24).shape == (1, 24, 32, 3)  # env 0, free camera
        with pytest.raises(ValueError, match="unknown camera"):
            b.render(camera="nope")


def test_cfrc_ext_is_filled_on_cpu_without_an_acceleration_sensor():
    """mj_step fills cfrc_ext only when a sensor needs the acceleration stage; the batch adds a
    trigger sensor so contact wrenches are real on CPU (they were zero for the humanoid)."""
    import mujoco

    from rlkd.envs.humanoid.skeleton import ASSET_PATH
    from rlkd.sim.mujoco.model import CFRC_TRIGGER, has_acc_stage_sensor

    bare = mujoco.MjModel.from_xml_path(str(ASSET_PATH))
    assert not has_acc_stage_sensor(bare)
    batch = MujocoBatch(str(ASSET_PATH), num_envs=2)
    assert batch.model.sensor(CFRC_TRIGGER).id == bare.nsensor  # appended after the others
    ref = mujoco.MjData(bare)
    mujoco.mj_resetData(bare, ref)
    batch.reset()
    for _ in range(40):
        mujoco.mj_step(bare, ref)
        batch.step(torch.zeros(2, bare.nu))
    mujoco.mj_rnePostConstraint(bare, ref)
    got = batch.cfrc_ext[0].double().numpy()
    assert np.abs(ref.cfrc_ext).sum() > 100  # the standing model touches the floor
    np.testing.assert_allclose(got, ref.cfrc_ext, rtol=1e-6, atol=1e-6)
