"""Runner: checkpoints, exact resume, corrupt checkpoints, `rlkd train` / `rlkd play` end to end."""

import json
from pathlib import Path

import pytest
import torch

from rlkd.train import CheckpointError, OnPolicyRunner, TrainConfig, load_checkpoint, \
    save_checkpoint


def _cfg(out, agent="ppo-rdd", iters=2, ppo=None, intrinsic=None, **kw):
    ppo = {"num_steps": 8, "num_epochs": 2, "num_minibatches": 2, **(ppo or {})}
    sections = {"ppo": ppo, **({"intrinsic": intrinsic} if intrinsic else {})}
    return TrainConfig(env="AGVWarehouse-v0", agent=agent, num_envs=16, steps=16 * 8 * iters,
                       seed=3, out=str(out), checkpoint_every=1, video=False, progress=False,
                       agent_cfg=sections, **kw)


def _metrics(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def _losses(row):
    return {k: v for k, v in row.items() if k.startswith(("losses/", "intrinsic/"))}


@pytest.mark.parametrize("agent", ["ppo", "ppo-rdd"])
def test_exact_resume_gives_same_next_iteration(tmp_path, agent):
    full = tmp_path / "full"
    OnPolicyRunner(_cfg(full, agent, iters=3)).learn()
    ref = _metrics(full)
    assert [r["iteration"] for r in ref] == [0, 1, 2]
    # Continue a fresh run directory from the checkpoint written after iteration 1.
    resumed = tmp_path / "resumed"
    runner = OnPolicyRunner.resume(resumed, checkpoint=full / "checkpoints" / "model_000001.pt")
    assert runner.iteration == 1 and runner.env_steps == 16 * 8
    runner.learn()
    got = _metrics(resumed)
    assert [r["iteration"] for r in got] == [1, 2]
    for a, b in zip(got, ref[1:]):
        assert _losses(a) == _losses(b)
    w_full = load_checkpoint(full / "checkpoints" / "last.pt")["agent"]["policy"]
    w_res = load_checkpoint(resumed / "checkpoints" / "last.pt")["agent"]["policy"]
    assert all(torch.equal(w_full[k], w_res[k]) for k in w_full)


def test_checkpoint_round_trip_restores_learning_rate_and_normalizers(tmp_path):
    run = tmp_path / "run"
    r1 = OnPolicyRunner(_cfg(run, iters=2))
    r1.learn()
    r2 = OnPolicyRunner.resume(run)
    assert r2.alg.learning_rate == r1.alg.learning_rate
    assert r2.alg.optimizer.param_groups[0]["lr"] == r1.alg.learning_rate
    sd1, sd2 = r1.alg.policy.state_dict(), r2.alg.policy.state_dict()
    assert sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert float(r2.alg.policy.actor_encoder.norm["policy"].count) > 0
    i1, i2 = r1.alg.intrinsic.state_dict(), r2.alg.intrinsic.state_dict()
    assert all(torch.equal(i1[k], i2[k]) for k in i1)


def test_init_from_copies_weights_and_normalizers_but_starts_fresh(tmp_path):
    src = tmp_path / "src"
    OnPolicyRunner(_cfg(src, "ppo", iters=2)).learn()
    tuned = OnPolicyRunner(_cfg(tmp_path / "tuned", "ppo", iters=1, init_from=str(src),
                                ppo={"learning_rate": 3e-4}))
    theirs = load_checkpoint(src / "checkpoints" / "last.pt")["agent"]["policy"]
    ours = tuned.alg.policy.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert float(tuned.alg.policy.actor_encoder.norm["policy"].count) > 0
    assert tuned.iteration == 0 and tuned.env_steps == 0
    assert tuned.alg.learning_rate == 3e-4  # the new run's optimizer settings, not the source's
    fresh = OnPolicyRunner(_cfg(tmp_path / "fresh", "ppo", iters=1)).alg.policy.state_dict()
    assert not all(torch.equal(fresh[k], theirs[k]) for k in theirs)  # so the copy is real
    # Another env's observations do not fit: the error names the group and both shapes.
    with pytest.raises(CheckpointError, match="observation group 'policy'"):
        OnPolicyRunner(_cfg(tmp_path / "bad", "ppo", iters=1, init_from=str(src),
                            env_overrides={"lidar_rays": 8}))


def _snapshot(d: Path):
    return {p: p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_corrupt_or_truncated_checkpoint_gives_clear_error_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    OnPolicyRunner(_cfg(run, iters=1)).learn()
    last = run / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # truncated, as by a crash of a non-atomic writer
    before = _snapshot(run)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        OnPolicyRunner.resume(run)
    last.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match=str(last.name)):
        OnPolicyRunner.resume(run)
    torch.save({"weights": 1}, last)
    with pytest.raises(CheckpointError, match="not an rlkd checkpoint"):
        OnPolicyRunner.resume(run)
    with pytest.raises(CheckpointError, match="does not exist"):
        OnPolicyRunner.resume(tmp_path / "nowhere")
    after = _snapshot(run)
    assert {p for p in before if p != last} == {p for p in after if p != last}
    assert all(before[p] == after[p] for p in before if p != last)


def test_atomic_save_leaves_old_file_when_write_fails(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"a": torch.ones(3)})
    good = path.read_bytes()

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk died")

    with pytest.raises(RuntimeError, match="disk died"):
        save_checkpoint(path, {"a": Boom()})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


