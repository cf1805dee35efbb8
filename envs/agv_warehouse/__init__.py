"""AGV warehouse navigation (``rlkd/AGVWarehouse-v0``, its scene presets and the PyBullet twin
``rlkd/AGVWarehouseBullet-v0``)."""

from .bullet_twin import AGVWarehouseBulletEnv  # light: pybullet is imported on construction
from .config import PRESETS, AGVWarehouseConfig
from .env import AGVWarehouseEnv

__all__ = ["AGVWarehouseBulletEnv", "AGVWarehouseConfig", "AGVWarehouseEnv", "PRESETS"]
