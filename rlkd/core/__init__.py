"""The batched-env contract: :class:`BatchedEnv`, the registry, spaces, per-env random streams."""

from rlkd.core.config import apply_overrides, config_to_dict
from rlkd.core.device import normalize_device
from rlkd.core.env import BatchedEnv, Obs
from rlkd.core.registry import EnvSpec, list_envs, make, register, register_loader, spec
from rlkd.core.rng import BatchRNG

__all__ = ["BatchedEnv", "Obs", "BatchRNG", "EnvSpec", "apply_overrides", "config_to_dict",
           "list_envs", "make", "normalize_device", "register", "register_loader", "spec"]
