"""Fallback CPU path of :class:`~rlkd.sim.mujoco.MujocoBatch` for MuJoCo < 4.0 (no
``mujoco.batch``): one ``MjData`` per env, the batch split into chunks that a small thread pool
steps (``mj_step`` releases the GIL). Selected automatically, or with ``cpu_impl="threads"``.

It measured 0.77-0.91x of the physics limit on the humanoid benchmark where ``mujoco.batch``
measured 0.97-1.0x (see :mod:`rlkd.sim.mujoco.cpu`): the per-env Python (copying a control row
in, the state and each derived field out) costs ~10%. It is also heavy: 2048 humanoid
``MjData`` take ~1 GB, writing every env's masses 5 s (an ``MjModel`` copy per env, ~0.6 MB
each, and ``mj_setConst``), against ~36 MB and 0.1 s with ``mujoco.batch``.

Hot path, per worker thread and env: copy the control row into ``d.ctrl``; ``mj_step(m, d,
nstep)`` (GIL released); ``mj_getState`` into a row of the batched state array (time, qpos, qvel,
act in one call); ``mj_rnePostConstraint`` and a copy of ``cfrc_ext`` (if requested); ``mj_step1``
so that positions/velocities-derived fields describe the *new* state, then a copy per requested
field. Chunks are handed out dynamically (a shared counter), so envs with many contacts do not
leave a thread idle. ``mj_step1`` only computes derived quantities: stepping on afterwards is
bitwise the same as a plain ``mj_step`` loop (tested). Per-env parameters give an env its own
``MjModel`` copy on first write (copy on write; the others share the nominal model).
"""

from __future__ import annotations

import copy
import itertools
from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np
import torch

from rlkd.sim.mujoco.model import (INTEGRATION_SPEC, POS_VEL_FIELDS, UNSTABLE_WARNINGS,
                                   ParamTable, available_cores)

#: State components read back after every step, in MuJoCo's state order.
_STATE_SPEC = (mujoco.mjtState.mjSTATE_TIME | mujoco.mjtState.mjSTATE_QPOS
               | mujoco.mjtState.mjSTATE_QVEL | mujoco.mjtState.mjSTATE_ACT)
_FULLPHYSICS = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)


