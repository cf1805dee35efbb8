"""Cost of tactile sensing in TactilePegInsertion-v0 against its physics, and against ``tacto``.

    OMP_NUM_THREADS=1 python scripts/bench_tactile.py --threads 1 --compile \\
        --tacto-python /work/venv-tacto/bin/python       # writes results/bench_tactile.json
    python scripts/bench_tactile.py --smoke              # seconds; /tmp/bench_tactile_smoke.json

In one run, at every ``--envs`` size (default 1, 64, 512), interleaved round by round
(``--repeats`` rounds, the median reported; a slow spell of a shared machine then hits every
configuration alike):

* **physics limit**: exactly what ``rlkd bench`` calls the physics limit
  (:func:`rlkd.bench.bench_task_physics_limit`): the env's own trajectories (same seed, start
  states, random actions, resets) re-simulated by ONE ``mujoco.rollout`` call, no Python
  between steps. Its time per env step is the **physics time** ``t_phys``.
* **env steps/s** (:func:`rlkd.bench.bench_batched`, ``rlkd bench``'s timing: random actions,
  warm-up, whole ``step``) with ``tactile_obs`` ``none``, ``field`` (the 20x25 force field per
  pad) and ``both`` (field + the 80x60 RGB tactile image per pad, ``obs["tactile_image"]``).
  ``both`` is skipped, with the reason recorded, where the env does not offer it.

Ratios, per size (keys are the env counts as strings):

* ``none_vs_limit`` = env steps/s without tactile obs / the physics limit's (target >= 0.85
  at 512 envs);
* ``field_vs_physics``, ``both_vs_physics`` = sensing time / physics time, sensing time = env
  step time minus physics time, ``(t_mode - t_phys) / t_phys`` (targets <= 1.0 and <= 2.5).
  This charges the sensing with the rest of the env's Python too (observations, reward,
  resets); ``*_sensing_only_vs_physics`` = ``(t_mode - t_none) / t_phys`` is the tactile part
  alone;
* ``vs_tacto`` = our tactile images/s in ``both`` mode (pads x env steps/s: the whole env step,
  physics included) / ``tacto``'s images/s at the same image size, tacto measured by
  ``scripts/bench_tacto_peer.py`` in its own venv (``--tacto-python``; target >= 100). ``null``
  with ``vs_tacto_reason`` when that venv is not given or fails.

``--threads`` pins the process to that many cores (so the physics limit, which uses every core
the process may use, and the env's MuJoCo threads agree) and sets torch's threads; the env's own
step runs torch on one thread. ``--compile`` sets every ``tactile*compile`` knob the env offers
(``tactile_image_compile``), pre-compiles the shapes resets use, and records dynamo's graph count
per timing (a recompile inside a timing shows up there). Times are wall clock; at one thread
they are CPU time per env step. Provenance: command, git commit (and whether the tree was
dirty), machine, versions, load average, every raw number.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import mujoco
import torch

import rlkd
from rlkd.bench import WARMUP_STEPS, bench_batched, bench_task_physics_limit, steps_for
from rlkd.core.provenance import command_line, machine_info, write_json_atomic
from rlkd.envs.tactile.config import TactilePegConfig
from rlkd.sim.mujoco.model import available_cores

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "TactilePegInsertion-v0"
MODES = ("none", "field", "both")
PEER = ROOT / "scripts" / "bench_tacto_peer.py"
TARGETS = {"none_vs_limit": (">=", 0.85), "field_vs_physics": ("<=", 1.0),
           "both_vs_physics": ("<=", 2.5), "vs_tacto": (">=", 100.0)}


# ---------------------------------------------------------------------------- setup
def pin_threads(threads: int) -> list[int]:
    """Restrict this process to ``threads`` of its cores (the first ones); returns them."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cores and threads < len(cores):
        os.sched_setaffinity(0, cores[:threads])
        cores = cores[:threads]
    torch.set_num_threads(threads)
    return cores


