"""gymnasium adapters: one env (:class:`GymnasiumEnv`) and a native vector env
(:class:`GymnasiumVectorEnv`) over a :class:`~rlkd.core.env.BatchedEnv`.

The registry registers every task as ``rlkd/<id>`` with ``make_single`` / ``make_vector`` below as
entry points, so::

    env = gymnasium.make("rlkd/AGVWarehouse-v0", render_mode="rgb_array")      # GymnasiumEnv
    envs = gymnasium.make_vec("rlkd/AGVWarehouse-v0", num_envs=64)             # GymnasiumVectorEnv

Both adapters convert at the boundary only (numpy in, torch to the env, numpy out); the task
logic stays in the BatchedEnv.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import logger
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from rlkd.adapters._convert import actions_to_torch, resolve_groups, single_space, to_numpy

_FLAG_KEYS_SKIP = ("return", "length", "env_ids")


def _numpy_obs(obs: dict[str, torch.Tensor], groups: list[str], as_dict: bool, space) -> Any:
    """Batched numpy obs: ``(M, *shape)`` array of one group, or a dict of them."""
    if as_dict:
        return {g: to_numpy(obs[g], space[g].dtype) for g in groups}
    return to_numpy(obs[groups[0]], space.dtype)


def _row(obs_np: Any, k: int) -> Any:
    if isinstance(obs_np, dict):
        return {g: v[k] for g, v in obs_np.items()}
    return obs_np[k]


class GymnasiumEnv(gymnasium.Env):
    """One rlkd env as a ``gymnasium.Env`` (numpy in and out, no autoreset).

    Args:
        env: a :class:`~rlkd.core.env.BatchedEnv` with ``num_envs == 1``.
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` -> ``uint8 (H, W, 3)``).
        obs_groups: ``None`` -> the ``"policy"`` group as a ``Box``; a group name -> that group as
            a ``Box``; a list of names -> a ``spaces.Dict`` of those groups.

    Spaces: ``observation_space`` is the group's per-env Box (float32, shape as in
    ``env.observation_spaces``) or a Dict of them; ``action_space`` is ``Box(-1, 1, (act_dim,),
    float32)``.

    ``step(action)`` takes a numpy array of shape ``(act_dim,)`` and returns ``(obs, reward: float,
    terminated: bool, truncated: bool, info)``; ``info`` holds numpy values: ``reward_terms``
    (name -> float32), ``sim_unstable`` (int) and, when the episode ends, ``episode`` with ``r``
    (return), ``l`` (length) and the task's flags (``success``, ``collision``, ``timeout``, ...).

    Autoreset: the BatchedEnv resets a finished env inside ``step``; this adapter hides that. On
    the step that ends an episode it returns the *final* observation (``info["final_obs"]`` of the
    BatchedEnv) and remembers that the internal state is already a fresh episode: the following
    ``reset()`` without seed/options returns that fresh observation instead of resetting again
    (so the episode sequence equals the BatchedEnv's). ``reset(seed=s)`` always reseeds and resets.
    Calling ``step`` after an episode ended without ``reset()`` (undefined in gymnasium) continues
    in that fresh episode.

    Seeding: ``reset(seed=s)`` seeds ``np_random`` (``super().reset``) and restarts the env's random
    streams, so a seeded reset is reproducible. The warehouse layout of a single env is fixed by
    the ``seed`` given at construction (``make_single(seed=...)``), not by ``reset(seed=...)``.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, env, render_mode: str | None = None,
                 obs_groups: str | Sequence[str] | None = None):
        if env.num_envs != 1:
            raise ValueError(f"GymnasiumEnv wraps a BatchedEnv with num_envs=1, got "
                             f"{env.num_envs}; use GymnasiumVectorEnv for batches")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of "
                             f"{self.metadata['render_modes']}, got {render_mode!r}")
        self.env = env
        self.render_mode = render_mode
        self.metadata = dict(self.metadata,
                             render_fps=env.metadata.get("render_fps", self.metadata["render_fps"]))
        self._groups, self._as_dict = resolve_groups(env, obs_groups)
        self.observation_space = single_space(env, self._groups, self._as_dict)
        self.action_space = env.action_space
        self._fresh_after_done = False  # internal state already autoreset by the BatchedEnv

    def _obs(self, obs: dict[str, torch.Tensor]) -> Any:
        return _row(_numpy_obs(obs, self._groups, self._as_dict, self.observation_space), 0)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Start an episode; ``obs`` as in :attr:`observation_space`, ``info`` is ``{}``.

        ``options`` are accepted for API compatibility; a non-empty dict forces a full reset.
        """
        super().reset(seed=seed)
        if seed is None and not options and self._fresh_after_done:
            obs = self.env.get_observations()
        else:
            obs, _ = self.env.reset(seed=seed, options=options)
        self._fresh_after_done = False
        return self._obs(obs), {}

    def step(self, action) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = actions_to_torch(action, self.action_space.shape, self.env.device).unsqueeze(0)
        obs, reward, terminated, truncated, info = self.env.step(a)
        term, trunc = bool(terminated[0]), bool(truncated[0])
        out: dict[str, Any] = {
            "reward_terms": {k: np.float32(v[0].item()) for k, v in info["reward_terms"].items()},
            "sim_unstable": int(info["sim_unstable"]),
        }
        if term or trunc:
            ep = info["episode"]
            stats: dict[str, Any] = {"r": np.float32(ep["return"][0].item()),
                                     "l": np.int64(ep["length"][0].item())}
            for k, v in ep.items():
                if k not in _FLAG_KEYS_SKIP:
                    stats[k] = to_numpy(v)[0]
            out["episode"] = stats
            obs = info["final_obs"]
            self._fresh_after_done = True
        return self._obs(obs), float(reward[0]), term, trunc, out

    def render(self) -> np.ndarray | None:
        """``uint8 (H, W, 3)`` frame of the env when ``render_mode == "rgb_array"``, else ``None``."""
        if self.render_mode is None:
            logger.warn("render() called without a render_mode; pass render_mode='rgb_array'")
            return None
        return self.env.render(env_ids=[0])

    def close(self) -> None:
        self.env.close()
        super().close()


class GymnasiumVectorEnv(gymnasium.vector.VectorEnv):
    """A native gymnasium ``VectorEnv`` over a BatchedEnv of ``num_envs = N`` copies.

    Args:
        env: the :class:`~rlkd.core.env.BatchedEnv`.
        render_mode: ``None`` or ``"rgb_array"``.
        obs_groups: as in :class:`GymnasiumEnv`.
        stats_key: info key of the finished episodes' statistics (``"episode"``); ``None`` leaves
            it out (needed under ``gymnasium.wrappers.vector.RecordEpisodeStatistics``, which
            refuses to overwrite an existing ``episode`` key). ``gymnasium.make_vec`` defaults
            to ``None`` (:func:`make_vector`); ``final_info["episode"]`` is always there.
        render_envs: how many envs ``render()`` tiles (the first ``min(N, render_envs)``).
        autoreset_mode: ``AutoresetMode.SAME_STEP`` (or ``"SameStep"``), the only mode offered;
            any other raises ``ValueError`` saying why (see below).

    Batched data (numpy): obs ``(N, *shape)`` float32 (or a dict of them), rewards ``(N,)``
    float64, terminations / truncations ``(N,)`` bool; actions ``(N, act_dim)``.

    Autoreset is ``AutoresetMode.SAME_STEP`` (``metadata["autoreset_mode"]``), as gymnasium's
    ``SyncVectorEnv(autoreset_mode=SAME_STEP)``: envs that end are reset inside ``step``, the
    returned obs of those rows is the first obs of the next episode, and ``infos`` carries

    * ``final_obs``: object array ``(N,)``, the final obs at done indices, ``None`` elsewhere,
      with ``_final_obs`` ``(N,)`` bool mask;
    * ``final_info``: ``{"episode": {...}, "_episode": mask}`` of the done envs, with
      ``_final_info`` mask;
    * ``episode`` (``stats_key``): ``r`` float64, ``l`` int64 and the task's flags (``success``,
      ``collision``, ``timeout``: bool), ``(N,)`` arrays, 0 where not done, with ``_episode`` mask;
    * ``reward_terms``: name -> ``(N,)`` float32 (with all-True ``_name`` masks, gymnasium style);
    * ``sim_unstable``: ``(N,)`` bool, the envs reset this step because their simulation
      diverged (all-True ``_sim_unstable`` mask).

    ``final_*`` and ``episode`` keys are present only on steps where some env ended.
    ``reset(seed=s)`` takes one int: the batch's per-env random streams derive from it.

    Why not NEXT_STEP: the BatchedEnv advances every env in one call and resets finished ones
    inside it; NEXT_STEP would need finished envs to sit out the next step (return the reset
    obs, reward 0, ignore the action), which one batched step cannot do without stepping them
    anyway. gymnasium wrappers and SAME_STEP (gymnasium 1.x, checked by
    ``tests/test_gymnasium_fit.py``): ``RecordEpisodeStatistics``, ``NormalizeReward``,
    ``ClipAction`` / ``RescaleAction`` and ``RecordVideo`` work (``RecordVideo`` warns that
    clips lack each episode's last frame); every ``VectorObservationWrapper``
    (``NormalizeObservation``, ``TransformObservation``, ``FlattenObservation``, ...) refuses
    SAME_STEP with a ``ValueError``: normalize observations in the agent instead (rlkd's PPO
    does), or use ``gymnasium.make_vec(..., vectorization_mode="sync", vector_kwargs=
    {"autoreset_mode": AutoresetMode.NEXT_STEP})`` over single envs (slower: one env per step).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10,
                                "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, env, render_mode: str | None = None,
                 obs_groups: str | Sequence[str] | None = None, stats_key: str | None = "episode",
                 render_envs: int = 16,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of "
                             f"{self.metadata['render_modes']}, got {render_mode!r}")
        _check_autoreset_mode(autoreset_mode)
        self.env = env
        self.num_envs = env.num_envs
        self.render_mode = render_mode
        self.stats_key = stats_key
        self.render_envs = max(1, int(render_envs))
        self.metadata = dict(self.metadata,
                             render_fps=env.metadata.get("render_fps", self.metadata["render_fps"]))
        self._groups, self._as_dict = resolve_groups(env, obs_groups)
        self.single_observation_space = single_space(env, self._groups, self._as_dict)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.single_action_space = env.action_space
        self.action_space = batch_space(env.action_space, self.num_envs)

    def _obs(self, obs: dict[str, torch.Tensor]) -> Any:
        return _numpy_obs(obs, self._groups, self._as_dict, self.single_observation_space)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise ValueError(f"reset(seed=...) takes one int for the whole batch (per-env streams "
                             f"are derived from it), got {type(seed).__name__}")
        if options and "reset_mask" in options:
            raise ValueError("partial resets (options['reset_mask']) are not supported: envs "
                             "autoreset in the same step")
        super().reset(seed=None if seed is None else int(seed))
        obs, _ = self.env.reset(seed=None if seed is None else int(seed), options=options)
        return self._obs(obs), {}

    def step(self, actions) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        a = actions_to_torch(actions, self.action_space.shape, self.env.device)
        obs, reward, terminated, truncated, info = self.env.step(a)
        n = self.num_envs
        infos: dict[str, Any] = {}
        terms = {}
        for k, v in info["reward_terms"].items():
            terms[k], terms["_" + k] = to_numpy(v, np.float32), np.ones(n, dtype=bool)
        if terms:
            infos["reward_terms"], infos["_reward_terms"] = terms, np.ones(n, dtype=bool)
        unstable = np.zeros(n, dtype=bool)
        if "sim_unstable_ids" in info:
            unstable[to_numpy(info["sim_unstable_ids"])] = True
        infos["sim_unstable"], infos["_sim_unstable"] = unstable, np.ones(n, dtype=bool)
        if "episode" in info:
            ep = info["episode"]
            ids = to_numpy(ep["env_ids"])
            mask = np.zeros(n, dtype=bool)
            mask[ids] = True
            final_rows = self._obs(info["final_obs"])
            final_obs = np.full(n, None, dtype=object)
            for k, i in enumerate(ids):
                final_obs[i] = _row(final_rows, k)
            stats = self._stats(ep, ids)
            infos["final_obs"], infos["_final_obs"] = final_obs, mask
            infos["final_info"] = {"episode": stats, "_episode": mask.copy()}
            infos["_final_info"] = mask.copy()
            if self.stats_key:
                infos[self.stats_key] = {k: v.copy() for k, v in stats.items()}
                infos["_" + self.stats_key] = mask.copy()
        return (self._obs(obs), to_numpy(reward, np.float64), to_numpy(terminated),
                to_numpy(truncated), infos)

    def _stats(self, ep: dict[str, torch.Tensor], ids: np.ndarray) -> dict[str, np.ndarray]:
        n = self.num_envs
        r, l_ = np.zeros(n, dtype=np.float64), np.zeros(n, dtype=np.int64)
        r[ids], l_[ids] = to_numpy(ep["return"]), to_numpy(ep["length"])
        stats = {"r": r, "l": l_}
        for k, v in ep.items():
            if k not in _FLAG_KEYS_SKIP:
                vals = to_numpy(v)
                arr = np.zeros(n, dtype=vals.dtype)
                arr[ids] = vals
                stats[k] = arr
        return stats

    def render(self) -> np.ndarray | None:
        """Tiled ``uint8 (H, W, 3)`` frame of the first ``min(N, render_envs)`` envs."""
        if self.render_mode is None:
            logger.warn("render() called without a render_mode; pass render_mode='rgb_array'")
            return None
        return self.env.render(env_ids=list(range(min(self.num_envs, self.render_envs))))

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()


def _check_autoreset_mode(mode: AutoresetMode | str) -> None:
    try:
        mode = AutoresetMode(mode)
    except ValueError:
        raise ValueError(f"autoreset_mode must be an AutoresetMode, got {mode!r}") from None
    if mode != AutoresetMode.SAME_STEP:
        raise ValueError(
            f"autoreset_mode={mode} is not offered: rlkd's batched envs reset finished envs in "
            f"the same step (AutoresetMode.SAME_STEP); NEXT_STEP would need them to skip a "
            f"batched step. Use gymnasium.make_vec(..., vectorization_mode='sync', vector_kwargs="
            f"{{'autoreset_mode': AutoresetMode.NEXT_STEP}}) for NEXT_STEP over single envs "
            f"(see GymnasiumVectorEnv's docstring for the wrappers that need it)")


def make_single(env_id: str, render_mode: str | None = None, seed: int = 0, device: str = "cpu",
                obs_groups: str | Sequence[str] | None = None, **overrides: Any) -> GymnasiumEnv:
    """``gymnasium.make("rlkd/<id>")`` entry point: ``rlkd.make(env_id, num_envs=1, ...)`` wrapped
    in :class:`GymnasiumEnv`. ``overrides`` are task config fields."""
    from rlkd.core.registry import make

    env = make(env_id, num_envs=1, device=device, seed=seed, **overrides)
    return GymnasiumEnv(env, render_mode=render_mode, obs_groups=obs_groups)


def make_vector(env_id: str, num_envs: int = 1, render_mode: str | None = None, seed: int = 0,
                device: str = "cpu", obs_groups: str | Sequence[str] | None = None,
                stats_key: str | None = None,
                autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
                **overrides: Any) -> GymnasiumVectorEnv:
    """``gymnasium.make_vec("rlkd/<id>", num_envs=N)`` entry point (``vector_entry_point``).

    ``stats_key`` defaults to ``None`` here (not ``"episode"`` as in
    :class:`GymnasiumVectorEnv`), so ``gymnasium.wrappers.vector.RecordEpisodeStatistics`` works
    with its defaults: it writes ``infos["episode"]`` itself (same returns and lengths as ours);
    our statistics with the task's flags stay in ``infos["final_info"]["episode"]``.
    ``max_episode_steps`` (gymnasium passes the registered default) is the task's config field.
    """
    from rlkd.core.registry import make

    _check_autoreset_mode(autoreset_mode)  # before building the env: fail fast
    env = make(env_id, num_envs=num_envs, device=device, seed=seed, **overrides)
    return GymnasiumVectorEnv(env, render_mode=render_mode, obs_groups=obs_groups,
                              stats_key=stats_key, autoreset_mode=autoreset_mode)


# gymnasium.make reads the render modes of the entry point from its ``metadata`` attribute.
make_single.metadata = GymnasiumEnv.metadata  # type: ignore[attr-defined]
make_vector.metadata = GymnasiumVectorEnv.metadata  # type: ignore[attr-defined]
