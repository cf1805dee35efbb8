"""Tactile sensor (rlkd.envs.tactile.sensor): the analytic cylinder SDF, the taxel depth against
MuJoCo's native ``<tactile>`` sensor (a CPU-only oracle built into a test variant of the scene),
and the sensor's argument checks. Fast (~2 s)."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch

from rlkd.envs.tactile.scene import GRASP_DROP, SceneSpec, pad_centre_z, scene_xml, settled_finger_q
from rlkd.envs.tactile.sensor import TactileSensor, cylinder_sdf, taxel_grid

SPEC = SceneSpec()
R, C = SPEC.taxels


def _sensor(**kw) -> TactileSensor:
    args = dict(rows=R, cols=C, width=SPEC.pad_width, height=SPEC.pad_height,
                peg_radius=SPEC.peg_radius, peg_half_length=SPEC.peg_length / 2,
                pad_offsets=torch.zeros(2, 3), pad_rotations=torch.eye(3).expand(2, 3, 3))
    args.update(kw)
    return TactileSensor(**args)


def test_cylinder_sdf_exact_values():
    r, h = 0.004, 0.025
    p = torch.tensor([[0.0, 0.0, 0.0],          # centre: nearest surface is the side, -r
                      [0.003, 0.0, 0.0],        # 1 mm inside the side
                      [0.006, 0.0, 0.0],        # 2 mm outside the side
                      [0.0, 0.0, 0.0265],       # 1.5 mm above the cap
                      [0.007, 0.0, 0.029],      # off the rim: sqrt(3^2 + 4^2) = 5 mm
                      [0.0, 0.0035, 0.0245]],   # inside, 0.5 mm from both side and cap
                     dtype=torch.float64)
    want = torch.tensor([-0.004, -0.001, 0.002, 0.0015, 0.005, -0.0005], dtype=torch.float64)
    torch.testing.assert_close(cylinder_sdf(p, r, h), want, rtol=0, atol=1e-12)


def test_taxel_grid_is_centred_row_major():
    g = taxel_grid(2, 3, width=0.03, height=0.02)
    assert g.shape == (6, 3)
    torch.testing.assert_close(g[:3, 0], torch.tensor([-0.01, 0.0, 0.01], dtype=torch.float64))
    torch.testing.assert_close(g[::3, 1], torch.tensor([-0.005, 0.005], dtype=torch.float64))
    assert (g[:, 2] == 0).all()


def _held_peg(angle: float, shift: float, grip: float) -> tuple[mujoco.MjModel, mujoco.MjData]:
    """The oracle scene with the peg squeezed between the pads, after 0.1 s of holding."""
    m = mujoco.MjModel.from_xml_string(scene_xml(SPEC, oracle=True))
    d = mujoco.MjData(m)
    hz = 0.1
    d.qpos[2] = hz
    d.qpos[6:8] = settled_finger_q(grip)
    d.qpos[8:11] = [shift, 0.0, hz + pad_centre_z(SPEC) - GRASP_DROP]
    d.qpos[11:15] = [math.cos(angle / 2), 0.0, math.sin(angle / 2), 0.0]
    d.ctrl[:6] = d.qpos[:6]
    d.ctrl[6:] = grip
    for _ in range(50):
        mujoco.mj_step(m, d)
    mujoco.mj_forward(m, d)
    return m, d


@pytest.mark.parametrize("angle, shift, grip", [(0.0, 0.0, 10.0), (0.3, 0.002, 20.0),
                                                 (-0.35, -0.003, 5.0)])
def test_depth_matches_mujoco_native_tactile_sensor(angle, shift, grip):
    m, d = _held_peg(angle, shift, grip)
    mesh = m.mesh("plate").id
    adr, nv = m.mesh_vertadr[mesh], m.mesh_vertnum[mesh]
    assert nv == R * C
    vert = m.mesh_vert[adr:adr + nv].astype(np.float64)
    peg = m.body("peg").id
    sensor = _sensor()
    for side in "rl":
        g = m.geom(f"taxels_{side}").id
        pts = d.geom_xpos[g] + vert @ d.geom_xmat[g].reshape(3, 3).T
        native = d.sensor(f"native_{side}").data[:nv]
        ours = sensor.depth_at(torch.from_numpy(pts)[None], torch.from_numpy(d.xpos[peg])[None],
                               torch.from_numpy(d.xquat[peg])[None])[0].numpy()
        assert (native > 1e-4).sum() >= 20, "the peg must press into the pad"  # a real contact
        np.testing.assert_allclose(ours, native, rtol=0, atol=1e-6)


def test_sensor_grid_points_are_the_native_taxels():
    """The env's taxels (pad frame) are the native plate's vertices: same points, same depths."""
    m, d = _held_peg(0.2, 0.001, 10.0)
    from rlkd.envs.tactile.env import _PAD_AXES  # the env's pad frames

    axes = torch.tensor([a for a, _ in _PAD_AXES], dtype=torch.float64).transpose(-1, -2)
    offs = torch.tensor([[0.0, sgn * SPEC.pad_thickness / 2, 0.0] for _, sgn in _PAD_AXES])
    sensor = _sensor(pad_offsets=offs, pad_rotations=axes)
    fingers = [m.body(f"finger_{s}_body").id for s in "rl"]
    peg = m.body("peg").id
    depth = sensor.compute_depth(torch.from_numpy(d.xpos[fingers])[None],
                                 torch.from_numpy(d.xquat[fingers])[None],
                                 torch.from_numpy(d.xpos[peg])[None],
                                 torch.from_numpy(d.xquat[peg])[None])[0]
    for i, side in enumerate("rl"):
        native = np.sort(d.sensor(f"native_{side}").data[:R * C])
        np.testing.assert_allclose(np.sort(depth[i].flatten().numpy()), native, rtol=0,
                                   atol=1e-7)


@pytest.mark.parametrize("kw, match", [
    (dict(mode="piezo"), "unknown tactile mode 'piezo'"),
    (dict(rows=0), "rows=0: the taxel grid must not be empty"),
    (dict(cols=0), "cols=0: the taxel grid must not be empty"),
    (dict(width=-0.01), "width=-0.01 must be a finite number > 0"),
    (dict(kn=float("nan")), "kn=nan must be a finite number >= 0"),
    (dict(mu=-1.0), "mu=-1.0 must be a finite number >= 0"),
])
def test_bad_sensor_arguments_raise_value_error_naming_them(kw, match):
    with pytest.raises(ValueError, match=match):
        _sensor(**kw)


def test_mode_inputs_are_required():
    s = _sensor(mode="contact")
    z3, q = torch.zeros(1, 2, 3), torch.tensor([[[1.0, 0, 0, 0]] * 2])
    with pytest.raises(ValueError, match="needs pad_force"):
        s.compute(z3, q, torch.zeros(1, 3), q[:, 0])
    with pytest.raises(ValueError, match="needs finger_vel"):
        _sensor(mode="penalty").compute(z3, q, torch.zeros(1, 3), q[:, 0])
