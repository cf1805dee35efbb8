"""Throughput of the batched sim-to-real suite vs evaluating the same conditions one env at a
time, in the same run, with the same policy.

    python scripts/bench_sim2real.py --run runs/agv_default --episodes 64 --sequential-episodes 8

Batched: every condition x episode of the suite in one batch (``rlkd eval sim2real``'s path).
One at a time: one env, one condition, one episode after another (reset between episodes).
Both report episodes/s; the ratio is the speed-up. Writes ``results/bench_sim2real.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from rlkd.core.provenance import command_line, machine_info, write_json_atomic
from rlkd.policies import policy_source
from rlkd.sim2real import evaluate_one_at_a_time, evaluate_suite, load_suite


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="AGVWarehouse-v0",
                    help="run directory of `rlkd train`, or an env id (scripted policy)")
    ap.add_argument("--suite", default="default")
    ap.add_argument("--episodes", type=int, default=64, help="per condition, batched")
    ap.add_argument("--sequential-episodes", type=int, default=8,
                    help="per condition, one at a time (its rate is what matters)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/bench_sim2real.json")
    args = ap.parse_args()

    env_id, overrides, factory, label = policy_source(args.run, "scripted", "cpu", args.seed)
    suite = load_suite(args.suite)
    # Warm-up (layout and range-table construction is cached across envs of the same config).
    evaluate_suite(factory, env_id, suite, episodes=8, seed=args.seed, env_overrides=overrides)

    t0 = time.perf_counter()
    batched = evaluate_suite(factory, env_id, suite, episodes=args.episodes, seed=args.seed,
                             env_overrides=overrides)
    t_batched = time.perf_counter() - t0
    n_batched = len(batched.conditions) * args.episodes

    t0 = time.perf_counter()
    seq = evaluate_one_at_a_time(factory, env_id, batched.conditions, args.sequential_episodes,
                                 seed=args.seed, env_overrides=overrides)
    t_seq = time.perf_counter() - t0
    n_seq = len(batched.conditions) * args.sequential_episodes

    def steps(per_condition):
        return float(sum(np.nansum(v["length"]) for v in per_condition.values()))

    res = {
        "command": command_line(), "machine": machine_info(), "policy": label,
        "env_id": env_id, "suite": suite.name,
        "conditions": [c.name for c in batched.conditions],
        "batched": {"episodes": n_batched, "seconds": t_batched,
                    "episodes_per_s": n_batched / t_batched,
                    "env_steps_per_s": steps(batched.per_condition) / t_batched,
                    "num_envs": n_batched},
        "one_at_a_time": {"episodes": n_seq, "seconds": t_seq, "episodes_per_s": n_seq / t_seq,
                          "env_steps_per_s": steps(seq) / t_seq},
        "success_nominal": {"batched": float(np.nanmean(batched.per_condition["nominal"]["success"])),
                            "one_at_a_time": float(np.nanmean(seq["nominal"]["success"]))},
    }
    res["speedup_episodes_per_s"] = res["batched"]["episodes_per_s"] / res["one_at_a_time"]["episodes_per_s"]
    path = write_json_atomic(Path(args.out), res)
    print(f"{env_id}, {label}, suite {suite.name} ({len(batched.conditions)} conditions), "
          f"torch threads {torch.get_num_threads()}")
    print(f"batched:      {n_batched} episodes in {t_batched:.1f} s = "
          f"{res['batched']['episodes_per_s']:.1f} episodes/s")
    print(f"one at a time: {n_seq} episodes in {t_seq:.1f} s = "
          f"{res['one_at_a_time']['episodes_per_s']:.2f} episodes/s")
    print(f"speed-up: {res['speedup_episodes_per_s']:.1f}x  -> {path}")


if __name__ == "__main__":
    main()
