"""Registry-wide contract checks: every id in ``rlkd.list_envs()`` is created, reset and stepped,
and passes the gymnasium and Stable-Baselines3 env checkers. New tasks are covered without new
test code (after MuJoCo Playground's registry-wide test)."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

import rlkd
from rlkd.core.registry import config_fields

ENV_IDS = rlkd.list_envs()
N = 4


def cheap(env_id: str) -> dict:
    """Overrides that only make construction cheaper, applied where the task's config has them.

    ``num_layouts=1``: the AGV tasks precompute a lidar range table per warehouse layout (seconds
    for the large presets); one layout keeps every construction here on one cached build.
    """
    fields = config_fields(env_id)
    return {k: v for k, v in {"num_layouts": 1}.items() if k in fields}


def test_registry_lists_the_agv_tasks():
    assert "AGVWarehouse-v0" in ENV_IDS
    assert ENV_IDS == sorted(ENV_IDS) and len(set(ENV_IDS)) == len(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spec_and_gymnasium_registration(env_id):
    s = rlkd.spec(env_id)
    assert s.id == env_id
    assert rlkd.spec(f"rlkd/{env_id}") is s  # namespaced gymnasium id resolves too
    assert s.description
    assert f"rlkd/{env_id}" in gymnasium.registry


def _check_obs(env, obs, n):
    assert set(obs) == set(env.observation_spaces)
    assert "policy" in obs
    for group, space in env.observation_spaces.items():
        t = obs[group]
        assert isinstance(t, torch.Tensor), group
        assert tuple(t.shape) == (n, *space.shape), group
        assert t.dtype == getattr(torch, np.dtype(space.dtype).name), group
        assert t.device == env.device
        if t.is_floating_point():
            assert torch.isfinite(t).all(), f"non-finite values in obs[{group!r}]"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_reset_step_random(env_id):
    env = rlkd.make(env_id, num_envs=N, seed=0, **cheap(env_id))
    assert env.num_envs == N and env.spec_id == env_id
    assert isinstance(env.action_space, spaces.Box)
    assert env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    for space in env.observation_spaces.values():
        assert isinstance(space, spaces.Box)

    obs, info = env.reset(seed=0)
    assert isinstance(info, dict)
    _check_obs(env, obs, N)

    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        act = torch.rand(N, env.act_dim, generator=gen) * 2 - 1
        obs, rew, term, trunc, info = env.step(act)
        _check_obs(env, obs, N)
        assert rew.shape == (N,) and rew.dtype == torch.float32
        assert torch.isfinite(rew).all()
        assert term.shape == (N,) and term.dtype == torch.bool
        assert trunc.shape == (N,) and trunc.dtype == torch.bool
        assert not (term & trunc).any(), "an env is both terminated and truncated"
        assert torch.equal(info["final_mask"], term | trunc)
        if "final_obs" in info:
            k = int((term | trunc).sum())
            for group, space in env.observation_spaces.items():
                assert tuple(info["final_obs"][group].shape) == (k, *space.shape)
        assert int(info["sim_unstable"]) == 0
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_observation_layout_names_every_feature(env_id):
    """``env.observation_layout`` validates (contiguous named parts covering each group exactly)
    and every part, cut from a reset observation, has its width and finite values."""
    env = rlkd.make(env_id, num_envs=N, seed=0, **cheap(env_id))
    layout = env.observation_layout  # raises ValueError on a gap, overlap or missing group
    assert set(layout) == set(env.observation_spaces)
    obs, _ = env.reset(seed=0)
    for group, parts in layout.items():
        flat = obs[group].flatten(1)
        assert parts, group
        for name, sl in parts.items():
            part = flat[:, sl]
            assert part.shape == (N, sl.stop - sl.start) and part.shape[1] > 0, (group, name)
            assert torch.isfinite(part.float()).all(), f"non-finite {group}[{name!r}]"
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_and_sb3_check_env(env_id):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gymnasium.make(f"rlkd/{env_id}", **cheap(env_id))
    with warnings.catch_warnings():
        # Unbounded observation Boxes are intended (ranges, velocities); the checkers warn about them.
        warnings.filterwarnings("ignore", message=".*infinity.*")
        warnings.filterwarnings("ignore", message=".*unconventional shape.*")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_make_vec(env_id):
    envs = gymnasium.make_vec(f"rlkd/{env_id}", num_envs=N, **cheap(env_id))
    assert envs.num_envs == N
    obs, info = envs.reset(seed=0)
    assert obs.shape == (N, *envs.single_observation_space.shape)
    assert obs.dtype == envs.single_observation_space.dtype
    assert envs.observation_space.contains(obs)
    rng = np.random.default_rng(0)
    for _ in range(10):
        act = rng.uniform(-1, 1, envs.action_space.shape).astype(np.float32)
        obs, rew, term, trunc, info = envs.step(act)
        assert obs.shape == (N, *envs.single_observation_space.shape)
        assert np.isfinite(obs).all()
        assert rew.shape == (N,) and np.isfinite(rew).all()
        assert term.shape == (N,) and term.dtype == np.bool_
        assert trunc.shape == (N,) and trunc.dtype == np.bool_
    envs.close()
