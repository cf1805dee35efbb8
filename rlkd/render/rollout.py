"""Roll a policy out on an env and collect tiled, captioned frames (``rlkd play``, final videos)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from rlkd.render.frames import overlay_text


def rollout_frames(env, policy: Callable[[dict[str, torch.Tensor]], torch.Tensor], steps: int,
                   seed: int, caption: str = "", width: int | None = 320,
                   on_info: Callable[[dict[str, Any]], None] | None = None) -> list[np.ndarray]:
    """Reset ``env`` with ``seed`` and step it ``steps`` times with ``policy`` (no gradients).

    Args:
        env: any rlkd env.
        policy: ``obs -> (num_envs, act_dim)`` actions.
        steps: control steps.
        seed: reset seed.
        caption: text drawn on every frame, followed by the step number.
        width: pixel width of one env's frame; ``None`` renders nothing.
        on_info: called with each step's ``info`` (e.g. to collect episode statistics).

    Returns:
        ``uint8 (H, W, 3)`` frames of all envs tiled, one per step (empty if ``width`` is None).
    """
    obs, _ = env.reset(seed=seed)
    ids = list(range(env.num_envs))
    frames = []
    with torch.no_grad():
        for t in range(steps):
            obs, _, _, _, info = env.step(policy(obs))
            if on_info is not None:
                on_info(info)
            if width is not None:
                frame = env.render(env_ids=ids, width=width)
                frames.append(overlay_text(frame, f"{caption}  step {t + 1}",
                                           xy=(4, frame.shape[0] - 16)))
    return frames
