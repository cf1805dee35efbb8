"""Rollout storage: ``T`` steps x ``N`` envs of on-policy data, preallocated on the device.

Each observation group keeps its own dtype and shape: a ``(C, H, W)`` uint8 image group is stored
as uint8 (4x less memory than float32) and converted to float only inside the model's encoder.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

#: ``group -> (per-env shape, dtype)`` of the observation groups a storage keeps.
ObsSpecs = Mapping[str, tuple[tuple[int, ...], torch.dtype]]


def obs_specs(spaces: Mapping, groups) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{group: (shape, torch dtype)}`` of ``groups`` from gymnasium Box ``spaces`` (uint8 boxes
    stay uint8, every other box is float32)."""
    import numpy as np

    out = {}
    for g in groups:
        space = spaces[g]
        dtype = torch.uint8 if np.dtype(space.dtype) == np.uint8 else torch.float32
        out[g] = (tuple(space.shape), dtype)
    return out


class RolloutStorage:
    """Fixed-size buffers filled step by step, then read as shuffled minibatches.

    Shapes (``T = num_steps``, ``N = num_envs``, ``H`` value heads: 1, or 2 with an intrinsic
    reward): ``obs[g]`` ``(T, N, *shape_g)`` in the group's dtype; ``actions``, ``mu``,
    ``sigma`` ``(T, N, A)``; ``log_prob`` ``(T, N)``; ``rewards`` ``(T, N, H)`` (extrinsic, then
    intrinsic); ``dones`` ``(T, N)`` (episode ended after this step: terminated or truncated);
    ``values``, ``returns``, ``advantages`` ``(T, N, H)``; ``intr_obs`` ``(T, N, *shape)`` the
    next-state input of the intrinsic module (its ``s'``, the final obs for envs that ended).

    Args:
        obs_specs: ``{group: (shape, dtype)}`` (see :func:`obs_specs`); a bare shape tuple
            means float32.
    """

    def __init__(self, num_steps: int, num_envs: int, obs_specs: ObsSpecs, act_dim: int,
                 num_heads: int, device: torch.device, intr_shape: tuple[int, ...] | None = None):
        T, N, H = num_steps, num_envs, num_heads
        z = lambda *s: torch.zeros(*s, dtype=torch.float32, device=device)  # noqa: E731
        self.num_steps, self.num_envs, self.num_heads = T, N, H
        self.obs: dict[str, torch.Tensor] = {}
        for g, spec in obs_specs.items():
            shape, dtype = (spec, torch.float32) if isinstance(spec[0], int) else spec
            self.obs[g] = torch.zeros(T, N, *shape, dtype=dtype, device=device)
        self.actions, self.mu, self.sigma = z(T, N, act_dim), z(T, N, act_dim), z(T, N, act_dim)
        self.log_prob = z(T, N)
        self.rewards, self.values = z(T, N, H), z(T, N, H)
        self.returns, self.advantages = z(T, N, H), z(T, N, H)
        self.dones = z(T, N)
        self.intr_obs = z(T, N, *intr_shape) if intr_shape is not None else None
        self.step = 0

    def nbytes(self) -> dict[str, int]:
        """Bytes held per observation group (and ``"other"`` for the rest)."""
        out = {g: t.numel() * t.element_size() for g, t in self.obs.items()}
        rest = [self.actions, self.mu, self.sigma, self.log_prob, self.rewards, self.values,
                self.returns, self.advantages, self.dones]
        if self.intr_obs is not None:
            rest.append(self.intr_obs)
        out["other"] = sum(t.numel() * t.element_size() for t in rest)
        return out

    def add(self, obs: Mapping[str, torch.Tensor], actions, log_prob, mu, sigma, values) -> None:
        """Store the agent's side of step ``self.step`` (rewards come in :meth:`add_env`)."""
        if self.step >= self.num_steps:
            raise RuntimeError("rollout storage is full; call clear() after the update")
        t = self.step
        for g, buf in self.obs.items():
            buf[t].copy_(obs[g])
        self.actions[t].copy_(actions)
        self.log_prob[t].copy_(log_prob)
        self.mu[t].copy_(mu)
        self.sigma[t].copy_(sigma)
        self.values[t].copy_(values)

    def add_env(self, rewards_ext: torch.Tensor, dones: torch.Tensor,
                intr_obs: torch.Tensor | None = None) -> None:
        """Store the env's side of step ``self.step`` and advance."""
        t = self.step
        self.rewards[t, :, 0].copy_(rewards_ext)
        self.dones[t].copy_(dones)
        if self.intr_obs is not None and intr_obs is not None:
            self.intr_obs[t].copy_(intr_obs)
        self.step += 1

    def clear(self) -> None:
        self.step = 0

    def minibatches(self, num_minibatches: int, num_epochs: int,
                    generator: torch.Generator) -> Iterator[dict]:
        """Yield ``num_epochs x num_minibatches`` dicts of flat ``(B, ...)`` samples; the
        observation groups are under ``"obs"`` (a dict, each group in its stored dtype).

        Each epoch is a fresh permutation of all ``T x N`` samples (from ``generator``, so a
        seeded run is reproducible and resumable).
        """
        n = self.num_steps * self.num_envs
        size = n // num_minibatches
        flat = {
            "actions": self.actions.flatten(0, 1), "log_prob": self.log_prob.flatten(0, 1),
            "mu": self.mu.flatten(0, 1), "sigma": self.sigma.flatten(0, 1),
            "values": self.values.flatten(0, 1), "returns": self.returns.flatten(0, 1),
            "advantages": self.advantages.flatten(0, 1),
        }
        if self.intr_obs is not None:
            flat["intr_obs"] = self.intr_obs.flatten(0, 1)
        flat_obs = {g: buf.flatten(0, 1) for g, buf in self.obs.items()}
        dev = self.actions.device
        for _ in range(num_epochs):
            perm = torch.randperm(n, generator=generator, device="cpu").to(dev)
            for i in range(num_minibatches):
                idx = perm[i * size:(i + 1) * size]
                mb = {k: v[idx] for k, v in flat.items()}
                mb["obs"] = {g: v[idx] for g, v in flat_obs.items()}
                yield mb
