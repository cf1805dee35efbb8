"""Random Network Distillation (Burda et al. 2018) as an intrinsic reward for PPO.

DESIGN.md section 9.2; used for AGV path planning by Yin et al. 2024 (arXiv 2404.12594).

* a fixed, randomly initialised target ``f: s -> R^k`` and a trained predictor ``f_hat``;
* intrinsic reward of a transition ``(s, a, s')``: ``r_i = ||f_hat(s') - f(s')||^2`` (sum over
  the ``k`` features), high on states unlike those trained on, decaying as they repeat;
* the networks read ``s'`` normalized by its own running mean/std and clipped to [-5, 5];
* ``r_i`` is divided by a running std of the (non-episodic) discounted intrinsic return;
* PPO learns a second value head for the intrinsic return (``gamma_int``), its advantages are
  combined as ``A = c_e A_e + c_i A_i`` (``ext_coef = 2``, ``int_coef = 1``);
* the predictor is trained by MSE on a random ``update_proportion`` of each minibatch.

:class:`RND` is also the base of :class:`rlkd.agents.rdd.RDD`, which changes only the training
target (:meth:`RND.training_target`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from rlkd.nn import DiscountedReturnNormalizer, RunningMeanStd, init_orthogonal, mlp
from rlkd.nn.mlp import freeze
from rlkd.core.distributed import allreduce_grads_


@dataclass
class RNDConfig:
    """RND hyperparameters (defaults: Burda et al. 2018 unless marked (ours))."""

    obs_group: str = "critic"
    """Observation group the networks read (ours: the privileged group, which holds the robot's
    pose; falls back to ``policy`` when the env has no ``critic`` group)."""
    embed_dim: int = 64
    """Output size ``k`` of target and predictor (ours, for MLP inputs; Burda: 512 on images)."""
    target_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the fixed target (at least as deep as the predictor)."""
    predictor_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the trained predictor."""
    activation: str = "leaky_relu"
    """Hidden activation of both networks (Burda: leaky ReLU)."""
    learning_rate: float = 1e-4
    """Adam learning rate of the predictor (Burda: 1e-4)."""
    update_proportion: float = 0.25
    """Fraction of every minibatch the predictor trains on (Burda: 0.25 with many envs)."""
    obs_clip: float = 5.0
    """Clip of the normalized input."""
    gamma_int: float = 0.99
    """Discount of the intrinsic return."""
    gamma_ext: float | None = 0.999
    """Discount of the extrinsic return when this module is used (Burda: 0.999); ``None`` keeps
    PPO's ``gamma``."""
    ext_coef: float = 2.0
    """``c_e`` in ``A = c_e A_e + c_i A_i``."""
    int_coef: float = 1.0
    """``c_i`` at the start of training."""
    int_coef_schedule: str = "constant"
    """``constant``, ``linear`` (to ``int_coef_final`` over ``schedule_steps``) or ``step``
    (switch to ``int_coef_final`` after ``schedule_steps``)."""
    int_coef_final: float = 0.0
    """Final ``c_i`` of a decaying schedule."""
    schedule_steps: int = 1_000_000
    """Env steps of the schedule (summed over envs and ranks)."""
    episodic: bool = False
    """Reset the intrinsic return at episode ends (Burda: non-episodic)."""


