"""BVH import and retargeting onto our skeleton; :func:`load_motion` for either file type.

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
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rlkd.sim.rotations import quat_between, quat_from_matrix, quat_mul, quat_rotate

from ..skeleton import Skeleton
from .clip import JOINT_RANGE_TOLERANCE, MotionClip, MotionError, load_npz


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
                mapping: RetargetMap = CMU,
                joint_range_tolerance: float = JOINT_RANGE_TOLERANCE) -> MotionClip:
    """Load a ``.npz`` clip, or a ``.bvh`` file retargeted with ``mapping``; either is refused
    (:class:`MotionError`) if an angle leaves its joint's range by more than
    ``joint_range_tolerance`` rad (see :meth:`MotionClip.check_joint_ranges`)."""
    path = Path(path)
    skeleton = skeleton or Skeleton.from_mjcf()
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, skeleton, joint_range_tolerance)
    if suffix == ".bvh":
        clip = retarget(load_bvh(path), skeleton, mapping)[0]
        return clip.check_joint_ranges(skeleton, str(path), joint_range_tolerance)
    raise MotionError(f"{path}: unknown motion file type {suffix!r} (expected .npz or .bvh)")


__all__ = ["BodyMap", "BvhMotion", "CMU", "RetargetMap", "RetargetReport", "load_bvh",
           "load_motion", "retarget"]
