"""Observation encoders: a list of observation groups -> one flat feature vector per env.

One encoder per group, chosen by the group's space:

* **flat groups** (any float box; ``(D,)`` or multi-dimensional, flattened per env, e.g. a
  tactile force field ``(2, 3, R, C)``): a running mean/std normalizer (frozen in eval mode),
  then an optional MLP (``flat_hidden``; empty = the normalized features themselves, which is
  what a single-group PPO actor has always read);
* **image groups** (uint8 boxes of rank >= 3, ``(..., C, H, W)``): scaled to [0, 1] inside the
  model (the rollout storage keeps uint8), leading dims folded into channels (two fingers x RGB
  -> 6 channels), then :class:`ImageEncoder`, a small CNN.

The features of the groups are concatenated in the order the groups are listed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from rlkd.nn.mlp import _ACTIVATIONS, init_orthogonal, mlp
from rlkd.nn.normalizer import RunningMeanStd

#: ``group -> {"shape": [...], "dtype": "float32" | "uint8"}``: the plain-data description of the
#: groups a model reads (saved in checkpoints, so a policy loads without building its env).
GroupSpecs = Mapping[str, Mapping]


def group_specs(spaces: Mapping, groups: Sequence[str] | None = None) -> dict[str, dict]:
    """Plain ``{group: {"shape", "dtype"}}`` of gymnasium Box ``spaces`` (all, or ``groups``)."""
    out = {}
    for g in (groups if groups is not None else list(spaces)):
        if g not in spaces:
            raise KeyError(f"observation group {g!r} is not provided by the env "
                           f"(groups: {sorted(spaces)})")
        s = spaces[g]
        out[g] = {"shape": [int(d) for d in s.shape],
                  "dtype": "uint8" if np.dtype(s.dtype) == np.uint8 else "float32"}
    return out


def is_image(spec: Mapping) -> bool:
    """True for uint8 groups of rank >= 3 (``(..., C, H, W)``), encoded by a CNN."""
    return spec["dtype"] == "uint8" and len(spec["shape"]) >= 3


class ImageEncoder(nn.Module):
    """Small CNN for low-resolution images: ``(B, C, H, W)`` float in [0, 1] -> ``(B, out_dim)``.

    Three 3x3 convolutions with stride 2 (``channels``) and the given activation, then one
    linear layer to ``out_dim``; sized for 60x80 tactile images and 48x64 camera frames (a
    pretrained encoder can replace it: any module with the same input/output contract).
    """

    def __init__(self, in_channels: int, height: int, width: int, out_dim: int = 64,
                 channels: Sequence[int] = (16, 32, 32), activation: str = "elu"):
        super().__init__()
        act = _ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        c = in_channels
        for ch in channels:
            layers += [nn.Conv2d(c, ch, kernel_size=3, stride=2, padding=1), act()]
            c = ch
        self.conv = nn.Sequential(*layers)
        with torch.no_grad():
            n = self.conv(torch.zeros(1, in_channels, height, width)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(n, out_dim), act())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))


class ObservationEncoder(nn.Module):
    """Encodes ``groups`` of an observation dict into ``(B, out_dim)`` features.

    Args:
        specs: ``{group: {"shape", "dtype"}}`` of at least ``groups`` (see :func:`group_specs`).
        groups: the groups read, in order.
        normalize: running mean/std normalization of flat groups.
        flat_hidden: hidden widths of an MLP per flat group (empty: identity).
        image_features: output size of each image group's CNN.
        activation: activation of the per-group networks.

    Submodules (state-dict names): ``norm.<group>`` (flat groups' normalizers),
    ``mlp.<group>`` (flat groups' MLPs, if any), ``cnn.<group>`` (image groups' CNNs).
    """

    def __init__(self, specs: GroupSpecs, groups: Sequence[str], normalize: bool = True,
                 flat_hidden: Sequence[int] = (), image_features: int = 64,
                 activation: str = "elu"):
        super().__init__()
        if not groups:
            raise ValueError("an encoder needs at least one observation group")
        self.groups = list(groups)
        self.normalize = normalize
        self.norm = nn.ModuleDict()
        self.mlp = nn.ModuleDict()
        self.cnn = nn.ModuleDict()
        self.image_groups: list[str] = []
        self.out_dim = 0
        for g in self.groups:
            if g not in specs:
                raise KeyError(f"observation group {g!r} is not provided (groups: {sorted(specs)})")
            spec = specs[g]
            shape = tuple(spec["shape"])
            if is_image(spec):
                *lead, c, h, w = shape
                self.cnn[g] = ImageEncoder(int(np.prod(lead, dtype=np.int64)) * c, h, w,
                                           image_features, activation=activation)
                self.image_groups.append(g)
                self.out_dim += image_features
                continue
            dim = int(np.prod(shape, dtype=np.int64))
            self.norm[g] = RunningMeanStd(dim, clip=10.0)
            if flat_hidden:
                self.mlp[g] = init_orthogonal(mlp(dim, flat_hidden[:-1], flat_hidden[-1],
                                                  activation), out_gain=1.0)
                self.mlp[g].append(_ACTIVATIONS[activation]())
                dim = flat_hidden[-1]
            self.out_dim += dim
        self._single_flat = len(self.groups) == 1 and not self.image_groups and not flat_hidden

    @torch.no_grad()
    def update_normalizers(self, obs: Mapping[str, torch.Tensor]) -> None:
        """Fold a batch of ``obs`` into the flat groups' running statistics."""
        if self.normalize:
            for g, norm in self.norm.items():
                norm.update(obs[g].flatten(1))

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``obs`` (a dict holding at least ``groups``, rows = envs or samples) -> ``(B, out_dim)``."""
        if self._single_flat:  # the common PPO case: no concatenation copy
            g = self.groups[0]
            x = obs[g].flatten(1)
            return self.norm[g].normalize(x) if self.normalize else x
        feats = []
        for g in self.groups:
            x = obs[g]
            if g in self.cnn:
                # Scaled here, not in storage: images stay uint8 until the last moment.
                x = x.reshape(x.shape[0], -1, *x.shape[-2:])  # (B, lead*C, H, W)
                feats.append(self.cnn[g](x.to(torch.float32) / 255.0))
                continue
            x = x.flatten(1)
            if self.normalize:
                x = self.norm[g].normalize(x)
            feats.append(self.mlp[g](x) if g in self.mlp else x)
        return torch.cat(feats, -1)


__all__ = ["ObservationEncoder", "ImageEncoder", "group_specs", "is_image", "GroupSpecs"]
