"""Perturbation suites: named sets of conditions applied to an env through its ``params``.

A **condition** is a list of perturbations ``kind -> value``. Kinds are task-independent
(``mass``, ``friction``, ``motor_strength``, ``pd_gains``, ``action_latency``, ``obs_noise``, ...);
each task's ``PERTURBATIONS`` table says which of its ``params`` a kind acts on and how (an
:data:`OPS` entry). Scale-type kinds (``mass``, ``inertia``, ``friction``, ``motor_strength``,
``pd_gains``, ``gel_stiffness``) take a factor on the nominal value (1 = nominal); the others
take an absolute value (steps for ``action_latency``, standard deviations or probabilities for
noise and dropout).
A condition may also write raw params by name (``params: {slip: 0.2}``).

Conditions are applied to blocks of envs of one batch, so a whole suite runs as one batch and
nothing is rebuilt. A kind the task does not support makes its condition *not applicable*
(reported, not run): the humanoid and tactile tasks join the same suites as they land.

User suites are YAML files::

    name: my_suite
    description: heavier robot, slower loop
    conditions:
      - {name: nominal}
      - {name: heavy, perturb: {mass: 1.5}}
      - {name: heavy_slow, perturb: {mass: 1.5, action_latency: 2}, params: {slip: 0.1}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

#: How a perturbation value acts on a param tensor ``p`` (nominal values, per env).
OPS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "scale": lambda p, v: p * v,
    "divide": lambda p, v: p / v,
    "set": lambda p, v: torch.full_like(p, v),
    "add": lambda p, v: p + v,
    # Traction lost with friction below nominal: realised fraction (1 - slip) scales by min(v, 1).
    "traction": lambda p, v: (1.0 - (1.0 - p) * min(v, 1.0)).clamp(0.0, 0.95),
}

#: Documented perturbation kinds: kind -> (unit of the value, meaning).
KINDS: dict[str, tuple[str, str]] = {
    "mass": ("factor", "body mass relative to nominal"),
    "inertia": ("factor", "rotational inertia relative to nominal"),
    "friction": ("factor", "contact/wheel friction relative to nominal"),
    "motor_strength": ("factor", "actuator strength (torque, top speed) relative to nominal"),
    "pd_gains": ("factor", "PD gains of position-controlled joints relative to nominal"),
    "action_latency": ("control steps", "delay between a command and its effect"),
    "action_noise": ("action units (std)", "Gaussian noise on the command reaching the motors"),
    "obs_noise": ("obs units (std)", "Gaussian noise on proprioceptive observations"),
    "sensor_dropout": ("probability", "chance that each exteroceptive reading is lost"),
    "lidar_noise": ("metres (std)", "Gaussian range noise of the lidar"),
    "tactile_noise": ("obs units (std)", "Gaussian noise on tactile readings"),
    "tactile_image_noise": ("intensity levels 0-255 (std)",
                            "Gaussian noise on every pixel of the tactile image"),
    "gel_stiffness": ("factor", "tactile gel (finger pad) contact stiffness relative to nominal"),
}


@dataclass
class Condition:
    """One evaluation condition.

    Attributes:
        name: label in reports (``nominal`` is the reference of every gap).
        perturb: ``kind -> value`` (see :data:`KINDS`).
        params: raw param writes ``name -> value`` applied after ``perturb``.
    """

    name: str
    perturb: dict[str, float] = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.perturb) - set(KINDS))
        if unknown:
            raise ValueError(f"condition {self.name!r}: unknown perturbation kind(s) {unknown}; "
                             f"known kinds: {sorted(KINDS)}")

    def applicable(self, env) -> str | None:
        """``None`` when ``env`` supports this condition, else the reason it does not."""
        missing = [k for k in self.perturb if k not in env.PERTURBATIONS]
        if missing:
            return f"{type(env).__name__} has no perturbation kind {missing}"
        absent = [k for k in self.params if k not in env.params]
        if absent:
            return f"{type(env).__name__} has no param {absent}"
        return None

    def apply(self, env, env_ids: torch.Tensor) -> None:
        """Write this condition into ``env.params`` rows ``env_ids`` (from their current values,
        which should be nominal)."""
        reason = self.applicable(env)
        if reason is not None:
            raise ValueError(f"condition {self.name!r} does not apply: {reason}")
        for kind, value in self.perturb.items():
            for param, op in env.PERTURBATIONS[kind]:
                p = env.params[param]
                new = OPS[op](p[env_ids].to(torch.float32), float(value))
                p[env_ids] = new.round().to(p.dtype) if not p.is_floating_point() else new.to(p.dtype)
        for param, value in self.params.items():
            p = env.params[param]
            p[env_ids] = torch.as_tensor(value, dtype=p.dtype, device=p.device)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "perturb": dict(self.perturb), "params": dict(self.params)}


@dataclass
class Suite:
    """A named list of conditions; the first is ``nominal``."""

    name: str
    description: str
    conditions: list[Condition]

    def __post_init__(self):
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ValueError(f"suite {self.name!r}: duplicate condition names in {names}")
        if "nominal" not in names:  # every gap is measured against it
            self.conditions.insert(0, Condition("nominal"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "conditions": [c.to_dict() for c in self.conditions]}


def _c(name: str, **perturb: float) -> Condition:
    return Condition(name, perturb)


#: Built-in suites. ``default`` covers one moderate step of every family plus a combination;
#: ``nominal`` measures the policy alone (e.g. a tracker's MPJPE and fall rate).
SUITES: dict[str, Suite] = {s.name: s for s in [
    Suite("nominal", "the unperturbed task only: the policy's own quality", [_c("nominal")]),
    Suite("default", "one moderate step of each perturbation family, and all of them at once", [
        _c("nominal"), _c("mass_x1.5", mass=1.5), _c("friction_x0.5", friction=0.5),
        _c("motor_x0.8", motor_strength=0.8), _c("pd_gains_x0.5", pd_gains=0.5),
        _c("latency_2", action_latency=2), _c("action_noise_0.1", action_noise=0.1),
        _c("obs_noise_0.05", obs_noise=0.05), _c("lidar_noise_0.05", lidar_noise=0.05),
        _c("dropout_0.1", sensor_dropout=0.1), _c("tactile_noise_0.05", tactile_noise=0.05),
        _c("combined", mass=1.3, friction=0.7, motor_strength=0.9, action_latency=1,
           action_noise=0.05, obs_noise=0.02, sensor_dropout=0.05),
    ]),
    Suite("dynamics", "body, contact and actuator parameters", [
        _c("nominal"), _c("mass_x0.7", mass=0.7), _c("mass_x1.5", mass=1.5),
        _c("mass_x2", mass=2.0), _c("inertia_x2", inertia=2.0),
        _c("friction_x0.7", friction=0.7), _c("friction_x0.5", friction=0.5),
        _c("friction_x0.3", friction=0.3), _c("motor_x0.8", motor_strength=0.8),
        _c("motor_x0.6", motor_strength=0.6), _c("pd_gains_x0.5", pd_gains=0.5),
        _c("pd_gains_x2", pd_gains=2.0),
    ]),
    Suite("sensing", "observation noise, sensor noise and dropout, actuation noise", [
        _c("nominal"), _c("obs_noise_0.02", obs_noise=0.02), _c("obs_noise_0.05", obs_noise=0.05),
        _c("obs_noise_0.1", obs_noise=0.1), _c("lidar_noise_0.02", lidar_noise=0.02),
        _c("lidar_noise_0.05", lidar_noise=0.05), _c("lidar_noise_0.1", lidar_noise=0.1),
        _c("dropout_0.05", sensor_dropout=0.05), _c("dropout_0.1", sensor_dropout=0.1),
        _c("dropout_0.2", sensor_dropout=0.2), _c("action_noise_0.05", action_noise=0.05),
        _c("action_noise_0.1", action_noise=0.1), _c("action_noise_0.2", action_noise=0.2),
        _c("tactile_noise_0.05", tactile_noise=0.05),
    ]),
    Suite("latency", "control-loop delay in steps", [
        _c("nominal")] + [_c(f"latency_{k}", action_latency=k) for k in (1, 2, 3, 4, 5)]),
]}


def load_suite(name_or_path: str | Path) -> Suite:
    """A built-in suite by name, or a user suite from a YAML file (format in the module doc)."""
    key = str(name_or_path)
    if key in SUITES:
        s = SUITES[key]
        return Suite(s.name, s.description, [Condition(c.name, dict(c.perturb), dict(c.params))
                                             for c in s.conditions])
    path = Path(key)
    if not path.exists():
        raise ValueError(f"unknown suite {key!r}: built-in suites are {sorted(SUITES)}, "
                         f"or give a YAML file path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"suite file {path}: not valid YAML: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("conditions"), list):
        raise ValueError(f"suite file {path}: expected a mapping with a 'conditions' list")
    conds = []
    for i, item in enumerate(data["conditions"]):
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"suite file {path}: conditions[{i}] needs a 'name'")
        extra = set(item) - {"name", "perturb", "params"}
        if extra:
            raise ValueError(f"suite file {path}: conditions[{i}] has unknown field(s) "
                             f"{sorted(extra)}; allowed: name, perturb, params")
        try:
            conds.append(Condition(str(item["name"]), {k: float(v) for k, v in
                                                       (item.get("perturb") or {}).items()},
                                   dict(item.get("params") or {})))
        except (TypeError, ValueError) as e:
            raise ValueError(f"suite file {path}: conditions[{i}]: {e}") from e
    return Suite(str(data.get("name", path.stem)), str(data.get("description", "")), conds)


def parse_condition(spec: str) -> Condition:
    """A condition from the command line: ``name:kind=value,kind=value`` (e.g.
    ``heavy:mass=1.5,action_latency=2``); ``param.<name>=value`` writes a raw param."""
    name, sep, body = spec.partition(":")
    if not sep or not name:
        raise ValueError(f"condition {spec!r}: expected name:kind=value[,kind=value...]")
    perturb, params = {}, {}
    for item in filter(None, body.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"condition {spec!r}: {item!r} is not kind=value")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"condition {spec!r}: value of {key!r} is not a number: {value!r}")
        if key.startswith("param."):
            params[key[len("param."):]] = v
        else:
            perturb[key.strip()] = v
    return Condition(name, perturb, params)
