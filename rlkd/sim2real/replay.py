"""Real-robot logs: the format, recording one from any rlkd env (e.g. the PyBullet twin), and
replaying it in the fast sim.

**Log format** (one ``.npz`` file, one trajectory of ``T`` control steps):

================  ==================  ==========================================================
field             shape / type        meaning
================  ==================  ==========================================================
``timestamps``    ``(T,)`` float64    seconds; time each action was sent, strictly increasing
``observations``  ``(T, obs_dim)``    the policy observation each action was computed from
``actions``       ``(T, act_dim)``    the commands sent, in the task's action units ([-1, 1])
``states``        ``(T + 1, S)``      measured state before each action and after the last one
``state_names``   ``(S,)`` str        column names; must equal the task's ``STATE_NAMES``
``env_overrides`` str (optional)      JSON config overrides that rebuild the log's world
``obs_group``     str (optional)      observation group of ``observations`` (default policy)
``env_id``        str (optional)      the env the log was recorded in (informational)
``seed``          int (optional)      logs recorded in an rlkd env: its seed and the random
``stream``        int (optional)      stream of the logged env, which reproduce what the log does
                                      not record (the AGV's moving obstacles)
================  ==================  ==========================================================

For the AGV, ``STATE_NAMES`` is ``x, y`` (m, world frame), ``heading`` (rad), ``lin_vel`` (m/s),
``ang_vel`` (rad/s), ``goal_x, goal_y`` (m). The control period is taken from the timestamps and
must match the task's ``dt`` within 10%.

**Replay** (:func:`replay_log`): the logged actions are replayed open loop in the sim from the
logged first state, under every condition of a suite in one batch, and the position error
against the logged states is reported over time (plus DTW between the traces); the condition that
stays closest hints at which parameters the real robot has. What the log does not record (the
AGV's moving obstacles) comes from the log's ``seed``/``stream`` when present (a log recorded in
an rlkd twin), else from one shared random stream; either way a replay row can end early on a
collision the logged robot did not have, and reports give that step (``ended_at``).

With a policy, a closed-loop check runs the sim *state-forced*: at every step the sim is put in
the logged state, its observation is compared with the logged one, and the policy's actions on
both are compared with each other and with the logged action.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import rlkd
from rlkd.core.atomic import atomic_write
from rlkd.core.env import BatchedEnv

from rlkd.policies import Policy, PolicyFactory

from .stats import dtw
from .suites import Condition

REQUIRED = {
    "timestamps": "(T,) float seconds, strictly increasing",
    "observations": "(T, obs_dim) float",
    "actions": "(T, act_dim) float",
    "states": "(T + 1, S) float",
    "state_names": "(S,) str",
}


class LogError(ValueError):
    """A log file that does not follow the format; the message names the file and field."""


@dataclass
class RobotLog:
    """A validated log (see the module docstring for the fields)."""

    path: str
    timestamps: np.ndarray
    observations: np.ndarray
    actions: np.ndarray
    states: np.ndarray
    state_names: tuple[str, ...]
    env_overrides: dict[str, Any] = field(default_factory=dict)
    obs_group: str = "policy"
    env_id: str = ""
    seed: int | None = None
    stream: int | None = None

    @property
    def steps(self) -> int:
        return len(self.actions)

    @property
    def dt(self) -> float:
        return float(np.median(np.diff(self.timestamps))) if self.steps > 1 else float("nan")


def load_log(path: str | Path) -> RobotLog:
    """Read and validate a log; :class:`LogError` names the file and the offending field."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise LogError(f"{name}: log file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile / pickle / format errors all mean "not a log"
        raise LogError(f"{name}: not a readable .npz log ({type(e).__name__}: {e})") from e
    for key, what in REQUIRED.items():
        if key not in data:
            raise LogError(f"{name}: missing field {key!r} (expected {what}); fields present: "
                           f"{sorted(data)}")
    ts = data["timestamps"]
    obs, act, st = data["observations"], data["actions"], data["states"]
    names = data["state_names"]
    for key, arr, ndim in (("timestamps", ts, 1), ("observations", obs, 2), ("actions", act, 2),
                           ("states", st, 2), ("state_names", names, 1)):
        if arr.ndim != ndim:
            raise LogError(f"{name}: field {key!r} has shape {arr.shape}, expected "
                           f"{REQUIRED[key]}")
    for key, arr in (("timestamps", ts), ("observations", obs), ("actions", act), ("states", st)):
        if not np.issubdtype(arr.dtype, np.number):
            raise LogError(f"{name}: field {key!r} has dtype {arr.dtype}, expected numbers")
    T = len(act)
    if T < 1:
        raise LogError(f"{name}: field 'actions' is empty")
    for key, arr, want in (("timestamps", ts, T), ("observations", obs, T), ("states", st, T + 1)):
        if len(arr) != want:
            raise LogError(f"{name}: field {key!r} has {len(arr)} rows but 'actions' has {T} "
                           f"steps (expected {want} rows: {REQUIRED[key]})")
    if st.shape[1] != len(names):
        raise LogError(f"{name}: field 'states' has {st.shape[1]} columns but 'state_names' "
                       f"names {len(names)}")
    for key, arr in (("timestamps", ts), ("observations", obs), ("actions", act), ("states", st)):
        bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
        if bad.any():
            raise LogError(f"{name}: field {key!r} has NaN/Inf at row {int(np.argmax(bad))}")
    if T > 1 and not (np.diff(ts) > 0).all():
        raise LogError(f"{name}: field 'timestamps' is not strictly increasing (row "
                       f"{int(np.argmax(np.diff(ts) <= 0)) + 1})")
    overrides: dict[str, Any] = {}
    if "env_overrides" in data:
        try:
            overrides = json.loads(str(data["env_overrides"]))
        except json.JSONDecodeError as e:
            raise LogError(f"{name}: field 'env_overrides' is not JSON: {e}") from e
        if not isinstance(overrides, dict):
            raise LogError(f"{name}: field 'env_overrides' must be a JSON object")
    return RobotLog(path=name, timestamps=ts.astype(np.float64),
                    observations=obs.astype(np.float32), actions=act.astype(np.float32),
                    states=st.astype(np.float32), state_names=tuple(str(n) for n in names),
                    env_overrides=overrides, obs_group=str(data.get("obs_group", "policy")),
                    env_id=str(data.get("env_id", "")),
                    seed=_int_field(name, data, "seed"), stream=_int_field(name, data, "stream"))


