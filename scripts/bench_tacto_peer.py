"""Images/s of ``tacto`` (PyBullet + pyrender, Wang et al. 2022), our tactile-image speed peer.

Runs with the python of tacto's own venv (never rlkd's: tacto pins old packages), headless:

    /work/venv-tacto/bin/python scripts/bench_tacto_peer.py --json /tmp/tacto.json

(``PYOPENGL_PLATFORM=egl`` is set here before anything imports OpenGL.) The venv, as built for
``scripts/bench_tactile.py``::

    python -m venv /work/venv-tacto
    /work/venv-tacto/bin/pip install tacto pybullet
    /work/venv-tacto/bin/pip install -U networkx   # tacto 0.0.3's networkx 2.2 breaks on 3.11

Scene: a DIGIT-like sensor (tacto's bundled DIGIT config: camera looking along the link's +x
at a curved gel whose centre is at x = 22 mm, three coloured lights) on a fixed base whose gel
faces up, and a small cylinder (radius 4 mm, length 15 mm, as our peg) lying on the gel under
gravity. tacto indents by the contact force (5 mm at 100 N), and pybullet's cylinder rests
~1 mm above its visual mesh, so the cylinder weighs 3 kg (~25-30 N, a firm grasp) to reach
into the gel. tacto ships no sensor URDF; the minimal one (a box whose +x face is the gel, its
inertial frame the link frame: tacto reads the camera pose from pybullet's base pose, which is
the inertial frame) and the cylinder's (its visual an OBJ mesh: tacto's URDF reader, urdfpy
0.0.22, fails on ``<cylinder>`` visuals) are written to a temp dir. Physics is stepped until
the cylinder rests, then only ``Sensor.render()`` is timed (pose read-back, contact forces,
force-based indentation, one pyrender pass, noise): the cost of one tactile image, physics
excluded. Contact and a non-zero rendered gel depth are checked before timing (without contact
tacto returns a cached static image, a much cheaper and wrong measurement). One ``Sensor`` per
process (a second one fails with an EGL error).

Output (stdout's last line and ``--json``): images/s (median of ``--repeats`` rounds of
``--renders`` renders after ``--warmup``), ms per image, every round, the image shape, versions.
This script must not import rlkd.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

SENSOR_URDF = """<?xml version="1.0"?>
<robot name="digit_like">
  <link name="gel">
    <inertial><origin xyz="0 0 0"/><mass value="0.05"/>
      <inertia ixx="1e-6" ixy="0" ixz="0" iyy="1e-6" iyz="0" izz="1e-6"/></inertial>
    <visual><origin xyz="0.011 0 0.015"/><geometry><box size="0.022 0.02 0.03"/></geometry></visual>
    <collision><origin xyz="0.011 0 0.015"/><geometry><box size="0.022 0.02 0.03"/></geometry>
    </collision>
  </link>
</robot>
"""

CYLINDER_URDF = """<?xml version="1.0"?>
<robot name="peg">
  <link name="peg">
    <inertial><origin xyz="0 0 0"/><mass value="{mass}"/>
      <inertia ixx="1e-5" ixy="0" ixz="0" iyy="1e-5" iyz="0" izz="1e-5"/></inertial>
    <visual><origin xyz="0 0 0"/><geometry><mesh filename="peg.obj"/></geometry></visual>
    <collision><origin xyz="0 0 0"/><geometry><cylinder radius="{radius}" length="{length}"/>
    </geometry></collision>
  </link>
