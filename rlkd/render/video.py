"""Write frame sequences to mp4 (ffmpeg via imageio) or gif, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from rlkd.core.atomic import atomic_path


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int = 10) -> Path:
    """Write ``uint8 (H, W, 3)`` frames to ``path`` (``.mp4`` or ``.gif``).

    The file is written next to its destination and renamed into place, so an interrupted run
    never leaves a truncated video under the final name. Frame sizes are padded to even numbers
    for H.264.
    """
    import imageio.v2 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"video path must end in .mp4 or .gif, got {path.name!r}")
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError("write_video got no frames")
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"frame {i} must be uint8 (H, W, 3), got {f.dtype} {f.shape}")
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix == ".mp4":
            h, w = frames[0].shape[:2]
            ph, pw = h + h % 2, w + w % 2
            if (ph, pw) != (h, w):
                frames = [np.pad(f, ((0, ph - h), (0, pw - w), (0, 0))) for f in frames]
            with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264",
                                    macro_block_size=1, quality=7) as w_:
                for f in frames:
                    w_.append_data(f)
        else:
            imageio.mimsave(tmp, frames, format="GIF", duration=1000.0 / fps, loop=0)
    return path
