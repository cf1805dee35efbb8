"""Running normalizers: observation mean/std and the std of discounted returns.

Both keep float64 statistics as buffers (saved in ``state_dict``) and, when
``torch.distributed`` is initialised, all-reduce each update's sums so every rank holds the same
statistics (DESIGN.md section 8).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _allreduce_(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


class RunningMeanStd(nn.Module):
    """Running mean and variance of ``(B, *shape)`` batches (Chan et al. parallel update).

    Args:
        shape: feature shape, e.g. ``(obs_dim,)``; ``()`` for scalars.
        eps: added to the variance before the square root.
        clip: normalized values are clamped to ``[-clip, clip]`` (``None``: no clamp).

    ``normalize(x) = clamp((x - mean) / sqrt(var + eps), -clip, clip)``; ``update(x)`` folds a
    batch in. ``forward(x)`` updates while ``self.training`` and normalizes (call ``.eval()`` to
    freeze the statistics, as at evaluation time).
    """

    def __init__(self, shape: tuple[int, ...] | int, eps: float = 1e-8, clip: float | None = 5.0):
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.eps, self.clip = eps, clip
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold in a batch ``x`` of shape ``(..., *shape)`` (all leading dims are samples)."""
        x = x.detach().to(torch.float64).reshape(-1, *self.mean.shape)
        # One all-reduce of [n, sum, sum of squares] keeps ranks identical.
        n = torch.tensor([float(x.shape[0])], dtype=torch.float64, device=x.device)
        s = x.sum(0).reshape(-1)
        sq = (x * x).sum(0).reshape(-1)
        packed = _allreduce_(torch.cat([n, s, sq]))
        n_b = packed[0]
        if n_b <= 0:
            return
        k = s.numel()
        mean_b = (packed[1:1 + k] / n_b).reshape(self.mean.shape)
        var_b = (packed[1 + k:] / n_b).reshape(self.mean.shape) - mean_b ** 2
        var_b = var_b.clamp_min(0.0)
        total = self.count + n_b
        delta = mean_b - self.mean
        new_mean = self.mean + delta * (n_b / total)
        m2 = self.var * self.count + var_b * n_b + delta ** 2 * self.count * n_b / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        y = (x - self.mean.to(x.dtype)) / torch.sqrt(self.var.to(x.dtype) + self.eps)
        return y if self.clip is None else y.clamp(-self.clip, self.clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.update(x)
        return self.normalize(x)


class DiscountedReturnNormalizer(nn.Module):
    """Scales rewards by the running std of their discounted return (Burda et al. 2018).

    Per env it keeps ``R_t = gamma * R_{t-1} + r_t`` (never reset: intrinsic returns are
    non-episodic) and a :class:`RunningMeanStd` of ``R``; ``scale(r)`` divides a ``(T, N)``
    reward block by ``sqrt(var(R))`` after folding the block's returns in.
    """

    def __init__(self, num_envs: int, gamma: float, eps: float = 1e-8):
        super().__init__()
        self.gamma = gamma
        self.rms = RunningMeanStd((), eps=eps, clip=None)
        self.register_buffer("ret", torch.zeros(num_envs, dtype=torch.float64))

    @torch.no_grad()
    def scale(self, rewards: torch.Tensor) -> torch.Tensor:
        """``rewards (T, N)`` -> ``rewards / std(R)``, same shape and dtype."""
        rets = torch.empty(rewards.shape, dtype=torch.float64, device=rewards.device)
        ret = self.ret.to(rewards.device)
        for t in range(rewards.shape[0]):  # T steps (tens), batched over envs
            ret = self.gamma * ret + rewards[t].to(torch.float64)
            rets[t] = ret
        self.ret.copy_(ret)
        self.rms.update(rets)
        return rewards / torch.sqrt(self.rms.var + self.rms.eps).to(rewards.dtype)
