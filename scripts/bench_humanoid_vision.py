"""What the humanoid's camera observations cost (issue 15's bench): ``HumanoidMotion-v0`` step
time with ``vision`` none / rays / keypoints2d / rays with 3 occluder boxes, same run, same
seed, same actions; the cost of each is reported as a share of the ``none`` step.

    python scripts/bench_humanoid_vision.py            # 64 and 512 envs -> results/bench_humanoid_vision.json
    python scripts/bench_humanoid_vision.py --quick    # smoke test, its own file

Target (issue 15): ray observations <= 10% of a 512-env step. Rendered images are not measured:
the env has no ``image`` group without a GPU (MuJoCo Warp's renderer).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import rlkd
from rlkd.core.provenance import command_line, git_commit, machine_info, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"none": {}, "rays": {"vision": "rays"}, "keypoints2d": {"vision": "keypoints2d"},
        "rays_occluded": {"vision": "rays", "keypoint_occlusion": 3}}


def time_steps(num_envs: int, overrides: dict, steps: int, warmup: int, threads: int) -> dict:
    """Median and mean seconds per ``env.step`` of ``num_envs`` envs over ``steps`` steps of a
    fixed action sequence (after ``warmup`` untimed steps)."""
    env = rlkd.make("HumanoidMotion-v0", num_envs=num_envs, seed=0, num_threads=threads,
                    **overrides)
    gen = torch.Generator().manual_seed(0)
    actions = [torch.rand(num_envs, env.act_dim, generator=gen) * 0.2 - 0.1
               for _ in range(steps + warmup)]
    env.reset(seed=0)
    times = []
    for i, a in enumerate(actions):
        t0 = time.perf_counter()
        env.step(a)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    env.close()
    times.sort()
    return {"median_s": times[len(times) // 2], "mean_s": sum(times) / len(times),
            "steps": steps}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny run, its own output file")
    ap.add_argument("--envs", type=int, nargs="+", default=None, help="batch sizes (64 512)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per arm (60)")
    ap.add_argument("--threads", type=int, default=2, help="MuJoCo and torch threads")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats per arm")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    envs = args.envs or ([8] if args.quick else [64, 512])
    steps = args.steps or (5 if args.quick else 60)
    repeats = 1 if args.quick else args.repeats
    out = Path(args.out or ROOT / "results" / ("bench_humanoid_vision_quick.json" if args.quick
                                               else "bench_humanoid_vision.json"))
    torch.set_num_threads(args.threads)
    rows = {}
    for n in envs:
        best = {}
        for _ in range(repeats):  # arms interleaved, so drift hits them alike; best of repeats
            for arm, kw in ARMS.items():
                r = time_steps(n, kw, steps, warmup=3, threads=args.threads)
                if arm not in best or r["median_s"] < best[arm]["median_s"]:
                    best[arm] = r
        base = best["none"]["median_s"]
        rows[str(n)] = {arm: {**r, "us_per_env_step": 1e6 * r["median_s"] / n,
                              "extra_over_none": r["median_s"] / base - 1.0}
                        for arm, r in best.items()}
        print(n, {a: f"{1e3 * r['median_s']:.2f} ms (+{100 * r['extra_over_none']:.1f}%)"
                  for a, r in rows[str(n)].items()}, flush=True)
    big = rows[str(max(envs))]
    rep = {"rows": rows, "threads": args.threads, "repeats": repeats,
           "target": {"rays_extra_over_none_max": 0.10, "num_envs": max(envs),
                      "value": big["rays"]["extra_over_none"],
                      "met": big["rays"]["extra_over_none"] <= 0.10},
           "not_measured": "image frames/s: no image group without a GPU",
           "provenance": {"command": command_line(), "commit": git_commit(ROOT),
                          "machine": machine_info()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, rep)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
