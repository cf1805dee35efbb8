"""Domain randomisation while training (rlkd.sim2real.randomize, `rlkd train --randomize`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import rlkd
from rlkd.sim2real.randomize import TENSOR_OPS, DomainRandomizer, attach_randomizer, \
    parse_randomize
from rlkd.sim2real.suites import OPS, load_suite

AGV = "AGVWarehouse-v0"
RANGES = "mass=0.8:1.5,friction=0.5:1,action_latency=0:2,obs_noise=0:0.05,sensor_dropout=0:0.1"


def _env(n=256, seed=0, spec=RANGES, mode="ranges", **kw):
    env = rlkd.make(AGV, num_envs=n, seed=seed, **kw)
    nominal = {k: v.clone() for k, v in env.params.items()}
    dr = attach_randomizer(env, spec, mode)
    env.reset(seed=seed)
    return env, dr, nominal


def test_values_drawn_at_reset_lie_in_their_ranges_and_differ_across_envs():
    env, dr, nom = _env()
    p = env.params
    mass = nom["lin_acc"] / p["lin_acc"]  # mass divides the acceleration limit
    assert float(mass.min()) >= 0.8 - 1e-5 and float(mass.max()) <= 1.5 + 1e-5
    assert float(mass.max() - mass.min()) > 0.5  # spread over the range, not one value
    assert float(p["slip"].min()) >= 0.0 and float(p["slip"].max()) <= 0.5 + 1e-6
    assert float(p["slip"].max()) > 0.3
    assert float(p["obs_noise_std"].min()) >= 0 and float(p["obs_noise_std"].max()) <= 0.05
    assert float(p["lidar_dropout"].max()) <= 0.1 and p["lidar_dropout"].unique().numel() > 200
    # The latency is a whole number of steps, each of 0, 1, 2 about a third of the time.
    counts = torch.bincount(p["action_latency"], minlength=3)
    assert counts.numel() == 3 and bool((counts > 256 // 6).all())
    # Untouched params stay nominal; motor strength was not asked for.
    assert torch.equal(p["max_lin_vel"], nom["max_lin_vel"])
    assert torch.equal(p["lidar_noise_std"], nom["lidar_noise_std"])
    assert set(dr.describe()["ranges"]) == {"mass", "friction", "action_latency", "obs_noise",
                                            "sensor_dropout"}


def test_only_reset_envs_get_new_values_and_a_seed_repeats_them():
    env, dr, _ = _env(n=32)
    before = {k: v.clone() for k, v in env.params.items()}
    # Envs 3, 7 and 20 hit the time limit on the next step: only they are reset.
    env.episode_length_buf[[3, 7, 20]] = env.max_episode_length - 1
    _, _, _, _, info = env.step(torch.zeros(32, 2))
    done = info["final_mask"]
    assert bool(done[[3, 7, 20]].all())
    for k in ("lin_acc", "slip", "obs_noise_std", "lidar_dropout"):
        assert torch.equal(env.params[k][~done], before[k][~done]), k
        assert not torch.equal(env.params[k][done], before[k][done]), k
    # The same seed draws the same values, through the reset and the autoreset; another does not.
    again, _, _ = _env(n=32)
    again.episode_length_buf[[3, 7, 20]] = again.max_episode_length - 1
    again.step(torch.zeros(32, 2))
    assert all(torch.equal(env.params[k], again.params[k]) for k in env.params)
    other, _, _ = _env(n=32, seed=1)
    assert not torch.equal(other.params["slip"], before["slip"])


def test_conditions_mode_puts_each_env_in_one_suite_condition_exactly():
    env, dr, nom = _env(spec="default", mode="conditions")
    names = [c.name for c in dr.conditions]
    assert "nominal" in names and "pd_gains_x0.5" not in names  # not applicable to the AGV
    assert "pd_gains_x0.5" in dr.skipped
    k = dr.condition
    assert set(k.tolist()) == set(range(len(names)))  # 256 envs see every condition
    ref = rlkd.make(AGV, num_envs=256, seed=0)
    for ci, cond in enumerate(dr.conditions):
        ids = (k == ci).nonzero().squeeze(-1)
        cond.apply(ref, ids)
    for name in dr.nominal:
        assert torch.allclose(env.params[name].float(), ref.params[name].float()), name


def test_tensor_ops_agree_with_the_suites_scalar_ops():
    p = torch.tensor([0.0, 0.1, 0.5, 2.0])
    for op, fn in OPS.items():
        for v in (0.3, 0.5, 1.0, 1.7):
            want = fn(p, v)
            got = TENSOR_OPS[op](p, torch.full((4,), v))
            assert torch.allclose(got, want), (op, v)


def test_ranges_from_a_suite_run_from_nominal_to_its_extremes():
    spec = parse_randomize("dynamics")
    assert spec.ranges["mass"] == (0.7, 2.0) and spec.ranges["friction"] == (0.3, 1.0)
    assert spec.ranges["motor_strength"] == (0.6, 1.0)
    assert parse_randomize("latency").ranges == {"action_latency": (0.0, 5.0)}


def test_range_file_and_suite_file_are_accepted(tmp_path):
    rf = tmp_path / "dr.yaml"
    rf.write_text(yaml.safe_dump({"ranges": {"mass": [0.9, 1.2], "obs_noise": [0, 0.02]}}))
    assert parse_randomize(str(rf)).ranges == {"mass": (0.9, 1.2), "obs_noise": (0.0, 0.02)}
    sf = tmp_path / "suite.yaml"
    sf.write_text(yaml.safe_dump({"name": "mine", "conditions": [
        {"name": "heavy", "perturb": {"mass": 1.4}}]}))
    spec = parse_randomize(str(sf), "conditions")
    assert [c.name for c in spec.conditions] == ["nominal", "heavy"]


@pytest.mark.parametrize("spec, mode, match", [
    ("no_such_suite", "ranges", "unknown randomize spec 'no_such_suite'.*built-in suites"),
    ("missing.yaml", "ranges", "does not exist"),
    ("mass=2:1", "ranges", "low 2.0 > high 1.0"),
    ("weight=1:2", "ranges", "unknown perturbation kind 'weight'"),
    ("mass=0:2", "ranges", "must be positive"),
    ("mass=1:2", "conditions", "holds ranges, not conditions"),
    ("nominal", "conditions", "nothing to randomize"),
    ("default", "grid", "randomize mode must be one of"),
])
def test_bad_specs_are_clear_errors(spec, mode, match):
    with pytest.raises(ValueError, match=match):
        parse_randomize(spec, mode)


def test_a_spec_with_nothing_the_task_supports_is_an_error():
    env = rlkd.make(AGV, num_envs=4)
    with pytest.raises(ValueError, match="nothing applies to AGVWarehouseEnv"):
        DomainRandomizer(env, "pd_gains=0.5:1")


def _train_args(out, *extra):
    return ["train", AGV, "--agent", "ppo", "--num-envs", "16", "--steps", str(16 * 8 * 3),
            "--seed", "3", "--out", str(out), "--ppo", "num_steps=8", "num_epochs=1",
            "num_minibatches=2", "--checkpoint-every", "1", "--no-video", "--no-progress", *extra]


def _losses(run):
    rows = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith("losses/")} for r in rows]


def test_rlkd_train_randomize_end_to_end_records_and_resumes_exactly(tmp_path):
    from rlkd.cli import main
    from rlkd.train import OnPolicyRunner, load_checkpoint

    run = tmp_path / "dr"
    main(_train_args(run, "--randomize", "default"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["train"]["randomize"] == "default" and cfg["train"]["randomize_mode"] == "ranges"
    assert cfg["randomize"]["ranges"]["friction"] == [0.5, 1.0]
    assert "pd_gains" in cfg["randomize"]["skipped"]
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ck["randomizer"]["describe"] == cfg["randomize"]
    slip = ck["env"]["params"]["slip"]
    assert slip.unique().numel() > 8 and float(slip.max()) <= 0.5 + 1e-6
    # Resuming from iteration 1 repeats iteration 2 exactly (params and streams restored).
    resumed = tmp_path / "resumed"
    OnPolicyRunner.resume(resumed, checkpoint=run / "checkpoints" / "model_000001.pt").learn()
    assert _losses(resumed) == _losses(run)[1:]
    # A nominal run with the same seed trains on other data.
    nominal = tmp_path / "nominal"
    main(_train_args(nominal))
    assert _losses(nominal) != _losses(run)
    assert yaml.safe_load((nominal / "config.yaml").read_text())["randomize"] is None


def test_rlkd_train_with_a_bad_suite_name_exits_with_one_line(tmp_path):
    from rlkd.cli import main

    with pytest.raises(SystemExit, match="error: --randomize: unknown randomize spec 'defualt'"):
        main(_train_args(tmp_path / "bad", "--randomize", "defualt"))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit):
        main(_train_args(tmp_path / "bad", "--randomize", "default", "--randomize-mode", "grid"))


def test_suites_are_not_mutated_by_randomizing():
    before = load_suite("default").to_dict()
    _env(n=8, spec="default", mode="conditions")
    assert load_suite("default").to_dict() == before


def test_env_state_round_trip_keeps_the_latency_buffer_position():
    # Exact resume of a randomised run needs it: latency draws put commands in that buffer.
    a = rlkd.make(AGV, num_envs=4, seed=0, action_latency=2)
    a.reset(seed=0)
    acts = [torch.rand(4, 2, generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(6)]
    for x in acts[:3]:
        a.step(x)
    b = rlkd.make(AGV, num_envs=4, seed=0, action_latency=2)
    b.reset(seed=0)
    b.load_state_dict(a.state_dict())
    for x in acts[3:]:
        oa, ob = a.step(x)[0], b.step(x)[0]
        assert torch.equal(oa["critic"], ob["critic"])
