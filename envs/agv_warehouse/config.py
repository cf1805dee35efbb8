"""Configuration and presets of the AGV warehouse task."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class AGVWarehouseConfig:
    """Every knob of ``AGVWarehouse-v0``; override any field by keyword in ``rlkd.make``."""

    # --- warehouse layout
    map_width: float = 16.0
    """Map size along x, metres."""
    map_height: float = 12.0
    """Map size along y, metres."""
    shelf_rows: int = 3
    """Rows of shelves (long boxes along x)."""
    shelf_depth: float = 1.0
    """Shelf depth along y, metres."""
    cross_aisles: int = 2
    """Gaps cut through every shelf row."""
    cross_aisle_width: float = 1.8
    """Width of those gaps, metres."""
    clutter_boxes: int = 0
    """Extra small boxes (pallets, carts) scattered over the floor."""
    num_layouts: int = 8
    """Distinct layouts; env ``i`` uses layout ``i // (num_envs / layouts)`` (groups share geometry)."""
    layout_seed: int = -1
    """Seed of the layout generator; -1 derives it from the env's ``seed`` at construction."""
    layout_offset: int = 0
    """Index of the first layout drawn (layout ``k`` of a seed is the same warehouse whatever
    ``num_layouts`` is, so ``num_layouts=1, layout_offset=k`` rebuilds one env's world)."""

    # --- robot (differential drive, unicycle kinematics)
    robot_radius: float = 0.3
    """Collision radius, metres."""
    max_lin_vel: float = 1.0
    """Linear speed at action 1.0, m/s (per-env param ``max_lin_vel``)."""
    max_ang_vel: float = 1.5
    """Yaw rate at action 1.0, rad/s (param ``max_ang_vel``)."""
    lin_acc: float = 2.0
    """Linear acceleration limit, m/s^2 (param ``lin_acc``)."""
    ang_acc: float = 6.0
    """Angular acceleration limit, rad/s^2 (param ``ang_acc``)."""
    slip: float = 0.0
    """Wheel slip fraction in [0, 1): realised motion = (1 - slip) x commanded (param ``slip``)."""
    action_latency: int = 0
    """Control steps between a command and its effect (param ``action_latency``)."""
    max_action_latency: int = 5
    """Size of the command buffer: the largest latency a param write may ask for."""
    dt: float = 0.1
    """Control period, seconds."""

    # --- moving obstacles (other AGVs, people) shuttling along aisles
    num_obstacles: int = 4
    """Moving obstacles per env."""
    obstacle_radius: float = 0.3
    """Their radius, metres."""
    obstacle_speed_min: float = 0.3
    """Slowest obstacle speed, m/s."""
    obstacle_speed_max: float = 1.0
    """Fastest obstacle speed, m/s."""

    # --- lidar
    lidar_rays: int = 32
    """Rays per scan, evenly spread over ``lidar_fov``."""
    lidar_fov: float = 2 * math.pi
    """Field of view, radians (2 pi = full circle)."""
    lidar_range: float = 6.0
    """Maximum range, metres; readings are clipped to it."""
    lidar_noise_std: float = 0.0
    """Gaussian range noise, metres (param ``lidar_noise_std``)."""
    lidar_dropout: float = 0.0
    """Probability that a ray returns nothing and reads maximum range (param ``lidar_dropout``;
    real scanners drop returns on dark or specular surfaces)."""
    lidar_mode: str = "table"
    """``"table"``: precomputed static ranges + exact moving obstacles (fast);
    ``"exact"``: slab test against every box each step (reference)."""
    lidar_table_resolution: float = 0.1
    """Position grid of the range table, metres."""
    lidar_table_angles: int = 128
    """Heading bins of the range table."""
    compile: bool = False
    """``torch.compile`` the whole-batch lidar kernels (about 10 s of compilation at the first
    step, then faster steps at large ``num_envs``; results match eager within 1e-5 m)."""

    # --- task and reward
    num_goals: int = 1
    """Goals per episode, visited in order (2 = pick-up then drop-off)."""
    goal_radius: float = 0.4
    """Reached when the robot centre is this close, metres."""
    goal_distance_min: float = 2.0
    """Straight-line start-to-goal distance is drawn in [min, max] metres (best effort)."""
    goal_distance_max: float = 8.0
    """See ``goal_distance_min``."""
    reward_goal: float = 1.0
    """Sparse reward for reaching a goal."""
    reward_collision: float = -1.0
    """Sparse reward for hitting a shelf, wall or obstacle (ends the episode)."""
    progress_reward_scale: float = 0.0
    """Dense shaping (off by default): scale x decrease of goal distance per step, metres."""
    time_penalty: float = 0.0
    """Subtracted every step (off by default)."""
    obs_noise_std: float = 0.0
    """Gaussian noise on the proprioceptive part of ``policy`` obs (param ``obs_noise_std``)."""
    action_noise_std: float = 0.0
    """Gaussian actuation noise added to the command reaching the motors, in action units
    (param ``action_noise_std``)."""
    max_episode_steps: int = 400
    """Time limit in control steps (truncation)."""


#: The four scenes of Yin et al. 2024 (simple/complex x static/dynamic), a hard sparse one, and
#: ``Exploration``: the default warehouse with long goals (6-10 m) and no moving obstacles, where
#: random exploration almost never reaches the goal (the exploration study's task).
PRESETS: dict[str, dict] = {
    "SimpleStatic": dict(map_width=12.0, map_height=10.0, shelf_rows=2, cross_aisles=1,
                         num_obstacles=0, goal_distance_min=2.0, goal_distance_max=6.0),
    "SimpleDynamic": dict(map_width=12.0, map_height=10.0, shelf_rows=2, cross_aisles=1,
                          num_obstacles=3, goal_distance_min=2.0, goal_distance_max=6.0),
    "ComplexStatic": dict(map_width=20.0, map_height=16.0, shelf_rows=4, cross_aisles=2,
                          clutter_boxes=6, num_obstacles=0, goal_distance_min=4.0,
                          goal_distance_max=12.0, max_episode_steps=600),
    "ComplexDynamic": dict(map_width=20.0, map_height=16.0, shelf_rows=4, cross_aisles=2,
                           clutter_boxes=6, num_obstacles=6, goal_distance_min=4.0,
                           goal_distance_max=12.0, max_episode_steps=600),
    "Exploration": dict(num_obstacles=0, goal_distance_min=6.0, goal_distance_max=10.0),
    "HardSparse": dict(map_width=24.0, map_height=18.0, shelf_rows=5, cross_aisles=2,
                       clutter_boxes=8, num_obstacles=4, goal_radius=0.3, goal_distance_min=10.0,
                       goal_distance_max=18.0, max_episode_steps=800),
}
