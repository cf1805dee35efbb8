"""AACD (agents/aacd.py): the teacher's critic and normalizer carried over bitwise, frozen for the
warm-up then trained, a fresh actor on policy + tactile, the DAgger term, refusals of unusable
teachers, and the student as an ordinary run. Tiny settings (8 envs, 32-unit nets, 8 steps)."""

from __future__ import annotations

import json
import re

import pytest
import torch

import rlkd
from rlkd.agents import get_agent
from rlkd.agents.aacd import CRITIC_PREFIXES
from rlkd.cli import main
from rlkd.nn.policy import ACTOR_PREFIXES
from rlkd.policies import load_policy
from rlkd.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

ENV = "TactilePegInsertion-v0"
N, T = 8, 8
TINY = ["--num-envs", str(N), "--set", "num_threads=1", "--no-video", "--no-progress"]


def _critic(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith(CRITIC_PREFIXES)}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny teacher: PPO whose actor and critic read the privileged ``critic`` group."""
    out = tmp_path_factory.mktemp("aacd") / "teacher"
    main(["train", ENV, "--agent", "ppo", "--ppo", "actor_groups=[critic]", f"num_steps={T}",
          "actor_hidden=[32]", "critic_hidden=[32]", "--steps", str(2 * N * T), "--out",
          str(out), *TINY])
    return out


def _build(agent: str, overrides: dict, seed: int = 0):
    env = rlkd.make(ENV, num_envs=N, seed=seed, num_threads=1)
    torch.manual_seed(seed)  # as the runner: network init from the run's seed
    alg, _ = get_agent(agent).build(env, overrides, seed=seed)
    return env, alg


def test_init_copies_the_teacher_critic_bitwise_and_builds_a_fresh_actor(teacher):
    ck = load_checkpoint(teacher / "checkpoints" / "last.pt")
    taught = _critic(ck["agent"]["policy"])
    assert any("norm.critic.mean" in k for k in taught) and float(
        taught["critic_encoder.norm.critic.count"]) > 0  # the normalizer has statistics
    ppo = {"num_steps": T, "actor_hidden": [32]}
    _, student = _build("aacd", {"ppo": ppo, "aacd": {"teacher": str(teacher)}})
    sd = student.policy.state_dict()
    assert _equal(_critic(sd), taught)  # weights and normalizer, bitwise
    assert student.policy.spec()["actor_groups"] == ["policy", "tactile"]
    assert student.policy.spec()["critic_groups"] == ["critic"]
    # Fresh actor: exactly what `ppo` builds with the same seed and layout, nothing learnt.
    _, scratch = _build("ppo", {"ppo": {**ppo, "actor_groups": ["policy", "tactile"],
                                        "critic_hidden": [32]}})
    fresh = {k: v for k, v in scratch.policy.state_dict().items() if k.startswith(ACTOR_PREFIXES)}
    assert _equal({k: v for k, v in sd.items() if k.startswith(ACTOR_PREFIXES)}, fresh)
    assert float(sd["actor_encoder.norm.tactile.count"]) == 0.0
    assert student.critic_frozen and not any(p.requires_grad
                                             for p in student.policy.critic.parameters())


def test_critic_frozen_in_warmup_then_trained_and_student_is_an_ordinary_run(teacher, tmp_path):
    out = tmp_path / "student"
    args = ["train", ENV, "--agent", "aacd", "--aacd", f"teacher={teacher}", "critic_warmup=1",
            "bc_coef=1", "bc_decay=0.5", "--ppo", f"num_steps={T}", "actor_hidden=[32]",
            "--checkpoint-every", "1", "--out", str(out), *TINY]
    main([*args, "--steps", str(2 * N * T)])
    taught = _critic(load_checkpoint(teacher / "checkpoints" / "last.pt")["agent"]["policy"])
    it1 = load_checkpoint(out / "checkpoints" / "model_000001.pt")["agent"]["policy"]
    it2 = load_checkpoint(out / "checkpoints" / "model_000002.pt")["agent"]["policy"]
    # Warm-up iteration: neither weights nor normalizer of the critic moved; the actor learnt.
    assert _equal(_critic(it1), taught)
    assert float(it1["actor_encoder.norm.tactile.count"]) == N * T
    assert not torch.equal(it1["actor.0.weight"], it2["actor.0.weight"])
    # After it: both change.
    assert not torch.equal(it2["critic.0.weight"], taught["critic.0.weight"])
    assert float(it2["critic_encoder.norm.critic.count"]) \
        == float(taught["critic_encoder.norm.critic.count"]) + N * T
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["aacd/critic_frozen"] for r in rows] == [1.0, 0.0]
    assert [r["aacd/bc_coef"] for r in rows] == [1.0, 0.5]
    assert all(r["aacd/bc_loss"] >= 0 for r in rows)
    # Resume continues the schedule (beta_2 = 0.25).
    main(["train", "--resume", str(out), "--steps", str(3 * N * T)])
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["aacd/bc_coef"] for r in rows] == [1.0, 0.5, 0.25]
    # An ordinary run: load_policy, play and export take it; the actor reads policy + tactile only.
    policy = load_policy(out)
    assert policy.agent == "aacd" and policy.obs_groups == ["policy", "tactile"]
    main(["play", str(out), "--num-envs", "2", "--steps", "4", "--set", "num_threads=1"])
    main(["export", str(out), "--out", str(tmp_path / "student.pt")])
    exported = load_policy(tmp_path / "student.pt")
    env = rlkd.make(ENV, num_envs=2, num_threads=1)
    obs, _ = env.reset(seed=1)
    obs = {g: obs[g] for g in ("policy", "tactile")}  # no privileged group needed
    assert torch.equal(policy(obs), exported(obs)) and policy(obs).shape == (2, 6)


def test_dagger_alone_moves_the_student_mean_to_the_teacher(teacher):
    env, alg = _build("aacd", {"ppo": {"num_steps": T, "actor_hidden": [32]},
                               "aacd": {"teacher": str(teacher), "rl": False}})
    critic0 = {k: v.clone() for k, v in _critic(alg.policy.state_dict()).items()}
    std0 = alg.policy.log_std.detach().clone()
    obs, _ = env.reset(seed=0)
    for _ in range(T):  # one rollout of the student (mean actions), then fixed data
        actions = alg.act(obs)
        obs, reward, term, trunc, info = env.step(actions)
        alg.process_env_step(obs, reward, term, trunc, info)
    alg.compute_returns(obs)
    st = alg.storage
    assert torch.equal(st.actions, st.mu)  # DAgger collects with the student's mean
    data = {g: v.flatten(0, 1) for g, v in st.obs.items()}
    assert {"policy", "tactile", "critic"} <= set(data)  # the teacher's group is stored too
    with torch.no_grad():
        losses = [float(alg.dagger_loss(data))]
    for _ in range(3):
        stats = alg.update()  # clear() rewinds the write position only: same data again
        with torch.no_grad():
            losses.append(float(alg.dagger_loss(data)))
    assert "losses/policy_loss" not in stats and stats["aacd/bc_coef"] == 1.0
    # Falls by 60x within two updates; once near zero (~1e-4) an update may wobble slightly.
    assert losses[1] < losses[0] and max(losses[1:]) < 0.5 * losses[0], losses
    # No RL: the critic and the action std are untouched.
    assert _equal(_critic(alg.policy.state_dict()), critic0)
    assert torch.equal(alg.policy.log_std.detach(), std0)


def _forged(teacher, tmp_path, name: str, edit) -> str:
    ck = load_checkpoint(teacher / "checkpoints" / "last.pt")
    payload = {k: v for k, v in ck.items() if k not in ("format", "version")}
    edit(payload)
    return str(save_checkpoint(tmp_path / name, payload))


def _other_groups(ck):
    ck["model"]["critic_groups"] = ["force"]
    ck["model"]["specs"]["force"] = {"shape": [3], "dtype": "float32"}


@pytest.mark.parametrize("case, message", [
    ("none", r"aacd needs a teacher: --teacher RUN \(or --aacd teacher=RUN\)"),
    ("missing", "file not found"),
    ("exported", "is an exported policy .actor only.; aacd copies the teacher's critic"),
    ("other_env", "was trained on AGVWarehouse-v0, this run is on TactilePegInsertion-v0"),
    ("groups", "its critic reads observation group 'force', which this env lacks"),
    ("activation", "the teacher's critic was built with activation='elu'"),
])
def test_unusable_teachers_are_refused_in_one_line(teacher, tmp_path, case, message):
    extra: list[str] = []
    if case == "missing":
        source = str(tmp_path / "nope")
    elif case == "exported":
        source = str(tmp_path / "teacher_policy.pt")
        main(["export", str(teacher), "--out", source])
    elif case == "other_env":
        source = _forged(teacher, tmp_path, "agv.pt",
                         lambda ck: ck["config"].update(env="AGVWarehouse-v0"))
    elif case == "groups":
        source = _forged(teacher, tmp_path, "groups.pt", _other_groups)
    else:
        source = str(teacher)
        extra = ["activation=tanh"] if case == "activation" else []
    aacd = [] if case == "none" else ["--aacd", f"teacher={source}"]
    with pytest.raises(SystemExit) as e:
        main(["train", ENV, "--agent", "aacd", *aacd, "--ppo", f"num_steps={T}", *extra,
              "--steps", str(N * T), "--out", str(tmp_path / "s"), *TINY])
    text = str(e.value)
    assert text.startswith("error: ") and "\n" not in text and e.value.code == 2
    assert re.search(message, text), text
    assert not (tmp_path / "s").exists()  # refused before the run directory is written
    if case in ("exported", "other_env"):  # the library raises CheckpointError itself
        with pytest.raises(CheckpointError):
            _build("aacd", {"aacd": {"teacher": source}})


def test_rlkd_list_agents_shows_aacd(capsys):
    main(["list", "agents"])
    text = capsys.readouterr().out
    assert "aacd: AACD" in text and "--aacd (rlkd.agents.aacd.AACDConfig)" in text
    assert "critic_warmup = 20" in text and "actor_groups = ('policy', 'tactile')" in text


def test_teacher_flag_is_the_sections_teacher_field():
    import tyro

    from rlkd.train.cli import config_from_args, train_args_class

    parse = lambda *a: config_from_args(tyro.cli(train_args_class(), args=[ENV, *a]))  # noqa: E731
    short = parse("--agent", "aacd", "--teacher", "runs/t", "--aacd", "bc_coef=0.5")
    long = parse("--agent", "aacd", "--aacd", "teacher=runs/t", "bc_coef=0.5")
    assert short.agent_cfg == long.agent_cfg == {"aacd": {"teacher": "runs/t", "bc_coef": 0.5}}
    with pytest.raises(SystemExit, match="agent 'ppo' takes no teacher"):
        parse("--agent", "ppo", "--teacher", "runs/t")
    with pytest.raises(SystemExit, match="disagree"):
        parse("--agent", "aacd", "--teacher", "runs/t", "--aacd", "teacher=runs/u")
