"""Trust in run directories and checkpoints: checksums, refusing to train over a run, resume
flags, tidying up after ``kill -9``, canonical devices (issue 17, items 1-4)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from rlkd.train import CheckpointError, OnPolicyRunner, TrainConfig, load_checkpoint, \
    save_checkpoint
from rlkd.train.rundir import RunDirError, truncate_metrics

ROOT = Path(__file__).resolve().parents[1]
FAST = {"num_layouts": 2, "layout_seed": 0}
#: A tiny ``rlkd train`` command line (8 envs x 8 steps = 64 env steps per iteration).
TINY = ["AGVWarehouse-v0", "--agent", "ppo", "--num-envs", "8", "--ppo", "num_steps=8",
        "num_epochs=1", "num_minibatches=1", "--no-video", "--no-progress", "--set",
        "num_layouts=2", "layout_seed=0"]


def _cfg(out, iters=1, **kw) -> TrainConfig:
    kw.setdefault("progress", False)
    return TrainConfig(env="AGVWarehouse-v0", agent="ppo", num_envs=8, steps=64 * iters, seed=1,
                       out=str(out), checkpoint_every=1, video=False, env_overrides=dict(FAST),
                       agent_cfg={"ppo": {"num_steps": 8, "num_epochs": 1,
                                          "num_minibatches": 1}}, **kw)


def _hashes(d: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _main_exit(argv: list[str]) -> SystemExit:
    from rlkd.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> Path:
    """A finished 2-iteration run."""
    run = tmp_path_factory.mktemp("done") / "run"
    OnPolicyRunner(_cfg(run, iters=2)).learn()
    return run


# ----------------------------------------------------------------------------- 1: checksums
def _flip_byte_in_tensor_data(path: Path) -> None:
    """Flip one byte in the middle of the file's first tensor storage (``<archive>/data/0``)
    in place: the zip structure stays intact, so only a checksum can notice."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:
                                                   info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def test_checksum_catches_a_flipped_byte(tmp_path):
    path = save_checkpoint(tmp_path / "ck.pt", {"w": torch.arange(1000.0), "iteration": 3})
    ck = load_checkpoint(path)
    assert ck["version"] == 3 and torch.equal(ck["w"], torch.arange(1000.0))
    # The file itself is plain data: it opens with weights_only=True, digest beside the payload.
    outer = torch.load(path, weights_only=True)
    assert len(outer["sha256"]) == 64 and outer["payload"].dtype == torch.uint8
    _flip_byte_in_tensor_data(path)
    torch.load(path, weights_only=True)  # the damage is invisible to torch itself ...
    with pytest.raises(CheckpointError, match=r"ck\.pt: checksum mismatch: the file was "
                                              r"modified or corrupted"):
        load_checkpoint(path)  # ... but not to the checksum


def test_files_without_checksum_still_load():
    from rlkd.policies import expert_path

    # Both predate the checksum (format 1): they load, unverified.
    assert load_checkpoint(expert_path("humanoid-walk"))["version"] == 1
    assert load_checkpoint(ROOT / "tests" / "data" / "ckpt_v1_ppo_rdd.pt")["version"] == 1


