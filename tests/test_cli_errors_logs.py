"""One-line errors for user mistakes, ``rlkd --version``, ``sim_unstable`` where users look,
and training logs that read well off a terminal (issue 17, items 6 and 9)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import rlkd
from rlkd.train import OnPolicyRunner, TrainConfig

FAST = {"num_layouts": 2, "layout_seed": 0}
SMALL = ["--num-envs", "8", "--ppo", "num_steps=8", "num_epochs=1", "num_minibatches=1",
         "--steps", "64", "--no-video", "--no-progress"]


def _cfg(out, iters=1, **kw) -> TrainConfig:
    kw.setdefault("progress", False)
    kw.setdefault("video", False)
    return TrainConfig(env="AGVWarehouse-v0", agent="ppo", num_envs=8, steps=64 * iters, seed=1,
                       out=str(out), checkpoint_every=1, env_overrides=dict(FAST),
                       agent_cfg={"ppo": {"num_steps": 8, "num_epochs": 1,
                                          "num_minibatches": 1}}, **kw)


def _main_exit(argv: list[str]) -> SystemExit:
    from rlkd.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value


# ----------------------------------------------------------------------------- errors
def test_version(capsys):
    from rlkd.cli import main

    main(["--version"])
    assert capsys.readouterr().out.strip() == f"rlkd {rlkd.__version__}"


@pytest.mark.parametrize("target", ["runs/nope", "nope.pt", "a/b/policy.onnx"])
def test_missing_checkpoint_path_is_file_not_found(target, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    e = _main_exit(["play", target, "--steps", "1"])
    assert e.code == 2 and str(e) == f"error: file not found: {target}"
    e = _main_exit(["eval", "sim2real", target, "--episodes", "8"])
    assert e.code == 2 and str(e) == f"error: file not found: {target}"


def test_gymnasium_style_env_id_is_not_taken_for_a_path(capsys):
    from rlkd.cli import main

    main(["play", "rlkd/AGVWarehouse-SimpleStatic-v0", "--num-envs", "1", "--steps", "2"])
    assert "AGVWarehouse-SimpleStatic-v0" in capsys.readouterr().out
    e = _main_exit(["play", "NoSuchEnv-v0", "--steps", "1"])
    assert e.code == 2 and "unknown env id 'NoSuchEnv-v0'" in str(e)


@pytest.mark.parametrize("argv, message", [
    (["NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
    (["AGVWarehouse-v0", "--set", "num_obstacle=2"], "unknown config key 'num_obstacle'"),
    (["AGVWarehouse-v0", "--set", "num_obstacles=lots"], "expects a number, got 'lots'"),
    (["AGVWarehouse-v0", "--ppo", "gama=0.9"], "gama"),
    (["AGVWarehouse-v0", "--intrinsic", "sigma=1"], "no --intrinsic section"),
])
def test_train_user_mistakes_are_one_line_and_write_nothing(argv, message, tmp_path):
    out = tmp_path / "run"
    # The case's flags last, so that its --ppo replaces SMALL's.
    e = _main_exit(["train", argv[0], *SMALL, "--agent", "ppo", *argv[1:], "--out", str(out)])
    assert e.code == 2 and str(e).startswith("error: ") and message in str(e)
    assert "\n" not in str(e)
    assert not out.exists()


def test_train_corrupt_init_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    e = _main_exit(["train", "AGVWarehouse-v0", "--agent", "ppo", *SMALL, "--set",
                    "num_layouts=2", "layout_seed=0", "--init-from", str(bad), "--out",
                    str(tmp_path / "run")])
    assert e.code == 2 and f"error: {bad} " in str(e) and "\n" not in str(e)


def test_a_real_bug_still_raises(tmp_path, monkeypatch):
    import rlkd.train.runner as runner_mod
    from rlkd.cli import main

    def broken(*a, **k):
        raise RuntimeError("a bug, not a user mistake")

    monkeypatch.setattr(runner_mod, "build_env_and_agent", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", "AGVWarehouse-v0", *SMALL, "--out", str(tmp_path / "run")])


def test_console_script_prints_one_line_and_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rlkd", "train", "NoSuchEnv-v0", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: unknown env id")


# ----------------------------------------------------------------------------- wandb
def test_wandb_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    out = tmp_path / "run"
    e = _main_exit(["train", "AGVWarehouse-v0", "--agent", "ppo", *SMALL, "--set",
                    "num_layouts=2", "layout_seed=0", "--wandb", "--out", str(out)])
    assert e.code == 2 and "pip install wandb" in str(e)
    assert not out.exists()


def test_wandb_gets_scalars_and_config_without_network(tmp_path, monkeypatch):
    calls: dict[str, list] = {"init": [], "log": [], "finish": []}
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls["init"].append(kw)
    fake.log = lambda data, step: calls["log"].append((step, data))
    fake.finish = lambda: calls["finish"].append(True)
    fake.util = types.SimpleNamespace(generate_id=lambda: "run123")
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run = tmp_path / "run"
    OnPolicyRunner(_cfg(run, iters=2, wandb=True)).learn()
    (init,) = calls["init"]
    assert init["id"] == "run123" and init["resume"] == "allow" and init["name"] == "run"
    assert init["config"]["train"]["env"] == "AGVWarehouse-v0"
    assert [s for s, _ in calls["log"]] == [64, 128] and "charts/SPS" in calls["log"][0][1]
    assert calls["finish"] == [True] and (run / "wandb_run_id").read_text() == "run123"


# ----------------------------------------------------------------------------- logs
def test_logs_off_a_terminal_config_and_reward_terms(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    # stdout is captured here, as in a file or a SLURM log: no bar, plain lines.
    OnPolicyRunner(_cfg(run, iters=3, progress=True, log_interval_s=1e9, video=True,
                        video_steps=3)).learn()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("rlkd train: env AGVWarehouse-v0, agent ppo, 8 envs, 192 env "
                             "steps (3 iterations of 64), device cpu, run dir ")
    progress = [x for x in out if x.startswith("train it ")]
    # The first and the last iteration; none between (the interval is huge).
    assert [x.split()[2] for x in progress] == ["1/3", "3/3"]
    assert "192/192 env steps (100%)" in progress[-1] and "steps/s" in progress[-1]
    assert "ETA" in progress[0] and "\x1b" not in "".join(out)  # no terminal escapes
    assert any(x.startswith("rendering the final video (3 steps") for x in out)
    assert any(x.startswith("video: ") and x.endswith(" s)") for x in out)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["env_config"]["num_layouts"] == 2 and "lidar_rays" in cfg["env_config"]
    assert {"rlkd", "torch", "mujoco", "gymnasium", "numpy"} <= set(cfg["versions"])
    assert cfg["versions"]["torch"] == torch.__version__.split("+")[0] or cfg["versions"]["torch"]
    assert "git_commit" in cfg
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"rewards/goal", "rewards/collision"} <= set(row)
    acc = EventAccumulator(str(run))
    acc.Reload()
    assert "config/text_summary" in acc.Tags()["tensors"]
    assert "rewards/goal" in acc.Tags()["scalars"]


def test_progress_bar_only_on_a_terminal(tmp_path):
    from rlkd.train.logger import TrainLogger

    on_tty = TrainLogger(tmp_path / "a", 3, progress=True, terminal=True)
    off_tty = TrainLogger(tmp_path / "b", 3, progress=True, terminal=False)
    try:
        assert on_tty._progress is not None and not on_tty._lines
        assert off_tty._progress is None and off_tty._lines
    finally:
        on_tty.close()
        off_tty.close()


# ----------------------------------------------------------------------------- sim_unstable
def _nan_first_row(env):
    def policy(obs):
        a = torch.zeros(env.num_envs, env.act_dim)
        a[0] = float("nan")  # diverges env 0's simulation (actions are not validated)
        return a
    return policy


def test_sim_unstable_is_counted_per_condition_in_reports():
    from rlkd.sim2real import Condition, Suite
    from rlkd.sim2real.evaluate import SuiteResult, run_first_episodes
    from rlkd.sim2real.report import summarize, to_markdown

    env = rlkd.make("AGVWarehouse-v0", num_envs=4, validate_actions=False, **FAST)
    eps = run_first_episodes(env, _nan_first_row(env), seed=0, max_steps=40)
    assert eps.values["sim_unstable"][0] == 1
    assert np.nansum(eps.values["sim_unstable"][1:]) == 0
    suite = Suite("t", "test", [Condition("nominal")])
    result = SuiteResult(suite=suite, env_id="AGVWarehouse-v0", episodes_per_condition=4,
                         conditions=suite.conditions, skipped={},
                         per_condition={"nominal": eps.values}, paired=True)
    summary = summarize(result, resamples=20)
    assert summary["conditions"][0]["sim_unstable"] == 1
    assert "`sim_unstable`): nominal 1." in to_markdown(summary, {})


def test_adapters_pass_sim_unstable_through():
    from rlkd.adapters.gymnasium_env import GymnasiumVectorEnv
    from rlkd.adapters.isaacgym import IsaacGymVecTask
    from rlkd.adapters.sb3 import SB3VecEnv

    def make():
        return rlkd.make("AGVWarehouse-v0", num_envs=4, validate_actions=False, **FAST)

    act = np.zeros((4, 2), dtype=np.float32)
    act[0] = np.nan
    sb3 = SB3VecEnv(make())
    sb3.reset()
    *_, infos = sb3.step(act)
    assert infos[0]["sim_unstable"] is True and not any("sim_unstable" in d for d in infos[1:])
    vec = GymnasiumVectorEnv(make())
    vec.reset(seed=0)
    *_, infos = vec.step(act)
    assert infos["sim_unstable"].tolist() == [True, False, False, False]
    assert infos["_sim_unstable"].all()
    ig = IsaacGymVecTask(make())
    ig.reset()
    *_, extras = ig.step(torch.as_tensor(act))
    assert extras["sim_unstable"] == 1


def test_bad_env_overrides_in_a_robot_log_fail_before_the_suite(tmp_path, capsys):
    from rlkd.policies import make_policy
    from rlkd.sim2real.replay import LogError, check_log, record_log, save_log

    env = rlkd.make("AGVWarehouse-v0", num_envs=2, seed=1, **FAST)
    log = record_log(env, make_policy("scripted", env), seed=1, env_index=0)
    log.env_overrides = {**log.env_overrides, "no_such_key": 1}
    with pytest.raises(LogError, match=r"field 'env_overrides' \{'no_such_key': 1\} does not "
                                       r"fit AGVWarehouse-v0"):
        check_log(log, "AGVWarehouse-v0")
    path = save_log(tmp_path / "bad.npz", log)
    capsys.readouterr()
    e = _main_exit(["eval", "sim2real", "AGVWarehouse-v0", "--policy", "scripted",
                    "--episodes", "8", "--no-twin", "--real-log", str(path),
                    "--out", str(tmp_path / "rep"), "--set", "num_layouts=2", "layout_seed=0"])
    assert e.code == 2 and "no_such_key" in str(e)
    assert "evaluating" not in capsys.readouterr().out  # refused before the suite ran
    assert not (tmp_path / "rep").exists()
