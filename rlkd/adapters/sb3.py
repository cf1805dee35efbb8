"""Stable-Baselines3 ``VecEnv`` over a :class:`~rlkd.core.env.BatchedEnv` (numpy at the boundary).

    venv = SB3VecEnv(rlkd.make("AGVWarehouse-v0", num_envs=64), group="policy")
    stable_baselines3.PPO("MlpPolicy", venv, n_steps=32).learn(10_000)

Per-step overhead (AGVWarehouse-v0, 1024 envs, CPU, 2 shared cores, 200 steps each, random
actions; measured while another benchmark shared the machine, so treat as indicative):
raw ``BatchedEnv.step`` about 3.2 ms/step, ``SB3VecEnv.step`` about 3.4 ms/step, i.e. roughly
0.2 ms/step (~6%) of adapter cost. It comes from the action ``numpy -> torch`` copy, one ``.numpy()``
per returned tensor (zero-copy on CPU) and the ``N`` fresh info dicts; terminal observations,
``TimeLimit.truncated`` and ``episode`` are built only for the envs that ended this step
(a naive wrapper that builds every env's terminal observation or converts per env costs
O(N) Python work per step; Isaac Lab issue #523).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from rlkd.adapters._convert import actions_to_torch, to_numpy


class SB3VecEnv(VecEnv):
    """All ``num_envs`` copies of a BatchedEnv as one SB3 ``VecEnv``.

    Args:
        env: the :class:`~rlkd.core.env.BatchedEnv` (any device; data is moved to numpy).
        group: observation group fed to the policy (``"policy"``; ``"critic"`` for a privileged
            agent).
        render_mode: ``"rgb_array"`` (default; ``render()`` tiles the first ``render_envs`` envs)
            or ``None``.
        render_envs: how many envs ``render()`` tiles.

    ``reset() -> obs`` ``(N, *shape)`` float32; ``step(actions (N, act_dim)) -> (obs, rewards (N,)
    float32, dones (N,) bool, infos)`` with ``infos`` a list of ``N`` dicts. Only the envs that
    ended get ``terminal_observation`` (their last obs, numpy ``shape``), ``TimeLimit.truncated``
    (time limit, not a terminal state), ``episode`` ``{"r", "l"}`` (Monitor convention, so
    ``model.ep_info_buffer`` fills without a Monitor wrapper) and ``is_success`` when the task
    reports ``success`` (SB3 logs it as ``rollout/success_rate``); an env whose simulation
    diverged this step (and was reset) gets ``sim_unstable: True``. Envs autoreset in ``step``;
    the returned obs of a done env is the first obs of its next episode, as SB3 expects.

    Seeding: ``seed(s)`` applies at the next ``reset()``; the batch takes one seed (``s``) from
    which its per-env streams derive. ``env_is_wrapped(Monitor)`` answers ``True`` because the
    infos follow the Monitor convention (``evaluate_policy`` then reads ``info["episode"]``).
    """

    def __init__(self, env, group: str = "policy", render_mode: str | None = "rgb_array",
                 render_envs: int = 16):
        if group not in env.observation_spaces:
            raise KeyError(f"unknown observation group {group!r}; the env has "
                           f"{sorted(env.observation_spaces)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.env = env
        self.group = group
        self.render_envs = max(1, int(render_envs))
        self._render_mode = render_mode
        self._actions: torch.Tensor | None = None
        super().__init__(env.num_envs, env.observation_spaces[group], env.action_space)

    # ------------------------------------------------------------------ core API
    def reset(self) -> np.ndarray:
        seed = self._seeds[0]
        obs, _ = self.env.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return to_numpy(obs[self.group], self.observation_space.dtype)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions_to_torch(actions, (self.num_envs, *self.action_space.shape),
                                         self.env.device)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        self._actions = None
        dones = to_numpy(terminated | truncated)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if "episode" in info:
            ep = info["episode"]
            ids = to_numpy(ep["env_ids"]).tolist()
            final = to_numpy(info["final_obs"][self.group], self.observation_space.dtype)
            timeout = to_numpy(ep["timeout"]).tolist()
            ret = to_numpy(ep["return"]).tolist()
            length = to_numpy(ep["length"]).tolist()
            success = to_numpy(ep["success"]).tolist() if "success" in ep else None
            for k, i in enumerate(ids):
                d = infos[i]
                d["terminal_observation"] = final[k]
                d["TimeLimit.truncated"] = bool(timeout[k])
                d["episode"] = {"r": float(ret[k]), "l": int(length[k])}
                if success is not None:
                    d["is_success"] = bool(success[k])
        if "sim_unstable_ids" in info:  # diverged envs (reset by the env's NaN guard)
            for i in to_numpy(info["sim_unstable_ids"]).tolist():
                infos[i]["sim_unstable"] = True
        return (to_numpy(obs[self.group], self.observation_space.dtype),
                to_numpy(reward, np.float32), dones, infos)

    def close(self) -> None:
        self.env.close()

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed for the next ``reset()``; returns ``[seed + i]`` like SB3's own VecEnvs (only
        ``seed`` itself is used: it seeds the whole batch)."""
        return super().seed(seed)

    # ------------------------------------------------------------------ rendering
    def render(self, mode: str | None = None) -> np.ndarray | None:
        """Tiled ``uint8 (H, W, 3)`` frame of the first ``render_envs`` envs (``rgb_array``)."""
        mode = mode or self.render_mode
        if mode is None:
            return None
        if mode != "rgb_array":
            raise ValueError(f"SB3VecEnv renders 'rgb_array' only, got mode={mode!r}")
        return self.env.render(env_ids=list(range(min(self.num_envs, self.render_envs))))

    def get_images(self) -> Sequence[np.ndarray | None]:
        """One ``uint8 (H, W, 3)`` frame per env (costly for large batches)."""
        return [self.env.render(env_ids=[i]) for i in range(self.num_envs)]

    # ------------------------------------------------------------------ attribute access
    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices) if isinstance(indices, Iterable) else [int(indices)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Per-env values of ``attr_name``: a row of ``env.params[attr_name]`` or of a
        ``(num_envs, ...)`` tensor attribute, else the BatchedEnv's attribute repeated."""
        idx = self._indices(indices)
        if attr_name == "render_mode":
            return [self._render_mode] * len(idx)
        if attr_name in self.env.params:
            value = self.env.params[attr_name]
        elif hasattr(self.env, attr_name):
            value = getattr(self.env, attr_name)
        else:
            raise AttributeError(f"{type(self.env).__name__} has no attribute {attr_name!r}")
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == self.num_envs:
            rows = to_numpy(value[idx])
            return [rows[k] for k in range(len(idx))]
        return [value] * len(idx)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Write ``value`` into the rows ``indices`` of a per-env tensor (``env.params`` or a
        ``(num_envs, ...)`` attribute); other attributes can only be set for all envs at once."""
        idx = self._indices(indices)
        target = self.env.params.get(attr_name, getattr(self.env, attr_name, None))
        if isinstance(target, torch.Tensor) and target.dim() > 0 and target.shape[0] == self.num_envs:
            target[torch.as_tensor(idx, device=target.device)] = torch.as_tensor(
                value, dtype=target.dtype, device=target.device)
            return
        if sorted(idx) != list(range(self.num_envs)):
            raise ValueError(f"attribute {attr_name!r} is shared by the whole batch; set it for "
                             f"all envs (indices=None)")
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None,
                   **method_kwargs) -> list[Any]:
        """Call ``method_name`` once on the BatchedEnv (one object simulates every env) and
        return its result once per requested index."""
        idx = self._indices(indices)
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result] * len(idx)

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """No gymnasium wrappers are involved; ``Monitor`` is reported as present because the
        infos follow its ``episode`` convention."""
        from stable_baselines3.common.monitor import Monitor

        return [wrapper_class is Monitor] * len(self._indices(indices))
