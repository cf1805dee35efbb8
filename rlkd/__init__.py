"""rlkd: robot learning by distillation.

>>> import rlkd
>>> env = rlkd.make("AGVWarehouse-v0", num_envs=1024, device="cpu", seed=0)
>>> obs, info = env.reset(seed=0)
"""

from rlkd.core import BatchedEnv, list_envs, make, register, spec
from rlkd.core.registry import register_loader

__version__ = "0.1.0"
__all__ = ["BatchedEnv", "list_envs", "make", "register", "spec", "__version__"]

# rlkd.core knows no task: the built-in ones (importing rlkd.envs registers them) reach its
# registry through this loader. It is installed here because importing any rlkd submodule,
# rlkd.core included, runs this file first.
register_loader("rlkd.envs")
# Also import them now: `import rlkd` must register the gymnasium ids "rlkd/<id>", and
# gymnasium.make looks ids up in its own registry, which cannot run our loader (~0.2 s).
import rlkd.envs  # noqa: E402,F401
