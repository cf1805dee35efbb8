"""The fused AGV step: all of ``AGVWarehouseEnv.step`` as one branch-free, compilable graph.

Selected by ``fused=True`` (see :class:`~.config.AGVWarehouseConfig`). One function, :func:`graph`,
does what the eager step does in ~1900 small ops: command latency and actuation noise, unicycle
kinematics, moving obstacles, collisions, goals, lidar, rewards, the divergence guard, the
episode counters, the **autoreset** and the observation groups. With ``compile=True`` it is
compiled whole, ``torch.compile(fullgraph=True, dynamic=False)`` (``mode="reduce-overhead"``,
CUDA graphs, on CUDA); with ``compile=False`` it runs eagerly (a reference for the tests).

How it stays branch-free (no data-dependent shapes, no ``.item()``, no Python ``if`` on tensor
values inside the graph):

* **Resets are masked writes.** The first ``reset_slots`` envs that end in a step (ascending
  env id; found with a cumulative sum and ``searchsorted``, static sizes) get fresh starts
  computed in ``reset_slots`` fixed rows from their own random streams, exactly as the eager
  ``_reset_idx`` would draw them; every env then takes ``where(reset, fresh[slot], state)``.
  Per-env streams are counter-based (:class:`rlkd.core.rng.BatchRNG`), so a fresh start is a
  pure function of the env's key and counter: the fused step draws the **same numbers** as the
  eager step, and its results match it (bit for bit when run eagerly; compiled: see the tests).
  This is a masked write from states computed on the fly for the reset slots, not from a pool
  drawn ahead: a pool would consume the streams in another order and break the per-env
  streams (common random numbers in :mod:`rlkd.sim2real` rely on them).
* **Rare cases go round the graph, outside it**: more than ``reset_slots`` envs ending at once
  (e.g. a wave of time-outs) resets the rest with the eager ``_reset_idx``/``_observe`` after
  the graph; ``reset_hooks`` (domain randomisation) are arbitrary Python, so an env with hooks
  runs the graph without the in-graph reset and resets every ended env the eager way, hooks
  first (exactly the base class's order).
* **Noise switches are graph variants.** Actuation, observation and dropout noise draw from the
  streams only when some env has a non-zero std, as in eager; the host decides (re-checked only
  when a noise param was written, by its version counter) and runs the variant compiled for it.

What runs outside the graph each step (host, cheap): the action checks, :class:`ParamGuard`,
one ``tolist()`` of two counts (ended envs, diverged envs), and ``info`` assembly: with at most
``reset_slots`` ended envs, ``final_obs`` and ``episode`` are slices of fixed-size graph outputs
(no ``nonzero``); more, or hooks, cost one ``nonzero`` plus the eager reset of those envs.
"""

from __future__ import annotations

import types
from typing import Any

import torch

from rlkd.core.params import _version
from rlkd.core.rng import box_muller, uniform_at
from rlkd.sim.diffdrive import unicycle_step

from . import kernels as K_

#: Params whose non-zero values switch a noise stage on (the graph variant depends on them).
NOISE_PARAMS = ("action_noise_std", "lidar_noise_std", "obs_noise_std", "lidar_dropout")
#: Env tensors the graph reads and writes in place (``S`` of :func:`graph`).
STATE = ("pos", "heading", "lin_vel", "ang_vel", "prev_action", "goals", "goal_idx",
         "goal_dist", "obs_seg", "obs_rate", "obs_phase", "obs_pos", "obs_vel", "action_buf")


