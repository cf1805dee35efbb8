"""The fused AGV step (``fused=True``, envs/agv_warehouse/fused.py) against the eager step.

Eager-run fused graph (fast, default suite): the same random streams, so the same trajectories:
state, rewards, terminations, episode stats and random counters bit for bit; observations bit
for bit except the lidar columns (the fused step casts moving obstacles densely from direction
cosines: within 1e-3 m) over a few hundred steps with resets in the graph, resets the eager way
(more ended envs than slots, reset hooks), collisions, goals, noise, dropout and latency.
The compiled graph (``compile=True``, one ``torch.compile(fullgraph=True)``, 1-3 min to build
on 2 cores) is tested in the ``slow`` tests: float tolerance.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import rlkd
from conftest import FAST
from rlkd.core.rng import BatchRNG
from rlkd.envs.agv_warehouse import fused as F
from rlkd.envs.agv_warehouse.env import AGVWarehouseEnv
from rlkd.sim.raycast2d import RangeTable, cast_circles_even, cast_circles_rays
from rlkd.sim2real.randomize import attach_randomizer

N = 64
STATE = F.STATE + ("episode_length_buf", "_episode_return")
CONFIGS = {
    "default": {},
    "noise_latency_2goals": dict(num_goals=2, obs_noise_std=0.01, lidar_noise_std=0.02,
                                 lidar_dropout=0.1, action_noise_std=0.1, action_latency=2,
                                 goal_radius=1.5),
    "exact_dense_static": dict(lidar_mode="exact", progress_reward_scale=0.5, time_penalty=0.01,
                               num_obstacles=0),
    # Time-outs of every survivor at once: more ended envs than slots (the eager way).
    "fov_timeouts": dict(lidar_fov=3.0, lidar_rays=16, num_obstacles=6, max_episode_steps=30),
}


def make(num_envs: int = N, seed: int = 3, **over):
    for k, v in FAST.items():
        over.setdefault(k, v)
    return rlkd.make("AGVWarehouse-v0", num_envs=num_envs, seed=seed, **over)


def lidar_cols(env) -> dict[str, slice]:
    lay = env.observation_layout
    return {"policy": lay["policy"]["lidar"], "critic": lay["critic"]["lidar"]}


def assert_obs_close(env, a: dict, b: dict, atol: float, what: str) -> None:
    """Equal except the lidar columns, which must agree within ``atol`` metres."""
    cols = lidar_cols(env)
    for g in a:
        x, y = a[g], b[g]
        assert x.shape == y.shape, (what, g)
        keep = torch.ones(x.shape[1], dtype=torch.bool)
        keep[cols[g]] = False
        assert torch.equal(x[:, keep], y[:, keep]), (what, g)
        err = (x[:, cols[g]] - y[:, cols[g]]).abs().max() * env.cfg.lidar_range if len(x) else 0
        assert err <= atol, (what, g, float(err))


def assert_same_step(env_a, env_b, ra, rb, what: str, atol: float = 1e-3) -> None:
    (oa, rwa, ta, tra, ia), (ob, rwb, tb, trb, ib) = ra, rb
    assert_obs_close(env_a, oa, ob, atol, what + " obs")
    for x, y, name in ((rwa, rwb, "reward"), (ta, tb, "terminated"), (tra, trb, "truncated"),
                       (ia["final_mask"], ib["final_mask"], "final_mask")):
        assert x.dtype == y.dtype and torch.equal(x, y), (what, name)
    assert set(ia) == set(ib), (what, set(ia) ^ set(ib))
    assert ia["sim_unstable"] == ib["sim_unstable"]
    for k in ia["reward_terms"]:
        assert torch.equal(ia["reward_terms"][k], ib["reward_terms"][k]), (what, k)
    assert torch.equal(ia["metrics"]["speed"], ib["metrics"]["speed"])
    assert torch.allclose(ia["metrics"]["clearance"], ib["metrics"]["clearance"], atol=atol)
    if "episode" in ia:
        assert list(ia["episode"]) == list(ib["episode"])
        for k, v in ia["episode"].items():
            assert v.dtype == ib["episode"][k].dtype and torch.equal(v, ib["episode"][k]), (what, k)
        assert_obs_close(env_a, ia["final_obs"], ib["final_obs"], atol, what + " final_obs")
    for name in STATE:
        assert torch.equal(getattr(env_a, name), getattr(env_b, name)), (what, name)
    assert torch.equal(env_a.rng._counter, env_b.rng._counter), what
    assert env_a._buf_ptr == env_b._buf_ptr


def run_pair(over: dict, steps: int, hooks: str | None = None, num_envs: int = N):
    eager, fused = make(num_envs, **over), make(num_envs, fused=True, **over)
    assert fused._fused is not None and fused._fused.mode == "eager"
    if hooks:
        for e in (eager, fused):
            attach_randomizer(e, hooks)
    oa, _ = eager.reset(seed=3)
    ob, _ = fused.reset(seed=3)
    assert_obs_close(eager, oa, ob, 0.0, "reset")
    gen = torch.Generator().manual_seed(1)
    events = {"goal": 0, "collision": 0, "timeout": 0}
    for t in range(steps):
        a = torch.rand(num_envs, 2, generator=gen) * 2 - 1
        ra, rb = eager.step(a), fused.step(a.clone())
        assert_same_step(eager, fused, ra, rb, f"step {t}")
        info = ra[4]
        events["goal"] += int((info["reward_terms"]["goal"] != 0).sum())
        events["collision"] += int((info["reward_terms"]["collision"] != 0).sum())
        if "episode" in info:
            events["timeout"] += int(info["episode"]["timeout"].sum())
    return fused, events


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_step_matches_eager(name):
    fused, ev = run_pair(CONFIGS[name], steps=200)
    st = fused._fused.stats
    assert ev["collision"] > 20 and st["graph_reset_steps"] > 10, (ev, st)
    if name == "noise_latency_2goals":
        assert ev["goal"] > 0, ev  # big goal radius: random driving reaches some
    if name == "fov_timeouts":  # waves of time-outs overflow the 16 slots
        assert ev["timeout"] > 16 and st["eager_reset_steps"] > 0, (ev, st)


def test_fused_step_with_reset_hooks_matches_eager():
    fused, ev = run_pair(dict(max_episode_steps=50), steps=150,
                         hooks="friction=0.5:1.0,obs_noise=0:0.02,action_latency=0:3")
    st = fused._fused.stats
    # Hooks are Python: every reset of this env runs the eager way, hooks first.
    assert st["graph_reset_steps"] == 0 and st["eager_reset_steps"] > 10, st
    assert fused.params["action_latency"].unique().numel() > 1


def test_mixed_noise_params_and_diverged_env_match_eager():
    # Noise on only some envs: the reset rows draw noise only if an ended env has some.
    eager, fused = make(), make(fused=True)
    for e in (eager, fused):
        e.params["obs_noise_std"][: N // 2] = 0.05
        e.params["lidar_dropout"][N // 4:] = 0.2
        e.reset(seed=5)
    gen = torch.Generator().manual_seed(2)
    for t in range(120):
        if t == 40:  # a diverged simulation: reset and counted, never poisons the batch
            for e in (eager, fused):
                e.pos[7] = float("nan")
        a = torch.rand(N, 2, generator=gen) * 2 - 1
        ra, rb = eager.step(a), fused.step(a)
        assert_same_step(eager, fused, ra, rb, f"step {t}")
        if t == 40:
            assert rb[4]["sim_unstable"] == 1 and rb[4]["sim_unstable_ids"].tolist() == [7]
            assert torch.isfinite(rb[0]["policy"]).all() and bool(rb[4]["final_mask"][7])


def test_fused_obs_are_not_overwritten_and_state_resumes_exactly():
    env = make(fused=True)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    obs, *_ = env.step(torch.rand(N, 2, generator=gen) * 2 - 1)
    kept = {k: v.clone() for k, v in obs.items()}
    env.set_state(torch.tensor([0, 1]), env.get_state(torch.tensor([2, 3])))
    for _ in range(3):
        env.step(torch.rand(N, 2, generator=gen) * 2 - 1)
    assert all(torch.equal(obs[k], kept[k]) for k in obs)  # handed-out tensors stay as they were
    saved = env.state_dict()
    acts = [torch.rand(N, 2, generator=gen) * 2 - 1 for _ in range(40)]
    first = [env.step(a)[1] for a in acts]
    env.load_state_dict(saved)
    again = [env.step(a)[1] for a in acts]
    assert all(torch.equal(x, y) for x, y in zip(first, again))


def test_fused_falls_back_for_subclassed_physics():
    class OwnDrive(AGVWarehouseEnv):
        def _drive(self, applied):
            super()._drive(applied)

    cfg = rlkd.make("AGVWarehouse-v0", num_envs=2, **FAST).cfg
    cfg.fused = True
    with pytest.warns(UserWarning, match="overrides"):
        env = OwnDrive(cfg, num_envs=2)
    assert env._fused is None
    env.reset(seed=0)
    env.step(torch.zeros(2, 2))


def test_functional_draws_equal_batch_rng():
    rng = BatchRNG(37, seed=11)
    rng.uniform(torch.tensor([1, 5, 6]), 9)  # uneven counters
    key, ctr = rng._key.clone(), rng._counter.clone()
    assert torch.equal(F.uniform_at(key, ctr, 13), rng.uniform(None, 13))
    z, used = F._normal(key, ctr + 13, 7)
    assert used == 8 and torch.equal(z, rng.normal(None, 7))


@pytest.mark.parametrize("R, fov", [(32, 2 * math.pi), (16, 3.0), (7, 6.0)])
def test_cast_circles_rays_matches_sparse_cast(R, fov):
    gen = torch.Generator().manual_seed(R)
    M, K = 512, 5
    full = fov >= 2 * math.pi - 1e-6
    spacing = 2 * math.pi / R if full else fov / (R - 1)
    first = -math.pi + 0.5 * spacing if full else -fov / 2
    offs = first + torch.arange(R) * spacing
    origins = torch.rand(M, 2, generator=gen) * 10
    heading = (torch.rand(M, generator=gen) * 2 - 1) * math.pi
    centers = origins[:, None] + (torch.rand(M, K, 2, generator=gen) * 2 - 1) * 4
    centers[:8, 0] = origins[:8] + 0.1  # inside min_dist: read at min_dist along the bearing
    centers[8, 0] = origins[8]  # exactly on the origin
    angles = heading[:, None] + offs
    ref = cast_circles_even(origins, angles, spacing, full, centers, 0.3, 6.0, min_dist=0.6)
    got = cast_circles_rays(origins, torch.cos(angles), torch.sin(angles), centers, 0.3, 6.0, 0.6)
    err = (got - ref).abs()
    assert err.max() < 1e-3 and (err > 1e-4).float().mean() < 1e-3
    assert (ref < 6.0).float().mean() > 0.05  # plenty of hits


def test_range_table_lookup_is_the_packed_byte_lookup():
    boxes = torch.tensor([[[2.0, 2.0, 3.0, 5.0], [6.0, 1.0, 7.5, 2.0]]])
    for angles_n in (128, 90):  # power of two (mask) and not (remainder)
        table = RangeTable(boxes, (10.0, 8.0), 6.0, 0.25, angles_n)
        gen = torch.Generator().manual_seed(angles_n)
        pos = torch.rand(300, 2, generator=gen) * torch.tensor([10.0, 8.0])
        ang = (torch.rand(300, 9, generator=gen) * 4 - 2) * math.pi
        L, ny, nx, A = table.shape
        fx = (pos[:, 0:1] * table._sx).clamp(0, nx - 1)
        fy = (pos[:, 1:2] * table._sy).clamp(0, ny - 1)
        x0, y0 = fx.long(), fy.long()
        ia = torch.remainder((ang * (A / (2 * math.pi))).round().long(), A)
        idx = ((y0 * nx) + x0) * A + ia
        c = torch.take(table.packed, idx).view(torch.uint8).view(*idx.shape, 4).float()
        ref = torch.lerp(torch.lerp(c[..., 0], c[..., 1], fx - x0),
                         torch.lerp(c[..., 2], c[..., 3], fx - x0), fy - y0) * (6.0 / 255.0)
        assert torch.equal(table.lookup(torch.zeros(300, dtype=torch.long), pos, ang), ref)


# ---------------------------------------------------------------------------------- compiled
@pytest.mark.slow
def test_compiled_fused_step_matches_eager_within_tolerance():
    """The graph compiled whole (``fullgraph=True``): the same events and within float
    tolerance of eager over 200 steps of 256 envs (the compiled kernels round trigonometry
    and lerps differently from ATen; a lidar ray whose heading sits on a table bin edge may
    read the neighbouring bin)."""
    n, over = 256, dict(num_goals=2, goal_radius=1.0, max_episode_steps=60)
    eager, comp = make(n, **over), make(n, fused=True, compile=True, **over)
    assert comp._fused.mode == "compiled"
    eager.reset(seed=4)
    comp.reset(seed=4)
    gen = torch.Generator().manual_seed(4)
    cols = lidar_cols(eager)
    far = total = ended = 0
    for t in range(200):
        a = torch.rand(n, 2, generator=gen) * 2 - 1
        (oa, ra, ta, tra, ia), (ob, rb, tb, trb, ib) = eager.step(a), comp.step(a)
        assert torch.equal(ia["final_mask"], ib["final_mask"]) and torch.equal(ta, tb), t
        assert torch.equal(tra, trb) and torch.allclose(ra, rb, atol=1e-5), t
        assert torch.allclose(eager.pos, comp.pos, atol=1e-4), t
        assert torch.equal(eager.rng._counter, comp.rng._counter)
        for g in oa:
            keep = torch.ones(oa[g].shape[1], dtype=torch.bool)
            keep[cols[g]] = False
            assert torch.allclose(oa[g][:, keep], ob[g][:, keep], atol=1e-4), (t, g)
            d = (oa[g][:, cols[g]] - ob[g][:, cols[g]]).abs() * eager.cfg.lidar_range
            far += int((d > 1e-3).sum())
            total += d.numel()
        if "episode" in ia:
            ended += len(ia["episode"]["env_ids"])
            assert torch.equal(ia["episode"]["env_ids"], ib["episode"]["env_ids"])
            assert torch.equal(ia["episode"]["length"], ib["episode"]["length"])
            assert torch.allclose(ia["episode"]["return"], ib["episode"]["return"], atol=1e-4)
    assert ended > 200 and far / total < 1e-3, (ended, far, total)
    assert comp._fused.stats["graph_reset_steps"] > 100


def test_compile_unavailable_falls_back_to_eager(monkeypatch):
    monkeypatch.setattr(F, "compile_available", lambda device: "no compiler (test)")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        env = make(4, fused=True, compile=True)
    assert env._fused is None and any("no compiler" in str(x.message) for x in w)
