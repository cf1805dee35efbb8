"""Random Distribution Distillation (Fang et al. 2025, arXiv 2505.11044) for PPO.

DESIGN.md section 9.3. The same predictor / fixed random network pair as RND, but the target
the predictor regresses is a *sample from a normal distribution* centred on the random network:

    t(s) = g(s) + sigma * eps,   eps ~ N(0, I_k), drawn afresh at every use of s,
    L(theta) = || f_hat(s) - t(s) ||^2,
    r_i(s) = || f_hat(s) - g(s) ||^2   (prediction vs the random network's mean output).

If the predictor fits the samples it has seen, after ``n`` draws at ``s`` it sits near their
mean ``g(s) + sigma * mean(eps_1..n)``, so by the triangle inequality

    r_i(s) <= 2 * ( sigma^2 * ||mean eps||^2                       [pseudo-count: E = sigma^2 k / n]
                  + ||f_hat(s) - (g(s) + sigma * mean eps)||^2 )    [discrepancy: -> 0 as it fits]

i.e. the bonus decays like a count-based ``1/n`` once the predictor has converged, while keeping
RND's function approximation for large state spaces. Normalizations, the intrinsic value head and
the PPO integration are RND's (:mod:`rlkd.agents.rnd`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlkd.agents.rnd import RND, RNDConfig


@dataclass
class RDDConfig(RNDConfig):
    """RND's hyperparameters plus the scale of the target distribution."""

    sigma: float = 1.0
    """Std of the target distribution around ``g(s)`` (sets the pseudo-count term
    ``sigma^2 k / n``). The paper leaves its value open; 1.0 (ours) matches the unit scale of the
    orthogonally initialised target's outputs."""


class RDD(RND):
    """RND with a stochastic target; see the module docstring for the method."""

    cfg: RDDConfig

    def training_target(self, x: torch.Tensor) -> torch.Tensor:
        """``g(x) + sigma * eps`` with fresh ``eps ~ N(0, I_k)`` per row: ``(B, D) -> (B, k)``."""
        g = self.target(x)
        eps = torch.randn(g.shape, generator=self.gen, device=g.device, dtype=g.dtype)
        return g + self.cfg.sigma * eps

    @staticmethod
    def pseudo_count_term(n: torch.Tensor | float, sigma: float, k: int):
        """Expected ``sigma^2 ||mean of n eps||^2 = sigma^2 k / n`` (the count-like part)."""
        return sigma ** 2 * k / n



def _register() -> None:
    from rlkd.agents.ppo import register_intrinsic_agent

    register_intrinsic_agent("ppo-rdd", RDD, RDDConfig,
                             "PPO + Random Distribution Distillation intrinsic reward (Fang et al. 2025)")


_register()
