"""The training core: agents registered by name, multi-group models with uint8 image groups,
``load_policy`` without env or trainer, old checkpoints, safe loading."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import rlkd
from rlkd.core.env import BatchedEnv
from rlkd.core.spaces import action_box, box

DATA = Path(__file__).parent / "data"


# ---------------------------------------------------------------------------------- toy agent
@dataclass
class ToyPGConfig:
    learning_rate: float = 3e-3
    """Adam learning rate."""
    num_steps: int = 8
    """Rollout length."""


class ToyPG:
    """REINFORCE with per-rollout returns-to-go: a throwaway agent written against the
    registry's contract only (it never touches the runner or the CLI)."""

    def __init__(self, env, cfg: ToyPGConfig, seed: int):
        from rlkd.nn import ActorCritic, group_specs

        self.cfg, self.num_steps_per_env = cfg, cfg.num_steps
        self.policy = ActorCritic(group_specs(env.observation_spaces), ["policy"], None,
                                  env.act_dim, actor_hidden=(16,), init_noise_std=0.5)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.learning_rate)
        self.gen = torch.Generator().manual_seed(seed)
        self.obs, self.actions, self.rewards, self.dones = [], [], [], []

    def synced_modules(self):
        return [self.policy]

    def act(self, obs):
        self.policy.update_normalizers(obs)
        mu, sigma = self.policy.dist_params(obs)
        a = mu + sigma * torch.randn(mu.shape, generator=self.gen)
        self.obs.append({"policy": obs["policy"].clone()})
        self.actions.append(a)
        return a

    def process_env_step(self, obs, reward, terminated, truncated, info):
        self.rewards.append(reward.float())
        self.dones.append((terminated | truncated).float())

    def compute_returns(self, last_obs):
        ret, self.returns = torch.zeros_like(self.rewards[0]), []
        for r, d in zip(reversed(self.rewards), reversed(self.dones)):
            ret = r + 0.9 * ret * (1 - d)
            self.returns.insert(0, ret)

    def update(self):
        obs = {"policy": torch.cat([o["policy"] for o in self.obs])}
        mu, sigma = self.policy.dist_params(obs)
        a, ret = torch.cat(self.actions), torch.cat(self.returns)
        logp = torch.distributions.Normal(mu, sigma).log_prob(a).sum(-1)
        loss = -(logp * (ret - ret.mean()) / (ret.std() + 1e-8)).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.obs, self.actions, self.rewards, self.dones = [], [], [], []
        return {"losses/toy_pg": loss.item()}

    def state_dict(self):
        return {"policy": self.policy.state_dict(), "opt": self.opt.state_dict(),
                "gen": self.gen.get_state()}

    def load_state_dict(self, sd):
        self.policy.load_state_dict(sd["policy"])
        self.opt.load_state_dict(sd["opt"])
        self.gen.set_state(sd["gen"])


@pytest.fixture
def toy_agent():
    from rlkd.agents import register_agent, unregister_agent

    register_agent("toy-pg", lambda env, cfgs, seed: ToyPG(env, cfgs["toy"], seed),
                   sections={"toy": ToyPGConfig}, description="REINFORCE (test only)")
    yield "toy-pg"
    unregister_agent("toy-pg")


def test_registered_toy_agent_trains_through_rlkd_train(tmp_path, toy_agent, capsys):
    import json

    from rlkd.cli import main
    from rlkd.policies import load_policy

    main(["list", "agents"])
    listing = capsys.readouterr().out
    assert "toy-pg: REINFORCE (test only)" in listing and "learning_rate = 0.003" in listing
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0 and "--toy" in capsys.readouterr().out
    out = tmp_path / "run"
    main(["train", "AGVWarehouse-v0", "--agent", "toy-pg", "--toy", "learning_rate=0.01",
          "num_steps=4", "--num-envs", "8", "--steps", "96", "--out", str(out), "--no-video",
          "--set", "num_layouts=2", "layout_seed=0"])
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(math.isfinite(r["losses/toy_pg"]) for r in rows)
    assert "learning_rate: 0.01" in (out / "config.yaml").read_text()
    policy = load_policy(out)
    assert policy.agent == "toy-pg" and policy.obs_groups == ["policy"]
    # A section another agent owns is refused by name.
    with pytest.raises(SystemExit, match="no --ppo section"):
        main(["train", "--agent", "toy-pg", "--ppo", "gamma=0.9", "--out", str(tmp_path / "x")])


def test_unknown_agent_is_named():
    from rlkd.agents import get_agent

    with pytest.raises(ValueError, match="unknown agent 'ppo-rndd'.*ppo-rnd"):
        get_agent("ppo-rndd")


