"""Ray casting for the planar lidar (rlkd.sim.raycast2d) and unicycle kinematics (rlkd.sim.diffdrive).

Error bounds of the range table, measured here (one layout of a 10 x 8 m warehouse, 3000 free
poses x 32 rays, 6 m range, 0.1 m grid, 128 heading bins):

* at grid nodes and heading-bin centres the table is exact up to 8-bit quantisation:
  |error| <= max_range / 510 (1.2 cm);
* off the nodes, bilinear interpolation in position is exact on a planar face (for a fixed
  direction the range is affine in the position), so it only errs on rays whose cell corners see
  different surfaces (box corners, grazing rays): measured 93% of rays within one quantum;
* the nearest heading bin is up to pi / 128 = 0.0245 rad off. A ray hitting a face at incidence
  theta then errs by about r * 0.0245 * tan(theta): at most 10% of the range for theta < 76 deg.
  Measured: median 1.1 cm, 96% of rays within 0.1 r + one quantum (95th percentile 25 cm); the
  rest are grazing rays and rays passing box corners (depth discontinuities, a real lidar's
  "mixed pixels").
"""

from __future__ import annotations

import math

import pytest
import torch

from rlkd.envs.agv_warehouse.layout import generate_layouts
from rlkd.sim.diffdrive import unicycle_step, wrap_angle
from rlkd.sim.raycast2d import RangeTable, cast_boxes_exact, cast_circles, cast_circles_even

W, H, MAX_RANGE, RES, A = 10.0, 8.0, 6.0, 0.1, 128
QUANTUM = MAX_RANGE / 255


# ---------------------------------------------------------------------------------- exact boxes
def test_cast_boxes_exact_hand_computed():
    boxes = torch.tensor([[[3.0, 0.5, 4.0, 1.5], [-1e4, -1e4, -1e4 + 1, -1e4 + 1]]])  # + padding
    origins = torch.tensor([[[1.0, 1.0], [3.5, 1.0], [1.0, 3.0]]])  # (L=1, G=3, 2)
    angles = torch.tensor([[[0.0, math.pi / 2, math.pi, -math.pi / 2],
                            [0.0, 1.0, 2.0, 3.0],
                            [-math.pi / 4, 0.0, math.pi / 4, math.pi]]])
    r = cast_boxes_exact(origins, angles, boxes, (10.0, 10.0), 20.0)
    assert r.shape == (1, 3, 4) and r.dtype == torch.float32
    expected = torch.tensor([[[2.0, 9.0, 1.0, 1.0],           # box face, top wall, left, bottom
                              [0.0, 0.0, 0.0, 0.0],           # inside the box
                              [2 * math.sqrt(2), 9.0, 7 * math.sqrt(2), 1.0]]])
    torch.testing.assert_close(r, expected, atol=1e-5, rtol=0)
    # Clipped to max_range.
    r = cast_boxes_exact(origins, angles, boxes, (10.0, 10.0), 1.2)
    assert r.max() <= 1.2 + 1e-6 and r[0, 0, 0] == pytest.approx(1.2)
    # No boxes at all: only the walls.
    r = cast_boxes_exact(origins[:, :1], angles[:, :1], boxes[:, :0], (10.0, 10.0), 20.0)
    torch.testing.assert_close(r, torch.tensor([[[9.0, 9.0, 1.0, 1.0]]]), atol=1e-5, rtol=0)


def test_cast_boxes_exact_broadcasts_layouts():
    boxes = torch.tensor([[[2.0, 0.0, 3.0, 10.0]], [[5.0, 0.0, 6.0, 10.0]]])  # one wall-like box each
    origins = torch.full((2, 3, 2), 1.0)
    angles = torch.zeros(2, 3, 1)
    r = cast_boxes_exact(origins, angles, boxes, (10.0, 10.0), 20.0)
    torch.testing.assert_close(r[0], torch.full((3, 1), 1.0))
    torch.testing.assert_close(r[1], torch.full((3, 1), 4.0))


# ---------------------------------------------------------------------------------- range table
@pytest.fixture(scope="module")
def table():
    lay = generate_layouts(1, 0, W, H, shelf_rows=2, shelf_depth=1.0, cross_aisles=1,
                           cross_aisle_width=1.8, clutter_boxes=3, robot_radius=0.3,
                           obstacle_radius=0.3)
    return lay, RangeTable(lay.boxes, (W, H), MAX_RANGE, RES, A)


