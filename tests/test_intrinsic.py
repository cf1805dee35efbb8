"""RND and RDD intrinsic rewards: novelty, decay with visits, RDD's pseudo-count term."""

import pytest
import torch

from rlkd.agents.rdd import RDD, RDDConfig
from rlkd.agents.rnd import RND, RNDConfig


def _states(n, dim=8, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cls,cfg", [(RND, RNDConfig), (RDD, RDDConfig)])
def test_reward_high_on_novel_states_and_decays_on_repeated(cls, cfg):
    torch.manual_seed(0)
    mod = cls(8, num_envs=4, cfg=cfg(learning_rate=1e-3, update_proportion=1.0), seed=0)
    seen, novel = _states(16, seed=1), _states(16, seed=2) + 3.0
    mod.obs_norm.update(torch.cat([seen, novel]))  # fixed normalization for the toy stream
    r_seen0, r_novel0 = mod.reward(seen).mean(), mod.reward(novel).mean()
    for _ in range(400):  # a stream that keeps revisiting `seen`
        mod.train_step(seen)
    r_seen, r_novel = mod.reward(seen).mean(), mod.reward(novel).mean()
    assert r_seen < 0.25 * r_seen0, (r_seen, r_seen0)
    assert r_novel > 3.0 * r_seen, (r_novel, r_seen)
    assert r_novel > 0.3 * r_novel0  # unseen states keep most of their bonus


def test_rdd_training_targets_are_fresh_normal_samples_around_g():
    mod = RDD(8, num_envs=1, cfg=RDDConfig(sigma=0.5, embed_dim=32), seed=0)
    x = _states(1).repeat(20000, 1)
    t = mod.training_target(x)
    g = mod.target(x[:1])
    assert torch.allclose(t.mean(0), g[0], atol=0.02)
    assert t.std(0).mean().item() == pytest.approx(0.5, rel=0.05)
    assert not torch.equal(mod.training_target(x[:1]), mod.training_target(x[:1]))


def test_rdd_reward_follows_pseudo_count_once_predictor_fits_its_samples():
    """With the discrepancy at zero (the predictor equals the mean of the n targets it has
    regressed, the least-squares fit), E r_i(s) = sigma^2 k / n: a count-based decay."""
    sigma, k, n_states = 0.7, 16, 400
    mod = RDD(8, num_envs=1, cfg=RDDConfig(sigma=sigma, embed_dim=k), seed=0)
    states = _states(n_states, seed=3)
    g = mod.target(states)
    for n in (1, 4, 16, 64):
        draws = torch.stack([mod.training_target(states) for _ in range(n)])  # (n, S, k)
        fitted = draws.mean(0)  # least-squares predictor output after n visits
        reward = (fitted - g).pow(2).sum(-1).mean().item()
        expected = RDD.pseudo_count_term(n, sigma, k)
        assert reward == pytest.approx(expected, rel=0.12), (n, reward, expected)


def test_rdd_bonus_ordered_by_visit_count_under_sgd():
    torch.manual_seed(0)
    mod = RDD(8, num_envs=1, cfg=RDDConfig(learning_rate=1e-3, update_proportion=1.0,
                                           sigma=0.5), seed=0)
    often, rare, never = _states(8, seed=4), _states(8, seed=5), _states(8, seed=6)
    mod.obs_norm.update(torch.cat([often, rare, never]))
    for i in range(300):
        mod.train_step(often if i % 10 else torch.cat([often, rare]))
    r = [mod.reward(s).mean().item() for s in (often, rare, never)]
    assert r[0] < r[1] < r[2], r


def test_intrinsic_return_normalization_uses_discounted_return_std():
    mod = RND(4, num_envs=3, cfg=RNDConfig(gamma_int=0.9), seed=0)
    raw = torch.full((5, 3), 2.0)
    scaled = mod.normalize_rewards(raw)
    rets = torch.tensor([2.0 * sum(0.9 ** i for i in range(t + 1)) for t in range(5)])
    assert torch.allclose(scaled, raw / rets.double().var(unbiased=False).sqrt().float(),
                          rtol=1e-4)


def test_int_coef_schedules():
    mod = RND(4, 1, RNDConfig(int_coef=1.0, int_coef_schedule="linear", int_coef_final=0.0,
                              schedule_steps=100), seed=0)
    mod.env_steps = 50
    assert mod.int_coef == pytest.approx(0.5)
    mod.cfg.int_coef_schedule = "step"
    assert mod.int_coef == 1.0
    mod.env_steps = 100
    assert mod.int_coef == 0.0
    mod.cfg.int_coef_schedule = "bogus"
    with pytest.raises(ValueError, match="bogus"):
        mod.int_coef
