"""Procedural warehouse layouts: shelf rows with aisles, cross aisles and optional clutter.

A layout is generated from an integer seed (numpy ``default_rng``), so the same seed always gives
the same warehouse. For each layout we also precompute what the env samples from at reset time:

* ``free_points``: centres of grid cells reachable from the largest free region with enough
  clearance for the robot (start and goal positions are drawn from these, so every goal is
  reachable from every start);
* ``patrol``: straight collision-free segments along which moving obstacles shuttle.

Frames and units: world frame, metres; the map spans ``[0, width] x [0, height]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from rlkd.sim.raycast2d import cast_boxes_exact


@dataclass
class LayoutSet:
    """``L`` layouts padded to common sizes, as tensors on the env's device.

    Attributes:
        boxes: ``(L, B, 4)`` float32 ``[xmin, ymin, xmax, ymax]``; padding boxes sit far outside.
        num_boxes: ``(L,)`` int64 real boxes per layout.
        free_points: ``(L, F, 2)`` float32 spawnable cell centres (rows past ``num_free`` repeat).
        num_free: ``(L,)`` int64.
        free_cell: cell size of ``free_points`` in metres (spawn jitter is within a cell).
        patrol: ``(L, S, 2, 2)`` float32 segment endpoints for moving obstacles.
        world: ``(width, height)``.
    """

    boxes: torch.Tensor
    num_boxes: torch.Tensor
    free_points: torch.Tensor
    num_free: torch.Tensor
    free_cell: float
    patrol: torch.Tensor
    world: tuple[float, float]


def _shelf_boxes(rng: np.random.Generator, width: float, height: float, rows: int, depth: float,
                 cross_aisles: int, cross_width: float, clutter: int, margin: float) -> np.ndarray:
    boxes = []
    # Rows evenly spread in y with jitter; a main aisle of >= margin along every wall.
    usable = height - 2 * margin
    pitch = usable / max(rows, 1)
    for r in range(rows):
        y0 = margin + r * pitch + (pitch - depth) * 0.5 + rng.uniform(-0.15, 0.15) * (pitch - depth)
        # Cross-aisle gaps split the row into segments at random x positions.
        x_lo, x_hi = margin, width - margin
        gaps = np.sort(rng.uniform(x_lo + 1.5, x_hi - 1.5 - cross_width, size=cross_aisles))
        x = x_lo
        for g in gaps:
            if g - x > 0.5:
                boxes.append([x, y0, g, y0 + depth])
            x = max(x, g + cross_width)
        if x_hi - x > 0.5:
            boxes.append([x, y0, x_hi, y0 + depth])
    # Clutter: pallets and carts, small boxes anywhere (may narrow an aisle).
    for _ in range(clutter):
        s = rng.uniform(0.4, 0.8, size=2)
        c = rng.uniform([s[0], s[1]], [width - s[0], height - s[1]])
        boxes.append([c[0] - s[0] / 2, c[1] - s[1] / 2, c[0] + s[0] / 2, c[1] + s[1] / 2])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def _clearance(points: np.ndarray, boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Distance from each point to the nearest box or wall, ``(P,)``."""
    d_wall = np.minimum.reduce([points[:, 0], width - points[:, 0], points[:, 1], height - points[:, 1]])
    if len(boxes) == 0:
        return d_wall
    dx = np.maximum(np.maximum(boxes[None, :, 0] - points[:, None, 0],
                               points[:, None, 0] - boxes[None, :, 2]), 0.0)
    dy = np.maximum(np.maximum(boxes[None, :, 1] - points[:, None, 1],
                               points[:, None, 1] - boxes[None, :, 3]), 0.0)
    return np.minimum(d_wall, np.sqrt(dx * dx + dy * dy).min(axis=1))


