"""Data-parallel PPO with torch.distributed (gloo, 2 CPU processes)."""

import os
import socket
import subprocess
import sys

import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_WORKER = r"""
import os, sys, torch
torch.set_num_threads(1)
from rlkd.train import OnPolicyRunner, TrainConfig
out = sys.argv[1]
cfg = TrainConfig(agent="ppo-rdd", num_envs=8, steps=2 * 2 * 8 * 8, seed=5, out=out,
                  checkpoint_every=1, video=False, progress=False,
                  agent_cfg={"ppo": {"num_steps": 8, "num_epochs": 2, "num_minibatches": 2}})
r = OnPolicyRunner(cfg)
weights = []
for it in range(2):
    r.cfg.steps = (it + 1) * r.steps_per_iteration
    r.learn()
    weights.append({k: v.clone() for k, v in r.alg.policy.state_dict().items()})
rank = int(os.environ["RANK"])
torch.save({"weights": weights, "obs": r.obs["policy"].clone(),
            "rnd": r.alg.intrinsic.state_dict()}, f"{out}/rank{rank}.pt")
"""


def test_two_ranks_hold_identical_weights_after_each_update(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt") for i in (0, 1))
    for w0, w1 in zip(r0["weights"], r1["weights"]):
        assert all(torch.equal(w0[k], w1[k]) for k in w0)  # after every update
    assert not torch.equal(r0["weights"][0]["log_std"], r0["weights"][1]["log_std"]) or \
        not torch.equal(r0["weights"][0]["actor.0.weight"], r0["weights"][1]["actor.0.weight"])
    # predictor, target and normalizer statistics agree; only the per-env running intrinsic
    # returns (reward_norm.ret) belong to each rank's own envs
    shared = [k for k in r0["rnd"] if k != "reward_norm.ret"]
    assert all(torch.equal(r0["rnd"][k], r1["rnd"][k]) for k in shared)
    assert not torch.equal(r0["rnd"]["reward_norm.ret"], r1["rnd"]["reward_norm.ret"])
    assert not torch.equal(r0["obs"], r1["obs"])  # each rank simulates its own envs
    assert (tmp_path / "checkpoints" / "last.pt").is_file()  # rank 0 checkpoints
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2
