"""Per-env contact ``solref`` (``geom_solref`` in ``MujocoBatch.params``, both CPU
implementations; MuJoCo Warp when installed) and the tactile task's ``gel_stiffness`` param
built on it: a stiffer gel is pressed less by the same grip, a softer one more (at rest the
penetration depends on grip / stiffness alone), a write changes its env only, it resumes
exactly, the sim-to-real kind reaches it, and bad values are refused naming the param.
Fast (~2 s on 2 shared cores) but for the slow Warp tests (skipped without mujoco_warp)."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from conftest import hold_still, make_tactile
from rlkd.core.config import ConfigError
from rlkd.sim.mujoco import MujocoBatch
from rlkd.sim.mujoco.model import ParamTable
from rlkd.sim2real import Condition
from rlkd.sim2real.randomize import DomainRandomizer

HAS_WARP = (importlib.util.find_spec("mujoco_warp") is not None
            and importlib.util.find_spec("warp") is not None)
#: The scene's nominal pad time constant, s (SceneSpec.pad_solref[0]).
PAD_TC = 0.01

# A box dropped on the floor: how far it sinks in at rest is set by the contact's solref.
BOX_XML = """
<mujoco model="solref_test">
  <option timestep="0.002" solver="Newton"/>
  <worldbody>
    <geom name="floor" type="plane" size="2 2 0.1"/>
    <body name="box" pos="0 0 0.06">
      <freejoint/>
      <geom name="box" type="box" size="0.05 0.05 0.05" mass="1"/>
    </body>
  </worldbody>
