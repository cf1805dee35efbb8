"""Pure batched pieces of the AGV step, shared by the eager env and the fused step.

:class:`~.env.AGVWarehouseEnv` (eager) and :mod:`.fused` (one branch-free, compilable graph)
call the same functions here, so both compute the same numbers by construction. Each function
takes rows of state as arguments and returns new tensors: no attribute of the env is read or
written here, no random stream is advanced (callers draw the uniforms/normals and pass them in),
and no Python ``if`` looks at tensor values (only at config numbers), so every function traces
into a ``torch.compile(fullgraph=True)`` graph.

Frames and units: world frame (x right, y up), metres, radians, seconds; ``M`` is the number of
rows (envs or reset slots), ``R`` lidar rays, ``K`` moving obstacles, ``G`` goals per episode.
"""

from __future__ import annotations

import math

import torch

from rlkd.sim.raycast2d import cast_boxes_exact, cast_circles_even, cast_circles_rays

from .layout import LayoutSet

#: Candidate free points drawn per goal at reset (the first in the distance interval wins).
NUM_GOAL_CANDIDATES = 16
#: Params :func:`observe_rows` and :func:`sensed` read (``lidar_dropout`` is applied apart).
OBS_PARAMS = ("slip", "max_lin_vel", "action_latency", "lidar_noise_std", "obs_noise_std")


def reset_draws(cfg) -> int:
    """Uniforms one reset of one env consumes: start (3), heading (1), ``3 x 16`` per goal
    candidate, 3 per moving obstacle (segment, speed, phase)."""
    return 4 + 3 * cfg.num_goals * NUM_GOAL_CANDIDATES + 3 * cfg.num_obstacles


