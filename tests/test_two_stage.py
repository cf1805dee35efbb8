"""The two-stage vision baseline (agents/two_stage.py): with a perfect stage 1 it is exactly the
expert acting through the env's ``teacher`` group and ``to_absolute``; it never reads the
reference at run time; stage 1 fits."""

from __future__ import annotations

import pytest
import torch

import rlkd
from rlkd.agents.two_stage import TwoStageConfig, TwoStagePolicy, collect, fit
from rlkd.policies import load_policy


@pytest.fixture(scope="module")
def expert():
    return load_policy("expert:humanoid-walk")


def test_a_perfect_regressor_makes_it_the_expert_exactly(expert):
    env = rlkd.make("HumanoidMotion-v0", num_envs=4, seed=0, vision="rays")
    obs, _ = env.reset(seed=0)
    pol = TwoStagePolicy(env, expert, regressor=None)
    for _ in range(40):
        pol.regressor = lambda x, o=obs: o["reference"]  # an oracle stage 1
        a = pol({"student": obs["student"], "proprio": obs["proprio"]})  # no reference given
        want = env.to_absolute(expert({"policy": obs["teacher"]}), "residual")
        assert torch.allclose(a, want, atol=1e-5)
        obs, *_ = env.step(a)
    env.close()


def test_stage_one_fits_and_the_policy_runs_on_student_and_proprio_only(expert):
    env = rlkd.make("HumanoidMotion-v0", num_envs=16, seed=0, vision="rays")
    x, y = collect(env, expert, 800)
    assert x.shape == (800, env.observation_spaces["student"].shape[0])
    assert y.shape == (800, env.observation_spaces["reference"].shape[0])
    model, stats = fit(x, y, TwoStageConfig(epochs=40, minibatch_size=256, hidden=(64,)))
    assert stats["train_mse"] < 0.5 and stats["val_mse"] < 1.0  # normalized units (1: the mean)
    pol = TwoStagePolicy(env, expert, model)
    obs, _ = env.reset(seed=1)
    a = pol({"student": obs["student"], "proprio": obs["proprio"]})
    assert a.shape == (16, env.act_dim) and a.abs().max() <= 1
    with pytest.raises(ValueError, match="camera"):
        collect(rlkd.make("HumanoidMotion-v0", num_envs=1), expert, 4)
    env.close()
