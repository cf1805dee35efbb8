"""Checkpoints: atomic writes and loads that fail loudly on corrupt or foreign files.

Loading never runs code from the file: ``torch.load(weights_only=True)`` unpickles tensors,
containers and plain values only; a file that needs more (a crafted pickle, a foreign object) is
refused with :class:`CheckpointError`.

Format versions: 1 (the first release); 2 adds ``model`` (the policy's constructor arguments)
and ``obs_specs`` (shape and dtype per observation group) so a policy rebuilds without its env
or its agent, and moves the agent's config overrides into ``config["agent_cfg"]``; 3 adds a
checksum. All three load.

Layout. Versions 1-2 are one ``torch.save`` of ``{"format", "version", **payload}``. Version 3
nests: the payload dict is serialized with ``torch.save`` into bytes, and the file is
``torch.save({"format", "version": 3, "sha256": <hex digest of those bytes>, "payload":
<those bytes as a uint8 tensor>})``. The digest thus covers everything but itself, byte for
byte, with no canonical re-serialization to get wrong; both levels load with
``weights_only=True``. A flipped bit anywhere in the payload (torch's zip reader checks no CRC,
so such a file would otherwise load silently with wrong weights) is a ``checksum mismatch``.
Files of versions 1-2 (the shipped expert, old runs) have no checksum and load unverified.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import torch

from rlkd.core.atomic import atomic_write

FORMAT = "rlkd-checkpoint"
VERSION = 3
#: The first version whose files carry a ``sha256`` of their payload.
CHECKSUM_VERSION = 3


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt, or not an rlkd checkpoint."""


def save_checkpoint(path: str | Path, payload: dict[str, Any],
                    copies: tuple[str | Path, ...] = ()) -> Path:
    """Atomically save ``payload`` (tensors, state dicts, plain Python) with a format tag and
    its SHA-256 (layout: module docstring) to ``path`` and to every path in ``copies``
    (serialized once, each file written atomically)."""
    inner = io.BytesIO()
    torch.save(payload, inner)
    blob = bytearray(inner.getbuffer())  # writable, so torch.frombuffer shares it without a warning
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, "sha256": hashlib.sha256(blob).hexdigest(),
                "payload": torch.frombuffer(blob, dtype=torch.uint8)}, buf)
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
    data = _torch_load(path, path, map_location)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an rlkd checkpoint (no '{FORMAT}' format tag)")
    version = int(data.get("version", 0))
    if version > VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {data['version']}, newer "
                              f"than this rlkd ({VERSION}); upgrade rlkd")
    if version >= CHECKSUM_VERSION:
        blob, digest = data.get("payload"), data.get("sha256")
        if not isinstance(blob, torch.Tensor) or blob.dtype != torch.uint8 \
                or not isinstance(digest, str):
            raise CheckpointError(f"checkpoint {path} (format {version}) lacks its payload or "
                                  f"checksum; it is corrupt")
        raw = blob.cpu().numpy().tobytes()
        if hashlib.sha256(raw).hexdigest() != digest:
            raise CheckpointError(f"checkpoint {path}: checksum mismatch: the file was modified "
                                  f"or corrupted")
        payload = _torch_load(io.BytesIO(raw), path, map_location)
        if not isinstance(payload, dict):
            raise CheckpointError(f"checkpoint {path}: its payload is not a dict")
        data = {"format": FORMAT, "version": version, **payload}
    missing = [k for k in required if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is incomplete")
    return data


def _torch_load(source: Path | io.BytesIO, path: Path, map_location) -> Any:
    """``torch.load(source, weights_only=True)`` with its failures as :class:`CheckpointError`
    naming ``path``."""
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused an object: never run it
        detail = next((ln.strip() for ln in str(e).splitlines()
                       if "GLOBAL" in ln or "Unsupported" in ln), "not plain data")
        raise CheckpointError(f"{path} holds objects other than tensors and plain data, which "
                              f"rlkd never unpickles (a file from elsewhere, or crafted): "
                              f"{detail}") from None
    except Exception as e:  # torch raises several types for truncated/corrupt zips and pickles
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read "
                              f"({type(e).__name__}: {e})") from e