def free_at(layouts: LayoutSet, lay: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``(M, n, 2)`` free positions from uniforms ``u (M, n, 3)``: a spawn cell of layout
    ``lay (M,)`` (int64) picked by ``u[..., 0]``, jittered within 0.8 of a cell by the rest."""
    count = layouts.num_free[lay][:, None]
    idx = torch.minimum((u[..., 0] * count).long(), count - 1)
    return layouts.free_points[lay[:, None], idx] + (u[..., 1:] - 0.5) * (0.8 * layouts.free_cell)


def obstacle_pos(seg: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Shuttle position ``(..., 2)`` on segments ``seg (..., 2, 2)`` at ``phase (...)``
    (0 -> 1 -> 2 is start -> end -> start)."""
    tri = 1.0 - (1.0 - torch.remainder(phase, 2.0)).abs()  # 0 -> 1 -> 0 shuttle
    return seg[..., 0, :] + (seg[..., 1, :] - seg[..., 0, :]) * tri[..., None]


def initial_rows(layouts: LayoutSet, cfg, lay: torch.Tensor, u: torch.Tensor) -> dict[str, torch.Tensor]:
    """Fresh episode starts for ``M`` rows of layouts ``lay (M,)`` from their uniforms
    ``u (M, reset_draws(cfg))``.

    Returns ``pos (M, 2)`` start, ``heading (M,)`` in [-pi, pi), ``goals (M, G, 2)``,
    ``goal_dist (M,)`` start-to-first-goal distance and, with moving obstacles, ``obs_seg
    (M, K, 2, 2)`` patrol segments, ``obs_rate (M, K)`` phase per second, ``obs_phase (M, K)``
    and ``obs_pos (M, K, 2)``. Velocities, commands and ``goal_idx`` start at zero (the
    caller writes those).
    """
    c = cfg
    M, C, G, K = u.shape[0], NUM_GOAL_CANDIDATES, c.num_goals, c.num_obstacles
    start = free_at(layouts, lay, u[:, 0:3].view(M, 1, 3))[:, 0]
    out = {"pos": start, "heading": (u[:, 3] * 2 - 1) * math.pi}
    # Goals: among candidate free points pick the first at a distance in [min, max] from the
    # previous waypoint, else the one closest to that interval.
    cand = free_at(layouts, lay[:, None].expand(M, G).reshape(-1),
                   u[:, 4:4 + 3 * G * C].reshape(M * G, C, 3)).view(M, G, C, 2)
    prev = start
    goals = []
    for g in range(G):  # loop over goals per episode (1 or 2), not over envs
        d = (cand[:, g] - prev[:, None]).norm(dim=-1)
        violation = (c.goal_distance_min - d).clamp_min(0) + (d - c.goal_distance_max).clamp_min(0)
        prev = cand[:, g].gather(1, violation.argmin(dim=1)[:, None, None].expand(-1, 1, 2))[:, 0]
        goals.append(prev)
    out["goals"] = torch.stack(goals, dim=1)
    out["goal_dist"] = (goals[0] - start).norm(dim=-1)
    # Moving obstacles on patrol segments of the layout, random phase and speed.
    if K:
        uo = u[:, 4 + 3 * G * C:].view(M, 3, K)
        S = layouts.patrol.shape[1]
        seg = layouts.patrol[lay[:, None], (uo[:, 0] * S).long().clamp_max(S - 1)]
        speed = c.obstacle_speed_min + (c.obstacle_speed_max - c.obstacle_speed_min) * uo[:, 1]
        length = (seg[:, :, 1] - seg[:, :, 0]).norm(dim=-1)
        phase = 2.0 * uo[:, 2]
        # Do not start on top of the robot: jump to the mirrored point of the shuttle.
        pos = obstacle_pos(seg, phase)
        close = (pos - start[:, None]).norm(dim=-1) < (c.robot_radius + c.obstacle_radius + 1.0)
        phase = torch.where(close, phase + 1.0, phase)
        out.update(obs_seg=seg, obs_rate=speed / length.clamp_min(1e-3), obs_phase=phase,
                   obs_pos=obstacle_pos(seg, phase))
    return out


def collisions(cfg, boxes: torch.Tensor, world: tuple[float, float], pos: torch.Tensor,
               obs_pos: torch.Tensor) -> torch.Tensor:
    """``(N,) bool``: the robot disc at ``pos (N, 2)`` touches a box, a wall or an obstacle.

    ``boxes (L, B, 4)`` are broadcast over the ``N / L`` consecutive envs of each layout;
    ``obs_pos (N, K, 2)`` are the moving obstacles (ignored when ``num_obstacles`` is 0)."""
    L = boxes.shape[0]
    r = cfg.robot_radius
    p = pos.view(L, -1, 1, 2)
    b = boxes[:, None]  # (L, 1, B, 4)
    dx = torch.maximum(b[..., 0] - p[..., 0], p[..., 0] - b[..., 2]).clamp_min(0.0)
    dy = torch.maximum(b[..., 1] - p[..., 1], p[..., 1] - b[..., 3]).clamp_min(0.0)
    hit_box = ((dx * dx + dy * dy) < r * r).any(dim=-1).view(-1)
    x, y = pos[:, 0], pos[:, 1]
    hit_wall = (x < r) | (y < r) | (x > world[0] - r) | (y > world[1] - r)
    collided = hit_box | hit_wall
    if cfg.num_obstacles:
        d_obs = (obs_pos - pos[:, None]).norm(dim=-1)
        collided = collided | (d_obs < r + cfg.obstacle_radius).any(dim=-1)
    return collided


def current_goal(goals: torch.Tensor, goal_idx: torch.Tensor, num_goals: int) -> torch.Tensor:
    """``(M, 2)`` goal each row heads to (the last one once all are reached)."""
    if num_goals == 1:
        return goals[:, 0]
    return goals.gather(1, goal_idx.clamp_max(num_goals - 1)[:, None, None].expand(-1, 1, 2))[:, 0]


def advance_goals(cfg, goals: torch.Tensor, goal_idx: torch.Tensor, goal_dist: torch.Tensor,
                  pos: torch.Tensor, collided: torch.Tensor):
    """Goal logic after a move: ``(reached (N,) bool, progress (N,) m, goal_idx, goal_dist)``.

    A goal counts when the centre is within ``goal_radius`` and the robot did not collide;
    goals are visited in order; ``progress`` is the decrease of the goal distance this step and
    the next goal's distance becomes the baseline once one is reached."""
    dist = (current_goal(goals, goal_idx, cfg.num_goals) - pos).norm(dim=-1)
    reached = (dist < cfg.goal_radius) & ~collided
    progress = goal_dist - dist
    goal_idx = goal_idx + reached.long()
    if cfg.num_goals > 1:  # next goal's distance becomes the progress baseline
        nxt = current_goal(goals, goal_idx, cfg.num_goals)
        dist = torch.where(reached, (nxt - pos).norm(dim=-1), dist)
    return reached, progress, goal_idx, dist


def reward_terms(cfg, reached: torch.Tensor, collided: torch.Tensor,
                 progress: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-term rewards ``{name: (N,)}`` (``goal``, ``collision``, optional ``progress``,
    ``time``); the reward is their sum in this order."""
    terms = {"goal": reached.float() * cfg.reward_goal,
             "collision": collided.float() * cfg.reward_collision}
    if cfg.progress_reward_scale:
        terms["progress"] = progress * cfg.progress_reward_scale
    if cfg.time_penalty:
        terms["time"] = torch.full_like(progress, -cfg.time_penalty)
    return terms


def scan(cfg, layouts: LayoutSet, world: tuple[float, float], ray_offsets: torch.Tensor,
         ray_spacing: float, full_circle: bool, pos: torch.Tensor, heading: torch.Tensor,
         lay: torch.Tensor, obs_pos: torch.Tensor, table_lookup=None,
         cast_circles=cast_circles_even, whole: bool = False,
         ray_dirs: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``(M, R)`` noise-free lidar ranges in metres from ``pos (M, 2)``, ``heading (M,)`` of
    rows on layouts ``lay (M,)``, against the static geometry (``table_lookup``, a
    :meth:`RangeTable.lookup`, or the exact slab test when ``None``) and the circles at
    ``obs_pos (M, K, 2)``. ``whole``: the rows are the whole batch in env order, so the exact
    test broadcasts each layout's boxes over its envs instead of gathering them per row.
    ``ray_dirs``: ``(cos, sin)`` of ``ray_offsets`` (R,); given, the circles are cast densely
    with :func:`cast_circles_rays` from directions built by the angle-sum identity (no
    trigonometry per ray: the fused step's choice) instead of ``cast_circles``."""
    c = cfg
    angles = heading[:, None] + ray_offsets  # (M, R)
    if table_lookup is not None:
        ranges = table_lookup(lay, pos, angles)
    elif whole:  # whole batch: boxes broadcast over the envs of each layout
        L = layouts.boxes.shape[0]
        ranges = cast_boxes_exact(pos.view(L, -1, 2), angles.view(L, pos.shape[0] // L, -1),
                                  layouts.boxes, world, c.lidar_range).view(pos.shape[0], -1)
    else:
        ranges = cast_boxes_exact(pos[:, None], angles[:, None], layouts.boxes[lay], world,
                                  c.lidar_range)[:, 0]
    if c.num_obstacles and ray_dirs is not None:
        ch, sh = torch.cos(heading)[:, None], torch.sin(heading)[:, None]
        oc, os_ = ray_dirs
        ranges = torch.minimum(ranges, cast_circles_rays(
            pos, ch * oc - sh * os_, sh * oc + ch * os_, obs_pos, c.obstacle_radius,
            c.lidar_range, min_dist=c.robot_radius + c.obstacle_radius))
    elif c.num_obstacles:
        ranges = torch.minimum(ranges, cast_circles(
            pos, angles, ray_spacing, full_circle, obs_pos, c.obstacle_radius, c.lidar_range,
            min_dist=c.robot_radius + c.obstacle_radius))
    return ranges


def observe_rows(cfg, world: tuple[float, float], s: dict[str, torch.Tensor],
                 p: dict[str, torch.Tensor], ranges: torch.Tensor):
    """Noise-free observation groups of ``M`` rows: ``(clean (M, 8 + R), critic (M, ...),
    lidar (M, R))``; the ``policy`` group is :func:`sensed` of ``clean``.

    Args:
        s: state rows ``pos, heading, lin_vel, ang_vel, prev_action, goals, goal_idx`` and,
            with moving obstacles, ``obs_pos, obs_vel``.
        p: the rows' params ``slip, max_lin_vel, action_latency``.
        ranges: ``(M, R)`` noise-free lidar ranges, metres.

    ``clean`` is the policy's parts without noise (also the start of ``critic``); ``lidar``
    is the clean scan / ``lidar_range``. Layout: the module docstring of :mod:`.env`.
    """
    c = cfg
    scale = float(max(world))
    pos, hd = s["pos"], s["heading"]
    cos, sin = torch.cos(hd), torch.sin(hd)
    goal = current_goal(s["goals"], s["goal_idx"], c.num_goals)
    rel = goal - pos
    # World -> robot frame rotation by -heading.
    gx = (cos * rel[:, 0] + sin * rel[:, 1]) / scale
    gy = (-sin * rel[:, 0] + cos * rel[:, 1]) / scale
    remaining = 1.0 - s["goal_idx"].float() / c.num_goals
    prev = s["prev_action"]
    proprio = torch.stack([gx, gy, rel.norm(dim=-1) / scale, s["lin_vel"] / c.max_lin_vel,
                           s["ang_vel"] / c.max_ang_vel, prev[:, 0], prev[:, 1], remaining], dim=-1)
    lidar = ranges / c.lidar_range
    clean = torch.cat([proprio, lidar], dim=-1)
    parts = [clean, pos[:, 0:1] / world[0], pos[:, 1:2] / world[1], cos[:, None], sin[:, None],
             goal[:, 0:1] / world[0], goal[:, 1:2] / world[1]]
    if c.num_obstacles:
        orel = s["obs_pos"] - pos[:, None]
        ovel = s["obs_vel"]
        c_, s_ = cos[:, None], sin[:, None]
        parts.append(torch.stack([(c_ * orel[..., 0] + s_ * orel[..., 1]) / scale,
                                  (-s_ * orel[..., 0] + c_ * orel[..., 1]) / scale,
                                  c_ * ovel[..., 0] + s_ * ovel[..., 1],
                                  -s_ * ovel[..., 0] + c_ * ovel[..., 1]], dim=-1).flatten(1))
    parts.append(torch.stack([p["slip"], p["max_lin_vel"], p["action_latency"].float()], dim=-1))
    return clean, torch.cat(parts, dim=-1), lidar


def sensed(cfg, clean: torch.Tensor, p: dict[str, torch.Tensor],
           noise: torch.Tensor | None = None, lost: torch.Tensor | None = None) -> torch.Tensor:
    """The ``policy`` group ``(M, 8 + R)`` from ``clean``: plus ``noise (M, 8 + R)`` standard
    normals scaled by the rows' ``obs_noise_std`` (the 7 continuous proprio parts) and
    ``lidar_noise_std / lidar_range`` (rays), lidar clamped to [0, 1]; then rays ``lost
    (M, R) bool`` read 1 (maximum range). ``None`` skips a stage (``clean`` comes back as is)."""
    c = cfg
    policy = clean
    if noise is not None:
        obs_std = p["obs_noise_std"]
        scale = torch.cat([obs_std[:, None].expand(-1, 7), torch.zeros_like(obs_std)[:, None],
                           (p["lidar_noise_std"] / c.lidar_range)[:, None].expand(-1, c.lidar_rays)],
                          dim=1)
        policy = clean + noise * scale
        policy = torch.cat([policy[:, :8], policy[:, 8:].clamp(0.0, 1.0)], dim=1)
    if lost is not None:
        policy = torch.cat([policy[:, :8], torch.where(lost, torch.ones_like(policy[:, 8:]),
                                                       policy[:, 8:])], dim=1)
    return policy