def test_run_checkpoint_with_flipped_byte_is_refused_on_resume(done_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(done_run, run)
    _flip_byte_in_tensor_data(run / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="last.pt: checksum mismatch"):
        OnPolicyRunner.resume(run)


# ------------------------------------------------------------------ 2: fresh run over a run
def test_fresh_run_into_existing_run_is_refused_and_touches_nothing(done_run):
    before = _hashes(done_run)
    with pytest.raises(RunDirError, match=r"already holds a run .*--resume .*--overwrite"):
        OnPolicyRunner(_cfg(done_run))
    e = _main_exit(["train", *TINY, "--steps", "64", "--out", str(done_run)])
    assert e.code == 2 and "--resume" in str(e) and "--overwrite" in str(e)
    assert _hashes(done_run) == before


def test_overwrite_starts_over(done_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(done_run, run)
    (run / "notes.txt").write_text("mine")  # not the run's: kept
    OnPolicyRunner(_cfg(run, iters=1, overwrite=True)).learn()
    assert [r["iteration"] for r in _rows(run)] == [0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt",
                                                                       "model_000001.pt"]
    assert len([p for p in run.iterdir() if p.name.startswith("events.out")]) == 1
    assert (run / "notes.txt").read_text() == "mine"


def test_resume_refuses_ignored_flags_and_a_budget_it_has_passed(done_run):
    before = _hashes(done_run)
    e = _main_exit(["train", "--resume", str(done_run), "--num-envs", "8", "--no-video"])
    assert e.code == 2 and "--num-envs" in str(e) and "would be ignored: --num-envs" in str(e)
    assert "ignored: --num-envs, --no-video" not in str(e)  # display flags are allowed
    e = _main_exit(["train", "HumanoidMotion-v0", "--resume", str(done_run)])
    assert e.code == 2 and "ENV" in str(e)
    e = _main_exit(["train", "--resume", str(done_run), "--steps", "100"])
    assert e.code == 2 and "below the 128 env steps" in str(e)
    e = _main_exit(["train", "--resume", str(done_run)])  # its own budget: nothing left to do
    assert e.code == 2 and "is complete" in str(e) and "--steps above 128" in str(e)
    assert _hashes(done_run) == before


# ----------------------------------------------------------------------- 3: after kill -9
def test_truncate_metrics_keeps_each_earlier_iteration_once(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"iteration": i, "env_steps": 64 * (i + 1)} for i in (0, 1, 2, 1, 2, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"iteration": 4, "env_')
    assert truncate_metrics(path, 3) == 4
    assert [r["iteration"] for r in map(json.loads, path.read_text().splitlines())] == [0, 1, 2]


def test_kill_9_mid_run_then_resume_leaves_a_clean_run_dir(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlkd", "train", *TINY, "--steps", "10000000",
           "--checkpoint-every", "2", "--out", str(run)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        # Kill after the 3rd checkpoint and resume from the 2nd: as if killed just before the
        # 3rd, with metrics rows and tensorboard points (flushed with each checkpoint) of two
        # iterations past the checkpoint that the resumed run logs again.
        while not (run / "checkpoints" / "model_000006.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "training never wrote its 3rd checkpoint"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    # What a kill in the middle of an atomic write leaves behind.
    orphan = run / "checkpoints" / ".last.pt.tmp-k1ll3d00.tmp"
    orphan.write_bytes(b"half a checkpoint")
    assert {4, 5} <= {r["iteration"] for r in _rows(run)}  # to be dropped, then rerun
    final = 64 * 8
    OnPolicyRunner.resume(run, steps=final,
                          checkpoint=run / "checkpoints" / "model_000004.pt").learn()
    iterations = [r["iteration"] for r in _rows(run)]
    assert iterations == list(range(final // 64)), iterations
    assert not orphan.exists()
    leftovers = [p for p in run.rglob(".*") if p.is_file()]
    assert not leftovers, leftovers
    # One logical tensorboard run: every env-step count appears once across the event files.
    acc = EventAccumulator(str(run))
    acc.Reload()
    steps = [ev.step for ev in acc.Scalars("charts/SPS")]
    assert steps == sorted(set(steps)) and steps[-1] == final


# ----------------------------------------------------------------------------- 4: devices
def test_indexed_cpu_device_is_the_cpu(tmp_path):
    import rlkd
    from rlkd.core import normalize_device

    assert normalize_device("cpu:0") == torch.device("cpu") == normalize_device("cpu")
    with pytest.raises(ValueError, match="invalid device 'gpu0'"):
        normalize_device("gpu0")
    env = rlkd.make("AGVWarehouse-v0", num_envs=2, device="cpu:0", **FAST)
    env.reset(seed=0)
    assert env.device == torch.device("cpu")
    env.step(torch.zeros(2, env.act_dim))  # a plain CPU tensor is on the env's device
    runner = OnPolicyRunner(_cfg(tmp_path / "run", device="cpu:0"))
    assert runner.device == torch.device("cpu")
    assert len(runner.learn()) > 0


def test_resume_takes_display_flags_and_stays_exact(done_run, tmp_path):
    """--no-progress, --log-interval-s, --checkpoint-every change how a resumed run is shown and
    saved, not what it computes: they apply, and the other flags are still refused."""
    from rlkd.train.cli import resume_settings, train_args_class

    import tyro

    argv = ["--resume", str(done_run), "--no-progress", "--log-interval-s", "5",
            "--checkpoint-every", "3", "--steps", "256"]
    args = tyro.cli(train_args_class(), args=argv)
    assert resume_settings(args, argv) == {"progress": False, "log_interval_s": 5.0,
                                           "checkpoint_every": 3}
