"""Frames to video: tiling several envs, text overlays, policy rollouts, mp4/gif writing."""

from rlkd.render.frames import overlay_text, tile_frames
from rlkd.render.rollout import rollout_frames
from rlkd.render.video import write_video

__all__ = ["overlay_text", "rollout_frames", "tile_frames", "write_video"]