def compile_knobs() -> list[str]:
    """The env's config fields that switch ``torch.compile`` on (e.g. ``tactile_image_compile``)."""
    return [f.name for f in dataclasses.fields(TactilePegConfig)
            if f.name.startswith("tactile") and "compile" in f.name]


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> dict (values as Python literals where they parse)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def probe(mode: str, overrides: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Build a 2-env instance with ``tactile_obs=mode``: its groups and the image's shape, or
    ``(None, reason)`` when the env refuses the mode or lacks its group."""
    want = {"none": (), "field": ("tactile",), "image": ("tactile_image",),
            "both": ("tactile", "tactile_image")}[mode]
    try:
        env = rlkd.make(ENV_ID, num_envs=2, tactile_obs=mode, **overrides)
    except Exception as e:  # noqa: BLE001 - the reason is recorded, not hidden
        return None, f"rlkd.make(tactile_obs={mode!r}) failed: {type(e).__name__}: {e}"
    try:
        obs, _ = env.reset(seed=0)
        missing = [g for g in want if g not in obs]
        if missing:
            return None, f"tactile_obs={mode!r} gives no {missing} group"
        info: dict[str, Any] = {"groups": sorted(obs)}
        if "tactile" in obs:
            info["field_shape"] = list(obs["tactile"].shape[1:])
        if "tactile_image" in obs:
            img = obs["tactile_image"]
            # (N, P, 3, H, W) per the env's manual; also accept channels-last.
            chw = img.ndim == 5 and img.shape[2] == 3
            h, w = (img.shape[-2], img.shape[-1]) if chw else (img.shape[-3], img.shape[-2])
            info.update(image_shape=list(img.shape[1:]), image_dtype=str(img.dtype),
                        images_per_env_step=int(img.shape[1]) if img.ndim == 5 else 1,
                        image_height=int(h), image_width=int(w))
        return info, None
    finally:
        env.close()


def dynamo_graphs() -> int:
    """Graphs ``torch.compile`` has built so far in this process (0 without compile)."""
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001 - diagnostics only
        return -1


def compile_prewarm(n: int, mode: str, overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    """Compile the graphs an ``n``-env run uses before anything is timed: the full batch (a
    warm-up's worth of steps) and the small row counts partial resets observe (1, 2, 3).
    Returns the seconds it took and the graphs it built."""
    t0, g0 = time.perf_counter(), dynamo_graphs()
    env = rlkd.make(ENV_ID, num_envs=n, seed=seed, tactile_obs=mode, **overrides)
    env.reset(seed=seed)
    for m in (1, 2, 3):
        if m < n:
            env._observe(torch.arange(m, device=env.device))
    act = torch.zeros(n, env.act_dim, device=env.device)
    for _ in range(WARMUP_STEPS):
        env.step(act)
    env.close()
    return {"seconds": time.perf_counter() - t0, "new_dynamo_graphs": dynamo_graphs() - g0}


# ---------------------------------------------------------------------------- tacto
def run_tacto(python: str | None, width: int, height: int, repeats: int, renders: int,
              timeout: float) -> tuple[dict[str, Any] | None, str | None]:
    """tacto's images/s from ``bench_tacto_peer.py`` run by ``python`` (its own venv)."""
    if not python:
        return None, "no --tacto-python given (tacto lives in its own venv, see the peer script)"
    if not Path(python).exists():
        return None, f"--tacto-python {python} does not exist (tacto's venv is absent)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYOPENGL_PLATFORM"] = "egl"
    with tempfile.TemporaryDirectory(prefix="bench_tacto_") as d:
        out = Path(d) / "tacto.json"
        cmd = [python, str(PEER), "--width", str(width), "--height", str(height),
               "--repeats", str(repeats), "--renders", str(renders), "--json", str(out)]
        try:
            r = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"tacto peer timed out after {timeout:.0f} s"
        if r.returncode != 0 or not out.exists():
            tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
            return None, f"tacto peer failed (exit {r.returncode}): {tail}"
        res = json.loads(out.read_text())
        res["command"] = " ".join([Path(python).as_posix(), "scripts/bench_tacto_peer.py",
                                   *cmd[2:-2]])
        return res, None


# ---------------------------------------------------------------------------- main
def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def git_dirty() -> bool | None:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, timeout=5, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def check(name: str, value: float | None) -> dict[str, Any]:
    op, target = TARGETS[name]
    met = None if value is None else (value >= target if op == ">=" else value <= target)
    return {"value": value, "target": f"{op} {target}", "met": met}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, nargs="+", default=None, help="default: 1 64 512")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=("none", "field", "image",
                                                                         "both"))
    ap.add_argument("--threads", type=int, default=None,
                    help="cores to use (pins the process; default: all it may use)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the tactile computation where the env offers it")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5)")
    ap.add_argument("--budget", type=int, default=None,
                    help="env steps per timing, steps = budget / N (default 20000)")
    ap.add_argument("--min-steps", type=int, default=20)
    ap.add_argument("--max-steps", type=int, default=None, help="default 2000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="extra env config override (repeatable)")
    ap.add_argument("--tacto-python", default=None,
                    help="python of tacto's venv (e.g. /work/venv-tacto/bin/python)")
    ap.add_argument("--tacto-repeats", type=int, default=None, help="default 5")
    ap.add_argument("--tacto-renders", type=int, default=None, help="per round, default 20")
    ap.add_argument("--tacto-timeout", type=float, default=900.0)
    ap.add_argument("--smoke", action="store_true",
                    help="seconds-long check of the whole script: 1 and 4 envs, one round, "
                         "tiny budgets, written to /tmp (flags given explicitly still win)")
    ap.add_argument("--out", default=None,
                    help="default results/bench_tactile.json (--smoke: /tmp/...smoke.json)")
    args = ap.parse_args()
    smoke = args.smoke
    pick = lambda v, full, quick: v if v is not None else (quick if smoke else full)  # noqa: E731
    sizes = pick(args.envs, [1, 64, 512], [1, 4])
    repeats = pick(args.repeats, 5, 1)
    budget = pick(args.budget, 20_000, 40)
    max_steps = pick(args.max_steps, 2000, 20)
    min_steps = min(args.min_steps, max_steps)
    tacto_repeats, tacto_renders = pick(args.tacto_repeats, 5, 1), pick(args.tacto_renders, 20, 3)
    out = args.out or ("/tmp/bench_tactile_smoke.json" if smoke else
                       str(ROOT / "results" / "bench_tactile.json"))
    threads = args.threads or available_cores()
    cores = pin_threads(threads)
    overrides: dict[str, Any] = {"num_threads": threads, **parse_overrides(args.overrides)}
    knobs = compile_knobs()
    compile_info: dict[str, Any] = {"requested": args.compile, "knobs": knobs}
    if args.compile:
        if knobs:
            overrides.update({k: True for k in knobs})
        else:
            compile_info["note"] = "the env offers no tactile compile knob: eager"
            print("--compile: the env offers no tactile compile knob; timing eager", flush=True)
    load_start, t_start = os.getloadavg(), time.perf_counter()

    # Which modes the env offers (another mode's absence is recorded, not an error).
    modes, skipped, probes = [], {}, {}
    for mode in args.modes:
        info, reason = probe(mode, overrides)
        if info is None:
            skipped[mode] = reason
            print(f"skipping tactile_obs={mode!r}: {reason}", flush=True)
        else:
            modes.append(mode)
            probes[mode] = info
    prewarm = {}
    if args.compile and knobs:
        for n in sizes:
            for mode in modes:
                if mode in ("image", "both"):  # the modes with compiled code
                    prewarm[f"{mode}/{n}"] = compile_prewarm(n, mode, overrides, args.seed)
        print(f"compile pre-warm: {sum(p['seconds'] for p in prewarm.values()):.1f} s, "
              f"{sum(p['new_dynamo_graphs'] for p in prewarm.values())} graphs", flush=True)

    steps = {n: steps_for(n, budget, lo=min_steps, hi=max_steps) for n in sizes}
    runs: dict[str, list[dict[str, Any]]] = {}
    for rnd in range(repeats):
        for n in sizes:
            key = f"limit/{n}"
            r = bench_task_physics_limit(ENV_ID, n, steps[n], args.seed, tactile_obs="none",
                                         **overrides)
            runs.setdefault(key, []).append(r)
            line = [f"round {rnd + 1}/{repeats} N={n:4d}: limit {r['env_steps_per_s']:8.0f}"]
            for mode in modes:
                g0 = dynamo_graphs()
                r = bench_batched(ENV_ID, n, steps[n], seed=args.seed, tactile_obs=mode,
                                  **overrides)
                r["new_dynamo_graphs"] = dynamo_graphs() - g0
                runs.setdefault(f"{mode}/{n}", []).append(r)
                line.append(f"{mode} {r['env_steps_per_s']:8.0f}")
            print("  ".join(line) + " env steps/s", flush=True)

    # Per size: medians, times per env step, ratios.
    table, ratio = [], {k: {} for k in ("none_vs_limit", "field_vs_physics", "both_vs_physics",
                                        "field_sensing_only_vs_physics",
                                        "both_sensing_only_vs_physics", "image_vs_physics")}
    for n in sizes:
        lim = runs[f"limit/{n}"]
        rate_lim = median([r["env_steps_per_s"] for r in lim])
        t_phys = 1.0 / rate_lim
        row: dict[str, Any] = {
            "num_envs": n, "steps": steps[n],
            "physics_limit": {"env_steps_per_s": rate_lim, "us_per_env_step": 1e6 * t_phys,
                              "us_per_substep": 1e6 * t_phys / lim[0]["nstep"],
                              "nstep": lim[0]["nstep"], "threads": lim[0]["threads"],
                              "max_qpos_diff_vs_env": max(
                                  (r["max_qpos_diff_vs_env"] or 0.0) for r in lim),
                              "runs": [r["env_steps_per_s"] for r in lim]}}
        for mode in modes:
            rs = runs[f"{mode}/{n}"]
            rate = median([r["env_steps_per_s"] for r in rs])
            row[mode] = {"env_steps_per_s": rate, "us_per_env_step": 1e6 / rate,
                         "us_sensing_per_env_step": 1e6 * (1.0 / rate - t_phys),
                         "runs": [r["env_steps_per_s"] for r in rs],
                         "build_seconds": [r["build_seconds"] for r in rs],
                         "new_dynamo_graphs": [r["new_dynamo_graphs"] for r in rs]}
        k = str(n)
        if "none" in row:
            ratio["none_vs_limit"][k] = row["none"]["env_steps_per_s"] / rate_lim
            row["none"]["median_round_ratio_vs_limit"] = median(
                [o["env_steps_per_s"] / li["env_steps_per_s"]
                 for o, li in zip(runs[f"none/{n}"], lim)])
        for mode in ("field", "both", "image"):
            if mode not in row:
                continue
            t_mode = 1.0 / row[mode]["env_steps_per_s"]
            ratio[f"{mode}_vs_physics"][k] = (t_mode - t_phys) / t_phys
            if "none" in row and mode != "image":
                t_none = 1.0 / row["none"]["env_steps_per_s"]
                ratio[f"{mode}_sensing_only_vs_physics"][k] = (t_mode - t_none) / t_phys
        table.append(row)
        print(f"N={n:4d}: physics {row['physics_limit']['us_per_env_step']:7.1f} us/env step ("
              f"{row['physics_limit']['us_per_substep']:.1f} us/substep); " + "; ".join(
                  f"{m} {row[m]['us_per_env_step']:7.1f} us" for m in modes)
              + "; " + ", ".join(f"{name} {v[k]:.3f}" for name, v in ratio.items() if k in v),
              flush=True)

    # tacto at our image's size, and the images/s ratio.
    img = probes.get("both") or probes.get("image")
    width, height = (img["image_width"], img["image_height"]) if img else (60, 80)
    tacto, tacto_reason = run_tacto(args.tacto_python, width, height, tacto_repeats,
                                    tacto_renders, args.tacto_timeout)
    vs_tacto, ours_images = None, {}
    img_mode = "both" if "both" in probes else ("image" if "image" in probes else None)
    if img_mode is None:
        tacto_reason = tacto_reason or f"no tactile image mode measured ({skipped})"
    for row in table:
        if img_mode is None:
            break
        pads = probes[img_mode]["images_per_env_step"]
        r = {"mode": img_mode, "images_per_env_step": pads,
             "images_per_s": pads * row[img_mode]["env_steps_per_s"]}
        if "none" in row:
            t_extra = 1.0 / row[img_mode]["env_steps_per_s"] - 1.0 / row["none"]["env_steps_per_s"]
            r["images_per_s_sensing_only"] = pads / t_extra if t_extra > 0 else None
        ours_images[str(row["num_envs"])] = r
    if tacto is not None and ours_images:
        vs_tacto = {k: v["images_per_s"] / tacto["images_per_s"] for k, v in ours_images.items()}
        print("vs tacto (" + f"{tacto['images_per_s']:.1f} images/s): " + ", ".join(
            f"N={k} {v:.0f}x" for k, v in vs_tacto.items()), flush=True)
    else:
        print(f"vs_tacto: null ({tacto_reason})", flush=True)

    at = str(max(sizes))
    best_vs_tacto = max(vs_tacto.values()) if vs_tacto else None
    checks = {"at_num_envs": int(at),
              "none_vs_limit": check("none_vs_limit", ratio["none_vs_limit"].get(at)),
              "field_vs_physics": check("field_vs_physics", ratio["field_vs_physics"].get(at)),
              "both_vs_physics": check("both_vs_physics", ratio["both_vs_physics"].get(at)),
              "vs_tacto": check("vs_tacto", None if not vs_tacto else vs_tacto.get(at))}
    result = {
        "command": command_line([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "smoke": smoke, "env_id": ENV_ID, "machine": machine_info(), "git_dirty": git_dirty(),
        "torch": torch.__version__, "mujoco": mujoco.__version__,
        "threads": threads, "cores": cores, "torch_threads_in_step": 1,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "overrides": overrides, "compile": {**compile_info, "prewarm": prewarm},
        "seed": args.seed, "repeats": repeats, "budget_env_steps": budget,
        "warmup_steps": WARMUP_STEPS, "statistic": "median over rounds",
        "modes": modes, "modes_skipped": skipped, "probes": probes,
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "wall_seconds": time.perf_counter() - t_start,
        "none_vs_limit": ratio["none_vs_limit"] or None,
        "field_vs_physics": ratio["field_vs_physics"] or None,
        "both_vs_physics": ratio["both_vs_physics"] or None,
        "vs_tacto": vs_tacto, "vs_tacto_reason": None if vs_tacto else tacto_reason,
        "field_sensing_only_vs_physics": ratio["field_sensing_only_vs_physics"] or None,
        "both_sensing_only_vs_physics": ratio["both_sensing_only_vs_physics"] or None,
        "image_vs_physics": ratio["image_vs_physics"] or None,
        "ours_images": ours_images, "best_vs_tacto": best_vs_tacto, "tacto": tacto,
        "checks": checks, "results": table,
        "definitions": {
            "t_phys": "1 / physics-limit env steps/s (rlkd.bench.bench_task_physics_limit)",
            "none_vs_limit": "env steps/s (tactile_obs=none) / physics-limit env steps/s",
            "X_vs_physics": "(t_X - t_phys) / t_phys, t_X = 1 / env steps/s (tactile_obs=X)",
            "X_sensing_only_vs_physics": "(t_X - t_none) / t_phys",
            "vs_tacto": "pads x env steps/s (both) / tacto images/s, same image size",
        },
    }
    write_json_atomic(out, result)
    print(f"-> {out}" + (" (SMOKE: not a measurement)" if smoke else ""))


if __name__ == "__main__":
    main()
