"""Checkpoints: atomic writes and loads that fail loudly on corrupt or foreign files.

Loading never runs code from the file: ``torch.load(weights_only=True)`` unpickles tensors,
containers and plain values only; a file that needs more (a crafted pickle, a foreign object) is
refused with :class:`CheckpointError`.

Format versions: 1 (the first release); 2 adds ``model`` (the policy's constructor arguments)
and ``obs_specs`` (shape and dtype per observation group) so a policy rebuilds without its env
or its agent, and moves the agent's config overrides into ``config["agent_cfg"]``. Both load.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from rlkd.core.atomic import atomic_write

FORMAT = "rlkd-checkpoint"
VERSION = 2


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt, or not an rlkd checkpoint."""


def save_checkpoint(path: str | Path, payload: dict[str, Any],
                    copies: tuple[str | Path, ...] = ()) -> Path:
    """Atomically save ``payload`` (tensors, state dicts, plain Python) with a format tag to
    ``path`` and to every path in ``copies`` (serialized once, each file written atomically)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buf)
    data = buf.getbuffer()
    for p in (path, *copies):
        atomic_write(p, lambda f: f.write(data))
    return Path(path)


def resolve_checkpoint(run_or_ckpt: str | Path) -> Path:
    """A checkpoint file, or a run directory's ``checkpoints/last.pt``."""
    path = Path(run_or_ckpt)
    return path / "checkpoints" / "last.pt" if path.is_dir() else path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`CheckpointError` naming the file when it is missing, unreadable (truncated or
    corrupt), not an rlkd checkpoint, from a newer format version, or lacks ``required`` keys.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused an object: never run it
        detail = next((ln.strip() for ln in str(e).splitlines()
                       if "GLOBAL" in ln or "Unsupported" in ln), "not plain data")
        raise CheckpointError(f"{path} holds objects other than tensors and plain data, which "
                              f"rlkd never unpickles (a file from elsewhere, or crafted): "
                              f"{detail}") from None
    except Exception as e:  # torch raises several types for truncated/corrupt zips and pickles
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read "
                              f"({type(e).__name__}: {e})") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an rlkd checkpoint (no '{FORMAT}' format tag)")
    if int(data.get("version", 0)) > VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {data['version']}, newer "
                              f"than this rlkd ({VERSION}); upgrade rlkd")
    missing = [k for k in required if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is incomplete")
    return data
