"""CPU path of :class:`~rlkd.sim.mujoco.MujocoBatch`: native MuJoCo stepped by
``mujoco.batch.Batch`` (MuJoCo >= 4.0), a C++ thread pool over per-env state rows.

Why ``mujoco.batch``. Measured on gymnasium's humanoid.xml, frame skip 5, 2 threads, identical
initial states and controls, as a ratio to one ``mujoco.rollout`` call running the same
trajectories (no Python between steps); every path keeps the state and xpos, xquat, cvel,
sensordata and cfrc_ext after each step. Exploratory runs, best of 2-3 (the machine is shared):

===========================================  =====  =====  =====  =====
path                                         1 env  64     512    2048
===========================================  =====  =====  =====  =====
``mujoco.batch.Batch`` (this module)         0.97   1.00   0.99   1.00
``MjData`` per env + ``ThreadPoolExecutor``  0.77   0.90   0.91   0.86
===========================================  =====  =====  =====  =====

``scripts/bench_mujoco.py`` re-measures them at 512 envs with a third option,
``mujoco.rollout.Rollout`` called once per env step. That one is as fast (0.95-1.0) but returns
the state only: body poses and contact forces need a second per-env pass in Python, i.e. the
thread pool's cost again; and it cannot hand back ``qacc_warmstart``, so each call restarts the
constraint solver cold and call-by-call stepping is not bitwise one continuous ``mj_step``
loop. ``mujoco.batch`` has neither problem: each env is an ``mjSTATE_INTEGRATION`` row (warm
start included: results are bitwise those of a plain ``mj_step`` loop, tested), derived fields
are copied into batched arrays in C++, per-env model fields are expanded in place
(``Batch.expand``, no model copies) and no Python runs per env. With MuJoCo < 4.0 the thread
pool (:mod:`rlkd.sim.mujoco.pool`) is the fallback.

Memory and parameter writes, 2048 humanoids: the batch takes ~20 MB, ~36 MB once mass,
friction, gains and damping are per env (``geom_solref`` adds ``16 ngeom`` bytes per env);
writing every env's masses takes 0.1 s (``mj_setConst`` per env included), friction, gains or
damping ~0.02 s each; with no write, the per-step check costs
~8 us. The batch is not persistent (one ``MjData`` per *thread*: ~4 MB for 2048 humanoids,
~400 MB persistent) unless the model needs it (plugins, sleeping islands), per
``mujoco.batch``'s rules.
"""

from __future__ import annotations

import warnings

import mujoco
import mujoco.batch
import numpy as np
import torch

from rlkd.sim.mujoco.model import (POS_VEL_FIELDS, UNSTABLE_WARNINGS, ParamTable,
                                   available_cores)


def _needs_persistent(model: mujoco.MjModel) -> bool:
    # mujoco.batch: sleeping islands require it; plugins may keep state outside plugin_state.
    sleep = bool(model.opt.enableflags & mujoco.mjtEnableBit.mjENBL_SLEEP)
    return sleep or model.nplugin > 0


def _tensor(array: np.ndarray) -> torch.Tensor:
    # Bound outputs are flagged read-only by mujoco.batch (a write is lost at the next call);
    # torch warns about sharing such arrays. The tensors are read-only by contract.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


