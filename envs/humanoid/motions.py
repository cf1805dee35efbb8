"""Motion library of the humanoid: the clip format, BVH import and retargeting, batched
sampling, and procedural clips.

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

BVH (:func:`load_bvh`, :func:`retarget`)
----------------------------------------
BVH files are parsed with ``pybvh`` (PyPI, MIT, numpy only; any channel order per joint, root with
3 position + 3 rotation channels; non-root position channels are not supported by it). Parse
errors become :class:`MotionError` naming the file and the line (motion-section problems are
located by a second scan of the file, since the parser reports them without a line number).
:func:`retarget` maps a source skeleton onto ours with a :class:`RetargetMap` (:data:`CMU` for the
31-joint CMU BVH conversion):

1. source FK in our axes and metres (``RetargetMap.axes``, ``RetargetMap.scale``);
2. a per-body rest alignment ``Q`` between the two rest poses (frames built from the body's bone
   direction and the pelvis' left-right axis, so a splayed source leg maps onto our straight one);
3. each of our bodies takes the world orientation ``G_src(t) Q`` of its source joint, then (torso,
   head) the minimal extra rotation that points its bone exactly along the source bone; feet keep
   the source foot's pitch and heading with a level sole (:class:`BodyMap` ``align="level"``);
4. those world orientations are decomposed into our hinges parent-first
   (:meth:`Skeleton.joint_pos_from_body_rot`: exact Euler decomposition for 3 hinges, best bone
   alignment for knees and elbows, clamped to the joint ranges), then hinge speeds are capped
   (20 rad/s) so that source poses we cannot reach do not make the angles jump;
5. the root is placed so that our hip-joint midpoint follows the source's, scaled by the ratio of
   leg lengths (ours / source) in all three axes; the clip is then shifted vertically so that the
   soles touch the floor (a low percentile of the per-frame lowest sole point goes to z = 0).

:class:`RetargetReport` gives the mean/max keypoint distance between the scaled source skeleton and
ours (before the ground shift), which measures proportion differences plus retargeting loss, and
the mean bone-direction error, which measures the retargeting loss alone. For the CMU test clip
131_01: 5.0 cm mean keypoint distance (legs 1-2 cm, hands 8-15 cm: this subject's arms are
shorter than ours), 6.5 deg mean bone-direction error.

Sampling (:class:`MotionLibrary`)
---------------------------------
Clips live concatenated on one torch device. ``sample(clip_ids, times)`` interpolates linearly
between the two neighbouring frames (positions, angles, velocities) and slerps root rotations, then
runs FK for body positions and keypoints - all batched, no per-sample Python. Velocities are
central differences of the frames (one-sided at the ends). ``mode="clamp"`` holds the end frames;
``mode="wrap"`` loops the clip, and each completed loop carries the root on by the clip's net
planar displacement and heading change, so a looping walk keeps walking forward.

Procedural clips (:func:`procedural_clip`)
------------------------------------------
``walk``, ``turn``, ``jog_in_place``, ``squat``, ``wave``: periodic joint-angle patterns; the root
height comes from FK so the lowest sole point is on the floor, and the root moves so that the
stance foot does not slide (it pivots on its heel, centre or toe edge, whichever is lowest). They
are loop-closed (last pose = first pose), so the default library needs no data.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .skeleton import (
    Skeleton,
    quat_between,
    quat_conj,
    quat_from_axis_angle,
    quat_from_matrix,
    quat_mul,
    quat_normalize,
    quat_rotate,
    quat_slerp,
    quat_to_matrix,
    quat_to_rotvec,
    quat_yaw,
)


class MotionError(ValueError):
    """A motion file or clip is malformed; the message names the file and the field or line."""


# =============================================================================== clip + npz

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


def load_npz(path: str | Path, skeleton: Skeleton | None = None) -> MotionClip:
    """Read and validate one npz clip; with ``skeleton``, reorder columns to its DoF order."""
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
        clip.to_skeleton_order(skeleton, src)
    return clip


# =============================================================================== BVH

@dataclass
class BvhMotion:
    """A parsed BVH file (source skeleton, file units and axes).

    ``names`` / ``parents`` cover every node including end sites (``"EndSite<parent>"``);
    ``offsets (J, 3)`` in file units; ``local_rot (T, J, 3, 3)`` each node's rotation in its
    parent (identity for end sites); ``root_pos (T, 3)`` root translation in file units.
    """

    path: str
    fps: float
    names: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray
    local_rot: np.ndarray
    root_pos: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.root_pos.shape[0])

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise MotionError(f"{self.path}: joint '{name}' not in the BVH hierarchy") from None

    def fk(self, scale: float = 1.0, axes: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
        """World positions ``(T, J, 3)`` (file units x ``scale``) and rotations ``(T, J, 3, 3)``,
        expressed in the frame ``axes @ file_frame`` (``axes``: a proper rotation matrix)."""
        return _bvh_fk(self.parents, self.offsets, self.local_rot, self.root_pos, scale, axes)

    def rest_positions(self, scale: float = 1.0, axes: np.ndarray | None = None) -> np.ndarray:
        """Node positions ``(J, 3)`` of the rest pose (all rotations zero, root at the origin)."""
        J = len(self.names)
        return _bvh_fk(self.parents, self.offsets, np.tile(np.eye(3), (1, J, 1, 1)),
                       np.zeros((1, 3)), scale, axes)[0][0]


def _bvh_fk(parents, offsets, local_rot, root_pos, scale, axes):
    """BVH forward kinematics in the frame ``axes @ file_frame``, lengths x ``scale``."""
    a = np.eye(3) if axes is None else np.asarray(axes, dtype=np.float64)
    local = a @ local_rot @ a.T
    offsets = scale * offsets @ a.T
    T, J = local.shape[:2]
    rot = np.empty((T, J, 3, 3))
    pos = np.empty((T, J, 3))
    for j, p in enumerate(parents):
        if p < 0:  # the root's OFFSET is ignored, as in pybvh and most tools
            rot[:, j] = local[:, j]
            pos[:, j] = scale * root_pos @ a.T
        else:
            rot[:, j] = rot[:, p] @ local[:, j]
            pos[:, j] = pos[:, p] + rot[:, p] @ offsets[j]
    return pos, rot


def load_bvh(path: str | Path) -> BvhMotion:
    """Parse a BVH file with ``pybvh``. Malformed files raise :class:`MotionError` with the line."""
    path = Path(path)
    if not path.is_file():
        raise MotionError(f"{path}: no such file")
    import pybvh
    from pybvh.rotations import euler_to_rotmat

    try:
        with warnings.catch_warnings():  # its up-axis guess is irrelevant here
            warnings.simplefilter("ignore")
            b = pybvh.read_bvh_file(path, warn_on_world_up_disagreement=False)
    except Exception as e:  # pybvh raises ValueError, numpy's loadtxt ValueError/IndexError
        raise MotionError(_bvh_diagnose(path, e)) from None
    nodes = list(b.nodes)
    index = {id(n): i for i, n in enumerate(nodes)}
    parents = np.array([-1 if n.parent is None else index[id(n.parent)] for n in nodes])
    joint_nodes = [i for i, n in enumerate(nodes) if not n.is_end_site()]
    angles = np.asarray(b.joint_angles, dtype=np.float64)
    root_pos = np.asarray(b.root_pos, dtype=np.float64)
    if not (np.isfinite(angles).all() and np.isfinite(root_pos).all()):
        t = int(np.argwhere(~np.isfinite(np.concatenate(
            (root_pos, angles.reshape(len(angles), -1)), 1)))[0, 0])
        first, _ = _motion_section(path)
        raise MotionError(f"{path}: line {first + t}: non-finite value (NaN/Inf) in frame {t}")
    local = np.tile(np.eye(3), (b.frame_count, len(nodes), 1, 1))
    local[:, joint_nodes] = euler_to_rotmat(angles, b.euler_orders)
    return BvhMotion(path=str(path), fps=float(b.fps), names=tuple(n.name for n in nodes),
                     parents=parents, offsets=np.array([n.offset for n in nodes], dtype=np.float64),
                     local_rot=local, root_pos=root_pos)


def _motion_section(path: Path) -> tuple[int, list[str]]:
    """1-based line number of the first frame line, and the raw lines after ``Frame Time:``."""
    lines = path.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("Frame Time"):
            return i + 2, lines[i + 1:]
    return len(lines) + 1, []


def _bvh_diagnose(path: Path, err: Exception) -> str:
    """Turn a parser exception into ``"{path}: line N: problem"`` where the line can be found."""
    msg = str(err)
    if re.search(r"\bline \d+", msg):  # pybvh's hierarchy errors carry the line already
        return f"{path}: " + msg.replace(f" in file {path}", "")
    first, lines = _motion_section(path)
    text = path.read_text(errors="replace")
    frames = re.search(r"^\s*Frames:\s*(\S+)", text, re.M)
    if frames is None:
        return f"{path}: field 'Frames': missing ({msg})"
    try:
        declared = int(frames.group(1))
    except ValueError:
        return f"{path}: field 'Frames': not an integer ({frames.group(1)!r})"
    data = [(first + k, ln.split()) for k, ln in enumerate(lines) if ln.strip()]
    width = len(data[0][1]) if data else 0
    declared_width = re.search(r"hierarchy declares (\d+) channels", msg)
    if declared_width:
        width = int(declared_width.group(1))
    for line_no, tokens in data:
        for tok in tokens:
            try:
                float(tok)
            except ValueError:
                return f"{path}: line {line_no}: not a number: {tok!r}"
        if len(tokens) != width:
            return (f"{path}: line {line_no}: {len(tokens)} values, expected {width} "
                    f"(one per channel of the hierarchy)")
    if len(data) != declared:
        return f"{path}: field 'Frames': declares {declared} frames, the file has {len(data)}"
    return f"{path}: {msg}"


# =============================================================================== retargeting

@dataclass(frozen=True)
class BodyMap:
    """How one of our bodies follows the source skeleton.

    ``rot``: source joint whose world rotation drives the body (None: the body has no hinges or
    no counterpart); ``bone``: source nodes ``(a, b)`` along our bone; ``origin``: source node
    matched to our body origin in the FK check. ``align``: how orientations carry over -
    ``"bone"``: ``G_src(t) Q`` with ``Q`` mapping our rest bone onto the source's rest bone (a
    splayed source leg onto our straight one), twist fixed by the pelvis' lateral axis;
    ``"level"`` (feet): the source body's change since its rest pose, measured on the bone
    direction with a level lateral axis - both rest poses stand flat-footed although their
    ankle-to-toe lines differ, and mocap foot roll is poorly observed, so the sole stays level
    across the foot. ``correct``: every frame, turn our bone onto the source bone direction
    (needed where ``rot`` is not the bone's first node, e.g. a torso spanning several source
    spine joints; off for the pelvis, which is rigid with the source root).
    """

    body: str
    rot: str | None
    bone: tuple[str, str] | None
    origin: str
    align: str = "bone"
    correct: bool = True


@dataclass(frozen=True)
class RetargetMap:
    """Source-skeleton description for :func:`retarget`.

    ``scale``: file units -> metres; ``axes``: rotation taking file-axis vectors to ours
    (x forward, y left, z up); ``hips``: (right, left) source hip joints (root placement, lateral
    axis, leg length); ``knees``/``ankles``: (right, left) for the leg length; ``sites``: our
    end-effector site -> source node, for the FK check."""

    name: str
    scale: float
    axes: tuple[tuple[float, float, float], ...]
    bodies: tuple[BodyMap, ...]
    hips: tuple[str, str]
    knees: tuple[str, str]
    ankles: tuple[str, str]
    sites: tuple[tuple[str, str], ...] = ()


#: The CMU mocap BVH conversion (31 joints; units x 0.056444 -> m; Y up, Z forward, X left).
CMU = RetargetMap(
    name="cmu",
    scale=0.056444,
    axes=((0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),  # ours (x, y, z) = file (z, x, y)
    bodies=(
        BodyMap("pelvis", "Hips", ("Hips", "Chest"), "Hips", correct=False),
        BodyMap("torso", "Chest2", ("Chest", "Neck"), "Chest"),
        BodyMap("head", "Head", ("Neck", "EndSiteHead"), "Neck"),
        BodyMap("right_upper_arm", "RightShoulder", ("RightShoulder", "RightElbow"), "RightShoulder"),
        BodyMap("right_lower_arm", "RightElbow", ("RightElbow", "RightWrist"), "RightElbow"),
        BodyMap("right_hand", None, None, "RightWrist"),
        BodyMap("left_upper_arm", "LeftShoulder", ("LeftShoulder", "LeftElbow"), "LeftShoulder"),
        BodyMap("left_lower_arm", "LeftElbow", ("LeftElbow", "LeftWrist"), "LeftElbow"),
        BodyMap("left_hand", None, None, "LeftWrist"),
        BodyMap("right_thigh", "RightHip", ("RightHip", "RightKnee"), "RightHip"),
        BodyMap("right_shin", "RightKnee", ("RightKnee", "RightAnkle"), "RightKnee"),
        BodyMap("right_foot", "RightAnkle", ("RightAnkle", "RightToe"), "RightAnkle",
                align="level", correct=False),
        BodyMap("left_thigh", "LeftHip", ("LeftHip", "LeftKnee"), "LeftHip"),
        BodyMap("left_shin", "LeftKnee", ("LeftKnee", "LeftAnkle"), "LeftKnee"),
        BodyMap("left_foot", "LeftAnkle", ("LeftAnkle", "LeftToe"), "LeftAnkle",
                align="level", correct=False),
    ),
    hips=("RightHip", "LeftHip"),
    knees=("RightKnee", "LeftKnee"),
    ankles=("RightAnkle", "LeftAnkle"),
    sites=(("head", "EndSiteHead"), ("right_hand", "EndSiteRFingers"),
           ("left_hand", "EndSiteLFingers"), ("right_foot", "RightToe"),
           ("left_foot", "LeftToe")),
)


@dataclass
class RetargetReport:
    """Quality figures of one :func:`retarget` call (lengths in metres)."""

    scale: float
    """Leg-length ratio ours / source applied to the source translation."""
    ground_shift: float
    """Vertical shift applied so the soles touch the floor."""
    fk_error_mean: float
    """Mean keypoint distance, scaled source vs retargeted (before the ground shift)."""
    fk_error_max: float
    fk_error_per_keypoint: dict[str, float] = field(default_factory=dict)
    bone_angle_error_mean: float = 0.0
    """Mean angle (deg) between our bones and the source bones: retargeting loss without the
    proportion differences (joint limits, 1-DoF knees/elbows, level feet)."""
    clamped_fraction: float = 0.0
    """Fraction of hinge angles that hit a joint limit."""
    rate_limited_fraction: float = 0.0
    """Fraction of hinge angles changed by the joint speed cap."""


_UP = np.array([0.0, 0.0, 1.0])


def _rate_limit(q: torch.Tensor, max_step: float) -> tuple[torch.Tensor, float]:
    """Cap ``|q[t] - q[t-1]|`` at ``max_step`` (``q (T, ndof)``); returns the capped angles
    and the fraction of entries changed. Sequential in time, vectorized over DoFs."""
    out = q.clone()
    for t in range(1, len(q)):
        out[t] = out[t - 1] + (q[t] - out[t - 1]).clamp(-max_step, max_step)
    return out, float(((out - q).abs() > 1e-12).double().mean())


def _frame(primary: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    """Orthonormal frame ``(..., 3, 3)`` with columns (primary, lateral', primary x lateral')."""
    x = primary / np.linalg.norm(primary, axis=-1, keepdims=True)
    y = lateral - (lateral * x).sum(-1, keepdims=True) * x
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return np.stack((x, y, np.cross(x, y)), -1)


def retarget(src: BvhMotion, skeleton: Skeleton, mapping: RetargetMap = CMU,
             ground_percentile: float = 5.0, max_joint_speed: float | None = 20.0,
             name: str | None = None) -> tuple[MotionClip, RetargetReport]:
    """Retarget a parsed BVH motion onto ``skeleton`` (method in the module docstring).

    Args:
        src: the parsed BVH.
        skeleton: our skeleton.
        mapping: source skeleton description.
        ground_percentile: percentile of the per-frame lowest sole point put at z = 0.
        max_joint_speed: rad/s cap on hinge speed (None: off). Source poses our joints cannot
            reach (e.g. a shin twisted under the body) can make the clamped decomposition switch
            branch between frames; the cap turns such a jump into a ramp.
        name: clip name (default: the file stem).

    Returns the clip (same frame count and fps as the source) and a :class:`RetargetReport`.
    """
    dt = torch.float64
    axes = np.array(mapping.axes, dtype=np.float64)
    if not np.allclose(axes @ axes.T, np.eye(3)) or np.linalg.det(axes) < 0:
        raise MotionError(f"{src.path}: mapping '{mapping.name}': axes must be a rotation")
    idx = src.index
    for bm in mapping.bodies:
        for n in (bm.rot, bm.origin, *(bm.bone or ())):
            if n is not None:
                idx(n)
    pos, rot = src.fk(mapping.scale, axes)                         # (T, J, 3), (T, J, 3, 3)
    rest_src = src.rest_positions(mapping.scale, axes)
    zeros = torch.zeros(1, skeleton.num_dofs, dtype=dt)
    ident = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dt)
    rest_pos, rest_rot = skeleton.fk(torch.zeros(1, 3, dtype=dt), ident, zeros)
    rest_pos, rest_rot = rest_pos[0].numpy(), rest_rot[0]

    # Leg-length ratio: source legs measured on its rest pose (bone lengths do not change).
    def leg(p, hip, knee, ankle):
        return np.linalg.norm(p[knee] - p[hip]) + np.linalg.norm(p[ankle] - p[knee])

    src_leg = np.mean([leg(rest_src, idx(h), idx(k), idx(a))
                       for h, k, a in zip(mapping.hips, mapping.knees, mapping.ankles)])
    scale = skeleton.leg_length() / src_leg

    # Lateral axis (right hip -> left hip) of each rest pose fixes twist in the rest alignment.
    rh, lh = idx(mapping.hips[0]), idx(mapping.hips[1])
    src_lat = rest_src[lh] - rest_src[rh]
    our_lat = (rest_pos[skeleton.body_index("left_thigh")]
               - rest_pos[skeleton.body_index("right_thigh")])
    bone_local = torch.as_tensor(skeleton.bone_dir, dtype=dt)
    T = src.num_frames
    desired = ident.expand(T, skeleton.num_bodies, 4).clone()
    for bm in mapping.bodies:
        if bm.rot is None:
            continue
        b = skeleton.body_index(bm.body)
        a_, b_ = idx(bm.bone[0]), idx(bm.bone[1])
        our_bone = quat_rotate(rest_rot[b], bone_local[b]).numpy()
        src_rest_bone = rest_src[b_] - rest_src[a_]
        if bm.align == "bone":
            g = rot[:, idx(bm.rot)] @ (_frame(src_rest_bone, src_lat) @ _frame(our_bone, our_lat).T)
        elif bm.align == "level":
            # The source frame (bone, level lateral) now vs at rest. The level lateral takes its
            # sign from the source rotation (a foot pointed down and back must not flip over),
            # and the source rotation's lateral takes over where the bone nears vertical.
            bone_t = pos[:, b_] - pos[:, a_]
            turned = rot[:, idx(bm.rot)] @ src_lat
            level = np.cross(_UP, bone_t)
            level *= np.where((level * turned).sum(-1, keepdims=True) < 0, -1.0, 1.0)
            k = np.clip(np.linalg.norm(level, axis=-1, keepdims=True)
                        / np.linalg.norm(bone_t, axis=-1, keepdims=True) / 0.3, 0.0, 1.0)
            lat = (k * level / np.maximum(np.linalg.norm(level, axis=-1, keepdims=True), 1e-12)
                   + (1 - k) * turned / np.linalg.norm(turned, axis=-1, keepdims=True))
            g = _frame(bone_t, lat) @ _frame(src_rest_bone, np.cross(_UP, src_rest_bone)).T
        else:
            raise ValueError(f"BodyMap {bm.body!r}: align must be 'bone' or 'level'")
        w = quat_mul(quat_from_matrix(torch.as_tensor(g, dtype=dt)), rest_rot[b].expand(T, 4))
        if bm.correct:  # point the bone exactly along the source bone
            cur = quat_rotate(w, bone_local[b].expand(T, 3))
            w = quat_mul(quat_between(cur, torch.as_tensor(pos[:, b_] - pos[:, a_], dtype=dt)), w)
        desired[:, b] = w
    joint_pos = skeleton.joint_pos_from_body_rot(desired, clamp=True)
    limited = 0.0
    if max_joint_speed is not None:
        joint_pos, limited = _rate_limit(joint_pos, max_joint_speed / src.fps)
    root_rot = desired[:, 0]

    # Root: our hip midpoint on the scaled source hip midpoint.
    our_hip_mid = torch.as_tensor(0.5 * (skeleton.body_offset[skeleton.body_index("left_thigh")]
                                         + skeleton.body_offset[skeleton.body_index("right_thigh")]),
                                  dtype=dt)
    src_hip_mid = torch.as_tensor(0.5 * (pos[:, rh] + pos[:, lh]) * scale, dtype=dt)
    root_pos = src_hip_mid - quat_rotate(root_rot, our_hip_mid.expand(T, 3))

    # FK check against the scaled source, then put the soles on the floor.
    body_pos, body_rot = skeleton.fk(root_pos, root_rot, joint_pos)
    ours = skeleton.keypoints(body_pos, body_rot).numpy()
    pairs = [(skeleton.body_index(bm.body), idx(bm.origin), bm.body) for bm in mapping.bodies]
    pairs += [(skeleton.num_bodies + skeleton.site_names.index(s), idx(n), f"{s}_site")
              for s, n in mapping.sites]
    err = np.linalg.norm(ours[:, [p[0] for p in pairs]] - scale * pos[:, [p[1] for p in pairs]],
                         axis=-1)                                  # (T, K)
    bone_err = []
    for bm in mapping.bodies:
        if bm.bone is not None:
            b = skeleton.body_index(bm.body)
            ours_dir = quat_rotate(body_rot[:, b], bone_local[b].expand(T, 3)).numpy()
            src_dir = pos[:, idx(bm.bone[1])] - pos[:, idx(bm.bone[0])]
            cos = (ours_dir * src_dir).sum(-1) / np.linalg.norm(src_dir, axis=-1)
            bone_err.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    lowest = skeleton.sole_points(body_pos, body_rot)[..., 2].amin((-1, -2)).numpy()
    shift = -float(np.percentile(lowest, ground_percentile))
    root_pos = root_pos.numpy().copy()
    root_pos[:, 2] += shift
    lo, hi = skeleton.dof_range.T
    jp = joint_pos.numpy()
    clamped = float(np.mean((jp <= lo + 1e-9) | (jp >= hi - 1e-9)))
    clip = MotionClip(fps=src.fps, root_pos=root_pos, root_rot=root_rot.numpy(), joint_pos=jp,
                      name=name or Path(src.path).stem, joint_names=skeleton.dof_names)
    report = RetargetReport(scale=float(scale), ground_shift=shift,
                            fk_error_mean=float(err.mean()), fk_error_max=float(err.max()),
                            fk_error_per_keypoint={p[2]: float(e)
                                                   for p, e in zip(pairs, err.mean(0))},
                            bone_angle_error_mean=float(np.mean(bone_err)),
                            clamped_fraction=clamped, rate_limited_fraction=limited)
    return clip.validate(src.path, skeleton.num_dofs), report


def load_motion(path: str | Path, skeleton: Skeleton | None = None,
                mapping: RetargetMap = CMU) -> MotionClip:
    """Load a ``.npz`` clip, or a ``.bvh`` file retargeted with ``mapping``."""
    path = Path(path)
    skeleton = skeleton or Skeleton.from_mjcf()
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, skeleton)
    if suffix == ".bvh":
        return retarget(load_bvh(path), skeleton, mapping)[0]
    raise MotionError(f"{path}: unknown motion file type {suffix!r} (expected .npz or .bvh)")


# =============================================================================== library

@dataclass
class MotionState:
    """Reference state of a batch of samples (world frame; N = batch size).

    ``root_pos (N, 3)`` m, ``root_rot (N, 4)`` wxyz, ``root_lin_vel (N, 3)`` m/s,
    ``root_ang_vel (N, 3)`` rad/s (world axes), ``joint_pos``/``joint_vel (N, ndof)`` rad, rad/s,
    ``body_pos (N, nbody, 3)`` m, ``body_rot (N, nbody, 4)`` (``None`` when sampled with
    ``rotations=False``), ``keypoints (N, nkeypoint, 3)`` m.
    """

    root_pos: torch.Tensor
    root_rot: torch.Tensor
    root_lin_vel: torch.Tensor
    root_ang_vel: torch.Tensor
    joint_pos: torch.Tensor
    joint_vel: torch.Tensor
    body_pos: torch.Tensor
    body_rot: torch.Tensor
    keypoints: torch.Tensor


def clip_velocities(clip: MotionClip) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame ``root_lin_vel (T, 3)`` m/s, ``root_ang_vel (T, 3)`` rad/s (world axes) and
    ``joint_vel (T, ndof)`` rad/s: central differences, one-sided at the first/last frame."""
    dt = 1.0 / clip.fps
    lin = np.gradient(clip.root_pos, dt, axis=0)
    jv = np.gradient(clip.joint_pos, dt, axis=0)
    q = torch.as_tensor(clip.root_rot, dtype=torch.float64)
    nxt = torch.cat((q[1:], q[-1:]))
    prv = torch.cat((q[:1], q[:-1]))
    span = torch.full((len(q), 1), 2.0 * dt, dtype=torch.float64)
    span[0] = span[-1] = dt
    ang = (quat_to_rotvec(quat_mul(nxt, quat_conj(prv))) / span).numpy()
    return lin, ang, jv


