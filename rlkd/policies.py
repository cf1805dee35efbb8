"""Stand-in policies for ``rlkd play`` / ``rlkd bench`` until a checkpoint is given."""

from __future__ import annotations

from typing import Callable

import torch

Policy = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def make_policy(name: str, env, seed: int = 0) -> Policy:
    """``random`` (uniform in [-1, 1]), ``zero`` or ``scripted`` (the task's own controller)."""
    if name == "random":
        gen = torch.Generator(device=env.device).manual_seed(seed)
        return lambda obs: torch.rand(env.num_envs, env.act_dim, generator=gen,
                                      device=env.device) * 2 - 1
    if name == "zero":
        return lambda obs: torch.zeros(env.num_envs, env.act_dim, device=env.device)
    if name == "scripted":
        factory = getattr(env, "scripted_policy", None)
        if factory is None:
            raise ValueError(f"{env.spec_id} has no scripted policy; use random or zero")
        return factory()
    raise ValueError(f"unknown policy {name!r}: choose random, zero or scripted")
