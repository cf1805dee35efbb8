"""Motion specs: the ``motion`` string of ``HumanoidMotion-v0`` -> a :class:`MotionLibrary`.

Syntax
------
A spec lists entries, comma-separated; each entry becomes one clip of the library::

    spec    := entry ("," entry)*
    entry   := "@" set ["*" weight]              every entry of a motion set (YAML), weights x weight
             | clip ("+" clip)* ["*" weight]     one clip, or parts played one after the other
    clip    := kind                              walk, turn, jog_in_place, squat, wave
             | "walk@" speed                     walk at speed m/s (0.1-3)
             | "turn@" speed [":" rate]          turn at speed m/s and yaw rate rad/s (-1.2..1.2;
                                                 > 0 left, < 0 right; default 0.5)
             | path ".npz" | path ".bvh"         a clip file (BVH is retargeted)

Examples: ``walk``, ``walk@1.0,turn@0.8:-0.5``, ``walk*2,squat`` (walk drawn twice as often),
``walk@1.0+turn@0.8:0.5`` (a concatenation, blended: :mod:`.mix`), ``@general`` (the shipped
training set), ``@my_clips.yaml,walk@1.2``. A clip is named as written (``turn@0.8:-0.5``);
``"+"`` joins the parts' names. The weights set how often resets draw each clip (default 1).
Concatenations loop (blended back into their first part) when the clip's mode is ``wrap``.

Motion sets (YAML, read with ``yaml.safe_load``)
-----------------------------------------------
``@NAME`` with no path separator and no suffix names a shipped set
(``rlkd/envs/humanoid/assets/motion_sets/NAME.yaml``: ``general``); anything else is a path to a
``.yaml`` / ``.yml`` file. The file is a list of entries, or a mapping with ``clips`` (that list)
and optional defaults ``blend`` (s) and ``mode``::

    blend: 0.5                 # cross-fade of concatenations, s (default 0.5)
    clips:
      - walk@1.0               # a string: one spec entry (no commas), weight 1
      - {motion: turn@0.8:-0.5, weight: 2}
      - {motion: [walk@1.0, squat], blend: 0.4, name: walk_then_squat}
      - {motion: ../mocap/cmu/131_01.bvh, mode: clamp, weight: 3}

Entry keys: ``motion`` (required: one entry of the spec syntax, or a list of clips to
concatenate), ``weight`` (number > 0, multiplies a ``*`` weight), ``name``, ``mode`` (``wrap``
or ``clamp``; default: the env's ``motion_mode``) and ``blend`` (> 0 s). Relative file paths are
read from the YAML file's folder. Sets do not nest. A malformed file or entry raises
``ValueError`` naming the file, the entry (1-based) and the problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..skeleton import Skeleton
from .bvh import load_motion
from .clip import JOINT_RANGE_TOLERANCE, MotionClip
from .library import MotionLibrary
from .mix import BLEND_S, concatenate
from .procedural import PROCEDURAL, procedural_clip

#: Procedural kinds that take a speed (``walk@1.0``), and the speeds allowed, m/s.
SPEED_KINDS = ("walk", "turn")
SPEED_RANGE = (0.1, 3.0)
#: Yaw rates a turn may take (``turn@0.8:-0.5``), rad/s: beyond ~1.15 the stance hip's twist
#: reaches its joint range (45 deg).
TURN_RATE_RANGE = (-1.2, 1.2)
#: The shipped motion sets (``@general``) and mocap clips.
ASSETS = Path(__file__).resolve().parents[1] / "assets"
SETS_DIR = ASSETS / "motion_sets"
ENTRY_KEYS = ("motion", "weight", "name", "mode", "blend")


@dataclass
class ClipEntry:
    """One clip of a spec: ``parts`` (clip items, several = a concatenation), its sampling
    ``weight``, optional ``name`` and ``mode``, the concatenation's ``blend`` (s), the folder
    ``base`` relative file paths are read from, and ``where`` it came from (error messages)."""

    parts: tuple[str, ...]
    weight: float = 1.0
    name: str | None = None
    mode: str | None = None
    blend: float = BLEND_S
    base: Path | None = None
    where: str = "motion"
    label: str = field(default="")


def _number(text: str, what: str, where: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        v = float("nan")
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{where}: {what} must be a number > 0, got {text!r}")
    return v


def _split_weight(item: str, where: str) -> tuple[str, float]:
    """``"walk*2"`` -> ``("walk", 2.0)``; no ``*``: weight 1."""
    head, star, tail = item.rpartition("*")
    if not star:
        return item, 1.0
    return head.strip(), _number(tail.strip(), "the weight after '*'", f"{where} {item!r}")


def parse_spec(spec: str, base: Path | None = None, where: str = "motion",
               allow_sets: bool = True) -> list[ClipEntry]:
    """The entries of ``spec`` (module docstring), motion sets expanded."""
    entries: list[ClipEntry] = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        body, weight = _split_weight(item, where)
        if body.startswith("@"):
            if not allow_sets:
                raise ValueError(f"{where}: {item!r}: motion sets do not nest")
            for e in read_motion_set(body[1:]):
                e.weight *= weight
                entries.append(e)
            continue
        parts = tuple(p.strip() for p in body.split("+"))
        if not all(parts):
            raise ValueError(f"{where} {item!r}: empty part in a '+' concatenation")
        entries.append(ClipEntry(parts, weight, base=base, where=where, label=body))
    return entries


def resolve_set(name: str) -> Path:
    """The YAML file of ``@name``: a shipped set's file, or ``name`` as a path."""
    if "/" not in name and "\\" not in name and not Path(name).suffix:
        path = SETS_DIR / f"{name}.yaml"
        if not path.exists():
            shipped = sorted(p.stem for p in SETS_DIR.glob("*.yaml"))
            raise ValueError(f"motion '@{name}': no such shipped motion set (shipped: {shipped}; "
                             f"or give a path to a .yaml file)")
        return path
    return Path(name)


