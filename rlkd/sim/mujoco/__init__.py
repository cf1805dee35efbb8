"""MuJoCo simulator backend: one batched torch interface over a MuJoCo model.

``MujocoBatch(model, num_envs, backend="cpu" | "warp", ...)`` steps ``num_envs`` worlds and exposes
their state, body poses, sensors and contact forces as ``(num_envs, ...)`` tensors, per-env
physical parameters as writable tensors, and offscreen rendering. Modules, one job each:

* :mod:`~rlkd.sim.mujoco.batch`: the :class:`MujocoBatch` front (checks, parameters, rendering).
* :mod:`~rlkd.sim.mujoco.cpu`: native MuJoCo through ``mujoco.batch`` (MuJoCo >= 4.0).
* :mod:`~rlkd.sim.mujoco.pool`: native MuJoCo, ``MjData`` per env on a thread pool (fallback).
* :mod:`~rlkd.sim.mujoco.warp`: MuJoCo Warp, state shared with torch via ``warp.to_torch``.
* :mod:`~rlkd.sim.mujoco.render`: ``mujoco.Renderer`` frames (``MUJOCO_GL=egl`` by default).
* :mod:`~rlkd.sim.mujoco.model`: model loading, the per-env parameter table, constants.
"""

from rlkd.sim.mujoco.render import default_gl_backend

# Before anything imports mujoco: its OpenGL backend is chosen at import time.
default_gl_backend()

from rlkd.sim.mujoco.batch import BACKENDS, MujocoBatch  # noqa: E402
from rlkd.sim.mujoco.model import FIELDS, PARAM_NAMES, load_model  # noqa: E402

__all__ = ["BACKENDS", "FIELDS", "PARAM_NAMES", "MujocoBatch", "load_model"]