</mujoco>
"""
BOX_Z = 2  # qpos index of the box's height


def _sink(b: MujocoBatch, steps: int = 400) -> torch.Tensor:
    """Settle the boxes of ``b`` (0.8 s) and return how far each sank into the floor, m."""
    ctrl = torch.zeros(b.num_envs, b.nu, dtype=b.dtype, device=b.device)
    for _ in range(steps):
        b.step(ctrl)
    return 0.05 - b.qpos[:, BOX_Z].double().cpu()


# ------------------------------------------------------------------ the backend parameter
@pytest.mark.parametrize("impl", ["batch", "threads"])
def test_geom_solref_is_per_env_on_cpu(impl):
    with MujocoBatch(BOX_XML, 3, cpu_impl=impl) as b:
        assert tuple(b.params["geom_solref"].shape) == (3, b.ngeom, 2)
        np.testing.assert_array_equal(b.params["geom_solref"][0].numpy(), b.model.geom_solref)
        b.params["geom_solref"][1, :, 0] = 0.04         # both geoms 2x slower: 4x softer
        sink = _sink(b)
        # MuJoCo mixes the two geoms' solref (equal priority, solmix): both were changed.
        assert sink[1] > 2.0 * sink[0] > 0, sink
        assert torch.equal(b.qpos[0], b.qpos[2])         # untouched envs stay bitwise equal


def test_param_table_refuses_bad_solref_rows():
    with MujocoBatch(BOX_XML, 2) as b:
        table = ParamTable.from_model(b.model)
        ids = np.array([3, 7])
        good = np.tile(b.model.geom_solref, (2, 1, 1))
        table.check("geom_solref", good, ids)           # nominal rows pass
        for col, value in ((0, 0.0), (0, -100.0), (1, 0.0), (1, -1.0), (0, math.nan),
                           (1, math.inf)):
            rows = good.copy()
            rows[1, 0, col] = value
            with pytest.raises(ValueError, match=r"geom_solref.*direct-stiffness.*\[7\]"):
                table.check("geom_solref", rows, ids)
        # and through the batch, at the next step
        b.params["geom_solref"][1, 0, 0] = -2000.0      # MuJoCo's direct form: not supported
        with pytest.raises(ValueError, match=r"params\['geom_solref'\].*env ids \[1\]"):
            b.step(torch.zeros(2, b.nu, dtype=torch.float64))
        b.params["geom_solref"][1, 0, 0] = 0.02
        b.step(torch.zeros(2, b.nu, dtype=torch.float64))  # valid again: applies


# ------------------------------------------------------------------ the tactile gel
def _settled(gel: list[float], grip: list[float] | None = None, steps: int = 10, **kw):
    """One env per ``gel`` value (and ``grip`` force, N), the same upright, centred grasp;
    returns the env after ``steps`` zero-action steps and the finger travel per env, m (the
    pad penetration: the pads touch the peg at q = 0)."""
    env = make_tactile(len(gel), in_hand_angle=0.0, in_hand_shift=0.0, socket_range=0.0,
                       start_height_max=0.003, **kw)
    env.params["gel_stiffness"][:] = torch.tensor(gel)
    if grip is not None:
        env.params["grip_force"][:] = torch.tensor(grip)
    env.reset(seed=0)
    if steps:
        hold_still(env, steps)
    return env, env.sim.qpos[:, 6].double().clone()


def test_stiffer_gel_is_pressed_less_and_softer_gel_more_by_the_same_grip():
    env, q = _settled([4.0, 1.0, 0.25, 4.0], grip=[10.0, 10.0, 10.0, 40.0])
    stiff, nominal, soft, stiff_40 = q.tolist()
    # measured: 0.31, 0.61, 1.09 mm at 10 N
    assert 0 < stiff < 0.6 * nominal and soft > 1.5 * nominal, q
    # the sensor sees it: its deepest taxel is the penetration, on both pads
    depth = env.sensor.depth.amax((-1, -2)).double()
    torch.testing.assert_close(depth, q[:, None].expand(-1, 2), rtol=1e-3, atol=1e-6)
    # stiffness scales by g: at rest the penetration depends on grip / g alone (4x at 40 N
    # = nominal at 10 N), and the field still sums to the grip force
    assert stiff_40 == pytest.approx(nominal, rel=0.01), q
    sums = env.get_observations()["tactile"][:, :, 0].sum((-1, -2))
    torch.testing.assert_close(sums, torch.tensor([[10.0] * 2] * 3 + [[40.0] * 2]),
                               rtol=0.02, atol=0)
    solref = env.sim.params["geom_solref"][:, env.pad_geom_ids]
    torch.testing.assert_close(solref[:, :, 0], torch.tensor(
        [[PAD_TC / 2] * 2, [PAD_TC] * 2, [PAD_TC * 2] * 2, [PAD_TC / 2] * 2], dtype=solref.dtype))
    assert bool((solref[:, :, 1] == 1.0).all())          # the damping ratio is kept
    env.close()


def test_writing_one_envs_gel_changes_that_env_only():
    ref, _ = _settled([1.0, 1.0], steps=0)
    env, _ = _settled([1.0, 1.0], steps=0)
    nominal = env.sim.params["geom_solref"].clone()
    env.params["gel_stiffness"][0] = 3.0                 # mid-episode, env 0 only
    zero = torch.zeros(2, 6)
    for _ in range(8):
        obs, *_ = env.step(zero)
        obs_ref, *_ = ref.step(zero)
    solref = env.sim.params["geom_solref"]
    assert torch.equal(solref[1], nominal[1])            # env 1: bitwise nominal
    pads = env.pad_geom_ids
    others = torch.ones(env.sim.ngeom, dtype=torch.bool)
    others[pads] = False
    assert torch.equal(solref[0, others], nominal[0, others])
    torch.testing.assert_close(solref[0, pads, 0],
                               torch.full((2,), PAD_TC / math.sqrt(3.0), dtype=solref.dtype))
    assert torch.equal(env.sim.qpos[1], ref.sim.qpos[1])  # env 1 steps as if never touched
    for k in obs:
        assert torch.equal(obs[k][1], obs_ref[k][1]), k
    assert env.sim.qpos[0, 6] < 0.8 * ref.sim.qpos[0, 6]  # env 0's fingers moved out
    env.close()
    ref.close()


def test_gel_stiffness_resumes_exactly():
    a, _ = _settled([2.0, 0.5], steps=3)
    a.params["gel_stiffness"][1] = 0.7                    # changed but not yet applied
    state = a.state_dict()
    b, _ = _settled([1.0, 1.0], steps=0)                 # another history
    b.load_state_dict(state)
    gen = torch.Generator().manual_seed(3)
    for _ in range(6):
        act = torch.rand(2, 6, generator=gen) * 0.4 - 0.2
        oa, ra, *_ = a.step(act)
        ob, rb, *_ = b.step(act)
    assert torch.equal(a.sim.get_state(), b.sim.get_state())
    assert torch.equal(a.sim.params["geom_solref"], b.sim.params["geom_solref"])
    for k in oa:
        assert torch.equal(oa[k], ob[k]), k
    assert torch.equal(ra, rb)
    a.close()
    b.close()


def test_sim2real_kind_scales_the_gel():
    env = make_tactile(4)
    assert "gel_stiffness" in env.PERTURBATIONS
    Condition("soft_gel", {"gel_stiffness": 0.5}).apply(env, torch.tensor([1, 3]))
    assert env.params["gel_stiffness"].tolist() == [1.0, 0.5, 1.0, 0.5]
    env.step(torch.zeros(4, 6))
    tc = env.sim.params["geom_solref"][:, env.pad_geom_ids[0], 0]
    torch.testing.assert_close(tc, torch.tensor([1, 2 ** 0.5, 1, 2 ** 0.5],
                                                dtype=tc.dtype) * PAD_TC)
    env.close()
    env = make_tactile(4)
    dr = DomainRandomizer(env, "gel_stiffness=0.5:2")   # training-time randomisation
    dr(env, torch.arange(4))
    g = env.params["gel_stiffness"]
    assert bool(((g >= 0.5) & (g <= 2.0)).all()) and g.unique().numel() == 4
    env.step(torch.zeros(4, 6))
    tc = env.sim.params["geom_solref"][:, env.pad_geom_ids[1], 0]
    torch.testing.assert_close(tc, PAD_TC / g.double().sqrt())
    env.close()


@pytest.mark.parametrize("value", [math.nan, math.inf, 0.0, -1.0])
def test_bad_gel_stiffness_is_refused_naming_it(value):
    env = make_tactile(2)
    env.params["gel_stiffness"][1] = value
    with pytest.raises(ValueError, match=r"params\['gel_stiffness'\].*\[1\]"):
        env.step(torch.zeros(2, 6))
    with pytest.raises(ValueError, match=r"params\['gel_stiffness'\].*\[1\]"):
        env.reset()
    env.close()


@pytest.mark.parametrize("value", [0.0, -2.0, math.nan])
def test_bad_gel_stiffness_config_is_refused_naming_it(value):
    import rlkd

    with pytest.raises(ConfigError) as err:
        rlkd.make("TactilePegInsertion-v0", num_envs=1, gel_stiffness=value)
    assert err.value.field == "gel_stiffness" and "finite number > 0" in str(err.value)


def test_gel_stiffness_config_sets_every_env():
    env = make_tactile(2, gel_stiffness=4.0)
    assert env.params["gel_stiffness"].tolist() == [4.0, 4.0]
    tc = env.sim.params["geom_solref"][:, env.pad_geom_ids, 0]
    assert bool((tc == PAD_TC / 2).all())
    env.close()


# ------------------------------------------------------------------ MuJoCo Warp
def _warp_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.slow
@pytest.mark.skipif(not HAS_WARP, reason="mujoco_warp / warp-lang not installed")
def test_geom_solref_is_per_env_on_warp():
    """Warp's batched ``geom_solref`` (CUDA when available, else warp's CPU device: the first
    run compiles kernels, slow) against the native batch: same sinking, per env."""
    with MujocoBatch(BOX_XML, 3, backend="warp", device=_warp_device()) as w, \
            MujocoBatch(BOX_XML, 3) as c:
        for b in (w, c):
            b.params["geom_solref"][1, :, 0] = 0.04
        sink_w, sink_c = _sink(w), _sink(c)
        assert sink_w[1] > 2.0 * sink_w[0] > 0, sink_w
        torch.testing.assert_close(sink_w, sink_c, rtol=0.05, atol=2e-6)
        assert torch.equal(w.qpos[0], w.qpos[2])


@pytest.mark.slow
@pytest.mark.skipif(not HAS_WARP, reason="mujoco_warp / warp-lang not installed")
def test_gel_stiffness_on_warp():
    """The tactile env on Warp (its first Warp test: a failure may lie outside the gel) gives
    the native backend's pad penetrations for a stiff, nominal and soft gel."""
    _, q = _settled([4.0, 1.0, 0.25], backend="warp", device=_warp_device())
    _, q_cpu = _settled([4.0, 1.0, 0.25])
    assert q[0] < q[1] < q[2], q
    torch.testing.assert_close(q.cpu(), q_cpu, rtol=0.05, atol=1e-5)
