"""Actor-critic models over lists of observation groups (rsl_rl's "models read obs groups").

    model = ActorCritic(group_specs(env.observation_spaces), actor_groups=["proprio", "tactile"],
                        critic_groups=["critic"], act_dim=env.act_dim)
    mu, sigma = model.dist_params(obs)          # obs: the env's observation dict
    value = model.value(obs)                    # (B, num_heads)

The actor is :class:`~rlkd.nn.encoders.ObservationEncoder` (one encoder per group: normalizer
[+ MLP] for flat groups, a small CNN for uint8 images) -> MLP trunk -> Gaussian mean, with a
state-independent ``log_std``; the critic is its own encoder -> MLP trunk -> ``num_heads``
values. Everything is built from plain arguments (:meth:`ActorCritic.spec` returns them), so a
checkpoint can rebuild the actor without the agent's config or the env.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rlkd.nn.encoders import GroupSpecs, ObservationEncoder
from rlkd.nn.mlp import init_orthogonal, mlp

#: State-dict prefixes of the actor side (what an exported policy file keeps).
ACTOR_PREFIXES = ("actor.", "actor_encoder.", "log_std")


def upgrade_state_dict(sd: Mapping[str, torch.Tensor], actor_groups: Sequence[str],
                       critic_groups: Sequence[str] | None) -> dict[str, torch.Tensor]:
    """Map the names of checkpoint format v1 (one flat group per side: ``actor_norm.mean``,
    ``critic_norm.var``, ...) onto this model's (``actor_encoder.norm.<group>.mean``, ...)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("actor_norm."):
            k = f"actor_encoder.norm.{actor_groups[0]}." + k[len("actor_norm."):]
        elif k.startswith("critic_norm.") and critic_groups:
            k = f"critic_encoder.norm.{critic_groups[0]}." + k[len("critic_norm."):]
        out[k] = v
    return out


class ActorCritic(nn.Module):
    """Gaussian actor and (multi-head) critic, each reading its own list of observation groups.

    Args:
        specs: ``{group: {"shape": [...], "dtype": "float32" | "uint8"}}`` of (at least) the
            groups read (:func:`rlkd.nn.encoders.group_specs` of the env's spaces).
        actor_groups: groups the actor reads, in order.
        critic_groups: groups the critic reads; ``None`` builds the actor alone (a deployed
            policy).
        act_dim: action size ``A``.
        num_heads: critic outputs (1: extrinsic value; 2: extrinsic and intrinsic).
        actor_hidden, critic_hidden: widths of the MLP trunks.
        activation: hidden activation (elu, tanh, relu, leaky_relu, silu).
        init_noise_std: initial action std ``exp(log_std)``.
        normalize_obs: running mean/std normalization of flat groups (frozen in eval mode).
        flat_hidden: per-flat-group MLP before the trunk (empty: the normalized features).
        image_features: CNN output size per image group.
    """

    def __init__(self, specs: GroupSpecs, actor_groups: Sequence[str],
                 critic_groups: Sequence[str] | None, act_dim: int, num_heads: int = 1,
                 actor_hidden: Sequence[int] = (256, 128, 64),
                 critic_hidden: Sequence[int] = (256, 128, 64), activation: str = "elu",
                 init_noise_std: float = 1.0, normalize_obs: bool = True,
                 flat_hidden: Sequence[int] = (), image_features: int = 64):
        super().__init__()
        used = list(actor_groups) + list(critic_groups or [])
        self._spec = {
            "specs": {g: {"shape": [int(d) for d in specs[g]["shape"]],
                          "dtype": str(specs[g]["dtype"])} for g in dict.fromkeys(used)
                      if g in specs},
            "actor_groups": list(actor_groups),
            "critic_groups": None if critic_groups is None else list(critic_groups),
            "act_dim": int(act_dim), "num_heads": int(num_heads),
            "actor_hidden": list(actor_hidden), "critic_hidden": list(critic_hidden),
            "activation": activation, "init_noise_std": float(init_noise_std),
            "normalize_obs": bool(normalize_obs), "flat_hidden": list(flat_hidden),
            "image_features": int(image_features)}
        enc = dict(normalize=normalize_obs, flat_hidden=tuple(flat_hidden),
                   image_features=image_features, activation=activation)
        self.actor_encoder = ObservationEncoder(specs, actor_groups, **enc)
        self.actor = init_orthogonal(mlp(self.actor_encoder.out_dim, tuple(actor_hidden),
                                         act_dim, activation), out_gain=0.01)
        self.critic_encoder: ObservationEncoder | None = None
        self.critic: nn.Sequential | None = None
        if critic_groups is not None:
            self.critic_encoder = ObservationEncoder(specs, critic_groups, **enc)
            self.critic = init_orthogonal(mlp(self.critic_encoder.out_dim, tuple(critic_hidden),
                                              num_heads, activation), out_gain=1.0)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_noise_std)))

    # ------------------------------------------------------------------ description
    def spec(self) -> dict[str, Any]:
        """The constructor arguments as plain data: ``ActorCritic(**model.spec())`` rebuilds it."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._spec.items()}

    @property
    def actor_groups(self) -> list[str]:
        return list(self._spec["actor_groups"])

    @property
    def critic_groups(self) -> list[str]:
        return list(self._spec["critic_groups"] or [])

    # ------------------------------------------------------------------ forward
    def update_normalizers(self, obs: Mapping[str, torch.Tensor]) -> None:
        """Fold a batch of observations into both sides' running statistics."""
        self.actor_encoder.update_normalizers(obs)
        if self.critic_encoder is not None:
            self.critic_encoder.update_normalizers(obs)

    def dist_params(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs -> (mu (B, A), sigma (B, A))``."""
        mu = self.actor(self.actor_encoder(obs))
        return mu, self.log_std.exp().expand_as(mu)

    def value(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``obs -> (B, num_heads)``."""
        if self.critic is None:
            raise RuntimeError("this ActorCritic was built without a critic (a deployed actor)")
        return self.critic(self.critic_encoder(obs))

    def act_deterministic(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The mean action ``(B, A)`` (evaluation / deployment)."""
        return self.actor(self.actor_encoder(obs))

    # ------------------------------------------------------------------ state
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """As ``nn.Module.load_state_dict``; names of checkpoint format v1 are mapped first."""
        sd = upgrade_state_dict(state_dict, self._spec["actor_groups"],
                                self._spec["critic_groups"])
        return super().load_state_dict(sd, strict=strict, assign=assign)


__all__ = ["ActorCritic", "ACTOR_PREFIXES", "upgrade_state_dict"]