def _exact(lay, pos, angles):
    return cast_boxes_exact(pos[None], angles[None], lay.boxes, (W, H), MAX_RANGE)[0]


def _free_poses(lay, m, gen, rays=32):
    idx = (torch.rand(m, generator=gen) * lay.num_free[0]).long()
    pos = lay.free_points[0, idx] + (torch.rand(m, 2, generator=gen) - 0.5) * lay.free_cell
    angles = torch.rand(m, 1, generator=gen) * 2 * math.pi + torch.arange(rays) * (2 * math.pi / rays)
    return pos, angles


def test_range_table_layout_and_size(table):
    lay, tab = table
    L, ny, nx, a = tab.shape
    assert (L, a) == (1, A)
    assert nx == round(W / RES) + 1 and ny == round(H / RES) + 1
    assert tab.nbytes == L * ny * nx * a * 4  # four 8-bit corners packed per entry


def test_range_table_exact_at_nodes(table):
    lay, tab = table
    _, ny, nx, _ = tab.shape
    gen = torch.Generator().manual_seed(0)
    m = 3000
    ix, iy = torch.randint(0, nx, (m,), generator=gen), torch.randint(0, ny, (m,), generator=gen)
    # The table's own node coordinates (a node can sit exactly on a shelf face, where a 1-ulp
    # difference decides between "inside" (0) and the range to the next surface).
    pos = torch.stack([torch.linspace(0.0, W, nx)[ix], torch.linspace(0.0, H, ny)[iy]], dim=-1)
    angles = torch.randint(0, A, (m, 32), generator=gen).float() * (2 * math.pi / A)
    err = (tab.lookup(torch.zeros(m, dtype=torch.long), pos, angles) - _exact(lay, pos, angles)).abs()
    assert err.max() <= QUANTUM / 2 + 1e-5


def test_range_table_error_bounds(table):
    lay, tab = table
    gen = torch.Generator().manual_seed(1)
    m = 3000
    pos, angles = _free_poses(lay, m, gen)
    lid = torch.zeros(m, dtype=torch.long)
    exact = _exact(lay, pos, angles)
    got = tab.lookup(lid, pos, angles)
    assert got.shape == exact.shape and torch.isfinite(got).all()
    assert got.min() >= 0 and got.max() <= MAX_RANGE + 1e-5
    err = (got - exact).abs()
    assert err.median() <= QUANTUM  # measured ~1.1 cm
    within = (err <= 0.1 * exact + QUANTUM).float().mean()
    assert within >= 0.95, f"only {within:.3f} of rays within 10% + one quantum"

    # Position interpolation alone (angles on bin centres): exact on faces, errs at corners only.
    snapped = torch.remainder(torch.round(angles * (A / (2 * math.pi))), A) * (2 * math.pi / A)
    err_pos = (tab.lookup(lid, pos, snapped) - _exact(lay, pos, snapped)).abs()
    assert (err_pos <= QUANTUM).float().mean() >= 0.85
    # Angles are periodic: +-2 pi reads the same bins.
    torch.testing.assert_close(tab.lookup(lid, pos, angles + 2 * math.pi), got, atol=1e-5, rtol=0)
    torch.testing.assert_close(tab.lookup(lid, pos, angles - 4 * math.pi), got, atol=1e-5, rtol=0)


def test_range_table_survives_nan_and_outside_positions(table):
    lay, tab = table
    pos = torch.tensor([[float("nan"), 1.0], [-5.0, 100.0], [W + 3, H / 2]])
    r = tab.lookup(torch.zeros(3, dtype=torch.long), pos, torch.zeros(3, 8))
    assert torch.isfinite(r).all() and r.shape == (3, 8)


# ---------------------------------------------------------------------------------- circles
def _rays(n, R, fov, gen):
    """Evenly spaced rays as the AGV env lays them out: (angles (n, R), spacing, full_circle)."""
    full = fov >= 2 * math.pi - 1e-6
    if full:
        spacing = 2 * math.pi / R
        first = -math.pi + 0.5 * spacing
    else:
        spacing = fov / (R - 1)
        first = -fov / 2
    heading = (torch.rand(n, generator=gen) * 2 - 1) * 3 * math.pi  # unwrapped headings too
    return heading[:, None] + first + torch.arange(R) * spacing, spacing, full


