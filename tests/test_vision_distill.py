"""Vision distillation (agents/vision_distill.py, `rlkd distill`): the beta mixture executes the
teacher's absolute actions, per-clip teachers label their own rows, the aggregated set grows with
student-visited states and is capped, the DAgger loss falls, the critic learns during DAgger and
fine-tuning starts from the student (actor frozen, small std), exact resume, named refusals, CLI.
Tiny settings: 8 envs, 8-step rollouts, HumanoidMotion-v0 with the ray camera on one thread."""

from __future__ import annotations

import json
import re

import pytest
import torch

import rlkd
from rlkd.agents import get_agent
from rlkd.agents.vision_distill import LABEL
from rlkd.cli import main
from rlkd.policies import expert_path, load_policy
from rlkd.storage import AggregatedDataset
from rlkd.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

ENV = "HumanoidMotion-v0"
N, T = 8, 8
CLIPS = "walk@1.0,walk,walk@1.3"
EXPERT = "expert:humanoid-walk"
ENV_KW = dict(num_threads=1, vision="rays", motion=CLIPS)
TINY_PPO = {"num_steps": T, "actor_hidden": [64], "critic_hidden": [64]}
TINY = ["--num-envs", str(N), "--no-video", "--no-progress"]
SET = ["num_threads=1", f"motion={CLIPS}", f"ppo.num_steps={T}", "ppo.actor_hidden=[64]",
       "ppo.critic_hidden=[64]"]


def _build(distill: dict, seed: int = 0, n: int = N, ppo: dict | None = None, **env_kw):
    env = rlkd.make(ENV, num_envs=n, seed=seed, **{**ENV_KW, **env_kw})
    torch.manual_seed(seed)  # as the runner: network init from the run's seed
    alg, _ = get_agent("vision-distill").build(
        env, {"ppo": {**TINY_PPO, **(ppo or {})}, "distill": {"teacher": EXPERT, **distill}},
        seed=seed)
    return env, alg


def _iteration(env, alg, obs, record=None):
    """One rollout + update of ``alg`` on ``env`` (the runner's loop); ``record(obs, actions)``
    sees each step before it is taken."""
    for _ in range(alg.num_steps_per_env):
        actions = alg.act(obs)
        if record is not None:
            record(obs, actions)
        obs, r, term, trunc, info = env.step(actions)
        alg.process_env_step(obs, r, term, trunc, info)
    alg.compute_returns(obs)
    return obs, alg.update()


def _expert_labels(env, expert, obs):
    """The residual expert on the env's ``teacher`` group, made absolute (the interface)."""
    return env.to_absolute(expert({"policy": obs["teacher"]}), expert.action_mode)


# ---------------------------------------------------------------------------- DAgger mechanics
def test_beta_one_executes_the_teachers_absolute_actions_beta_zero_the_students_mean(one_thread):
    expert = load_policy(EXPERT)
    for beta0 in (1.0, 0.0):
        env, alg = _build({"beta0": beta0, "beta_decay": 1.0, "dagger_steps": 10 * N * T})
        obs, _ = env.reset(seed=0)
        for _ in range(T):
            teacher = _expert_labels(env, expert, obs)
            actions = alg.act(obs)  # (updates the normalizer first, then acts)
            want = teacher if beta0 else alg.policy.act_deterministic(obs)
            assert torch.equal(actions, want), beta0
            obs, *_ = env.step(actions)
        # Every step's label is the expert's absolute action, whoever acted.
        assert alg.storage.obs[LABEL].abs().max() <= 1.0 and alg.storage.obs[LABEL].std() > 0.05
    # The expert's absolute labels track (its own env: ~31 mm): beta=1 is the expert's run.
    env, alg = _build({"beta0": 1.0, "beta_decay": 1.0, "dagger_steps": 10 * N * T})
    obs, _ = env.reset(seed=0)
    mpjpe = []
    for _ in range(3 * T):
        obs, _, term, _, info = env.step(alg.act(obs))
        mpjpe.append(info["metrics"]["mpjpe"])
        assert not term.any()
    assert torch.stack(mpjpe).mean() < 80.0


