"""Operations on ``uint8 (H, W, 3)`` frames."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def tile_frames(frames: Sequence[np.ndarray], cols: int | None = None, pad: int = 2,
                background: int = 32) -> np.ndarray:
    """Arrange same-sized ``(H, W, 3)`` frames on a grid (row-major) with ``pad`` pixel gutters."""
    if len(frames) == 0:
        raise ValueError("tile_frames needs at least one frame")
    h, w, ch = frames[0].shape
    if any(f.shape != (h, w, ch) for f in frames):
        raise ValueError(f"all frames must share one shape, got {sorted({f.shape for f in frames})}")
    n = len(frames)
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, ch), background,
                  dtype=np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        out[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = f
    return out


def overlay_text(frame: np.ndarray, text: str, xy: tuple[int, int] = (4, 4),
                 color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Return a copy of ``frame`` with ``text`` drawn at pixel ``xy`` (top-left) on a dark box."""
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    box = draw.multiline_textbbox(xy, text)
    draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
    draw.multiline_text(xy, text, fill=color)
    return np.asarray(img)
