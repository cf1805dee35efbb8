"""Built-in tasks (installed as ``rlkd.envs``); importing this registers them."""

from rlkd.core.registry import _REGISTRY, register

from .agv_warehouse import PRESETS as _AGV_PRESETS
from .agv_warehouse import AGVWarehouseConfig as _AGVConfig
from .humanoid.config import HumanoidMotionConfig as _HumanoidConfig
from .tactile.config import TactilePegConfig as _TactileConfig

if "AGVWarehouse-v0" not in _REGISTRY:
    register("AGVWarehouse-v0", "rlkd.envs.agv_warehouse.env:AGVWarehouseEnv", _AGVConfig,
             description="Differential-drive AGV to goal through shelves and moving obstacles; "
                         "sparse reward, 32-ray lidar")
    for _name, _over in _AGV_PRESETS.items():
        register(f"AGVWarehouse-{_name}-v0", "rlkd.envs.agv_warehouse.env:AGVWarehouseEnv",
                 _AGVConfig, overrides=_over,
                 description=f"AGV warehouse, scene preset {_name}")
    register("AGVWarehouseBullet-v0", "rlkd.envs.agv_warehouse.bullet_twin:AGVWarehouseBulletEnv",
             _AGVConfig,
             description="PyBullet twin of AGVWarehouse-v0 (independent physics for sim-to-real checks)")
    register("HumanoidMotion-v0", "rlkd.envs.humanoid.env:HumanoidMotionEnv", _HumanoidConfig,
             description="MuJoCo humanoid (28 PD-controlled DoF) tracking reference motions; "
                         "DeepMimic reward, default clip: procedural walk")
    register("TactilePegInsertion-v0", "rlkd.envs.tactile.env:TactilePegEnv", _TactileConfig,
             description="Parallel gripper on a 6-DoF wrist seats a round 8 mm peg in a 0.2 mm "
                         "clearance socket; two 20x25 tactile force fields (after TacSL)")
    register("TactilePegPlacement-v0", "rlkd.envs.tactile.placement:TactilePegPlacementEnv",
             _TactileConfig, overrides={"task": "placement"},
             description="The tactile gripper stands its peg upright on a floor marker (3 mm, "
                         "5 deg) and lets go for 0.5 s; action adds open/close (after TacSL)")
