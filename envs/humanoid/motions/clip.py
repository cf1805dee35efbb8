"""Reference-clip data: :class:`MotionClip`, its npz file format and :class:`MotionError`.

Clip format (``.npz``, :func:`save_npz` / :func:`load_npz`)
-----------------------------------------------------------
One clip per file, ``numpy.savez_compressed``, no pickled objects:

============  ===========  ===================================================================
field         shape        meaning
============  ===========  ===================================================================
fps           ()           frames per second (> 0)
root_pos      (T, 3)       pelvis position, metres, world frame (x forward, y left, z up,
                           floor at z = 0)
root_rot      (T, 4)       pelvis orientation, unit quaternion (w, x, y, z), world frame
joint_pos     (T, 28)      hinge angles, radians, in :attr:`Skeleton.dof_names` order
joint_names   (28,) str    optional: the DoF names of ``joint_pos``'s columns; on load the
                           columns are reordered to the skeleton's order (names must match)
name          () str       optional: clip name (defaults to the file stem)
============  ===========  ===================================================================

``T >= 2``; all values finite; quaternions of unit norm within 1e-3 (then renormalized). Arrays
are written as float32. Anything else raises :class:`MotionError` naming the file and the field.

Joint ranges: loading with a skeleton (and :class:`~.library.MotionLibrary`) also refuses a clip
whose angles leave a joint's range (the MJCF's ``range``, :attr:`Skeleton.dof_range`) by more
than :data:`JOINT_RANGE_TOLERANCE` rad (:meth:`MotionClip.check_joint_ranges`): PD targets are
clamped to the ranges, so such a reference cannot be tracked, and reference-state initialization
puts the body beyond its joint limits (the walk clip in degrees: every env ends or diverges at
every step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..skeleton import Skeleton


class MotionError(ValueError):
    """A motion file or clip is malformed; the message names the file and the field or line."""


#: Largest excess (rad) of a clip's joint angle beyond the joint's range accepted at load.
#: Measured excess of the clips we ship and test with: 0.0 for the five procedural clips (they
#: are built inside the ranges; jog_in_place stays 0.05 rad inside), 0.0 for the retargeted CMU
#: 131_01.bvh (retargeting clamps to the ranges), < 1e-6 for npz round trips of them (float32).
#: 0.5 rad leaves room for other retargeters' overshoot and refuses angles that are plainly
#: wrong (degrees for radians, a joint a full turn off: excess >= ~1 rad).
JOINT_RANGE_TOLERANCE = 0.5


@dataclass
class MotionClip:
    """One reference motion on our skeleton (numpy, float64; see the module docstring).

    ``root_pos (T, 3)`` m, ``root_rot (T, 4)`` wxyz, ``joint_pos (T, ndof)`` rad, ``fps`` Hz.
    """

    fps: float
    root_pos: np.ndarray
    root_rot: np.ndarray
    joint_pos: np.ndarray
    name: str = "clip"
    joint_names: tuple[str, ...] | None = None

    @property
    def num_frames(self) -> int:
        return int(self.root_pos.shape[0])

    @property
    def duration(self) -> float:
        """Time of the last frame, seconds (``(T - 1) / fps``)."""
        return (self.num_frames - 1) / self.fps

    def validate(self, source: str = "<clip>", num_dofs: int | None = None) -> "MotionClip":
        """Check shapes, finiteness and unit quaternions; renormalize quaternions in place.

        Raises :class:`MotionError` ``"{source}: field '{name}': {problem}"``."""
        def bad(name: str, problem: str) -> MotionError:
            return MotionError(f"{source}: field '{name}': {problem}")

        try:
            fps = float(self.fps)
        except (TypeError, ValueError):
            raise bad("fps", f"not a number ({self.fps!r})") from None
        if not math.isfinite(fps) or fps <= 0:
            raise bad("fps", f"must be a positive number, got {fps}")
        self.fps = fps
        arrays = {}
        for name, width in (("root_pos", 3), ("root_rot", 4), ("joint_pos", num_dofs)):
            a = getattr(self, name)
            try:
                a = np.asarray(a, dtype=np.float64)
            except (TypeError, ValueError):
                raise bad(name, "not a numeric array") from None
            if a.ndim != 2 or (width is not None and a.shape[1] != width):
                want = f"(T, {width if width is not None else 'ndof'})"
                raise bad(name, f"shape {a.shape}, expected {want}")
            if not np.isfinite(a).all():
                t = int(np.argwhere(~np.isfinite(a))[0, 0])
                raise bad(name, f"non-finite value (NaN/Inf) at frame {t}")
            arrays[name] = a
        lengths = {n: a.shape[0] for n, a in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise bad("joint_pos" if lengths["root_pos"] == lengths["root_rot"] else "root_rot",
                      f"frame counts differ: {lengths}")
        if lengths["root_pos"] < 2:
            raise bad("root_pos", f"needs at least 2 frames, got {lengths['root_pos']}")
        norm = np.linalg.norm(arrays["root_rot"], axis=1)
        if np.abs(norm - 1.0).max() > 1e-3:
            t = int(np.abs(norm - 1.0).argmax())
            raise bad("root_rot", f"quaternion at frame {t} has norm {norm[t]:.6f}, expected 1")
        arrays["root_rot"] /= norm[:, None]
        if self.joint_names is not None and len(self.joint_names) != arrays["joint_pos"].shape[1]:
            raise bad("joint_names", f"{len(self.joint_names)} names for "
                                     f"{arrays['joint_pos'].shape[1]} joint_pos columns")
        self.root_pos, self.root_rot, self.joint_pos = (
            arrays["root_pos"], arrays["root_rot"], arrays["joint_pos"])
        return self

    def check_joint_ranges(self, skeleton: Skeleton, source: str = "<clip>",
                           tolerance: float = JOINT_RANGE_TOLERANCE) -> "MotionClip":
        """Refuse joint angles more than ``tolerance`` rad outside ``skeleton.dof_range``.

        ``joint_pos`` must be validated and in the skeleton's column order; ``tolerance=inf``
        skips the check. Raises :class:`MotionError` naming ``source``, the worst joint, its
        frame and value, and how many frames break the range."""
        tolerance = float(tolerance)
        if math.isnan(tolerance) or tolerance < 0:
            raise ValueError(f"joint range tolerance must be a number >= 0 (rad), got {tolerance}")
        if math.isinf(tolerance):
            return self
        jp = np.asarray(self.joint_pos, dtype=np.float64)
        if jp.ndim != 2 or jp.shape[1] != skeleton.num_dofs:
            raise MotionError(f"{source}: field 'joint_pos': shape {jp.shape}, expected "
                              f"(T, {skeleton.num_dofs})")
        lo, hi = skeleton.dof_range[:, 0], skeleton.dof_range[:, 1]
        excess = np.maximum(lo - jp, jp - hi)                       # (T, ndof), > 0 outside
        if excess.max() <= tolerance:
            return self
        t, j = np.unravel_index(int(excess.argmax()), excess.shape)
        frames = int((excess > tolerance).any(axis=1).sum())
        raise MotionError(
            f"{source}: field 'joint_pos': joint '{skeleton.dof_names[j]}' is {jp[t, j]:.4f} rad "
            f"at frame {t}, {excess[t, j]:.4f} rad outside its range [{lo[j]:.4f}, {hi[j]:.4f}] "
            f"(tolerance {tolerance:g} rad; {frames} of {len(jp)} frames exceed it): the joints "
            f"cannot reach it; check the units (radians) and the joint order (joint_names)")

    def to_skeleton_order(self, skeleton: Skeleton, source: str = "<clip>") -> "MotionClip":
        """Reorder ``joint_pos`` columns to ``skeleton.dof_names`` using :attr:`joint_names`."""
        if self.joint_pos.shape[1] != skeleton.num_dofs:
            raise MotionError(f"{source}: field 'joint_pos': {self.joint_pos.shape[1]} columns, "
                              f"the skeleton has {skeleton.num_dofs} DoFs")
        if self.joint_names is None or tuple(self.joint_names) == skeleton.dof_names:
            self.joint_names = skeleton.dof_names
            return self
        names = list(self.joint_names)
        missing = [n for n in skeleton.dof_names if n not in names]
        unknown = [n for n in names if n not in skeleton.dof_names]
        if missing or unknown or len(set(names)) != len(names):
            raise MotionError(f"{source}: field 'joint_names': do not match the skeleton "
                              f"(missing {missing}, unknown {unknown})")
        self.joint_pos = self.joint_pos[:, [names.index(n) for n in skeleton.dof_names]]
        self.joint_names = skeleton.dof_names
        return self


def save_npz(clip: MotionClip, path: str | Path) -> Path:
    """Write ``clip`` in the npz clip format (float32 arrays). Returns the path written."""
    path = Path(path)
    clip.validate(str(path))
    fields = dict(fps=np.float64(clip.fps), root_pos=clip.root_pos.astype(np.float32),
                  root_rot=clip.root_rot.astype(np.float32),
                  joint_pos=clip.joint_pos.astype(np.float32), name=np.str_(clip.name))
    if clip.joint_names is not None:
        fields["joint_names"] = np.array(clip.joint_names, dtype=np.str_)
    with open(path, "wb") as f:  # an open file keeps numpy from appending ".npz"
        np.savez_compressed(f, **fields)
    return path


def load_npz(path: str | Path, skeleton: Skeleton | None = None,
             joint_range_tolerance: float = JOINT_RANGE_TOLERANCE) -> MotionClip:
    """Read and validate one npz clip; with ``skeleton``, reorder columns to its DoF order and
    refuse angles more than ``joint_range_tolerance`` rad outside its joint ranges."""
    path = Path(path)
    src = str(path)
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise MotionError(f"{src}: no such file") from None
    except Exception as e:  # not a zip / not npz
        raise MotionError(f"{src}: not a readable .npz archive ({e})") from None
    with data:
        keys = set(data.files)
        for req in ("fps", "root_pos", "root_rot", "joint_pos"):
            if req not in keys:
                raise MotionError(f"{src}: field '{req}': missing (fields present: {sorted(keys)})")
        try:
            fps = data["fps"]
            if np.ndim(fps) != 0:
                raise MotionError(f"{src}: field 'fps': expected a scalar, got shape {np.shape(fps)}")
            names = None
            if "joint_names" in keys:
                names = tuple(str(n) for n in np.asarray(data["joint_names"]).reshape(-1))
            name = str(data["name"]) if "name" in keys else path.stem
            clip = MotionClip(fps=fps.item(), root_pos=data["root_pos"], root_rot=data["root_rot"],
                              joint_pos=data["joint_pos"], name=name, joint_names=names)
        except ValueError as e:
            if isinstance(e, MotionError):
                raise
            raise MotionError(f"{src}: unreadable field ({e})") from None
    clip.validate(src, None if skeleton is None else skeleton.num_dofs)
    if skeleton is not None:
        clip.to_skeleton_order(skeleton, src).check_joint_ranges(skeleton, src,
                                                                 joint_range_tolerance)
    return clip


__all__ = ["JOINT_RANGE_TOLERANCE", "MotionClip", "MotionError", "load_npz", "save_npz"]
