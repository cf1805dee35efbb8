"""Tactile manipulation (DESIGN.md section 4, after TacSL 2024): a parallel gripper with
compliant, taxel-covered pads inserting a round peg in a socket of sub-millimetre clearance, or
placing it upright on a floor marker.

* :mod:`~rlkd.envs.tactile.scene`: the generated MJCF scene (and the native-sensor oracle).
* :mod:`~rlkd.envs.tactile.sensor`: the batched torch tactile force field.
* :mod:`~rlkd.envs.tactile.image`: the batched torch tactile RGB image (three-light shading).
* :mod:`~rlkd.envs.tactile.env`: ``TactilePegInsertion-v0``.
* :mod:`~rlkd.envs.tactile.placement`: ``TactilePegPlacement-v0`` (stand the peg on a floor
  marker and let go; the same robot and sensing, a 7th action for the gripper).
"""

from .config import TactilePegConfig
from .image import TactileImager
from .scene import SceneSpec, scene_xml
from .sensor import MODES, TactileSensor, cylinder_sdf

__all__ = ["MODES", "SceneSpec", "TactileImager", "TactilePegConfig", "TactileSensor",
           "cylinder_sdf", "scene_xml"]