def _free_points(boxes: np.ndarray, width: float, height: float, cell: float,
                 clearance: float) -> np.ndarray:
    nx, ny = int(width / cell), int(height / cell)
    xs = (np.arange(nx) + 0.5) * cell
    ys = (np.arange(ny) + 0.5) * cell
    gx, gy = np.meshgrid(xs, ys)  # (ny, nx)
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    free = (_clearance(pts, boxes, width, height) > clearance).reshape(ny, nx)
    labels, n = ndimage.label(free)
    if n == 0:
        raise ValueError("warehouse layout has no free space for the robot; "
                         "reduce shelf_rows/clutter_boxes or robot_radius")
    sizes = ndimage.sum(free, labels, index=np.arange(1, n + 1))
    keep = labels.ravel() == (1 + int(np.argmax(sizes)))
    return pts[keep].astype(np.float32)


def _patrol_segments(rng: np.random.Generator, free: np.ndarray, boxes: np.ndarray,
                     width: float, height: float, radius: float, count: int) -> np.ndarray:
    """Axis-aligned collision-free segments (for circles of ``radius``) of length >= 2 m."""
    n = max(64, count * 8)
    start = free[rng.integers(0, len(free), size=n)]
    dirs = rng.integers(0, 4, size=n)
    ang = dirs * (np.pi / 2)
    inflated = boxes + np.array([-radius, -radius, radius, radius], dtype=np.float32)
    rng_free = cast_boxes_exact(
        torch.from_numpy(start).view(1, n, 2), torch.from_numpy(ang.astype(np.float32)).view(1, n, 1),
        torch.from_numpy(inflated).view(1, -1, 4), (width, height), 1e6).view(n).numpy()
    # Walls are at distance (range - radius) for a circle's centre.
    wall = np.where(dirs == 0, width - start[:, 0], np.where(dirs == 1, height - start[:, 1],
                    np.where(dirs == 2, start[:, 0], start[:, 1]))) - radius
    reach = np.minimum(rng_free, wall) - 0.1
    length = np.minimum(reach, rng.uniform(3.0, 10.0, size=n))
    ok = length >= 2.0
    d = np.stack([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32)
    seg = np.stack([start, start + d * length[:, None]], axis=1)[ok]
    if len(seg) == 0:  # cramped map: let obstacles stand still at free points
        seg = np.repeat(start[:, None, :], 2, axis=1)
    return seg[np.arange(count) % len(seg)].astype(np.float32)


def generate_layouts(num_layouts: int, seed: int, width: float, height: float, shelf_rows: int,
                     shelf_depth: float, cross_aisles: int, cross_aisle_width: float,
                     clutter_boxes: int, robot_radius: float, obstacle_radius: float,
                     patrol_segments: int = 16, free_cell: float = 0.25,
                     device: torch.device | str = "cpu", offset: int = 0) -> LayoutSet:
    """Generate ``num_layouts`` warehouses from ``seed``: layouts ``offset .. offset +
    num_layouts - 1``, layout ``i`` from seed ``(seed, i)``."""
    margin = 2.0 * robot_radius + 1.0
    all_boxes, all_free, all_patrol = [], [], []
    for i in range(offset, offset + num_layouts):  # init-time only, a handful of layouts
        rng = np.random.default_rng([seed & 0xFFFFFFFF, i])
        b = _shelf_boxes(rng, width, height, shelf_rows, shelf_depth, cross_aisles,
                         cross_aisle_width, clutter_boxes, margin)
        f = _free_points(b, width, height, free_cell, robot_radius + 0.15)
        p = _patrol_segments(rng, f, b, width, height, obstacle_radius, patrol_segments)
        all_boxes.append(b)
        all_free.append(f)
        all_patrol.append(p)
    B = max(1, max(len(b) for b in all_boxes))
    F = max(len(f) for f in all_free)
    far = np.array([-1e4, -1e4, -1e4 + 1.0, -1e4 + 1.0], dtype=np.float32)
    boxes = np.stack([np.concatenate([b, np.repeat(far[None], B - len(b), 0)]) for b in all_boxes])
    free = np.stack([f[np.arange(F) % len(f)] for f in all_free])
    t = lambda a, dt=torch.float32: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    return LayoutSet(
        boxes=t(boxes), num_boxes=t([len(b) for b in all_boxes], torch.int64),
        free_points=t(free), num_free=t([len(f) for f in all_free], torch.int64),
        free_cell=free_cell, patrol=t(np.stack(all_patrol)), world=(width, height))
