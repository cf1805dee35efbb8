"""The batched-env contract every rlkd task implements (DESIGN.md section 2).

A :class:`BatchedEnv` simulates ``num_envs`` copies of a task on one torch ``device``. It returns
observation *groups* (``obs["policy"]`` always, ``obs["critic"]`` for privileged state, more for
sensors), resets finished envs inside :meth:`step` (same-step autoreset, their last observation in
``info["final_obs"]``), keeps physical parameters as per-env tensors in :attr:`params`, and
validates its inputs.

Subclasses write the task once on batched tensors by filling in four hooks:

* ``_reset_idx(env_ids)``: put the given envs in a fresh initial state (draw from ``self.rng``).
* ``_step_sim(actions)``: advance every env by one control step; ``actions`` are clipped to [-1, 1].
* ``_observe(env_ids)``: observation dict for the given rows (``None`` = all envs).
* ``_evaluate()``: ``(reward, terminated, reward_terms, episode_flags)`` after a step.

``_observation_layout()`` names the parts of each observation group (:attr:`observation_layout`).
Two optional hooks serve evaluation tools: ``_metrics()`` (per-env diagnostics of the step, such as
tracking error or peak contact force, returned in ``info["metrics"]``) and the class table
``PERTURBATIONS`` (which sim-to-real perturbation kinds the task supports and which ``params``
they act on; see :mod:`rlkd.sim2real.suites`).
"""

from __future__ import annotations

import abc
from typing import Any, Callable

import numpy as np
import torch
from gymnasium import spaces

from rlkd.core.device import normalize_device
from rlkd.core.rng import BatchRNG

Obs = dict[str, torch.Tensor]


