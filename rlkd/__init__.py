"""rlkd: robot learning by distillation.

>>> import rlkd
>>> env = rlkd.make("AGVWarehouse-v0", num_envs=1024, device="cpu", seed=0)
>>> obs, info = env.reset(seed=0)
"""

from rlkd.core import BatchedEnv, list_envs, make, register, spec

__version__ = "0.1.0"
__all__ = ["BatchedEnv", "list_envs", "make", "register", "spec", "__version__"]

# Registers every built-in task (and its gymnasium id "rlkd/<id>").
import rlkd.envs  # noqa: E402,F401
