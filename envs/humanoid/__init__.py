"""Humanoid motion tracking (DESIGN.md section 4): the MJCF humanoid, its skeleton and torch
forward kinematics, the motion library (npz clips, BVH retargeting, procedural clips, batched
sampling) and tracking metrics."""

from .motions import (
    CMU,
    PROCEDURAL,
    MotionClip,
    MotionError,
    MotionLibrary,
    MotionState,
    load_bvh,
    load_motion,
    load_npz,
    procedural_clip,
    retarget,
    save_npz,
)
from .skeleton import ASSET_PATH, Skeleton

__all__ = ["ASSET_PATH", "CMU", "MotionClip", "MotionError", "MotionLibrary", "MotionState",
           "PROCEDURAL", "Skeleton", "load_bvh", "load_motion", "load_npz", "procedural_clip",
           "retarget", "save_npz"]
