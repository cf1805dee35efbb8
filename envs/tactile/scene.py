"""The MJCF scene of the tactile tasks, generated from a few numbers (peg size, clearance, ...).

World frame: z up, metres. The socket's hole is centred on the world z axis; its walls are four
boxes standing on the floor (z = 0) whose inner faces bound a square hole of side
``2 * peg_radius + clearance`` (the *diametral* clearance: a centred peg has ``clearance / 2``
of play on each side), ``socket_depth`` deep, so the hole's bottom is the floor.
Placement (``SceneSpec(socket=False)``, :func:`rlkd.envs.tactile.placement.placement_spec`):
no walls, a non-colliding ``marker`` disc on the origin instead, and the floor's own contact
numbers (``floor_solref`` / ``floor_solimp``).

The gripper: a ``hand`` body on six wrist joints in the world frame (slides ``wrist_x/y/z``,
then hinges ``wrist_rx/ry/rz`` about the hand's x, y, z axes, in that order), each driven by a
``<position>`` servo (``kp``, ``kv``; armature keeps the 2 ms step stable), gravity-compensated
(``gravcomp="1"`` on the hand and fingers). Two fingers slide along the hand's y axis
(``finger_r`` at +y, ``finger_l`` at -y, coupled by a joint equality so the grasp stays
centred), each pushed inwards by a ``<motor>`` (force = control, N: the grip force). Each
finger carries a compliant box ``pad_r`` / ``pad_l`` (soft ``solref``/``solimp``): the pad
surface facing the peg is the tactile sensor's plane, ``pad_width`` along the hand's x axis by
``pad_height`` along its z axis, centred ``finger_length - pad_height / 2`` below the hand
origin. The peg is a free cylinder (``peg``; body frame at its centre, axis = body z).

Bodies have explicit inertial frames at their origins (``xipos == xpos``), so a body's COM
velocity follows from ``xpos`` and ``cvel`` alone (the sensor's slip velocities).

Contacts (DESIGN.md section 3): the socket's walls are stiffened (``socket_solref``,
``socket_solimp``) so a peg offset beyond the clearance does not sink into a wall and seat;
measured numbers are in ``tests/test_tactile_env.py``. Solver Newton (MuJoCo Warp has no
PGS), elliptic friction cones, 2 ms step, ``implicitfast`` integration.

:func:`scene_xml` returns the MJCF text. With ``oracle=True`` it adds MuJoCo's native
``<tactile>`` sensor on each pad (a non-colliding ``plate`` mesh geom on the pad surface): a
CPU-only test oracle for the sensor's depth, never used by the envs (it costs ~0.08 us per taxel
every substep and MuJoCo Warp does not take sensor plugins).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Body, joint and actuator names the env and sensor look up.
WRIST_JOINTS = ("wrist_x", "wrist_y", "wrist_z", "wrist_rx", "wrist_ry", "wrist_rz")
FINGER_JOINTS = ("finger_r", "finger_l")
PADS = ("pad_r", "pad_l")
FINGERS = ("finger_r_body", "finger_l_body")
#: The nominal grasp: the peg's centre sits this far below the pads' centre (hand -z), m, so
#: ~25 mm of peg show below the fingertips (more than the socket is deep).
GRASP_DROP = 0.010


def settled_finger_q(grip_force):
    """Finger joint position (m, inward) at which the default pads hold the peg still under
    ``grip_force`` newtons (scalar or tensor): ``0.4 mm + 0.02 mm/N``, clamped to 0.4-0.9 mm (a
    fit of the measured pad penetration: 0.47, 0.61, 0.78 mm at 5, 10, 20 N). Resets start the
    fingers there: fingers that start at touch and slam shut under ~15 N have been seen to
    eject a tilted peg."""
    return (0.0004 + 0.00002 * grip_force).clip(0.0004, 0.0009) if hasattr(grip_force, "clip") \
        else min(max(0.0004 + 0.00002 * grip_force, 0.0004), 0.0009)


def pad_centre_z(s: "SceneSpec") -> float:
    """Height of the pads' centre in the hand frame, m (negative: below the hand origin)."""
    return -(s.finger_length - s.pad_height / 2)


