"""Counter-based per-env random streams.

Every env owns an independent stream keyed by ``(seed, stream_id)`` (the stream id is the env
index unless :meth:`BatchRNG.set_streams` maps several envs onto one stream); a draw for a subset of envs
advances only their counters. Streams are computed with integer hashing on tensors, so a batch of
draws is a handful of vectorised ops (no per-env generator objects, no Python loop) and the numbers
are identical on CPU and CUDA. This is what makes ``reset(seed=s)`` reproducible for the whole batch
regardless of which envs happen to reset at which step.
"""

from __future__ import annotations

import math

import torch

_MASK32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """'lowbias32' integer finaliser (C. Wellons) on int64 tensors holding 32-bit values."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    x = x ^ (x >> 16)
    return x


def uniform_at(key: torch.Tensor, ctr: torch.Tensor, n: int) -> torch.Tensor:
    """``(M, n)`` float32 in [0, 1): the draws of streams with keys ``key (M,)`` at counters
    ``ctr (M,)`` (int64), a pure function: :meth:`BatchRNG.uniform` without the counter
    update (the caller advances the counters by ``n``), so it also traces into a compiled
    graph."""
    offs = torch.arange(n, dtype=torch.int64, device=key.device)
    x = _hash32(key[:, None] ^ _hash32(ctr[:, None] + offs[None, :]))
    return (x >> 8).to(torch.float32) * (1.0 / (1 << 24))


def box_muller(u: torch.Tensor, n: int) -> torch.Tensor:
    """``(M, n)`` standard normals from ``u (M, 2 * ceil(n / 2))`` uniforms (Box-Muller)."""
    m = (n + 1) // 2
    u1 = u[:, :m].clamp_min(1.0 / (1 << 24))
    u2 = u[:, m:]
    r = torch.sqrt(-2.0 * torch.log(u1))
    z = torch.cat([r * torch.cos(2 * math.pi * u2), r * torch.sin(2 * math.pi * u2)], dim=1)
    return z[:, :n]


class BatchRNG:
    """Independent random streams, one per env.

    Args:
        num_envs: number of streams.
        seed: base seed (any Python int; folded to 32 bits).
        device: where the draws are produced.
    """

    def __init__(self, num_envs: int, seed: int, device: torch.device | str = "cpu"):
        self.num_envs = num_envs
        self.device = torch.device(device)
        #: ``(num_envs,)`` int64 stream of each env; env ``i`` uses stream ``i`` unless
        #: :meth:`set_streams` says otherwise.
        self.stream_ids = torch.arange(num_envs, dtype=torch.int64, device=self.device)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart every stream from ``seed``."""
        self.seed = int(seed)
        s = torch.tensor(self.seed & _MASK32, dtype=torch.int64, device=self.device)
        ids = self.stream_ids
        self._key = _hash32(_hash32(ids * 0x9E3779B9 + s) ^ _hash32(s + 0x632BE5AB))
        self._counter = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)

    def set_streams(self, stream_ids: torch.Tensor) -> None:
        """Give env ``i`` stream ``stream_ids[i]`` (restarting all streams at the current seed).

        Envs sharing a stream draw the same numbers: evaluators use this for common random
        numbers, e.g. the same initial states under every perturbation of a sim-to-real suite.
        """
        ids = torch.as_tensor(stream_ids, dtype=torch.int64, device=self.device).reshape(-1)
        if ids.numel() != self.num_envs:
            raise ValueError(f"set_streams needs {self.num_envs} stream ids, got {ids.numel()}")
        self.stream_ids = ids.clone()
        self.reseed(self.seed)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "counter": self._counter.clone(),
                "stream_ids": self.stream_ids.clone()}

    def load_state_dict(self, state: dict) -> None:
        if "stream_ids" in state:
            self.stream_ids = state["stream_ids"].to(self.device).clone()
        self.reseed(state["seed"])
        self._counter.copy_(state["counter"].to(self.device))

    def uniform(self, env_ids: torch.Tensor | None, n: int, low: float | torch.Tensor = 0.0,
                high: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Uniform draws in ``[low, high)``: ``(len(env_ids), n)`` float32 (all envs if ``None``)."""
        if env_ids is None:
            u = uniform_at(self._key, self._counter, n)
            self._counter += n
        else:
            u = uniform_at(self._key[env_ids], self._counter[env_ids], n)
            self._counter[env_ids] += n
        return low + (high - low) * u

    def normal(self, env_ids: torch.Tensor | None, n: int) -> torch.Tensor:
        """Standard normal draws ``(len(env_ids), n)`` float32 (Box-Muller)."""
        return box_muller(self.uniform(env_ids, 2 * ((n + 1) // 2)), n)

    def integers(self, env_ids: torch.Tensor | None, n: int, high: torch.Tensor | int) -> torch.Tensor:
        """Integers in ``[0, high)`` (``high`` scalar or per-row ``(len(env_ids),)``), int64."""
        u = self.uniform(env_ids, n)
        if isinstance(high, torch.Tensor):
            high = high.to(u.dtype).reshape(-1, 1)
        return torch.minimum((u * high).long(), torch.as_tensor(high, device=self.device).long() - 1)
