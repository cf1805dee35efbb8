"""Training infrastructure: runner, rollout storage, checkpoints, logging, data parallelism."""

from rlkd.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rlkd.train.runner import OnPolicyRunner, TrainConfig, load_policy

__all__ = ["OnPolicyRunner", "TrainConfig", "load_policy", "CheckpointError", "load_checkpoint",
           "save_checkpoint"]