def _normal(key: torch.Tensor, ctr: torch.Tensor, n: int) -> tuple[torch.Tensor, int]:
    """``(M, n)`` standard normals as :meth:`BatchRNG.normal` draws them and the number of
    uniforms they consume (the caller advances the counters by it)."""
    used = 2 * ((n + 1) // 2)
    return box_muller(uniform_at(key, ctr, used), n), used


def _put(take: torch.Tensor, slot: torch.Tensor, fresh: torch.Tensor, old: torch.Tensor):
    """``old`` with row ``i`` replaced by ``fresh[slot[i]]`` where ``take[i]`` (masked write)."""
    return torch.where(take.view(-1, *([1] * (old.dim() - 1))), fresh[slot], old)


def graph(k: types.SimpleNamespace, S: dict[str, torch.Tensor], P: dict[str, torch.Tensor],
          actions: torch.Tensor, ptr: torch.Tensor) -> dict[str, torch.Tensor]:
    """One control step of every env; writes the env state ``S`` in place.

    Args:
        k: static description (config, constants, variant switches), see :class:`FusedStep`.
        S: env state tensors (:data:`STATE`, plus ``ep_len``, ``ep_ret``, ``rng_ctr``) and
            the streams' ``rng_key`` (read only).
        P: ``env.params``.
        actions: ``(N, 2)`` float32 in [-1, 1] (checked and clipped by the caller).
        ptr: 0-d int64, the latency buffer's write slot this step.

    Returns:
        ``policy, critic`` (observations after the autoreset), ``reward, terminated,
        truncated, done, unstable, success, collided`` (N,), ``terms`` and ``metrics`` dicts,
        ``counts`` (2,) int64 = (ended envs, diverged envs), ``take`` (N,) bool (reset in the
        graph) and the ``reset_slots`` rows ``slot_env, final_policy, final_critic,
        ep_return, ep_length, slot_success, slot_collision, slot_timeout`` of the ended envs
        in ascending id (rows past the count repeat garbage).
    """
    c, R = k.cfg, k.cfg.lidar_rays
    key, ctr = S["rng_key"], S["rng_ctr"]
    dev = actions.device
    # --- command: latency ring buffer, then actuation noise
    buf = S["action_buf"]
    if k.buf_len > 1:
        hit = torch.arange(k.buf_len, device=dev) == ptr
        buf = torch.where(hit[None, :, None], actions[:, None, :], buf)
        lat = P["action_latency"].clamp(0, k.buf_len - 1)
        slot = torch.remainder(ptr - lat, k.buf_len)
        applied = buf.gather(1, slot[:, None, None].expand(-1, 1, 2))[:, 0]
    else:
        applied = actions
    if k.action_noise:
        z, used = _normal(key, ctr, 2)
        ctr = ctr + used
        applied = (applied + z * P["action_noise_std"][:, None]).clamp(-1.0, 1.0)
    # --- kinematics, obstacles, collisions, goals
    pos, heading, lin_vel, ang_vel = unicycle_step(
        S["pos"], S["heading"], S["lin_vel"], S["ang_vel"], applied[:, 0] * P["max_lin_vel"],
        applied[:, 1] * P["max_ang_vel"], P["lin_acc"], P["ang_acc"], P["slip"], c.dt)
    phase, opos, ovel = S["obs_phase"], S["obs_pos"], S["obs_vel"]
    if c.num_obstacles:
        phase = phase + S["obs_rate"] * c.dt
        new = K_.obstacle_pos(S["obs_seg"], phase)
        ovel = (new - opos) / c.dt
        opos = new
    collided = K_.collisions(c, k.layouts.boxes, k.world, pos, opos)
    reached, progress, goal_idx, goal_dist = K_.advance_goals(
        c, S["goals"], S["goal_idx"], S["goal_dist"], pos, collided)
    ep_len = S["ep_len"] + 1
    # --- observation of every env
    s = {"pos": pos, "heading": heading, "lin_vel": lin_vel, "ang_vel": ang_vel,
         "prev_action": actions, "goals": S["goals"], "goal_idx": goal_idx, "obs_pos": opos,
         "obs_vel": ovel}
    ranges = _scan(k, pos, heading, k.layout_of_env, opos, whole=True)
    clean, critic, lidar = K_.observe_rows(c, k.world, s, P, ranges)
    noise = lost = None
    if k.obs_noise:
        noise, used = _normal(key, ctr, 8 + R)
        ctr = ctr + used
    if k.dropout:
        lost = uniform_at(key, ctr, R) < P["lidar_dropout"][:, None]
        ctr = ctr + R
    policy = K_.sensed(c, clean, P, noise, lost)
    # --- rewards, termination, divergence guard (as BatchedEnv._step)
    terms = K_.reward_terms(c, reached, collided, progress)
    reward = sum(terms.values())
    success = goal_idx >= c.num_goals
    metrics = {"clearance": lidar.amin(dim=-1) * c.lidar_range,
               "speed": lin_vel.abs() * (1.0 - P["slip"])}
    unstable = ~(torch.isfinite(pos).all(dim=-1) & torch.isfinite(heading))
    any_bad = unstable.any()
    reward = torch.where(unstable, torch.zeros_like(reward), reward)
    terminated = collided | success | unstable
    policy = torch.where(any_bad, torch.nan_to_num(policy, nan=0.0, posinf=0.0, neginf=0.0), policy)
    critic = torch.where(any_bad, torch.nan_to_num(critic, nan=0.0, posinf=0.0, neginf=0.0), critic)
    truncated = (ep_len >= k.max_len) & ~terminated
    ep_ret = S["ep_ret"] + reward
    done = terminated | truncated
    out = {"reward": reward, "terminated": terminated, "truncated": truncated, "done": done,
           "unstable": unstable, "success": success, "collided": collided, "terms": terms,
           "metrics": metrics}
    new = {"pos": pos, "heading": heading, "lin_vel": lin_vel, "ang_vel": ang_vel,
           "prev_action": actions, "goal_idx": goal_idx, "goal_dist": goal_dist,
           "obs_phase": phase, "obs_pos": opos, "obs_vel": ovel, "action_buf": buf,
           "ep_len": ep_len, "ep_ret": ep_ret, "goals": S["goals"], "obs_seg": S["obs_seg"],
           "obs_rate": S["obs_rate"]}
    counts = [done.sum(), unstable.sum()]
    if k.slots:
        policy, critic, ctr = _reset_in_graph(k, new, P, key, ctr, done, policy, critic, out)
    out.update(policy=policy, critic=critic, counts=torch.stack(counts))
    new["rng_ctr"] = ctr
    for name, value in new.items():  # in place: the env's tensors are the graph's state
        if value is not S[name]:
            S[name].copy_(value)
    return out


def _scan(k, pos, heading, lay, opos, whole: bool) -> torch.Tensor:
    lookup = None if k.range_table is None else k.range_table.lookup
    return K_.scan(k.cfg, k.layouts, k.world, k.ray_offsets, k.ray_spacing, k.full_circle, pos,
                   heading, lay, opos, lookup, whole=whole, ray_dirs=k.ray_dirs)


def _reset_in_graph(k, new, P, key, ctr, done, policy, critic, out):
    """Fresh starts for the first ``k.slots`` ended envs, written into ``new`` by masks; their
    final rows and episode stats into ``out``. Returns the observations after the reset and the
    advanced counters."""
    c, M, R = k.cfg, k.slots, k.cfg.lidar_rays
    N = done.shape[0]
    dev = done.device
    csum = torch.cumsum(done.long(), dim=0)  # (N,): ended envs up to and including each
    j = torch.arange(1, M + 1, device=dev)
    slot_env = torch.searchsorted(csum, j).clamp_max(N - 1)  # (M,) the j-th ended env
    # More ended envs than slots: none is reset here, the host resets them all the eager way
    # (a rare step; keeps the eager order of draws, hence the same numbers).
    fits = csum[-1] <= M
    valid = (j <= csum[-1]) & fits
    take = done & fits
    slot = (csum - 1).clamp(0, M - 1)  # each env's slot (meaningful where take)
    # Final rows and episode stats of the ended envs, slot order = ascending env id.
    out.update(slot_env=slot_env, take=take, final_policy=policy[slot_env],
               final_critic=critic[slot_env], ep_return=new["ep_ret"][slot_env],
               ep_length=new["ep_len"][slot_env], slot_success=out["success"][slot_env],
               slot_collision=out["collided"][slot_env], slot_timeout=out["truncated"][slot_env])
    # Fresh starts from each env's own stream, as the eager _reset_idx draws them.
    lay = k.layout_of_env[slot_env]
    skey, sctr = key[slot_env], ctr[slot_env]
    n = K_.reset_draws(c)
    rows = K_.initial_rows(k.layouts, c, lay, uniform_at(skey, sctr, n))
    sctr = sctr + n
    opos = rows.get("obs_pos", new["obs_pos"][slot_env])
    zeros2 = torch.zeros_like(rows["pos"])
    fresh = {"pos": rows["pos"], "heading": rows["heading"], "lin_vel": zeros2[:, 0],
             "ang_vel": zeros2[:, 0], "prev_action": zeros2, "goals": rows["goals"],
             "goal_idx": torch.zeros_like(slot_env), "obs_pos": opos,
             "obs_vel": torch.zeros_like(opos)}
    prow = {name: P[name][slot_env] for name in (*K_.OBS_PARAMS, "lidar_dropout")}
    franges = _scan(k, fresh["pos"], fresh["heading"], lay, opos, whole=False)
    fclean, fcritic, _ = K_.observe_rows(c, k.world, fresh, prow, franges)
    fpolicy = fclean
    # Eager draws the reset rows' noise only if some ended env has a non-zero std.
    if k.obs_noise:
        z, used = _normal(skey, sctr, 8 + R)
        on = (((prow["lidar_noise_std"] > 0) | (prow["obs_noise_std"] > 0)) & valid).any()
        fpolicy = torch.where(on, K_.sensed(c, fpolicy, prow, z), fpolicy)
        sctr = sctr + torch.where(on, used, 0)
    if k.dropout:
        lost = uniform_at(skey, sctr, R) < prow["lidar_dropout"][:, None]
        on = ((prow["lidar_dropout"] > 0) & valid).any()
        fpolicy = torch.where(on, K_.sensed(c, fpolicy, prow, None, lost), fpolicy)
        sctr = sctr + torch.where(on, R, 0)
    # Masked writes: every env whose episode ended takes its slot's fresh start.
    for name in ("pos", "heading", "goals"):
        new[name] = _put(take, slot, rows[name], new[name])
    new["goal_dist"] = _put(take, slot, rows["goal_dist"], new["goal_dist"])
    if c.num_obstacles:
        for name in ("obs_seg", "obs_rate", "obs_phase", "obs_pos"):
            new[name] = _put(take, slot, rows[name], new[name])
    for name in ("lin_vel", "ang_vel", "prev_action", "action_buf", "obs_vel", "goal_idx",
                 "ep_len", "ep_ret"):
        t = new[name]
        new[name] = torch.where(take.view(-1, *([1] * (t.dim() - 1))), torch.zeros_like(t), t)
    ctr = _put(take, slot, sctr, ctr)
    return _put(take, slot, fpolicy, policy), _put(take, slot, fcritic, critic), ctr


def _own_code(fn):
    """``fn`` with a code object of its own: dynamo caches compiled graphs per code object, so
    each env (and variant) gets its own cache entry instead of recompiling a shared one."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                              fn.__defaults__, fn.__closure__)


def compile_available(device: torch.device) -> str | None:
    """``None`` if ``torch.compile`` can build the fused step on ``device``, else the reason."""
    try:
        import torch._dynamo as dynamo
    except Exception as e:  # pragma: no cover - torch builds without dynamo
        return f"torch._dynamo unavailable ({e})"
    if not dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python/platform"
    if device.type == "cpu":
        import shutil

        if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
            return "no C++ compiler for TorchInductor's CPU backend"
    return None


class FusedStep:
    """Runs :meth:`AGVWarehouseEnv.step` through :func:`graph` for one env instance.

    Args:
        env: the env (plain torch kinematics; not a subclass with its own physics).
        compile: build the graph with ``torch.compile`` (else run :func:`graph` eagerly).
        reset_slots: ended envs reset inside the graph per step (default ``max(16, N // 16)``,
            at most ``N``; more in one step go the eager way, see the module docstring).

    Attributes:
        mode: ``"compiled"``, ``"compiled-cudagraphs"`` or ``"eager"`` (what runs).
        stats: steps taken, steps whose resets all ran in the graph, steps that reset the eager
            way after the graph (hooks or more ended envs than slots), envs reset each way.
    """

    def __init__(self, env, compile: bool = True, reset_slots: int | None = None):
        self.env = env
        N = env.num_envs
        self.slots = min(N, max(16, N // 16)) if reset_slots is None else min(N, int(reset_slots))
        dev = env.device
        self.cudagraphs = compile and dev.type == "cuda"
        self.mode = ("compiled-cudagraphs" if self.cudagraphs else "compiled") if compile else "eager"
        self._compile = compile
        self._ptrs = torch.arange(max(env._buf_len, 1), device=dev)  # 0-d write slots, on device
        self._ray_dirs = (torch.cos(env.ray_offsets), torch.sin(env.ray_offsets))
        self._graphs: dict[tuple, Any] = {}
        self._flag_key: tuple | None = None
        self._flags = (False, False, False)
        self.stats = {"steps": 0, "graph_reset_steps": 0, "eager_reset_steps": 0,
                      "graph_resets": 0, "eager_resets": 0}
        if self.cudagraphs:  # CUDA graphs need fixed addresses for constants and mutated state
            for t in self._constants():
                torch._dynamo.mark_static_address(t)

    # ------------------------------------------------------------------ graph variants
    def _constants(self) -> list[torch.Tensor]:
        e = self.env
        lay = e.layouts
        out = [lay.boxes, lay.num_free, lay.free_points, lay.patrol, e.ray_offsets,
               e.layout_of_env, *self._ray_dirs]
        if e.range_table is not None:
            out.append(e.range_table.packed)
        return out

    def _noise_flags(self) -> tuple[bool, bool, bool]:
        """(action noise, observation noise, dropout) switched on for the whole batch, as the
        eager step decides them; recomputed only when one of :data:`NOISE_PARAMS` changed."""
        p = self.env.params
        key = tuple((id(p[n]), _version(p[n])) for n in NOISE_PARAMS)
        if key != self._flag_key or any(v is None for _, v in key):
            on = {n: bool((p[n] > 0).any()) for n in NOISE_PARAMS}
            self._flags = (on["action_noise_std"], on["lidar_noise_std"] or on["obs_noise_std"],
                           on["lidar_dropout"])
            self._flag_key = key
        return self._flags

    def _graph_for(self, variant: tuple):
        fn = self._graphs.get(variant)
        if fn is None:
            e = self.env
            action_noise, obs_noise, dropout, in_graph = variant
            k = types.SimpleNamespace(
                cfg=e.cfg, layouts=e.layouts, range_table=e.range_table, world=e.world,
                ray_offsets=e.ray_offsets, ray_spacing=e.ray_spacing, full_circle=e.full_circle,
                ray_dirs=self._ray_dirs,
                layout_of_env=e.layout_of_env, buf_len=e._buf_len,
                max_len=e.max_episode_length, slots=self.slots if in_graph else 0,
                action_noise=action_noise, obs_noise=obs_noise, dropout=dropout)
            body = _own_code(graph)

            def fn(S, P, actions, ptr, _k=k, _body=body):
                return _body(_k, S, P, actions, ptr)

            if self._compile:
                fn = torch.compile(_own_code(fn), fullgraph=True, dynamic=False,
                                   mode="reduce-overhead" if self.cudagraphs else None)
            self._graphs[variant] = fn
        return fn

    def _state(self) -> dict[str, torch.Tensor]:
        e = self.env
        S = {name: getattr(e, name) for name in STATE}
        S.update(ep_len=e.episode_length_buf, ep_ret=e._episode_return, rng_ctr=e.rng._counter)
        if self.cudagraphs:  # mutated inputs must keep their addresses (the key is only read)
            for t in S.values():
                if not hasattr(t, "_dynamo_static_input_type"):
                    torch._dynamo.mark_static_address(t)
        S["rng_key"] = e.rng._key
        return S

    # ------------------------------------------------------------------ the step
    def step(self, actions: torch.Tensor):
        """The :class:`BatchedEnv` step contract (obs, reward, terminated, truncated, info)."""
        e = self.env
        actions = e._check_actions(actions)
        e._param_guard.check(e.params)  # O(1) unless a param was written
        variant = (*self._noise_flags(), not e.reset_hooks)
        fn = self._graph_for(variant)
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = fn(self._state(), e.params, actions, self._ptrs[e._buf_ptr])
        if self.cudagraphs:  # the graph's outputs live in a pool its next replay overwrites
            out = _clone_tree(out)
        if e._buf_len > 1:
            e._buf_ptr = (e._buf_ptr + 1) % e._buf_len
        n_done, n_unstable = out["counts"].tolist()
        st = self.stats
        st["steps"] += 1
        obs = {"policy": out["policy"], "critic": out["critic"]}
        info: dict[str, Any] = {"reward_terms": out["terms"], "sim_unstable": n_unstable,
                                "final_mask": out["done"], "metrics": out["metrics"]}
        if n_unstable:
            info["sim_unstable_ids"] = out["unstable"].nonzero().squeeze(-1)
        if n_done and n_done <= self.slots and variant[3]:
            info["final_obs"] = {"policy": out["final_policy"][:n_done],
                                 "critic": out["final_critic"][:n_done]}
            info["episode"] = {"return": out["ep_return"][:n_done],
                               "length": out["ep_length"][:n_done],
                               "env_ids": out["slot_env"][:n_done],
                               "success": out["slot_success"][:n_done],
                               "collision": out["slot_collision"][:n_done],
                               "timeout": out["slot_timeout"][:n_done]}
            st["graph_reset_steps"] += 1
            st["graph_resets"] += n_done
        elif n_done:
            self._eager_autoreset(out, obs, info)
            st["eager_reset_steps"] += 1
            st["eager_resets"] += n_done
        e._obs = dict(obs)  # same tensors: the env never writes into them (see _set_state)
        return obs, out["reward"], out["terminated"], out["truncated"], info

    def _eager_autoreset(self, out, obs, info) -> None:
        """The base class's autoreset of every ended env (hooks, ``_reset_idx``, ``_observe``),
        for steps the graph did not reset: hooks attached, or more ended envs than slots."""
        e = self.env
        done_ids = out["done"].nonzero().squeeze(-1)
        info["final_obs"] = {name: v[done_ids] for name, v in obs.items()}
        info["episode"] = {"return": e._episode_return[done_ids].clone(),
                           "length": e.episode_length_buf[done_ids].clone(), "env_ids": done_ids,
                           "success": out["success"][done_ids],
                           "collision": out["collided"][done_ids],
                           "timeout": out["truncated"][done_ids]}
        for hook in e.reset_hooks:
            hook(e, done_ids)
        e._reset_idx(done_ids)
        e.episode_length_buf[done_ids] = 0
        e._episode_return[done_ids] = 0.0
        for name, v in e._observe(done_ids).items():
            obs[name][done_ids] = v


def _clone_tree(x):
    if isinstance(x, dict):
        return {n: _clone_tree(v) for n, v in x.items()}
    return x.clone() if isinstance(x, torch.Tensor) else x
