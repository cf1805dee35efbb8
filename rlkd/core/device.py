"""Canonical torch devices, so that comparing two devices compares where tensors live.

``torch.device("cpu:0") != torch.device("cpu")`` and ``torch.device("cuda") !=
torch.device("cuda:0")`` although each pair names the same place; tensors always report the
indexed CUDA form (``cuda:0``) and the unindexed CPU form (``cpu``). Every device the user gives
goes through :func:`normalize_device` once, so ``tensor.device == env.device`` checks hold.
"""

from __future__ import annotations

import torch


def normalize_device(device: str | torch.device) -> torch.device:
    """The device tensors created on ``device`` report: ``"cpu:0"`` -> ``cpu``, ``"cuda"`` ->
    ``cuda:<current device>``, ``"cuda:1"`` unchanged.

    Raises ``ValueError`` for a string torch does not parse and for CUDA without CUDA.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"invalid device {device!r}: {e}") from None
    if dev.type == "cpu":
        return torch.device("cpu")  # torch has one CPU device; its tensors say "cpu"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
        return torch.device("cuda", torch.cuda.current_device() if dev.index is None
                            else dev.index)
    return dev