class RND(nn.Module):
    """Intrinsic-reward module: target/predictor pair, input and reward normalizers, optimizer.

    Args:
        obs_dim: size of the observation group read (``cfg.obs_group``).
        num_envs: envs per rank (the reward normalizer keeps one return per env).
        cfg: :class:`RNDConfig` (or :class:`~rlkd.agents.rdd.RDDConfig`).
        seed: seeds the networks' initialisation and the sampling generator.
    """

    def __init__(self, obs_dim: int, num_envs: int, cfg: RNDConfig, device="cpu", seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.obs_group = cfg.obs_group
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 104729)
            self.target = freeze(init_orthogonal(
                mlp(obs_dim, cfg.target_hidden, cfg.embed_dim, cfg.activation)))
            self.predictor = init_orthogonal(
                mlp(obs_dim, cfg.predictor_hidden, cfg.embed_dim, cfg.activation))
        self.obs_norm = RunningMeanStd(obs_dim, clip=cfg.obs_clip)
        self.reward_norm = DiscountedReturnNormalizer(num_envs, cfg.gamma_int)
        self.to(device)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=cfg.learning_rate)
        self.gen = torch.Generator(device=device).manual_seed(seed + 15485863)
        self.env_steps = 0  # drives the int_coef schedule

    # ------------------------------------------------------------------ the method
    def training_target(self, x: torch.Tensor) -> torch.Tensor:
        """What the predictor regresses on normalized input ``x (B, D)``: RND's fixed ``f(x)``."""
        return self.target(x)

    @torch.no_grad()
    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw intrinsic reward ``||f_hat(x) - f(x)||^2``: ``(B, D)`` raw obs -> ``(B,)``."""
        z = self.obs_norm.normalize(x)
        return (self.predictor(z) - self.target(z)).pow(2).sum(-1)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Predictor MSE on a random ``update_proportion`` of raw obs ``x (B, D)``."""
        keep = torch.rand(x.shape[0], generator=self.gen, device=x.device) \
            < self.cfg.update_proportion
        # Select before the forward pass: the networks only see the trained fraction.
        z = self.obs_norm.normalize(x[keep])
        if z.shape[0] == 0:
            return self.predictor(z).sum()  # zero loss that still has a graph
        return (self.predictor(z) - self.training_target(z).detach()).pow(2).mean()

    # ------------------------------------------------------------------ PPO hooks
    @torch.no_grad()
    def rollout_rewards(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Fold the rollout's ``s'`` ``(T, N, D)`` into the input normalizer, then return raw
        rewards ``(T, N)``."""
        T, N = next_obs.shape[:2]
        flat = next_obs.reshape(T * N, -1)
        self.obs_norm.update(flat)
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.env_steps += T * N * world
        return self.reward(flat).view(T, N)

    @torch.no_grad()
    def normalize_rewards(self, raw: torch.Tensor) -> torch.Tensor:
        """``(T, N)`` raw rewards -> divided by the running std of the intrinsic return."""
        return self.reward_norm.scale(raw)

    def train_step(self, next_obs: torch.Tensor) -> float:
        """One predictor step on a PPO minibatch of ``s'`` ``(B, D)``; returns the loss."""
        loss = self.loss(next_obs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        allreduce_grads_(list(self.predictor.parameters()))
        self.optimizer.step()
        return loss.item()

    @property
    def int_coef(self) -> float:
        """``c_i`` under the configured schedule at the current env-step count (all ranks)."""
        c = self.cfg
        if c.int_coef_schedule == "constant":
            return c.int_coef
        frac = min(1.0, self.env_steps / max(1, c.schedule_steps))
        if c.int_coef_schedule == "linear":
            return c.int_coef + frac * (c.int_coef_final - c.int_coef)
        if c.int_coef_schedule == "step":
            return c.int_coef_final if frac >= 1.0 else c.int_coef
        raise ValueError(f"unknown int_coef_schedule {c.int_coef_schedule!r}: "
                         "constant, linear or step")

    # ------------------------------------------------------------------ state
    def full_state_dict(self) -> dict[str, Any]:
        return {"module": self.state_dict(), "optimizer": self.optimizer.state_dict(),
                "gen": self.gen.get_state(), "env_steps": self.env_steps}

    def load_full_state_dict(self, sd: dict[str, Any]) -> None:
        self.load_state_dict(sd["module"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.gen.set_state(sd["gen"])
        self.env_steps = int(sd["env_steps"])



def _register() -> None:
    from rlkd.agents.ppo import register_intrinsic_agent

    register_intrinsic_agent("ppo-rnd", RND, RNDConfig,
                             "PPO + Random Network Distillation intrinsic reward (Burda et al. 2018)")


_register()
