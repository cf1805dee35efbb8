"""PPO math: GAE against a hand-computed example, truncation bootstrapping, losses and KL."""

import math

import pytest
import torch

import rlkd
from rlkd.agents.ppo import (PPO, PPOConfig, compute_gae, gaussian_entropy, gaussian_kl,
                             gaussian_log_prob)


def test_gae_matches_hand_computed_example():
    # T=3, N=1, two streams: episodic (done after step 1) and non-episodic.
    r = torch.tensor([1.0, 0.0, 2.0]).view(3, 1, 1).repeat(1, 1, 2)
    v = torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1).repeat(1, 1, 2)
    last = torch.tensor([[0.2, 0.2]])
    dones = torch.tensor([0.0, 1.0, 0.0]).view(3, 1)
    adv, ret = compute_gae(r, v, last, dones, torch.tensor([0.9, 0.9]), 0.8,
                           torch.tensor([True, False]))
    # episodic: A2 = 2 + .9*.2 - .3 = 1.88; A1 = 0 - .4 (episode ends); A0 = .86 + .72*(-.4)
    assert adv[:, 0, 0].tolist() == pytest.approx([0.572, -0.4, 1.88], abs=1e-6)
    # non-episodic: A1 = (0 + .9*.3 - .4) + .72*1.88; A0 = .86 + .72*A1
    a1 = -0.13 + 0.72 * 1.88
    assert adv[:, 0, 1].tolist() == pytest.approx([0.86 + 0.72 * a1, a1, 1.88], abs=1e-6)
    assert torch.allclose(ret, adv + v)


def test_gaussian_helpers_match_torch_distributions():
    mu, sigma = torch.randn(5, 3), torch.rand(5, 3) + 0.1
    a = torch.randn(5, 3)
    d = torch.distributions.Normal(mu, sigma)
    assert torch.allclose(gaussian_log_prob(a, mu, sigma), d.log_prob(a).sum(-1), atol=1e-5)
    assert torch.allclose(gaussian_entropy(sigma), d.entropy().sum(-1), atol=1e-5)
    mu2, s2 = torch.randn(5, 3), torch.rand(5, 3) + 0.1
    ref = torch.distributions.kl_divergence(d, torch.distributions.Normal(mu2, s2)).sum(-1)
    assert torch.allclose(gaussian_kl(mu, sigma, mu2, s2), ref, atol=1e-5)


def test_truncation_bootstraps_from_final_obs():
    env = rlkd.make("AGVWarehouse-v0", num_envs=8, seed=1, max_episode_steps=5, num_obstacles=0)
    cfg = PPOConfig(num_steps=5)
    alg = PPO(env, cfg, seed=0)
    obs, _ = env.reset(seed=1)
    for t in range(5):
        alg.act(obs)
        # zero actions: the robots stand still, so every episode times out at step 5
        obs, reward, term, trunc, info = env.step(torch.zeros(8, 2))
        alg.process_env_step(obs, reward, term, trunc, info)
        if t < 4:
            assert not trunc.any()
    assert trunc.all() and not term.any()
    with torch.no_grad():
        v_final = alg.policy.value(info["final_obs"])[:, 0]
        v_reset = alg.policy.value(obs)[:, 0]
    stored = alg.storage.rewards[4, :, 0]
    assert torch.allclose(stored, reward + cfg.gamma * v_final[info["episode"]["env_ids"]
                                                               .argsort()], atol=1e-6)
    assert not torch.allclose(v_final, v_reset)  # the reset obs would be the wrong bootstrap
    assert alg.storage.dones[4].eq(1).all()


