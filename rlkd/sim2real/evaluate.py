"""Batched evaluation of a policy under the conditions of a suite, and on a twin engine.

Every condition x episode runs in ONE batch of envs: env ``i`` is episode slot ``i // C`` under
condition ``i % C`` (interleaved so each layout group holds every condition equally). Envs of the
same slot share a random stream (:meth:`~rlkd.core.rng.BatchRNG.set_streams`), so under every
condition slot ``e`` starts from the same initial state in the same world: gaps to nominal are
then paired comparisons (common random numbers), much tighter than independent samples. Each env
contributes its first episode only, so short episodes are not over-counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np
import torch

import rlkd
from rlkd.core.env import BatchedEnv
from rlkd.policies import Policy, PolicyFactory

from .suites import Condition, Suite


@dataclass
class Episodes:
    """Per-episode results of a batch of envs, one row per env (its first episode).

    Attributes:
        values: metric name -> ``(N,)`` float64: ``return``, ``length``, every episode flag
            (``success``, ``collision``, ``timeout``, ... as 0/1), ``action_jerk`` (mean
            ``||a_t - 2 a_{t-1} + a_{t-2}||`` over the episode, action units per step^2), and
            for each of the task's ``info["metrics"]`` its per-episode ``<name>_mean``,
            ``<name>_min`` and ``<name>_max``; ``sim_unstable`` (1 when the simulation diverged
            and the episode was ended by the env's NaN guard, else 0).
        traces: ``(T, N, S)`` float32 measured states before each step (``get_state``) of the
            traced envs, NaN after their episode ended; ``None`` unless traced.
        trace_ids: rows of ``traces`` -> env index.
        state_names: columns of ``traces``.
        steps: control steps run.
        groups: ``(N,)`` int64 group of each env's episode (e.g. the humanoid's clip) from the
            env's optional ``episode_groups()``, else ``None``; ``group_names`` name them.
    """

    values: dict[str, np.ndarray]
    traces: np.ndarray | None = None
    trace_ids: np.ndarray | None = None
    state_names: tuple[str, ...] = ()
    steps: int = 0
    groups: np.ndarray | None = None
    group_names: tuple[str, ...] = ()

    def rows(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[ids] for k, v in self.values.items()}


def run_first_episodes(env: BatchedEnv, policy: Policy, seed: int,
                       trace_ids: torch.Tensor | None = None,
                       max_steps: int | None = None) -> Episodes:
    """Reset ``env`` with ``seed`` and step it until every env has finished one episode.

    Args:
        env: any rlkd env (params and streams already set by the caller).
        policy: ``obs -> (N, act_dim)`` actions.
        seed: reset seed.
        trace_ids: envs whose measured state is recorded every step (needs ``get_state``).
        max_steps: safety limit (default: the env's episode limit + 1).

    Returns:
        :class:`Episodes` with one row per env.
    """
    N, dev = env.num_envs, env.device
    limit = max_steps or env.max_episode_length + 1
    obs, _ = env.reset(seed=seed)
    # The first episode's group is fixed by this reset (a task's per-episode label).
    grouping = env.episode_groups() if hasattr(env, "episode_groups") else None
    done = torch.zeros(N, dtype=torch.bool, device=dev)
    out: dict[str, torch.Tensor] = {}
    jerk = torch.zeros(N, dtype=torch.float64, device=dev)
    prev1 = prev2 = None
    msum: dict[str, torch.Tensor] = {}
    mmin: dict[str, torch.Tensor] = {}
    mmax: dict[str, torch.Tensor] = {}
    steps_in = torch.zeros(N, dtype=torch.float64, device=dev)
    unstable = torch.zeros(N, dtype=torch.float64, device=dev)
    traces = []
    t = 0
    with torch.no_grad():
        while not bool(done.all()) and t < limit:
            if trace_ids is not None:
                st = env.get_state(trace_ids).to(torch.float32)
                st[done[trace_ids]] = float("nan")
                traces.append(st.cpu())
            actions = policy(obs)
            active = ~done
            if prev2 is not None:
                d2 = (actions - 2 * prev1 + prev2).norm(dim=-1).double()
                jerk += torch.where(active, d2, torch.zeros_like(d2))
            prev2, prev1 = prev1, actions
            obs, _, _, _, info = env.step(actions)
            t += 1
            steps_in += active.double()
            for name, m in info.get("metrics", {}).items():
                m = m.double()
                if name not in msum:
                    msum[name] = torch.zeros(N, dtype=torch.float64, device=dev)
                    mmin[name] = torch.full((N,), float("inf"), dtype=torch.float64, device=dev)
                    mmax[name] = torch.full((N,), float("-inf"), dtype=torch.float64, device=dev)
                msum[name] += torch.where(active, m, torch.zeros_like(m))
                mmin[name] = torch.where(active, torch.minimum(mmin[name], m), mmin[name])
                mmax[name] = torch.where(active, torch.maximum(mmax[name], m), mmax[name])
            bad = info.get("sim_unstable_ids")
            if bad is not None:  # diverged in its first episode (which thereby ended)
                unstable[bad] = torch.maximum(unstable[bad], active[bad].double())
            ep = info.get("episode")
            if ep is not None:
                ids = ep["env_ids"]
                first = ~done[ids]
                if bool(first.any()):
                    fid = ids[first]
                    for k, v in ep.items():
                        if k == "env_ids":
                            continue
                        if k not in out:
                            out[k] = torch.full((N,), float("nan"), dtype=torch.float64, device=dev)
                        out[k][fid] = v[first].double()
                    done[fid] = True
    values = {k: v.cpu().numpy() for k, v in out.items()}
    if not values:
        values = {"return": np.full(N, np.nan), "length": np.full(N, np.nan)}
    # Jerk needs 3 actions: episodes shorter than that have none.
    n_jerk = (steps_in - 2).clamp_min(0)
    values["sim_unstable"] = unstable.cpu().numpy()
    values["action_jerk"] = torch.where(n_jerk > 0, jerk / n_jerk.clamp_min(1),
                                        torch.full_like(jerk, float("nan"))).cpu().numpy()
    for name in msum:
        values[f"{name}_mean"] = (msum[name] / steps_in.clamp_min(1)).cpu().numpy()
        values[f"{name}_min"] = mmin[name].cpu().numpy()
        values[f"{name}_max"] = mmax[name].cpu().numpy()
    unfinished = ~done.cpu().numpy()
    for v in values.values():  # an env that never finished has no episode to report
        v[unfinished] = np.nan
    return Episodes(values=values,
                    traces=None if trace_ids is None else torch.stack(traces).numpy(),
                    trace_ids=None if trace_ids is None else trace_ids.cpu().numpy(),
                    state_names=tuple(env.STATE_NAMES), steps=t,
                    groups=None if grouping is None else grouping[1].cpu().numpy(),
                    group_names=() if grouping is None else tuple(grouping[0]))


@dataclass
class SuiteResult:
    """Per-condition episodes of one batched suite evaluation (and the twin's, if run)."""

    suite: Suite
    env_id: str
    episodes_per_condition: int
    conditions: list[Condition]
    skipped: dict[str, str]
    per_condition: dict[str, dict[str, np.ndarray]]
    paired: bool
    nominal_traces: Episodes | None = None
    twin_id: str | None = None
    twin: Episodes | None = None
    twin_paired: bool = False
    twin_slots: np.ndarray | None = None
    report_metrics: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    nominal_groups: np.ndarray | None = None
    """``(E,)`` group of each nominal episode (:attr:`Episodes.groups`), or ``None``."""
    group_names: tuple[str, ...] = ()


def _same_worlds(env_a: BatchedEnv, ids_a, env_b: BatchedEnv, ids_b) -> bool:
    return all(env_a.world_overrides(int(i)) == env_b.world_overrides(int(j))
               for i, j in zip(ids_a, ids_b))


def evaluate_suite(policy_factory: PolicyFactory, env_id: str, suite: Suite,
                   episodes: int = 64, seed: int = 0, device: str = "cpu",
                   env_overrides: dict | None = None, twin: bool = False,
                   twin_episodes: int | None = None) -> SuiteResult:
    """Evaluate a policy under every applicable condition of ``suite`` in one batch.

    Args:
        policy_factory: env -> policy.
        env_id: the task (the policy's training env).
        suite: conditions; ones the task does not support are skipped and reported.
        episodes: episodes per condition (a multiple of the task's layout count, 8 for the AGV,
            keeps episodes paired across conditions).
        seed: env seed (worlds and initial states).
        device: torch device of the batch.
        env_overrides: config overrides (e.g. the run's own).
        twin: also run ``twin_episodes`` nominal episodes on the task's twin engine
            (``TWIN_ID``), from the initial states of evenly spread nominal slots, and trace
            both for DTW (paired when the worlds match, which ``episodes`` a multiple of
            ``twin_episodes`` and of the layout count ensures).

    Returns:
        :class:`SuiteResult`.
    """
    import time

    overrides = dict(env_overrides or {})
    probe = rlkd.make(env_id, num_envs=1, device=device, seed=seed, **overrides)
    skipped = {c.name: r for c in suite.conditions if (r := c.applicable(probe)) is not None}
    conds = [c for c in suite.conditions if c.name not in skipped]
    twin_id = probe.TWIN_ID if twin else None
    has_state = bool(probe.STATE_NAMES)
    report_metrics = dict(probe.REPORT_METRICS)
    probe.close()
    if twin and twin_id is None:
        raise ValueError(f"{env_id} has no twin engine (TWIN_ID); run without --twin")
    C, E = len(conds), int(episodes)
    if E < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    t0 = time.perf_counter()
    env = rlkd.make(env_id, num_envs=C * E, device=device, seed=seed, **overrides)
    slot = torch.arange(C * E, device=env.device) // C
    env.rng.set_streams(slot)
    for ci, cond in enumerate(conds):
        cond.apply(env, torch.arange(ci, C * E, C, device=env.device))
    rows = np.arange(C * E).reshape(E, C)
    paired = all(_same_worlds(env, rows[:, 0], env, rows[:, ci]) for ci in range(1, C))
    nominal_ci = [c.name for c in conds].index("nominal")
    nominal_rows = torch.as_tensor(rows[:, nominal_ci], device=env.device)
    # Twin episode j replays sim slot twin_slots[j]: slots spread evenly over the batch, so the
    # twin's own layout groups (j // (n_twin / L)) line up with the sim's.
    n_twin = min(E, E if twin_episodes is None else int(twin_episodes))
    twin_slots = (torch.arange(n_twin) * E) // n_twin
    trace_ids = nominal_rows[twin_slots.to(env.device)] if (twin and has_state) else None
    eps = run_first_episodes(env, policy_factory(env), seed, trace_ids=trace_ids)
    sim_worlds = [env.world_overrides(int(rows[e, nominal_ci])) for e in twin_slots]
    env.close()
    t1 = time.perf_counter()
    result = SuiteResult(suite=suite, env_id=env_id, episodes_per_condition=E, conditions=conds,
                         skipped=skipped, paired=paired,
                         per_condition={c.name: eps.rows(rows[:, ci]) for ci, c in enumerate(conds)},
                         nominal_traces=eps if trace_ids is not None else None,
                         report_metrics=report_metrics,
                         timings={"suite_s": t1 - t0, "suite_steps": eps.steps,
                                  "suite_envs": C * E},
                         nominal_groups=None if eps.groups is None
                         else eps.groups[rows[:, nominal_ci]],
                         group_names=eps.group_names)
    if twin:
        tw = rlkd.make(twin_id, num_envs=n_twin, device="cpu", seed=seed, **overrides)
        tw.rng.set_streams(twin_slots)
        # The twin's world for slot e must be the sim's world for slot e to pair episodes.
        result.twin_paired = sim_worlds == [tw.world_overrides(i) for i in range(n_twin)]
        t2 = time.perf_counter()
        result.twin = run_first_episodes(
            tw, policy_factory(tw), seed,
            trace_ids=torch.arange(n_twin) if has_state else None)
        tw.close()
        result.twin_id = twin_id
        result.twin_slots = twin_slots.numpy()
        result.timings.update(twin_s=time.perf_counter() - t2, twin_envs=n_twin)
    return result


def evaluate_one_at_a_time(policy_factory: PolicyFactory, env_id: str, conditions: list[Condition],
                           episodes: int, seed: int = 0, device: str = "cpu",
                           env_overrides: dict | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The unbatched reference: one env, one condition and one episode at a time (reset between
    episodes, params rewritten between conditions). Used by the throughput benchmark."""
    env = rlkd.make(env_id, num_envs=1, device=device, seed=seed, **(env_overrides or {}))
    nominal = {k: v.clone() for k, v in env.params.items()}
    policy = policy_factory(env)
    ids = torch.zeros(1, dtype=torch.int64, device=env.device)
    out = {}
    for cond in conditions:
        for k, v in nominal.items():
            env.params[k].copy_(v)
        cond.apply(env, ids)
        per_ep = []
        for e in range(episodes):
            env.rng.set_streams(torch.tensor([e]))
            per_ep.append(run_first_episodes(env, policy, seed).values)
        out[cond.name] = {k: np.concatenate([p[k] for p in per_ep]) for k in per_ep[0]}
    env.close()
    return out
