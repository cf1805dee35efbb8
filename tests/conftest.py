"""Shared helpers for the rlkd test suite.

Building an AGV env generates its warehouse layouts and precomputes a lidar range table per
layout (0.2-2 s each on this machine, more when the cores are busy). Both are cached per process,
keyed by the layout parameters, the number of layouts (the largest divisor of ``num_envs`` up to
``num_layouts``) and ``layout_seed`` (the env seed unless given). The tests therefore pin
``num_layouts`` and ``layout_seed`` (:data:`FAST`) so that most envs share a few cached builds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rlkd

#: Default task of the tests that need one concrete env.
AGV = "AGVWarehouse-v0"
#: Cheapest preset (small map, no moving obstacles).
AGV_SIMPLE = "AGVWarehouse-SimpleStatic-v0"
#: Overrides that keep AGV construction on a cached layout build (see the module docstring).
FAST = {"num_layouts": 2, "layout_seed": 0}


def random_actions(env, gen: torch.Generator) -> torch.Tensor:
    """Uniform actions in [-1, 1] for every env of ``env`` from ``gen``."""
    return torch.rand(env.num_envs, env.act_dim, generator=gen, device=env.device) * 2 - 1


def zero_actions(env) -> torch.Tensor:
    return torch.zeros(env.num_envs, env.act_dim, device=env.device)


def make_tactile(n: int, **kw):
    """``TactilePegInsertion-v0`` with ``n`` envs on one MuJoCo thread, reset at seed 0."""
    import rlkd

    env = rlkd.make("TactilePegInsertion-v0", num_envs=n, seed=0, num_threads=1, **kw)
    env.reset(seed=0)
    return env


def hold_still(env, steps: int = 10):
    """Step ``env`` ``steps`` times with zero actions; the last observation."""
    for _ in range(steps):
        obs, *_ = env.step(zero_actions(env))
    return obs


@pytest.fixture
def one_thread():
    """Torch on one intra-op thread for the test (float results independent of the thread
    count), restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded torch generator for actions."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def agv_env():
    """``AGVWarehouse-v0`` with 8 envs on 2 layouts, reset with seed 0."""
    env = rlkd.make(AGV, num_envs=8, seed=0, **FAST)
    env.reset(seed=0)
    return env


# ---------------------------------------------------------------------------- humanoid motions
#: The real mocap clip the motion tests retarget (CMU 131_01, a walk; see tests/data/mocap).
CMU_BVH = Path(__file__).resolve().parent / "data" / "mocap" / "cmu" / "131_01.bvh"


@pytest.fixture(scope="module")
def skel():
    """The humanoid's :class:`Skeleton`, compiled from its MJCF."""
    from rlkd.envs.humanoid.skeleton import Skeleton

    return Skeleton.from_mjcf()


@pytest.fixture(scope="module")
def cmu(skel):
    """``(source, retargeted clip, retarget report)`` of :data:`CMU_BVH`."""
    from rlkd.envs.humanoid.motions import load_bvh, retarget

    src = load_bvh(CMU_BVH)
    clip, report = retarget(src, skel)
    return src, clip, report


@pytest.fixture(scope="module")
def walk(skel):
    """The procedural walk clip."""
    from rlkd.envs.humanoid.motions import procedural_clip

    return procedural_clip("walk", skel)
