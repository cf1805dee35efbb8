"""The batched-env contract (DESIGN.md section 2) on the AGV warehouse task and on a toy task:
determinism, input validation, same-step autoreset, named observation parts, the base class
and the registry.

Live params, terminations and episode statistics: ``test_core_env_params_events.py``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import rlkd
from conftest import AGV, AGV_SIMPLE, FAST, random_actions, zero_actions
from rlkd.core import BatchedEnv
from rlkd.core.spaces import action_box, box

N = 16


def make(env_id: str = AGV, num_envs: int = N, seed: int = 0, **over):
    for k, v in FAST.items():  # share cached layout builds (see conftest)
        over.setdefault(k, v)
    return rlkd.make(env_id, num_envs=num_envs, seed=seed, **over)


def n_policy(env) -> int:
    return env.observation_spaces["policy"].shape[0]


def pos_from_critic(env, critic: torch.Tensor) -> torch.Tensor:
    """World position (metres) from the critic group: ``x / W, y / H`` follow the clean policy obs."""
    p = n_policy(env)
    return critic[:, p:p + 2] * torch.tensor(env.world)


# ---------------------------------------------------------------------------------- determinism
def _rollout(env, seed: int, steps: int = 100):
    obs, _ = env.reset(seed=seed)
    gen = torch.Generator().manual_seed(99)
    out = [obs]
    for _ in range(steps):
        obs, rew, term, trunc, info = env.step(random_actions(env, gen))
        out.append((obs, rew, term, trunc, info.get("final_obs")))
    return out


def _assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif a is None:
        assert b is None
    else:
        assert torch.equal(a, b)


def _differs(a, b) -> bool:
    return not torch.equal(a[0]["policy"], b[0]["policy"])


@pytest.mark.parametrize("env_id", [AGV, AGV_SIMPLE])
def test_same_seed_bitwise_identical(env_id):
    # Sensor noise on and a short time limit: the rollout exercises the per-env random streams
    # (reset draws, noise) and autoresets at different steps for different envs.
    over = dict(max_episode_steps=30, lidar_noise_std=0.05, obs_noise_std=0.02)
    a = _rollout(make(env_id, seed=7, **over), seed=7)
    env_b = make(env_id, seed=7, **over)
    b = _rollout(env_b, seed=7)
    _assert_same(a, b)
    dones = sum(int((s[2] | s[3]).sum()) for s in a[1:])
    assert dones >= N, "rollout should include autoresets"
    # A later reset(seed=...) restarts every stream: the same rollout again.
    _assert_same(_rollout(env_b, seed=7), a)


def test_different_seeds_differ():
    a = _rollout(make(seed=0), seed=0, steps=5)
    b = _rollout(make(seed=1), seed=1, steps=5)
    assert _differs(a, b)
    # By default the layouts derive from the env seed too.
    assert rlkd.make(AGV, num_envs=2, seed=5, num_layouts=1).layout_seed == 5
    # Same construction seed (same layouts), different reset seed: different episodes.
    env = make(seed=0)
    assert _differs(_rollout(env, seed=0, steps=1), _rollout(env, seed=5, steps=1))
    # Envs of one batch do not start identically.
    obs = a[0]["policy"]
    assert len({tuple(row.tolist()) for row in obs}) == N


# ---------------------------------------------------------------------------------- bad input
def test_bad_action_shapes(agv_env):
    env = agv_env
    for bad in (torch.zeros(8, 3), torch.zeros(7, 2), torch.zeros(2), torch.zeros(8, 2, 1)):
        with pytest.raises(ValueError, match=r"shape") as e:
            env.step(bad)
        assert "(8, 2)" in str(e.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_actions(agv_env, value):
    a = zero_actions(agv_env)
    a[3, 1] = value
    with pytest.raises(ValueError, match=r"NaN/Inf") as e:
        agv_env.step(a)
    assert "[3]" in str(e.value)  # names the offending env


def test_non_tensor_dtype_and_device_actions(agv_env):
    import numpy as np

    with pytest.raises(ValueError, match=r"torch\.Tensor"):
        agv_env.step(np.zeros((8, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"torch\.Tensor"):
        agv_env.step([[0.0, 0.0]] * 8)
    with pytest.raises(ValueError, match=r"floating.*int64"):
        agv_env.step(torch.zeros(8, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"meta"):
        agv_env.step(torch.zeros(8, 2, device="meta"))
    # float64 is accepted (converted), and the env still works after the rejected calls.
    obs, *_ = agv_env.step(torch.zeros(8, 2, dtype=torch.float64))
    assert obs["policy"].dtype == torch.float32


def test_out_of_range_actions_are_clipped():
    a, b = make(), make()
    a.reset(seed=0)
    b.reset(seed=0)
    big = torch.tensor([[5.0, -7.0]]).expand(N, 2).contiguous()
    unit = torch.tensor([[1.0, -1.0]]).expand(N, 2).contiguous()
    _assert_same(a.step(big)[:4], b.step(unit)[:4])


def test_step_before_reset_and_bad_construction():
    env = make()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(zero_actions(env))
    with pytest.raises(RuntimeError, match="reset"):
        env.get_observations()
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_envs"):
            rlkd.make(AGV, num_envs=bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            rlkd.make(AGV, num_envs=1, device="cuda")


def test_unknown_env_id():
    with pytest.raises(KeyError) as e:
        rlkd.make("AGVWarehouse-v1")
    msg = e.value.args[0]
    assert "'AGVWarehouse-v1'" in msg
    assert "Did you mean" in msg and "'AGVWarehouse-v0'" in msg
    with pytest.raises(KeyError, match="NoSuchTask"):
        rlkd.spec("rlkd/NoSuchTask-v0")
    with pytest.raises(TypeError, match="string"):
        rlkd.make(None)
    # The gymnasium-style namespaced id works with rlkd.make as well.
    assert make("rlkd/AGVWarehouse-v0", num_envs=2).spec_id == AGV


def test_config_override_errors():
    with pytest.raises(KeyError) as e:
        rlkd.make(AGV, num_obstacle=2)
    msg = e.value.args[0]
    assert "'num_obstacle'" in msg and "'num_obstacles'" in msg
    for key, value in [("max_episode_steps", "10"), ("lidar_rays", 32.5),
                       ("lidar_rays", True), ("compile", 1), ("max_lin_vel", "fast")]:
        with pytest.raises(TypeError, match=key):
            rlkd.make(AGV, **{key: value})
    # Numbers convert to the field's type: int -> float field, integral float -> int field.
    env = make(max_lin_vel=2, lidar_rays=16.0)
    assert isinstance(env.cfg.max_lin_vel, float) and env.cfg.lidar_rays == 16
    assert isinstance(env.cfg.lidar_rays, int)
    assert env.observation_spaces["policy"].shape == (8 + 16,)
    # Values the task cannot use are rejected at construction.
    with pytest.raises(ValueError, match="lidar_mode"):
        make(lidar_mode="sonar")
    with pytest.raises(ValueError, match="slip"):
        make(slip=1.0)


# ---------------------------------------------------------------------------------- autoreset
def test_autoreset_final_obs_and_episode_stats():
    T = 12
    env = make(max_episode_steps=T)
    obs, _ = env.reset(seed=3)
    # Stagger the episodes (as rsl_rl's init_at_random_ep_len does) so timeouts happen at
    # different steps for different envs.
    env.episode_length_buf.copy_(torch.arange(N) % T)
    length = env.episode_length_buf.clone()
    ret = torch.zeros(N)
    gen = torch.Generator().manual_seed(0)
    max_step = env.cfg.max_lin_vel * env.cfg.dt
    seen = {"timeout": 0, "collision": 0}
    prev = obs
    for _ in range(40):
        act = random_actions(env, gen)
        obs, rew, term, trunc, info = env.step(act)
        ret += rew
        length += 1
        done = term | trunc
        assert torch.equal(info["final_mask"], done)
        assert torch.equal(trunc, (length >= T) & ~term)
        if done.any():
            ids = done.nonzero().squeeze(-1)
            ep = info["episode"]
            assert torch.equal(ep["env_ids"], ids)
            torch.testing.assert_close(ep["return"], ret[ids])
            assert torch.equal(ep["length"], length[ids])
            assert torch.equal(ep["timeout"], trunc[ids])
            assert torch.equal(ep["collision"] | ep["success"], term[ids])
            seen["timeout"] += int(ep["timeout"].sum())
            seen["collision"] += int(ep["collision"].sum())
            fin = info["final_obs"]
            assert set(fin) == set(obs)
            # The final obs continues the ended episode: one step of motion from the previous obs,
            # and it records the action just taken.
            moved = (pos_from_critic(env, fin["critic"]) - pos_from_critic(env, prev["critic"][ids]))
            assert (moved.norm(dim=-1) <= max_step + 1e-4).all()
            torch.testing.assert_close(fin["policy"][:, 5:7], act[ids])
            # The returned rows are a fresh episode: at rest, no previous action, all goals to go.
            assert (obs["policy"][ids, 3:7] == 0).all()
            assert (obs["policy"][ids, 7] == 1).all()
            assert (env.episode_length_buf[ids] == 0).all()
            ret[ids] = 0
            length[ids] = 0
        else:
            assert "final_obs" not in info and "episode" not in info
        assert torch.equal(env.episode_length_buf, length)
        # get_observations() is the last returned obs, as an independent copy.
        current = env.get_observations()
        _assert_same(current, obs)
        current["policy"].fill_(123.0)
        _assert_same(env.get_observations(), obs)
        prev = obs
    assert seen["timeout"] >= N and seen["collision"] >= 1


# ---------------------------------------------------------------------------------- obs layout
POLICY_PARTS = ["goal_robot_frame", "goal_distance", "velocity", "prev_action", "goals_remaining",
                "lidar"]


@pytest.mark.parametrize("over", [{}, {"num_goals": 2, "lidar_rays": 12, "num_obstacles": 0},
                                  {"num_obstacles": 3, "lidar_rays": 7}])
def test_agv_observation_layout_names_the_real_parts(over):
    env = make(**over)
    c, layout = env.cfg, env.observation_layout
    width = {g: {k: s.stop - s.start for k, s in parts.items()} for g, parts in layout.items()}
    policy = dict(zip(POLICY_PARTS, [2, 1, 2, 2, 1, c.lidar_rays]))
    critic = {**policy, "position": 2, "heading": 2, "goal_position": 2,
              **({"obstacles": 4 * c.num_obstacles} if c.num_obstacles else {}), "params": 3}
    assert list(width["policy"].items()) == list(policy.items())
    assert list(width["critic"].items()) == list(critic.items())

    env.reset(seed=0)
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        obs, *_ = env.step(random_actions(env, gen))
    pol = {k: obs["policy"][:, s] for k, s in layout["policy"].items()}
    cri = {k: obs["critic"][:, s] for k, s in layout["critic"].items()}
    close = lambda a, b: torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)  # noqa: E731
    world = torch.tensor(env.world)
    goal = env._current_goal(None)
    close(cri["position"] * world, env.pos)
    close(cri["heading"], torch.stack([env.heading.cos(), env.heading.sin()], -1))
    close(cri["goal_position"] * world, goal)
    close(pol["goal_distance"][:, 0] * env.scale, (goal - env.pos).norm(dim=-1))
    close(pol["velocity"] * torch.tensor([c.max_lin_vel, c.max_ang_vel]),
          torch.stack([env.lin_vel, env.ang_vel], -1))
    close(pol["prev_action"], env.prev_action)
    close(pol["goals_remaining"][:, 0], 1.0 - env.goal_idx.float() / c.num_goals)
    close(pol["lidar"] * c.lidar_range, env._lidar(None))
    close(cri["params"], torch.stack([env.params["slip"], env.params["max_lin_vel"],
                                      env.params["action_latency"].float()], -1))
    for k in POLICY_PARTS:  # noise is off: the critic's copy of each policy part is the same
        assert torch.equal(pol[k], cri[k]), k


def test_agv_bullet_twin_and_presets_share_the_layout_rule():
    over = {"lidar_rays": 9, "num_obstacles": 2}
    twin = rlkd.make("AGVWarehouseBullet-v0", num_envs=2, seed=0, **FAST, **over)
    try:
        assert twin.observation_layout == make(num_envs=2, **over).observation_layout
    finally:
        twin.close()
    static = make(AGV_SIMPLE, num_envs=2)  # a preset without moving obstacles
    assert "obstacles" not in static.observation_layout["critic"]


# ---------------------------------------------------------------------------------- toy task
# A minimal BatchedEnv registered at test time checks the base class and the registry without
# the AGV task's specifics.


@dataclass
class LineConfig:
    max_episode_steps: int = 10
    speed: float = 1.0


class LineEnv(BatchedEnv):
    """A point on a line: ``x += speed * a``; ends when ``|x| > 3``; a non-finite speed diverges."""

    def __init__(self, cfg, num_envs=1, device="cpu", seed=0, validate_actions=True):
        super().__init__(cfg, num_envs, device, seed, validate_actions)
        self.x = torch.zeros(num_envs)
        self.params = {"speed": torch.full((num_envs,), cfg.speed)}
        self.observation_spaces = {"policy": box((1,)), "critic": box((2,))}
        self.action_space = action_box(1)

    def _reset_idx(self, env_ids):
        self.x[env_ids] = self.rng.uniform(env_ids, 1, -1.0, 1.0)[:, 0]

    def _step_sim(self, actions):
        self.x = self.x + self.params["speed"] * actions[:, 0]

    def _observe(self, env_ids=None):
        x = self.x if env_ids is None else self.x[env_ids]
        t = self.episode_length_buf if env_ids is None else self.episode_length_buf[env_ids]
        return {"policy": x[:, None].clone(), "critic": torch.stack([x, t.float()], dim=-1)}

    def _evaluate(self):
        out = self.x.abs() > 3
        return -self.x.abs(), out, {"dist": -self.x.abs()}, {"out": out}


@pytest.fixture
def line_id():
    import gymnasium

    from rlkd.core.registry import _REGISTRY

    env_id = "TestLine-v0"
    rlkd.register(env_id, f"{__name__}:LineEnv", LineConfig, overrides={"speed": 0.5},
                  description="test line")
    yield env_id
    _REGISTRY.pop(env_id, None)
    gymnasium.registry.pop(f"rlkd/{env_id}", None)


def test_register_make_and_base_class(line_id):
    with pytest.raises(ValueError, match="already registered"):
        rlkd.register(line_id, f"{__name__}:LineEnv", LineConfig)
    assert line_id in rlkd.list_envs()
    env = rlkd.make(f"rlkd/{line_id}", num_envs=4, seed=0, max_episode_steps=3)
    assert env.spec_id == line_id and env.cfg.speed == 0.5  # preset overrides, then keywords
    assert env.max_episode_length == 3 and env.act_dim == 1
    with pytest.raises(KeyError, match="'sped'.*'speed'"):
        rlkd.make(line_id, sped=1.0)
    obs, _ = env.reset(seed=0)
    assert obs["policy"].shape == (4, 1)
    # Autoreset and episode bookkeeping come from the base class.
    for t in range(3):
        obs, rew, term, trunc, info = env.step(torch.zeros(4, 1))
    assert trunc.all() and not term.any() and info["episode"]["length"].tolist() == [3] * 4
    assert (obs["critic"][:, 1] == 0).all()  # fresh episodes
    # Default divergence check (non-finite policy obs): the env is reset, the batch is not poisoned.
    env.params["speed"][2] = float("nan")
    obs, rew, term, trunc, info = env.step(torch.ones(4, 1))
    assert info["sim_unstable"] == 1 and bool(term[2]) and float(rew[2]) == 0.0
    assert torch.isfinite(obs["policy"]).all() and torch.isfinite(rew).all()
    assert not bool(info["episode"]["out"][0])  # flags of the diverged episode stay False


def test_registered_toy_passes_gymnasium_checks(line_id):
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make(f"rlkd/{line_id}")
    check_env(env.unwrapped, skip_render_check=True)
    vec = gymnasium.make_vec(f"rlkd/{line_id}", num_envs=3)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (3, 1)


def test_termination_takes_precedence_over_the_time_limit(line_id):
    # Every env leaves the line on its first step, which is also its last allowed step.
    env = rlkd.make(line_id, num_envs=4, seed=0, max_episode_steps=1, speed=10.0)
    env.reset(seed=0)
    _, _, term, trunc, info = env.step(torch.ones(4, 1))
    assert term.all() and not trunc.any()
    assert not info["episode"]["timeout"].any() and info["episode"]["out"].all()
