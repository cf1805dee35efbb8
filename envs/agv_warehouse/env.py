"""AGV warehouse navigation: a differential-drive robot crosses a warehouse to its goals.

After "Random Network Distillation Based Deep Reinforcement Learning for AGV Path Planning"
(Yin et al., 2024, arXiv 2404.12594). Pure batched torch: the same code on CPU and CUDA.

**Action** ``(num_envs, 2)`` in [-1, 1]: commanded linear and angular velocity as fractions of
``max_lin_vel`` (m/s) and ``max_ang_vel`` (rad/s). Commands pass through an optional latency
buffer and acceleration limits, then drive unicycle kinematics (midpoint integration, ``dt`` s),
scaled by ``1 - slip``.

**Observations** (world frame is x right, y up, metres; ``D = max(map_width, map_height)``):

==========  ================================================================================
group       content (per env; ``part`` (width) names the slices of ``env.observation_layout``)
==========  ================================================================================
policy      ``(8 + lidar_rays,)``: ``goal_robot_frame`` (2) goal position in the robot frame
            / D; ``goal_distance`` (1) / D; ``velocity`` (2) linear / max_lin_vel and
            angular / max_ang_vel; ``prev_action`` (2); ``goals_remaining`` (1) fraction of
            the ``num_goals`` goals still to visit; ``lidar`` (lidar_rays) ranges /
            lidar_range, CCW from the rear when the FOV is 2 pi
critic      ``(8 + lidar_rays + 6 + 4 num_obstacles + 3,)``: the ``policy`` parts without
            noise (same names), then ``position`` (2) x / W, y / H; ``heading`` (2) cos, sin;
            ``goal_position`` (2) current goal x / W, y / H; ``obstacles`` (4 num_obstacles,
            absent without obstacles) each moving obstacle relative to the robot in its frame,
            dx / D, dy / D, vx, vy (m/s); ``params`` (3) slip, max_lin_vel, action_latency
==========  ================================================================================

**Reward** (sparse by default): ``reward_goal`` (+1) for reaching a goal, ``reward_collision``
(-1) for touching a shelf, a wall or an obstacle, 0 otherwise; optional dense terms
``progress_reward_scale x (d_prev - d)`` and ``-time_penalty``. Per-term values are in
``info["reward_terms"]``.

**Termination**: collision, or the last goal reached (``success``). **Truncation**:
``max_episode_steps``. Finished episodes report ``success``, ``collision`` and ``timeout``.

**Params** (per-env tensors in ``env.params``): ``slip``, ``max_lin_vel``, ``max_ang_vel``,
``lin_acc``, ``ang_acc``, ``action_latency`` (int64 steps), ``action_noise_std`` (action
units), ``lidar_noise_std`` (m), ``lidar_dropout`` (probability per ray; a dropped ray reads
maximum range in ``policy``), ``obs_noise_std``. ``PERTURBATIONS`` maps the sim-to-real
perturbation kinds onto them. A NaN/Inf written into one is refused at the next step or reset
(``ValueError`` naming the param and the env ids; :class:`rlkd.core.params.ParamGuard`).

**Metrics** (``info["metrics"]``, per step): ``clearance`` (closest lidar return, m, noise-free)
and ``speed`` (ground speed after slip, m/s).

**Version history**: v0 (first release).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from rlkd.core.env import BatchedEnv, Obs
from rlkd.core.params import ParamGuard
from rlkd.core.spaces import action_box, box
from rlkd.sim.diffdrive import unicycle_step, wrap_angle
from rlkd.sim.raycast2d import RangeTable, cast_circles_even

from . import kernels as K_
from .config import AGVWarehouseConfig
from .layout import LayoutSet, generate_layouts

_LAYOUT_CACHE: dict[tuple, tuple[LayoutSet, RangeTable | None]] = {}


def _largest_divisor_at_most(n: int, k: int) -> int:
    for d in range(min(n, max(k, 1)), 0, -1):
        if n % d == 0:
            return d
    return 1


class AGVWarehouseEnv(BatchedEnv):
    """Batched AGV warehouse navigation; see the module docstring for the full manual."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    NUM_GOAL_CANDIDATES = K_.NUM_GOAL_CANDIDATES
    STATE_NAMES = ("x", "y", "heading", "lin_vel", "ang_vel", "goal_x", "goal_y")
    TWIN_ID = "AGVWarehouseBullet-v0"
    REPORT_METRICS = {"clearance": "min", "speed": "mean"}
    #: How sim-to-real perturbation kinds act on this kinematic robot: a heavier body (``mass``)
    #: or a larger yaw ``inertia`` with the same motors accelerates slower; ``friction`` below 1
    #: loses traction (slip); ``motor_strength`` scales top speeds and accelerations.
    PERTURBATIONS = {
        "mass": (("lin_acc", "divide"),),
        "inertia": (("ang_acc", "divide"),),
        "friction": (("slip", "traction"),),
        "motor_strength": (("max_lin_vel", "scale"), ("max_ang_vel", "scale"),
                           ("lin_acc", "scale"), ("ang_acc", "scale")),
        "action_latency": (("action_latency", "set"),),
        "action_noise": (("action_noise_std", "set"),),
        "obs_noise": (("obs_noise_std", "set"),),
        "lidar_noise": (("lidar_noise_std", "set"),),
        "sensor_dropout": (("lidar_dropout", "set"),),
    }

    def __init__(self, cfg: AGVWarehouseConfig, num_envs: int = 1, device="cpu", seed: int = 0,
                 validate_actions: bool = True):
        super().__init__(cfg, num_envs, device, seed, validate_actions)
        c = cfg.validate()  # every field's range (again: the config may have been edited)
        self.metadata = dict(self.metadata, render_fps=int(round(1.0 / c.dt)))
        dev = self.device
        self.world = (float(c.map_width), float(c.map_height))
        self.scale = float(max(self.world))
        self.num_layouts = _largest_divisor_at_most(num_envs, c.num_layouts)
        self.group = num_envs // self.num_layouts
        self.layout_of_env = torch.arange(num_envs, device=dev) // self.group
        self.layout_seed = c.layout_seed if c.layout_seed >= 0 else seed
        self.layouts, self.range_table = self._build_layouts()

        R, K, G = c.lidar_rays, c.num_obstacles, c.num_goals
        self.full_circle = c.lidar_fov >= 2 * math.pi - 1e-6
        if self.full_circle:
            self.ray_spacing = 2 * math.pi / R
            first = -math.pi + 0.5 * self.ray_spacing
        else:
            self.ray_spacing = c.lidar_fov / max(R - 1, 1)
            first = -c.lidar_fov / 2
        # Whole-batch lidar kernels; compiled variants have static shapes (subsets stay eager).
        self._table_lookup = self.range_table.lookup if self.range_table is not None else None
        self._cast_circles = cast_circles_even
        if c.compile and not c.fused:  # fused: the whole step is compiled instead (below)
            if self._table_lookup is not None:
                self._table_lookup = torch.compile(self._table_lookup, dynamic=False, fullgraph=True)
            self._cast_circles = torch.compile(cast_circles_even, dynamic=False, fullgraph=True)
        #: (R,) ray angles in the robot frame, radians, evenly spaced.
        self.ray_offsets = first + torch.arange(R, device=dev, dtype=torch.float32) * self.ray_spacing

        # Per-env physical parameters (domain randomisation / sim-to-real writes go here).
        full = lambda v, dt=torch.float32: torch.full((num_envs,), v, dtype=dt, device=dev)  # noqa: E731
        self.params = {
            "slip": full(c.slip), "max_lin_vel": full(c.max_lin_vel),
            "max_ang_vel": full(c.max_ang_vel), "lin_acc": full(c.lin_acc),
            "ang_acc": full(c.ang_acc), "action_latency": full(c.action_latency, torch.int64),
            "lidar_noise_std": full(c.lidar_noise_std), "obs_noise_std": full(c.obs_noise_std),
            "lidar_dropout": full(c.lidar_dropout), "action_noise_std": full(c.action_noise_std),
        }
        self._param_guard = ParamGuard(num_envs)  # NaN/Inf writes refused at the next step
        # State.
        z = lambda *s: torch.zeros(num_envs, *s, device=dev)  # noqa: E731
        self.pos, self.heading, self.lin_vel, self.ang_vel = z(2), z(), z(), z()
        self.prev_action = z(2)
        self.goals = z(G, 2)
        self.goal_idx = torch.zeros(num_envs, dtype=torch.int64, device=dev)
        self.goal_dist = z()
        self.obs_seg = z(K, 2, 2)
        self.obs_phase, self.obs_rate = z(K), z(K)
        self.obs_pos, self.obs_vel = z(K, 2), z(K, 2)
        self._buf_len = max(0, int(c.max_action_latency)) + 1
        self.action_buf = z(self._buf_len, 2)
        self._buf_ptr = 0
        # Step events, filled by _step_sim and read by _evaluate.
        self._collided = torch.zeros(num_envs, dtype=torch.bool, device=dev)
        self._reached = torch.zeros(num_envs, dtype=torch.bool, device=dev)
        self._progress = z()
        self._clearance = z()

        # Group sizes from the same part table as observation_layout: they cannot disagree.
        self.observation_spaces = {g: box((sum(w for _, w in parts),))
                                   for g, parts in self._observation_parts().items()}
        self.action_space = action_box(2)
        self._fused = self._make_fused() if c.fused else None

    def _make_fused(self):
        """The fused step (:mod:`.fused`) or, with a warning, ``None`` (eager) where it cannot run."""
        from .fused import FusedStep, compile_available

        own = [m for m in ("_drive", "_collisions", "_lidar", "_reset_idx", "_observe", "_step_sim")
               if getattr(type(self), m) is not getattr(AGVWarehouseEnv, m)]
        why = (f"{type(self).__name__} overrides {own}" if own else
               compile_available(self.device) if self.cfg.compile else None)
        if why:
            warnings.warn(f"fused=True: {why}; running the eager step", stacklevel=3)
            return None
        return FusedStep(self, compile=self.cfg.compile)

    def _step(self, actions: torch.Tensor):
        return super()._step(actions) if self._fused is None else self._fused.step(actions)

    # ------------------------------------------------------------------ construction
    def _observation_parts(self) -> dict[str, list[tuple[str, int]]]:
        """``{group: [(part, width), ...]}`` in feature order, as :meth:`_observe` builds them
        (see the module docstring's table; widths follow ``lidar_rays`` and ``num_obstacles``)."""
        c = self.cfg
        policy = [("goal_robot_frame", 2), ("goal_distance", 1), ("velocity", 2),
                  ("prev_action", 2), ("goals_remaining", 1), ("lidar", c.lidar_rays)]
        # The critic starts with the policy's parts noise-free, under the same names.
        critic = policy + [("position", 2), ("heading", 2), ("goal_position", 2)]
        if c.num_obstacles:  # no zero-width part when there are none
            critic.append(("obstacles", 4 * c.num_obstacles))
        critic.append(("params", 3))
        return {"policy": policy, "critic": critic}

    def _observation_layout(self) -> dict[str, dict[str, slice]]:
        layout = {}
        for g, parts in self._observation_parts().items():
            start, layout[g] = 0, {}
            for name, width in parts:
                layout[g][name] = slice(start, start + width)
                start += width
        return layout

    def _build_layouts(self) -> tuple[LayoutSet, RangeTable | None]:
        c = self.cfg
        key = (self.num_layouts, self.layout_seed, c.layout_offset, str(self.device), c.map_width, c.map_height,
               c.shelf_rows, c.shelf_depth, c.cross_aisles, c.cross_aisle_width, c.clutter_boxes,
               c.robot_radius, c.obstacle_radius, c.lidar_range, c.lidar_mode,
               c.lidar_table_resolution, c.lidar_table_angles)
        if key not in _LAYOUT_CACHE:  # layouts and range tables are immutable: share them
            layouts = generate_layouts(
                self.num_layouts, self.layout_seed, c.map_width, c.map_height, c.shelf_rows,
                c.shelf_depth, c.cross_aisles, c.cross_aisle_width, c.clutter_boxes,
                c.robot_radius, c.obstacle_radius, device=self.device, offset=c.layout_offset)
            table = None
            if c.lidar_mode == "table":
                table = RangeTable(layouts.boxes, self.world, c.lidar_range,
                                   c.lidar_table_resolution, c.lidar_table_angles)
            if len(_LAYOUT_CACHE) > 16:
                _LAYOUT_CACHE.clear()
            _LAYOUT_CACHE[key] = (layouts, table)
        return _LAYOUT_CACHE[key]

    # ------------------------------------------------------------------ reset
    def _reset_idx(self, env_ids: torch.Tensor) -> None:
        self._param_guard.check(self.params)
        # One draw from each env's stream covers everything this reset needs.
        u = self.rng.uniform(env_ids, K_.reset_draws(self.cfg))
        rows = K_.initial_rows(self.layouts, self.cfg, self.layout_of_env[env_ids], u)
        for name, value in rows.items():  # pos, heading, goals, goal_dist, obstacles
            getattr(self, name)[env_ids] = value
        for name in ("lin_vel", "ang_vel", "prev_action", "action_buf", "obs_vel"):
            getattr(self, name)[env_ids] = 0.0
        self.goal_idx[env_ids] = 0

    def _state_finite(self) -> torch.Tensor:
        return torch.isfinite(self.pos).all(dim=-1) & torch.isfinite(self.heading)

    def state_dict(self) -> dict[str, Any]:
        # The latency buffer's write position is a Python int: without it a resumed run with
        # action_latency > 0 would read other commands than the uninterrupted one.
        return {**super().state_dict(), "buf_ptr": int(self._buf_ptr)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._buf_ptr = int(state.get("buf_ptr", 0))

    # ------------------------------------------------------------------ measured state
    def get_state(self, env_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``(M, 7)``: x, y (m, world frame), heading (rad), linear (m/s) and angular (rad/s)
        velocity, current goal x, y (m)."""
        sel = (lambda t: t) if env_ids is None else (lambda t: t[env_ids])  # noqa: E731
        return torch.cat([sel(self.pos), torch.stack([sel(self.heading), sel(self.lin_vel),
                                                      sel(self.ang_vel)], dim=-1),
                          self._current_goal(env_ids)], dim=-1)

    def _set_state(self, env_ids: torch.Tensor, states: torch.Tensor,
                   prev_actions: torch.Tensor) -> None:
        # Every remaining goal becomes the logged one: a log records the goal being driven to.
        if self._fused is not None and self._obs is not None:  # its obs are handed out, unshared
            self._obs = self._clone_obs(self._obs)
        self.pos[env_ids] = states[:, 0:2]
        self.heading[env_ids] = wrap_angle(states[:, 2])
        self.lin_vel[env_ids] = states[:, 3]
        self.ang_vel[env_ids] = states[:, 4]
        self.goals[env_ids] = states[:, None, 5:7]
        self.goal_idx[env_ids] = 0
        self.goal_dist[env_ids] = (states[:, 5:7] - states[:, 0:2]).norm(dim=-1)
        self.prev_action[env_ids] = prev_actions

    def world_overrides(self, env_index: int) -> dict:
        lay = int(self.layout_of_env[env_index])
        return {"layout_seed": int(self.layout_seed), "num_layouts": 1,
                "layout_offset": int(self.cfg.layout_offset) + lay}

    _obstacle_pos = staticmethod(K_.obstacle_pos)

    # ------------------------------------------------------------------ step
    def _step_sim(self, actions: torch.Tensor) -> None:
        c = self.cfg
        self._param_guard.check(self.params)  # O(1) unless a param was written
        applied = self._command(actions)
        self.prev_action = actions
        self._drive(applied)
        if c.num_obstacles:  # obstacles shuttle along their segments
            self.obs_phase = self.obs_phase + self.obs_rate * c.dt
            new = self._obstacle_pos(self.obs_seg, self.obs_phase)
            self.obs_vel = (new - self.obs_pos) / c.dt
            self.obs_pos = new
        collided = self._collisions()
        # Goals, visited in order.
        reached, self._progress, self.goal_idx, self.goal_dist = K_.advance_goals(
            c, self.goals, self.goal_idx, self.goal_dist, self.pos, collided)
        self._collided, self._reached = collided, reached

    def _command(self, actions: torch.Tensor) -> torch.Tensor:
        """``(N, 2)`` command reaching the motors this step, in [-1, 1]: ``actions`` delayed by
        ``action_latency`` steps, plus Gaussian ``action_noise_std`` (actuation noise)."""
        p = self.params
        # Command latency: write this step's command, read the one issued `latency` steps ago.
        if self._buf_len > 1:
            self.action_buf[:, self._buf_ptr] = actions
            lat = p["action_latency"].clamp(0, self._buf_len - 1)
            slot = torch.remainder(self._buf_ptr - lat, self._buf_len)
            applied = self.action_buf[self._all_ids, slot]
            self._buf_ptr = (self._buf_ptr + 1) % self._buf_len
        else:
            applied = actions
        std = p["action_noise_std"]
        if bool((std > 0).any()):
            applied = (applied + self.rng.normal(None, 2) * std[:, None]).clamp(-1.0, 1.0)
        return applied

    def _drive(self, applied: torch.Tensor) -> None:
        """Advance the robots' pose and body velocities by ``dt`` under the motor command
        ``applied (N, 2)`` (fractions of the top speeds). The PyBullet twin overrides this."""
        p = self.params
        self.pos, self.heading, self.lin_vel, self.ang_vel = unicycle_step(
            self.pos, self.heading, self.lin_vel, self.ang_vel,
            applied[:, 0] * p["max_lin_vel"], applied[:, 1] * p["max_ang_vel"],
            p["lin_acc"], p["ang_acc"], p["slip"], self.cfg.dt)

    def _collisions(self) -> torch.Tensor:
        """``(N,) bool``: the robot disc touches a box (broadcast per layout), a wall or a moving
        obstacle."""
        return K_.collisions(self.cfg, self.layouts.boxes, self.world, self.pos, self.obs_pos)

    def _current_goal(self, env_ids: torch.Tensor | None) -> torch.Tensor:
        """``(M, 2)`` goal each env is heading to (the last one once all are reached)."""
        sel = (lambda t: t) if env_ids is None else (lambda t: t[env_ids])  # noqa: E731
        return K_.current_goal(sel(self.goals), sel(self.goal_idx), self.cfg.num_goals)

    def _evaluate(self):
        c = self.cfg
        terms = K_.reward_terms(c, self._reached, self._collided, self._progress)
        reward = sum(terms.values())
        success = self.goal_idx >= c.num_goals
        terminated = self._collided | success
        return reward, terminated, terms, {"success": success, "collision": self._collided}

    def _metrics(self) -> dict[str, torch.Tensor]:
        return {"clearance": self._clearance,
                "speed": self.lin_vel.abs() * (1.0 - self.params["slip"])}

    # ------------------------------------------------------------------ observations
    def _lidar(self, env_ids: torch.Tensor | None) -> torch.Tensor:
        """``(M, lidar_rays)`` ranges in metres (no noise) for ``env_ids`` (all if ``None``)."""
        whole = env_ids is None
        sel = (lambda t: t) if whole else (lambda t: t[env_ids])  # noqa: E731
        lookup = None if self.range_table is None else (
            self._table_lookup if whole else self.range_table.lookup)
        return K_.scan(self.cfg, self.layouts, self.world, self.ray_offsets, self.ray_spacing,
                       self.full_circle, sel(self.pos), sel(self.heading), sel(self.layout_of_env),
                       sel(self.obs_pos), lookup, self._cast_circles if whole else cast_circles_even,
                       whole=whole)

    #: State rows :func:`.kernels.observe_rows` reads, and the params it reads.
    OBS_STATE = ("pos", "heading", "lin_vel", "ang_vel", "prev_action", "goals", "goal_idx",
                 "obs_pos", "obs_vel")
    OBS_PARAMS = K_.OBS_PARAMS

    def _observe(self, env_ids: torch.Tensor | None = None) -> Obs:
        c, p = self.cfg, self.params
        sel = (lambda t: t) if env_ids is None else (lambda t: t[env_ids])  # noqa: E731
        ranges = self._lidar(env_ids)
        prow = {k: sel(p[k]) for k in self.OBS_PARAMS}
        noise = lost = None
        if bool((prow["lidar_noise_std"] > 0).any()) or bool((prow["obs_noise_std"] > 0).any()):
            noise = self.rng.normal(env_ids, 8 + c.lidar_rays)
        dropout = sel(p["lidar_dropout"])
        if bool((dropout > 0).any()):
            lost = self.rng.uniform(env_ids, c.lidar_rays) < dropout[:, None]
        clean, critic, lidar = K_.observe_rows(
            c, self.world, {k: sel(getattr(self, k)) for k in self.OBS_STATE}, prow, ranges)
        policy = K_.sensed(c, clean, prow, noise, lost)
        if env_ids is None:
            self._clearance = lidar.amin(dim=-1) * c.lidar_range
        return {"policy": policy, "critic": critic}

    def scripted_policy(self):
        """A reactive goal-seeking controller (see :mod:`.scripted`), ``obs -> actions``."""
        from .scripted import GoalSeekingController

        return GoalSeekingController(self)

    # ------------------------------------------------------------------ rendering
    def render(self, env_ids: Any = None, width: int = 480, show_lidar: bool = True,
               cols: int | None = None) -> np.ndarray:
        """Top-down ``uint8 (H, W, 3)`` frame of ``env_ids`` (default ``[0]``), tiled if several.

        Shows shelves, walls, moving obstacles, the robot with its heading, lidar rays, the goals
        and the trail of recent positions.
        """
        from .render import render_topdown

        return render_topdown(self, env_ids, width=width, show_lidar=show_lidar, cols=cols)