# ---------------------------------------------------------------------------------- image env
@dataclass
class DotConfig:
    max_episode_steps: int = 16
    image_size: int = 12


class DotEnv(BatchedEnv):
    """A point in the unit square must reach a target it sees only in a uint8 image."""

    def __init__(self, cfg, num_envs=1, device="cpu", seed=0, validate_actions=True):
        super().__init__(cfg, num_envs, device, seed, validate_actions)
        self.pos = torch.zeros(num_envs, 2)
        self.target = torch.zeros(num_envs, 2)
        s = cfg.image_size
        self.observation_spaces = {"policy": box((2,)), "critic": box((4,)),
                                   "image": box((1, s, s), low=0, high=255, dtype="uint8")}
        self.action_space = action_box(2)

    def _reset_idx(self, env_ids):
        self.pos[env_ids] = self.rng.uniform(env_ids, 2, 0.0, 1.0)
        self.target[env_ids] = self.rng.uniform(env_ids, 2, 0.0, 1.0)

    def _step_sim(self, actions):
        self.pos = (self.pos + 0.1 * actions).clamp(0.0, 1.0)

    def _observe(self, env_ids=None):
        ids = slice(None) if env_ids is None else env_ids
        pos, tgt = self.pos[ids], self.target[ids]
        s = self.cfg.image_size
        pix = (tgt * (s - 1)).round().long()
        img = torch.zeros(pos.shape[0], 1, s * s, dtype=torch.uint8)
        img.scatter_(2, (pix[:, 1] * s + pix[:, 0])[:, None, None], 255)
        return {"policy": pos.clone(), "critic": torch.cat([pos, tgt], -1),
                "image": img.view(-1, 1, s, s)}

    def _evaluate(self):
        d = (self.pos - self.target).norm(dim=-1)
        return -d, torch.zeros_like(d, dtype=torch.bool), {"dist": -d}, {"success": d < 0.1}


@pytest.fixture
def dot_id():
    import gymnasium

    from rlkd.core.registry import _REGISTRY

    rlkd.register("TestDot-v0", f"{__name__}:DotEnv", DotConfig, description="test dot")
    yield "TestDot-v0"
    _REGISTRY.pop("TestDot-v0", None)
    gymnasium.registry.pop("rlkd/TestDot-v0", None)


def test_actor_on_flat_plus_uint8_image_trains_and_stores_uint8(tmp_path, dot_id):
    from rlkd.policies import load_policy
    from rlkd.train import OnPolicyRunner, TrainConfig

    ppo = {"num_steps": 8, "num_epochs": 2, "num_minibatches": 2, "actor_groups": ["policy", "image"],
           "actor_hidden": [32], "critic_hidden": [32], "image_features": 16}
    cfg = TrainConfig(env=dot_id, agent="ppo", num_envs=16, steps=16 * 8 * 3, seed=0,
                      out=str(tmp_path / "run"), video=False, progress=False,
                      agent_cfg={"ppo": ppo})
    runner = OnPolicyRunner(cfg)
    storage = runner.alg.storage
    assert storage.obs["image"].dtype == torch.uint8
    assert storage.obs["policy"].dtype == torch.float32
    sizes = storage.nbytes()
    assert sizes["image"] == 8 * 16 * 1 * 12 * 12  # one byte per pixel, not four
    cnn = runner.alg.policy.actor_encoder.cnn["image"]
    before = [p.detach().clone() for p in cnn.parameters()]
    last = runner.learn()
    assert math.isfinite(last["losses/value_loss"]) and math.isfinite(last["losses/policy_loss"])
    assert runner.obs["image"].dtype == torch.uint8 and int(storage.obs["image"].max()) == 255
    assert any(not torch.equal(a, b) for a, b in zip(before, cnn.parameters()))  # it learns
    policy = load_policy(tmp_path / "run")
    assert policy.obs_groups == ["policy", "image"]
    env = rlkd.make(dot_id, num_envs=4)
    obs, _ = env.reset(seed=1)
    act = policy(obs)
    assert act.shape == (4, 2) and act.abs().max() <= 1
    runner.alg.policy.eval()
    with torch.no_grad():
        ref = runner.alg.policy.act_deterministic(obs).clamp(-1, 1)
    assert torch.equal(act, ref)
    with pytest.raises(KeyError, match="image"):
        policy({"policy": obs["policy"]})


