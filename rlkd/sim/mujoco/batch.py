""":class:`MujocoBatch`: ``num_envs`` copies of one MuJoCo model behind one batched torch interface,
on native MuJoCo (CPU threads) or MuJoCo Warp (GPU, or warp's CPU device for tests).

Env logic (rewards, observations, resets) is written once on the batched tensors this class
exposes; which backend steps the physics is a constructor argument (DESIGN.md section 3).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

import mujoco
import numpy as np
import torch

from rlkd.sim.mujoco.model import FIELDS, PARAM_NAMES, ParamTable, load_model, \
    with_contact_wrenches
from rlkd.sim.mujoco.render import FrameRenderer

BACKENDS = ("cpu", "warp")
CPU_IMPLS = ("auto", "batch", "threads")


def _has_mujoco_batch() -> bool:
    """``mujoco.batch`` exists (MuJoCo >= 4.0)."""
    return importlib.util.find_spec("mujoco.batch") is not None


class MujocoBatch:
    """``num_envs`` worlds of one MuJoCo model, stepped together.

    Args:
        model: an ``mujoco.MjModel``, a path to an ``.xml``/``.mjb`` file, or an MJCF string.
        num_envs: number of worlds ``N``.
        backend: ``"cpu"`` (native MuJoCo on a thread pool, float64) or ``"warp"`` (MuJoCo Warp,
            float32; needs ``pip install mujoco-warp warp-lang`` and a Newton or CG solver).
        device: torch device of every tensor. ``"cpu"`` for the CPU backend; ``"cpu"`` (warp's
            CPU device, slow, for tests) or ``"cuda[:i]"`` for warp.
        num_threads: CPU backend threads (default: the cores this process may use, at most N).
        nstep: physics steps per :meth:`step` (frame skip); the control is held over them.
        fields: derived fields to keep, a subset of ``("xpos", "xquat", "cvel", "sensordata",
            "cfrc_ext")`` (default all). Fewer fields, less copying; a field left out raises
            ``RuntimeError`` when read.
        cpu_impl: ``"auto"`` (``mujoco.batch`` where MuJoCo >= 4.0, else the thread pool),
            ``"batch"`` or ``"threads"`` (see :mod:`rlkd.sim.mujoco.cpu` for the measurements).
        nconmax, njmax: warp only: contact / constraint capacity per world (MuJoCo Warp's
            ``make_data`` defaults when ``None``).

    State (views, rewritten in place by every call; read-only by contract — change the state
    with :meth:`reset` / :meth:`set_state`; clone what you keep across steps). Shapes are
    ``(N, ...)``, dtype :attr:`dtype` (float64 on CPU, float32 on warp), SI units, world frame:

    ==============  =====================  =====================================================
    ``time``        ``(N,)``               simulation time, s
    ``qpos``        ``(N, nq)``            generalized positions (free joints: xyz + quat wxyz)
    ``qvel``        ``(N, nv)``            generalized velocities
    ``act``         ``(N, na)``            actuator activations
    ``ctrl``        ``(N, nu)``            controls applied by the last :meth:`step`
    ``xpos``        ``(N, nbody, 3)``      body frame origins, world frame, m
    ``xquat``       ``(N, nbody, 4)``      body orientations, world frame, quaternion wxyz
    ``cvel``        ``(N, nbody, 6)``      body velocities ``[angular, linear]`` about the
                                           subtree COM of the body's root, world axes
                                           (MuJoCo's ``cvel``)
    ``sensordata``  ``(N, nsensordata)``   sensor readings (:meth:`sensor` slices one sensor)
    ``cfrc_ext``    ``(N, nbody, 6)``      external (contact) wrench on each body
                                           ``[torque, force]``, COM-based (MuJoCo's
                                           ``cfrc_ext`` after ``mj_rnePostConstraint``)
    ``unstable``    ``(N,)`` bool          the world diverged in the last step (CPU: MuJoCo
                                           warned of bad qpos/qvel/qacc and reset it itself,
                                           or raised; warp: non-finite state). Reset such envs.
    ==============  =====================  =====================================================

    When fields are refreshed:

    * after :meth:`step`: the state, and ``xpos``, ``xquat``, ``cvel`` and position/velocity
      sensors *at the new state* (as after ``mj_forward``); ``cfrc_ext`` and acceleration-stage
      sensors (accelerometer, touch, force, torque, ...) are those of the *last physics substep*
      (the forces that acted during it: MuJoCo's own values after ``mj_step``, which is what
      gymnasium's MuJoCo envs read).
    * after :meth:`reset`, :meth:`set_state`, :meth:`forward` and parameter writes (for the envs
      concerned): everything at the current state (``mj_forward`` + ``mj_rnePostConstraint``).

    Per-env physical parameters, :attr:`params` (name -> tensor, dtype :attr:`dtype`):
    ``body_mass (N, nbody)``, ``geom_friction (N, ngeom, 3)``, ``actuator_gain (N, nu)``,
    ``dof_damping (N, nv)``, ``geom_solref (N, ngeom, 2)`` (contact time constant s, damping
    ratio); see :class:`~rlkd.sim.mujoco.model.ParamTable` for what each maps to (mass also
    scales inertia; servo gains keep their bias consistent). Write them in place
    with torch ops (``batch.params["body_mass"][ids, 1] *= 1.2``) or assign a new tensor of the
    same shape: changes are detected (torch's version counter, O(1) per step) and applied before
    the next :meth:`step` to the changed envs only, without rebuilding. Writes that bypass torch
    (through ``.numpy()``) need :meth:`apply_params` with ``force=True``.
    """

    def __init__(self, model: mujoco.MjModel | str | os.PathLike, num_envs: int,
                 backend: str = "cpu", device: str | torch.device = "cpu",
                 num_threads: int | None = None, nstep: int = 1, *,
                 fields: Sequence[str] = FIELDS, cpu_impl: str = "auto",
                 nconmax: int | None = None, njmax: int | None = None):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if not isinstance(nstep, int) or isinstance(nstep, bool) or nstep < 1:
            raise ValueError(f"nstep must be a positive int, got {nstep!r}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads must be None or a positive int, got {num_threads!r}")
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}; choose from {FIELDS}")
        if cpu_impl not in CPU_IMPLS:
            raise ValueError(f"unknown cpu_impl {cpu_impl!r}; choose one of {CPU_IMPLS}")
        device = torch.device(device)

        fields = frozenset(fields)
        # cfrc_ext is only filled when a sensor needs the acceleration stage (CPU backends).
        self.model = with_contact_wrenches(model) if "cfrc_ext" in fields else load_model(model)
        self.num_envs = num_envs
        self.nstep = nstep
        self.backend = backend
        self.table = ParamTable.from_model(self.model)
        if backend == "cpu":
            if device.type != "cpu":
                raise ValueError(f"backend='cpu' keeps its state in host memory: device must be "
                                 f"'cpu', got {str(device)!r} (use backend='warp' for CUDA)")
            if cpu_impl == "auto":
                cpu_impl = "batch" if _has_mujoco_batch() else "threads"
            if cpu_impl == "batch":
                from rlkd.sim.mujoco.cpu import CpuBackend as Impl
            else:
                from rlkd.sim.mujoco.pool import PoolBackend as Impl
            self._sim = Impl(self.model, num_envs, num_threads, nstep, fields, self.table)
        else:
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"device {str(device)!r} requested but CUDA is not available "
                                 f"(backend='warp' also runs on device='cpu', slowly)")
            from rlkd.sim.mujoco.warp import WarpBackend, check_solver

            check_solver(self.model)  # before importing warp: a clear error either way
            self._sim = WarpBackend(self.model, num_envs, device, nstep, fields, self.table,
                                    nconmax=nconmax, njmax=njmax)
        self.device = self._sim.device
        self.dtype = self._sim.dtype
        self._renderer: FrameRenderer | None = None

        # Per-env parameters: nominal values tiled, plus what the simulation currently has.
        self.params: dict[str, torch.Tensor] = {
            name: torch.as_tensor(np.repeat(self.table.nominal(name)[None], num_envs, axis=0),
                                  dtype=self.dtype, device=self.device)
            for name in PARAM_NAMES}
        self._applied = {k: v.clone() for k, v in self.params.items()}
        self._seen = {k: (id(v), v._version) for k, v in self.params.items()}
        self.reset()

    # ------------------------------------------------------------------ sizes and names
    @property
    def impl(self) -> str:
        """Which implementation steps the physics: ``"batch"``, ``"threads"`` or ``"warp"``."""
        return self._sim.impl

    @property
    def num_threads(self) -> int:
        return self._sim.num_threads

    nq = property(lambda self: self.model.nq)
    nv = property(lambda self: self.model.nv)
    nu = property(lambda self: self.model.nu)
    na = property(lambda self: self.model.na)
    nbody = property(lambda self: self.model.nbody)
    ngeom = property(lambda self: self.model.ngeom)
    nsensordata = property(lambda self: self.model.nsensordata)

    # ------------------------------------------------------------------ state views
    time = property(lambda self: self._sim.time, doc="(N,) simulation time, s")
    qpos = property(lambda self: self._sim.qpos, doc="(N, nq) generalized positions")
    qvel = property(lambda self: self._sim.qvel, doc="(N, nv) generalized velocities")
    act = property(lambda self: self._sim.act, doc="(N, na) actuator activations")
    ctrl = property(lambda self: self._sim.ctrl, doc="(N, nu) controls of the last step")
    unstable = property(lambda self: self._sim.unstable, doc="(N,) bool, diverged last step")

    def _field(self, name: str) -> torch.Tensor:
        try:
            return self._sim.fields[name]
        except KeyError:
            raise RuntimeError(f"field {name!r} is not kept by this batch (fields="
                               f"{tuple(sorted(self._sim.fields))}); construct it with "
                               f"fields including {name!r}") from None

    xpos = property(lambda self: self._field("xpos"), doc="(N, nbody, 3) body positions")
    xquat = property(lambda self: self._field("xquat"), doc="(N, nbody, 4) body quats, wxyz")
    cvel = property(lambda self: self._field("cvel"), doc="(N, nbody, 6) COM-based velocities")
    sensordata = property(lambda self: self._field("sensordata"), doc="(N, nsensordata)")
    cfrc_ext = property(lambda self: self._field("cfrc_ext"), doc="(N, nbody, 6) contact wrench")

    def sensor(self, name: str) -> torch.Tensor:
        """``(N, dim)`` view of one sensor's columns of :attr:`sensordata`."""
        sid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SENSOR, name)
        if sid < 0:
            names = [self.model.sensor(i).name for i in range(self.model.nsensor)]
            raise ValueError(f"unknown sensor {name!r}; the model has {names}")
        adr, dim = int(self.model.sensor_adr[sid]), int(self.model.sensor_dim[sid])
        return self.sensordata[:, adr:adr + dim]

    # ------------------------------------------------------------------ input checks
    def _ids(self, env_ids) -> np.ndarray:
        """Env ids as an int64 numpy array, in the given order; ``None`` = all; bool masks."""
        n = self.num_envs
        if env_ids is None:
            return np.arange(n)
        if isinstance(env_ids, torch.Tensor):
            env_ids = env_ids.detach().cpu().numpy()
        ids = np.asarray(env_ids)
        if ids.dtype == bool:
            if ids.shape != (n,):
                raise ValueError(f"a boolean env mask must have shape ({n},), got {ids.shape}")
            return np.flatnonzero(ids)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"env_ids must be integers or a boolean mask, got dtype {ids.dtype}")
        ids = ids.astype(np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"env_ids out of range [0, {n}): {ids[(ids < 0) | (ids >= n)][:10]}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("env_ids contain duplicates")
        return ids

    def _rows(self, name: str, x, m: int, width: int) -> torch.Tensor | None:
        """``x`` as an ``(m, width)`` tensor of the backend's dtype/device, or ValueError."""
        if x is None:
            return None
        t = torch.as_tensor(x)
        if t.ndim == 1 and m == 1:
            t = t.unsqueeze(0)
        if tuple(t.shape) != (m, width):
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected ({m}, {width}) "
                             f"(len(env_ids), {'nq' if name == 'qpos' else 'nv'})")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN/Inf")
        return t.to(device=self.device, dtype=self.dtype)

    def _check_ctrl(self, ctrl) -> torch.Tensor:
        expected = (self.num_envs, self.nu)
        if not isinstance(ctrl, torch.Tensor):
            raise ValueError(f"ctrl must be a torch.Tensor of shape {expected} (num_envs, nu), "
                             f"got {type(ctrl).__name__}")
        if tuple(ctrl.shape) != expected:
            raise ValueError(f"ctrl has shape {tuple(ctrl.shape)}, expected {expected} "
                             f"(num_envs, nu)")
        if not ctrl.is_floating_point():
            raise ValueError(f"ctrl must be a floating tensor, got dtype {ctrl.dtype}")
        if ctrl.dtype not in (torch.float32, torch.float64):  # half types: no numpy view
            ctrl = ctrl.to(self.dtype)
        if ctrl.device.type != self.device.type:
            raise ValueError(f"ctrl is on {ctrl.device}, the batch is on {self.device}")
        # One reduction on the hot path (numpy is cheaper than torch for small CPU arrays);
        # the per-env search only when it fails.
        ok = (np.isfinite(ctrl.detach().numpy()).all() if ctrl.device.type == "cpu"
              else bool(torch.isfinite(ctrl).all()))
        if not ok:
            bad = (~torch.isfinite(ctrl).all(dim=-1)).nonzero().squeeze(-1)
            raise ValueError(f"ctrl contains NaN/Inf for env ids {bad[:10].tolist()}"
                             f"{' ...' if bad.numel() > 10 else ''}")
        return ctrl

    # ------------------------------------------------------------------ simulation
    def step(self, ctrl: torch.Tensor) -> None:
        """Advance every world :attr:`nstep` physics steps holding ``ctrl``.

        Args:
            ctrl: ``(N, nu)`` floating tensor on :attr:`device` (MuJoCo clamps it to each
                actuator's ``ctrlrange`` where ``ctrllimited``).
        """
        ctrl = self._check_ctrl(ctrl)
        self.apply_params()
        self._sim.step(ctrl)

    def reset(self, env_ids=None, qpos=None, qvel=None) -> None:
        """Reset envs ``env_ids`` (all if ``None``; ids or a bool mask) to ``qpos``/``qvel``.

        Args:
            qpos: ``(M, nq)`` positions for the M envs, default the model's ``qpos0``.
            qvel: ``(M, nv)`` velocities, default zeros.

        Time, activations, controls, the solver warm start and applied forces of those envs
        are zeroed; their derived fields are recomputed (``mj_forward``). Other envs are not
        touched.
        """
        ids = self._ids(env_ids)
        qpos = self._rows("qpos", qpos, len(ids), self.nq)
        qvel = self._rows("qvel", qvel, len(ids), self.nv)
        if len(ids) == 0:
            return
        self.apply_params()
        # Backends take ascending ids (mujoco.batch requires them): reorder the rows with them.
        order = np.argsort(ids, kind="stable")
        perm = torch.from_numpy(order).to(self.device)
        self._sim.reset(ids[order], None if qpos is None else qpos[perm],
                        None if qvel is None else qvel[perm])

    def forward(self, env_ids=None) -> None:
        """Recompute every derived field of ``env_ids`` at the current state (``mj_forward``)."""
        ids = np.sort(self._ids(env_ids))
        if len(ids):
            self._sim.forward(ids)

    def get_state(self, env_ids=None) -> torch.Tensor:
        """``(M, nstate)`` full integration state (``mjSTATE_INTEGRATION``: time, qpos, qvel,
        act, warm start, ctrl, applied forces, mocap, ...), for bitwise-exact save/restore."""
        return self._sim.get_state(self._ids(env_ids))

    def set_state(self, state: torch.Tensor, env_ids=None) -> None:
        """Restore :meth:`get_state` rows into ``env_ids``; derived fields are recomputed."""
        ids = self._ids(env_ids)
        size = mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_INTEGRATION)
        st = torch.as_tensor(state)
        if tuple(st.shape) != (len(ids), size):
            raise ValueError(f"state has shape {tuple(st.shape)}, expected ({len(ids)}, {size})")
        if len(ids):
            order = np.argsort(ids, kind="stable")
            rows = st.detach().cpu().numpy().astype(np.float64)[order]
            self._sim.set_state(ids[order], rows)

    # ------------------------------------------------------------------ parameters
    def apply_params(self, force: bool = False) -> None:
        """Push changed rows of :attr:`params` into the simulation (called by :meth:`step` and
        :meth:`reset`). ``force``: compare every row even if no torch write was seen."""
        n = self.num_envs
        changed = {}
        for name in PARAM_NAMES:
            t = self.params.get(name)
            key = (id(t), getattr(t, "_version", None))
            if not force and key == self._seen[name]:
                continue
            shape = self._applied[name].shape
            if not isinstance(t, torch.Tensor) or t.shape != shape:
                raise ValueError(f"params[{name!r}] must be a tensor of shape {tuple(shape)}, "
                                 f"got {getattr(t, 'shape', type(t).__name__)}")
            t = t.to(device=self.device, dtype=self.dtype)
            rows = (t != self._applied[name]).reshape(n, -1).any(dim=1)
            changed[name] = (t, rows)
        if not changed:
            return
        mask = torch.zeros(n, dtype=torch.bool, device=self.device)
        for _, rows in changed.values():
            mask |= rows
        ids = mask.nonzero().squeeze(-1).cpu().numpy()
        if len(ids):
            values = {}
            for name, (t, _) in changed.items():
                values[name] = t[torch.from_numpy(ids).to(self.device)].cpu().numpy().astype(
                    np.float64)
                self.table.check(name, values[name], ids)
            self._sim.write_params(ids, values)
            for name, (t, _) in changed.items():
                self._applied[name].copy_(t)
        for name in changed:
            t = self.params[name]
            self._seen[name] = (id(t), t._version)

    # ------------------------------------------------------------------ rendering
    def render(self, env_ids=None, width: int = 320, height: int = 240,
               camera: str | int | mujoco.MjvCamera | None = None) -> np.ndarray:
        """``uint8 (M, height, width, 3)`` RGB frames of ``env_ids`` (default env 0).

        ``camera``: ``None`` (MuJoCo's free camera), a camera name or id, or an
        ``mujoco.MjvCamera``. Rendering is offscreen OpenGL on the host (EGL by default, see
        :mod:`rlkd.sim.mujoco.render`); a missing GL backend raises ``RuntimeError``.
        """
        ids = [0] if env_ids is None else self._ids(env_ids).tolist()
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise ValueError(f"width and height must be positive ints, got {width}x{height}")
        if self._renderer is None:
            self._renderer = FrameRenderer(self.model)
        return self._renderer.render(ids, self._sim.load_host, width, height, camera)

    def close(self) -> None:
        """Release threads, renderers and device memory."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._sim.close()

    def __enter__(self) -> MujocoBatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"MujocoBatch(num_envs={self.num_envs}, backend={self.backend!r}, "
                f"impl={self.impl!r}, device={self.device}, nstep={self.nstep})")