class BatchedEnv(abc.ABC):
    """Base class of all rlkd tasks.

    Attributes:
        num_envs: number of simulated copies.
        device: torch device holding every tensor of the env.
        cfg: the task's config dataclass (defaults plus overrides).
        observation_spaces: per-group gymnasium Box of one env's observation.
        action_space: per-env Box ``[-1, 1]^act_dim``.
        params: per-env physical parameters, ``name -> Tensor(num_envs, ...)``; writing into these
            tensors changes the simulation from the next step on (domain randomisation, sim-to-real
            perturbations) without rebuilding anything.
        max_episode_length: control steps before truncation.
        episode_length_buf: ``(num_envs,)`` int64, steps taken in the current episode.
        rng: per-env random streams (:class:`BatchRNG`).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}
    #: registry id, filled in by :func:`rlkd.make`.
    spec_id: str = ""

    observation_spaces: dict[str, spaces.Box]
    action_space: spaces.Box
    #: Sim-to-real perturbation kinds the task supports: ``kind -> ((param, op), ...)`` where
    #: ``op`` is one of :data:`rlkd.sim2real.suites.OPS` (e.g. ``"mass": (("lin_acc", "divide"),)``).
    PERTURBATIONS: dict[str, tuple[tuple[str, str], ...]] = {}
    #: Columns of :meth:`get_state` / :meth:`set_state`: the measured state a robot's log
    #: records (empty for tasks without state access).
    STATE_NAMES: tuple[str, ...] = ()
    #: Registry id of an independent-physics twin of this task (sim-to-real evaluation), if any.
    TWIN_ID: str | None = None
    #: ``_metrics`` entries reports show, with their per-episode aggregate (``"mean"``,
    #: ``"min"`` or ``"max"``), e.g. ``{"tracking_error": "mean", "contact_force": "max"}``.
    REPORT_METRICS: dict[str, str] = {}
    #: Torch intra-op threads while :meth:`step` runs on CPU (``None``: leave torch's setting).
    #: Tasks whose simulator steps on its own native thread pool over every core set 1: torch's
    #: OpenMP workers would otherwise spin between ops against that pool (measured on the
    #: humanoid: 13% more env steps/s at 2048 envs on 2 cores).
    STEP_TORCH_THREADS: int | None = None

    def __init__(self, cfg: Any, num_envs: int = 1, device: str | torch.device = "cpu",
                 seed: int = 0, validate_actions: bool = True):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.cfg = cfg
        self.num_envs = num_envs
        # Canonical form ("cpu:0" -> cpu, "cuda" -> cuda:<current>): the action-device check in
        # step() compares against the device tensors report, which is always this form.
        self.device = normalize_device(device)
        self.validate_actions = validate_actions
        self.rng = BatchRNG(num_envs, seed, self.device)
        self.params: dict[str, torch.Tensor] = {}
        self.max_episode_length: int = int(getattr(cfg, "max_episode_steps", 1000))
        self.episode_length_buf = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._episode_return = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self._obs: Obs | None = None
        self._all_ids = torch.arange(num_envs, device=self.device)
        #: ``fn(env, env_ids)`` called before every ``_reset_idx`` (in :meth:`reset` and the
        #: autoreset of :meth:`step`): domain randomisation writes the reset envs' ``params``
        #: here (:mod:`rlkd.sim2real.randomize`), so a new episode starts under its new values.
        self.reset_hooks: list[Callable[[BatchedEnv, torch.Tensor], None]] = []

    # ------------------------------------------------------------------ hooks for subclasses
    @abc.abstractmethod
    def _reset_idx(self, env_ids: torch.Tensor) -> None:
        """Reset the state of ``env_ids`` ((M,) int64) to fresh initial states."""

    @abc.abstractmethod
    def _step_sim(self, actions: torch.Tensor) -> None:
        """Advance all envs by one control step with ``actions`` (num_envs, act_dim) in [-1, 1]."""

    @abc.abstractmethod
    def _observe(self, env_ids: torch.Tensor | None = None) -> Obs:
        """Observation groups for ``env_ids`` (all envs if ``None``), rows in that order."""

    @abc.abstractmethod
    def _evaluate(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor],
                                 dict[str, torch.Tensor]]:
        """After a step: ``reward (N,)``, ``terminated (N,) bool``, per-term rewards ``{name: (N,)}``
        and per-env episode flags reported when an episode ends (e.g. ``{"success": (N,) bool}``)."""

    def _metrics(self) -> dict[str, torch.Tensor]:
        """Per-env diagnostics of the step just taken, ``{name: (N,) float}`` in the units the
        task documents (e.g. tracking error, peak contact force); returned in ``info["metrics"]``
        and aggregated per episode (mean and max) by :mod:`rlkd.sim2real`. None by default."""
        return {}

    def _observation_layout(self) -> dict[str, dict[str, slice]]:
        """Named parts of each observation group, ``{group: {part: slice}}``, the slices indexing
        the group's per-env features flattened (``obs[g].flatten(1)[:, s]``), in order. Tasks
        override it with their real parts (Gymnasium v5's ``observation_structure``, per group),
        built from the same config numbers as the observation, and leave out a part a config
        removes (every part has at least one feature); the default names one part after each
        group."""
        return {g: {g: slice(0, int(np.prod(s.shape)))} for g, s in self.observation_spaces.items()}

    def _state_finite(self) -> torch.Tensor:
        """``(N,) bool``: False where the simulation state diverged (NaN/Inf). Override if the
        observation alone cannot reveal it."""
        assert self._obs is not None
        return torch.isfinite(self._obs["policy"]).all(dim=-1)

    # ------------------------------------------------------------------ public API
    @property
    def act_dim(self) -> int:
        return int(self.action_space.shape[0])

    @property
    def observation_layout(self) -> dict[str, dict[str, slice]]:
        """``{group: {part: slice}}``: every group of :attr:`observation_spaces` split into named,
        contiguous parts that cover its flattened features exactly (checked: a task whose layout
        leaves a gap, overlaps or misses a group raises ``ValueError`` naming it). A student
        reads "what a robot has" by part and group names, never by hard-coded indices."""
        layout = self._observation_layout()
        for g, space in self.observation_spaces.items():
            size = int(np.prod(space.shape))
            parts = layout.get(g)
            if not parts:
                raise ValueError(f"{type(self).__name__}.observation_layout misses group {g!r}")
            end = 0
            for name, sl in parts.items():
                if sl.step not in (None, 1) or sl.start != end or sl.stop is None or sl.stop <= end:
                    raise ValueError(f"{type(self).__name__}.observation_layout[{g!r}][{name!r}] "
                                     f"= {sl} does not continue the group at index {end}")
                end = sl.stop
            if end != size:
                raise ValueError(f"{type(self).__name__}.observation_layout[{g!r}] covers "
                                 f"{end} of the group's {size} features")
        extra = sorted(set(layout) - set(self.observation_spaces))
        if extra:
            raise ValueError(f"{type(self).__name__}.observation_layout names unknown groups {extra}")
        return layout

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[Obs, dict]:
        """Reset every env. ``seed`` restarts all per-env random streams (reproducible batch).

        Returns:
            ``(obs, info)``: ``obs`` maps group name to ``(num_envs, *space.shape)`` tensors.
        """
        if seed is not None:
            self.rng.reseed(seed)
        for hook in self.reset_hooks:
            hook(self, self._all_ids)
        self._reset_idx(self._all_ids)
        self.episode_length_buf.zero_()
        self._episode_return.zero_()
        self._obs = self._observe(None)
        return self._clone_obs(self._obs), {}

    def step(self, actions: torch.Tensor) -> tuple[Obs, torch.Tensor, torch.Tensor, torch.Tensor,
                                                   dict[str, Any]]:
        """Advance every env by one control step.

        Args:
            actions: ``(num_envs, act_dim)`` floating tensor on :attr:`device`, in [-1, 1]
                (values outside are clipped).

        Returns:
            ``obs, reward (N,) float32, terminated (N,) bool, truncated (N,) bool, info`` where
            ``info`` holds ``final_obs`` (dict of rows for the envs that ended, which were reset in
            this call), ``final_mask`` (N,) bool, ``episode`` (finished episodes' ``return``,
            ``length``, flags such as ``success``, and ``env_ids``), ``reward_terms``,
            ``sim_unstable`` (number of envs reset because their state diverged; when non-zero
            also ``sim_unstable_ids``, their indices) and, for tasks that define them,
            ``metrics`` (per-env diagnostics of this step).
        """
        if self._obs is None:
            raise RuntimeError(f"{type(self).__name__}.step() called before reset()")
        threads = self.STEP_TORCH_THREADS
        if threads is None or self.device.type != "cpu" or torch.get_num_threads() == threads:
            return self._step(actions)
        outer = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return self._step(actions)
        finally:
            torch.set_num_threads(outer)

    def _step(self, actions: torch.Tensor) -> tuple[Obs, torch.Tensor, torch.Tensor, torch.Tensor,
                                                    dict[str, Any]]:
        actions = self._check_actions(actions)
        self._step_sim(actions)
        self.episode_length_buf += 1
        self._obs = self._observe(None)
        reward, terminated, terms, flags = self._evaluate()
        metrics = self._metrics()

        # A diverged env must never poison the batch: end it, zero its reward, reset it.
        unstable = ~self._state_finite()
        n_unstable = int(unstable.sum())
        if n_unstable:
            reward = torch.where(unstable, torch.zeros_like(reward), reward)
            terminated = terminated | unstable
            for k, v in self._obs.items():
                self._obs[k] = torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0) \
                    if v.is_floating_point() else v

        truncated = (self.episode_length_buf >= self.max_episode_length) & ~terminated
        self._episode_return += reward
        done = terminated | truncated
        info: dict[str, Any] = {"reward_terms": terms, "sim_unstable": n_unstable,
                                "final_mask": done}
        if n_unstable:  # which envs, for per-env consumers (sim2real reports, SB3 infos)
            info["sim_unstable_ids"] = unstable.nonzero().squeeze(-1)
        if metrics:
            info["metrics"] = metrics
        done_ids = done.nonzero().squeeze(-1)
        if done_ids.numel() > 0:
            info["final_obs"] = {k: v[done_ids] for k, v in self._obs.items()}
            episode = {"return": self._episode_return[done_ids].clone(),
                       "length": self.episode_length_buf[done_ids].clone(),
                       "env_ids": done_ids}
            for name, flag in flags.items():
                episode[name] = flag[done_ids]
            episode["timeout"] = truncated[done_ids]
            info["episode"] = episode
            for hook in self.reset_hooks:
                hook(self, done_ids)
            self._reset_idx(done_ids)
            self.episode_length_buf[done_ids] = 0
            self._episode_return[done_ids] = 0.0
            fresh = self._observe(done_ids)
            for k, v in fresh.items():
                self._obs[k][done_ids] = v
        return self._clone_obs(self._obs), reward, terminated, truncated, info

    def render(self, env_ids: list[int] | torch.Tensor | None = None, **kwargs) -> np.ndarray:
        """``uint8 (H, W, 3)`` frame of the given envs (tiled when several; default env 0)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement render()")

    def close(self) -> None:
        """Release simulator resources (no-op for pure-torch tasks)."""

    def get_observations(self) -> Obs:
        """The current observation groups (the ones returned by the last reset/step)."""
        if self._obs is None:
            raise RuntimeError("get_observations() called before reset()")
        return self._clone_obs(self._obs)

    # ------------------------------------------------------------------ measured state (replay)
    def get_state(self, env_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``(M, len(STATE_NAMES))`` float32 measured state of ``env_ids`` (all if ``None``)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its state (STATE_NAMES)")

    def set_state(self, env_ids: torch.Tensor, states: torch.Tensor,
                  prev_actions: torch.Tensor | None = None) -> None:
        """Teleport ``env_ids`` ((M,) int64) to ``states`` ((M, len(STATE_NAMES))), with
        ``prev_actions`` (M, act_dim) as the last command where the observation includes it
        (default zeros). The episode goes on (its step count is kept); the current observation
        of those envs is recomputed."""
        env_ids = torch.as_tensor(env_ids, dtype=torch.int64, device=self.device).reshape(-1)
        states = torch.as_tensor(states, dtype=torch.float32, device=self.device)
        if tuple(states.shape) != (env_ids.numel(), len(self.STATE_NAMES)):
            raise ValueError(f"states have shape {tuple(states.shape)}, expected "
                             f"({env_ids.numel()}, {len(self.STATE_NAMES)}): columns "
                             f"{list(self.STATE_NAMES)}")
        if prev_actions is None:
            prev_actions = torch.zeros(env_ids.numel(), self.act_dim, device=self.device)
        self._set_state(env_ids, states, torch.as_tensor(prev_actions, dtype=torch.float32,
                                                         device=self.device))
        if self._obs is not None:
            for k, v in self._observe(env_ids).items():
                self._obs[k][env_ids] = v

    def _set_state(self, env_ids: torch.Tensor, states: torch.Tensor,
                   prev_actions: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not support set_state")

    def world_overrides(self, env_index: int) -> dict[str, Any]:
        """Config overrides that rebuild env ``env_index``'s world (layout, terrain) in a fresh
        env of any size, so a log recorded in one batch replays in another. None by default."""
        return {}

    # ------------------------------------------------------------------ state (exact resume)
    def state_dict(self) -> dict[str, Any]:
        """Every tensor attribute of the env (simulation state, ``params``, buffers), the current
        observations and the random streams, cloned. With :meth:`load_state_dict` on an env built
        with the same id, config, ``num_envs`` and seed, stepping continues bit-identically.
        Constant objects built from config and seed (layouts, tables) are not included."""
        tensors = {k: v.clone() for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return {"tensors": tensors, "params": {k: v.clone() for k, v in self.params.items()},
                "obs": None if self._obs is None else self._clone_obs(self._obs),
                "rng": self.rng.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output in place; a missing or mis-shaped entry raises
        ``ValueError`` naming it (e.g. a checkpoint taken with another ``num_envs``)."""
        for group, items in (("tensors", state["tensors"]), ("params", state["params"])):
            own = vars(self) if group == "tensors" else self.params
            for k, v in items.items():
                cur = own.get(k)
                if not isinstance(cur, torch.Tensor) or cur.shape != v.shape:
                    raise ValueError(
                        f"env state {group}.{k}: saved shape {tuple(v.shape)} does not fit this "
                        f"env ({None if cur is None else tuple(cur.shape)}); was it saved with "
                        f"another config or num_envs?")
                cur.copy_(v.to(cur.device))
        self._obs = None if state["obs"] is None else {
            k: v.to(self.device).clone() for k, v in state["obs"].items()}
        self.rng.load_state_dict(state["rng"])

    # ------------------------------------------------------------------ helpers
    def _clone_obs(self, obs: Obs) -> Obs:
        # Callers (rollout storages) keep references; hand out tensors the env will not mutate.
        return {k: v.clone() for k, v in obs.items()}

    def _check_actions(self, actions: Any) -> torch.Tensor:
        if not isinstance(actions, torch.Tensor):
            raise ValueError(
                f"actions must be a torch.Tensor of shape ({self.num_envs}, {self.act_dim}), got "
                f"{type(actions).__name__}; for numpy use the gymnasium or SB3 adapters")
        expected = (self.num_envs, self.act_dim)
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions have shape {tuple(actions.shape)}, expected {expected} "
                             f"(num_envs, act_dim)")
        if not actions.is_floating_point():
            raise ValueError(f"actions must be a floating tensor, got dtype {actions.dtype}")
        if actions.device != self.device:
            raise ValueError(f"actions are on {actions.device}, the env is on {self.device}")
        if self.validate_actions and not bool(torch.isfinite(actions).all()):
            bad = (~torch.isfinite(actions)).any(dim=-1).nonzero().squeeze(-1)
            raise ValueError(f"actions contain NaN/Inf for env ids {bad[:10].tolist()}"
                             f"{' ...' if bad.numel() > 10 else ''}")
        return actions.to(torch.float32).clamp(-1.0, 1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.spec_id!r}, num_envs={self.num_envs}, device={self.device})"
