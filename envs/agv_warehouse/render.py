"""Top-down rendering of the AGV warehouse with PIL (shelves, robot, lidar, goals, trail)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from rlkd.render.frames import tile_frames

_FLOOR = (236, 234, 228)
_SHELF = (120, 92, 60)
_WALL = (60, 60, 60)
_ROBOT = (30, 110, 220)
_OBSTACLE = (220, 120, 30)
_GOAL = (40, 170, 70)
_LIDAR = (230, 60, 60)
_TRAIL = (120, 160, 230)
_TRAIL_LEN = 200


def _env_ids(env, env_ids: Any) -> list[int]:
    if env_ids is None:
        return [0]
    if isinstance(env_ids, torch.Tensor):
        env_ids = env_ids.tolist()
    if isinstance(env_ids, int):
        env_ids = [env_ids]
    ids = [int(i) for i in env_ids]
    bad = [i for i in ids if not 0 <= i < env.num_envs]
    if bad:
        raise ValueError(f"env_ids {bad} out of range for num_envs={env.num_envs}")
    return ids


def _update_trails(env, ids: list[int]) -> dict[int, list[tuple[float, float]]]:
    # Trails live on the env object, recorded only for rendered envs (no cost when not rendering).
    trails = env.__dict__.setdefault("_render_trails", {})
    last_len = env.__dict__.setdefault("_render_last_len", {})
    lengths = env.episode_length_buf[ids].tolist()
    pos = env.pos[ids].tolist()
    for i, ln, p in zip(ids, lengths, pos):
        if ln < last_len.get(i, -1) or i not in trails:
            trails[i] = []
        trails[i].append((p[0], p[1]))
        del trails[i][:-_TRAIL_LEN]
        last_len[i] = ln
    return trails


def render_topdown(env, env_ids: Any = None, width: int = 480, show_lidar: bool = True,
                   cols: int | None = None) -> np.ndarray:
    """``uint8 (H, W, 3)`` top-down view of the requested envs, tiled when there are several."""
    ids = _env_ids(env, env_ids)
    W, H = env.world
    s = width / W
    height = int(round(H * s))
    trails = _update_trails(env, ids)
    boxes = env.layouts.boxes.cpu().numpy()
    nbox = env.layouts.num_boxes.cpu().numpy()
    lay = env.layout_of_env.cpu().numpy()
    c = env.cfg
    lidar = None
    if show_lidar:
        lidar = (env._lidar(torch.as_tensor(ids, device=env.device)) if env._obs is not None
                 else None)
    px = lambda x, y: (x * s, (H - y) * s)  # noqa: E731  (world y up -> image y down)
    frames = []
    for k, i in enumerate(ids):
        img = Image.new("RGB", (width, height), _FLOOR)
        d = ImageDraw.Draw(img)
        for b in boxes[lay[i], : nbox[lay[i]]]:
            x0, y0 = px(b[0], b[3])
            x1, y1 = px(b[2], b[1])
            d.rectangle((x0, y0, x1, y1), fill=_SHELF)
        d.rectangle((0, 0, width - 1, height - 1), outline=_WALL, width=3)
        pos = env.pos[i].tolist()
        hd = float(env.heading[i])
        if lidar is not None:
            for a, r in zip((hd + env.ray_offsets).tolist(), lidar[k].tolist()):
                d.line((px(*pos), px(pos[0] + r * math.cos(a), pos[1] + r * math.sin(a))),
                       fill=_LIDAR, width=1)
        if len(trails[i]) > 1:
            d.line([px(*p) for p in trails[i]], fill=_TRAIL, width=2)
        gi = int(env.goal_idx[i])
        for g, goal in enumerate(env.goals[i].tolist()):
            gx, gy = px(*goal)
            rr = c.goal_radius * s
            done = g < gi
            d.ellipse((gx - rr, gy - rr, gx + rr, gy + rr), outline=_GOAL, width=2,
                      fill=None if done else _GOAL)
            d.text((gx + rr + 1, gy - rr), str(g + 1), fill=_GOAL)
        ro = c.obstacle_radius * s
        for o in env.obs_pos[i].tolist():
            ox, oy = px(*o)
            d.ellipse((ox - ro, oy - ro, ox + ro, oy + ro), fill=_OBSTACLE)
        rr = c.robot_radius * s
        cx, cy = px(*pos)
        d.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=_ROBOT)
        d.line(((cx, cy), px(pos[0] + c.robot_radius * math.cos(hd),
                              pos[1] + c.robot_radius * math.sin(hd))), fill=(255, 255, 255), width=2)
        d.text((4, 2), f"env {i}  t={int(env.episode_length_buf[i])}", fill=(0, 0, 0))
        frames.append(np.asarray(img))
    return frames[0] if len(frames) == 1 else tile_frames(frames, cols=cols)
