"""Quality diversity on batched envs: population evaluation (one env batch of P policies, each
its own MLP), QD tasks (fitness, descriptors, bounds) and the archive helpers the MAP-Elites
family in :mod:`rlkd.agents.dcg_map_elites` uses. ``ribs`` is imported lazily (3 s, numba)."""

from rlkd.qd.population import PolicyShape, PopulationResult, evaluate_population, \
    population_forward
from rlkd.qd.tasks import QD_TASKS, QDTask, get_task

__all__ = ["PolicyShape", "PopulationResult", "evaluate_population", "population_forward",
           "QD_TASKS", "QDTask", "get_task"]