def test_beta_mixture_is_per_env_and_fixed_for_the_iteration(one_thread):
    env, alg = _build({"beta0": 0.5, "beta_decay": 1.0, "dagger_steps": 10 * N * T}, n=32)
    obs, _ = env.reset(seed=0)
    masks = []

    def record(o, actions):
        label = alg.storage.obs[LABEL][alg.storage.step]
        mu = alg.storage.mu[alg.storage.step]
        m = alg.teacher_mask
        assert torch.equal(actions[m], label[m]) and torch.equal(actions[~m], mu[~m])
        masks.append(m.clone())

    for _ in range(2):
        obs, stats = _iteration(env, alg, obs, record)
    assert all(torch.equal(m, masks[0]) for m in masks[:T])  # drawn once per iteration
    assert not torch.equal(masks[0], masks[T])  # and again for the next
    assert 0 < masks[0].sum() < 32 and stats["distill/teacher_fraction"] == masks[T].float().mean()


def _other_expert(tmp_path) -> str:
    """The shipped expert with perturbed actor weights, saved as another teacher file."""
    ck = load_checkpoint(expert_path("humanoid-walk"))
    payload = {k: v for k, v in ck.items() if k not in ("format", "version")}
    w = payload["agent"]["policy"]
    w["actor.0.bias"] = w["actor.0.bias"] + 0.5
    return str(save_checkpoint(tmp_path / "other.pt", payload))


def test_each_clip_is_labelled_by_its_own_teacher(one_thread, tmp_path):
    other = _other_expert(tmp_path)
    env, alg = _build({"teacher": f"{EXPERT},walk={other}", "beta0": 0.0}, n=16)
    obs, _ = env.reset(seed=0)
    names = env.motions.names
    walk = env.clip_ids == names.index("walk")
    assert 0 < walk.sum() < 16  # both teachers have rows
    a, b = load_policy(EXPERT), load_policy(other)
    want = torch.where(walk[:, None], _expert_labels(env, b, obs), _expert_labels(env, a, obs))
    got = alg.teachers.labels(obs)
    # (each teacher runs on its rows alone: the same up to the float order of a smaller matmul)
    assert torch.allclose(got, want, atol=1e-6)
    assert (got[walk] - _expert_labels(env, a, obs)[walk]).abs().max() > 0.05


def test_aggregated_set_grows_with_student_states_and_is_capped(one_thread):
    cap = 2 * N * T + N * T // 2
    env, alg = _build({"beta0": 0.0, "capacity": cap, "dagger_steps": 10 * N * T})
    obs, _ = env.reset(seed=0)
    seen, labels = [], []

    def record(o, actions):
        seen.append(o["student"].clone())
        labels.append(alg.storage.obs[LABEL][alg.storage.step].clone())

    sizes = []
    for _ in range(3):
        obs, stats = _iteration(env, alg, obs, record)
        sizes.append(stats["distill/dataset_size"])
    assert sizes == [N * T, 2 * N * T, cap] and alg.dataset.total_added == 3 * N * T
    rows = alg.dataset.order()  # oldest first: the last `cap` student states, in order
    assert torch.equal(alg.dataset.obs["student"][rows], torch.cat(seen)[-cap:])
    assert torch.equal(alg.dataset.labels[rows], torch.cat(labels)[-cap:])


