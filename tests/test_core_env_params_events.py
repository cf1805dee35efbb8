"""The batched-env contract (DESIGN.md section 2) on the AGV warehouse task, part two: live
per-env params, task events (collisions, goals in order, precedence), episode flags and reward
terms.

Determinism, input validation, autoreset and the base class: ``test_core_env.py``."""

from __future__ import annotations

import math

import torch

import rlkd
from conftest import AGV, AGV_SIMPLE, FAST, random_actions, zero_actions

N = 16


def make(env_id: str = AGV, num_envs: int = N, seed: int = 0, **over):
    for k, v in FAST.items():  # share cached layout builds (see conftest)
        over.setdefault(k, v)
    return rlkd.make(env_id, num_envs=num_envs, seed=seed, **over)


def forward(env, lin: float = 1.0, ang: float = 0.0) -> torch.Tensor:
    return torch.tensor([[lin, ang]]).expand(env.num_envs, 2).contiguous()


def n_policy(env) -> int:
    return env.observation_spaces["policy"].shape[0]


# ---------------------------------------------------------------------------------- params
def test_params_write_through_changes_motion():
    env = make(num_obstacles=0)
    env.reset(seed=0)
    assert set(env.params) >= {"slip", "max_lin_vel", "max_ang_vel", "lin_acc", "ang_acc",
                               "action_latency", "lidar_noise_std", "obs_noise_std"}
    for v in env.params.values():
        assert v.shape == (N,)
    env.params["lin_acc"][:] = 1000.0  # reach the commanded speed within one step
    v = torch.linspace(0.2, 1.0, N)
    env.params["max_lin_vel"][:] = v
    env.params["slip"][N // 2:] = 0.5
    p0 = env.pos.clone()
    obs, _, term, trunc, _ = env.step(forward(env))
    ok = ~(term | trunc)
    assert int(ok.sum()) >= N - 3
    grip = torch.where(torch.arange(N) >= N // 2, 0.5, 1.0)
    torch.testing.assert_close((env.pos - p0).norm(dim=-1)[ok], (v * grip * env.cfg.dt)[ok],
                               atol=1e-5, rtol=1e-4)
    # The critic group reports the live params (slip, max_lin_vel, action_latency at the end).
    torch.testing.assert_close(obs["critic"][:, -3], torch.where(grip < 1, 0.5, 0.0))
    torch.testing.assert_close(obs["critic"][:, -2], v)


def test_angular_params_and_latency():
    env = make(num_obstacles=0)
    env.reset(seed=0)
    env.params["ang_acc"][:] = 1000.0
    env.params["max_ang_vel"][:] = 2.0
    env.params["action_latency"][: N // 2] = 2
    h0 = env.heading.clone()
    for t in range(3):
        env.step(forward(env, lin=0.0, ang=1.0))
        turned = torch.remainder(env.heading - h0 + math.pi, 2 * math.pi) - math.pi
        expect_fast = 2.0 * env.cfg.dt * (t + 1)
        expect_late = 2.0 * env.cfg.dt * max(0, t - 1)  # commands apply two steps late
        torch.testing.assert_close(turned[N // 2:], torch.full((N // 2,), expect_fast), atol=1e-5,
                                   rtol=0)
        torch.testing.assert_close(turned[: N // 2], torch.full((N // 2,), expect_late), atol=1e-5,
                                   rtol=0)


def test_noise_params_are_live_and_critic_is_clean():
    env = make(lidar_noise_std=0.2)
    obs, _ = env.reset(seed=0)
    P = n_policy(env)
    clean = obs["critic"][:, :P]
    assert torch.equal(obs["policy"][:, :8], clean[:, :8])  # proprio noise is off
    assert not torch.equal(obs["policy"][:, 8:], clean[:, 8:])
    assert obs["policy"][:, 8:].min() >= 0 and obs["policy"][:, 8:].max() <= 1
    env.params["lidar_noise_std"].zero_()
    env.params["obs_noise_std"][:] = 0.1
    obs, *_ = env.step(zero_actions(env))
    clean = obs["critic"][:, :P]
    assert torch.equal(obs["policy"][:, 8:], clean[:, 8:])
    assert not torch.equal(obs["policy"][:, :7], clean[:, :7])
    assert torch.equal(obs["policy"][:, 7], clean[:, 7])  # the goal counter stays exact


def test_diverged_env_is_reset_without_poisoning_the_batch():
    a, b = make(validate_actions=False), make()
    a.reset(seed=0)
    b.reset(seed=0)
    act = torch.zeros(N, 2)
    act[0] = float("nan")
    obs_a, rew_a, term_a, _, info = a.step(act)
    obs_b, rew_b, term_b, *_ = b.step(zero_actions(b))
    assert info["sim_unstable"] == 1
    assert bool(term_a[0]) and float(rew_a[0]) == 0.0
    assert 0 in info["episode"]["env_ids"].tolist()
    for g in obs_a:
        assert torch.isfinite(obs_a[g]).all() and torch.isfinite(info["final_obs"][g]).all()
        assert torch.equal(obs_a[g][1:], obs_b[g][1:])
    assert torch.equal(rew_a[1:], rew_b[1:]) and torch.equal(term_a[1:], term_b[1:])
    obs, rew, *_ , info = a.step(zero_actions(a))
    assert info["sim_unstable"] == 0 and torch.isfinite(obs["policy"]).all()


# ---------------------------------------------------------------------------------- task events
def _run(env, policy, steps, seed=0):
    obs, _ = env.reset(seed=seed)
    events = []
    for _ in range(steps):
        prev = obs
        obs, rew, term, trunc, info = env.step(policy(obs))
        events.append((prev, obs, rew, term, trunc, info))
    return events


def test_driving_straight_collides():
    env = make(num_obstacles=0, max_episode_steps=1000)
    collisions = 0
    for _, _, rew, term, trunc, info in _run(env, lambda o: forward(env), 250):
        if "episode" in info:
            ep, ids = info["episode"], info["episode"]["env_ids"]
            c = ep["collision"]
            collisions += int(c.sum())
            assert term[ids][c].all() and not trunc[ids][c].any()
            assert (rew[ids][c] == env.cfg.reward_collision).all()
            assert not (ep["success"] & c).any() and not (ep["timeout"] & c).any()
            # The last scan of a collision sees the obstacle within a robot radius or so.
            lidar = info["final_obs"]["critic"][c, 8:n_policy(env)] * env.cfg.lidar_range
            if c.any():
                assert (lidar.amin(dim=-1) < env.cfg.robot_radius + 0.2).all()
    assert collisions >= N  # every robot driving straight hits a shelf or a wall


def test_scripted_policy_reaches_goals():
    env = make(AGV_SIMPLE, max_episode_steps=300)
    pi = env.scripted_policy()
    D = env.scale
    successes = 0
    for _, _, rew, term, trunc, info in _run(env, pi, 250):
        if "episode" in info:
            ep = info["episode"]
            ids, s = ep["env_ids"], ep["success"]
            successes += int(s.sum())
            assert term[ids][s].all()
            assert (rew[ids][s] == env.cfg.reward_goal).all()
            torch.testing.assert_close(ep["return"][s], torch.full((int(s.sum()),), 1.0))
            fin = info["final_obs"]["policy"][s]
            assert (fin[:, 2] * D < env.cfg.goal_radius).all()  # at the goal
            assert (fin[:, 7] == 0).all()  # no goal left
    assert successes >= N // 2


def test_collision_beats_reaching_the_goal():
    env = make(num_obstacles=0)
    env.reset(seed=0)
    # Put env 0 against the left wall with its goal right there: it collides and "arrives".
    env.pos[0] = torch.tensor([0.2, env.world[1] / 2])
    env.goals[0, 0] = env.pos[0]
    _, rew, term, trunc, info = env.step(zero_actions(env))
    assert bool(term[0]) and float(rew[0]) == env.cfg.reward_collision
    ep = info["episode"]
    k = ep["env_ids"].tolist().index(0)
    assert bool(ep["collision"][k]) and not bool(ep["success"][k])


def test_two_goals_are_visited_in_order():
    env = make(AGV_SIMPLE, num_goals=2, max_episode_steps=500)
    pi = env.scripted_policy()
    intermediate = finished = 0
    for prev, obs, rew, term, trunc, info in _run(env, pi, 400):
        mid = (rew == env.cfg.reward_goal) & ~term & ~trunc
        if mid.any():
            intermediate += int(mid.sum())
            assert (prev["policy"][mid, 7] == 1.0).all()
            assert (obs["policy"][mid, 7] == 0.5).all()  # one of two goals left
        if "episode" in info:
            ep = info["episode"]
            s = ep["success"]
            finished += int(s.sum())
            torch.testing.assert_close(ep["return"][s], torch.full((int(s.sum()),), 2.0))
    assert intermediate >= N // 2 and finished >= 2


def test_episode_flags_are_consistent():
    env = make(max_episode_steps=40)
    gen = torch.Generator().manual_seed(3)
    pi = env.scripted_policy()
    counts = torch.zeros(3, dtype=torch.long)
    obs, _ = env.reset(seed=1)
    for t in range(160):
        act = pi(obs) if t % 2 else random_actions(env, gen)
        obs, rew, term, trunc, info = env.step(act)
        if "episode" in info:
            ep = info["episode"]
            ids = ep["env_ids"]
            flags = torch.stack([ep["success"], ep["collision"], ep["timeout"]])
            assert flags.dtype == torch.bool
            assert (flags.sum(dim=0) == 1).all(), "exactly one of success/collision/timeout"
            assert torch.equal(ep["success"] | ep["collision"], term[ids])
            assert torch.equal(ep["timeout"], trunc[ids])
            counts += flags.sum(dim=1)
    assert (counts > 0).all(), f"expected all three outcomes, got {counts.tolist()}"


def test_reward_terms_sum_to_reward():
    # Two goals and a half-scripted driver, so that goals are reached and switched mid-episode.
    env = make(AGV_SIMPLE, progress_reward_scale=1.0, time_penalty=0.01, num_goals=2)
    gen = torch.Generator().manual_seed(0)
    pi = env.scripted_policy()
    obs, _ = env.reset(seed=0)
    D = env.scale
    max_step = env.cfg.max_lin_vel * env.cfg.dt
    goals = 0
    for t in range(150):
        prev = obs
        obs, rew, term, trunc, info = env.step(pi(obs) if t % 4 else random_actions(env, gen))
        terms = info["reward_terms"]
        assert set(terms) == {"goal", "collision", "progress", "time"}
        torch.testing.assert_close(sum(terms.values()), rew)
        assert (terms["time"] == -0.01).all()
        # Progress is a decrease of distance to the current goal: bounded by one step of motion,
        # also on the step a goal is reached and the next one becomes current.
        assert (terms["progress"].abs() <= max_step + 1e-4).all()
        goals += int((terms["goal"] > 0).sum())
        live = ~(term | trunc) & (terms["goal"] == 0)  # same goal before and after, not reset
        torch.testing.assert_close(terms["progress"][live],
                                   (prev["policy"][live, 2] - obs["policy"][live, 2]) * D,
                                   atol=1e-4, rtol=1e-4)
    assert goals >= N
    sparse = make()
    sparse.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        _, rew, _, _, info = sparse.step(random_actions(sparse, gen))
        assert set(info["reward_terms"]) == {"goal", "collision"}
        assert set(rew.tolist()) <= {-1.0, 0.0, 1.0}