@dataclass(frozen=True)
class SceneSpec:
    """Geometry and contact numbers of the scene (SI units; defaults = the tasks' defaults)."""

    peg_radius: float = 0.004
    """Peg radius, m (8 mm diameter)."""
    peg_length: float = 0.05
    """Peg length, m."""
    peg_mass: float = 0.02
    """Peg mass, kg."""
    clearance: float = 0.0002
    """Diametral clearance of the hole, m (hole side = 2 peg_radius + clearance)."""
    socket_depth: float = 0.02
    """Hole depth (= wall height above the floor), m."""
    socket_wall: float = 0.02
    """Wall thickness, m."""
    pad_width: float = 0.025
    """Pad extent along the hand's x axis (the tactile columns), m."""
    pad_height: float = 0.02
    """Pad extent along the hand's z axis (the tactile rows), m."""
    pad_thickness: float = 0.004
    """Pad box thickness along the hand's y axis, m."""
    finger_length: float = 0.045
    """Hand origin to the fingertip (the pad's lower edge), m."""
    pad_solref: tuple[float, float] = (0.01, 1.0)
    """Pad contact ``solref`` (time constant s, damping ratio): the compliant gel."""
    pad_solimp: tuple[float, ...] = (0.95, 0.99, 0.001, 0.5, 2.0)
    """Pad contact ``solimp`` (MuJoCo's 5 numbers)."""
    socket_solref: tuple[float, float] = (0.004, 1.0)
    """Socket wall contact ``solref``: stiff, so the clearance is real."""
    socket_solimp: tuple[float, ...] = (0.99, 0.999, 0.0001, 0.5, 2.0)
    """Socket wall contact ``solimp``."""
    friction: float = 1.0
    """Sliding friction of pads and peg (socket and floor: ``socket_friction``)."""
    socket_friction: float = 0.3
    """Sliding friction of socket walls and floor."""
    wrist_kp: tuple[float, float] = (2000.0, 50.0)
    """Wrist servo stiffness: slides N/m, hinges N m/rad."""
    wrist_kv: tuple[float, float] = (80.0, 1.0)
    """Wrist servo damping: slides N s/m, hinges N m s/rad."""
    max_grip: float = 60.0
    """Largest finger motor force, N."""
    impratio: float = 10.0
    """Frictional-to-normal impedance ratio (elliptic cones): > 1 makes static friction firm
    (measured: a held peg creeps ~0.6 mm/s at 1, ~0.06 at 10)."""
    timestep: float = 0.002
    """Physics step, s."""
    taxels: tuple[int, int] = (20, 25)
    """Oracle only: native ``<tactile>`` plate resolution (rows, cols)."""

    # --- placement (TactilePegPlacement-v0)
    socket: bool = True
    """``True``: the insertion socket's four walls; ``False`` (placement): no walls, only the
    floor and a non-colliding ``marker`` disc on the world origin (the placement target)."""
    marker_radius: float = 0.007
    """Placement only: radius of the visual ``marker`` disc (0.5 mm thick, on the floor), m."""
    floor_solref: tuple[float, float] | None = None
    """The floor's own contact ``solref`` (``None``: the socket class, as insertion). A peg
    standing on the floor needs softer numbers than the walls: under the socket's ``solimp``
    (0.1 mm width, 0.999) an upright peg tilted 1 deg topples and gains energy, where MuJoCo's
    default ``solimp`` with ``solref`` 0.01 rights it up to 8 deg and topples it from 10 deg
    (the true limit: atan(r / (L/2)) = 9.1 deg); measured in ``tests/test_tactile_placement.py``."""
    floor_solimp: tuple[float, ...] | None = None
    """The floor's own contact ``solimp`` (``None``: the socket class)."""
    ls_iterations: int = 20
    """Newton line-search iterations per solver iteration. 20 (insertion's) lets the grasp
    glitch on rare substeps (the solver stops after 0 iterations: the held peg jumps ~4 mm and
    turns ~10 deg in 2 ms while the wrist turns); 50 (MuJoCo's default, placement's) removes
    the cases seen."""


#: The builtin ``plate`` mesh lies at z = -1 in its frame: scaled to this and offset back, its
#: vertices sit on the pad surface (vertex ``(i, j)`` at the centre of taxel cell ``(i, j)``).
_PLATE_Z = 1e-6


def _f(*v: float) -> str:
    return " ".join(f"{x:.9g}" for x in v)