class PoolBackend:
    """Batch of ``num_envs`` MuJoCo worlds stepped on ``num_threads`` threads (float64 state).

    Buffers are numpy arrays shared with torch (``torch.from_numpy``, no copies); the tensors
    handed out are views of them, overwritten in place by ``step``/``reset``.
    """

    dtype = torch.float64
    impl = "threads"

    def __init__(self, model: mujoco.MjModel, num_envs: int, num_threads: int | None,
                 nstep: int, fields: frozenset[str], table: ParamTable):
        self.model = model
        self.num_envs = n = num_envs
        self.nstep = nstep
        self.device = torch.device("cpu")
        self.table = table
        # One model shared by all envs until an env's parameters are written (copy on write).
        self._models = [model] * n
        self._datas = [mujoco.MjData(model) for _ in range(n)]
        self._scratch = mujoco.MjData(model)  # mj_setConst works on a data it may clobber

        nq, nv, na, nb = model.nq, model.nv, model.na, model.nbody
        self._state = np.zeros((n, 1 + nq + nv + na))
        st = torch.from_numpy(self._state)
        self.time, self.qpos = st[:, 0], st[:, 1:1 + nq]
        self.qvel, self.act = st[:, 1 + nq:1 + nq + nv], st[:, 1 + nq + nv:]
        self._ctrl = np.zeros((n, model.nu))
        self.ctrl = torch.from_numpy(self._ctrl)
        shapes = {"xpos": (nb, 3), "xquat": (nb, 4), "cvel": (nb, 6),
                  "sensordata": (model.nsensordata,), "cfrc_ext": (nb, 6)}
        self._bufs = {k: np.zeros((n, *shapes[k])) for k in shapes if k in fields}
        self.fields = {k: torch.from_numpy(v) for k, v in self._bufs.items()}
        # mj_step1 refreshes position/velocity-derived fields after the step (not cfrc_ext).
        self._need_step1 = any(k in fields for k in POS_VEL_FIELDS)
        # Diverged worlds (MuJoCo resets them itself and counts a warning), per step.
        self._warn = np.zeros((n, len(UNSTABLE_WARNINGS)), dtype=np.int64)
        self._unstable = np.zeros(n, dtype=bool)
        self.unstable = torch.from_numpy(self._unstable)

        self.num_threads = max(1, min(num_threads or available_cores(), n))
        # The calling thread works too: num_threads - 1 pool workers.
        self._pool = (ThreadPoolExecutor(self.num_threads - 1, thread_name_prefix="rlkd-mujoco")
                      if self.num_threads > 1 else None)
        # Several chunks per thread so that a thread done early takes more (load balance).
        nchunks = min(n, 4 * self.num_threads) if self._pool else 1
        size = -(-n // nchunks)
        self._chunks = [(lo, min(n, lo + size)) for lo in range(0, n, size)]

    # ------------------------------------------------------------------ stepping
    def step(self, ctrl: torch.Tensor) -> None:
        """Advance every env ``nstep`` physics steps with ``ctrl`` ((N, nu), validated)."""
        self.ctrl.copy_(ctrl)
        if self._pool is None:
            self._run(0, self.num_envs)
            return
        counter = itertools.count()  # next() on it is atomic under the GIL
        futures = [self._pool.submit(self._drain, counter) for _ in range(self.num_threads - 1)]
        self._drain(counter)
        for f in futures:
            f.result()

    def _drain(self, counter: itertools.count) -> None:
        chunks = self._chunks
        while (c := next(counter)) < len(chunks):
            self._run(*chunks[c])

    def _run(self, lo: int, hi: int) -> None:
        """Step envs ``lo:hi`` and copy their state out (runs on a worker thread)."""
        step, get_state = mujoco.mj_step, mujoco.mj_getState
        step1, rne = mujoco.mj_step1, mujoco.mj_rnePostConstraint
        models, datas, ctrl, state = self._models, self._datas, self._ctrl, self._state
        nstep, spec = self.nstep, _STATE_SPEC
        b = self._bufs
        xpos, xquat, cvel = b.get("xpos"), b.get("xquat"), b.get("cvel")
        sens, cfrc = b.get("sensordata"), b.get("cfrc_ext")
        need_step1 = self._need_step1
        warn, unstable, kinds = self._warn, self._unstable, UNSTABLE_WARNINGS
        for i in range(lo, hi):
            m, d = models[i], datas[i]
            d.ctrl[:] = ctrl[i]
            step(m, d, nstep)
            get_state(m, d, state[i], spec)
            w = [d.warning[k].number for k in kinds]
            unstable[i] = w != warn[i].tolist()
            warn[i] = w
            if cfrc is not None:
                # Contact forces of the last substep: must precede mj_step1, which rebuilds
                # the constraint arrays for the new state.
                rne(m, d)
                cfrc[i] = d.cfrc_ext
            if need_step1:
                step1(m, d)
                if xpos is not None:
                    xpos[i] = d.xpos
                if xquat is not None:
                    xquat[i] = d.xquat
                if cvel is not None:
                    cvel[i] = d.cvel
                if sens is not None:
                    sens[i] = d.sensordata

    # ------------------------------------------------------------------ resets and state
    def _copy_out(self, i: int) -> None:
        m, d = self._models[i], self._datas[i]
        mujoco.mj_getState(m, d, self._state[i], _STATE_SPEC)
        for name, buf in self._bufs.items():
            buf[i] = getattr(d, name)

    def _forward(self, i: int) -> None:
        m, d = self._models[i], self._datas[i]
        mujoco.mj_forward(m, d)
        if "cfrc_ext" in self._bufs:
            mujoco.mj_rnePostConstraint(m, d)
        self._copy_out(i)

    def forward(self, ids: np.ndarray) -> None:
        """Recompute every derived field of envs ``ids`` at their current state (mj_forward)."""
        for i in ids.tolist():
            self._forward(i)

    def reset(self, ids: np.ndarray, qpos: torch.Tensor | None, qvel: torch.Tensor | None) -> None:
        """Reset envs ``ids`` (``mj_resetData``: time, act, ctrl, warm start, applied forces to
        zero), set ``qpos``/``qvel`` rows if given, then ``mj_forward`` them."""
        for k, i in enumerate(ids.tolist()):
            m, d = self._models[i], self._datas[i]
            mujoco.mj_resetData(m, d)
            self._warn[i] = 0  # mj_resetData zeroes the warning counts
            if qpos is not None:
                d.qpos[:] = qpos[k].numpy()
            if qvel is not None:
                d.qvel[:] = qvel[k].numpy()
            self._forward(i)
        self._ctrl[ids] = 0.0

    def get_state(self, ids: np.ndarray) -> torch.Tensor:
        """``(M, nstate)`` float64 full integration state (``mjSTATE_INTEGRATION``)."""
        size = mujoco.mj_stateSize(self.model, INTEGRATION_SPEC)
        out = np.empty((len(ids), size))
        for k, i in enumerate(ids.tolist()):
            mujoco.mj_getState(self._models[i], self._datas[i], out[k], INTEGRATION_SPEC)
        return torch.from_numpy(out)

    def set_state(self, ids: np.ndarray, state: np.ndarray) -> None:
        for k, i in enumerate(ids.tolist()):
            mujoco.mj_setState(self._models[i], self._datas[i], state[k], INTEGRATION_SPEC)
            self._forward(i)
        self._ctrl[ids] = state[:, self._ctrl_slice()]

    def _ctrl_slice(self) -> slice:
        # ctrl's position inside an mjSTATE_INTEGRATION vector: after the components before it.
        before = int(mujoco.mjtState.mjSTATE_CTRL) - 1
        start = mujoco.mj_stateSize(self.model, INTEGRATION_SPEC & before)
        return slice(start, start + self.model.nu)

    # ------------------------------------------------------------------ parameters
    def write_params(self, ids: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Give envs ``ids`` the parameter rows ``values`` (name -> (M, ...)); they take effect
        at the next step; ``mj_forward`` refreshes their derived fields."""
        for k, i in enumerate(ids.tolist()):
            m = self._models[i]
            if m is self.model:  # copy on write: never touch the shared nominal model
                m = self._models[i] = copy.copy(self.model)
            for name, rows in values.items():
                self.table.apply_row(m, name, rows[k])
            if "body_mass" in values:
                mujoco.mj_setConst(m, self._scratch)
            self._forward(i)

    # ------------------------------------------------------------------ rendering support
    def load_host(self, i: int, scratch: mujoco.MjData) -> mujoco.MjModel:
        """Copy env ``i``'s physics state into ``scratch`` (an ``MjData`` of the nominal model)
        and return env ``i``'s model; used by rendering, which must not touch the live data."""
        m = self._models[i]
        buf = np.empty(mujoco.mj_stateSize(m, _FULLPHYSICS))
        mujoco.mj_getState(m, self._datas[i], buf, _FULLPHYSICS)
        mujoco.mj_setState(m, scratch, buf, _FULLPHYSICS)
        return m

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