def test_aggregated_dataset_ring_and_state():
    d = AggregatedDataset(5, {"x": ((2,), torch.float32), "img": ((1, 2, 2), torch.uint8)}, 3)
    x = torch.arange(14.0).view(7, 2)
    img = torch.arange(28, dtype=torch.uint8).view(7, 1, 2, 2)
    d.add({"x": x[:3], "img": img[:3]}, x[:3, :1].repeat(1, 3))
    d.add({"x": x[3:], "img": img[3:]}, x[3:, :1].repeat(1, 3))
    assert d.size == 5 and d.total_added == 7 and torch.equal(d.obs["x"][d.order()], x[2:])
    e = AggregatedDataset(5, {"x": ((2,), torch.float32), "img": ((1, 2, 2), torch.uint8)}, 3)
    e.load_state_dict(d.state_dict())
    assert torch.equal(e.obs["img"][e.order()], img[2:]) and e.obs["img"].dtype == torch.uint8
    big = AggregatedDataset(4, {"x": ((2,), torch.float32)}, 3)
    big.add({"x": x}, x[:, :1].repeat(1, 3))  # more than the ring: its newest samples
    assert torch.equal(big.obs["x"][big.order()], x[3:])
    g = torch.Generator().manual_seed(0)
    assert sum(len(mb["labels"]) for mb in big.minibatches(3, 2, g)) == 8
    with pytest.raises(ValueError, match="capacity 5 in the checkpoint, 4 configured"):
        big.load_state_dict(d.state_dict())


def test_dagger_loss_falls_and_the_critic_learns_while_the_std_waits(one_thread):
    env, alg = _build({"beta_decay": 0.7, "dagger_minibatch_size": 128,
                       "dagger_steps": 10 * 16 * T},
                      n=16, ppo={"actor_hidden": [256, 128, 64]})
    critic0 = alg.policy.critic[0].weight.detach().clone()
    std0 = alg.policy.log_std.detach().clone()
    obs, _ = env.reset(seed=0)
    rows = []
    for _ in range(6):
        obs, stats = _iteration(env, alg, obs)
        rows.append(stats)
    loss = [r["distill/dagger_loss"] for r in rows]
    assert loss[-1] < 0.5 * loss[0] and max(loss[1:]) < loss[0], loss
    assert rows[-1]["distill/label_mse"] < rows[0]["distill/label_mse"]  # on new states too
    assert not torch.equal(alg.policy.critic[0].weight, critic0)  # the privileged critic learnt
    assert torch.equal(alg.policy.log_std.detach(), std0)  # the std waits for fine-tuning
    assert torch.allclose(std0.exp(), torch.full_like(std0, 0.02))


def test_finetuning_starts_from_the_student_with_the_actor_frozen(one_thread):
    env, alg = _build({"dagger_steps": 2 * N * T, "actor_freeze_updates": 1, "bc_coef": 0.5,
                       "bc_decay": 0.5})
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        obs, stats = _iteration(env, alg, obs)
    assert stats["distill/stage"] == 0.0 and alg.dataset is None  # freed at the switch
    actor = {k: v.clone() for k, v in alg.policy.state_dict().items()
             if k.startswith(("actor", "log_std"))}
    critic = alg.policy.critic[0].weight.detach().clone()
    obs, stats = _iteration(env, alg, obs)  # fine-tuning update 1: actor frozen
    assert stats["distill/stage"] == 1.0 and stats["distill/actor_frozen"] == 1.0
    assert "losses/policy_loss" not in stats and stats["distill/bc_coef"] == 0.0
    now = alg.policy.state_dict()
    assert all(torch.equal(now[k], v) for k, v in actor.items())  # weights, std, normalizer
    assert not torch.equal(alg.policy.critic[0].weight, critic)
    obs, stats = _iteration(env, alg, obs)  # then PPO + the decaying DAgger term
    assert stats["distill/actor_frozen"] == 0.0 and stats["distill/bc_coef"] == 0.5
    assert stats["distill/bc_loss"] > 0 and "losses/policy_loss" in stats
    assert not torch.equal(alg.policy.state_dict()["actor.0.weight"], actor["actor.0.weight"])
    obs, stats = _iteration(env, alg, obs)
    assert stats["distill/bc_coef"] == 0.25


def _eval_mpjpe(policy, seed: int, n: int = 32, steps: int = 90) -> float:
    env = rlkd.make(ENV, num_envs=n, seed=seed, **ENV_KW)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(steps):
        obs, _, _, _, info = env.step(policy(env, obs))
        out.append(info["metrics"]["mpjpe"])
    return float(torch.stack(out).mean())