def read_motion_set(name: str) -> list[ClipEntry]:
    """The entries of the motion set ``name`` (``@name`` in a spec; module docstring)."""
    import yaml

    path = resolve_set(name)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"motion set {str(path)!r}: expected a .yaml or .yml file")
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"motion set {str(path)!r}: no such file") from None
    except yaml.YAMLError as e:
        raise ValueError(f"motion set {str(path)!r}: not valid YAML ({e})") from None
    defaults = {}
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"clips", "blend", "mode"})
        if unknown:
            raise ValueError(f"motion set {str(path)!r}: unknown top-level keys {unknown} "
                             f"(allowed: clips, blend, mode)")
        defaults = {k: data[k] for k in ("blend", "mode") if k in data}
        data = data.get("clips")
    if not isinstance(data, list) or not data:
        raise ValueError(f"motion set {str(path)!r}: expected a non-empty list of clips (or a "
                         f"mapping with 'clips')")
    out = []
    for i, raw in enumerate(data, 1):
        where = f"motion set {str(path)!r} entry {i}"
        raw = {"motion": raw} if isinstance(raw, str) else raw
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a string or a mapping, got {raw!r}")
        unknown = sorted(set(raw) - set(ENTRY_KEYS))
        if unknown or "motion" not in raw:
            raise ValueError(f"{where}: " + (f"unknown keys {unknown}" if unknown else
                                              "missing 'motion'") + f" (keys: {list(ENTRY_KEYS)})")
        opts = {**defaults, **raw}
        motion = opts["motion"]
        if isinstance(motion, list):
            if len(motion) < 2 or not all(isinstance(m, str) and m.strip() for m in motion):
                raise ValueError(f"{where}: a 'motion' list concatenates two or more clip names, "
                                 f"got {motion!r}")
            motion = "+".join(m.strip() for m in motion)
        if not isinstance(motion, str) or "," in motion or not motion.strip():
            raise ValueError(f"{where}: 'motion' must be one clip or concatenation (no commas), "
                             f"got {motion!r}")
        entries = parse_spec(motion, base=path.parent, where=where, allow_sets=False)
        e = entries[0]
        if "weight" in opts:
            e.weight *= _number(opts["weight"], "'weight'", where)
        if "blend" in opts:
            e.blend = _number(opts["blend"], "'blend'", where)
        if opts.get("mode") is not None and opts["mode"] not in ("wrap", "clamp"):
            raise ValueError(f"{where}: 'mode' must be 'wrap' or 'clamp', got {opts['mode']!r}")
        e.mode = opts.get("mode")
        if "name" in raw:
            if not isinstance(raw["name"], str) or not raw["name"].strip():
                raise ValueError(f"{where}: 'name' must be a non-empty string")
            e.name = raw["name"].strip()
        out.append(e)
    return out