class CpuBackend:
    """Batch of ``num_envs`` MuJoCo worlds in a ``mujoco.batch.Batch`` (float64 state).

    Tensors are ``torch.from_numpy`` views (no copies) of the batch's state rows and of its
    bound output arrays, rewritten in place by every call.
    """

    dtype = torch.float64
    impl = "batch"

    def __init__(self, model: mujoco.MjModel, num_envs: int, num_threads: int | None,
                 nstep: int, fields: frozenset[str], table: ParamTable):
        self.model = model
        self.num_envs = n = num_envs
        self.nstep = nstep
        self.table = table
        self.device = torch.device("cpu")
        threads = max(1, min(num_threads or available_cores(), n))
        self._b = b = mujoco.batch.Batch(model, n, nthread=threads,
                                         persistent=_needs_persistent(model))
        self.num_threads = b.nthread
        # State views: rows of b.state (mjSTATE_INTEGRATION), float64.
        self._np = {k: b.bind(k) for k in ("time", "qpos", "qvel", "act", "ctrl")}
        self.time, self.qpos, self.qvel, self.act, self.ctrl = (
            torch.from_numpy(self._np[k]) for k in ("time", "qpos", "qvel", "act", "ctrl"))
        # Only the fields asked for are bound, i.e. copied out after every call.
        self.fields = {k: _tensor(b.bind(k)) for k in sorted(fields)}
        # mjSTAGE_VEL after the substeps = mj_step1: positions/velocities-derived fields and
        # sensors describe the new state; contact forces and acc-stage sensors stay those of
        # the last substep (mj_step1 keeps them).
        self._stage = (mujoco.mjtStage.mjSTAGE_VEL if any(k in fields for k in POS_VEL_FIELDS)
                       else mujoco.mjtStage.mjSTAGE_NONE)
        # Warning counts of the divergence kinds, a view (the kinds are consecutive in
        # mjtWarning; mjWarningStat is (lastinfo, number)), and their values after the last step.
        lo, hi = min(UNSTABLE_WARNINGS), max(UNSTABLE_WARNINGS) + 1
        assert hi - lo == len(UNSTABLE_WARNINGS)
        self._warn_now = b.warning[:, lo:hi, 1]
        self._warn = self._warn_now.copy()
        self._newer = np.zeros_like(self._warn, dtype=bool)
        self._unstable = np.zeros(n, dtype=bool)
        self.unstable = torch.from_numpy(self._unstable)

    # ------------------------------------------------------------------ stepping
    def step(self, ctrl: torch.Tensor) -> None:
        """Advance every env ``nstep`` physics steps with ``ctrl`` ((N, nu), validated)."""
        np.copyto(self._np["ctrl"], ctrl.detach().numpy())
        failed = None
        try:
            self._b.step(nstep=self.nstep, stage=self._stage)
        except mujoco.batch.SimulationError as e:
            # MuJoCo raised in some worlds (they kept their old state); the others stepped.
            # Reset them so the batch goes on; they are reported in `unstable`.
            failed = e.ids
            self._b.reset(failed)
        self._update_unstable(failed)

    def _update_unstable(self, failed: np.ndarray | None = None) -> None:
        # A warning since the last step (or since the env's reset, which zeroes the counts,
        # so a bad state given to reset() shows up at the next step).
        np.greater(self._warn_now, self._warn, out=self._newer)
        self._newer.any(axis=1, out=self._unstable)
        if failed is not None:
            self._unstable[failed] = True
        np.copyto(self._warn, self._warn_now)

    def forward(self, ids: np.ndarray) -> None:
        """Recompute every derived field of envs ``ids`` at their current state (mj_forward)."""
        self._b.forward(ids)

    # ------------------------------------------------------------------ resets and state
    def reset(self, ids: np.ndarray, qpos: torch.Tensor | None, qvel: torch.Tensor | None) -> None:
        """``mj_resetData`` envs ``ids`` (time, act, ctrl, warm start, applied forces to zero),
        set ``qpos``/``qvel`` rows if given, then ``mj_forward`` them."""
        self._b.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        self._warn[ids] = 0  # mj_resetData zeroes the warning counts
        if qpos is not None:
            self._np["qpos"][ids] = qpos.numpy()
        if qvel is not None:
            self._np["qvel"][ids] = qvel.numpy()
        self.forward(ids)

    def get_state(self, ids: np.ndarray) -> torch.Tensor:
        """``(M, nstate)`` float64 full integration state (``mjSTATE_INTEGRATION``)."""
        return torch.from_numpy(self._b.state[ids])  # fancy indexing copies

    def set_state(self, ids: np.ndarray, state: np.ndarray) -> None:
        self._b.state[ids] = state
        self.forward(ids)

    # ------------------------------------------------------------------ parameters
    def write_params(self, ids: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Give envs ``ids`` the parameter rows ``values`` (name -> (M, ...)). The model fields
        are expanded per env on first write (``Batch.expand``); mass writes are followed by
        ``mj_setConst`` for those envs; then ``mj_forward`` refreshes their derived fields."""
        b, table = self._b, self.table
        if "body_mass" in values:
            b.expand("body_mass")[ids] = values["body_mass"]
            b.expand("body_inertia")[ids] = table.inertia(values["body_mass"])
        if "geom_friction" in values:
            b.expand("geom_friction")[ids] = values["geom_friction"]
        if "dof_damping" in values:
            b.expand("dof_damping")[ids] = values["dof_damping"]
        if "geom_solref" in values:
            b.expand("geom_solref")[ids] = values["geom_solref"]
        if "actuator_gain" in values:
            gain = values["actuator_gain"]
            b.expand("actuator_gainprm")[ids, :, 0] = gain
            bias = b.expand("actuator_biasprm")
            for servo, col in ((table.position_servo, 1), (table.velocity_servo, 2)):
                if servo.any():
                    cols = np.flatnonzero(servo)
                    bias[ids[:, None], cols[None, :], col] = -gain[:, cols]
        if "body_mass" in values:
            b.set_const(ids)
        self.forward(ids)

    # ------------------------------------------------------------------ rendering support
    def load_host(self, i: int, scratch: mujoco.MjData) -> mujoco.MjModel:
        """Copy env ``i``'s state into ``scratch`` (an ``MjData`` of the model) and return the
        model to draw it with (per-env parameters do not change what is drawn)."""
        self._b.get_data(i, scratch)
        return self.model

    def close(self) -> None:
        self._b = None
        self.fields = {}
