"""PyBullet twin of the AGV warehouse task: the same task on an independent physics engine.

:class:`AGVWarehouseBulletEnv` (``rlkd/AGVWarehouseBullet-v0``) is the stand-in for a *real robot*
in sim-to-real evaluation: a policy trained on the kinematic torch env (``AGVWarehouse-v0``) is run
here, where the robot is a rigid multibody driven through its wheels. Everything about the *task*
is inherited unchanged: layouts from the same seed, start/goal/obstacle sampling from the same
per-env random streams, the obstacles' scripted shuttling, observations (including noise and
dropout), rewards, termination and ``params``. Three things come from PyBullet instead:

* **robot motion** (:meth:`_drive`): a 25 kg cylindrical chassis on two driven wheels and two
  passive casters. A firmware model turns the action into body velocity targets, rate-limits them
  by ``lin_acc`` / ``ang_acc`` and sends wheel velocity targets to torque-limited motors; PyBullet
  then integrates the dynamics at 240 Hz. This adds what the kinematic model lacks: wheel-ground
  friction and slip, chassis mass and inertia, motor torque limits, and contact (bumping into a
  shelf pushes the robot back). ``params["slip"]`` is ignored (the critic observation still
  reports it): here physics decides slip (lower traction with ``params["wheel_friction"]``).
  ``lin_vel`` is the base velocity projected on the heading (m/s), ``ang_vel`` the yaw rate
  (rad/s), both measured, not commanded.
* **collisions** (:meth:`_collisions`): contact between any link of the robot and a shelf, a wall
  or a moving obstacle (PyBullet closest points at distance <= 0).
* **lidar** (:meth:`_lidar`): horizontal PyBullet ray casts at ``LIDAR_HEIGHT`` above the floor.

Extra per-env params (float32 ``(N,)``, applied from the next step): ``mass_scale`` (chassis mass
multiplier), ``wheel_friction`` (wheels' lateral friction coefficient, the floor's is 1.0) and
``motor_torque_scale`` (wheel motor torque limit multiplier).

Frames and units: one PyBullet world holds every env; env ``i``'s warehouse spans
``[0, W] x [0, H]`` shifted by ``self.grid_offset[i]`` (metres) in the x-y plane, z up, floor at
z = 0. All torch state (``pos``, ``heading``, ...) is in the env's own map frame, like the torch
env. The robot body frame is x forward, y left, z up; its base origin is the wheel axle centre.
An episode reset rebuilds the robot body (a teleport would keep Bullet's cached contacts, so the
same seed could replay differently).

Speed: one ``stepSimulation`` advances every env, but PyBullet has no batched state getters, so
sending motor commands, reading poses and checking contacts is a Python loop over the envs, and
the physics runs ``round(dt x 240)`` substeps (24) per control step. This env is slow by nature (measured ~450-650 env
steps/s on one CPU core at 16-64 envs with the scripted controller, vs ~4x10^4 for the torch
env): it is the "real robot" for evaluation, not a training env. CPU only;
``state_dict``/``load_state_dict`` are not supported (PyBullet's contact state is not exposed).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from rlkd.sim.diffdrive import wrap_angle

from .config import AGVWarehouseConfig
from .env import AGVWarehouseEnv

# Robot geometry (metres, kilograms). The base origin (= centre of mass, low) is the axle centre.
WHEEL_RADIUS = 0.08
WHEEL_WIDTH = 0.04
WHEEL_MASS = 1.0
HALF_TRACK = 0.2          # wheels at body y = +-HALF_TRACK (left is +y)
CHASSIS_HEIGHT = 0.25
CHASSIS_CLEARANCE = 0.03  # gap between the chassis' bottom face and the floor
CHASSIS_MASS = 25.0
CASTER_RADIUS = 0.04
CASTER_MASS = 0.2
CASTER_X = 0.2            # casters at body x = +-CASTER_X
#: Casters hang this far above the floor when the chassis is level: the robot rests on its wheels
#: and tips onto a caster by ~1 degree. Four rigid contacts at one height would let the solver put
#: most of the weight on the (frictionless) casters and leave the wheels without traction; real
#: centre-drive bases use drive-wheel suspension for the same reason.
CASTER_GAP = 0.005
#: Ray height above the floor: over the chassis top (0.28 m), under shelves and obstacles (1 m).
LIDAR_HEIGHT = 0.5
WORLD_HEIGHT = 1.0        # height of shelves, walls and obstacles
WALL_THICKNESS = 1.0
#: Linear acceleration the nominal motors can sustain on flat ground, with headroom over the
#: default firmware limit ``lin_acc`` = 2 m/s^2 (torque limits are real: beyond it, wheels lag).
MOTOR_ACCEL = 3.0
PHYSICS_HZ = 240


class AGVWarehouseBulletEnv(AGVWarehouseEnv):
    """The AGV warehouse task with PyBullet robot dynamics, contacts and lidar (CPU only).

    See the module docstring. Same constructor and config as
    :class:`~rlkd.envs.agv_warehouse.env.AGVWarehouseEnv`; ``lidar_mode``, ``compile`` and
    ``slip`` have no effect here.
    """

    TWIN_ID = None  # it is the twin
    PERTURBATIONS = {
        **{k: v for k, v in AGVWarehouseEnv.PERTURBATIONS.items() if k != "inertia"},
        "mass": (("mass_scale", "scale"),),
        "friction": (("wheel_friction", "scale"),),
        "motor_strength": (("max_lin_vel", "scale"), ("max_ang_vel", "scale"),
                           ("motor_torque_scale", "scale")),
    }

    def __init__(self, cfg: AGVWarehouseConfig, num_envs: int = 1, device="cpu", seed: int = 0,
                 validate_actions: bool = True):
        if torch.device(device).type != "cpu":
            raise ValueError(f"{type(self).__name__} runs PyBullet on the CPU only; got device "
                             f"{str(device)!r} (use device='cpu')")
        self._p = None  # set first, so close()/__del__ work even if construction fails below
        super().__init__(cfg, num_envs, device, seed, validate_actions)
        try:  # an optional dependency (the ~100 MB wheel is the "twin" extra)
            import pybullet
            from pybullet_utils.bullet_client import BulletClient
        except ImportError as e:
            raise ImportError(f"{type(self).__name__} (the PyBullet twin engine) needs PyBullet: "
                              f"pip install \"rlkd[twin]\"") from e

        self._pb = pybullet
        self._p = BulletClient(connection_mode=pybullet.DIRECT)
        self.substeps = max(1, round(cfg.dt * PHYSICS_HZ))
        n = num_envs
        full = lambda v: torch.full((n,), v, dtype=torch.float32)  # noqa: E731
        self.params.update(mass_scale=full(1.0), wheel_friction=full(1.0),
                           motor_torque_scale=full(1.0))
        #: Values of the dynamics params last written into PyBullet (see _apply_dynamics).
        self._applied_dyn = {k: self.params[k].clone() for k in ("mass_scale", "wheel_friction")}
        #: (N, 2) the firmware's commanded body velocities (m/s, rad/s) after rate limiting.
        self.fw_vel = torch.zeros(n, 2)
        # Wheel torque for MOTOR_ACCEL with the whole nominal mass, shared by the two wheels
        # (plus the wheels' own spin-up), N m.
        total = CHASSIS_MASS + 2 * WHEEL_MASS + 2 * CASTER_MASS
        self.max_wheel_torque = MOTOR_ACCEL * WHEEL_RADIUS * (total + WHEEL_MASS) / 2
        # Envs on a grid, far enough apart that no ray or body reaches a neighbour's warehouse.
        spacing = self.scale + 10.0
        cols = math.ceil(math.sqrt(n))
        idx = np.arange(n)
        self._offset = np.stack([idx % cols, idx // cols], 1).astype(np.float64) * spacing
        #: (N, 2) float32 position of each env's map origin in the PyBullet world, metres.
        self.grid_offset = torch.as_tensor(self._offset, dtype=torch.float32)
        self._build_world()

    # ------------------------------------------------------------------ construction
    def _build_layouts(self):
        # The twin casts its own rays: build (or reuse) the layouts without a range table.
        real = self.cfg
        self.cfg = dataclasses.replace(real, lidar_mode="exact")
        try:
            layouts, _ = super()._build_layouts()
        finally:
            self.cfg = real
        return layouts, None

    def _build_world(self) -> None:
        p, pb, c = self._p, self._pb, self.cfg
        p.setGravity(0, 0, -9.81)
        # Sorted contact pairs: results must not depend on the order bodies were created or removed.
        p.setPhysicsEngineParameter(fixedTimeStep=1.0 / PHYSICS_HZ, numSubSteps=0,
                                    deterministicOverlappingPairs=1)
        # Shared floor, friction 1 (contact friction is the product of the two bodies' values).
        self.floor = p.createMultiBody(0, p.createCollisionShape(pb.GEOM_PLANE))
        p.changeDynamics(self.floor, -1, lateralFriction=1.0)

        # Static world: one compound shape per layout (its shelves + 4 walls whose inner faces
        # lie on the map border), instanced once per env at the env's grid offset.
        W, H, t = self.world[0], self.world[1], WALL_THICKNESS
        walls = [[-t, -t, 0.0, H + t], [W, -t, W + t, H + t], [0.0, -t, W, 0.0], [0.0, H, W, H + t]]
        shapes = []
        for lay in range(self.num_layouts):
            boxes = self.layouts.boxes[lay, :int(self.layouts.num_boxes[lay])].tolist() + walls
            half = [[(b[2] - b[0]) / 2, (b[3] - b[1]) / 2, WORLD_HEIGHT / 2] for b in boxes]
            centre = [[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, WORLD_HEIGHT / 2] for b in boxes]
            shapes.append(p.createCollisionShapeArray(
                shapeTypes=[pb.GEOM_BOX] * len(boxes), halfExtents=half,
                collisionFramePositions=centre))
        lay_of = self.layout_of_env.tolist()
        self.static_ids = [p.createMultiBody(0, shapes[lay_of[i]], basePosition=[*off, 0.0])
                           for i, off in enumerate(self._offset)]
        # Moving obstacles: static (mass 0) cylinders teleported to the torch-computed positions.
        K = c.num_obstacles
        cyl = p.createCollisionShape(pb.GEOM_CYLINDER, radius=c.obstacle_radius,
                                     height=WORLD_HEIGHT)
        self.obstacle_ids = [[p.createMultiBody(0, cyl, basePosition=[*off, -10.0])
                              for _ in range(K)] for off in self._offset]
        self._shapes = None
        self.robot_ids = [self._build_robot(i) for i in range(self.num_envs)]

    def _build_robot(self, i: int) -> int:
        """Env ``i``'s robot, at rest at its map origin: chassis (base) + links 0/1 left/right
        wheels (revolute about body y) and links 2/3 front/back casters (fixed, frictionless
        spheres), with the dynamics params last applied to env ``i``."""
        p, pb, c = self._p, self._pb, self.cfg
        if self._shapes is None:  # collision shapes are shared by every robot
            chassis = p.createCollisionShape(
                pb.GEOM_CYLINDER, radius=c.robot_radius, height=CHASSIS_HEIGHT,
                collisionFramePosition=[0, 0, CHASSIS_CLEARANCE - WHEEL_RADIUS + CHASSIS_HEIGHT / 2])
            # Cylinders extend along their local z: turn the wheel's axis onto the body y axis.
            wheel = p.createCollisionShape(
                pb.GEOM_CYLINDER, radius=WHEEL_RADIUS, height=WHEEL_WIDTH,
                collisionFrameOrientation=p.getQuaternionFromEuler([math.pi / 2, 0, 0]))
            caster = p.createCollisionShape(pb.GEOM_SPHERE, radius=CASTER_RADIUS)
            self._shapes = (chassis, wheel, caster)
        chassis, wheel, caster = self._shapes
        zc = CASTER_GAP + CASTER_RADIUS - WHEEL_RADIUS  # caster centre height relative to the axle
        robot = p.createMultiBody(
            baseMass=CHASSIS_MASS * float(self._applied_dyn["mass_scale"][i]),
            baseCollisionShapeIndex=chassis,
            basePosition=[*self._offset[i], WHEEL_RADIUS],
            linkMasses=[WHEEL_MASS, WHEEL_MASS, CASTER_MASS, CASTER_MASS],
            linkCollisionShapeIndices=[wheel, wheel, caster, caster],
            linkVisualShapeIndices=[-1] * 4,
            linkPositions=[[0, HALF_TRACK, 0], [0, -HALF_TRACK, 0], [CASTER_X, 0, zc], [-CASTER_X, 0, zc]],
            linkOrientations=[[0, 0, 0, 1]] * 4,
            linkInertialFramePositions=[[0, 0, 0]] * 4,
            linkInertialFrameOrientations=[[0, 0, 0, 1]] * 4,
            linkParentIndices=[0] * 4,
            linkJointTypes=[pb.JOINT_REVOLUTE, pb.JOINT_REVOLUTE, pb.JOINT_FIXED, pb.JOINT_FIXED],
            linkJointAxis=[[0, 1, 0]] * 4)
        for wheel_link in (0, 1):
            p.changeDynamics(robot, wheel_link,
                             lateralFriction=float(self._applied_dyn["wheel_friction"][i]))
        for caster_link in (2, 3):  # casters swivel and roll freely: no lateral grip
            p.changeDynamics(robot, caster_link, lateralFriction=0.0, rollingFriction=0.001,
                             spinningFriction=0.0)
        return robot

    # ------------------------------------------------------------------ state sync
    def _teleport_obstacles(self, env_ids: list[int]) -> None:
        if not self.cfg.num_obstacles:
            return
        reset = self._p.resetBasePositionAndOrientation
        xy = self.obs_pos.double().numpy()
        for i in env_ids:
            ox, oy = self._offset[i]
            for k, body in enumerate(self.obstacle_ids[i]):
                reset(body, [xy[i, k, 0] + ox, xy[i, k, 1] + oy, WORLD_HEIGHT / 2], [0, 0, 0, 1])

    def _place_robots(self, env_ids: torch.Tensor) -> None:
        """Put fresh robots for ``env_ids`` at the torch ``pos``/``heading``, at rest, and zero
        their firmware velocity state.

        The robot body is rebuilt rather than teleported: Bullet keeps contact manifolds with
        warm-start impulses per body pair, which a teleport does not clear, so a reset would
        otherwise depend on the previous episode (same seed, different trajectory)."""
        p = self._p
        pos, hd = self.pos.double().numpy(), self.heading.double().numpy()
        for i in env_ids.tolist():
            p.removeBody(self.robot_ids[i])
            self.robot_ids[i] = body = self._build_robot(i)
            yaw = hd[i]
            p.resetBasePositionAndOrientation(
                body, [pos[i, 0] + self._offset[i, 0], pos[i, 1] + self._offset[i, 1], WHEEL_RADIUS],
                [0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])
        self.fw_vel[env_ids] = 0.0

    def set_pose(self, env_ids, pos, heading) -> None:
        """Put the robots of ``env_ids`` at ``pos (M, 2)`` (map frame, m) with ``heading (M,)``
        (rad), at rest (tests and scripted scenarios); the goal-distance baseline follows."""
        env_ids = torch.as_tensor(env_ids, dtype=torch.int64).reshape(-1)
        self.pos[env_ids] = torch.as_tensor(pos, dtype=torch.float32).reshape(-1, 2)
        self.heading[env_ids] = wrap_angle(torch.as_tensor(heading, dtype=torch.float32).reshape(-1))
        self.lin_vel[env_ids] = 0.0
        self.ang_vel[env_ids] = 0.0
        self.goal_dist[env_ids] = (self._current_goal(env_ids) - self.pos[env_ids]).norm(dim=-1)
        self._place_robots(env_ids)

    def _set_state(self, env_ids: torch.Tensor, states: torch.Tensor,
                   prev_actions: torch.Tensor) -> None:
        # Torch state first (pose, velocities, goal), then a fresh body moving at the logged
        # body velocities with its wheels spinning to match and the firmware ramp at them.
        super()._set_state(env_ids, states, prev_actions)
        self._place_robots(env_ids)
        p, hd = self._p, self.heading[env_ids].double().numpy()
        vw = states[:, 3:5].double().numpy()
        for k, i in enumerate(env_ids.tolist()):
            v, w = vw[k]
            p.resetBaseVelocity(self.robot_ids[i], [v * math.cos(hd[k]), v * math.sin(hd[k]), 0.0],
                                [0.0, 0.0, w])
            for link, sign in ((0, -1.0), (1, 1.0)):  # left, right wheel
                p.resetJointState(self.robot_ids[i], link, 0.0,
                                  targetVelocity=(v + sign * w * HALF_TRACK) / WHEEL_RADIUS)
        self.fw_vel[env_ids] = states[:, 3:5].to(torch.float32)

    def _reset_idx(self, env_ids: torch.Tensor) -> None:
        super()._reset_idx(env_ids)  # samples start, goals and obstacles from the torch RNG
        self._place_robots(env_ids)
        self._teleport_obstacles(env_ids.tolist())

    def _apply_dynamics(self) -> None:
        """Write changed ``mass_scale`` / ``wheel_friction`` params into PyBullet (only the envs
        whose values changed since the last write: changeDynamics per env is not free)."""
        p = self._p
        for name, last in self._applied_dyn.items():
            cur = self.params[name].to(torch.float32)
            changed = (cur != last).nonzero().squeeze(-1).tolist()
            for i in changed:
                v = float(cur[i])
                if name == "mass_scale":
                    p.changeDynamics(self.robot_ids[i], -1, mass=CHASSIS_MASS * v)
                else:
                    for wheel_link in (0, 1):
                        p.changeDynamics(self.robot_ids[i], wheel_link, lateralFriction=v)
            if changed:
                last.copy_(cur)

    # ------------------------------------------------------------------ overridden physics
    def _drive(self, applied: torch.Tensor) -> None:
        """Firmware + PyBullet for one control step: ``applied (N, 2)`` (fractions of the top
        speeds) -> rate-limited body velocity targets -> wheel motor targets -> ``substeps``
        physics steps -> ``pos``, ``heading``, ``lin_vel``, ``ang_vel`` read back."""
        p, prm, dt = self._p, self.params, self.cfg.dt
        self._apply_dynamics()
        # Firmware: rate-limit the commanded body velocities like a real base controller does.
        target = applied * torch.stack([prm["max_lin_vel"], prm["max_ang_vel"]], dim=-1)
        limit = torch.stack([prm["lin_acc"], prm["ang_acc"]], dim=-1) * dt
        self.fw_vel = self.fw_vel + torch.maximum(torch.minimum(target - self.fw_vel, limit), -limit)
        v, w = self.fw_vel[:, 0], self.fw_vel[:, 1]
        # Differential-drive inverse kinematics; positive wheel spin about +y drives forward.
        wheels = (torch.stack([v - w * HALF_TRACK, v + w * HALF_TRACK], dim=-1) / WHEEL_RADIUS).tolist()
        torque = (prm["motor_torque_scale"] * self.max_wheel_torque).tolist()
        control, mode = p.setJointMotorControlArray, self._pb.VELOCITY_CONTROL
        for i, body in enumerate(self.robot_ids):
            control(body, [0, 1], mode, targetVelocities=wheels[i], forces=[torque[i]] * 2)
        for _ in range(self.substeps):
            p.stepSimulation()
        # Read back (no batched getters in PyBullet: one call per body).
        get_pose, get_vel = p.getBasePositionAndOrientation, p.getBaseVelocity
        n = self.num_envs
        xyz, quat = np.empty((n, 3)), np.empty((n, 4))
        lin, ang = np.empty((n, 3)), np.empty((n, 3))
        for i, body in enumerate(self.robot_ids):
            xyz[i], quat[i] = get_pose(body)
            lin[i], ang[i] = get_vel(body)
        qx, qy, qz, qw = quat.T
        yaw = np.arctan2(2 * (qw * qz + qx * qy), 1 - 2 * (qy * qy + qz * qz))
        f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        self.pos = f32(xyz[:, :2] - self._offset)
        self.heading = wrap_angle(f32(yaw))
        self.lin_vel = f32(lin[:, 0] * np.cos(yaw) + lin[:, 1] * np.sin(yaw))
        self.ang_vel = f32(ang[:, 2])

    def _collisions(self) -> torch.Tensor:
        """``(N,) bool``: any robot link touches (closest distance <= 0) its env's shelves,
        walls or moving obstacles (obstacles are first moved to the current ``obs_pos``)."""
        p = self._p
        self._teleport_obstacles(range(self.num_envs))
        closest = p.getClosestPoints
        hit = np.zeros(self.num_envs, dtype=bool)
        for i, robot in enumerate(self.robot_ids):
            for other in (self.static_ids[i], *self.obstacle_ids[i]):
                # Each point is a tuple whose index 8 is the signed distance (m).
                if any(pt[8] <= 0.0 for pt in closest(robot, other, 0.0)):
                    hit[i] = True
                    break
        return torch.as_tensor(hit)

    def _lidar(self, env_ids: torch.Tensor | None) -> torch.Tensor:
        """``(M, lidar_rays)`` float32 ranges in metres (no noise) from PyBullet ray casts for
        ``env_ids`` (all if ``None``), rows in that order; ``lidar_range`` where nothing is hit."""
        c = self.cfg
        ids = self._all_ids if env_ids is None else env_ids
        ids_np = ids.numpy()
        M, R = ids.numel(), c.lidar_rays
        angles = (self.heading[ids][:, None] + self.ray_offsets).double().numpy()  # (M, R)
        origin = np.empty((M, R, 3))
        origin[..., :2] = (self.pos[ids].double().numpy() + self._offset[ids_np])[:, None]
        origin[..., 2] = LIDAR_HEIGHT
        end = origin.copy()
        end[..., 0] += c.lidar_range * np.cos(angles)
        end[..., 1] += c.lidar_range * np.sin(angles)
        origin, end = origin.reshape(-1, 3), end.reshape(-1, 3)
        frac = np.empty(M * R)
        chunk = self._pb.MAX_RAY_INTERSECTION_BATCH_SIZE  # PyBullet's cap on rays per call
        for s in range(0, M * R, chunk):
            # Each result: (body id or -1, link, hit fraction (1.0 if no hit), position, normal).
            hits = self._p.rayTestBatch(origin[s:s + chunk].tolist(), end[s:s + chunk].tolist(),
                                        numThreads=1)
            frac[s:s + len(hits)] = [h[2] for h in hits]
        return torch.as_tensor(frac.reshape(M, R) * c.lidar_range, dtype=torch.float32)

    # ------------------------------------------------------------------ lifecycle
    def state_dict(self):
        raise NotImplementedError(
            f"{type(self).__name__} cannot save its state: the PyBullet world (contacts, wheel "
            "states, motor targets) is not captured by torch tensors; rebuild and reset instead")

    def load_state_dict(self, state):
        raise NotImplementedError(
            f"{type(self).__name__} cannot restore a state (see state_dict); rebuild and reset "
            "instead")

    def close(self) -> None:
        """Disconnect the PyBullet client (idempotent)."""
        client, self._p = getattr(self, "_p", None), None
        if client is not None and client._client >= 0:
            try:
                client.disconnect()
            except Exception:  # already gone (interpreter shutdown): nothing left to release
                pass

    def __del__(self):
        self.close()
