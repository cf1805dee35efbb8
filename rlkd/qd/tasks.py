"""Quality-diversity tasks on the AGV warehouse: ``AGVOmni-v0`` and ``AGVStyle-v0``.

**What a QD task is here.** Not a registered env id: a QD task is an env id plus overrides
(``AGVWarehouse-v0``, one fixed layout, no moving obstacles, 250 steps), a fixed start pose (and
goal) written with ``env.set_state`` after every reset, and the definitions of fitness,
descriptor and per-step reward computed from the env's public outputs (``policy`` / ``critic``
observations and ``info["episode"]``). The env underneath is the ordinary task, so rendering,
videos and every env tool work on :meth:`QDTask.make_env` unchanged; :data:`QD_TASKS` is the
registry (``rlkd qd TASK``).

Every evaluation starts every env from the same state: one layout (``layout_seed`` 7), every env
on random stream 0 (``env.rng.set_streams``, common random numbers), the same reset seed, the
fixed start. Evaluations are therefore deterministic: a policy's fitness is a number, not a draw.

Layout 7 (16 x 12 m): shelf rows at y = 2.6-3.6, 5.3-6.3 and 8.1-9.1 m with gaps; open aisles
along the walls (x < 1.6, x > 14.4).

``AGVOmni-v0`` (the ant-omni analogue: the fitness gradient pulls every policy towards standing
still, so a plain PG emitter collapses diversity): start (8.0, 7.25) m heading 0, in the aisle
between rows 2 and 3. Descriptor: final (x, y) in metres, bounds [0, 16] x [0, 12]. Fitness:
``-(1/T) sum_t e_t - collided`` with energy ``e_t = mean(a_t^2)`` in [0, 1] (actions in [-1, 1])
and ``T`` = 250: in [-2, 0], QD-score offset 2. Per-step reward (critic): ``1 - e_t`` while the
episode runs (>= 0; a collision ends the episode and forfeits the rest, like an ant's healthy
bonus). The goal in the observation sits at the start point (never reached: ``goal_radius`` 0),
so ``goal_robot_frame`` tells the policy where it is relative to its start.

``AGVStyle-v0`` (the "uni" analogue: fitness and its gradient agree): start (5.0, 1.3) m heading
pi/2, goal (5.0, 10.4) m, 9.1 m away behind all three shelf rows. Descriptor: (mean |linear
speed| / max_lin_vel, mean |yaw rate| / max_ang_vel) over the episode, bounds [0, 1]^2.
Fitness: ``clip((d_0 - d_end) / d_0, -1) + goal_bonus * reached`` in [-1, 2], QD-score offset 1.
Per-step reward: ``(d_{t-1} - d_t) / d_0 + v_max dt / d_0 + goal_bonus * reached_t`` (the middle
term is the largest possible regress per step, so the reward is >= 0).

Descriptors are normalized to [-1, 1] with the declared bounds (:meth:`QDTask.normalize`) before
the archive and the similarity ``S(d, d')`` see them.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class QDTask:
    """A QD task on a batched env (see the module docstring for the two built-in ones).

    Attributes:
        id: task name, e.g. ``"AGVOmni-v0"``.
        env_id: the registered env underneath.
        env_overrides: its config overrides.
        start: ``(x, y, heading)`` start pose, metres / radians.
        goal: ``(x, y)`` goal, metres.
        descriptor_names: one name per descriptor dimension.
        descriptor_low, descriptor_high: declared bounds of the raw descriptor.
        fitness_low: lowest possible fitness; the QD-score offset is ``-fitness_low``.
        episode_steps: control steps of one evaluation (``max_episode_steps`` of the env).
        reset_seed: seed of every evaluation's reset.
    """

    id: str
    env_id: str = "AGVWarehouse-v0"
    env_overrides: dict = field(default_factory=dict)
    start: tuple[float, float, float] = (8.0, 7.25, 0.0)
    goal: tuple[float, float] = (8.0, 7.25)
    descriptor_names: tuple[str, ...] = ("x", "y")
    descriptor_low: tuple[float, ...] = (0.0, 0.0)
    descriptor_high: tuple[float, ...] = (16.0, 12.0)
    fitness_low: float = -2.0
    episode_steps: int = 250
    reset_seed: int = 0

    @property
    def descriptor_dim(self) -> int:
        return len(self.descriptor_names)

    @property
    def qd_offset(self) -> float:
        """Added to every elite's fitness in the QD-score (all contributions > 0)."""
        return -self.fitness_low

    # ------------------------------------------------------------------ env
    def make_env(self, num_envs: int, device="cpu", **overrides):
        """The task's env with ``num_envs`` copies, every env on random stream 0 (common random
        numbers). ``overrides`` go to the env config after the task's own."""
        import rlkd

        cfg = {**self.env_overrides, "max_episode_steps": self.episode_steps, **overrides}
        env = rlkd.make(self.env_id, num_envs=num_envs, device=device, seed=self.reset_seed, **cfg)
        env.rng.set_streams(torch.zeros(num_envs, dtype=torch.int64))
        return env

    def reset(self, env) -> torch.Tensor:
        """Reset every env to the fixed start; returns the ``policy`` observation ``(N, obs)``."""
        env.reset(seed=self.reset_seed)
        n = env.num_envs
        state = torch.tensor([*self.start, 0.0, 0.0, *self.goal], dtype=torch.float32,
                             device=env.device).expand(n, -1)
        env.set_state(torch.arange(n, device=env.device), state)
        return env.get_observations()["policy"]

    # ------------------------------------------------------------------ descriptors
    def bounds(self, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor(self.descriptor_low, dtype=torch.float32, device=device),
                torch.tensor(self.descriptor_high, dtype=torch.float32, device=device))

    def normalize(self, desc: torch.Tensor) -> torch.Tensor:
        """Raw descriptor ``(..., n_desc)`` -> [-1, 1] (QDax's ``_normalize_desc``)."""
        lo, hi = self.bounds(desc.device)
        return 2 * (desc - lo) / (hi - lo) - 1

    def denormalize(self, desc: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds(desc.device)
        return 0.5 * (hi - lo) * desc + 0.5 * (hi + lo)

    # ------------------------------------------------------------------ per-step statistics
    def init_stats(self, env) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def step_stats(self, env, stats: dict, actions: torch.Tensor, after: dict,
                   terminated: torch.Tensor, info: dict, alive: torch.Tensor
                   ) -> tuple[torch.Tensor, dict]:
        """After one env step: the per-step reward ``(N,)`` (>= 0, zero where ``alive`` is
        False) and the updated statistics. ``after`` holds the observations after the step
        (the final ones for envs that ended in it)."""
        raise NotImplementedError

    def finish_stats(self, env, stats: dict, length: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(fitness (N,), raw descriptor (N, n_desc))`` of each env's first episode."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _episode_flag(env, info: dict, name: str) -> torch.Tensor:
        """``(N,) bool`` flag ``name`` of the episodes that ended in this step (False elsewhere)."""
        flag = torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
        ep = info.get("episode")
        if ep is not None and name in ep:
            flag[ep["env_ids"]] = ep[name].bool()
        return flag

    @staticmethod
    def _part(env, after: dict, group: str, part: str) -> torch.Tensor:
        return after[group][:, env.observation_layout[group][part]]


_AGV_QD = dict(num_layouts=1, layout_seed=7, num_obstacles=0)


@dataclass(frozen=True)
class OmniTask(QDTask):
    """``AGVOmni-v0``: reach every (x, y) with the least energy (module docstring)."""

    def init_stats(self, env):
        n, dev = env.num_envs, env.device
        return {"energy": torch.zeros(n, device=dev), "pos": torch.zeros(n, 2, device=dev),
                "collided": torch.zeros(n, dtype=torch.bool, device=dev)}

    def step_stats(self, env, stats, actions, after, terminated, info, alive):
        e = actions.square().mean(dim=-1)
        reward = torch.where(alive, 1.0 - e, torch.zeros_like(e))
        stats["energy"] = stats["energy"] + torch.where(alive, e, torch.zeros_like(e))
        # Position every step while alive: at the first episode end it is the final one.
        pos = self._part(env, after, "critic", "position") * torch.tensor(
            env.world, device=env.device)
        stats["pos"] = torch.where(alive[:, None], pos, stats["pos"])
        stats["collided"] |= self._episode_flag(env, info, "collision") & alive
        return reward, stats

    def finish_stats(self, env, stats, length):
        fitness = -stats["energy"] / self.episode_steps - stats["collided"].float()
        return fitness, stats["pos"]


@dataclass(frozen=True)
class StyleTask(QDTask):
    """``AGVStyle-v0``: reach a goal behind the shelves in every driving style (module
    docstring).

    Attributes:
        goal_bonus: added to the fitness (and to that step's reward) when the goal is reached.
    """

    goal_bonus: float = 1.0

    @property
    def d0(self) -> float:
        return math.dist(self.start[:2], self.goal)

    def init_stats(self, env):
        n, dev = env.num_envs, env.device
        return {"d_prev": torch.full((n,), self.d0, device=dev),
                "progress": torch.zeros(n, device=dev), "speed": torch.zeros(n, device=dev),
                "yaw": torch.zeros(n, device=dev),
                "reached": torch.zeros(n, dtype=torch.bool, device=dev)}

    def step_stats(self, env, stats, actions, after, terminated, info, alive):
        zero = torch.zeros(env.num_envs, device=env.device)
        d = self._part(env, after, "critic", "goal_distance")[:, 0] * env.scale
        vel = self._part(env, after, "critic", "velocity").abs()
        reached = self._episode_flag(env, info, "success") & alive
        p = (stats["d_prev"] - d) / self.d0
        off = env.cfg.max_lin_vel * env.cfg.dt / self.d0
        reward = (p + off + self.goal_bonus * reached.float()).clamp_min(0.0)
        stats["progress"] = stats["progress"] + torch.where(alive, p, zero)
        stats["speed"] = stats["speed"] + torch.where(alive, vel[:, 0], zero)
        stats["yaw"] = stats["yaw"] + torch.where(alive, vel[:, 1], zero)
        stats["d_prev"] = d
        stats["reached"] |= reached
        return torch.where(alive, reward, zero), stats

    def finish_stats(self, env, stats, length):
        fitness = stats["progress"].clamp_min(-1.0) + self.goal_bonus * stats["reached"].float()
        n = length.clamp_min(1).float()
        return fitness, torch.stack([stats["speed"] / n, stats["yaw"] / n], dim=-1)


#: The QD tasks ``rlkd qd`` knows, by name.
QD_TASKS: dict[str, QDTask] = {
    "AGVOmni-v0": OmniTask("AGVOmni-v0", env_overrides={**_AGV_QD, "goal_radius": 0.0},
                           start=(8.0, 7.25, 0.0), goal=(8.0, 7.25),
                           descriptor_names=("x", "y"), descriptor_low=(0.0, 0.0),
                           descriptor_high=(16.0, 12.0), fitness_low=-2.0),
    "AGVStyle-v0": StyleTask("AGVStyle-v0", env_overrides=dict(_AGV_QD),
                             start=(5.0, 1.3, math.pi / 2), goal=(5.0, 10.4),
                             descriptor_names=("mean_speed", "mean_yaw_rate"),
                             descriptor_low=(0.0, 0.0), descriptor_high=(1.0, 1.0),
                             fitness_low=-1.0),
}


def get_task(name: str) -> QDTask:
    """The task ``name`` of :data:`QD_TASKS`; ``KeyError`` naming the known ones otherwise."""
    if name not in QD_TASKS:
        close = difflib.get_close_matches(name, list(QD_TASKS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown QD task {name!r}.{hint} Known: {', '.join(sorted(QD_TASKS))}")
    return QD_TASKS[name]
