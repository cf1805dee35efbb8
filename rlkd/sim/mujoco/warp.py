"""MuJoCo Warp path of :class:`~rlkd.sim.mujoco.MujocoBatch`: all worlds in one ``mujoco_warp``
``Data`` (``nworld = num_envs``), on a CUDA GPU or on warp's CPU device.

State is float32 and lives in warp arrays; the tensors handed out are ``warp.to_torch`` views of
them (no copies, on the batch's device). Per-env parameters are batched model fields
(``put_model(..., batch_sizes={"body_mass": N, ...})``), written through torch views of the model
arrays, followed by ``mujoco_warp.set_const`` when masses change.

Notes:
* MuJoCo Warp does not implement the PGS solver: the model must use Newton or CG
  (``<option solver="Newton"/>``); the front class checks this before importing warp.
* The first use compiles warp kernels: ~35 s for the small test model on warp's CPU device on
  this project's 2-core machines (then ~5 s from the on-disk cache, ``~/.cache/warp`` or
  ``WARP_CACHE_PATH``); see MuJoCo Warp #509.
* Reset, ``set_state``, ``forward`` and parameter writes run the ``forward`` kernels over *all*
  worlds (they take no world mask); the other worlds' state is unchanged and their
  force/acceleration outputs (``cfrc_ext``, acceleration-stage sensors) are restored, so the cost
  is about one physics step of the batch per call. Batch your resets (``BatchedEnv``'s
  autoreset does). MuJoCo Warp does not reset diverged worlds itself: ``unstable`` flags
  non-finite states and the env resets them.
* Steps launch kernels one by one (no CUDA graph capture yet); on a GPU, capturing ``nstep``
  steps in a graph is the next speed-up. Only the CPU device could be tested here.
"""

from __future__ import annotations

import contextlib
import dataclasses

import mujoco
import numpy as np
import torch

from rlkd.sim.mujoco.model import INTEGRATION_SPEC, POS_VEL_FIELDS, ParamTable

#: Model fields given a per-world leading dimension (those our parameters write and those
#: ``set_const`` derives from them). Fields a mujoco_warp version does not batch are skipped.
_BATCHED_FIELDS = ("body_mass", "body_inertia", "body_subtreemass", "body_invweight0",
                   "dof_invweight0", "dof_damping", "geom_friction", "geom_solref",
                   "actuator_gainprm", "actuator_biasprm", "actuator_acc0", "tendon_invweight0")

#: Fields our parameter writes touch (must be batched for per-env parameters).
_WRITTEN_FIELDS = ("body_mass", "body_inertia", "geom_friction", "geom_solref",
                   "dof_damping", "actuator_gainprm", "actuator_biasprm")

MISSING_MESSAGE = ("backend='warp' needs the packages 'mujoco-warp' and 'warp-lang' "
                   "(pip install mujoco-warp warp-lang, or pip install 'rlkd[gpu]')")


def import_warp():
    """``(warp, mujoco_warp)``, or ``ImportError`` naming the packages to install."""
    try:
        import mujoco_warp as mjw
        import warp as wp
    except ImportError as e:
        raise ImportError(f"{MISSING_MESSAGE}: {e}") from e
    return wp, mjw


def check_solver(model: mujoco.MjModel) -> None:
    """``ValueError`` unless the model's solver is one MuJoCo Warp implements."""
    if model.opt.solver == mujoco.mjtSolver.mjSOL_PGS:
        raise ValueError("backend='warp': MuJoCo Warp does not support the PGS solver; set "
                         "<option solver=\"Newton\"/> (or CG) in the MJCF, or set "
                         "model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON")