def test_terminated_envs_are_not_bootstrapped():
    env = rlkd.make("AGVWarehouse-v0", num_envs=4, seed=0, num_obstacles=0)
    alg = PPO(env, PPOConfig(num_steps=200), seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(200):  # full speed ahead: robots hit shelves or walls
        alg.act(obs)
        obs, reward, term, trunc, info = env.step(torch.tensor([[1.0, 0.0]] * 4))
        alg.process_env_step(obs, reward, term, trunc, info)
        if term.any():
            t = alg.storage.step - 1
            assert torch.equal(alg.storage.rewards[t, :, 0], reward)
            return
    pytest.fail("no episode terminated")


def test_update_reduces_loss_and_adapts_lr():
    env = rlkd.make("AGVWarehouse-v0", num_envs=16, seed=0)
    alg = PPO(env, PPOConfig(num_steps=16, desired_kl=1e-6), seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(16):
        a = alg.act(obs)
        obs, r, te, tr, info = env.step(a)
        alg.process_env_step(obs, r, te, tr, info)
    alg.compute_returns(obs)
    lr0 = alg.learning_rate
    out = alg.update()
    assert math.isfinite(out["losses/value_loss"]) and out["losses/approx_kl"] >= 0
    assert alg.learning_rate < lr0  # KL far above a tiny target: lr shrinks by 1.5 per step
    assert alg.storage.step == 0


def test_bad_actor_group_is_named():
    env = rlkd.make("AGVWarehouse-v0", num_envs=2)
    with pytest.raises(KeyError, match="nope"):
        PPO(env, PPOConfig(actor_groups=("nope",)))


def _filled(cfg: PPOConfig, num_envs: int = 16):
    env = rlkd.make("AGVWarehouse-v0", num_envs=num_envs, seed=0)
    torch.manual_seed(0)
    alg = PPO(env, cfg, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(cfg.num_steps):
        a = alg.act(obs)
        obs, r, te, tr, info = env.step(a)
        alg.process_env_step(obs, r, te, tr, info)
    alg.compute_returns(obs)
    return alg


def test_rollout_scope_normalizes_advantages_over_the_whole_rollout(monkeypatch):
    import rlkd.agents.ppo as ppo_mod

    seen = []
    real = ppo_mod.clipped_surrogate
    monkeypatch.setattr(ppo_mod, "clipped_surrogate",
                        lambda adv, ratio, cfg: (seen.append(adv.detach()), real(adv, ratio, cfg))[1])
    alg = _filled(PPOConfig(num_steps=16, num_minibatches=4, num_epochs=1,
                            advantage_norm_scope="rollout"))
    raw = alg.storage.advantages[..., 0].flatten()
    alg.update()
    adv = torch.cat(seen)
    assert len(seen) == 4 and adv.numel() == raw.numel()
    assert abs(adv.mean().item()) < 1e-5 and adv.std(unbiased=False).item() == pytest.approx(1, abs=1e-4)
    # Each minibatch keeps the rollout's statistics: not re-centred on its own mean.
    assert max(abs(a.mean().item()) for a in seen) > 1e-3
    # The sorted values are the rollout's advantages, affinely mapped.
    expect = (raw - raw.mean()) / raw.std(unbiased=False)
    torch.testing.assert_close(adv.sort().values, expect.sort().values, atol=1e-4, rtol=1e-4)


def test_minibatch_scope_passes_raw_advantages_to_the_surrogate(monkeypatch):
    import rlkd.agents.ppo as ppo_mod

    seen = []
    real = ppo_mod.clipped_surrogate
    monkeypatch.setattr(ppo_mod, "clipped_surrogate",
                        lambda adv, ratio, cfg: (seen.append(adv.detach()), real(adv, ratio, cfg))[1])
    alg = _filled(PPOConfig(num_steps=16, num_minibatches=2, num_epochs=1))
    raw = alg.storage.advantages[..., 0].flatten()
    alg.update()
    torch.testing.assert_close(torch.cat(seen).sort().values, raw.sort().values)


def test_weight_init_choices():
    ortho = _filled(PPOConfig(num_steps=2)).policy.actor[-1].weight
    torch_default = _filled(PPOConfig(num_steps=2, weight_init="torch_default")).policy.actor[-1].weight
    # Orthogonal with gain 0.01 on the actor head vs nn.Linear's kaiming-uniform.
    assert ortho.abs().max() < 0.02 < torch_default.abs().max()


@pytest.mark.parametrize("field", ["lr_schedule", "advantage_norm_scope", "weight_init"])
def test_misspelt_choices_are_named(field):
    with pytest.raises(ValueError, match=field):
        PPOConfig(**{field: "adaptiv"})


def test_bf16_update_tracks_the_fp32_update():
    out = {}
    for prec in ("fp32", "bf16"):
        alg = _filled(PPOConfig(num_steps=16, num_minibatches=2, num_epochs=1,
                                update_precision=prec))
        out[prec] = (alg.update(), alg.policy.actor[0].weight.detach().clone(),
                     alg.policy.actor[0].weight.dtype)
    (f, wf, df), (b, wb, db) = out["fp32"], out["bf16"]
    assert df == db == torch.float32  # weights and optimizer stay fp32
    assert b["losses/value_loss"] == pytest.approx(f["losses/value_loss"], rel=0.05)
    assert b["losses/approx_kl"] < 0.05
    assert not torch.equal(wf, wb) and (wf - wb).abs().max() < 1e-2  # same step, bf16 rounding


@pytest.mark.slow  # one torch.compile of the loss: ~50 s on one core
def test_compiled_update_matches_the_eager_update():
    out = {}
    for compiled in (False, True):
        alg = _filled(PPOConfig(num_steps=16, num_minibatches=2, num_epochs=2,
                                update_compile=compiled))
        stats = alg.update()
        out[compiled] = (stats, torch.cat([p.detach().flatten() for p in alg.policy.parameters()]))
    (se, we), (sc, wc) = out[False], out[True]
    for k in ("losses/policy_loss", "losses/value_loss", "losses/approx_kl", "losses/entropy"):
        assert sc[k] == pytest.approx(se[k], rel=1e-4, abs=1e-6), k
    assert sc["losses/learning_rate"] == se["losses/learning_rate"]
    torch.testing.assert_close(wc, we, atol=1e-5, rtol=1e-4)
