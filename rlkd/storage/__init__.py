"""On-policy data storage shared by the agents (below them: agents import it, it imports no
agent and no trainer)."""

from rlkd.storage.aggregate import AggregatedDataset
from rlkd.storage.rollout import RolloutStorage, obs_specs

__all__ = ["AggregatedDataset", "RolloutStorage", "obs_specs"]
