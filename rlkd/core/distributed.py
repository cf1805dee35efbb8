"""Data-parallel helpers over ``torch.distributed`` (DESIGN.md section 8).

Launch with ``torchrun --nproc_per_node K -m rlkd train ...``: every rank runs its own envs with
its own seed (``seed + rank``), gradients and normalizer statistics are all-reduced, rank 0 logs
and writes checkpoints. NCCL on CUDA devices, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``; ``local_rank`` picks the GPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> tuple[DistInfo, str]:
    """Join the process group torchrun set up (``WORLD_SIZE`` > 1), else run single-process.

    Returns ``(info, device)``; a ``cuda`` device becomes ``cuda:<local_rank>`` under torchrun.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local), device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_module_(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (identical start)."""
    if not is_distributed():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src)


def allreduce_grads_(params: list[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks with one flat all-reduce (params without grad are skipped)."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def allreduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (returns a new tensor; identity when single-process)."""
    if not is_distributed():
        return value
    out = value.detach().clone()
    if dist.get_backend() == "nccl" and not out.is_cuda:  # NCCL reduces CUDA tensors only
        out = out.cuda()
    dist.all_reduce(out)
    return (out / dist.get_world_size()).to(value.device)