def _int_field(name: str, data: dict[str, np.ndarray], key: str) -> int | None:
    if key not in data:
        return None
    v = data[key]
    if v.shape != () or not np.issubdtype(v.dtype, np.integer):
        raise LogError(f"{name}: field {key!r} must be one integer, got {v.dtype} {v.shape}")
    return int(v)


def save_log(path: str | Path, log: RobotLog) -> Path:
    """Write ``log`` atomically in the documented format."""
    arrays = {"timestamps": log.timestamps, "observations": log.observations,
              "actions": log.actions, "states": log.states,
              "state_names": np.asarray(log.state_names, dtype=str),
              "env_overrides": np.asarray(json.dumps(log.env_overrides)),
              "obs_group": np.asarray(log.obs_group), "env_id": np.asarray(log.env_id)}
    arrays.update({k: np.asarray(v, dtype=np.int64) for k, v in
                   (("seed", log.seed), ("stream", log.stream)) if v is not None})
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def record_log(env: BatchedEnv, policy: Policy, seed: int = 0, env_index: int | None = None,
               max_steps: int | None = None, obs_group: str = "policy",
               env_overrides: dict[str, Any] | None = None) -> RobotLog:
    """Drive ``env`` with ``policy`` and log one env's first episode.

    ``env_index`` picks the env; ``None`` picks the most informative one: a successful episode
    if any, the longest among those. The final (episode-ending) step is left out: the env resets
    that row inside ``step``, so the state after it is not observable, exactly as a robot log
    stops before the robot is reset. ``env_overrides`` (the config the env was built with) are
    stored with the row's world.
    """
    if not env.STATE_NAMES:
        raise ValueError(f"{type(env).__name__} exposes no measured state (STATE_NAMES)")
    N, dt = env.num_envs, float(getattr(env.cfg, "dt", 1.0))
    obs, _ = env.reset(seed=seed)
    rows_obs, rows_act, rows_state = [], [], [env.get_state().cpu().numpy()]
    length = np.full(N, -1)  # steps logged per env: its first episode's length - 1
    success = np.zeros(N, dtype=bool)
    limit = max_steps or env.max_episode_length
    with torch.no_grad():
        for t in range(limit):
            actions = policy(obs)
            rows_obs.append(obs[obs_group].cpu().numpy())
            rows_act.append(actions.cpu().numpy())
            obs, _, term, trunc, info = env.step(actions)
            rows_state.append(env.get_state().cpu().numpy())
            ended = (term | trunc).cpu().numpy() & (length < 0)
            length[ended] = t
            if ended.any() and "success" in info.get("episode", {}):
                ep = info["episode"]
                ids = ep["env_ids"].cpu().numpy()
                success[ids] |= ep["success"].cpu().numpy() & ended[ids]
            if (length >= 0).all() or (env_index is not None and length[env_index] >= 0):
                break
    length[length < 0] = len(rows_act)  # still running at the step limit: all of it counts
    if env_index is None:
        env_index = int(np.lexsort((length, success))[-1])
    T = int(length[env_index])
    if T == 0:
        raise ValueError(f"env {env_index} ended its episode at the first step; nothing to log")
    pick = lambda rows, n: np.stack([r[env_index] for r in rows[:n]])  # noqa: E731
    return RobotLog(path="", timestamps=np.arange(T) * dt, observations=pick(rows_obs, T),
                    actions=pick(rows_act, T), states=pick(rows_state, T + 1),
                    state_names=tuple(env.STATE_NAMES),
                    env_overrides={**(env_overrides or {}), **env.world_overrides(env_index)},
                    obs_group=obs_group, env_id=env.spec_id, seed=int(seed),
                    stream=int(env.rng.stream_ids[env_index]))


