"""Rollout storage: ``T`` steps x ``N`` envs of on-policy data, preallocated on the device."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class RolloutStorage:
    """Fixed-size buffers filled step by step, then read as shuffled minibatches.

    Shapes (``T = num_steps``, ``N = num_envs``, ``H`` value heads: 1, or 2 with an intrinsic
    reward): ``obs[g]`` ``(T, N, *shape_g)``; ``actions``, ``mu``, ``sigma`` ``(T, N, A)``;
    ``log_prob`` ``(T, N)``; ``rewards`` ``(T, N, H)`` (extrinsic, then intrinsic);
    ``dones`` ``(T, N)`` (episode ended after this step: terminated or truncated);
    ``values``, ``returns``, ``advantages`` ``(T, N, H)``; ``intr_obs`` ``(T, N, *shape)`` the
    next-state input of the intrinsic module (its ``s'``, the final obs for envs that ended).
    """

    def __init__(self, num_steps: int, num_envs: int, obs_shapes: dict[str, tuple[int, ...]],
                 act_dim: int, num_heads: int, device: torch.device,
                 intr_shape: tuple[int, ...] | None = None):
        T, N, H = num_steps, num_envs, num_heads
        z = lambda *s: torch.zeros(*s, dtype=torch.float32, device=device)  # noqa: E731
        self.num_steps, self.num_envs, self.num_heads = T, N, H
        self.obs = {g: z(T, N, *s) for g, s in obs_shapes.items()}
        self.actions, self.mu, self.sigma = z(T, N, act_dim), z(T, N, act_dim), z(T, N, act_dim)
        self.log_prob = z(T, N)
        self.rewards, self.values = z(T, N, H), z(T, N, H)
        self.returns, self.advantages = z(T, N, H), z(T, N, H)
        self.dones = z(T, N)
        self.intr_obs = z(T, N, *intr_shape) if intr_shape is not None else None
        self.step = 0

    def add(self, obs: dict[str, torch.Tensor], actions, log_prob, mu, sigma, values) -> None:
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
                    generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """Yield ``num_epochs x num_minibatches`` dicts of flat ``(B, ...)`` samples.

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
        for g, buf in self.obs.items():
            flat["obs/" + g] = buf.flatten(0, 1)
        if self.intr_obs is not None:
            flat["intr_obs"] = self.intr_obs.flatten(0, 1)
        dev = self.actions.device
        for _ in range(num_epochs):
            perm = torch.randperm(n, generator=generator, device="cpu").to(dev)
            for i in range(num_minibatches):
                idx = perm[i * size:(i + 1) * size]
                yield {k: v[idx] for k, v in flat.items()}