def _part_clip(item: str, e: ClipEntry, skeleton: Skeleton, tol: float) -> MotionClip:
    """One clip item (no ``+``, no ``*``) of entry ``e``."""
    kind, at, arg = item.partition("@")
    if at and kind in SPEED_KINDS:
        speed, colon, rate = arg.partition(":")
        try:
            v = float(speed)
        except ValueError:
            v = float("nan")
        if not SPEED_RANGE[0] <= v <= SPEED_RANGE[1]:  # also refuses NaN
            raise ValueError(f"motion {item!r}: the speed after '@' must be a number of m/s "
                             f"in [{SPEED_RANGE[0]:g}, {SPEED_RANGE[1]:g}], got {speed!r}"
                             + ("" if e.where == "motion" else f" ({e.where})"))
        yaw_rate = None
        if colon:
            if kind != "turn":
                raise ValueError(f"motion {item!r}: only turn takes a yaw rate ('turn@0.8:-0.5')")
            try:
                yaw_rate = float(rate)
            except ValueError:
                yaw_rate = float("nan")
            if not TURN_RATE_RANGE[0] <= yaw_rate <= TURN_RATE_RANGE[1]:
                raise ValueError(f"motion {item!r}: the yaw rate after ':' must be a number of "
                                 f"rad/s in [{TURN_RATE_RANGE[0]:g}, {TURN_RATE_RANGE[1]:g}], "
                                 f"got {rate!r}")
        clip = procedural_clip(kind, skeleton, speed=v, yaw_rate=yaw_rate)
        clip.name = item
        return clip
    if at and Path(item).suffix.lower() not in (".npz", ".bvh"):
        raise ValueError(f"motion {item!r}: only walk and turn take a speed ('walk@1.0')")
    if item in PROCEDURAL:
        return procedural_clip(item, skeleton)
    if Path(item).suffix.lower() in (".npz", ".bvh"):
        path = Path(item)
        if e.base is not None and not path.is_absolute():
            path = e.base / path
        return load_motion(path, skeleton, joint_range_tolerance=tol)
    raise ValueError(f"motion {item!r} is neither a procedural kind {list(PROCEDURAL)} "
                     f"nor a .npz/.bvh file" + ("" if e.where == "motion" else f" ({e.where})"))


def build_clip(e: ClipEntry, skeleton: Skeleton, mode: str,
               tol: float = JOINT_RANGE_TOLERANCE) -> MotionClip:
    """The clip of entry ``e`` (its parts concatenated, looping when its mode is ``wrap``)."""
    parts = [_part_clip(p, e, skeleton, tol) for p in e.parts]
    if len(parts) == 1:
        clip = parts[0]
    else:
        for p in parts:  # the joint columns of every part in the skeleton's order
            p.to_skeleton_order(skeleton, p.name)
        clip = concatenate(parts, blend=e.blend, loop=(e.mode or mode) == "wrap", name=e.label)
    if e.name:
        clip.name = e.name
    return clip


def load_library(spec: str, skeleton: Skeleton, device, mode: str,
                 joint_range_tolerance: float = JOINT_RANGE_TOLERANCE) -> MotionLibrary:
    """A :class:`MotionLibrary` from ``spec`` (see the module docstring) on ``device`` with
    ``mode`` ``"wrap"`` or ``"clamp"`` for clips whose entry sets none (a clip further than
    ``joint_range_tolerance`` rad outside a joint range is refused); clip weights from the
    spec."""
    entries = parse_spec(spec)
    if not entries:
        raise ValueError("motion is empty: name at least one clip")
    clips = [build_clip(e, skeleton, mode, joint_range_tolerance) for e in entries]
    return MotionLibrary(clips, skeleton, device=device, mode=mode,
                         joint_range_tolerance=joint_range_tolerance,
                         weights=[e.weight for e in entries], modes=[e.mode for e in entries])
