"""The MAP-Elites archive: a ``ribs`` GridArchive over descriptors normalized to [-1, 1].

:class:`Archive` adds what our loop needs around ribs (imported lazily: ~3 s and numba):

* offspring with NaN/Inf fitness or descriptor are **dropped and counted**
  (``dropped_nonfinite``), never inserted;
* descriptors outside [-1, 1] are **counted** (``out_of_bounds``) before ribs clips them into the
  border cells (ribs does so silently);
* elites are sampled with a ``torch.Generator`` over the occupied cells sorted by cell index, so
  selection is reproducible and independent of ribs' internal storage order;
* :meth:`state_dict` holds tensors and plain numbers only (rlkd checkpoints load with
  ``weights_only=True``); :meth:`load_state_dict` re-inserts the elites into an empty archive,
  which rebuilds the same cells, solutions and fitnesses;
* the QD-score is ``sum over elites of (fitness - fitness_low)`` (every contribution > 0 with
  the task's declared lowest fitness), coverage the fraction of filled cells.

Insert/replace semantics are MAP-Elites': an offspring enters an empty cell, or replaces the
elite of its cell when its fitness is strictly higher.
"""

from __future__ import annotations

import numpy as np
import torch


class Archive:
    """A grid archive of ``solution_dim``-parameter policies.

    Args:
        solution_dim: genotype length ``D``.
        cells: cells per descriptor dimension, e.g. ``(32, 32)``.
        fitness_low: the task's lowest possible fitness (QD-score offset ``-fitness_low``).
    """

    def __init__(self, solution_dim: int, cells: tuple[int, ...], fitness_low: float):
        from ribs.archives import GridArchive

        self.solution_dim = int(solution_dim)
        self.cells = tuple(int(c) for c in cells)
        self.fitness_low = float(fitness_low)
        self._ar = GridArchive(solution_dim=self.solution_dim, dims=self.cells,
                               ranges=[(-1.0, 1.0)] * len(self.cells), solution_dtype=np.float32)
        #: Offspring refused because their fitness or descriptor was NaN/Inf.
        self.dropped_nonfinite = 0
        #: Offspring whose descriptor lay outside [-1, 1] (ribs put them in a border cell).
        self.out_of_bounds = 0

    @property
    def num_cells(self) -> int:
        return int(np.prod(self.cells))

    def __len__(self) -> int:
        return len(self._ar)

    def add(self, solutions: torch.Tensor, fitness: torch.Tensor, descriptors: torch.Tensor
            ) -> torch.Tensor:
        """Insert a batch; returns ``(P,) int64`` status per offspring: 0 not added (or dropped),
        1 improved an existing elite, 2 filled a new cell (ribs' ``AddStatus``), -1 dropped for
        non-finite values.

        Args:
            solutions: ``(P, D)``; fitness: ``(P,)``; descriptors: ``(P, n_desc)`` normalized.
        """
        sol = solutions.detach().cpu().float()
        fit = fitness.detach().cpu().double()
        desc = descriptors.detach().cpu().double()
        status = torch.full((sol.shape[0],), -1, dtype=torch.int64)
        ok = torch.isfinite(fit) & torch.isfinite(desc).all(dim=1) & torch.isfinite(sol).all(dim=1)
        self.dropped_nonfinite += int((~ok).sum())
        self.out_of_bounds += int(((desc.abs() > 1.0).any(dim=1) & ok).sum())
        if bool(ok.any()):
            res = self._ar.add(sol[ok].numpy(), fit[ok].numpy(), desc[ok].numpy())
            status[ok] = torch.as_tensor(np.asarray(res["status"]), dtype=torch.int64)
        return status

    def elites(self) -> dict[str, torch.Tensor]:
        """Every elite, sorted by cell index: ``index (E,)`` int64, ``solution (E, D)`` float32,
        ``fitness (E,)`` float64, ``descriptor (E, n_desc)`` float64 (normalized)."""
        d = self._ar.data(["index", "solution", "objective", "measures"])
        order = np.argsort(d["index"], kind="stable")
        return {"index": torch.as_tensor(d["index"][order], dtype=torch.int64),
                "solution": torch.as_tensor(d["solution"][order], dtype=torch.float32),
                "fitness": torch.as_tensor(d["objective"][order], dtype=torch.float64),
                "descriptor": torch.as_tensor(d["measures"][order], dtype=torch.float64)}

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` elites drawn uniformly with replacement: ``(solutions (n, D), descriptors (n,
        n_desc))`` float32 (descriptors normalized)."""
        if len(self) == 0:
            raise RuntimeError("cannot sample from an empty archive")
        e = self.elites()
        idx = torch.randint(len(e["index"]), (n,), generator=generator)
        return e["solution"][idx], e["descriptor"][idx].float()

    def stats(self) -> dict[str, float]:
        """``qd_score`` (offset ``-fitness_low``), ``coverage`` in [0, 1], ``max_fitness``."""
        if len(self) == 0:
            return {"qd_score": 0.0, "coverage": 0.0, "max_fitness": float("nan")}
        f = self.elites()["fitness"]
        return {"qd_score": float((f - self.fitness_low).sum()),
                "coverage": len(self) / self.num_cells, "max_fitness": float(f.max())}

    def grid(self) -> np.ndarray:
        """``cells``-shaped float array of elite fitness, NaN where empty (for heatmaps)."""
        out = np.full(self.num_cells, np.nan)
        e = self.elites()
        out[e["index"].numpy()] = e["fitness"].numpy()
        return out.reshape(self.cells)

    def state_dict(self) -> dict:
        return {"cells": list(self.cells), "solution_dim": self.solution_dim,
                "fitness_low": self.fitness_low, "elites": self.elites(),
                "dropped_nonfinite": self.dropped_nonfinite, "out_of_bounds": self.out_of_bounds}

    def load_state_dict(self, state: dict) -> None:
        if list(state["cells"]) != list(self.cells) or int(state["solution_dim"]) != self.solution_dim:
            raise ValueError(f"archive state has cells {list(state['cells'])} and solution_dim "
                             f"{state['solution_dim']}; this archive has {list(self.cells)} and "
                             f"{self.solution_dim}")
        self._ar.clear()
        e = state["elites"]
        if len(e["index"]):
            self._ar.add(e["solution"].numpy(), e["fitness"].numpy(), e["descriptor"].numpy())
        self.dropped_nonfinite = int(state["dropped_nonfinite"])
        self.out_of_bounds = int(state["out_of_bounds"])