def _yaw_quat(yaw: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(yaw)
    return torch.stack((torch.cos(0.5 * yaw), z, z, torch.sin(0.5 * yaw)), -1)


class MotionLibrary:
    """Reference clips on one device with batched sampling (see the module docstring).

    Args:
        clips: the clips (joint columns in the skeleton's order).
        skeleton: for FK; defaults to the shipped humanoid.
        device: torch device of all tensors.
        mode: ``"wrap"`` (loop, root carried on per loop) or ``"clamp"`` (hold the end frames).
        dtype: floating dtype of the stored frames and the samples.
        exact_fk: body poses by FK of each sample (slower) instead of blending per-frame poses.
    """

    def __init__(self, clips: Sequence[MotionClip], skeleton: Skeleton | None = None,
                 device: str | torch.device = "cpu", mode: str = "wrap",
                 dtype: torch.dtype = torch.float32, exact_fk: bool = False):
        if mode not in ("wrap", "clamp"):
            raise ValueError(f"mode must be 'wrap' or 'clamp', got {mode!r}")
        if not clips:
            raise ValueError("MotionLibrary needs at least one clip")
        self.skeleton = skeleton or Skeleton.from_mjcf()
        self.device, self.mode, self.dtype = torch.device(device), mode, dtype
        self.names = tuple(c.name for c in clips)
        cols = {k: [] for k in ("root_pos", "root_rot", "joint_pos", "lin", "ang", "jv")}
        for c in clips:
            c.validate(c.name, self.skeleton.num_dofs)
            if c.joint_names is not None and tuple(c.joint_names) != self.skeleton.dof_names:
                c.to_skeleton_order(self.skeleton, c.name)
            lin, ang, jv = clip_velocities(c)
            for k, v in zip(cols, (c.root_pos, c.root_rot, c.joint_pos, lin, ang, jv)):
                cols[k].append(v)

        def cat(key):
            return torch.as_tensor(np.concatenate(cols[key]), dtype=dtype, device=self.device)

        self._root_pos, self._root_rot = cat("root_pos"), cat("root_rot")
        self._joint_pos = cat("joint_pos")
        self._lin_vel, self._ang_vel, self._joint_vel = cat("lin"), cat("ang"), cat("jv")
        frames = np.array([c.num_frames for c in clips])
        self.num_frames = torch.as_tensor(frames, device=self.device)
        self.start = torch.as_tensor(np.concatenate(([0], np.cumsum(frames)[:-1])),
                                     device=self.device)
        self.fps = torch.as_tensor([c.fps for c in clips], dtype=dtype, device=self.device)
        self.duration = torch.as_tensor([c.duration for c in clips], dtype=dtype, device=self.device)
        # One loop's planar root transform (first -> last frame): heading change and the
        # translation b of  z -> e^{i dyaw} z + b  (complex ground-plane coordinates).
        first, last = self.start, self.start + self.num_frames - 1
        yaw0, yaw1 = quat_yaw(self._root_rot[first]), quat_yaw(self._root_rot[last])
        self._loop_yaw = torch.atan2(torch.sin(yaw1 - yaw0), torch.cos(yaw1 - yaw0))
        p0, p1 = self._root_pos[first, :2], self._root_pos[last, :2]
        rot = torch.polar(torch.ones_like(self._loop_yaw), self._loop_yaw)
        self._loop_b = torch.complex(p1[:, 0], p1[:, 1]) - rot * torch.complex(p0[:, 0], p0[:, 1])
        # Body poses of every frame in the pelvis frame, computed once: sampling then blends
        # them instead of running FK per sample (FK was most of an env step's own cost). Exact
        # at frames; between frames the blend differs from FK of the blended angles by 0.15 mm
        # on average, 6 mm at worst over the shipped clips and the CMU walk. ``exact_fk=True``
        # runs FK per sample instead.
        self.exact_fk = exact_fk
        body_pos, body_rot = self.skeleton.fk(self._root_pos, self._root_rot, self._joint_pos)
        inv = quat_conj(self._root_rot)[:, None]
        keypoints = self.skeleton.keypoints(body_pos, body_rot)
        self._keypoints_local = quat_rotate(inv, keypoints - self._root_pos[:, None])
        self._body_rot_local = quat_mul(inv.expand_as(body_rot), body_rot)
        # Everything that is blended linearly, packed per frame (F, D): a sample then costs two
        # row gathers and one lerp instead of a gather pair and a lerp per field.
        nd, nk = self._joint_pos.shape[1], self._keypoints_local.shape[1]
        self._table = torch.cat((self._root_pos, self._joint_pos, self._lin_vel, self._ang_vel,
                                 self._joint_vel, self._keypoints_local.reshape(-1, nk * 3)), -1)
        self._split = (3, nd, 3, 3, nd, nk * 3)

    @property
    def num_clips(self) -> int:
        return len(self.names)

    @classmethod
    def from_files(cls, paths: Sequence[str | Path], skeleton: Skeleton | None = None,
                   mapping: RetargetMap = CMU, **kwargs) -> "MotionLibrary":
        """Library of ``.npz`` / ``.bvh`` files (BVH retargeted with ``mapping``)."""
        skeleton = skeleton or Skeleton.from_mjcf()
        return cls([load_motion(p, skeleton, mapping) for p in paths], skeleton, **kwargs)

    @classmethod
    def procedural(cls, skeleton: Skeleton | None = None, kinds: Sequence[str] = None,
                   fps: float = 30.0, **kwargs) -> "MotionLibrary":
        """Library of procedural clips (default: all of :data:`PROCEDURAL`) - needs no data."""
        skeleton = skeleton or Skeleton.from_mjcf()
        clips = [procedural_clip(k, skeleton, fps=fps) for k in (kinds or PROCEDURAL)]
        return cls(clips, skeleton, **kwargs)

    # ------------------------------------------------------------------ sampling
    def sample_clip_ids(self, n: int, generator: torch.Generator | None = None,
                        weights: torch.Tensor | None = None) -> torch.Tensor:
        """``(n,)`` clip indices, uniform over clips or proportional to ``weights (C,)``."""
        w = torch.ones(self.num_clips) if weights is None else torch.as_tensor(weights).float().cpu()
        return torch.multinomial(w, n, replacement=True, generator=generator).to(self.device)

    def sample_times(self, clip_ids: torch.Tensor, generator: torch.Generator | None = None,
                     truncate: float = 0.0) -> torch.Tensor:
        """``(N,)`` times (s) uniform over each clip's ``[0, duration - truncate]`` (phase)."""
        u = torch.rand(clip_ids.shape, generator=generator, dtype=self.dtype).to(self.device)
        return u * (self.duration[clip_ids] - truncate).clamp_min(0.0)

    def sample(self, clip_ids: torch.Tensor, times: torch.Tensor,
               rotations: bool = True) -> MotionState:
        """Reference state at ``times (N,)`` seconds of clips ``clip_ids (N,)`` (long).

        ``rotations=False`` leaves ``body_rot`` as ``None`` (saves a slerp per body when only
        positions are needed, as in the tracking reward)."""
        clip_ids = torch.as_tensor(clip_ids, device=self.device, dtype=torch.long)
        times = torch.as_tensor(times, device=self.device, dtype=self.dtype)
        dur, fps = self.duration.index_select(0, clip_ids), self.fps.index_select(0, clip_ids)
        if self.mode == "wrap":
            loops = torch.floor(times / dur)
            local = times - loops * dur
        else:
            loops = torch.zeros_like(times)
            local = times.clamp(min=0.0).minimum(dur)
        # Frame pair and blend weight; the clamps absorb float round-off at the clip end.
        # (index_select rather than tensor[idx]: several times faster on CPU.)
        f = local * fps
        last = self.num_frames.index_select(0, clip_ids) - 1
        f0 = torch.floor(f).long().clamp(min=0).minimum(last)
        f1 = (f0 + 1).minimum(last)
        alpha = (f - f0.to(self.dtype)).clamp(0.0, 1.0)
        start = self.start.index_select(0, clip_ids)
        i0, i1 = start + f0, start + f1
        a = alpha.unsqueeze(-1)
        root_pos, joint_pos, lin, ang, jv, kp_local = torch.lerp(
            self._table.index_select(0, i0), self._table.index_select(0, i1), a
        ).split(self._split, -1)
        root_rot = quat_slerp(self._root_rot.index_select(0, i0),
                              self._root_rot.index_select(0, i1), alpha)
        if self.mode == "wrap":
            root_pos, root_rot, lin, ang = self._carry_loops(clip_ids, loops, root_pos, root_rot,
                                                             lin, ang)
        if self.exact_fk:
            body_pos, body_rot = self.skeleton.fk(root_pos, root_rot, joint_pos)
            keypoints = self.skeleton.keypoints(body_pos, body_rot)
        else:
            r = root_rot[:, None]
            # Row vectors times R^T: one batched matmul, 3-5x faster here than quat_rotate's
            # broadcast cross products.
            keypoints = root_pos[:, None] + torch.bmm(kp_local.reshape(len(a), -1, 3),
                                                      quat_to_matrix(root_rot).transpose(1, 2))
            body_pos, body_rot = keypoints[:, :self.skeleton.num_bodies], None
            if rotations:
                rot_local = quat_slerp(self._body_rot_local[i0], self._body_rot_local[i1], a)
                body_rot = quat_mul(r.expand_as(rot_local), rot_local)
        return MotionState(root_pos=root_pos, root_rot=root_rot, root_lin_vel=lin, root_ang_vel=ang,
                           joint_pos=joint_pos, joint_vel=jv, body_pos=body_pos, body_rot=body_rot,
                           keypoints=keypoints)

    def _carry_loops(self, clip_ids, loops, root_pos, root_rot, lin, ang):
        """Apply ``loops`` times the clip's loop transform (planar rotation + translation)."""
        theta = self._loop_yaw.index_select(0, clip_ids)
        b = self._loop_b.index_select(0, clip_ids)
        k_theta = loops * theta
        rk = torch.polar(torch.ones_like(k_theta), k_theta)
        r1 = torch.polar(torch.ones_like(theta), theta)
        # Sum of r1^i b for i < k: b (1 - r1^k) / (1 - r1), or k b without rotation.
        straight = theta.abs() < 1e-6
        denom = torch.where(straight, torch.ones_like(r1), 1 - r1)
        shift = torch.where(straight, loops.to(b.dtype) * b, b * (1 - rk) / denom)
        xy = rk * torch.complex(root_pos[:, 0], root_pos[:, 1]) + shift
        root_pos = torch.stack((xy.real, xy.imag, root_pos[:, 2]), -1)
        yaw_q = _yaw_quat(k_theta)
        root_rot = quat_mul(yaw_q, root_rot)
        return root_pos, root_rot, quat_rotate(yaw_q, lin), quat_rotate(yaw_q, ang)


# =============================================================================== procedural

#: Procedural clip kinds understood by :func:`procedural_clip`.
PROCEDURAL = ("walk", "turn", "jog_in_place", "squat", "wave")


def procedural_clip(kind: str, skeleton: Skeleton | None = None, fps: float = 30.0,
                    cycles: int = 2, speed: float | None = None) -> MotionClip:
    """A loop-closed procedural clip on our skeleton.

    Args:
        kind: one of :data:`PROCEDURAL`. ``walk``: 1 s gait cycle at ``speed`` (default 1.2 m/s)
            along +x. ``turn``: walking on a circle at ``speed`` (default 0.8 m/s), turning left
            at 0.5 rad/s. ``jog_in_place``: 0.7 s cycle, knees up, arms pumping. ``squat``: 3 s
            down and up, feet flat, arms forward. ``wave``: standing, right forearm waving at
            1.5 Hz.
        skeleton: target skeleton (DoF names of the shipped MJCF are used).
        fps: frame rate of the clip.
        cycles: number of periods in the clip.
        speed: walking speed for ``walk`` / ``turn`` (m/s); the stride amplitude is calibrated
            to reach it.

    The root height puts the lowest sole point on the floor every frame; the root moves so the
    stance foot stays put (for the gaits the stance leg follows the gait phase, otherwise it is
    the lower foot), so feet neither penetrate the floor nor slide.
    """
    skeleton = skeleton or Skeleton.from_mjcf()
    if kind not in PROCEDURAL:
        raise ValueError(f"unknown procedural clip {kind!r}; choose from {PROCEDURAL}")
    period = {"walk": 1.0, "turn": 1.0, "jog_in_place": 0.7, "squat": 3.0, "wave": 2 / 1.5}[kind]
    n = int(round(cycles * period * fps)) + 1
    t = np.arange(n) / fps
    phase = 2 * math.pi * t / period
    if kind in ("walk", "turn"):
        target = speed if speed is not None else (1.2 if kind == "walk" else 0.8)
        yaw_rate = 0.5 if kind == "turn" else 0.0
        # Stance foot speed ~ 2 L sin(amp) / (duty * period); refine since knees and heel-off
        # change it (speed is close to proportional to the amplitude).
        amp = math.asin(min(0.9, target * 0.6 * period / (2 * skeleton.leg_length())))
        for _ in range(4):
            clip = _gait_clip(skeleton, t, period, amp, yaw_rate, fps, kind)
            dist = np.linalg.norm(np.diff(clip.root_pos[:, :2], axis=0), axis=1).sum()
            amp *= target / max(dist / t[-1], 1e-6)
        return _gait_clip(skeleton, t, period, amp, yaw_rate, fps, kind)
    pose = _Pose(skeleton, n)
    yaw = np.zeros(n)
    pitch = np.zeros(n)
    if kind == "jog_in_place":
        for side, ph in (("left", phase), ("right", phase + math.pi)):
            lift = np.maximum(0.0, np.sin(ph)) ** 2
            pose[f"{side}_hip_y"] = -1.0 * lift
            pose[f"{side}_knee"] = 0.05 + 1.7 * lift
            pose[f"{side}_ankle_y"] = -(pose[f"{side}_hip_y"] + pose[f"{side}_knee"]) + 0.35 * lift
            sign = 1.0 if side == "left" else -1.0
            pose[f"{side}_shoulder_y"] = 0.55 * np.sin(ph)  # opposite arm swings with each leg
            pose[f"{side}_shoulder_x"] = sign * 0.1
            pose[f"{side}_elbow"] = 1.4
        pose["spine_y"] = 0.08
        pose["neck_y"] = -0.08
    elif kind == "squat":
        d = 0.5 * (1 - np.cos(phase))                  # depth 0 (standing) .. 1 (bottom)
        pitch = 0.35 * d                               # pelvis tilts forward
        thigh, shin = -1.2 * d, 0.5 * d                # world pitch of thigh / shin
        for side in ("left", "right"):
            pose[f"{side}_hip_y"] = thigh - pitch
            pose[f"{side}_knee"] = shin - thigh
            pose[f"{side}_ankle_y"] = -shin              # foot stays flat
            pose[f"{side}_shoulder_y"] = -1.3 * d        # arms forward for balance
            pose[f"{side}_elbow"] = 0.1
        pose["spine_y"] = 0.2 * d
        pose["neck_y"] = -(pitch + 0.2 * d) * 0.8
    elif kind == "wave":
        pose["right_shoulder_x"] = -1.75                 # upper arm out to the side, a bit up
        pose["right_shoulder_z"] = -1.4                  # elbow then bends in the frontal plane
        pose["right_elbow"] = 1.0 + 0.45 * np.sin(phase)
        pose["left_shoulder_x"] = 0.1
        pose["left_elbow"] = 0.2
        pose["spine_x"] = 0.04 * np.sin(phase)         # a little sway with the wave
        pose["neck_z"] = -0.2
    q, root_pos, root_rot = _place(skeleton, pose.q, yaw, pitch)
    return MotionClip(fps=fps, root_pos=root_pos, root_rot=root_rot, joint_pos=q,
                      name=kind, joint_names=skeleton.dof_names).validate(kind, skeleton.num_dofs)


class _Pose:
    """``(T, ndof)`` joint angle table addressed by DoF name."""

    def __init__(self, skeleton: Skeleton, n: int):
        self.skeleton, self.q = skeleton, np.zeros((n, skeleton.num_dofs))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.q[:, self.skeleton.dof_index(name)]

    def __setitem__(self, name: str, value) -> None:
        self.q[:, self.skeleton.dof_index(name)] = value


_PUSH = 0.35
"""Peak heel-rise (ankle plantarflexion, rad) of the procedural gait's push-off."""


def _swing_bend(sw: np.ndarray) -> np.ndarray:
    """Swing knee-flexion profile over swing phase ``sw`` in [0, 1]: 0 at both ends, peak 1
    a little before mid-swing (at ~0.45)."""
    def f(s):
        return np.sin(np.pi * s) * (1 + 0.3 * np.cos(np.pi * s))

    return f(sw) / f(np.linspace(0, 1, 1001)).max()


def _gait_clip(skeleton: Skeleton, t: np.ndarray, period: float, amp: float, yaw_rate: float,
               fps: float, kind: str, duty: float = 0.6) -> MotionClip:
    """Walking gait with thigh amplitude ``amp`` (rad) and stance fraction ``duty``.

    Per leg, gait phase u in [0, 1) from foot strike: in stance the thigh sweeps back at a
    constant rate (+amp -> -amp, so the body moves at a near-constant speed) with a small knee
    flexion wave; in swing a C1 cubic brings it forward while the knee bends (peak ~60 deg early
    in swing). Stance feet are flat; where that would pass the ankle's dorsiflexion limit the
    clip to the joint range lifts the heel (terminal stance). The right leg strikes at u = 0, the
    left half a cycle later."""
    n = len(t)
    pose = _Pose(skeleton, n)
    thighs = {}
    for side, offset in (("right", 0.0), ("left", 0.5)):
        u = (t / period + offset) % 1.0
        st = u < duty
        us, sw = u / duty, np.clip((u - duty) / (1 - duty), 0.0, 1.0)
        rate = -2 * amp / duty * (1 - duty)            # stance d(thigh)/d(sw), for C1 joins
        h00, h10 = 2 * sw**3 - 3 * sw**2 + 1, sw**3 - 2 * sw**2 + sw
        h01, h11 = -2 * sw**3 + 3 * sw**2, sw**3 - sw**2
        thigh = np.where(st, amp * (1 - 2 * us), -amp * h00 + rate * h10 + amp * h01 + rate * h11)
        bend = _swing_bend(sw)
        # Stance knee: a loading bump in the first half, nearly straight after (the stance leg
        # must stay longer than the swinging one while that one passes under the body).
        load = np.sin(np.pi * np.clip(2 * us, 0.0, 1.0))
        knee = np.where(st, 0.05 + 0.2 * load, 0.05 + 1.05 * bend)
        # Ankle: flat foot in stance, the heel rising over its last third (push-off); in swing
        # it blends from the toe-off angle to keeping the sole level (the
        # joint-range clip leaves the toes down while the knee is deeply bent early in swing).
        push = _PUSH * np.clip((us - 0.67) / 0.33, 0.0, 1.0) ** 2
        off = -amp - 0.05 + _PUSH                       # ankle at toe-off
        e = np.clip(sw / 0.3, 0.0, 1.0)
        e = e * e * (3 - 2 * e)
        pose[f"{side}_hip_y"] = -thigh
        pose[f"{side}_knee"] = knee
        pose[f"{side}_ankle_y"] = np.where(
            st, thigh - knee + push,
            (1 - e) * off + e * (thigh - knee))
        sign = 1.0 if side == "left" else -1.0
        pose[f"{side}_shoulder_y"] = 0.35 * thigh / amp   # arm forward while its leg is back
        pose[f"{side}_shoulder_x"] = sign * 0.08
        pose[f"{side}_elbow"] = 0.35 - 0.15 * thigh / amp
        thighs[side] = (thigh, u, st, sw)
    pelvis_yaw = -0.07 * (thighs["left"][0] - thighs["right"][0]) / (2 * amp)  # hip follows its leg
    pose["spine_z"] = -pelvis_yaw                     # shoulders stay square
    # A stance foot keeps the heading it struck with (pelvis yaw and turning happen at the hip);
    # in swing it turns to the heading of its next strike.
    heading = yaw_rate * t + pelvis_yaw
    for side, (_, u, st, sw) in thighs.items():
        strike = yaw_rate * (t - u * period)
        e = sw * sw * (3 - 2 * sw)
        pose[f"{side}_hip_z"] = np.where(st, strike, strike + e * yaw_rate * period) - heading
    pose["spine_y"] = 0.05
    pose["neck_y"] = -0.05
    # The root follows one stance foot at a time: each leg from the other's toe-off to its own
    # (u in [duty - 0.5, duty); exactly one leg is there at any time).
    u_right = (t / period) % 1.0
    stance = np.where((u_right >= duty - 0.5) & (u_right < duty), 0, 1)  # 0: right, 1: left
    q, root_pos, root_rot = _place(skeleton, pose.q, yaw_rate * t + pelvis_yaw, np.zeros(n), stance)
    return MotionClip(fps=fps, root_pos=root_pos, root_rot=root_rot, joint_pos=q, name=kind,
                      joint_names=skeleton.dof_names).validate(kind, skeleton.num_dofs)


def _place(skeleton: Skeleton, q: np.ndarray, yaw: np.ndarray, pitch: np.ndarray,
           stance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint angles clipped to their ranges, and the root trajectory for them and the root
    yaw/pitch ``(T,)``: ``(joint_pos (T, ndof), root_pos (T, 3), root_rot (T, 4))``.

    Height: the lowest sole corner touches z = 0. Planar position: frame to frame, the stance
    foot (``stance (T,)``: 0 right, 1 left; default: the lower sole centre) keeps its world x-y
    position from the earlier frame to the next."""
    dt = torch.float64
    q = np.clip(q, skeleton.dof_range[:, 0], skeleton.dof_range[:, 1])
    zq = torch.as_tensor(yaw, dtype=dt)
    yq = torch.as_tensor(pitch, dtype=dt)
    y_axis = torch.tensor([0.0, 1.0, 0.0], dtype=dt).expand(len(q), 3)
    root_rot = quat_mul(_yaw_quat(zq), quat_from_axis_angle(y_axis, yq))
    body_pos, body_rot = skeleton.fk(torch.zeros(len(q), 3, dtype=dt), root_rot,
                                     torch.as_tensor(q, dtype=dt))
    sole = skeleton.sole_points(body_pos, body_rot).numpy()       # (T, 2, 4, 3), root at origin
    # Candidate pivots on each sole's centre line: heel edge, centre, toe edge (T, 2, 3, 3).
    heel, toe = sole[:, :, :2].mean(2), sole[:, :, 2:].mean(2)
    pivots = np.stack((heel, 0.5 * (heel + toe), toe), 2)
    height = -sole[..., 2].min((1, 2))
    if stance is None:
        stance = pivots[:, :, 1, 2].argmin(1)                      # lower foot per frame
    # The pivot is the stance foot's lowest point (centre when flat within 1 mm: heel-off
    # turns about the toe edge), the same material point in both frames of a step.
    z = pivots[np.arange(len(q)), stance, :, 2]                    # (T, 3)
    pivot = np.where(z[:, 1] - z.min(1) < 1e-3, 1, z.argmin(1))
    xy = np.zeros((len(q), 2))
    for i in range(1, len(q)):  # sequential by nature (a running sum over stance switches)
        s, k = stance[i - 1], pivot[i - 1]
        xy[i] = xy[i - 1] + pivots[i - 1, s, k, :2] - pivots[i, s, k, :2]
    root_pos = np.concatenate((xy, height[:, None]), 1)
    return q, root_pos, quat_normalize(root_rot).numpy()


__all__ = [
    "BodyMap", "BvhMotion", "CMU", "MotionClip", "MotionError", "MotionLibrary", "MotionState",
    "PROCEDURAL", "RetargetMap", "RetargetReport", "clip_velocities", "load_bvh", "load_motion",
    "load_npz", "procedural_clip", "retarget", "save_npz",
]
