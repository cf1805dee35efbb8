"""The aggregated dataset of DAgger (Ross et al. 2011): every state the learner visited, with its
expert label, kept across iterations in a first-in-first-out ring of fixed capacity.

    data = AggregatedDataset(100_000, {"student": ((480,), torch.float32)}, label_dim=28)
    data.add({"student": obs (B, 480)}, labels (B, 28))     # oldest samples dropped when full
    for mb in data.minibatches(4096, epochs=2, generator=g):
        mb["obs"]["student"], mb["labels"]                   # (b, 480), (b, 28)

Observation groups keep their dtype (a uint8 image stays uint8, as in the rollout storage; both
are exact); labels are float32. :meth:`state_dict` holds the filled samples bit for bit (plus the
write position), so a resumed run trains on exactly the data an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from rlkd.storage.rollout import ObsSpecs


class AggregatedDataset:
    """FIFO ring of ``(observation groups, label)`` samples on one device.

    Args:
        capacity: most samples kept; once full, each new sample overwrites the oldest.
        obs_specs: ``{group: (per-sample shape, dtype)}`` of the groups kept (see
            :func:`rlkd.storage.obs_specs`).
        label_dim: label size ``A`` (float32).
        device: where the buffers live (allocated once, ``capacity`` rows).

    Attributes:
        obs: ``{group: (capacity, *shape)}``; ``labels``: ``(capacity, A)`` float32.
        size: samples held (``<= capacity``); ``ptr``: the next write row;
        total_added: samples ever added (``total_added - size`` were dropped).
    """

    def __init__(self, capacity: int, obs_specs: ObsSpecs, label_dim: int,
                 device: torch.device | str = "cpu"):
        if int(capacity) < 1:
            raise ValueError(f"dataset capacity must be >= 1 sample, got {capacity}")
        self.capacity, self.label_dim, self.device = int(capacity), int(label_dim), device
        self.obs: dict[str, torch.Tensor] = {}
        for g, (shape, dtype) in obs_specs.items():
            self.obs[g] = torch.zeros(self.capacity, *shape, dtype=dtype, device=device)
        self.labels = torch.zeros(self.capacity, self.label_dim, device=device)
        self.size = self.ptr = self.total_added = 0

    def nbytes(self) -> int:
        """Bytes the buffers hold (allocated, whatever :attr:`size`)."""
        return sum(t.numel() * t.element_size() for t in (*self.obs.values(), self.labels))

    @torch.no_grad()
    def add(self, obs: Mapping[str, torch.Tensor], labels: torch.Tensor) -> None:
        """Append ``B`` samples (``obs[g]`` ``(B, *shape)``, ``labels`` ``(B, A)``) in order;
        past capacity the oldest are overwritten (of a batch larger than the ring, its last
        ``capacity`` samples are kept)."""
        B = int(labels.shape[0])
        self.total_added += B
        if B > self.capacity:  # only the newest `capacity` samples can survive
            skip = B - self.capacity
            obs = {g: v[skip:] for g, v in obs.items()}
            labels, self.ptr, B = labels[skip:], (self.ptr + skip) % self.capacity, self.capacity
        rows = (self.ptr + torch.arange(B, device=self.labels.device)) % self.capacity
        for g, buf in self.obs.items():
            buf[rows] = obs[g].to(buf.dtype)
        self.labels[rows] = labels.to(torch.float32)
        self.ptr = (self.ptr + B) % self.capacity
        self.size = min(self.size + B, self.capacity)

    def order(self) -> torch.Tensor:
        """Row indices of the held samples, oldest first, ``(size,)``."""
        start = self.ptr if self.size == self.capacity else 0
        return (start + torch.arange(self.size, device=self.labels.device)) % self.capacity

    def minibatches(self, batch_size: int, epochs: int,
                    generator: torch.Generator) -> Iterator[dict[str, Any]]:
        """``epochs`` passes over the held samples, each a fresh permutation (from the CPU
        ``generator``: reproducible and resumable) cut into minibatches of ``batch_size`` (the
        last one smaller); yields ``{"obs": {group: (b, ...)}, "labels": (b, A)}``."""
        if self.size == 0:
            return
        for _ in range(epochs):
            perm = torch.randperm(self.size, generator=generator, device="cpu")
            for idx in perm.to(self.labels.device).split(int(batch_size)):
                yield {"obs": {g: v[idx] for g, v in self.obs.items()},
                       "labels": self.labels[idx]}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The held rows (all ``capacity`` once full, else the first ``size``), cloned, with
        ``ptr`` / ``size`` / ``total_added`` / ``capacity``: an exact copy of the ring."""
        n = self.size
        return {"obs": {g: v[:n].clone() for g, v in self.obs.items()},
                "labels": self.labels[:n].clone(), "ptr": self.ptr, "size": n,
                "total_added": self.total_added, "capacity": self.capacity}

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; a ring of another capacity, groups or shapes raises
        ``ValueError`` naming the difference."""
        if int(sd["capacity"]) != self.capacity:
            raise ValueError(f"dataset capacity {sd['capacity']} in the checkpoint, "
                             f"{self.capacity} configured")
        if set(sd["obs"]) != set(self.obs):
            raise ValueError(f"dataset groups {sorted(sd['obs'])} in the checkpoint, "
                             f"{sorted(self.obs)} configured")
        n = int(sd["size"])
        for g, buf in self.obs.items():
            src = sd["obs"][g]
            if tuple(src.shape[1:]) != tuple(buf.shape[1:]) or src.shape[0] != n:
                raise ValueError(f"dataset group {g!r} has shape {tuple(src.shape)} in the "
                                 f"checkpoint, ({n}, {tuple(buf.shape[1:])}) expected")
            buf[:n] = src.to(buf.device, buf.dtype)
        self.labels[:n] = sd["labels"].to(self.labels.device)
        self.size, self.ptr, self.total_added = n, int(sd["ptr"]), int(sd["total_added"])
