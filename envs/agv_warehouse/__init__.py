"""AGV warehouse navigation (``rlkd/AGVWarehouse-v0`` and its scene presets)."""

from .config import PRESETS, AGVWarehouseConfig
from .env import AGVWarehouseEnv

__all__ = ["AGVWarehouseConfig", "AGVWarehouseEnv", "PRESETS"]
