"""Scoring a distilled archive policy (:mod:`rlkd.qd.distill`): pi commanded with every
cell's descriptor, its QD-score, descriptor error and early ends against the re-evaluated
elites, and the elites' own robustness to action noise (the yardstick for pi's error)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from rlkd.qd.population import PolicyShape, PopulationResult, evaluate_population

if TYPE_CHECKING:
    from rlkd.qd.distill import DistilledPolicy


def qd_contributions(fitness: torch.Tensor, fitness_low: float) -> torch.Tensor:
    """``(E,)`` float64 on the CPU: each solution's QD-score share ``max(f - f_low, 0)``, 0
    where ``f`` is not finite."""
    f = fitness.double().cpu()
    return torch.where(torch.isfinite(f), f - fitness_low, torch.zeros_like(f)).clamp_min(0.0)


def cell_errors(commands: torch.Tensor, reached: torch.Tensor, cells: tuple[int, ...]
                ) -> torch.Tensor:
    """``(E,)`` float64 distance from each command to the descriptor reached, in cell widths
    (``w = 2 / cells`` per dimension; both ``(E, n_desc)`` normalized); inf where not finite."""
    width = 2.0 / torch.tensor(cells, dtype=torch.float64)
    err = ((reached.double().cpu() - commands.double().cpu()) / width).norm(dim=-1)
    return torch.where(torch.isfinite(err), err, torch.full_like(err, math.inf))


def command_result(policy: "DistilledPolicy", task, env, commands: torch.Tensor,
                   keep_transitions: bool = False) -> PopulationResult:
    """pi commanded with every row of ``commands (E, n_desc)``, one env each (``env`` has E):
    one population batch of the folded policies pi(., d)."""
    return evaluate_population(task, env, policy.actor.policy, policy.genotypes(commands),
                               keep_transitions=keep_transitions)


def score(task, cells: tuple[int, ...], commands: torch.Tensor, ref_fit: torch.Tensor,
          ref_desc: torch.Tensor, fit: torch.Tensor, desc: torch.Tensor,
          ref_length: torch.Tensor | None = None, length: torch.Tensor | None = None
          ) -> dict[str, float]:
    """The distillation metrics of the module docstring.

    Args:
        commands: ``(E, n)`` commanded descriptors (normalized); ref_fit ``(E,)`` / ref_desc
            ``(E, n)``: the elites re-evaluated (descriptors normalized); fit / desc: pi's.
        ref_length, length: ``(E,)`` episode steps of the elites' and pi's evaluations; with
            them, ``early_end_rate`` (pi's episodes that ended before ``task.episode_steps``:
            on AGVOmni a collision, whose descriptor is where it hit),
            ``reference_early_end_rate`` and ``desc_error_cells_full_length`` (the mean error
            over pi's episodes that ran to the end).
    """
    from rlkd.qd.archive import Archive

    low = task.fitness_low

    def reinserted(f: torch.Tensor, d: torch.Tensor) -> dict[str, float]:
        ar = Archive(1, cells, low)
        ar.add(torch.zeros(f.shape[0], 1), f, d)
        return ar.stats()

    ref_qd, qd = (float(qd_contributions(f, low).sum()) for f in (ref_fit, fit))
    err = cell_errors(commands, desc, cells)
    ref_ins, pi_ins = reinserted(ref_fit, ref_desc), reinserted(fit, desc)
    pct = lambda a, b: 100.0 * a / b if b > 0 else float("nan")  # noqa: E731
    return {"qd_score_pct": pct(qd, ref_qd), "desc_error_cells": float(err.mean()),
            "reinserted_qd_score_pct": pct(pi_ins["qd_score"], ref_ins["qd_score"]),
            "qd_score": qd, "reference_qd_score": ref_qd,
            "reinserted_qd_score": pi_ins["qd_score"],
            "reference_reinserted_qd_score": ref_ins["qd_score"],
            "reinserted_coverage": pi_ins["coverage"],
            "reference_coverage": ref_ins["coverage"],
            "desc_error_cells_median": float(err.median()),
            "within_one_cell": float((err <= 1.0).double().mean()), "cells": int(len(fit)),
            **_early_ends(task, err, ref_length, length)}


def _early_ends(task, err: torch.Tensor, ref_length: torch.Tensor | None,
                length: torch.Tensor | None) -> dict[str, float]:
    if length is None or ref_length is None:
        return {}
    early, ref_early = (x.cpu() < task.episode_steps for x in (length, ref_length))
    full = err[~early]
    return {"early_end_rate": float(early.double().mean()),
            "reference_early_end_rate": float(ref_early.double().mean()),
            "desc_error_cells_full_length": float(full.mean()) if len(full) else float("nan")}


def elite_noise_probe(task, env, shape: PolicyShape, solutions: torch.Tensor,
                      commands: torch.Tensor, cells: tuple[int, ...], sigmas, seed: int = 0
                      ) -> list[dict[str, float]]:
    """The elites re-evaluated with Gaussian action noise of each std in ``sigmas``:
    ``[{sigma, desc_error_cells, desc_error_cells_median, early_end_rate}]`` against their
    own cells' descriptors ``commands (E, n_desc)``. A fragile archive (elites whose paths
    brush obstacles) errs by cells at a few percent of the action range; a distilled policy
    whose actions are off by as much cannot do better."""
    out = []
    for sigma in sigmas:
        r = evaluate_population(task, env, shape, solutions.to(env.device),
                                keep_transitions=False, action_noise=float(sigma),
                                noise_seed=seed)
        err = cell_errors(commands, task.normalize(r.descriptor), cells)
        out.append({"sigma": float(sigma), "desc_error_cells": float(err.mean()),
                    "desc_error_cells_median": float(err.median()),
                    "early_end_rate": float((r.length.cpu() < task.episode_steps)
                                            .double().mean())})
    return out