@pytest.mark.slow
def test_finetuning_starts_within_10_percent_of_the_dagger_students_mpjpe(one_thread):
    env, alg = _build({"dagger_steps": 40 * 16 * 16, "beta_decay": 0.85,
                       "dagger_minibatch_size": 512, "capacity": 20_000}, n=16,
                      ppo={"num_steps": 16, "actor_hidden": [256, 128, 64]})
    obs, _ = env.reset(seed=0)
    while alg.in_dagger:
        obs, _ = _iteration(env, alg, obs)
    alg.policy.eval()
    dagger = _eval_mpjpe(lambda e, o: alg.policy.act_deterministic(o).clamp(-1, 1), seed=7)
    # The fine-tuning policy as it starts: the frozen student's samples at the default std.
    gen = torch.Generator().manual_seed(3)
    std = alg.policy.log_std.exp()
    assert torch.allclose(std, torch.full_like(std, 0.02))

    def finetune(e, o):
        mu = alg.policy.act_deterministic(o)
        return (mu + std * torch.randn(mu.shape, generator=gen)).clamp(-1, 1)

    start = _eval_mpjpe(finetune, seed=7)
    assert abs(start - dagger) <= 0.1 * dagger, (start, dagger)
    # ... and the actor is frozen for its first update, so the first rollouts' policy is that one.
    assert alg.actor_frozen


# ---------------------------------------------------------------------------- runs and resume
def _distill(out, steps: int, *extra: str, resume: bool = False):
    if resume:
        return main(["distill", "--out", str(out), "--resume", "--steps", str(steps),
                     "--no-progress", "--no-video"])
    return main(["distill", ENV, "--teacher", EXPERT, "--student", "rays", "--steps", str(steps),
                 "--out", str(out), "--checkpoint-every", "1", *TINY, "--set", *SET, *extra])