</robot>
"""


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def build_scene(tmp: Path, width: int, height: int, radius: float, length: float, mass: float):
    """pybullet (DIRECT) + one tacto Sensor with the cylinder resting on its gel."""
    import pybullet as p
    import tacto
    import trimesh

    cid = p.connect(p.DIRECT)
    p.setGravity(0, 0, -9.81, physicsClientId=cid)
    (tmp / "sensor.urdf").write_text(SENSOR_URDF)
    (tmp / "peg.urdf").write_text(CYLINDER_URDF.format(radius=radius, length=length, mass=mass))
    # urdfpy 0.0.22 (tacto's URDF reader) cannot mesh a <cylinder> visual (Cylinder.meshes
    # calls len(None)): the visual is the same cylinder as an OBJ mesh, the collision stays a
    # primitive for pybullet.
    trimesh.creation.cylinder(radius=radius, height=length, sections=48).export(
        str(tmp / "peg.obj"))
    # The link's +x (camera -> gel) points up: rotate -90 deg about y.
    up = p.getQuaternionFromEuler([0, -1.5707963267948966, 0])
    sensor_id = p.loadURDF(str(tmp / "sensor.urdf"), [0, 0, 0], up, useFixedBase=True,
                           physicsClientId=cid)
    # Gel surface at world z = 0.022 (link x), gel centre at link z = 0.015 -> world x = -0.015.
    # Cylinder axis along world y (across the gel), lowest point 0.5 mm above the surface.
    lying = p.getQuaternionFromEuler([1.5707963267948966, 0, 0])
    peg_id = p.loadURDF(str(tmp / "peg.urdf"), [-0.015, 0.0, 0.022 + radius + 5e-4], lying,
                        physicsClientId=cid)
    sensor = tacto.Sensor(width=width, height=height, visualize_gui=False, show_depth=False,
                          config_path=tacto.get_digit_config_path(), cid=cid)
    sensor.add_camera(sensor_id, [-1])
    sensor.add_object(str(tmp / "peg.urdf"), peg_id)
    for _ in range(240):  # settle: the cylinder rests, pressed by its weight
        p.stepSimulation(physicsClientId=cid)
    return p, cid, sensor, sensor_id, peg_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=60, help="image width, px (ours: 60)")
    ap.add_argument("--height", type=int, default=80, help="image height, px (ours: 80)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed renders first")
    ap.add_argument("--renders", type=int, default=20, help="renders per timed round")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    ap.add_argument("--radius", type=float, default=0.004)
    ap.add_argument("--length", type=float, default=0.015)
    ap.add_argument("--mass", type=float, default=3.0, help="kg; presses with m g")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args()
    if "rlkd" in sys.modules:  # pragma: no cover - a guard for the rule in the docstring
        raise SystemExit("bench_tacto_peer.py must not import rlkd")

    with tempfile.TemporaryDirectory(prefix="tacto_peer_") as d:
        t0 = time.perf_counter()
        p, cid, sensor, sensor_id, peg_id = build_scene(Path(d), args.width, args.height,
                                                        args.radius, args.length, args.mass)
        build_s = time.perf_counter() - t0
        force = sensor.get_force("cam0")
        total_force = float(sum(force.values()))
        if total_force <= 0:
            raise SystemExit("tacto peer: the cylinder does not touch the gel (no contact "
                             "force), render() would return its cached static image")
        colors, depths = sensor.render()
        image_shape = list(colors[0].shape)
        max_depth = float(max(float(dd.max()) for dd in depths))
        if max_depth <= 0:
            raise SystemExit("tacto peer: the cylinder touches the gel but does not indent it "
                             "in the rendered depth (raise --mass)")
        images_per_render = len(colors)
        for _ in range(args.warmup):
            sensor.render()
        rounds = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(args.renders):
                sensor.render()
            rounds.append(args.renders * images_per_render / (time.perf_counter() - t0))
        p.disconnect(physicsClientId=cid)

    med = statistics.median(rounds)
    res = {
        "peer": "tacto.Sensor.render() (pybullet DIRECT + pyrender, DIGIT config, EGL)",
        "images_per_s": med, "ms_per_image": 1e3 / med, "rounds_images_per_s": rounds,
        "width": args.width, "height": args.height, "image_shape": image_shape,
        "images_per_render": images_per_render, "warmup": args.warmup,
        "renders_per_round": args.renders, "repeats": args.repeats,
        "contact_normal_force_n": total_force, "max_gel_depth_m": max_depth,
        "build_seconds": build_s,
        "scene": {"cylinder_radius_m": args.radius, "cylinder_length_m": args.length,
                  "cylinder_mass_kg": args.mass},
        "versions": {"python": platform.python_version(), "tacto": _version("tacto"),
                     "pybullet": _version("pybullet"), "pyrender": _version("pyrender"),
                     "PyOpenGL": _version("PyOpenGL"), "networkx": _version("networkx"),
                     "numpy": _version("numpy")},
        "env": {"PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM"),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": list(os.getloadavg()),
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))
    print(f"tacto {args.width}x{args.height}: {med:.1f} images/s ({1e3 / med:.1f} ms/image), "
          f"contact {total_force:.2f} N", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