def test_unknown_override_keys_are_named(tmp_path):
    with pytest.raises(KeyError, match="learnin_rate"):
        OnPolicyRunner(_cfg(tmp_path / "a", ppo={"learnin_rate": 1.0}))
    with pytest.raises(KeyError, match="sigmaa"):
        OnPolicyRunner(_cfg(tmp_path / "b", intrinsic={"sigmaa": 1.0}))


def test_rlkd_train_and_play_end_to_end(tmp_path, capsys):
    from rlkd.cli import main

    out = tmp_path / "run"
    main(["train", "AGVWarehouse-v0", "--agent", "ppo-rnd", "--num-envs", "8", "--steps", "384",
          "--out", str(out), "--ppo", "num_steps=16", "num_epochs=1", "--set", "num_obstacles=2",
          "--no-video"])
    cfg = (out / "config.yaml").read_text()
    assert "ppo-rnd" in cfg and "num_obstacles: 2" in cfg and "gamma_int" in cfg
    assert (out / "checkpoints" / "last.pt").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())
    rows = _metrics(out)
    assert len(rows) == 3 and rows[-1]["env_steps"] == 384
    assert {"charts/SPS", "losses/value_loss", "intrinsic/reward_raw", "metrics/clearance"} \
        <= rows[-1].keys()
    video = tmp_path / "play.gif"
    main(["play", str(out), "--num-envs", "2", "--steps", "15", "--video", str(video)])
    assert video.stat().st_size > 0
    assert "ppo-rnd" in capsys.readouterr().out


def test_exported_policy_acts_like_its_run_and_is_smaller(tmp_path, capsys):
    from rlkd.cli import main
    from rlkd.policies import load_policy

    run = tmp_path / "run"
    OnPolicyRunner(_cfg(run, "ppo", iters=2)).learn()
    out = tmp_path / "policy.pt"
    main(["export", str(run), "--out", str(out), "--note", "trained by the test",
          "--note", "rlkd train --out x"])
    assert "policy:" in capsys.readouterr().out
    ck = load_checkpoint(out)
    assert ck["kind"] == "policy"
    assert ck["provenance"]["notes"] == ["trained by the test", "rlkd train --out x"]
    assert not any(k.startswith("critic") for k in ck["agent"]["policy"])
    assert out.stat().st_size < 0.7 * (run / "checkpoints" / "last.pt").stat().st_size
    full, small = load_policy(run), load_policy(out)
    obs = {"policy": torch.randn(32, 40) * 3}
    assert torch.equal(full(obs), small(obs))
    assert small.obs_groups == ["policy"] and small.env_id == "AGVWarehouse-v0"
    # play and eval take the file like a run; a second export refuses it.
    main(["play", str(out), "--num-envs", "2", "--steps", "5"])
    with pytest.raises(SystemExit, match="already an exported policy"):
        main(["export", str(out), "--out", str(tmp_path / "again.pt")])


