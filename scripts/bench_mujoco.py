"""Throughput of rlkd's MujocoBatch (CPU backend) on gymnasium's humanoid, against the physics
limit and gymnasium's vector envs, all measured in one run.

    python scripts/bench_mujoco.py                      # writes results/bench_mujoco.json

Model: gymnasium's ``humanoid.xml`` (RK4, PGS), frame skip 5 (``nstep=5``), controls uniform in
the actuators' ``ctrlrange``, pre-drawn so no sampler is timed. Env steps/s = physics steps/s / 5.

1. **Ours vs the limit, same trajectories.** For each batch size N, ``MujocoBatch`` (all derived
   fields kept: xpos, xquat, cvel, sensordata, cfrc_ext) steps N envs K times from perturbed
   standing states; the limit is ``mujoco.rollout.Rollout`` (as many threads as cores) running the
   very same initial states and controls in one call (N x 5K physics steps, no Python between
   steps). Both produce the same trajectories (checked bitwise), so the ratio is our overhead.
2. **Env-like, vs gymnasium.** Random actions, envs reset when the torso height leaves
   Humanoid-v5's healthy range [1, 2] m, with its reset noise (uniform +-0.01 on qpos and qvel):
   ours (step + health check + ``reset`` of the fallen envs, on the batch) at each N, against
   gymnasium ``Humanoid-v5`` in ``SyncVectorEnv`` and ``AsyncVectorEnv`` (16 envs, autoreset).
   Gymnasium's step also builds observations and rewards; ours here is the simulator alone.
3. **Alternatives** behind the CPU implementation choice (see ``rlkd/sim/mujoco/cpu.py``), at
   512 envs on workload 1: ``cpu_impl="threads"`` (MjData per env + thread pool) and
   ``mujoco.rollout`` called once per env step (state only, solver warm start lost per call).

Every timing is the best of ``--repeats`` rounds, the configurations interleaved within a round:
the machine is shared, so a slow spell hits all configurations alike, and the best run is the one
least disturbed (the load average is recorded alongside; for workload 1 the median of the
per-round ratios is reported too).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import gymnasium
import mujoco
import mujoco.rollout
import numpy as np
import torch

from rlkd.bench import mujoco_rollout_limit
from rlkd.core.provenance import command_line, machine_info, write_json_atomic
from rlkd.sim.mujoco import MujocoBatch
from rlkd.sim.mujoco.model import available_cores

NSTEP = 5
FULLPHYSICS = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
HEALTHY_Z = (1.0, 2.0)  # Humanoid-v5 defaults
RESET_NOISE = 1e-2


def humanoid_xml() -> str:
    return os.path.join(os.path.dirname(gymnasium.__file__), "envs/mujoco/assets/humanoid.xml")


def initial_qpos(m: mujoco.MjModel, n: int, rng: np.random.Generator) -> np.ndarray:
    return m.qpos0 + rng.uniform(-RESET_NOISE, RESET_NOISE, (n, m.nq))


def random_ctrl(m: mujoco.MjModel, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    lo, hi = m.actuator_ctrlrange[:, 0], m.actuator_ctrlrange[:, 1]
    return lo + (hi - lo) * rng.random((*shape, m.nu))


# ---------------------------------------------------------------------------- workload 1
def ours_same_trajectories(m, qpos0, ctrls, threads, impl="batch") -> tuple[float, np.ndarray]:
    """Env steps/s of MujocoBatch over ``ctrls`` (K, N, nu) from ``qpos0`` (N, nq)."""
    k, n, _ = ctrls.shape
    with MujocoBatch(m, n, num_threads=threads, nstep=NSTEP, cpu_impl=impl) as b:
        c = torch.from_numpy(ctrls)
        b.step(c[0])  # warm-up (threads, caches), then back to the same start
        b.reset(qpos=qpos0)
        t0 = time.perf_counter()
        for i in range(k):
            b.step(c[i])
        dt = time.perf_counter() - t0
        return n * k / dt, b.qpos.numpy().copy()


def rollout_per_step(m, qpos0, ctrls, threads) -> float:
    """Env steps/s of ``Rollout.rollout`` called once per env step (state only)."""
    k, n, _ = ctrls.shape
    d = mujoco.MjData(m)
    state = np.empty((n, mujoco.mj_stateSize(m, FULLPHYSICS)))
    for i in range(n):
        mujoco.mj_resetData(m, d)
        d.qpos[:] = qpos0[i]
        mujoco.mj_getState(m, d, state[i], FULLPHYSICS)
    out = np.empty((n, NSTEP, state.shape[1]))
    sens = {"sensordata": np.empty((n, NSTEP, m.nsensordata))} if m.nsensordata else {}
    models = [m] * n  # skip_checks wants one model per env
    with mujoco.rollout.Rollout(nthread=threads) as r:
        datas = [mujoco.MjData(m) for _ in range(threads)]
        r.rollout(models, datas, state.copy(), np.repeat(ctrls[0][:, None], NSTEP, axis=1),
                  nstep=NSTEP, state=out, skip_checks=True, **sens)  # warm-up
        t0 = time.perf_counter()
        for i in range(k):
            control = np.repeat(ctrls[i][:, None], NSTEP, axis=1)
            r.rollout(models, datas, state, control, nstep=NSTEP, state=out, skip_checks=True,
                      **sens)
            state[:] = out[:, -1]
        dt = time.perf_counter() - t0
    return n * k / dt


# ---------------------------------------------------------------------------- workload 2
def ours_env_like(m, n, steps, threads, seed) -> tuple[float, int]:
    """Env steps/s with Humanoid-v5-like termination and resets, and the number of resets."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    ctrls = torch.from_numpy(random_ctrl(m, (min(steps, 64), n), rng))
    with MujocoBatch(m, n, num_threads=threads, nstep=NSTEP) as b:
        b.step(ctrls[0])  # warm-up
        b.reset(qpos=initial_qpos(m, n, rng),
                qvel=rng.uniform(-RESET_NOISE, RESET_NOISE, (n, m.nv)))
        qpos0 = torch.from_numpy(m.qpos0)
        resets = 0
        t0 = time.perf_counter()
        for i in range(steps):
            b.step(ctrls[i % len(ctrls)])
            z = b.qpos[:, 2]
            done = ((z < HEALTHY_Z[0]) | (z > HEALTHY_Z[1]) | b.unstable).nonzero().squeeze(-1)
            if done.numel():
                k = done.numel()
                noise_q = (torch.rand(k, m.nq, generator=gen, dtype=torch.float64) * 2 - 1)
                noise_v = (torch.rand(k, m.nv, generator=gen, dtype=torch.float64) * 2 - 1)
                b.reset(done, qpos=qpos0 + RESET_NOISE * noise_q, qvel=RESET_NOISE * noise_v)
                resets += k
        dt = time.perf_counter() - t0
    return n * steps / dt, resets


