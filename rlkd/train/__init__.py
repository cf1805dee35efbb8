"""Training infrastructure: runner, train config, checkpoints, logging, export.

Trained policies load without this package's runner: :func:`rlkd.policies.load_policy`.
"""

from rlkd.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rlkd.train.config import TrainConfig

__all__ = ["OnPolicyRunner", "TrainConfig", "CheckpointError", "load_checkpoint",
           "save_checkpoint"]


def __getattr__(name: str):
    # The runner pulls in tensorboard and the env registry; importing it lazily keeps
    # `rlkd.policies.load_policy` (which reads checkpoints through this package) light.
    if name == "OnPolicyRunner":
        from rlkd.train.runner import OnPolicyRunner

        return OnPolicyRunner
    raise AttributeError(f"module 'rlkd.train' has no attribute {name!r}")
