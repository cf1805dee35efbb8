"""The IsaacGymEnvs ``VecTask`` API shape over a :class:`~rlkd.core.env.BatchedEnv`.

**Isaac Gym itself is not used and cannot be installed here** (it is a closed binary preview
for specific Linux/CUDA/Python versions; its type stubs are the optional ``stubs`` extra). This
module reproduces the *API shape* of ``isaacgymenvs.tasks.base.vec_task.VecTask`` so that code
written against IsaacGymEnvs / rl_games (``obs_dict``, ``rew_buf``, ``reset_buf``,
``progress_buf``, ``extras``) runs on rlkd tasks; the simulation is the rlkd task's own torch
code, not PhysX.

Differences from a real VecTask: envs reset in the same ``step`` call they end in (IsaacGymEnvs
resets them at the start of the next step), so ``obs_dict["obs"]`` rows of done envs are already
the first observation of the next episode (their last one is in ``extras["final_obs"]``), and
``progress_buf`` is already 0 for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces


class IsaacGymVecTask:
    """VecTask-shaped view of a BatchedEnv.

    Args:
        env: the :class:`~rlkd.core.env.BatchedEnv`.
        obs_group: group behind ``obs_buf`` (``"policy"``).
        state_group: group behind ``states_buf`` (``"critic"``; ``None`` or a missing group ->
            ``num_states = 0`` and no ``"states"`` in ``obs_dict``).
        clip_obs, clip_actions: clamps applied like VecTask's ``clipObservations`` /
            ``clipActions`` (actions are further clipped to [-1, 1] by the env).

    Attributes (torch, on ``device``):
        obs_buf ``(N, num_obs)`` float32, states_buf ``(N, num_states)`` float32,
        rew_buf ``(N,)`` float32, reset_buf ``(N,)`` int64 (1 where an episode ended this step),
        timeout_buf ``(N,)`` int64, progress_buf ``(N,)`` int64 (the env's episode-length tensor),
        extras (dict; ``time_outs`` ``(N,)`` bool, ``episode`` stats of finished episodes).
        observation_space / state_space / action_space: gymnasium ``Box`` per env.
    """

    def __init__(self, env, obs_group: str = "policy", state_group: str | None = "critic",
                 clip_obs: float = np.inf, clip_actions: float = np.inf):
        self.env = env
        self.device = env.device
        self.rl_device = str(env.device)
        self.num_envs = env.num_envs
        self.num_agents = 1
        self.obs_group = obs_group
        self.state_group = state_group if state_group in env.observation_spaces else None
        self.clip_obs, self.clip_actions = float(clip_obs), float(clip_actions)
        self.observation_space = env.observation_spaces[obs_group]
        self.num_obs = int(np.prod(self.observation_space.shape))
        if self.state_group is not None:
            self.state_space = env.observation_spaces[self.state_group]
            self.num_states = int(np.prod(self.state_space.shape))
        else:
            self.state_space = spaces.Box(-np.inf, np.inf, (0,), np.float32)
            self.num_states = 0
        self.action_space = env.action_space
        self.num_actions = env.act_dim
        self.max_episode_length = int(env.max_episode_length)
        n, dev = self.num_envs, self.device
        self.obs_buf = torch.zeros(n, self.num_obs, dtype=torch.float32, device=dev)
        self.states_buf = torch.zeros(n, self.num_states, dtype=torch.float32, device=dev)
        self.rew_buf = torch.zeros(n, dtype=torch.float32, device=dev)
        self.reset_buf = torch.zeros(n, dtype=torch.int64, device=dev)
        self.timeout_buf = torch.zeros(n, dtype=torch.int64, device=dev)
        self.extras: dict[str, Any] = {}

    @property
    def progress_buf(self) -> torch.Tensor:
        return self.env.episode_length_buf

    def get_number_of_agents(self) -> int:
        return self.num_agents

    def _fill_obs(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.obs_buf.copy_(obs[self.obs_group].reshape(self.num_envs, -1))
        obs_dict = {"obs": torch.clamp(self.obs_buf, -self.clip_obs, self.clip_obs)}
        if self.state_group is not None:
            self.states_buf.copy_(obs[self.state_group].reshape(self.num_envs, -1))
            obs_dict["states"] = torch.clamp(self.states_buf, -self.clip_obs, self.clip_obs)
        return obs_dict

    def reset(self) -> dict[str, torch.Tensor]:
        """Reset every env; ``obs_dict = {"obs": (N, num_obs), "states": (N, num_states)}``."""
        obs, _ = self.env.reset()
        self.reset_buf.zero_()
        self.timeout_buf.zero_()
        return self._fill_obs(obs)

    def step(self, actions: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor,
                                                   torch.Tensor, dict[str, Any]]:
        """``actions (N, num_actions)`` -> ``(obs_dict, rew_buf, reset_buf, extras)``."""
        actions = torch.clamp(actions, -self.clip_actions, self.clip_actions)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.rew_buf.copy_(reward)
        self.reset_buf.copy_(terminated | truncated)
        self.timeout_buf.copy_(truncated)
        # sim_unstable: envs reset this step because their simulation diverged (a count).
        self.extras = {"time_outs": truncated, "sim_unstable": info["sim_unstable"]}
        if "episode" in info:
            ep = info["episode"]
            self.extras["episode"] = {k: v.float() for k, v in ep.items() if k != "env_ids"}
            self.extras["final_obs"] = info["final_obs"]
            self.extras["final_env_ids"] = ep["env_ids"]
        return self._fill_obs(obs), self.rew_buf, self.reset_buf, self.extras

    def render(self, env_ids=None, **kwargs) -> np.ndarray:
        return self.env.render(env_ids=env_ids, **kwargs)

    def close(self) -> None:
        self.env.close()
