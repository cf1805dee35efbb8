"""Population evaluation and QD tasks: a batch of P policies equals each policy alone; tasks'
rewards, bounds and normalization (rlkd.qd.population, rlkd.qd.tasks)."""

from __future__ import annotations

import pytest
import torch

from rlkd.qd import PolicyShape, evaluate_population, get_task, population_forward
from rlkd.qd.tasks import QD_TASKS


# One torch thread: exact comparisons (batched vs alone, resume) and timings in these tests.
pytestmark = pytest.mark.usefixtures("one_thread")


def _shape(env, hidden=(16, 16)):
    return PolicyShape(env.observation_spaces["policy"].shape[0], hidden, env.act_dim)


def test_population_forward_matches_each_policy_alone():
    shape = PolicyShape(5, (7, 3), 2, activation="tanh")
    params = shape.init(4, torch.Generator().manual_seed(0))
    params[:, -2:] = torch.randn(4, 2)  # non-zero output biases
    obs = torch.randn(4, 5)
    batched = population_forward(shape, params, obs)
    for i in range(4):
        x = obs[i]
        for k, (w, b) in enumerate(shape.unflatten(params[i:i + 1])):
            x = x @ w[0] + b[0]
            x = torch.tanh(x)  # hidden tanh and output tanh
        torch.testing.assert_close(batched[i], x, rtol=0, atol=1e-6)
    assert shape.flatten(shape.unflatten(params)).equal(params)
    with pytest.raises(ValueError, match=r"expected \(P, "):
        shape.unflatten(params[:, :-1])


@pytest.mark.parametrize("name", sorted(QD_TASKS))
def test_64_policies_in_one_batch_equal_each_alone(name):
    task = get_task(name)
    env = task.make_env(64)
    shape = _shape(env)
    params = shape.init(64, torch.Generator().manual_seed(1))
    res = evaluate_population(task, env, shape, params)
    alone_env = task.make_env(1)
    for i in range(64):
        one = evaluate_population(task, alone_env, shape, params[i:i + 1], keep_transitions=False)
        torch.testing.assert_close(one.fitness, res.fitness[i:i + 1], rtol=0, atol=1e-5)
        torch.testing.assert_close(one.descriptor, res.descriptor[i:i + 1], rtol=0, atol=1e-5)
        assert int(one.length) == int(res.length[i])
    # Policies differ, so results do (the test would pass trivially if every env ignored them).
    assert res.descriptor.std(dim=0).min() > 0


@pytest.mark.parametrize("name", sorted(QD_TASKS))
def test_task_results_are_in_bounds_and_rewards_nonnegative(name):
    task = get_task(name)
    env = task.make_env(32)
    shape = _shape(env)
    res = evaluate_population(task, env, shape, shape.init(32, torch.Generator().manual_seed(2)))
    assert (res.rewards >= 0).all()
    assert (res.rewards[~res.valid] == 0).all()
    assert (res.fitness >= task.fitness_low).all()
    d = task.normalize(res.descriptor)
    assert (d.abs() <= 1).all()
    torch.testing.assert_close(task.denormalize(d), res.descriptor)
    # Transitions: valid steps only, one episode end per policy at most, lengths add up.
    tr = res.transitions()
    assert tr["obs"].shape[0] == int(res.length.sum()) == int(res.valid.sum())
    assert (res.dones.sum(dim=0) <= 1).all()
    assert (res.length >= 1).all() and (res.length <= task.episode_steps).all()


def test_same_start_for_every_env_and_every_evaluation():
    task = get_task("AGVOmni-v0")
    env = task.make_env(8)
    obs = task.reset(env)
    assert (obs == obs[0]).all()
    state = env.get_state()
    torch.testing.assert_close(state[:, :3], torch.tensor(task.start).expand(8, 3))
    shape = _shape(env)
    p = shape.init(8, torch.Generator().manual_seed(3))
    a, b = evaluate_population(task, env, shape, p), evaluate_population(task, env, shape, p)
    assert a.fitness.equal(b.fitness) and a.descriptor.equal(b.descriptor)


def test_omni_standing_still_is_the_best_fitness():
    task = get_task("AGVOmni-v0")
    env = task.make_env(2)
    shape = _shape(env)
    p = torch.zeros(2, shape.num_params)  # zero weights: zero actions
    res = evaluate_population(task, env, shape, p)
    torch.testing.assert_close(res.fitness, torch.zeros(2))
    torch.testing.assert_close(res.descriptor, torch.tensor([task.start[:2]] * 2))
    assert int(res.length[0]) == task.episode_steps


def test_unknown_task_names_the_known_ones():
    with pytest.raises(KeyError, match="AGVOmni-v0"):
        get_task("AGVOmny-v0")


def test_env_batch_must_match_the_population():
    task = get_task("AGVOmni-v0")
    env = task.make_env(4)
    shape = _shape(env)
    with pytest.raises(ValueError, match="task.make_env"):
        evaluate_population(task, env, shape, shape.init(3, torch.Generator()))


def test_action_noise_probe_is_seeded_bounded_and_off_by_default():
    """action_noise=0 is the plain evaluation; > 0 is reproducible per seed, moves the
    descriptors, differs across seeds, and keeps executed actions in [-1, 1]."""
    task = get_task("AGVOmni-v0")
    env = task.make_env(6)
    shape = _shape(env, (8,))
    p = shape.init(6, torch.Generator().manual_seed(3))
    plain = evaluate_population(task, env, shape, p)
    zero = evaluate_population(task, env, shape, p, action_noise=0.0, noise_seed=5)
    assert torch.equal(plain.descriptor, zero.descriptor)
    a = evaluate_population(task, env, shape, p, action_noise=0.3, noise_seed=1)
    b = evaluate_population(task, env, shape, p, action_noise=0.3, noise_seed=1)
    c = evaluate_population(task, env, shape, p, action_noise=0.3, noise_seed=2)
    assert torch.equal(a.descriptor, b.descriptor)
    assert not torch.allclose(a.descriptor, plain.descriptor)
    assert not torch.allclose(a.descriptor, c.descriptor)
    assert float(a.actions[a.valid].abs().max()) <= 1.0
    with pytest.raises(ValueError, match="action_noise"):
        evaluate_population(task, env, shape, p, action_noise=-0.1)
