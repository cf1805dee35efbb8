"""scripts/bench_tactile.py end to end in its --smoke form (slow: ~10 s): every ratio key per
env count, the raw numbers and provenance, ``vs_tacto`` null with a reason when tacto's venv is
absent. With ``RLKD_TACTO_PYTHON`` set to tacto's venv python, the peer runs too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_tactile.py"

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "bench.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--envs", "1", "2", "--threads", "1",
                    "--out", str(out), *extra], check=True, cwd=tmp_path, env=env,
                   capture_output=True, text=True, timeout=600)
    return json.loads(out.read_text())


def test_smoke_writes_every_key(tmp_path):
    res = _run(tmp_path, "--tacto-python", str(tmp_path / "no-such-python"))
    assert res["smoke"] is True and res["threads"] == 1 and res["machine"]["git_commit"]
    assert "bench_tactile.py" in res["command"]
    for key in ("none_vs_limit", "field_vs_physics"):
        assert set(res[key]) == {"1", "2"}, key
        assert all(v is not None and v == v for v in res[key].values()), key
    assert 0 < res["none_vs_limit"]["1"] < 2
    if "both" in res["modes"]:  # the image mode is offered by the env
        assert set(res["both_vs_physics"]) == {"1", "2"}
        assert res["probes"]["both"]["images_per_env_step"] == 2
        assert res["ours_images"]["2"]["images_per_s"] > 0
    else:
        assert "both" in res["modes_skipped"]
    assert res["vs_tacto"] is None and "does not exist" in res["vs_tacto_reason"]
    row = res["results"][0]
    assert row["physics_limit"]["nstep"] == 10 and row["physics_limit"]["runs"]
    assert row["physics_limit"]["max_qpos_diff_vs_env"] < 1e-9  # the replay is the env's physics


@pytest.mark.skipif(not os.environ.get("RLKD_TACTO_PYTHON"),
                    reason="RLKD_TACTO_PYTHON (tacto's venv python) not set")
def test_smoke_with_tacto_peer(tmp_path):
    res = _run(tmp_path, "--modes", "none", "both", "--tacto-python",
               os.environ["RLKD_TACTO_PYTHON"])
    assert res["tacto"]["images_per_s"] > 0 and res["tacto"]["max_gel_depth_m"] > 0
    assert res["tacto"]["image_shape"] == [80, 60, 3]
    assert set(res["vs_tacto"]) == {"1", "2"}
