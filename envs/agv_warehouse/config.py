"""Configuration and presets of the AGV warehouse task."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlkd.core.config import flag, integer, knob, number, one_of, require, validate_fields

#: Shorthand rules: a finite number > 0, >= 0, or any finite number (reward weights).
POS = number(lo=0, lo_open=True)
NONNEG = number(lo=0)
ANY = number()


@dataclass
class AGVWarehouseConfig:
    """Every knob of ``AGVWarehouse-v0``; override any field by keyword in ``rlkd.make``."""

    # --- warehouse layout
    map_width: float = knob(16.0, POS)
    """Map size along x, metres."""
    map_height: float = knob(12.0, POS)
    """Map size along y, metres."""
    shelf_rows: int = knob(3, integer(lo=0))
    """Rows of shelves (long boxes along x)."""
    shelf_depth: float = knob(1.0, POS)
    """Shelf depth along y, metres."""
    cross_aisles: int = knob(2, integer(lo=0))
    """Gaps cut through every shelf row."""
    cross_aisle_width: float = knob(1.8, POS)
    """Width of those gaps, metres."""
    clutter_boxes: int = knob(0, integer(lo=0))
    """Extra small boxes (pallets, carts) scattered over the floor."""
    num_layouts: int = knob(8, integer(lo=1))
    """Distinct layouts; env ``i`` uses layout ``i // (num_envs / layouts)`` (groups share geometry)."""
    layout_seed: int = knob(-1, integer(lo=-1, note="-1: from the env seed"))
    """Seed of the layout generator; -1 derives it from the env's ``seed`` at construction."""
    layout_offset: int = knob(0, integer(lo=0))
    """Index of the first layout drawn (layout ``k`` of a seed is the same warehouse whatever
    ``num_layouts`` is, so ``num_layouts=1, layout_offset=k`` rebuilds one env's world)."""

    # --- robot (differential drive, unicycle kinematics)
    robot_radius: float = knob(0.3, POS)
    """Collision radius, metres."""
    max_lin_vel: float = knob(1.0, POS)
    """Linear speed at action 1.0, m/s (per-env param ``max_lin_vel``)."""
    max_ang_vel: float = knob(1.5, POS)
    """Yaw rate at action 1.0, rad/s (param ``max_ang_vel``)."""
    lin_acc: float = knob(2.0, POS)
    """Linear acceleration limit, m/s^2 (param ``lin_acc``)."""
    ang_acc: float = knob(6.0, POS)
    """Angular acceleration limit, rad/s^2 (param ``ang_acc``)."""
    slip: float = knob(0.0, number(0, 1, hi_open=True))
    """Wheel slip fraction in [0, 1): realised motion = (1 - slip) x commanded (param ``slip``)."""
    action_latency: int = knob(0, integer(lo=0, note="and <= max_action_latency"))
    """Control steps between a command and its effect (param ``action_latency``)."""
    max_action_latency: int = knob(5, integer(0, 1000))  # 1000: 100 s at dt=0.1
    """Size of the command buffer: the largest latency a param write may ask for."""
    dt: float = knob(0.1, POS)
    """Control period, seconds."""

    # --- moving obstacles (other AGVs, people) shuttling along aisles
    num_obstacles: int = knob(4, integer(lo=0))
    """Moving obstacles per env."""
    obstacle_radius: float = knob(0.3, POS)
    """Their radius, metres."""
    obstacle_speed_min: float = knob(0.3, NONNEG)
    """Slowest obstacle speed, m/s."""
    obstacle_speed_max: float = knob(1.0, number(lo=0, note="and >= obstacle_speed_min"))
    """Fastest obstacle speed, m/s."""

    # --- lidar
    lidar_rays: int = knob(32, integer(lo=1))
    """Rays per scan, evenly spread over ``lidar_fov``."""
    lidar_fov: float = knob(2 * math.pi, number(0, 2 * math.pi, lo_open=True,
                                                     note="2 pi = full circle"))
    """Field of view, radians (2 pi = full circle)."""
    lidar_range: float = knob(6.0, POS)
    """Maximum range, metres; readings are clipped to it."""
    lidar_noise_std: float = knob(0.0, NONNEG)
    """Gaussian range noise, metres (param ``lidar_noise_std``)."""
    lidar_dropout: float = knob(0.0, number(0, 1))
    """Probability that a ray returns nothing and reads maximum range (param ``lidar_dropout``;
    real scanners drop returns on dark or specular surfaces)."""
    lidar_mode: str = knob("table", one_of("table", "exact"))
    """``"table"``: precomputed static ranges + exact moving obstacles (fast);
    ``"exact"``: slab test against every box each step (reference)."""
    lidar_table_resolution: float = knob(0.1, POS)
    """Position grid of the range table, metres."""
    lidar_table_angles: int = knob(128, integer(lo=1))
    """Heading bins of the range table."""
    compile: bool = knob(False, flag())
    """``torch.compile`` the whole-batch lidar kernels (about 10 s of compilation at the first
    step, then faster steps at large ``num_envs``; results match eager within 1e-5 m). With
    ``fused=True``: compile the whole fused step instead, as one graph."""
    fused: bool = knob(False, flag())
    """Run ``step`` as one branch-free function (:mod:`.fused`): kinematics, obstacles, goals,
    lidar, rewards, autoreset (masked writes of fresh starts drawn from each env's own stream)
    and observations. With ``compile=True`` it is compiled whole, ``torch.compile(fullgraph=True,
    dynamic=False)`` (CUDA graphs on CUDA; about 1-2 min of compilation per noise variant at
    the first step on 2 cores, cached on disk by TorchInductor afterwards); without, it runs
    eagerly (bit-identical to the default step: a reference). Same random streams and results
    as the default step (compiled: within float tolerance). Falls back to the default eager
    step, with a warning, where ``torch.compile`` is unavailable or the env subclass brings its
    own physics (the PyBullet twin). ``reset_hooks`` (domain randomisation) keep working: those
    envs reset the eager way after the graph."""

    # --- task and reward
    num_goals: int = knob(1, integer(lo=1))
    """Goals per episode, visited in order (2 = pick-up then drop-off)."""
    goal_radius: float = knob(0.4, number(lo=0, note="0: goals are never reached"))
    """Reached when the robot centre is this close, metres."""
    goal_distance_min: float = knob(2.0, NONNEG)
    """Straight-line start-to-goal distance is drawn in [min, max] metres (best effort)."""
    goal_distance_max: float = knob(8.0, number(lo=0, note="and >= goal_distance_min"))
    """See ``goal_distance_min``."""
    reward_goal: float = knob(1.0, ANY)
    """Sparse reward for reaching a goal."""
    reward_collision: float = knob(-1.0, ANY)
    """Sparse reward for hitting a shelf, wall or obstacle (ends the episode)."""
    progress_reward_scale: float = knob(0.0, ANY)
    """Dense shaping (off by default): scale x decrease of goal distance per step, metres."""
    time_penalty: float = knob(0.0, ANY)
    """Subtracted every step (off by default)."""
    obs_noise_std: float = knob(0.0, NONNEG)
    """Gaussian noise on the proprioceptive part of ``policy`` obs (param ``obs_noise_std``)."""
    action_noise_std: float = knob(0.0, NONNEG)
    """Gaussian actuation noise added to the command reaching the motors, in action units
    (param ``action_noise_std``)."""
    max_episode_steps: int = knob(400, integer(lo=1))
    """Time limit in control steps (truncation)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "AGVWarehouseConfig":
        """Check every field's rule (the ``knob`` next to it) and the relations between fields.

        Raises :class:`rlkd.core.config.ConfigError` (a ``ValueError``) naming the field, its
        value and the allowed range; returns ``self``."""
        validate_fields(self)
        require(self, self.action_latency <= self.max_action_latency, "action_latency",
                f"integer in [0, max_action_latency={self.max_action_latency}] (the command "
                f"buffer's size; raise max_action_latency for longer delays)")
        require(self, self.goal_distance_min <= self.goal_distance_max, "goal_distance_min",
                f"number in [0, goal_distance_max={self.goal_distance_max}]")
        require(self, self.obstacle_speed_min <= self.obstacle_speed_max, "obstacle_speed_min",
                f"number in [0, obstacle_speed_max={self.obstacle_speed_max}]")
        return self


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
