"""Motion specs: the ``motion`` string of ``HumanoidMotion-v0`` -> a :class:`MotionLibrary`.

A spec lists clips, comma-separated: procedural kinds (``walk``, ``turn``, ``jog_in_place``,
``squat``, ``wave``), walks and turns at a given speed (``walk@1.0``, m/s; the clip is named as
written) and ``.npz`` / ``.bvh`` files.
"""

from __future__ import annotations

from pathlib import Path

from ..skeleton import Skeleton
from .bvh import load_motion
from .clip import JOINT_RANGE_TOLERANCE
from .library import MotionLibrary
from .procedural import PROCEDURAL, procedural_clip

#: Procedural kinds that take a speed (``walk@1.0``), and the speeds allowed, m/s.
SPEED_KINDS = ("walk", "turn")
SPEED_RANGE = (0.1, 3.0)


def load_library(spec: str, skeleton: Skeleton, device, mode: str,
                 joint_range_tolerance: float = JOINT_RANGE_TOLERANCE) -> MotionLibrary:
    """A :class:`MotionLibrary` from ``spec`` (see the module docstring) on ``device`` with
    ``mode`` ``"wrap"`` or ``"clamp"`` (a clip further than ``joint_range_tolerance`` rad outside
    a joint range is refused)."""
    clips = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, at, speed = item.partition("@")
        if at and kind in SPEED_KINDS:
            try:
                v = float(speed)
            except ValueError:
                v = float("nan")
            if not SPEED_RANGE[0] <= v <= SPEED_RANGE[1]:  # also refuses NaN
                raise ValueError(f"motion {item!r}: the speed after '@' must be a number of m/s "
                                 f"in [{SPEED_RANGE[0]:g}, {SPEED_RANGE[1]:g}], got {speed!r}")
            clip = procedural_clip(kind, skeleton, speed=v)
            clip.name = item
            clips.append(clip)
        elif at:
            raise ValueError(f"motion {item!r}: only walk and turn take a speed ('walk@1.0')")
        elif item in PROCEDURAL:
            clips.append(procedural_clip(item, skeleton))
        elif Path(item).suffix.lower() in (".npz", ".bvh"):
            clips.append(load_motion(item, skeleton, joint_range_tolerance=joint_range_tolerance))
        else:
            raise ValueError(f"motion {item!r} is neither a procedural kind {list(PROCEDURAL)} "
                             f"nor a .npz/.bvh file")
    if not clips:
        raise ValueError("motion is empty: name at least one clip")
    return MotionLibrary(clips, skeleton, device=device, mode=mode,
                         joint_range_tolerance=joint_range_tolerance)
