"""Env registry: ``rlkd.make`` / ``rlkd.list_envs`` and the matching gymnasium registrations.

The registry knows no task by itself (``rlkd.core`` imports no task package): tasks arrive by
:func:`register`, and packages that provide tasks install a *loader* with
:func:`register_loader` (a module to import, or a callable), run once before the next lookup
(:func:`spec`, :func:`list_envs`, :func:`make`).
The top-level ``rlkd`` package installs the loader of the built-in tasks (``rlkd.envs``).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from rlkd.core.config import apply_overrides

NAMESPACE = "rlkd"


@dataclass(frozen=True)
class EnvSpec:
    """One registered task.

    Attributes:
        id: versioned id without namespace, e.g. ``"AGVWarehouse-v0"``.
        entry_point: ``"module:Class"`` of the :class:`~rlkd.core.env.BatchedEnv` subclass.
        config_factory: builds the task's default config dataclass.
        overrides: config overrides baked into this id (presets).
        description: one line for ``rlkd list``.
    """

    id: str
    entry_point: str
    config_factory: Callable[[], Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def default_config(self) -> Any:
        return apply_overrides(self.config_factory(), self.overrides, owner=self.id)

    def load_class(self) -> type:
        module, _, name = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), name)


_REGISTRY: dict[str, EnvSpec] = {}
#: Loaders not run yet, in installation order (see :func:`register_loader`).
_PENDING_LOADERS: list[str | Callable[[], object]] = []


def _strip_namespace(env_id: str) -> str:
    if not isinstance(env_id, str):
        raise TypeError(f"env id must be a string, got {type(env_id).__name__}")
    return env_id[len(NAMESPACE) + 1:] if env_id.startswith(NAMESPACE + "/") else env_id


def register(env_id: str, entry_point: str, config_factory: Callable[[], Any],
             overrides: dict[str, Any] | None = None, description: str = "") -> EnvSpec:
    """Register a task under ``env_id`` (and ``rlkd/<env_id>`` in gymnasium)."""
    env_id = _strip_namespace(env_id)
    if env_id in _REGISTRY:
        raise ValueError(f"env id {env_id!r} is already registered")
    spec = EnvSpec(env_id, entry_point, config_factory, dict(overrides or {}), description)
    _REGISTRY[env_id] = spec
    _register_gymnasium(env_id)
    return spec


def register_loader(loader: str | Callable[[], object]) -> None:
    """Install a loader of tasks, run once before the next lookup (:func:`spec`,
    :func:`list_envs`, :func:`make`).

    Args:
        loader: a module name to import (a package whose import calls :func:`register`, e.g.
            ``"rlkd.envs"``), or a no-argument callable that registers tasks.

    This keeps ``rlkd.core`` free of task imports while lookups still find every task of the
    packages that installed a loader, and lets a plugin defer importing its tasks until an id
    is looked up. A loader that raises stays installed and is tried again at the next lookup.
    """
    if not (isinstance(loader, str) or callable(loader)):
        raise TypeError(f"loader must be a module name or a callable, got {type(loader).__name__}")
    _PENDING_LOADERS.append(loader)


def _run_loaders() -> None:
    # Pop before running: a loader that looks ids up itself must not run again (recursion).
    while _PENDING_LOADERS:
        loader = _PENDING_LOADERS.pop(0)
        try:
            importlib.import_module(loader) if isinstance(loader, str) else loader()
        except BaseException:
            _PENDING_LOADERS.insert(0, loader)
            raise


def _default_episode_steps(env_id: str) -> int | None:
    """The task's default ``max_episode_steps`` (its config, presets applied), if it has one."""
    try:
        steps = getattr(_REGISTRY[env_id].default_config(), "max_episode_steps", None)
    except Exception:  # a config that cannot be built here is reported by rlkd.make, not here
        return None
    return int(steps) if isinstance(steps, int) and steps > 0 else None


def _register_gymnasium(env_id: str) -> None:
    """Register ``rlkd/<env_id>`` in gymnasium (single and vector entry points).

    ``max_episode_steps`` is the task's own default, so ``spec.max_episode_steps`` is right and
    gymnasium's ``TimeLimit`` (added by ``gymnasium.make``) fires on the very step the task
    truncates itself, never earlier. ``gymnasium.make_vec`` passes it to the vector entry point
    as the task's config field of the same name (``make_vec(..., max_episode_steps=T)``
    changes the task's limit); ``gymnasium.make(..., max_episode_steps=T)`` only sets the
    ``TimeLimit`` (gymnasium consumes the keyword): below the default it truncates first, above
    it the task still ends episodes at its default (see README, "gymnasium").
    """
    import gymnasium

    gym_id = f"{NAMESPACE}/{env_id}"
    if gym_id in gymnasium.registry:
        return
    gymnasium.register(
        id=gym_id,
        entry_point="rlkd.adapters.gymnasium_env:make_single",
        vector_entry_point="rlkd.adapters.gymnasium_env:make_vector",
        kwargs={"env_id": env_id},
        max_episode_steps=_default_episode_steps(env_id),
        disable_env_checker=False,
    )


def spec(env_id: str) -> EnvSpec:
    """The :class:`EnvSpec` of ``env_id`` (with or without the ``rlkd/`` prefix)."""
    _run_loaders()
    key = _strip_namespace(env_id)
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"unknown env id {env_id!r}.{hint} Registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def list_envs() -> list[str]:
    """Sorted ids of every registered task."""
    _run_loaders()
    return sorted(_REGISTRY)


def make(env_id: str, num_envs: int = 1, device: str = "cpu", seed: int = 0,
         validate_actions: bool = True, **overrides: Any):
    """Create ``num_envs`` batched copies of task ``env_id`` on ``device``.

    ``overrides`` replace fields of the task's config dataclass; an unknown key raises ``KeyError``
    naming it. The env is not reset: call ``env.reset(seed=...)`` first.
    """
    s = spec(env_id)
    cfg = apply_overrides(s.default_config(), overrides, owner=s.id)
    env = s.load_class()(cfg, num_envs=num_envs, device=device, seed=seed,
                         validate_actions=validate_actions)
    env.spec_id = s.id
    return env


def config_fields(env_id: str) -> dict[str, Any]:
    """Default config values of ``env_id`` as a dict."""
    return dataclasses.asdict(spec(env_id).default_config())
