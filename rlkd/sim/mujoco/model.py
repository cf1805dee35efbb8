"""What the MuJoCo backends share: model loading, the per-env parameter table, constants.

:func:`load_model` turns an ``MjModel``, a file path or an MJCF string into an ``MjModel``.
:class:`ParamTable` describes the randomizable parameters (``body_mass``, ``geom_friction``,
``actuator_gain``, ``dof_damping``, ``geom_solref``): their nominal values, how a value maps onto
MuJoCo model fields and how writes are validated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import mujoco
import numpy as np

#: Names of the per-env physical parameters, in the order they are applied.
PARAM_NAMES = ("body_mass", "geom_friction", "actuator_gain", "dof_damping", "geom_solref")
#: Derived fields a batch can keep, beyond the state (qpos, qvel, act, ctrl, time).
FIELDS = ("xpos", "xquat", "cvel", "sensordata", "cfrc_ext")
#: Of those, the ones refreshed at the new state after a step (mj_step1's stages).
POS_VEL_FIELDS = ("xpos", "xquat", "cvel", "sensordata")
#: Everything needed to continue a simulation bitwise (includes the solver warm start).
INTEGRATION_SPEC = int(mujoco.mjtState.mjSTATE_INTEGRATION)
#: MuJoCo warnings that mean a world diverged (MuJoCo then resets that world itself).
UNSTABLE_WARNINGS = (int(mujoco.mjtWarning.mjWARN_BADQPOS), int(mujoco.mjtWarning.mjWARN_BADQVEL),
                     int(mujoco.mjtWarning.mjWARN_BADQACC))


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_model(model: mujoco.MjModel | str | os.PathLike) -> mujoco.MjModel:
    """An ``MjModel`` from an ``MjModel`` (returned as is), an ``.xml``/``.mjb`` path or an MJCF
    string (anything starting with ``<``). A path that does not exist raises ``ValueError``."""
    if isinstance(model, mujoco.MjModel):
        return model
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str):
        raise ValueError(f"model must be an mujoco.MjModel, a path or an MJCF string, got "
                         f"{type(model).__name__}")
    if model.lstrip().startswith("<"):
        return mujoco.MjModel.from_xml_string(model)
    if not os.path.isfile(model):
        raise ValueError(f"model file {model!r} does not exist (pass an MJCF string starting "
                         f"with '<' to load XML text)")
    if model.endswith(".mjb"):
        return mujoco.MjModel.from_binary_path(model)
    return mujoco.MjModel.from_xml_path(model)


#: Name of the sensor :func:`with_contact_wrenches` adds.
CFRC_TRIGGER = "_rlkd_cfrc_ext"


def has_acc_stage_sensor(model: mujoco.MjModel) -> bool:
    """True when a sensor of ``model`` needs the acceleration stage: only then does ``mj_step``
    run ``mj_rnePostConstraint``, the function that fills ``cfrc_ext`` (MuJoCo Warp always fills
    it). Without one, ``cfrc_ext`` stays zero on the CPU backends."""
    return bool((model.sensor_needstage == int(mujoco.mjtStage.mjSTAGE_ACC)).any())


def with_contact_wrenches(source: mujoco.MjModel | str | os.PathLike) -> mujoco.MjModel:
    """``source`` loaded with ``cfrc_ext`` computed at every step: when no sensor needs the
    acceleration stage, a ``framelinacc`` sensor on the world body (named :data:`CFRC_TRIGGER`,
    three columns after every existing sensor's, reading zero) is added by recompiling the MJCF
    (``mujoco.MjSpec``). Physics is unchanged. A compiled ``MjModel`` cannot be recompiled: it is
    returned as is with a warning, since its ``cfrc_ext`` will read zero on CPU."""
    if isinstance(source, mujoco.MjModel):
        if not has_acc_stage_sensor(source):
            import warnings

            warnings.warn("the MjModel has no acceleration-stage sensor, so cfrc_ext reads zero "
                          "on the CPU backends; pass the MJCF (path or string) to have rlkd add "
                          "one, or add e.g. <framelinacc objtype='body' objname='world'/>",
                          stacklevel=3)
        return source
    model = load_model(source)
    if has_acc_stage_sensor(model):
        return model
    src = os.fspath(source)
    spec = (mujoco.MjSpec.from_string(src) if src.lstrip().startswith("<")
            else mujoco.MjSpec.from_file(src))
    sensor = spec.add_sensor()
    sensor.name = CFRC_TRIGGER
    sensor.type = mujoco.mjtSensor.mjSENS_FRAMELINACC
    sensor.objtype = mujoco.mjtObj.mjOBJ_BODY
    sensor.objname = "world"
    return spec.compile()


@dataclass(frozen=True)
class ParamTable:
    """Nominal values of the per-env parameters of one model and how they map to MjModel fields.

    Parameters (per env; all float64 here, the backend casts):

    * ``body_mass (nbody,)`` kg. A mass write also scales the body's rotational inertia
      ``body_inertia`` by ``mass / nominal_mass`` (uniform density, as Isaac Lab's
      ``randomize_rigid_body_mass(recompute_inertia=True)``), so a heavier body is a consistent
      rigid body rather than a point mass added at its COM. Derived constants (subtree masses,
      ``invweight0``) are recomputed (``mj_setConst`` / ``mujoco_warp.set_const``).
    * ``geom_friction (ngeom, 3)``: sliding, torsional, rolling coefficients (MuJoCo combines the
      two geoms of a contact with ``max`` by default).
    * ``actuator_gain (nu,)``: ``actuator_gainprm[:, 0]`` (motor: force per unit control;
      position servo: ``kp``; velocity servo: ``kv``). For servos whose bias mirrors the gain
      (``<position>``: ``biasprm[1] == -gainprm[0]``; ``<velocity>``: ``biasprm[2] ==
      -gainprm[0]``) the bias term is rewritten to ``-gain`` too, so ``force = kp * (ctrl - q)``
      stays a PD law around the commanded target instead of acquiring an offset.
    * ``dof_damping (nv,)``: joint damping, N*s/m or N*m*s/rad.
    * ``geom_solref (ngeom, 2)``: contact ``solref`` of each geom in MuJoCo's standard form
      ``(timeconst s, dampratio)``, both > 0: the contact behaves as a spring-damper of stiffness
      ``k = d(r) / (dmax^2 timeconst^2 dampratio^2)`` and damping ``b = 2 / (dmax timeconst)``
      (per unit effective mass), so stiffness scales as ``1 / timeconst^2``. Which geom's
      solref a contact uses follows MuJoCo's rules (the higher ``priority`` geom's, else the
      ``solmix``-weighted mean). MuJoCo's negative *direct* form ``(-stiffness, -damping)`` is
      not supported: a row with a value ``<= 0`` is refused. With ``refsafe`` on (MuJoCo's
      default) the simulator uses ``max(timeconst, 2 * timestep)``, so a time constant below
      two steps stiffens no further.
    """

    body_mass: np.ndarray
    body_inertia: np.ndarray
    geom_friction: np.ndarray
    actuator_gain: np.ndarray
    dof_damping: np.ndarray
    geom_solref: np.ndarray
    #: ``(nu,)`` bool: position servos (bias index 1 follows the gain).
    position_servo: np.ndarray
    #: ``(nu,)`` bool: velocity servos (bias index 2 follows the gain).
    velocity_servo: np.ndarray

    @classmethod
    def from_model(cls, m: mujoco.MjModel) -> ParamTable:
        gain = m.actuator_gainprm[:, 0].copy()
        bias = m.actuator_biasprm
        affine = m.actuator_biastype == mujoco.mjtBias.mjBIAS_AFFINE
        fixed = m.actuator_gaintype == mujoco.mjtGain.mjGAIN_FIXED
        pos = affine & fixed & (bias[:, 1] == -gain) & (gain != 0)
        vel = affine & fixed & ~pos & (bias[:, 1] == 0) & (bias[:, 2] == -gain) & (gain != 0)
        return cls(body_mass=m.body_mass.copy(), body_inertia=m.body_inertia.copy(),
                   geom_friction=m.geom_friction.copy(), actuator_gain=gain,
                   dof_damping=m.dof_damping.copy(), geom_solref=m.geom_solref.copy(),
                   position_servo=pos, velocity_servo=vel)

    def nominal(self, name: str) -> np.ndarray:
        """Nominal value of parameter ``name`` (one env's shape)."""
        return getattr(self, name)

    def check(self, name: str, values: np.ndarray, env_ids: np.ndarray) -> None:
        """Raise ``ValueError`` naming the parameter and envs if ``values`` ((M, ...) rows of
        envs ``env_ids``) are not finite or physically invalid."""
        bad = ~np.isfinite(values).reshape(len(values), -1).all(axis=1)
        what = "not finite"
        if name == "body_mass":
            # a body that had mass must keep a positive one (zero makes the mass matrix singular)
            neg = ((values <= 0) & (self.body_mass > 0)) | (values < 0)
            bad |= neg.any(axis=1)
            what = "not finite, or not > 0 for a body with nominal mass"
        elif name in ("geom_friction", "dof_damping"):
            bad |= (values < 0).reshape(len(values), -1).any(axis=1)
            what = "not finite or negative"
        elif name == "geom_solref":
            # standard form only: (timeconst, dampratio), both > 0 (no direct-stiffness form)
            bad |= (values <= 0).reshape(len(values), -1).any(axis=1)
            what = ("not finite, or not > 0 (solref is (time constant s, damping ratio), both "
                    "> 0; MuJoCo's negative direct-stiffness form is not supported)")
        if bad.any():
            ids = env_ids[bad][:10].tolist()
            raise ValueError(f"params[{name!r}] is {what} for env ids {ids}")

    def inertia(self, mass: np.ndarray) -> np.ndarray:
        """``body_inertia`` rows ((M, nbody, 3)) for ``body_mass`` rows ((M, nbody)): the nominal
        principal inertia scaled by ``mass / nominal_mass`` (massless bodies keep theirs)."""
        nominal = self.body_mass
        ratio = np.divide(mass, nominal, out=np.ones_like(mass), where=nominal > 0)
        return self.body_inertia * ratio[..., None]

    def apply_row(self, m: mujoco.MjModel, name: str, row: np.ndarray) -> None:
        """Write one env's value of parameter ``name`` into its own ``MjModel`` ``m`` (CPU path;
        the caller runs ``mj_setConst`` after mass writes)."""
        if name == "body_mass":
            m.body_mass[:] = row
            m.body_inertia[:] = self.inertia(row[None])[0]
        elif name == "geom_friction":
            m.geom_friction[:] = row
        elif name == "dof_damping":
            m.dof_damping[:] = row
        elif name == "geom_solref":
            m.geom_solref[:] = row
        elif name == "actuator_gain":
            m.actuator_gainprm[:, 0] = row
            m.actuator_biasprm[self.position_servo, 1] = -row[self.position_servo]
            m.actuator_biasprm[self.velocity_servo, 2] = -row[self.velocity_servo]
        else:
            raise KeyError(f"unknown parameter {name!r}; known: {PARAM_NAMES}")