def test_exact_resume_and_the_run_is_an_ordinary_run(one_thread, tmp_path):
    extra = [f"distill.dagger_steps={2 * N * T}", "distill.actor_freeze_updates=0",
             "distill.bc_coef=0.5", "distill.dagger_minibatch_size=16"]
    _distill(tmp_path / "a", 3 * N * T, *extra)
    _distill(tmp_path / "b", N * T, *extra)  # stops mid-DAgger: the dataset is in the checkpoint
    ck = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert ck["agent"]["distill"]["dataset"]["size"] == N * T
    _distill(tmp_path / "b", 3 * N * T, resume=True)
    for name in ("model_000002.pt", "last.pt"):  # DAgger on the restored set, then PPO
        a = load_checkpoint(tmp_path / "a" / "checkpoints" / name)["agent"]
        b = load_checkpoint(tmp_path / "b" / "checkpoints" / name)["agent"]
        assert a["policy"].keys() == b["policy"].keys()
        assert all(torch.equal(a["policy"][k], b["policy"][k]) for k in a["policy"]), name
    assert a["distill"]["dataset"] is None  # fine-tuning checkpoints are small
    rows = [[json.loads(x) for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
            for r in "ab"]
    keys = ("distill/dagger_loss", "distill/bc_loss", "losses/value_loss", "losses/policy_loss")
    assert [[r.get(k) for k in keys] for r in rows[0]] == [[r.get(k) for k in keys]
                                                            for r in rows[1]]
    assert [r["distill/stage"] for r in rows[0]] == [0.0, 0.0, 1.0]
    cfg = (tmp_path / "a" / "config.yaml").read_text()
    assert "agent: vision-distill" in cfg and "action_mode: absolute" in cfg
    # play / export / load_policy take it; the student reads the student group only.
    policy = load_policy(tmp_path / "a")
    assert policy.obs_groups == ["student"] and policy.env_overrides["vision"] == "rays"
    main(["play", str(tmp_path / "a"), "--num-envs", "2", "--steps", "4", "--set",
          "num_threads=1"])
    main(["export", str(tmp_path / "a"), "--out", str(tmp_path / "student.pt")])
    env = rlkd.make(ENV, num_envs=2, **{**ENV_KW, **policy.env_overrides})
    obs, _ = env.reset(seed=1)
    assert torch.equal(load_policy(tmp_path / "student.pt")({"student": obs["student"]}),
                       policy(obs))


def _forged_env(tmp_path) -> str:
    ck = load_checkpoint(expert_path("humanoid-walk"))
    payload = {k: v for k, v in ck.items() if k not in ("format", "version")}
    payload["config"]["env"] = "AGVWarehouse-v0"
    return str(save_checkpoint(tmp_path / "agv.pt", payload))


@pytest.mark.parametrize("case, message", [
    ("unknown_expert", r"unknown expert 'nope'; shipped experts: \['humanoid-general', 'humanoid-walk'\]"),
    ("shapes", r"it reads 'policy' as .*268.*this env's 'teacher' is .*216"),
    ("residual_student", r"action_mode='residual', which adds the reference motion"),
    ("unknown_clip", r"names clip\(s\) \['run'\] that the env's motion does not have"),
    ("no_teacher", r"clip\(s\) \['walk@1.0', 'walk@1.3'\] have no teacher"),
    ("other_env", r"trained on AGVWarehouse-v0, this run is on HumanoidMotion-v0"),
    ("image", r"provides no 'image' group .* use --student rays or keypoints2d"),
    ("privileged", r"student groups \['reference'\] are privileged"),
])
def test_refusals_are_named_before_anything_is_written(one_thread, tmp_path, case, message):
    teacher, student, sets = EXPERT, "rays", list(SET)
    if case == "unknown_expert":
        teacher = "expert:nope"
    elif case == "shapes":
        sets.append("future_steps=[1,3]")
    elif case == "residual_student":
        sets.append("action_mode=residual")
    elif case == "unknown_clip":
        teacher = f"{EXPERT},run={EXPERT}"
    elif case == "no_teacher":
        teacher = f"walk={EXPERT}"
    elif case == "other_env":
        teacher = _forged_env(tmp_path)
    elif case == "image":
        student = "image"
    elif case == "privileged":
        sets.append("distill.student_groups=[proprio,reference]")
    out = tmp_path / "s"
    with pytest.raises(SystemExit) as e:
        main(["distill", ENV, "--teacher", teacher, "--student", student, "--steps",
              str(N * T), "--out", str(out), *TINY, "--set", *sets])
    text = str(e.value)
    assert text.startswith("error: ") and "\n" not in text and e.value.code == 2
    assert re.search(message, text), text
    assert not out.exists()  # refused before the run directory is written
    if case in ("shapes", "other_env"):  # the library's own error types
        with pytest.raises(CheckpointError):
            _build({"teacher": teacher}, **({"future_steps": (1, 3)} if case == "shapes" else {}))
    if case == "residual_student":
        with pytest.raises(ValueError, match="leak"):
            _build({}, action_mode="residual")


def test_cli_help_registry_and_overrides(capsys):
    from rlkd.train.distill_cli import split_overrides

    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    text = capsys.readouterr().out
    for flag in ("--teacher", "--student", "rays,keypoints2d,image,rays+image", "--steps",
                 "--out", "--resume", "--set", "--num-envs", "--seed"):
        assert flag in text, flag
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "distill" in capsys.readouterr().out
    main(["list", "agents"])
    text = capsys.readouterr().out
    assert "vision-distill: Vision distillation" in text and "beta_decay = 0.9" in text
    assert "capacity = 100000" in text and "init_noise_std = 0.02" in text
    env, agent = split_overrides(("motion=walk,turn", "distill.beta0=0.5", "ppo.num_steps=32"))
    assert env == {"motion": "walk,turn"} and agent == {"distill": {"beta0": 0.5},
                                                        "ppo": {"num_steps": 32}}
    with pytest.raises(SystemExit, match="a dotted key must start with"):
        split_overrides(("foo.bar=1",))
    with pytest.raises(SystemExit, match="needs ENV and --teacher"):
        main(["distill", ENV, "--steps", "8"])
    with pytest.raises(SystemExit, match="these would be ignored: --teacher"):
        main(["distill", "--out", "runs/x", "--resume", "--teacher", EXPERT])
