"""Multi-layer perceptrons with the activations and initialisation used by our agents."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

_ACTIVATIONS = {"elu": nn.ELU, "tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU,
                "silu": nn.SiLU}


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "elu") -> nn.Sequential:
    """``Linear -> act -> ... -> Linear``: ``(B, in_dim) -> (B, out_dim)``; no output activation.

    Raises ``ValueError`` for an unknown ``activation`` (one of elu, tanh, relu, leaky_relu, silu).
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), _ACTIVATIONS[activation]()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def init_orthogonal(net: nn.Sequential, hidden_gain: float = math.sqrt(2),
                    out_gain: float = 1.0) -> nn.Sequential:
    """Orthogonal weights (gain ``hidden_gain``, last layer ``out_gain``) and zero biases, the
    CleanRL / Burda et al. initialisation. Returns ``net``."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for i, lin in enumerate(linears):
        nn.init.orthogonal_(lin.weight, out_gain if i == len(linears) - 1 else hidden_gain)
        nn.init.zeros_(lin.bias)
    return net


def freeze(module: nn.Module) -> nn.Module:
    """Make every parameter of ``module`` non-trainable (e.g. RND's random target)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


__all__ = ["mlp", "init_orthogonal", "freeze"]