def _xy(states: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    cols = [names.index(c) for c in ("x", "y") if c in names]
    return states[..., cols] if len(cols) == 2 else states


def check_log(log: RobotLog, env_id: str, device: str = "cpu",
              env_overrides: dict[str, Any] | None = None, seed: int = 0) -> BatchedEnv:
    """Check that ``log`` can be replayed in ``env_id`` (its ``env_overrides`` are keys and
    values of that env's config, its state names, control period and action width match) and
    return a one-env probe of the log's world; :class:`LogError` naming the file and field
    otherwise. Cheap: run it before a long evaluation, so a bad log fails first."""
    overrides = {**(env_overrides or {}), **log.env_overrides}
    try:
        probe = rlkd.make(env_id, num_envs=1, device=device, seed=seed, **overrides)
    except (KeyError, TypeError) as e:  # an unknown config key or a value of the wrong type
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        bad = {k: v for k, v in log.env_overrides.items() if repr(k) in str(msg)}
        raise LogError(f"{log.path}: field 'env_overrides' {bad or log.env_overrides} does not "
                       f"fit {env_id}: {msg}") from None
    if tuple(probe.STATE_NAMES) != log.state_names:
        raise LogError(f"{log.path}: field 'state_names' is {list(log.state_names)}, but "
                       f"{env_id} measures {list(probe.STATE_NAMES)}")
    env_dt = float(getattr(probe.cfg, "dt", log.dt))
    if log.steps > 1 and abs(log.dt - env_dt) > 0.1 * env_dt:
        raise LogError(f"{log.path}: field 'timestamps' gives a control period of {log.dt:.4g} s, "
                       f"but {env_id} steps {env_dt:.4g} s")
    if log.actions.shape[1] != probe.act_dim:
        raise LogError(f"{log.path}: field 'actions' has {log.actions.shape[1]} columns, "
                       f"{env_id} takes {probe.act_dim}")
    return probe


def replay_log(log: RobotLog, env_id: str, conditions: list[Condition],
               policy_factory: PolicyFactory | None = None, device: str = "cpu",
               env_overrides: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """Replay ``log`` open loop in ``env_id`` under each applicable condition (one batch).

    Returns a JSON-ready dict: per condition the position error over time (m), its mean (over
    the row's own steps and over the ``common_horizon`` every row ran) and final value, DTW
    between the sim and logged position traces (m per aligned pair), the step at which the sim
    episode ended early (collision) if it did; the condition closest to the log over the common
    horizon; and, with a policy, the closed-loop comparison (see the module docstring).
    """
    overrides = {**(env_overrides or {}), **log.env_overrides}
    probe = check_log(log, env_id, device, env_overrides, seed)
    env_dt = float(getattr(probe.cfg, "dt", log.dt))
    conds = [c for c in conditions if c.applicable(probe) is None]
    probe.close()
    T, C = log.steps, len(conds)
    env = rlkd.make(env_id, num_envs=C, device=device, seed=seed, **overrides)
    for i, c in enumerate(conds):
        c.apply(env, torch.tensor([i], device=env.device))
    env.max_episode_length = max(env.max_episode_length, T + 1)  # the log sets the length
    # One random stream for all rows (the recording's, if known): whatever the log does not pin
    # down (moving obstacles, noise draws) is the same under every condition.
    seed, stream = _log_stream(log, seed)
    env.rng.set_streams(torch.full((C,), stream, dtype=torch.int64))
    env.reset(seed=seed)
    all_ids = torch.arange(C, device=env.device)
    env.set_state(all_ids, torch.as_tensor(log.states[0], device=env.device).expand(C, -1))
    sim = np.full((T + 1, C, log.states.shape[1]), np.nan, dtype=np.float32)
    sim[0] = env.get_state().cpu().numpy()
    ended = np.full(C, -1)
    actions = torch.as_tensor(log.actions, device=env.device)
    with torch.no_grad():
        for t in range(T):
            _, _, term, trunc, _ = env.step(actions[t].expand(C, -1))
            live = ended < 0
            sim[t + 1, live] = env.get_state()[torch.as_tensor(live, device=env.device)].cpu().numpy()
            stop = (term | trunc).cpu().numpy() & live
            ended[stop] = t + 1
            sim[t + 1, stop] = np.nan  # the env reset these rows: their state is gone
    env.close()
    ref = _xy(log.states, log.state_names)
    errs = np.linalg.norm(_xy(sim, log.state_names) - ref[:, None], axis=-1)  # (T + 1, C)
    # Rows that ended early are compared with the others over the steps all of them ran.
    horizon = int(np.isfinite(errs).all(axis=1).sum())
    open_loop = {}
    for i, c in enumerate(conds):
        err = errs[:, i]
        valid = np.isfinite(err)
        xy = _xy(sim[:, i], log.state_names)
        open_loop[c.name] = {
            "pos_err": [float(e) if np.isfinite(e) else None for e in err],
            "mean_pos_err": float(err[valid].mean()),
            "mean_pos_err_common": float(err[:horizon].mean()),
            "final_pos_err": float(err[valid][-1]),
            "dtw_m": dtw(xy[valid], ref[valid])["mean"],
            "ended_at": None if ended[i] < 0 else int(ended[i]),
        }
    best = min(open_loop, key=lambda k: open_loop[k]["mean_pos_err_common"])
    out = {"log": log.path, "env_id": env_id, "steps": T,
           "duration_s": float(log.timestamps[-1] - log.timestamps[0] + log.dt) if T > 1 else 0.0,
           "time_s": [float(x) for x in np.arange(T + 1) * env_dt], "state_names":
           list(log.state_names), "open_loop": open_loop, "best_condition": best,
           "common_horizon": horizon, "closed_loop": None}
    if policy_factory is not None:
        out["closed_loop"] = closed_loop_check(log, env_id, policy_factory, device, overrides, seed)
    return out


def _log_stream(log: RobotLog, seed: int) -> tuple[int, int]:
    return (seed if log.seed is None else log.seed), (0 if log.stream is None else log.stream)


def closed_loop_check(log: RobotLog, env_id: str, policy_factory: PolicyFactory,
                      device: str = "cpu", env_overrides: dict[str, Any] | None = None,
                      seed: int = 0) -> dict[str, Any]:
    """State-forced comparison over the log: before each logged action the sim is put in the
    logged state (with the previous logged action), then stepped with the logged action (so the
    unlogged world, e.g. moving obstacles, advances as in the recording).

    Returns mean L2 gaps: ``action_diff_mean`` (policy on logged obs vs logged action: non-zero
    when another controller or firmware sat in the loop), ``sim_obs_action_diff_mean`` (policy on
    sim obs vs on logged obs: how much the observation gap matters to this policy),
    ``obs_diff_mean`` / ``obs_diff_per_dim`` (mean |sim obs - logged obs|), and ``ended_early``
    (steps at which the sim ended the episode, after which it was re-forced)."""
    T, group = log.steps, log.obs_group
    env = rlkd.make(env_id, num_envs=1, device=device, seed=seed, **(env_overrides or {}))
    env.max_episode_length = max(env.max_episode_length, T + 1)
    seed, stream = _log_stream(log, seed)
    env.rng.set_streams(torch.tensor([stream]))
    env.reset(seed=seed)
    policy = policy_factory(env)
    zero = torch.zeros(1, env.act_dim, device=env.device)
    row = torch.zeros(1, dtype=torch.int64, device=env.device)
    states = torch.as_tensor(log.states, device=env.device)
    actions = torch.as_tensor(log.actions, device=env.device)
    logged_obs = torch.as_tensor(log.observations, device=env.device)
    sim_obs, a_sim, a_logged, ended = [], [], [], []
    with torch.no_grad():
        for t in range(T):
            env.set_state(row, states[t:t + 1], prev_actions=actions[t - 1:t] if t else zero)
            obs = env.get_observations()
            if obs[group].shape[1] != logged_obs.shape[1]:
                raise LogError(f"{log.path}: field 'observations' has {logged_obs.shape[1]} "
                               f"columns, {env_id}'s {group!r} group has {obs[group].shape[1]}")
            forced = dict(obs, **{group: logged_obs[t:t + 1]})
            sim_obs.append(obs[group][0])
            a_sim.append(policy(obs)[0])
            a_logged.append(policy(forced)[0])
            _, _, term, trunc, _ = env.step(actions[t:t + 1])
            if bool(term[0] | trunc[0]):
                ended.append(t + 1)
    env.close()
    sim_obs_np = torch.stack(sim_obs).cpu().numpy()
    a_sim_np, a_log_np = torch.stack(a_sim).cpu().numpy(), torch.stack(a_logged).cpu().numpy()
    obs_gap = np.abs(sim_obs_np - log.observations)
    return {"action_diff_mean": float(np.linalg.norm(a_log_np - log.actions, axis=-1).mean()),
            "sim_obs_action_diff_mean": float(np.linalg.norm(a_sim_np - a_log_np, axis=-1).mean()),
            "obs_diff_mean": float(obs_gap.mean()),
            "obs_diff_per_dim": [float(x) for x in obs_gap.mean(axis=0)],
            "ended_early": ended}
