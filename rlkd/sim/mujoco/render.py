"""Offscreen frames of batch envs with ``mujoco.Renderer``.

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when ``mujoco`` is first imported.
:func:`default_gl_backend` (called by ``rlkd.sim.mujoco`` before it imports ``mujoco``) sets it to
``egl`` when the user has not chosen one: headless EGL works on this project's machines (Mesa
llvmpipe on CPU, ~10 frames/s at 320x240; the NVIDIA driver's EGL on GPU machines), while GLFW
needs a display and OSMesa is not usable as installed. If ``mujoco`` was imported first (so it
defaulted to GLFW), the user did not set ``MUJOCO_GL`` and there is no display, renderers are
created on EGL instead (GLFW cannot work there, and a failed first attempt cannot be retried:
MuJoCo aborts the process on a second ``mjr_makeContext`` after one failed for want of a GL
library). When no backend works, :class:`FrameRenderer` raises a ``RuntimeError`` that says
what to set.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import numpy as np


#: Whether the user chose MUJOCO_GL (then it is respected, never overridden or retried).
_USER_GL = "MUJOCO_GL" in os.environ


def default_gl_backend() -> None:
    """``MUJOCO_GL=egl`` unless the user set ``MUJOCO_GL`` or ``mujoco`` is already imported
    (then setting it would not matter; see :func:`_egl_renderer` for that case)."""
    if "MUJOCO_GL" not in os.environ and "mujoco" not in sys.modules:
        os.environ["MUJOCO_GL"] = "egl"


def _glfw_without_display(mujoco) -> bool:
    """mujoco chose GLFW by default (imported before :func:`default_gl_backend` could act, user
    did not choose) on a machine without a display, where GLFW cannot create a context."""
    if _USER_GL or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return False
    glmod = getattr(sys.modules.get(mujoco.Renderer.__module__), "gl_context", None)
    cls = getattr(glmod, "GLContext", None)
    return cls is not None and "glfw" in getattr(cls, "__module__", "")


def _egl_renderer(mujoco, model, width: int, height: int):
    """A ``mujoco.Renderer`` on an EGL context although ``mujoco`` picked another backend at
    import. ``Renderer.__init__`` builds its context from its module's ``gl_context.GLContext``;
    that name is pointed at EGL's class for this one construction only (the renderer keeps its
    context object), then restored."""
    from mujoco.egl import GLContext as EGLContext

    glmod = sys.modules[mujoco.Renderer.__module__].gl_context
    saved = glmod.GLContext
    glmod.GLContext = EGLContext
    try:
        return mujoco.Renderer(model, height=height, width=width)
    finally:
        glmod.GLContext = saved


class FrameRenderer:
    """Renders rows of a batch: one ``mujoco.Renderer`` per frame size, one scratch ``MjData``.

    The live simulation data are never touched: each env's state is copied into the scratch
    data (``load(i, scratch) -> model``), ``mj_forward`` recomputes its poses, then it is drawn.
    """

    def __init__(self, model):
        import mujoco

        self._mujoco = mujoco
        self.model = model
        self._scratch = mujoco.MjData(model)
        self._renderers: dict[tuple[int, int], object] = {}

    def _renderer(self, width: int, height: int):
        key = (width, height)
        if key not in self._renderers:
            mujoco = self._mujoco
            model = self.model
            gl = model.vis.global_
            if width > gl.offwidth or height > gl.offheight:
                # The offscreen framebuffer is sized from the model: enlarge it on a copy.
                import copy

                model = copy.copy(model)
                model.vis.global_.offwidth = max(width, gl.offwidth)
                model.vis.global_.offheight = max(height, gl.offheight)
            try:
                if _glfw_without_display(mujoco):
                    renderer = _egl_renderer(mujoco, model, width, height)
                else:
                    renderer = mujoco.Renderer(model, height=height, width=width)
                self._renderers[key] = renderer
            except Exception as e:  # GL errors come as ImportError, RuntimeError, FatalError
                raise RuntimeError(
                    f"no OpenGL backend for offscreen rendering (MUJOCO_GL="
                    f"{os.environ.get('MUJOCO_GL', '')!r}): {type(e).__name__}: {e}. Headless "
                    f"machines need MUJOCO_GL=egl (libEGL, e.g. Mesa) set before mujoco is "
                    f"first imported; import rlkd.sim.mujoco first or export it.") from e
        return self._renderers[key]

    def camera_arg(self, camera):
        """Validate ``camera``: ``None`` (free camera), a camera name or id, or an
        ``mujoco.MjvCamera``."""
        if camera is None or isinstance(camera, self._mujoco.MjvCamera):
            return -1 if camera is None else camera
        if isinstance(camera, str):
            cid = self._mujoco.mj_name2id(self.model, self._mujoco.mjtObj.mjOBJ_CAMERA, camera)
            if cid < 0:
                names = [self.model.camera(i).name for i in range(self.model.ncam)]
                raise ValueError(f"unknown camera {camera!r}; the model has {names}")
            return cid
        if isinstance(camera, (int, np.integer)) and -1 <= int(camera) < self.model.ncam:
            return int(camera)
        raise ValueError(f"camera must be None, a camera name, an id in [-1, {self.model.ncam}) "
                         f"or an mujoco.MjvCamera; got {camera!r}")

    def render(self, env_ids: list[int], load: Callable, width: int, height: int,
               camera=None) -> np.ndarray:
        """``uint8 (len(env_ids), height, width, 3)`` frames; ``load(i, scratch)`` copies env
        ``i``'s state into ``scratch`` and returns the model to compute its poses with."""
        cam = self.camera_arg(camera)
        renderer = self._renderer(width, height)
        out = np.empty((len(env_ids), height, width, 3), dtype=np.uint8)
        for k, i in enumerate(env_ids):
            model = load(i, self._scratch)
            self._mujoco.mj_forward(model, self._scratch)
            renderer.update_scene(self._scratch, camera=cam)
            out[k] = renderer.render()
        return out

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
