"""Deployment export (issue 17, item 8): ``rlkd export RUN --format onnx|torchscript``.

The exported graphs must give the torch actor's actions (1e-5) on onnxruntime, on onnx's
reference evaluator and as TorchScript, for a flat policy and for flat + uint8 image groups; the
files carry their metadata and load as policies in ``rlkd play`` / ``rlkd eval``."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import rlkd
from conftest import FAST

onnx = pytest.importorskip("onnx", reason="ONNX export needs the deploy extra")
pytest.importorskip("onnxscript", reason="ONNX export needs the deploy extra")

ATOL = 1e-5


def _train(out, env, num_envs=8, iters=2, ppo=None, **kw):
    from rlkd.train import OnPolicyRunner, TrainConfig

    ppo = {"num_steps": 8, "num_epochs": 1, "num_minibatches": 2, "actor_hidden": [32],
           "critic_hidden": [32], **(ppo or {})}
    cfg = TrainConfig(env=env, agent="ppo", num_envs=num_envs, steps=num_envs * 8 * iters,
                      seed=0, out=str(out), video=False, progress=False, agent_cfg={"ppo": ppo},
                      **kw)
    OnPolicyRunner(cfg).learn()
    return out


@pytest.fixture(scope="module")
def agv_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("agv") / "run", "AGVWarehouse-v0",
                  env_overrides=dict(FAST))


def _observations(env_id, overrides, n=16, steps=5):
    """Real observations of the task (after a few random steps), plus far-out ones that the
    folded normalizer must clip like the torch one."""
    env = rlkd.make(env_id, num_envs=n, seed=1, **overrides)
    obs, _ = env.reset(seed=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        obs, *_ = env.step(torch.rand(n, env.act_dim, generator=gen) * 2 - 1)
    env.close()
    far = {k: (v * 1e3 if v.is_floating_point() else v) for k, v in obs.items()}
    return obs, far


def _feeds(obs, groups):
    return {g: obs[g].numpy() for g in groups}


def _ort(path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_and_torchscript_match_the_torch_actor(agv_run, tmp_path):
    from onnx.reference import ReferenceEvaluator

    from rlkd.policies import load_policy
    from rlkd.train.export import export

    policy = load_policy(agv_run)
    onnx_path = export(agv_run, tmp_path / "agv.onnx", "onnx", {"notes": ["test"]})
    ts_path = export(agv_run, tmp_path / "agv.ts", "torchscript")
    sess = _ort(onnx_path)
    (inp,) = sess.get_inputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("policy", "tensor(float)", [40])
    assert sess.get_outputs()[0].name == "action"
    ref = ReferenceEvaluator(onnx.load(str(onnx_path)))
    ts = torch.jit.load(str(ts_path))
    for obs in _observations("AGVWarehouse-v0", FAST):
        want = policy(obs).numpy()
        assert np.abs(want).max() <= 1.0
        for name, got in [("onnxruntime", sess.run(["action"], _feeds(obs, ["policy"]))[0]),
                          ("reference", ref.run(["action"], _feeds(obs, ["policy"]))[0]),
                          ("torchscript", ts(obs["policy"]).numpy())]:
            np.testing.assert_allclose(got, want, atol=ATOL, rtol=0, err_msg=name)
    one = {"policy": obs["policy"][:1]}  # batch 1: the batch dimension is dynamic
    np.testing.assert_allclose(sess.run(["action"], _feeds(one, ["policy"]))[0],
                               policy(one).numpy(), atol=ATOL, rtol=0)
    # The normalizer is folded in as constants: no running-statistics update op, no float64.
    graph = onnx.load(str(onnx_path)).graph
    assert not any(t.data_type == onnx.TensorProto.DOUBLE for t in graph.initializer)


def test_metadata_describes_inputs_actions_env_and_config(agv_run, tmp_path):
    from rlkd.deploy import TS_META_FILE, read_metadata
    from rlkd.policies import load_policy
    from rlkd.train.export import export

    policy = load_policy(agv_run)
    onnx_path = export(agv_run, tmp_path / "agv.onnx", "onnx", {"notes": ["by the test"]})
    ts_path = export(agv_run, tmp_path / "agv.ts", "torchscript")
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert props["env_id"] == "AGVWarehouse-v0" and props["agent"] == "ppo"
    assert json.loads(props["obs_groups"]) == [{"name": "policy", "shape": [40],
                                                "dtype": "float32"}]
    assert json.loads(props["act_dim"]) == 2
    action = json.loads(props["action"])
    assert (action["low"], action["high"], action["action_mode"]) == (-1.0, 1.0, "absolute")
    assert json.loads(props["env_overrides"]) == FAST
    assert json.loads(props["train_config"]) == policy.train_config
    assert json.loads(props["provenance"])["notes"] == ["by the test"]
    extra = {TS_META_FILE: ""}
    torch.jit.load(str(ts_path), _extra_files=extra)
    assert json.loads(extra[TS_META_FILE]) == read_metadata(ts_path)
    assert read_metadata(ts_path)["train_config"] == policy.train_config


def test_flat_plus_uint8_image_policy_exports_and_matches(tmp_path):
    import gymnasium

    from rlkd.core.registry import _REGISTRY
    from rlkd.policies import load_policy
    from rlkd.train.export import export
    from test_training_core import DotConfig

    rlkd.register("TestDotExport-v0", "test_training_core:DotEnv", DotConfig)
    try:
        run = _train(tmp_path / "dot", "TestDotExport-v0", num_envs=16, iters=1,
                     ppo={"actor_groups": ["policy", "image"], "image_features": 16})
        policy = load_policy(run)
        assert policy.obs_groups == ["policy", "image"]
        onnx_path = export(run, tmp_path / "dot.onnx", "onnx")
        ts = torch.jit.load(str(export(run, tmp_path / "dot.ts", "torchscript")))
        sess = _ort(onnx_path)
        assert [(i.name, i.type, i.shape[1:]) for i in sess.get_inputs()] == \
            [("policy", "tensor(float)", [2]), ("image", "tensor(uint8)", [1, 12, 12])]
        obs, _ = _observations("TestDotExport-v0", {}, n=16, steps=2)
        assert obs["image"].dtype == torch.uint8 and obs["image"].any()
        want = policy(obs).numpy()
        np.testing.assert_allclose(sess.run(["action"], _feeds(obs, ["policy", "image"]))[0],
                                   want, atol=ATOL, rtol=0)
        np.testing.assert_allclose(ts(obs["policy"], obs["image"]).numpy(), want, atol=ATOL,
                                   rtol=0)
        for path in (onnx_path, tmp_path / "dot.ts"):  # and through load_policy
            deployed = load_policy(path)
            assert deployed.obs_groups == ["policy", "image"]
            np.testing.assert_allclose(deployed(obs).numpy(), want, atol=ATOL, rtol=0)
    finally:
        _REGISTRY.pop("TestDotExport-v0", None)
        gymnasium.registry.pop("rlkd/TestDotExport-v0", None)


def test_play_and_eval_take_deployment_files(agv_run, tmp_path, capsys):
    from rlkd.cli import main
    from rlkd.deploy import DeployedPolicy
    from rlkd.policies import load_policy, policy_source

    main(["export", str(agv_run), "--format", "onnx", "--out", str(tmp_path / "p.onnx")])
    main(["export", str(agv_run), "--format", "torchscript", "--out",
          str(tmp_path / "p.torchscript")])
    out = capsys.readouterr().out
    assert "onnx: " in out and "torchscript: " in out
    torch_policy = load_policy(agv_run)
    obs = _observations("AGVWarehouse-v0", FAST, n=4, steps=1)[0]
    for name in ("p.onnx", "p.torchscript"):
        env_id, overrides, factory, label = policy_source(str(tmp_path / name))
        assert (env_id, overrides) == ("AGVWarehouse-v0", FAST) and name in label
        policy = factory(None)
        assert isinstance(policy, DeployedPolicy) and policy.action_mode == "absolute"
        np.testing.assert_allclose(policy(obs).numpy(), torch_policy(obs).numpy(), atol=ATOL)
        main(["play", str(tmp_path / name), "--num-envs", "2", "--steps", "5"])
    rep = tmp_path / "report"
    main(["eval", "sim2real", str(tmp_path / "p.onnx"), "--suite", "latency", "--episodes", "4",
          "--no-twin", "--out", str(rep), "--resamples", "20", "--set", "max_episode_steps=10"])
    assert json.loads((rep / "report.json").read_text())
    # The default output name follows the format.
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        main(["export", str(agv_run), "--format", "torchscript"])
    finally:
        os.chdir(cwd)
    assert (tmp_path / "policy.ts").is_file()


def test_clear_errors(agv_run, tmp_path, monkeypatch):
    from rlkd.cli import main
    from rlkd.policies import load_policy
    from rlkd.train import CheckpointError
    from rlkd.train.export import export

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(CheckpointError, match="cannot read it as a onnx file"):
        load_policy(bad)
    foreign = tmp_path / "foreign.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("action", onnx.TensorProto.FLOAT, [1])
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["action"])], "g", [x], [y])), str(foreign))
    with pytest.raises(CheckpointError, match="no rlkd deployment metadata"):
        load_policy(foreign)
    with pytest.raises(CheckpointError, match="file not found"):
        load_policy(tmp_path / "missing.ts")
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export(agv_run, tmp_path / "x", "tflite")
    onnx_path = export(agv_run, tmp_path / "p.onnx", "onnx")
    with pytest.raises(CheckpointError, match="already a deployment file"):
        export(onnx_path, tmp_path / "again.onnx", "onnx")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if the extra were not installed
    with pytest.raises(SystemExit, match=r'onnxscript.*pip install "rlkd\[deploy\]"'):
        main(["export", str(agv_run), "--format", "onnx", "--out", str(tmp_path / "q.onnx")])
    assert not (tmp_path / "q.onnx").exists()


def test_onnx_policy_falls_back_to_the_reference_evaluator(agv_run, tmp_path, monkeypatch):
    from rlkd.policies import load_policy
    from rlkd.train.export import export

    path = export(agv_run, tmp_path / "p.onnx", "onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    policy = load_policy(path)
    obs = _observations("AGVWarehouse-v0", FAST, n=4, steps=1)[0]
    np.testing.assert_allclose(policy(obs).numpy(), load_policy(agv_run)(obs).numpy(), atol=ATOL)