class WarpBackend:
    """Batch of ``num_envs`` worlds in one MuJoCo Warp ``Data`` (float32 state)."""

    dtype = torch.float32
    impl = "warp"

    def __init__(self, model: mujoco.MjModel, num_envs: int, device: torch.device, nstep: int,
                 fields: frozenset[str], table: ParamTable, nconmax: int | None = None,
                 njmax: int | None = None):
        check_solver(model)
        wp, mjw = import_warp()
        self._wp, self._mjw = wp, mjw
        self.model = model
        self.num_envs = n = num_envs
        self.nstep = nstep
        self.table = table
        self.num_threads = 1
        wp.init()
        if device.type == "cuda":
            self._wdev = wp.get_device(f"cuda:{device.index or 0}")
            self.device = torch.device("cuda", device.index or 0)
        elif device.type == "cpu":
            self._wdev = wp.get_device("cpu")
            self.device = device
        else:
            raise ValueError(f"backend='warp' runs on 'cpu' or 'cuda' devices, not {device}")

        # Batch the fields this mujoco_warp version allows a per-world leading dimension for.
        batchable = {f.name for f in dataclasses.fields(mjw.Model)
                     if getattr(f.type, "shape", ("",))[:1] == ("*",)}
        batch = {k: n for k in _BATCHED_FIELDS if k in batchable}
        self._params_ok = all(k in batch for k in _WRITTEN_FIELDS)
        with wp.ScopedDevice(self._wdev):
            self.m = mjw.put_model(model, batch_sizes=batch)
            self.d = mjw.make_data(model, nworld=n, nconmax=nconmax, njmax=njmax)

        t = wp.to_torch
        d = self.d
        self.qpos, self.qvel, self.act, self.ctrl = t(d.qpos), t(d.qvel), t(d.act), t(d.ctrl)
        self.time = t(d.time)
        all_fields = {"xpos": t(d.xpos), "xquat": t(d.xquat), "cvel": t(d.cvel),
                      "sensordata": t(d.sensordata), "cfrc_ext": t(d.cfrc_ext)}
        self.fields = {k: v for k, v in all_fields.items() if k in fields}
        self._sens = all_fields["sensordata"]
        self._cfrc = all_fields["cfrc_ext"]
        self._want_cfrc = "cfrc_ext" in fields
        self._need_step1 = any(k in fields for k in POS_VEL_FIELDS)
        # Acceleration-stage sensors (accelerometer, touch, force, ...) describe the last physics
        # substep, as on the CPU path; mujoco_warp's step1 zeroes all sensordata, so they are
        # saved around it.
        acc = [np.arange(a, a + k) for a, k, s in zip(model.sensor_adr, model.sensor_dim,
                                                      model.sensor_needstage)
               if s == mujoco.mjtStage.mjSTAGE_ACC]
        self._acc_cols = (torch.from_numpy(np.concatenate(acc)).to(self.device)
                          if acc else None)
        self._mt = {k: t(getattr(self.m, k)) for k in _WRITTEN_FIELDS}
        self._pos_servo = torch.from_numpy(table.position_servo).to(self.device)
        self._vel_servo = torch.from_numpy(table.velocity_servo).to(self.device)
        self.unstable = torch.zeros(n, dtype=torch.bool, device=self.device)

    # ------------------------------------------------------------------ helpers
    def _scope(self) -> contextlib.ExitStack:
        """Device scope (plus torch's current stream on CUDA, so torch writes such as ``ctrl``
        are ordered with the warp kernels that read them)."""
        wp = self._wp
        stack = contextlib.ExitStack()
        stack.enter_context(wp.ScopedDevice(self._wdev))
        if self.device.type == "cuda":
            stack.enter_context(wp.ScopedStream(wp.stream_from_torch(self.device)))
        return stack

    def _step1_keep_acc(self) -> None:
        if self._acc_cols is not None:
            saved = self._sens[:, self._acc_cols].clone()
        self._mjw.step1(self.m, self.d)
        if self._acc_cols is not None:
            self._sens[:, self._acc_cols] = saved

    # ------------------------------------------------------------------ stepping
    def step(self, ctrl: torch.Tensor) -> None:
        self.ctrl.copy_(ctrl)
        mjw = self._mjw
        with self._scope():
            for _ in range(self.nstep):
                mjw.step(self.m, self.d)
            if self._want_cfrc:
                mjw.rne_postconstraint(self.m, self.d)
            if self._need_step1:
                self._step1_keep_acc()
        # MuJoCo Warp does not reset diverged worlds itself: report non-finite states.
        self.unstable = ~(torch.isfinite(self.qpos).all(-1) & torch.isfinite(self.qvel).all(-1))

    def _mask(self, ids: np.ndarray) -> torch.Tensor:
        mask = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        mask[torch.from_numpy(ids).to(self.device)] = True
        return mask

    def forward(self, ids: np.ndarray) -> None:
        """Recompute every derived field of worlds ``ids`` at their current state (forward plus
        contact forces). The kernels run on all worlds; the others get their force/acceleration
        outputs of the last substep back (their state is not touched)."""
        mjw = self._mjw
        keep = ~self._mask(ids)
        saved_cfrc = self._cfrc[keep].clone()
        saved_acc = (self._sens[keep][:, self._acc_cols].clone()
                     if self._acc_cols is not None else None)
        with self._scope():
            mjw.forward(self.m, self.d)
            if self._want_cfrc:
                mjw.rne_postconstraint(self.m, self.d)
        self._cfrc[keep] = saved_cfrc
        if saved_acc is not None:
            rows = keep.nonzero().squeeze(-1)
            self._sens[rows.unsqueeze(-1), self._acc_cols] = saved_acc

    # ------------------------------------------------------------------ resets and state
    def reset(self, ids: np.ndarray, qpos: torch.Tensor | None, qvel: torch.Tensor | None) -> None:
        ids_t = torch.from_numpy(ids).to(self.device)
        mask = self._mask(ids)
        with self._scope():
            self._mjw.reset_data(self.m, self.d, reset=self._wp.from_torch(mask))
        if qpos is not None:
            self.qpos[ids_t] = torch.as_tensor(qpos, device=self.device, dtype=self.dtype)
        if qvel is not None:
            self.qvel[ids_t] = torch.as_tensor(qvel, device=self.device, dtype=self.dtype)
        self.forward(ids)

    def get_state(self, ids: np.ndarray) -> torch.Tensor:
        size = mujoco.mj_stateSize(self.model, INTEGRATION_SPEC)
        out = self._wp.zeros((self.num_envs, size), dtype=float, device=self._wdev)
        with self._scope():
            self._mjw.get_state(self.m, self.d, out, INTEGRATION_SPEC)
        return self._wp.to_torch(out)[torch.from_numpy(ids).to(self.device)].clone()

    def set_state(self, ids: np.ndarray, state: np.ndarray) -> None:
        mask = self._mask(ids)
        ids_t = torch.from_numpy(ids).to(self.device)
        full = torch.zeros(self.num_envs, state.shape[1], dtype=self.dtype, device=self.device)
        full[ids_t] = torch.as_tensor(state, dtype=self.dtype, device=self.device)
        wp = self._wp
        with self._scope():
            self._mjw.set_state(self.m, self.d, wp.from_torch(full), INTEGRATION_SPEC,
                                active=wp.from_torch(mask))
        self.forward(ids)

    # ------------------------------------------------------------------ parameters
    def write_params(self, ids: np.ndarray, values: dict[str, np.ndarray]) -> None:
        if not self._params_ok:
            raise NotImplementedError(
                "this mujoco_warp version cannot batch the model fields per world "
                f"({', '.join(_WRITTEN_FIELDS)}); per-env parameters need mujoco-warp >= 3.3")
        ids_t = torch.from_numpy(ids).to(self.device)
        mt = self._mt

        def rows(x):
            return torch.as_tensor(x, dtype=self.dtype, device=self.device)

        if "body_mass" in values:
            mass = rows(values["body_mass"])
            mt["body_mass"][ids_t] = mass
            mt["body_inertia"][ids_t] = rows(self.table.inertia(values["body_mass"]))
        if "geom_friction" in values:
            mt["geom_friction"][ids_t] = rows(values["geom_friction"])
        if "dof_damping" in values:
            mt["dof_damping"][ids_t] = rows(values["dof_damping"])
        if "geom_solref" in values:  # (N, ngeom, 2) view of the per-world wp.vec2 array
            mt["geom_solref"][ids_t] = rows(values["geom_solref"])
        if "actuator_gain" in values:
            gain = rows(values["actuator_gain"])
            mt["actuator_gainprm"][ids_t, :, 0] = gain
            bias = mt["actuator_biasprm"][ids_t]
            bias[:, self._pos_servo, 1] = -gain[:, self._pos_servo]
            bias[:, self._vel_servo, 2] = -gain[:, self._vel_servo]
            mt["actuator_biasprm"][ids_t] = bias
        if "body_mass" in values:
            with self._scope():
                self._mjw.set_const(self.m, self.d)
        self.forward(ids)

    # ------------------------------------------------------------------ rendering support
    def load_host(self, i: int, scratch: mujoco.MjData) -> mujoco.MjModel:
        """Copy world ``i``'s state into ``scratch`` (host ``MjData``) and return the nominal
        model (per-world parameters do not change what is drawn)."""
        scratch.qpos[:] = self.qpos[i].double().cpu().numpy()
        scratch.qvel[:] = self.qvel[i].double().cpu().numpy()
        if self.model.na:
            scratch.act[:] = self.act[i].double().cpu().numpy()
        scratch.time = float(self.time[i])
        return self.model

    def close(self) -> None:
        self.m = self.d = None
        self.fields = {}
