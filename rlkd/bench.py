"""Throughput benchmarks, always against a peer measured in the same run.

``rlkd bench <env>`` times our batched env at several batch sizes with uniformly random actions
(the whole ``step``: physics, lidar, rewards, autoreset, observation copies), then the same task
driven the peer way: gymnasium's ``SyncVectorEnv`` over single-env gymnasium adapters. It reports
env steps/s and the ratio of our best figure to the peer's best. Provenance (machine, git
commit) and the JSON writer live in :mod:`rlkd.core.provenance`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from rlkd.core.provenance import machine_info

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: Unmeasured steps before :func:`bench_batched` starts its clock.
WARMUP_STEPS = 10


def _bench_actions(env, steps: int, seed: int) -> torch.Tensor:
    """``(min(steps, 64), N, act_dim)`` uniform actions in [-1, 1], drawn up front so the
    sampler stays out of the timed loop; step ``i`` uses row ``i % 64``."""
    gen = torch.Generator(device=env.device).manual_seed(seed)
    return torch.rand(min(steps, 64), env.num_envs, env.act_dim, generator=gen,
                      device=env.device) * 2 - 1


def bench_batched(env_id: str, num_envs: int, steps: int, device: str = "cpu", seed: int = 0,
                  warmup: int = WARMUP_STEPS, **overrides: Any) -> dict[str, float]:
    """Env steps/s of ``rlkd.make(env_id, num_envs)`` over ``steps`` steps of random actions."""
    import rlkd

    t0 = time.perf_counter()
    env = rlkd.make(env_id, num_envs=num_envs, device=device, seed=seed, **overrides)
    build_s = time.perf_counter() - t0
    env.reset(seed=seed)
    actions = _bench_actions(env, steps, seed)
    for i in range(warmup):
        env.step(actions[i % len(actions)])
    _sync(env.device)
    t0 = time.perf_counter()
    for i in range(steps):
        env.step(actions[i % len(actions)])
    _sync(env.device)
    dt = time.perf_counter() - t0
    env.close()
    return {"num_envs": num_envs, "steps": steps, "seconds": dt, "build_seconds": build_s,
            "env_steps_per_s": num_envs * steps / dt, "ms_per_step": 1e3 * dt / steps}


def bench_sync_vector(env_id: str, num_envs: int, steps: int, seed: int = 0,
                      warmup: int = 5, **overrides: Any) -> dict[str, float]:
    """Env steps/s of gymnasium ``SyncVectorEnv`` over ``num_envs`` single-env adapters (CPU)."""
    import gymnasium

    from rlkd.adapters.gymnasium_env import make_single

    envs = gymnasium.vector.SyncVectorEnv(
        [lambda i=i: make_single(env_id, seed=seed + i, **overrides) for i in range(num_envs)])
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, size=(64,) + envs.action_space.shape).astype(np.float32)
    for i in range(warmup):
        envs.step(actions[i % 64])
    t0 = time.perf_counter()
    for i in range(steps):
        envs.step(actions[i % 64])
    dt = time.perf_counter() - t0
    envs.close()
    return {"num_envs": num_envs, "steps": steps, "seconds": dt,
            "env_steps_per_s": num_envs * steps / dt, "ms_per_step": 1e3 * dt / steps}


def mujoco_rollout_limit(model, qpos0: np.ndarray, ctrls: np.ndarray, nstep: int,
                         threads: int) -> tuple[float, np.ndarray]:
    """The physical limit of a MuJoCo task: env steps/s of ONE ``mujoco.rollout`` call (native
    threads, no Python between steps) over ``ctrls (K, N, nu)`` held for ``nstep`` physics steps
    each, from ``qpos0 (N, nq)``. Returns it and the final ``qpos (N, nq)`` (for equality checks
    against the same trajectories stepped another way)."""
    import mujoco
    import mujoco.rollout

    full = mujoco.mjtState.mjSTATE_FULLPHYSICS
    k, n, _ = ctrls.shape
    d = mujoco.MjData(model)
    init = np.empty((n, mujoco.mj_stateSize(model, full)))
    for i in range(n):  # setup, not timed
        mujoco.mj_resetData(model, d)
        d.qpos[:] = qpos0[i]
        mujoco.mj_getState(model, d, init[i], full)
    control = np.ascontiguousarray(np.repeat(ctrls.transpose(1, 0, 2), nstep, axis=1))
    with mujoco.rollout.Rollout(nthread=threads) as r:
        datas = [mujoco.MjData(model) for _ in range(threads)]
        r.rollout(model, datas, init, control[:, :nstep])  # warm-up: thread start, caches
        t0 = time.perf_counter()
        state, _ = r.rollout(model, datas, init, control)
        dt = time.perf_counter() - t0
    return n * k / dt, state[:, -1, 1:1 + model.nq]


def mujoco_step_replay_limit(model, states: np.ndarray, ctrls: np.ndarray, nstep: int,
                             threads: int) -> tuple[float, np.ndarray]:
    """Env steps/s of ONE ``mujoco.rollout`` call that re-simulates recorded control steps:
    trajectory ``j`` starts from ``states[j]`` (an ``mjSTATE_INTEGRATION`` row, solver warm start
    included, as :meth:`rlkd.sim.mujoco.MujocoBatch.get_state` gives) and holds ``ctrls[j]``
    for ``nstep`` physics steps. Fed every (env, step) of an env's run, it is the cost of
    exactly that run's physics (resets included) with nothing else. Returns the rate and each
    trajectory's final ``qpos (n, nq)``."""
    import mujoco
    import mujoco.rollout

    full = mujoco.mjtState.mjSTATE_FULLPHYSICS
    n = len(states)
    d = mujoco.MjData(model)
    init = np.empty((n, mujoco.mj_stateSize(model, full)))
    warm = np.empty((n, model.nv))
    for j in range(n):  # setup, not timed
        mujoco.mj_setState(model, d, np.asarray(states[j], np.float64),
                           mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_getState(model, d, init[j], full)
        warm[j] = d.qacc_warmstart
    control = np.ascontiguousarray(np.repeat(ctrls[:, None], nstep, axis=1))
    with mujoco.rollout.Rollout(nthread=threads) as r:
        datas = [mujoco.MjData(model) for _ in range(threads)]
        few = min(n, 16 * threads)  # warm-up: thread start, caches
        r.rollout(model, datas, init[:few], control[:few], initial_warmstart=warm[:few])
        t0 = time.perf_counter()
        state, _ = r.rollout(model, datas, init, control, initial_warmstart=warm)
        dt = time.perf_counter() - t0
    return n / dt, state[:, -1, 1:1 + model.nq]


def bench_task_physics_limit(env_id: str, num_envs: int, steps: int, seed: int = 0,
                             **overrides: Any) -> dict[str, float]:
    """The physics limit of a MuJoCo task on its own trajectories: :func:`bench_batched`'s run
    is replayed (same seed: same start states, same random actions, same resets) while every
    control step's start state and control are recorded; then ONE ``mujoco.rollout`` call
    re-simulates all of them (:func:`mujoco_step_replay_limit`). Same model, frame skip, states
    (fallen and freshly reset alike) and controls as the measured env, minus everything the env
    does in Python: observations, rewards, reset logic, the reference motion."""
    import rlkd
    from rlkd.sim.mujoco.model import available_cores

    env = rlkd.make(env_id, num_envs=num_envs, seed=seed, **overrides)
    env.reset(seed=seed)
    actions = _bench_actions(env, steps, seed)
    sim, states, ctrls, after, reset = env.sim, [], [], [], []
    for i in range(WARMUP_STEPS):  # as bench_batched: the recording starts where its clock does
        env.step(actions[i % len(actions)])
    step = sim.step

    def recording_step(ctrl: torch.Tensor) -> None:
        states.append(sim.get_state().cpu().numpy())
        ctrls.append(ctrl.detach().cpu().numpy().astype(np.float64))
        step(ctrl)

    sim.step = recording_step
    nq = sim.model.nq
    for i in range(steps):
        env.step(actions[i % len(actions)])
        after.append(sim.qpos.cpu().numpy().copy())
        reset.append((env.episode_length_buf == 0).cpu().numpy())
    env.close()
    threads = available_cores()
    rate, last = mujoco_step_replay_limit(sim.model, np.concatenate(states),
                                          np.concatenate(ctrls), sim.nstep, threads)
    # The replay must be the env's physics: every env not reset in a step ends it where the
    # replayed trajectory ends.
    kept = ~np.stack(reset)
    diff = np.abs(last.reshape(steps, num_envs, nq) - np.stack(after)).max(-1)[kept]
    return {"num_envs": num_envs, "steps": steps, "threads": threads, "nstep": sim.nstep,
            "env_steps_per_s": rate, "steps_checked": int(kept.sum()),
            "max_qpos_diff_vs_env": float(diff.max()) if diff.size else None}


def steps_for(num_envs: int, budget_env_steps: int, lo: int = 20, hi: int = 2000) -> int:
    """Timed steps for a batch size: about ``budget_env_steps`` env steps, within [lo, hi]."""
    return int(min(hi, max(lo, budget_env_steps // num_envs)))


def run_bench(env_id: str, num_envs: tuple[int, ...], peer_num_envs: tuple[int, ...],
              device: str = "cpu", seed: int = 0, budget_env_steps: int = 400_000,
              peer_budget_env_steps: int = 8_000, **overrides: Any) -> dict[str, Any]:
    """Measure ours at every size in ``num_envs`` and the SyncVectorEnv peer at ``peer_num_envs``."""
    ours = [bench_batched(env_id, n, steps_for(n, budget_env_steps), device, seed, **overrides)
            for n in num_envs]
    peer = [bench_sync_vector(env_id, n, steps_for(n, peer_budget_env_steps, lo=20, hi=500), seed,
                              **overrides) for n in peer_num_envs]
    best_ours = max(r["env_steps_per_s"] for r in ours)
    # No peer measured (peer_num_envs empty): None, so the JSON report stays valid (no NaN).
    best_peer = max((r["env_steps_per_s"] for r in peer), default=None)
    # MuJoCo tasks: the physics alone (one native rollout call) bounds what any env can reach.
    import rlkd

    probe = rlkd.make(env_id, num_envs=1, seed=seed, **overrides)
    sim = getattr(probe, "sim", None)
    probe.close()
    limit = []
    if sim is not None and hasattr(sim, "model") and device == "cpu":  # a MuJoCo task
        for r in ours:
            lim = bench_task_physics_limit(env_id, r["num_envs"], r["steps"], seed, **overrides)
            lim["ratio_ours_vs_limit"] = r["env_steps_per_s"] / lim["env_steps_per_s"]
            limit.append(lim)
    return {"env_id": env_id, "device": device, "overrides": overrides, "ours": ours,
            "peer": {"name": "gymnasium.vector.SyncVectorEnv of single envs", "results": peer},
            "physics_limit": {"name": "one mujoco.rollout call over the env's own start "
                                      "states and control sequence (same model, frame skip)",
                              "results": limit},
            "best_ours_env_steps_per_s": best_ours, "best_peer_env_steps_per_s": best_peer,
            "ratio_vs_peer": None if best_peer is None else best_ours / best_peer,
            "machine": machine_info()}
