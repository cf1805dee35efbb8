"""Observation groups of HumanoidMotion-v0: ``proprio`` (what the robot senses) and ``reference``
(privileged future frames) concatenate bitwise to ``policy``; the named layout covers every group
and its parts hold what their names say; ``policy`` is unchanged from the recorded fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rlkd
from rlkd.envs.humanoid import metrics

FIXTURE = Path(__file__).resolve().parent / "data" / "expert_walk_actions.pt"


def _assert_split(obs: dict[str, torch.Tensor], where: str) -> None:
    joined = torch.cat((obs["proprio"], obs["reference"]), -1)
    assert torch.equal(joined, obs["policy"]), where


@pytest.mark.parametrize("obs_noise_std", [0.0, 0.05])
def test_policy_is_exactly_proprio_then_reference(obs_noise_std):
    # A high fall threshold and random absolute actions end episodes within a few steps, so the
    # final_obs rows and the autoreset rows (observed separately) are covered too.
    env = rlkd.make("HumanoidMotion-v0", num_envs=6, seed=1, fall_height=0.8,
                    obs_noise_std=obs_noise_std)
    obs, _ = env.reset(seed=1)
    _assert_split(obs, "reset")
    n_policy = env.observation_spaces["policy"].shape[0]
    gen = torch.Generator().manual_seed(0)
    finals = 0
    for t in range(30):
        obs, _, _, _, info = env.step(torch.rand(6, env.act_dim, generator=gen) * 2 - 1)
        _assert_split(obs, f"step {t}")
        if "final_obs" in info:
            finals += 1
            _assert_split(info["final_obs"], f"final_obs at step {t}")
        clean = obs["critic"][:, :n_policy]
        # critic opens with the noise-free policy: equal without noise, equal on the (never
        # noised) reference and previous action with it.
        if obs_noise_std == 0.0:
            assert torch.equal(clean, obs["policy"])
        else:
            n_prop = obs["proprio"].shape[1]
            assert torch.equal(clean[:, n_prop:], obs["reference"])
            assert not torch.equal(clean[:, :n_prop], obs["proprio"])
            prev = env.observation_layout["proprio"]["prev_action"]
            assert torch.equal(clean[:, prev], obs["proprio"][:, prev])
    assert finals > 0
    env.close()


def test_observation_layout_names_every_part_of_every_group():
    env = rlkd.make("HumanoidMotion-v0", num_envs=2, seed=0)
    layout = env.observation_layout              # validated: contiguous, covers each group
    assert set(layout) == set(env.observation_spaces) == {"policy", "proprio", "reference",
                                                          "critic", "teacher"}
    assert layout["teacher"] == layout["policy"]  # the same parts; only prev_action's mode differs
    policy, proprio, reference = layout["policy"], layout["proprio"], layout["reference"]
    n_prop = env.observation_spaces["proprio"].shape[0]
    # policy's parts are proprio's then reference's, same names, reference shifted by proprio.
    assert list(policy) == list(proprio) + list(reference)
    assert all(policy[k] == proprio[k] for k in proprio)
    assert all(policy[k] == slice(s.start + n_prop, s.stop + n_prop) for k, s in reference.items())
    assert list(proprio) == ["pelvis_height", "pelvis_rot6", "pelvis_lin_vel", "pelvis_ang_vel",
                             "joint_pos", "joint_vel", "end_effectors", "prev_action"]
    assert [k for k in reference if k.endswith("_joint_pos")] == [
        f"ref{k}_joint_pos" for k in env.cfg.future_steps]
    assert list(layout["critic"])[:len(policy)] == list(policy)
    assert list(layout["critic"])[-2:] == ["foot_forces", "phase"]
    env.close()
    # Repeated offsets still get unique names (the index disambiguates).
    env = rlkd.make("HumanoidMotion-v0", num_envs=1, future_steps=(2, 2))
    names = list(env.observation_layout["reference"])
    assert len(names) == len(set(names)) == 8
    env.close()


def test_layout_parts_hold_what_their_names_say():
    env = rlkd.make("HumanoidMotion-v0", num_envs=4, seed=2)
    env.reset(seed=2)
    actions = torch.rand(4, env.act_dim, generator=torch.Generator().manual_seed(1)) * 0.4 - 0.2
    obs, *_ = env.step(actions)
    part = {g: {k: obs[g][:, s] for k, s in parts.items()}
            for g, parts in env.observation_layout.items()}
    qpos = env.sim.qpos.float()
    assert torch.equal(part["proprio"]["pelvis_height"][:, 0], qpos[:, 2])
    assert torch.equal(part["proprio"]["joint_pos"], qpos[:, 7:])
    assert torch.equal(part["proprio"]["prev_action"], actions)
    first = env.cfg.future_steps[0]
    ahead = env._reference(None, torch.tensor([first * env.dt])).joint_pos
    assert torch.equal(part["reference"][f"ref{first}_joint_pos"], ahead)
    rot6 = part["proprio"]["pelvis_rot6"].view(4, 2, 3)
    assert torch.allclose(rot6.norm(dim=-1), torch.ones(4, 2), atol=1e-5)   # two unit columns
    phase = part["critic"]["phase"]
    assert torch.allclose(phase.square().sum(-1), torch.ones(4), atol=1e-5)
    env.close()


def test_reset_policy_observation_matches_the_recorded_fixture():
    fixture = torch.load(FIXTURE, weights_only=True)
    assert fixture["policy"].shape == (64, 268) and fixture["actions"].shape == (64, 28)
    env = rlkd.make("HumanoidMotion-v0", num_envs=8, seed=3, action_mode="residual")
    obs, _ = env.reset(seed=3)
    assert torch.allclose(obs["policy"], fixture["policy"][:8], rtol=0.0, atol=1e-6)
    _assert_split(obs, "fixture reset")
    env.close()


def test_fall_termination_is_the_metrics_fall_on_the_pelvis_height():
    env = rlkd.make("HumanoidMotion-v0", num_envs=6, seed=4, fall_height=0.8)
    env.reset(seed=4)
    height = env.observation_layout["critic"]["pelvis_height"]
    gen = torch.Generator().manual_seed(2)
    falls = 0
    for _ in range(30):
        _, _, _, _, info = env.step(torch.rand(6, env.act_dim, generator=gen) * 2 - 1)
        if "episode" in info:
            h = info["final_obs"]["critic"][:, height].squeeze(-1)
            expected = metrics.fallen(h, env.cfg.fall_height)
            assert torch.equal(info["episode"]["fall"], expected)
            falls += int(expected.sum())
    assert falls > 0
    env.close()
