"""Motion library of the humanoid, one job per module:

* :mod:`.clip` - :class:`MotionClip` (one reference motion on our skeleton), its ``.npz`` file
  format (:func:`save_npz` / :func:`load_npz`) and :class:`MotionError`;
* :mod:`.bvh` - BVH parsing (:func:`load_bvh`) and retargeting onto our skeleton
  (:func:`retarget`, :data:`CMU`), and :func:`load_motion` for either file type;
* :mod:`.procedural` - loop-closed procedural clips (:func:`procedural_clip`, :data:`PROCEDURAL`),
  so the default library needs no data;
* :mod:`.library` - :class:`MotionLibrary`: clips on one torch device, batched sampling of
  :class:`MotionState` (interpolated poses, velocities, keypoints);
* :mod:`.mix` - :func:`concatenate`: clips played one after the other with blended transitions;
* :mod:`.spec` - :func:`load_library`: a motion spec string (``"walk@1.0,turn@0.8:-0.5*2,
  walk+squat,clip.npz"``, ``"@general"``: a YAML motion set) -> a library with clip weights.

Every public name is re-exported here: ``from rlkd.envs.humanoid.motions import X`` works for all.
"""

from .bvh import (
    CMU,
    BodyMap,
    BvhMotion,
    RetargetMap,
    RetargetReport,
    load_bvh,
    load_motion,
    retarget,
)
from .clip import JOINT_RANGE_TOLERANCE, MotionClip, MotionError, load_npz, save_npz
from .library import MotionLibrary, MotionState, clip_velocities
from .mix import concatenate, resample
from .procedural import PROCEDURAL, procedural_clip
from .spec import load_library

__all__ = [
    "BodyMap", "BvhMotion", "CMU", "JOINT_RANGE_TOLERANCE", "MotionClip", "MotionError",
    "MotionLibrary", "MotionState",
    "PROCEDURAL", "RetargetMap", "RetargetReport", "clip_velocities", "concatenate", "load_bvh",
    "load_motion", "load_library", "load_npz", "procedural_clip", "resample", "retarget",
    "save_npz",
]
