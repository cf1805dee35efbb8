"""The PPO parity study's statistics and its trainer-independent curve recorder."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import ppo_parity  # noqa: E402
import ppo_parity_stats as S  # noqa: E402


def test_iqm_is_the_middle_half_mean():
    assert S.iqm([0, 1, 2, 3, 100, -100, 4, 5]) == pytest.approx(np.mean([1, 2, 3, 4]))
    m, (lo, hi) = S.iqm_ci(np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    assert lo <= m <= hi
    d, (lo, hi) = S.iqm_diff_ci(np.full(5, 0.6), np.full(5, 0.2))
    assert d == pytest.approx(0.4) and lo == pytest.approx(0.4) and hi == pytest.approx(0.4)


def test_targets_compare_ours_with_each_peer():
    runs = [{"trainer": tr, "task": "dense", "seed": s, "success": [0.1, v], "seconds": [1, t],
             "env_steps": [10, 20], "total_env_steps": 20, "wall_s": t}
            for tr, v, t in (("rlkd", 0.6, 5.0), ("sb3", 0.4, 20.0), ("rsl_rl", 0.7, 8.0))
            for s in range(3)]
    summary, by = S.summarize(runs)
    assert summary["rlkd"]["dense"]["seconds_to_50"] == 5.0
    assert summary["sb3"]["dense"]["seconds_to_50"] is None
    tg = S.targets(summary, by)
    assert tg["dense_final_iqm_vs_sb3"]["met"] and not tg["dense_final_iqm_vs_rsl_rl"]["met"]
    assert tg["dense_seconds_to_50_vs_faster_peer"]["ratio"] == pytest.approx(5.0 / 8.0)
    assert tg["dense_seconds_to_50_vs_faster_peer"]["met"]


def test_curve_recorder_counts_finished_episodes_and_stops_at_the_budget():
    import rlkd

    env = rlkd.make("AGVWarehouse-v0", num_envs=8, seed=0, max_episode_steps=5)
    env.reset(seed=0)
    rec = ppo_parity.CurveRecorder(env, steps=8 * 12, seconds=1e9, window=200, every=8 * 5)
    with pytest.raises(ppo_parity.StopRun):
        for _ in range(100):
            env.step(torch.zeros(8, 2))
    assert rec.env_steps == 96
    assert rec.curve["env_steps"] == [40, 80] and rec.count >= 8 * 2  # every env ended twice
    assert all(0.0 <= s <= 1.0 for s in rec.curve["success"])


def test_restore_runs_writes_back_missing_records_and_keeps_existing(tmp_path):
    from ppo_parity import restore_runs

    rec = {"trainer": "rlkd", "task": "dense", "seed": 3, "success": [0.5], "env_steps": [10]}
    other = {**rec, "seed": 4, "success": [0.1]}
    out = tmp_path / "ppo_parity.json"
    out.write_text(json.dumps({"runs": [rec, other]}))
    runs = tmp_path / "runs"
    runs.mkdir()
    kept = {**other, "success": [0.9]}
    (runs / "rlkd_dense_s4.json").write_text(json.dumps(kept))
    assert restore_runs(out, runs) == 1
    assert json.loads((runs / "rlkd_dense_s3.json").read_text()) == rec
    assert json.loads((runs / "rlkd_dense_s4.json").read_text()) == kept
    assert restore_runs(out, runs) == 0
    assert restore_runs(tmp_path / "missing.json", runs) == 0