def test_image_encoder_scales_uint8_in_the_model():
    from rlkd.nn import ObservationEncoder

    specs = {"state": {"shape": [3], "dtype": "float32"},
             "tactile_image": {"shape": [2, 3, 20, 15], "dtype": "uint8"}}
    enc = ObservationEncoder(specs, ["state", "tactile_image"], image_features=8)
    assert enc.out_dim == 3 + 8 and enc.cnn["tactile_image"].conv[0].in_channels == 6
    img = torch.randint(0, 256, (5, 2, 3, 20, 15), dtype=torch.uint8)
    obs = {"state": torch.randn(5, 3), "tactile_image": img}
    out = enc(obs)
    as_float = enc.cnn["tactile_image"](img.reshape(5, 6, 20, 15).float() / 255.0)
    assert torch.equal(out[:, 3:], as_float)


# ---------------------------------------------------------------------------------- loading
def test_load_policy_of_the_shipped_expert_builds_no_env(monkeypatch):
    from rlkd.policies import load_policy

    def refuse(*args, **kwargs):
        raise AssertionError("load_policy built an env")

    monkeypatch.setattr(BatchedEnv, "__init__", refuse)
    monkeypatch.setattr(rlkd.core.registry, "make", refuse)
    policy = load_policy("expert:humanoid-walk")
    assert policy.env_id == "HumanoidMotion-v0" and policy.action_mode == "residual"
    assert policy.obs_groups == ["policy"] and policy.model.critic is None
    rec = torch.load(DATA / "expert_walk_actions.pt", weights_only=True)
    # Recorded 8 envs per step on an Intel CPU: the same batch size gives the same matmul
    # blocking, bitwise there; another CPU's SIMD kernels round differently (3.6e-7 on an AMD
    # EPYC), so the check is the actions of before the new model to float32 rounding.
    got = torch.cat([policy({"policy": rec["policy"][i:i + 8]}) for i in range(0, 64, 8)])
    torch.testing.assert_close(got, rec["actions"], rtol=0, atol=2e-6)
    assert not got.requires_grad


def test_old_format_checkpoint_loads_resumes_and_initialises(tmp_path):
    from rlkd.policies import load_policy
    from rlkd.train import OnPolicyRunner

    path = DATA / "ckpt_v1_ppo_rdd.pt"
    rec = torch.load(DATA / "ckpt_v1_ppo_rdd_actions.pt", weights_only=True)
    policy = load_policy(path)
    # Recorded on an Intel CPU; to float32 rounding elsewhere (see the test above).
    torch.testing.assert_close(policy({"policy": rec["policy"]}), rec["actions"], rtol=0,
                               atol=2e-6)
    runner = OnPolicyRunner.resume(tmp_path / "resumed", steps=8 * 24 * 3, checkpoint=path)
    assert runner.iteration == 2 and runner.cfg.section("intrinsic")["embed_dim"] == 8
    runner.alg.policy.eval()
    with torch.no_grad():
        values = runner.alg.policy.value({"critic": rec["critic"]})
    torch.testing.assert_close(values, rec["values"], rtol=0, atol=2e-6)
    runner.cfg.progress = False
    runner.learn()
    assert runner.iteration == 3
    # Export of the old checkpoint gives a policy file that acts the same.
    from rlkd.train.export import export_policy

    small = load_policy(export_policy(path, tmp_path / "small.pt"))
    torch.testing.assert_close(small({"policy": rec["policy"]}), rec["actions"], rtol=0,
                               atol=2e-6)


def test_crafted_pickle_is_refused_without_running_it(tmp_path):
    from rlkd.policies import load_policy
    from rlkd.train import CheckpointError

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "policy.pt"
    torch.save({"format": "rlkd-checkpoint", "version": 2, "config": Payload(), "agent": {}}, bad)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_policy(bad)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="file not found"):
        load_policy(tmp_path / "nowhere.pt")


def test_ppo_rdd_reproduces_the_losses_of_the_pre_registry_trainer(tmp_path, one_thread):
    """Golden numbers of commit 8fb2971 (before agents were registered and models read groups),
    same seed, one torch thread: the refactor changed the structure, not the math."""
    import json

    from rlkd.train import OnPolicyRunner, TrainConfig

    cfg = TrainConfig(agent="ppo-rdd", num_envs=64, steps=64 * 16 * 2, seed=0,
                      out=str(tmp_path / "run"), video=False, progress=False,
                      agent_cfg={"ppo": {"num_steps": 16}})
    OnPolicyRunner(cfg).learn()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    golden = [(-0.025953, 2.728251, 27.061743), (-0.009494, 0.826081, 18.377979)]
    for row, (pol, val, intr) in zip(rows, golden):
        assert row["losses/policy_loss"] == pytest.approx(pol, abs=2e-6)
        assert row["losses/value_loss"] == pytest.approx(val, abs=2e-6)
        assert row["intrinsic/reward_raw"] == pytest.approx(intr, abs=2e-5)