def _circles(angles, spacing, n, K, gen, d_lo, d_hi):
    """Centres at distance [d_lo, d_hi); half of them at bearings that stress the index wrap:
    at ray 0, at +-pi from ray 0, around the last ray and behind the FOV's centre."""
    R = angles.shape[1]
    origins = torch.rand(n, 2, generator=gen) * 10
    d = d_lo + torch.rand(n, K, generator=gen) * (d_hi - d_lo)
    rel = torch.rand(n, K, generator=gen) * 2 * math.pi - math.pi  # bearing relative to ray 0
    mid = 0.5 * (R - 1) * spacing
    tricky = torch.tensor([0.0, math.pi, -math.pi, mid + math.pi, mid - math.pi, (R - 1) * spacing,
                           -0.5 * spacing, 2 * math.pi - 0.5 * spacing])
    k = K // 2
    rel[:, :k] = tricky[torch.randint(0, len(tricky), (n, k), generator=gen)] \
        + (torch.rand(n, k, generator=gen) - 0.5) * 0.3
    b = angles[:, 0:1] + rel
    centres = origins[:, None] + d[..., None] * torch.stack([torch.cos(b), torch.sin(b)], dim=-1)
    return origins, centres


RADIUS, MIN_DIST = 0.3, 0.6  # obstacle radius; robot radius + obstacle radius, as in the env


@pytest.mark.parametrize("R,fov_deg", [(32, 360), (64, 360), (7, 360), (31, 180), (48, 270),
                                       (64, 350), (90, 359), (16, 340), (8, 90)])
def test_cast_circles_even_matches_dense(R, fov_deg):
    gen = torch.Generator().manual_seed(R * 1000 + fov_deg)
    n, K = 2000, 8
    angles, spacing, full = _rays(n, R, math.radians(fov_deg), gen)
    origins, centres = _circles(angles, spacing, n, K, gen, MIN_DIST, MAX_RANGE + 0.5)
    ref = cast_circles(origins, angles, centres, RADIUS, MAX_RANGE)
    got = cast_circles_even(origins, angles, spacing, full, centres, RADIUS, MAX_RANGE, MIN_DIST)
    assert got.shape == (n, R) and torch.isfinite(got).all()
    assert (ref < MAX_RANGE).float().mean() > 0.05  # the comparison is not vacuous
    close = ((got - ref).abs() <= 1e-3).float().mean()
    # Misses are rays tangent to a circle (|perpendicular distance - radius| ~ 1e-6 m in float32).
    assert close >= 0.999, f"{close:.5f} of rays within 1e-3 m"


@pytest.mark.parametrize("R,fov_deg", [(32, 360), (31, 180), (64, 350)])
def test_cast_circles_even_min_dist(R, fov_deg):
    """Centres closer than ``min_dist`` (the robot already collided) are cast as if they sat at
    ``min_dist`` along their bearing; the output stays finite and within [0, max_range]."""
    gen = torch.Generator().manual_seed(7)
    n, K = 1000, 4
    angles, spacing, full = _rays(n, R, math.radians(fov_deg), gen)
    origins, centres = _circles(angles, spacing, n, K, gen, 0.01, MIN_DIST)  # incl. overlapping
    got = cast_circles_even(origins, angles, spacing, full, centres, RADIUS, MAX_RANGE, MIN_DIST)
    assert torch.isfinite(got).all() and got.min() >= 0 and got.max() <= MAX_RANGE
    rel = centres - origins[:, None]
    pushed = origins[:, None] + rel / rel.norm(dim=-1, keepdim=True) * MIN_DIST
    ref = cast_circles(origins, angles, pushed, RADIUS, MAX_RANGE)
    assert ((got - ref).abs() <= 1e-3).float().mean() >= 0.999
    # The ray nearest to a close obstacle sees it within min_dist.
    if full:
        assert (got.amin(dim=1) <= MIN_DIST).all()