def test_init_from_an_exported_policy_takes_the_actor_and_warms_up_a_fresh_critic(tmp_path):
    from rlkd.cli import main

    run = tmp_path / "run"
    OnPolicyRunner(_cfg(run, "ppo", iters=2)).learn()
    out = tmp_path / "policy.pt"
    main(["export", str(run), "--out", str(out)])
    src = load_checkpoint(run / "checkpoints" / "last.pt")["agent"]["policy"]
    ft = OnPolicyRunner(_cfg(tmp_path / "ft", "ppo", iters=3, init_from=str(out),
                             ppo={"critic_warmup_updates": 2}))
    ours = ft.alg.policy.state_dict()
    actor = [k for k in src if not k.startswith("critic")]
    assert actor and all(torch.equal(ours[k], src[k]) for k in actor)
    fresh = OnPolicyRunner(_cfg(tmp_path / "fresh", "ppo", iters=1)).alg.policy.state_dict()
    critic = [k for k in ours if k.startswith("critic.")]
    assert critic and all(torch.equal(ours[k], fresh[k]) for k in critic)  # not the source's
    lr0 = ft.alg.learning_rate
    ft.learn()
    rows = _metrics(tmp_path / "ft")
    assert [r["losses/critic_warmup"] for r in rows] == [1.0, 1.0, 0.0]
    # The warm-up moved the critic only; the learning rate did not adapt during it.
    after = load_checkpoint(tmp_path / "ft" / "checkpoints" / "model_000002.pt")
    w = after["agent"]["policy"]
    assert all(torch.equal(w[k], src[k]) for k in actor if not k.startswith("actor_encoder"))
    assert not all(torch.equal(w[k], fresh[k]) for k in critic)
    assert after["agent"]["learning_rate"] == lr0 and after["agent"]["num_updates"] == 2
    # The third update trains the actor too.
    last = load_checkpoint(tmp_path / "ft" / "checkpoints" / "last.pt")["agent"]["policy"]
    assert not all(torch.equal(last[k], src[k]) for k in actor if k.startswith("actor."))
    # An exported policy of another env does not fit: the error names the group.
    with pytest.raises(CheckpointError, match="observation group 'policy'"):
        OnPolicyRunner(_cfg(tmp_path / "bad", "ppo", iters=1, init_from=str(out),
                            env_overrides={"lidar_rays": 8}))
    with pytest.raises(CheckpointError, match="unknown expert"):
        OnPolicyRunner(_cfg(tmp_path / "bad2", "ppo", iters=1, init_from="expert:nope"))


def test_critic_warmup_updates_must_be_a_count():
    from rlkd.agents.ppo import PPOConfig

    with pytest.raises(ValueError, match="critic_warmup_updates"):
        PPOConfig(critic_warmup_updates=-1)


def test_export_set_replaces_env_overrides_and_keeps_the_trained_ones(tmp_path):
    from rlkd.cli import main
    from rlkd.policies import load_policy

    run = tmp_path / "run"
    cfg = _cfg(run, "ppo", iters=1)
    cfg.env_overrides = {"num_obstacles": 2}
    OnPolicyRunner(cfg).learn()
    out = tmp_path / "policy.pt"
    main(["export", str(run), "--out", str(out), "--set", "num_obstacles=0"])
    ck = load_checkpoint(out)
    assert ck["config"]["env_overrides"]["num_obstacles"] == 0
    assert ck["provenance"]["env_overrides_at_training"] == {"num_obstacles": 2}
    assert load_policy(out).env_overrides["num_obstacles"] == 0
    with pytest.raises(SystemExit, match="nope"):
        main(["export", str(run), "--out", str(tmp_path / "bad.pt"), "--set", "nope=1"])
    with pytest.raises(SystemExit, match="policy files only"):
        main(["export", str(run), "--out", str(tmp_path / "p.onnx"), "--format", "onnx",
              "--set", "num_obstacles=0"])
    assert not (tmp_path / "bad.pt").exists()


def test_unknown_expert_is_named():
    from rlkd.policies import policy_source

    with pytest.raises(ValueError, match="unknown expert 'humanoid-fly'.*humanoid-walk"):
        policy_source("expert:humanoid-fly")


def test_final_video_is_written(tmp_path):
    cfg = _cfg(tmp_path / "v", agent="ppo", iters=1)
    cfg.video, cfg.video_steps = True, 5
    OnPolicyRunner(cfg).learn()
    assert (tmp_path / "v" / "videos" / "final.mp4").stat().st_size > 0
