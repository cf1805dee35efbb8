"""Frames to video: tiling several envs, text overlays, mp4/gif writing (imageio)."""

from rlkd.render.frames import overlay_text, tile_frames
from rlkd.render.video import write_video

__all__ = ["overlay_text", "tile_frames", "write_video"]