def gymnasium_vector(kind: str, n: int, steps: int, seed: int) -> float:
    """Env steps/s of gymnasium Humanoid-v5 in a Sync/AsyncVectorEnv of ``n`` envs."""
    cls = {"sync": gymnasium.vector.SyncVectorEnv, "async": gymnasium.vector.AsyncVectorEnv}[kind]
    envs = cls([lambda: gymnasium.make("Humanoid-v5") for _ in range(n)])
    try:
        envs.reset(seed=seed)
        rng = np.random.default_rng(seed)
        space = envs.action_space
        actions = rng.uniform(space.low, space.high, (64, *space.shape)).astype(space.dtype)
        for i in range(10):
            envs.step(actions[i])
        t0 = time.perf_counter()
        for i in range(steps):
            envs.step(actions[i % 64])
        return n * steps / (time.perf_counter() - t0)
    finally:
        envs.close()


# ---------------------------------------------------------------------------- main
def interleaved(repeats: int, jobs: dict) -> dict[str, list[float]]:
    """Run every job once per round, ``repeats`` rounds: a slow spell of the shared machine then
    hits all configurations alike instead of one of them. ``jobs``: name -> fn() -> steps/s."""
    runs: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, fn in jobs.items():
            runs[name].append(fn())
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 512, 2048])
    ap.add_argument("--threads", type=int, default=available_cores())
    ap.add_argument("--env-steps", type=int, default=20_000,
                    help="env steps per timing (per batch size), steps = this / N")
    ap.add_argument("--max-steps", type=int, default=2000, help="cap on steps per timing")
    ap.add_argument("--gym-envs", type=int, default=16)
    ap.add_argument("--gym-steps", type=int, default=300)
    ap.add_argument("--alt-envs", type=int, default=512)
    ap.add_argument("--env-like-min-steps", type=int, default=50,
                    help="env-like runs last at least this many steps, so humanoids fall and reset")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/bench_mujoco.json")
    args = ap.parse_args()

    m = mujoco.MjModel.from_xml_path(humanoid_xml())
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    def steps_for(n: int) -> int:
        return int(min(args.max_steps, max(10, args.env_steps // n)))

    # 1. ours vs the limit on identical trajectories (and a bitwise check of the final states)
    finals: dict[str, np.ndarray] = {}
    jobs = {}
    for n in args.sizes:
        rng = np.random.default_rng(args.seed)
        qpos0, ctrls = initial_qpos(m, n, rng), random_ctrl(m, (steps_for(n), n), rng)

        def ours(n=n, qpos0=qpos0, ctrls=ctrls):
            rate, finals[f"ours{n}"] = ours_same_trajectories(m, qpos0, ctrls, args.threads)
            return rate

        def limit(n=n, qpos0=qpos0, ctrls=ctrls):
            rate, finals[f"limit{n}"] = mujoco_rollout_limit(m, qpos0, ctrls, NSTEP, args.threads)
            return rate

        jobs[f"ours{n}"], jobs[f"limit{n}"] = ours, limit
    runs = interleaved(args.repeats, jobs)
    same = []
    for n in args.sizes:
        o, lim = runs[f"ours{n}"], runs[f"limit{n}"]
        row = {"num_envs": n, "steps": steps_for(n),
               "ours_env_steps_per_s": max(o), "limit_env_steps_per_s": max(lim),
               "ratio": max(o) / max(lim),
               "median_round_ratio": float(np.median(np.array(o) / np.array(lim))),
               "ours_runs": o, "limit_runs": lim,
               "bitwise_equal": bool(np.array_equal(finals[f"ours{n}"], finals[f"limit{n}"]))}
        same.append(row)
        print(f"[same trajectories] N={n:5d}: ours {row['ours_env_steps_per_s']:8.0f}  limit "
              f"{row['limit_env_steps_per_s']:8.0f}  ratio {row['ratio']:.3f} (median of rounds "
              f"{row['median_round_ratio']:.3f})  bitwise={row['bitwise_equal']}", flush=True)

    # 2. env-like workload vs gymnasium's vector envs
    resets: dict[int, int] = {}
    env_steps = {n: max(steps_for(n), args.env_like_min_steps) for n in args.sizes}
    jobs = {}
    for n in args.sizes:
        def ours_env(n=n):
            rate, resets[n] = ours_env_like(m, n, env_steps[n], args.threads, args.seed)
            return rate
        jobs[f"ours{n}"] = ours_env
    for kind in ("sync", "async"):
        jobs[kind] = lambda kind=kind: gymnasium_vector(kind, args.gym_envs, args.gym_steps,
                                                        args.seed)
    runs = interleaved(args.repeats, jobs)
    env_like = [{"num_envs": n, "steps": env_steps[n], "env_steps_per_s": max(runs[f"ours{n}"]),
                 "runs": runs[f"ours{n}"], "resets": resets[n]} for n in args.sizes]
    gym = {kind: {"num_envs": args.gym_envs, "steps": args.gym_steps,
                  "env_steps_per_s": max(runs[kind]), "runs": runs[kind]}
           for kind in ("sync", "async")}
    for r in env_like:
        print(f"[env-like] ours N={r['num_envs']:5d}: {r['env_steps_per_s']:8.0f} env steps/s "
              f"({r['resets']} resets)", flush=True)
    for kind, r in gym.items():
        print(f"[env-like] gymnasium {kind} x{args.gym_envs}: {r['env_steps_per_s']:8.0f} "
              f"env steps/s", flush=True)

    # 3. the alternatives to mujoco.batch on workload 1
    n = args.alt_envs
    rng = np.random.default_rng(args.seed)
    qpos0, ctrls = initial_qpos(m, n, rng), random_ctrl(m, (steps_for(n), n), rng)
    runs = interleaved(args.repeats, {
        "mujoco_batch": lambda: ours_same_trajectories(m, qpos0, ctrls, args.threads)[0],
        "threadpool_mjdata": lambda: ours_same_trajectories(
            m, qpos0, ctrls, args.threads, impl="threads")[0],
        "rollout_per_step_state_only": lambda: rollout_per_step(m, qpos0, ctrls, args.threads),
        "limit": lambda: mujoco_rollout_limit(m, qpos0, ctrls, NSTEP, args.threads)[0]})
    alt = {name: {"env_steps_per_s": max(r), "runs": r,
                  "ratio_vs_limit": max(r) / max(runs["limit"])} for name, r in runs.items()}
    for name, r in alt.items():
        print(f"[alternatives N={n}] {name:28s} {r['env_steps_per_s']:8.0f}  "
              f"ratio {r['ratio_vs_limit']:.3f}", flush=True)

    best_same = max(same, key=lambda r: r["ours_env_steps_per_s"])
    ours_env_best = max(r["env_steps_per_s"] for r in env_like)
    gym_best = max(v["env_steps_per_s"] for v in gym.values())
    summary = {
        "ratio_vs_limit_by_num_envs": {r["num_envs"]: r["ratio"] for r in same},
        "ratio_vs_limit_at_best_size": best_same["ratio"],
        "min_ratio_vs_limit": min(r["ratio"] for r in same),
        "ours_best_env_like_env_steps_per_s": ours_env_best,
        "gymnasium_best_env_steps_per_s": gym_best,
        "ratio_vs_best_gymnasium": ours_env_best / gym_best,
        "targets": {"ratio_vs_limit": 0.85, "ratio_vs_best_gymnasium": 2.5},
    }
    result = {
        "command": command_line([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine_info(), "mujoco": mujoco.__version__, "gymnasium": gymnasium.__version__,
        "model": "gymnasium/envs/mujoco/assets/humanoid.xml", "nstep": NSTEP,
        "threads": args.threads, "seed": args.seed, "repeats": args.repeats,
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "wall_seconds": time.perf_counter() - t_start,
        "same_trajectories": same, "env_like": {"ours": env_like, "gymnasium": gym},
        "alternatives": {"num_envs": n, **alt}, "summary": summary,
    }
    write_json_atomic(args.out, result)
    print(f"ours/limit at the best size: {summary['ratio_vs_limit_at_best_size']:.3f} "
          f"(min {summary['min_ratio_vs_limit']:.3f}); ours/best gymnasium: "
          f"{summary['ratio_vs_best_gymnasium']:.2f}x -> {args.out}")


if __name__ == "__main__":
    main()
