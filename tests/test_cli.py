"""The ``rlkd`` command line (rlkd.cli), called in-process through ``main(argv)`` and once as a
subprocess for the exit status."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from rlkd.cli import main


def test_list(capsys):
    main(["list"])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    import rlkd

    assert len(lines) == len(rlkd.list_envs())
    assert any(line.split()[0] == "AGVWarehouse-v0" for line in lines)
    assert all(len(line.split()) > 1 for line in lines)  # every id comes with a description


def test_help_exits_zero(capsys):
    for cmd in ("play", "bench"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "--num-envs" in capsys.readouterr().out


@pytest.mark.parametrize("policy,suffix", [("random", ".gif"), ("scripted", ".mp4")])
def test_play_writes_video(tmp_path, capsys, policy, suffix):
    out = tmp_path / f"out{suffix}"
    main(["play", "AGVWarehouse-v0", "--policy", policy, "--num-envs", "2", "--steps", "12",
          "--width", "96", "--video", str(out), "--set", "max_episode_steps=5", "num_layouts=2",
          "layout_seed=0"])
    assert out.exists() and out.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left behind
    text = capsys.readouterr().out
    assert "episodes" in text and re.search(r"\(12\s+frames\)", text)  # rich may wrap lines


def test_play_rejects_bad_overrides(tmp_path):
    with pytest.raises(SystemExit, match="key=value"):
        main(["play", "AGVWarehouse-v0", "--steps", "1", "--set", "num_obstacles"])
    # A user's mistake: one line and exit status 2, not a KeyError traceback.
    with pytest.raises(SystemExit, match="unknown config key 'num_obstacle'") as e:
        main(["play", "AGVWarehouse-v0", "--steps", "1", "--set", "num_obstacle=2"])
    assert e.value.code == 2


def test_bench_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["bench", "AGVWarehouse-v0", "--num-envs", "2", "4", "--peer-num-envs", "1",
          "--budget", "40", "--json", str(out), "--set", "num_layouts=2", "layout_seed=0"])
    text = out.read_text()
    res = json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert res["env_id"] == "AGVWarehouse-v0"
    assert [r["num_envs"] for r in res["ours"]] == [2, 4]
    for r in res["ours"] + res["peer"]["results"]:
        assert r["steps"] >= 20 and r["seconds"] > 0
        assert r["env_steps_per_s"] == pytest.approx(r["num_envs"] * r["steps"] / r["seconds"])
        assert r["ms_per_step"] == pytest.approx(1e3 * r["seconds"] / r["steps"])
    assert [r["num_envs"] for r in res["peer"]["results"]] == [1]
    assert res["ratio_vs_peer"] == pytest.approx(
        res["best_ours_env_steps_per_s"] / res["best_peer_env_steps_per_s"])
    assert {"platform", "python", "torch", "cpu_count", "torch_threads"} <= set(res["machine"])
    assert res["overrides"] == {"num_layouts": 2, "layout_seed": 0}
    assert "rlkd batched" in capsys.readouterr().out


def test_bench_without_peer_writes_valid_json(tmp_path):
    out = tmp_path / "bench.json"
    main(["bench", "AGVWarehouse-v0", "--num-envs", "2", "--peer-num-envs", "0", "--budget", "40",
          "--json", str(out), "--set", "num_layouts=2", "layout_seed=0"])
    # Strict JSON: no NaN/Infinity tokens when no peer was measured.
    res = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"invalid JSON {c}"))
    assert res["peer"]["results"] == []
    assert res["ratio_vs_peer"] is None and res["best_peer_env_steps_per_s"] is None


def test_unknown_env_id_exits_nonzero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rlkd", "play", "NoSuchEnv-v0", "--steps", "1"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "NoSuchEnv-v0" in proc.stderr


def test_overrides_read_yaml_and_exponent_floats():
    from rlkd.cli import _overrides

    got = _overrides(("learning_rate=1e-5", "motion=walk", "hidden=[64, 32]", "flag=true"))
    assert got == {"learning_rate": 1e-5, "motion": "walk", "hidden": [64, 32], "flag": True}
    with pytest.raises(SystemExit, match="key=value"):
        _overrides(("no_equals_sign",))


def test_overrides_keep_non_yaml_scalars_and_reject_broken_lists():
    from rlkd.train.cli import UsageError, parse_overrides

    got = parse_overrides(("motion=@general", "spec=walk@1.0+turn@0.8:0.5"))
    assert got == {"motion": "@general", "spec": "walk@1.0+turn@0.8:0.5"}
    with pytest.raises(UsageError, match="hidden"):
        parse_overrides(("hidden=[64, 32",))
