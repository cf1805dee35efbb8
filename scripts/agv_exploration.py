"""Exploration study: PPO vs PPO+RND vs PPO+RDD on a hard sparse-reward AGV warehouse.

Reproduces the question of Yin et al. 2024 (RND for AGV path planning) and Fang et al. 2025
(RDD): do intrinsic rewards raise the success rate at a fixed env-step budget when random
exploration rarely reaches the goal?

    python scripts/agv_exploration.py --seeds 5 --steps 1500000 --jobs 2

Every (agent, seed) is one ``rlkd train`` run (its own process, ``--no-video``); curves are read
from each run's ``metrics.jsonl``. Output: ``results/agv_exploration.json`` (command line, git
commit, machine, seeds, config, raw curves, summary table) and ``results/agv_exploration.png``
(success rate and return vs env steps, mean +- 95% CI over seeds, Student t).

All agents use the same extrinsic discount (``gamma = 0.999``, RND's default), so the only
difference between them is the intrinsic reward.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_one(agent: str, seed: int, args, run_dir: Path) -> Path:
    cmd = [sys.executable, "-m", "rlkd", "train", args.env, "--agent", agent,
           "--num-envs", str(args.num_envs), "--steps", str(args.steps), "--seed", str(seed),
           "--out", str(run_dir), "--no-video", "--checkpoint-every", "1000",
           "--ppo", "gamma=0.999", *args.ppo, "--set", *args.set]
    if agent != "ppo" and args.intrinsic:
        cmd += ["--intrinsic", *args.intrinsic]
    if args.set == []:
        cmd.remove("--set")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    log = run_dir.with_suffix(".log")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "w") as f:
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True)
    print(f"{agent:8s} seed {seed}: {time.time() - t0:.0f} s", flush=True)
    return run_dir


def read_curve(run_dir: Path) -> dict[str, list[float]]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"env_steps": [r["env_steps"] for r in rows],
            "success_rate": [r["charts/success_rate"] for r in rows],
            "return": [r["charts/episodic_return"] for r in rows],
            "collision_rate": [r["charts/collision_rate"] for r in rows],
            "intrinsic_reward_raw": [r.get("intrinsic/reward_raw", float("nan")) for r in rows],
            "sps": [r["charts/SPS"] for r in rows]}


def mean_ci(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95% CI half-width over axis 0 (Student t, n - 1 dof)."""
    from scipy import stats

    n = x.shape[0]
    m = np.nanmean(x, 0)
    if n < 2:
        return m, np.zeros_like(m)
    half = stats.t.ppf(0.975, n - 1) * np.nanstd(x, 0, ddof=1) / np.sqrt(n)
    return m, half


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="AGVWarehouse-Exploration-v0")
    p.add_argument("--agents", nargs="+", default=["ppo", "ppo-rnd", "ppo-rdd"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=1_500_000)
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--set", nargs="*", default=[], help="env overrides key=value")
    p.add_argument("--ppo", nargs="*", default=[], help="PPO overrides key=value")
    p.add_argument("--intrinsic", nargs="*", default=[], help="RND/RDD overrides key=value")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "results" / "agv_exploration_runs")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "agv_exploration.json")
    p.add_argument("--reuse", action="store_true", help="read finished runs instead of rerunning")
    args = p.parse_args()

    jobs = [(a, s) for s in range(args.seeds) for a in args.agents]
    t0 = time.time()
    if not args.reuse:
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda j: run_one(j[0], j[1], args, args.runs_dir / f"{j[0]}_s{j[1]}"),
                          jobs))
    curves = {a: [read_curve(args.runs_dir / f"{a}_s{s}") for s in range(args.seeds)]
              for a in args.agents}

    summary = {}
    for a, cs in curves.items():
        n = min(len(c["success_rate"]) for c in cs)
        tail = max(1, n // 10)  # final performance: mean of the last 10% of iterations
        final_succ = np.array([np.nanmean(c["success_rate"][n - tail:n]) for c in cs])
        final_ret = np.array([np.nanmean(c["return"][n - tail:n]) for c in cs])
        auc = np.array([np.nanmean(c["success_rate"][:n]) for c in cs])
        ms, hs = mean_ci(final_succ[:, None])
        mr, hr = mean_ci(final_ret[:, None])
        ma, ha = mean_ci(auc[:, None])
        summary[a] = {"final_success": float(ms[0]), "final_success_ci95": float(hs[0]),
                      "final_return": float(mr[0]), "final_return_ci95": float(hr[0]),
                      "mean_success_over_training": float(ma[0]),
                      "mean_success_over_training_ci95": float(ha[0]),
                      "per_seed_final_success": final_succ.tolist(),
                      "train_sps_median": float(np.median([np.median(c["sps"]) for c in cs]))}
    base = summary.get("ppo", {}).get("final_success")
    for a in summary:
        if base is not None:
            summary[a]["ratio_vs_ppo"] = (summary[a]["final_success"] / base if base > 0
                                          else float("inf"))

    from rlkd.core.provenance import command_line, git_commit, machine_info, write_json_atomic

    result = {"study": "agv_exploration", "command": command_line(), "git_commit": git_commit(ROOT),
              "machine": machine_info(), "env": args.env, "agents": args.agents,
              "seeds": list(range(args.seeds)), "steps": args.steps, "num_envs": args.num_envs,
              "overrides": {"set": args.set, "ppo": ["gamma=0.999", *args.ppo],
                            "intrinsic": args.intrinsic},
              "wall_clock_s": time.time() - t0, "summary": summary, "curves": curves}
    write_json_atomic(args.out, result)
    plot(curves, args.out.with_suffix(".png"), args.env)
    print(json.dumps(summary, indent=1))


def plot(curves, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlkd.core.atomic import atomic_write

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for a, cs in curves.items():
        n = min(len(c["env_steps"]) for c in cs)
        x = np.array(cs[0]["env_steps"][:n]) / 1e6
        for ax, key in zip(axes, ("success_rate", "return")):
            y = np.array([c[key][:n] for c in cs], dtype=float)
            m, h = mean_ci(y)
            ax.plot(x, m, label=f"{a} (n={len(cs)})")
            ax.fill_between(x, m - h, m + h, alpha=0.2)
    axes[0].set_ylabel("success rate")
    axes[1].set_ylabel("episodic return")
    for ax in axes:
        ax.set_xlabel("env steps (M)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{title}: mean +- 95% CI over seeds")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


if __name__ == "__main__":
    main()
