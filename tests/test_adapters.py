"""Adapters to other RL libraries (rlkd.adapters): gymnasium single/vector, Stable-Baselines3,
rsl_rl (rsl-rl-lib 5.x runners run unmodified) and the Isaac Gym VecTask shape.

Each adapter is checked against a *twin* BatchedEnv (same id, config and seed, same actions): the
adapter may only convert and rearrange what the BatchedEnv returns, never change it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rlkd
from conftest import AGV, FAST

N = 8
T = 15  # short time limit so that episodes end within the tests


def make(num_envs=N, **over):
    over.setdefault("max_episode_steps", T)
    for k, v in FAST.items():  # share cached layout builds (see conftest)
        over.setdefault(k, v)
    return rlkd.make(AGV, num_envs=num_envs, seed=0, **over)


def np_actions(rng, n=N):
    return rng.uniform(-1, 1, (n, 2)).astype(np.float32)


# ---------------------------------------------------------------------------------- gymnasium
def test_gymnasium_single_env_episode_end_and_continue():
    from rlkd.adapters import GymnasiumEnv

    genv, twin = GymnasiumEnv(make(1)), make(1)
    obs, info = genv.reset(seed=0)
    tobs, _ = twin.reset(seed=0)
    assert info == {} and genv.observation_space.contains(obs)
    np.testing.assert_array_equal(obs, tobs["policy"][0].numpy())
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(3 * T):
        a = rng.uniform(-1, 1, 2).astype(np.float32)
        obs, r, term, trunc, info = genv.step(a)
        tobs, tr, tterm, ttrunc, tinfo = twin.step(torch.from_numpy(a)[None])
        assert isinstance(r, float) and r == float(tr[0])
        assert (term, trunc) == (bool(tterm[0]), bool(ttrunc[0]))
        assert set(info["reward_terms"]) == set(tinfo["reward_terms"])
        if term or trunc:
            # The final observation of the episode, not the autoreset one.
            np.testing.assert_array_equal(obs, tinfo["final_obs"]["policy"][0].numpy())
            ep, tep = info["episode"], tinfo["episode"]
            assert ep["l"] == int(tep["length"][0]) and ep["r"] == pytest.approx(float(tep["return"][0]))
            for flag in ("success", "collision", "timeout"):
                assert bool(ep[flag]) == bool(tep[flag][0])
            assert bool(ep["timeout"]) == trunc
            # reset() continues with the episode the BatchedEnv already started.
            obs, info = genv.reset()
            np.testing.assert_array_equal(obs, tobs["policy"][0].numpy())
            ends += 1
        else:
            assert "episode" not in info
            np.testing.assert_array_equal(obs, tobs["policy"][0].numpy())
    assert ends >= 2
    # A seeded reset is reproducible.
    first, _ = genv.reset(seed=3)
    genv.step(np.zeros(2, np.float32))
    again, _ = genv.reset(seed=3)
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ValueError, match="shape"):
        genv.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        genv.step(np.array([np.nan, 0], np.float32))
    with pytest.raises(ValueError, match="num_envs=1"):
        GymnasiumEnv(make(2))


def test_gymnasium_dict_observations():
    from gymnasium import spaces
    from gymnasium.utils.env_checker import check_env

    from rlkd.adapters.gymnasium_env import make_single

    env = make_single(AGV, obs_groups=["policy", "critic"], **FAST)
    assert isinstance(env.observation_space, spaces.Dict)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"policy", "critic"} and env.observation_space.contains(obs)
    check_env(env, skip_render_check=True)
    with pytest.raises(KeyError, match="tactile"):
        make_single(AGV, obs_groups="tactile", **FAST)


def test_gymnasium_vector_same_step_autoreset():
    from gymnasium.vector import AutoresetMode

    from rlkd.adapters import GymnasiumVectorEnv

    envs, twin = GymnasiumVectorEnv(make()), make()
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, _ = envs.reset(seed=0)
    tobs, _ = twin.reset(seed=0)
    np.testing.assert_array_equal(obs, tobs["policy"].numpy())
    rng = np.random.default_rng(1)
    ret, length, ended = np.zeros(N), np.zeros(N, np.int64), 0
    for _ in range(40):
        a = np_actions(rng)
        obs, rew, term, trunc, infos = envs.step(a)
        tobs, trew, tterm, ttrunc, tinfo = twin.step(torch.from_numpy(a))
        assert rew.dtype == np.float64 and term.dtype == np.bool_ and trunc.dtype == np.bool_
        np.testing.assert_array_equal(obs, tobs["policy"].numpy())  # done rows: next episode
        np.testing.assert_array_equal(rew, trew.numpy().astype(np.float64))
        np.testing.assert_array_equal(term, tterm.numpy())
        np.testing.assert_array_equal(trunc, ttrunc.numpy())
        assert infos["_reward_terms"].all()
        ret += rew
        length += 1
        done = term | trunc
        if not done.any():
            assert "final_obs" not in infos and "episode" not in infos
            continue
        ended += int(done.sum())
        np.testing.assert_array_equal(infos["_final_obs"], done)
        fo = infos["final_obs"]
        assert fo.dtype == object and fo.shape == (N,)
        tfinal = tinfo["final_obs"]["policy"].numpy()
        for k, i in enumerate(np.flatnonzero(done)):
            np.testing.assert_array_equal(fo[i], tfinal[k])
        assert all(fo[i] is None for i in np.flatnonzero(~done))
        ep = infos["episode"]
        np.testing.assert_array_equal(infos["_episode"], done)
        np.testing.assert_allclose(ep["r"][done], ret[done], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ep["l"][done], length[done])
        np.testing.assert_array_equal(ep["timeout"][done], trunc[done])
        assert ep["timeout"].dtype == np.bool_ and ep["success"].dtype == np.bool_
        assert not ep["l"][~done].any() and not ep["collision"][~done].any()
        np.testing.assert_array_equal(infos["_final_info"], done)
        np.testing.assert_array_equal(infos["final_info"]["episode"]["l"], ep["l"])
        ret[done], length[done] = 0, 0
    assert ended >= N
    with pytest.raises(ValueError, match="reset_mask"):
        envs.reset(options={"reset_mask": np.ones(N, bool)})
    with pytest.raises(ValueError, match="one int"):
        envs.reset(seed=[0] * N)


def test_gymnasium_vector_under_record_episode_statistics():
    import gymnasium

    envs = gymnasium.make_vec(f"rlkd/{AGV}", num_envs=N, max_episode_steps=T, stats_key=None,
                              **FAST)
    envs = gymnasium.wrappers.vector.RecordEpisodeStatistics(envs)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(T + 1):
        _, _, _, _, infos = envs.step(np_actions(rng))
        if "episode" in infos:
            lengths += infos["episode"]["l"][infos["_episode"]].tolist()
    assert len(lengths) >= N and max(lengths) == T


# ---------------------------------------------------------------------------------- SB3
def test_sb3_vecenv_terminal_infos_match_the_batched_env():
    from rlkd.adapters import SB3VecEnv

    venv, twin = SB3VecEnv(make()), make()
    obs = venv.reset()
    tobs, _ = twin.reset()
    assert obs.dtype == np.float32 and obs.shape == (N, *venv.observation_space.shape)
    np.testing.assert_array_equal(obs, tobs["policy"].numpy())
    rng = np.random.default_rng(2)
    kinds = set()
    for _ in range(2 * T):
        a = np_actions(rng)
        obs, rew, dones, infos = venv.step(a)
        tobs, trew, tterm, ttrunc, tinfo = twin.step(torch.from_numpy(a))
        assert rew.dtype == np.float32 and dones.dtype == np.bool_ and len(infos) == N
        np.testing.assert_array_equal(obs, tobs["policy"].numpy())
        np.testing.assert_array_equal(rew, trew.numpy())
        np.testing.assert_array_equal(dones, (tterm | ttrunc).numpy())
        done_ids = np.flatnonzero(dones)
        for i in np.flatnonzero(~dones):
            assert infos[i] == {}
        if len(done_ids):
            ep = tinfo["episode"]
            for k, i in enumerate(done_ids):
                d = infos[i]
                np.testing.assert_array_equal(d["terminal_observation"],
                                              tinfo["final_obs"]["policy"][k].numpy())
                assert d["TimeLimit.truncated"] == bool(ttrunc[i])
                assert d["episode"]["l"] == int(ep["length"][k])
                assert d["episode"]["r"] == pytest.approx(float(ep["return"][k]))
                assert d["is_success"] == bool(ep["success"][k])
                kinds.add("timeout" if d["TimeLimit.truncated"] else "terminal")
    assert kinds == {"timeout", "terminal"}


def test_sb3_vecenv_attributes_and_seeding():
    from stable_baselines3.common.monitor import Monitor

    from rlkd.adapters import SB3VecEnv

    venv = SB3VecEnv(make())
    assert venv.get_attr("max_lin_vel") == [pytest.approx(1.0)] * N
    assert venv.get_attr("num_envs", indices=[0, 1]) == [N, N]
    venv.set_attr("max_lin_vel", 0.5, indices=[1, 2])
    assert venv.env.params["max_lin_vel"].tolist() == [1.0, 0.5, 0.5] + [1.0] * (N - 3)
    with pytest.raises(ValueError, match="whole batch"):
        venv.set_attr("validate_actions", False, indices=[0])
    with pytest.raises(AttributeError, match="no_such"):
        venv.get_attr("no_such")
    assert venv.env_is_wrapped(Monitor) == [True] * N
    venv.seed(5)
    a = venv.reset()
    assert venv.env_method("get_observations", indices=[3])[0]["policy"].shape[0] == N
    venv.step(np.zeros((N, 2), np.float32))
    venv.seed(5)
    np.testing.assert_array_equal(venv.reset(), a)
    venv.seed(6)
    assert not np.array_equal(venv.reset(), a)
    frame = venv.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.zeros((N, 3), np.float32))


def test_sb3_ppo_learns_unmodified():
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy

    from rlkd.adapters import SB3VecEnv

    venv = SB3VecEnv(make(max_episode_steps=20))
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(512)
    assert model.num_timesteps >= 512
    assert len(model.ep_info_buffer) > 0 and len(model.ep_success_buffer) > 0
    assert all(ep["l"] <= 20 for ep in model.ep_info_buffer)
    mean, std = evaluate_policy(model, venv, n_eval_episodes=N, deterministic=True)
    assert np.isfinite(mean) and np.isfinite(std)


# ---------------------------------------------------------------------------------- rsl_rl
def _rsl_cfg(actor_groups=("policy",)):
    mlp = {"class_name": "MLPModel", "hidden_dims": [32, 32], "activation": "elu",
           "obs_normalization": True}
    return {
        "num_steps_per_env": 8,
        "save_interval": 50,
        "obs_groups": {"actor": list(actor_groups), "critic": ["critic"]},
        "algorithm": {"class_name": "PPO", "num_learning_epochs": 1, "num_mini_batches": 2,
                      "learning_rate": 1e-3, "schedule": "adaptive", "desired_kl": 0.01,
                      "entropy_coef": 0.01, "gamma": 0.99, "lam": 0.95, "clip_param": 0.2,
                      "max_grad_norm": 1.0, "value_loss_coef": 1.0,
                      "use_clipped_value_loss": True},
        "actor": {**mlp, "distribution_cfg": {"class_name": "GaussianDistribution",
                                              "init_std": 1.0}},
        "critic": dict(mlp),
        "logger": "tensorboard",
    }


def test_rsl_rl_vecenv_contract():
    from tensordict import TensorDict

    from rlkd.adapters import RslRlVecEnv

    env = make(16)
    venv = RslRlVecEnv(env)
    assert (venv.num_envs, venv.num_actions, venv.max_episode_length) == (16, 2, T)
    assert venv.cfg is env.cfg and venv.unwrapped is env
    obs = venv.get_observations()  # resets a never-reset env
    assert isinstance(obs, TensorDict) and obs.batch_size == torch.Size([16])
    assert set(obs.keys()) == {"policy", "critic"}
    # The episode-length setter writes into the BatchedEnv's own buffer (same tensor object).
    buf = env.episode_length_buf
    venv.episode_length_buf = torch.randint_like(buf, high=T)
    assert venv.episode_length_buf is buf
    venv.episode_length_buf = torch.full((16,), T - 1)
    assert (env.episode_length_buf == T - 1).all()
    obs, rew, dones, extras = venv.step(torch.zeros(16, 2))
    assert dones.dtype == torch.int64 and rew.shape == (16,) and obs.batch_size == torch.Size([16])
    assert (dones == 1).all()  # every env times out (or collides) right now
    assert extras["time_outs"].dtype == torch.bool
    log = extras["log"]
    assert {"/episode/return", "/episode/length", "/episode/success", "/episode/timeout",
            "/sim_unstable"} <= set(log)
    assert (log["/episode/length"] == T).all()
    assert torch.equal(extras["time_outs"].float()[extras["final_env_ids"]], log["/episode/timeout"])
    assert extras["final_obs"].batch_size == torch.Size([16])


def test_rsl_rl_on_policy_runner(tmp_path):
    from rsl_rl.runners import OnPolicyRunner

    from rlkd.adapters import RslRlVecEnv

    env = make(16)
    runner = OnPolicyRunner(RslRlVecEnv(env), _rsl_cfg(), log_dir=str(tmp_path), device="cpu")
    runner.learn(2, init_at_random_ep_len=True)
    assert runner.current_learning_iteration == 1
    assert (tmp_path / "model_1.pt").exists()
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())
    policy = runner.get_inference_policy()
    act = policy(RslRlVecEnv(env).get_observations())
    assert act.shape == (16, 2) and torch.isfinite(act).all()


def test_rsl_rl_distillation_runner(tmp_path):
    """Teacher: PPO on the privileged group; student: distilled onto the policy group."""
    from rsl_rl.runners import DistillationRunner, OnPolicyRunner

    from rlkd.adapters import RslRlVecEnv

    venv = RslRlVecEnv(make(16))
    teacher = OnPolicyRunner(venv, _rsl_cfg(actor_groups=("critic",)), log_dir=None, device="cpu")
    teacher.learn(1)
    teacher.save(str(tmp_path / "teacher.pt"))
    cfg = _rsl_cfg()
    mlp = cfg["actor"]
    cfg = {"num_steps_per_env": 8, "save_interval": 50,
           "obs_groups": {"student": ["policy"], "teacher": ["critic"]},
           "algorithm": {"class_name": "Distillation", "num_learning_epochs": 1,
                         "gradient_length": 8, "learning_rate": 1e-3},
           "student": dict(mlp), "teacher": dict(mlp)}
    runner = DistillationRunner(venv, cfg, log_dir=None, device="cpu")
    runner.load(str(tmp_path / "teacher.pt"))
    runner.learn(2)
    assert runner.alg.teacher_loaded and runner.current_learning_iteration == 1


# ---------------------------------------------------------------------------------- Isaac Gym
def test_isaacgym_vectask_shape():
    from rlkd.adapters import IsaacGymVecTask

    env, twin = make(), make()
    task = IsaacGymVecTask(env, clip_obs=0.5)
    P, C = env.observation_spaces["policy"].shape[0], env.observation_spaces["critic"].shape[0]
    assert (task.num_obs, task.num_states, task.num_actions) == (P, C, 2)
    assert task.max_episode_length == T and task.get_number_of_agents() == 1
    obs_dict = task.reset()
    tobs, _ = twin.reset()
    assert set(obs_dict) == {"obs", "states"}
    assert obs_dict["obs"].shape == (N, P) and obs_dict["states"].shape == (N, C)
    torch.testing.assert_close(obs_dict["obs"], tobs["policy"].clamp(-0.5, 0.5))
    gen = torch.Generator().manual_seed(0)
    for _ in range(T + 2):
        a = torch.rand(N, 2, generator=gen) * 2 - 1
        before = task.progress_buf.clone()
        obs_dict, rew, reset, extras = task.step(a)
        tobs, trew, tterm, ttrunc, tinfo = twin.step(a)
        assert rew is task.rew_buf and reset is task.reset_buf
        assert torch.equal(rew, trew) and rew.dtype == torch.float32
        assert reset.dtype == torch.int64 and torch.equal(reset.bool(), tterm | ttrunc)
        assert torch.equal(task.timeout_buf.bool(), ttrunc)
        assert torch.equal(extras["time_outs"], ttrunc)
        # Same-step reset: progress restarts at 0 for done envs, else counts on.
        assert torch.equal(task.progress_buf, torch.where(reset.bool(), 0, before + 1))
        torch.testing.assert_close(obs_dict["states"], tobs["critic"].clamp(-0.5, 0.5))
        if reset.any():
            assert set(extras["episode"]) >= {"return", "length", "success", "timeout"}
            assert torch.equal(extras["final_env_ids"], reset.nonzero().squeeze(-1))
    # Without a state group there is no "states" entry.
    task = IsaacGymVecTask(make(), state_group=None)
    assert task.num_states == 0 and set(task.reset()) == {"obs"}