def scene_xml(s: SceneSpec = SceneSpec(), oracle: bool = False) -> str:
    """MJCF text of the scene for ``s``; ``oracle`` adds the native ``<tactile>`` sensors."""
    r, h = s.peg_radius, s.peg_length / 2
    half_hole = r + s.clearance / 2
    w, d = s.socket_wall, s.socket_depth
    # Four walls around a square hole: +x and -x walls span the full outer width, +y/-y fill in.
    outer = half_hole + w
    walls = []
    for sx in (1, -1):
        walls.append((f"{sx * (half_hole + w / 2)}", "0", w / 2, outer))
    for sy in (1, -1):
        walls.append(("0", f"{sy * (half_hole + w / 2)}", half_hole, w / 2))
    wall_xml = "\n".join(
        f'    <geom name="wall{i}" class="socket" type="box" pos="{x} {y} {d / 2:.9g}" '
        f'size="{_f(hx, hy, d / 2)}"/>' for i, (x, y, hx, hy) in enumerate(walls))
    floor_contact = "".join(f' {k}="{_f(*v)}"' for k, v in (("solref", s.floor_solref),
                                                               ("solimp", s.floor_solimp)) if v)
    if not s.socket:  # placement: a visual target on the floor instead of the walls
        wall_xml = (f'    <geom name="marker" type="cylinder" '
                    f'size="{_f(s.marker_radius, 0.00025)}" pos="0 0 0.00025" contype="0" '
                    f'conaffinity="0" rgba=".2 .85 .3 .8"/>')
    pz = pad_centre_z(s)                                 # pad centre below the hand origin
    pt = s.pad_thickness / 2
    # Fingers at rest: pad surfaces at +-r (touching a centred peg); joint q moves them inwards.
    fingers = []
    for name, sgn in (("r", 1), ("l", -1)):
        surf_q = "0.7071068 0.7071068 0 0" if sgn > 0 else "0.7071068 -0.7071068 0 0"
        oracle_geom = (f'\n          <geom name="taxels_{name}" type="mesh" mesh="plate" contype="0" '
                       f'conaffinity="0" group="3" pos="0 {-sgn * (pt + _PLATE_Z):.9g} 0" quat="{surf_q}"/>'
                       if oracle else "")
        fingers.append(f"""
      <body name="finger_{name}_body" pos="0 {sgn * (r + pt):.9g} {pz:.9g}" gravcomp="1">
        <inertial pos="0 0 0" mass="0.05" diaginertia="1e-5 1e-5 1e-5"/>
        <joint name="finger_{name}" type="slide" axis="0 {-sgn} 0" range="-0.02 0.004"
               damping="2" armature="0.05"/>
        <geom name="pad_{name}" class="pad" type="box" size="{_f(s.pad_width / 2, pt, s.pad_height / 2)}"/>
        <geom name="finger_{name}_link" type="box" contype="0" conaffinity="0" rgba=".3 .3 .35 1"
              pos="0 {sgn * (pt + 0.003):.9g} {s.pad_height / 2 + 0.01:.9g}"
              size="{_f(s.pad_width / 2, 0.003, s.pad_height / 2 + 0.01)}"/>{oracle_geom}
      </body>""")
    kp_s, kp_r = s.wrist_kp
    kv_s, kv_r = s.wrist_kv
    rows, cols = s.taxels
    oracle_asset = (f'\n    <mesh name="plate" builtin="plate" params="{cols} {rows}" '
                    f'scale="{_f(s.pad_width / 2, s.pad_height / 2, _PLATE_Z)}"/>' if oracle else "")
    # An acceleration-stage sensor makes mj_step run mj_rnePostConstraint, i.e. fill cfrc_ext
    # (the contact wrenches the tactile field and the critic read); without one it stays zero.
    oracle_sensor = ("\n    <tactile name=\"native_r\" geom=\"taxels_r\" mesh=\"plate\"/>"
                     "\n    <tactile name=\"native_l\" geom=\"taxels_l\" mesh=\"plate\"/>"
                     if oracle else "")
    sensors = ('\n  <sensor>\n    <framelinacc name="peg_linacc" objtype="body" objname="peg"/>'
               f'{oracle_sensor}\n  </sensor>')
    return f"""<mujoco model="tactile_peg">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{s.timestep:.9g}" solver="Newton" cone="elliptic" integrator="implicitfast"
          impratio="{s.impratio:.9g}" iterations="50" ls_iterations="{s.ls_iterations}"/>
  <default>
    <default class="pad">
      <geom solref="{_f(*s.pad_solref)}" solimp="{_f(*s.pad_solimp)}" friction="{s.friction} 0.005 0.0001"
            condim="4" priority="1" rgba=".9 .6 .2 1"/>
    </default>
    <default class="socket">
      <geom solref="{_f(*s.socket_solref)}" solimp="{_f(*s.socket_solimp)}"
            friction="{s.socket_friction} 0.005 0.0001" priority="1" rgba=".5 .55 .6 1"/>
    </default>
  </default>
  <asset>{oracle_asset}
    <texture name="grid" type="2d" builtin="checker" rgb1=".2 .3 .4" rgb2=".25 .35 .45" width="64" height="64"/>
    <material name="grid" texture="grid" texrepeat="20 20"/>
  </asset>
  <visual><global offwidth="640" offheight="480"/></visual>
  <worldbody>
    <light pos="0.1 -0.2 0.4" dir="-0.2 0.4 -1"/>
    <camera name="side" pos="0.18 -0.18 0.12" xyaxes="0.707 0.707 0 -0.25 0.25 0.935"/>
    <geom name="floor" class="socket" type="plane" size="0.3 0.3 0.01" material="grid"{floor_contact}/>
{wall_xml}
    <body name="hand" pos="0 0 0" gravcomp="1">
      <inertial pos="0 0 0" mass="0.3" diaginertia="2e-4 2e-4 2e-4"/>
      <joint name="wrist_x" type="slide" axis="1 0 0" range="-0.05 0.05" armature="0.2"/>
      <joint name="wrist_y" type="slide" axis="0 1 0" range="-0.05 0.05" armature="0.2"/>
      <joint name="wrist_z" type="slide" axis="0 0 1" range="0 0.2" armature="0.2"/>
      <joint name="wrist_rx" type="hinge" axis="1 0 0" range="-0.5 0.5" armature="0.01"/>
      <joint name="wrist_ry" type="hinge" axis="0 1 0" range="-0.5 0.5" armature="0.01"/>
      <joint name="wrist_rz" type="hinge" axis="0 0 1" range="-1.6 1.6" armature="0.01"/>
      <geom name="palm" type="box" size="0.02 0.03 0.008" pos="0 0 0.012" contype="0" conaffinity="0"
            rgba=".3 .3 .35 1"/>{"".join(fingers)}
    </body>
    <body name="peg" pos="0 0 0.1">
      <freejoint name="peg"/>
      <inertial pos="0 0 0" mass="{s.peg_mass:.9g}"
                diaginertia="{_f(s.peg_mass * (3 * r * r + 4 * h * h) / 12, s.peg_mass * (3 * r * r + 4 * h * h) / 12, s.peg_mass * r * r / 2)}"/>
      <geom name="peg" type="cylinder" size="{_f(r, h)}" friction="{s.friction} 0.005 0.0001"
            condim="4" rgba=".8 .8 .85 1"/>
    </body>
  </worldbody>
  <equality>
    <joint joint1="finger_l" joint2="finger_r" polycoef="0 1 0 0 0" solref="0.005 1"/>
  </equality>
  <actuator>
    <position name="wrist_x" joint="wrist_x" kp="{kp_s:.9g}" kv="{kv_s:.9g}"/>
    <position name="wrist_y" joint="wrist_y" kp="{kp_s:.9g}" kv="{kv_s:.9g}"/>
    <position name="wrist_z" joint="wrist_z" kp="{kp_s:.9g}" kv="{kv_s:.9g}"/>
    <position name="wrist_rx" joint="wrist_rx" kp="{kp_r:.9g}" kv="{kv_r:.9g}"/>
    <position name="wrist_ry" joint="wrist_ry" kp="{kp_r:.9g}" kv="{kv_r:.9g}"/>
    <position name="wrist_rz" joint="wrist_rz" kp="{kp_r:.9g}" kv="{kv_r:.9g}"/>
    <motor name="finger_r" joint="finger_r" ctrlrange="{-s.max_grip:.9g} {s.max_grip:.9g}"/>
    <motor name="finger_l" joint="finger_l" ctrlrange="{-s.max_grip:.9g} {s.max_grip:.9g}"/>
  </actuator>{sensors}
</mujoco>
"""
