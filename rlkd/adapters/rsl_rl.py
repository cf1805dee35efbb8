"""rsl_rl (rsl-rl-lib 5.x) ``VecEnv`` over a :class:`~rlkd.core.env.BatchedEnv` (torch throughout).

    env = RslRlVecEnv(rlkd.make("AGVWarehouse-v0", num_envs=4096, device="cuda"))
    runner = OnPolicyRunner(env, train_cfg, log_dir, device="cuda")   # obs_groups maps
    runner.learn(1500)                                               # actor/critic -> groups

Observation groups go to rsl_rl unchanged as a ``TensorDict``; the runner config's
``obs_groups`` picks them, e.g. ``{"actor": ["policy"], "critic": ["critic"]}`` for PPO or
``{"student": ["policy"], "teacher": ["critic"]}`` for ``Distillation``.
"""

from __future__ import annotations

from typing import Any

import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict


class RslRlVecEnv(VecEnv):
    """All ``num_envs`` copies of a BatchedEnv as an rsl_rl ``VecEnv``.

    Attributes:
        num_envs, num_actions (``act_dim``), max_episode_length (int), device, cfg (the task's
        config dataclass): as in ``rsl_rl.env.VecEnv``.
        episode_length_buf: ``(num_envs,)`` int64, *the BatchedEnv's own tensor*. Assigning to it
            (``OnPolicyRunner.learn(init_at_random_ep_len=True)`` does) copies the values into the
            BatchedEnv's buffer, so randomised episode lengths really shorten those episodes.

    ``get_observations() -> TensorDict`` of every group, batch size ``[num_envs]``;
    ``step(actions (num_envs, num_actions)) -> (obs TensorDict, rewards (N,) float32, dones (N,)
    int64, extras)`` with ``extras["time_outs"]`` ``(N,)`` bool (truncations, for value
    bootstrapping) and ``extras["log"]``: on steps where episodes ended, ``"/episode/<name>"`` ->
    float ``(M,)`` tensor over those ``M`` episodes (``return``, ``length``, ``success``,
    ``collision``, ``timeout`` ...; rsl_rl's logger averages them per iteration), always
    ``"/sim_unstable"``. Envs autoreset inside ``step``; the returned obs of a done env is the
    first obs of its next episode (its last obs is in ``extras["final_obs"]``, a TensorDict of
    the done rows, ids in ``extras["final_env_ids"]``).

    The env is reset on the first ``get_observations()`` if it was never reset.
    """

    def __init__(self, env):
        self.env = env
        self.num_envs: int = env.num_envs
        self.num_actions: int = env.act_dim
        self.max_episode_length: int = int(env.max_episode_length)
        self.device = env.device
        self.cfg = env.cfg

    @property
    def episode_length_buf(self) -> torch.Tensor:
        return self.env.episode_length_buf

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        buf = self.env.episode_length_buf
        buf.copy_(torch.as_tensor(value, device=buf.device).to(buf.dtype).expand_as(buf))

    @property
    def unwrapped(self):
        """The wrapped BatchedEnv."""
        return self.env

    def _td(self, obs: dict[str, torch.Tensor], batch: int) -> TensorDict:
        return TensorDict(obs, batch_size=[batch], device=self.device)

    def reset(self, seed: int | None = None) -> tuple[TensorDict, dict]:
        obs, info = self.env.reset(seed=seed)
        return self._td(obs, self.num_envs), info

    def get_observations(self) -> TensorDict:
        try:
            obs = self.env.get_observations()
        except RuntimeError:  # never reset yet
            obs, _ = self.env.reset()
        return self._td(obs, self.num_envs)

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor,
                                                   dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        dones = (terminated | truncated).long()
        log: dict[str, Any] = {"/sim_unstable": float(info["sim_unstable"])}
        extras: dict[str, Any] = {"time_outs": truncated, "log": log}
        if "episode" in info:
            ep = info["episode"]
            for k, v in ep.items():
                if k != "env_ids":
                    log[f"/episode/{k}"] = v.float()
            extras["final_obs"] = self._td(info["final_obs"], int(ep["env_ids"].numel()))
            extras["final_env_ids"] = ep["env_ids"]
        return self._td(obs, self.num_envs), reward, dones, extras

    def close(self) -> None:
        self.env.close()