def test_cast_circles_dense_basics():
    origins = torch.tensor([[0.0, 0.0]])
    angles = torch.tensor([[0.0, math.pi / 2, math.pi]])
    centres = torch.tensor([[[2.0, 0.0], [0.0, -3.0]]])
    r = cast_circles(origins, angles, centres, 0.5, 6.0)
    torch.testing.assert_close(r, torch.tensor([[1.5, 6.0, 6.0]]))
    assert cast_circles(origins, angles, centres[:, :0], 0.5, 6.0).eq(6.0).all()
    assert cast_circles_even(origins, angles[:, :1], 1.0, True, centres[:, :0], 0.5, 6.0, 0.5).eq(6.0).all()
    # Origin inside a circle: rays into its half-plane read 0, rays pointing away read nothing.
    inside = cast_circles(origins, angles, torch.tensor([[[0.2, 0.0]]]), 0.5, 6.0)
    torch.testing.assert_close(inside, torch.tensor([[0.0, 6.0, 6.0]]))


# ---------------------------------------------------------------------------------- kinematics
def _step(v_cmd, w_cmd, n=1, acc=1e3, slip=0.0, dt=0.1, heading=0.0, v0=0.0, w0=0.0):
    t = lambda x: torch.full((n,), float(x))  # noqa: E731
    return unicycle_step(torch.zeros(n, 2), t(heading), t(v0), t(w0), t(v_cmd), t(w_cmd),
                         t(acc), t(acc), t(slip), dt)


def test_unicycle_straight_turn_slip_and_acceleration():
    pos, hd, v, w = _step(1.0, 0.0, heading=math.pi / 2)
    torch.testing.assert_close(pos, torch.tensor([[0.0, 0.1]]), atol=1e-6, rtol=0)
    assert float(v) == pytest.approx(1.0) and float(hd) == pytest.approx(math.pi / 2)
    pos, hd, _, w = _step(0.0, 2.0)
    assert pos.abs().max() == 0 and float(hd) == pytest.approx(0.2) and float(w) == pytest.approx(2.0)
    pos, hd, v, _ = _step(1.0, 1.0, slip=0.5)  # wheels realise half of the body velocities
    assert float(v) == pytest.approx(1.0)  # commanded velocity state is not reduced by slip
    assert float(pos.norm()) == pytest.approx(0.05, abs=1e-6) and float(hd) == pytest.approx(0.05)
    pos, _, v, w = _step(1.0, -3.0, acc=2.0)  # acceleration limited: 2 m/s^2 x 0.1 s
    assert float(v) == pytest.approx(0.2) and float(w) == pytest.approx(-0.2)
    _, _, v, _ = _step(-1.0, 0.0, acc=2.0, v0=0.1)  # braking is limited the same way
    assert float(v) == pytest.approx(-0.1)


def test_unicycle_midpoint_matches_arc():
    v, w, dt = 1.0, 1.0, 0.1
    pos, hd, _, _ = _step(v, w, dt=dt)
    exact = torch.tensor([[math.sin(w * dt) / w, (1 - math.cos(w * dt)) / w]]) * v
    # Midpoint rule: local error v w^2 dt^3 / 24 = 4e-5 m here.
    torch.testing.assert_close(pos, exact, atol=6e-5, rtol=0)
    # A full circle closes.
    n_steps = 200
    dt = 2 * math.pi / n_steps
    p, h, vv, ww = torch.zeros(1, 2), torch.zeros(1), torch.ones(1), torch.ones(1)
    one = torch.ones(1)
    for _ in range(n_steps):
        p, h, vv, ww = unicycle_step(p, h, vv, ww, one, one, one * 1e3, one * 1e3, one * 0, dt)
    assert float(p.norm()) < 1e-3 and abs(float(wrap_angle(h))) < 1e-4


def test_wrap_angle():
    a = torch.tensor([0.0, math.pi, -math.pi, 3 * math.pi / 2, -3 * math.pi / 2, 7.0, -100.0])
    w = wrap_angle(a)
    assert (w >= -math.pi).all() and (w < math.pi).all()
    torch.testing.assert_close(torch.cos(w), torch.cos(a), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.sin(w), torch.sin(a), atol=1e-5, rtol=0)
    torch.testing.assert_close(w[:5], torch.tensor([0.0, -math.pi, -math.pi, -math.pi / 2,
                                                    math.pi / 2]), atol=1e-6, rtol=0)
