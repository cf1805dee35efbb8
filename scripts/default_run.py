"""The README's "default run" figures: wall-clock and final training success of ``rlkd train``
with no arguments, and the ``rlkd play`` table of the trained, scripted and random policies.

    python scripts/default_run.py                      # reuse runs/dr_study/nominal_s0
    python scripts/default_run.py --train-alone        # train a fresh default run, timed alone

By default it reuses the nominal seed-0 run of ``scripts/dr_study.py`` (that run *is* ``rlkd
train`` with default settings: AGVWarehouse-v0, ppo-rdd, 256 envs, 6M steps, seed 0, final video)
and its recorded wall-clock, which was measured with another training sharing the 2 cores (each
process with ``OMP_NUM_THREADS=1``): the JSON says so (``wall_clock.shared_cpu``). With
``--train-alone`` (or when that run is missing) it trains ``rlkd train --out RUN`` itself and
times it, recording the load average before and after so a reader sees whether other processes
competed for the CPU.

The play table runs ``rlkd play RUN --num-envs 256 --steps 800 --seed 123`` and the same for
``--policy scripted`` and ``--policy random`` on AGVWarehouse-v0, and parses their summary line.
Writes ``results/default_run.json`` (command, git commit, machine, raw outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAY = ["--num-envs", "256", "--steps", "800", "--seed", "123"]
LINE = re.compile(r"(\d+) episodes: return ([+-]?[\d.]+), length ([\d.]+), success ([\d.]+)%")


def _rel(p: Path) -> str:
    """``p`` relative to the checkout when inside it (no local paths in results)."""
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def rlkd(*args: str, threads: int | None = None) -> str:
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-m", "rlkd", *args], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return out.stdout + out.stderr


def play(target: str, *extra: str) -> dict:
    cmd = ["play", target, *extra, *PLAY]
    out = rlkd(*cmd)
    m = LINE.search(out)
    if m is None:
        raise RuntimeError(f"rlkd {' '.join(cmd)}: no summary line in its output:\n{out}")
    return {"command": "rlkd " + " ".join(cmd), "episodes": int(m.group(1)),
            "return": float(m.group(2)), "length": float(m.group(3)),
            "success": float(m.group(4)) / 100, "output": m.group(0)}


def main() -> None:
    from rlkd.core.provenance import command_line, machine_info, write_json_atomic

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/dr_study/nominal_s0",
                    help="the default run to reuse (its <run>.train.json holds the wall-clock)")
    ap.add_argument("--train-alone", action="store_true",
                    help="train a fresh default run into --alone-out and time it")
    ap.add_argument("--alone-out", default="runs/default_alone")
    ap.add_argument("--out", default=str(ROOT / "results" / "default_run.json"))
    args = ap.parse_args()
    run = ROOT / args.run
    record = run.with_suffix(".train.json")
    if args.train_alone or not record.exists():
        run = ROOT / args.alone_out
        cmd = ["train", "--out", _rel(run), "--no-progress"]
        load0, t0 = os.getloadavg(), time.time()
        rlkd(*cmd)
        wall = time.time() - t0
        wall_clock = {"seconds": wall, "command": "rlkd " + " ".join(cmd),
                      "source": "timed by this script", "shared_cpu": None,
                      "loadavg_1m_start": load0[0], "loadavg_1m_end": os.getloadavg()[0],
                      "note": "shared_cpu unknown: read the load averages (about 1 = alone on "
                              "the cores of this process)"}
    else:
        rec = json.loads(record.read_text())
        rows0 = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        # A resumed run's recorded wall-clock covers only the part after the resume: use the
        # training loop's own time (sum over iterations of env steps / SPS), video excluded.
        seconds = (sum((r1["env_steps"] - r0) / r1["charts/SPS"] for r0, r1 in
                       zip([0] + [r["env_steps"] for r in rows0[:-1]], rows0))
                   if rec.get("resumed") else rec["wall_s"])
        wall_clock = {"seconds": seconds, "resumed": bool(rec.get("resumed")), "command": rec["command"],
                      "source": _rel(record),
                      "shared_cpu": rec["concurrent_processes"] > 1,
                      "concurrent_processes": rec["concurrent_processes"],
                      "omp_threads": rec["omp_threads"],
                      "loadavg_1m_start": rec["loadavg_1m_start"],
                      "loadavg_1m_end": rec["loadavg_1m_end"],
                      "note": f"measured inside scripts/dr_study.py with "
                              f"{rec['concurrent_processes']} processes (trainings or "
                              f"evaluations) sharing the {os.cpu_count()} cores, each with "
                              f"OMP_NUM_THREADS={rec['omp_threads']}; other users' processes "
                              f"may also have run (see the load averages)"}
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    table = {"trained": play(_rel(run)),
             "scripted": play("AGVWarehouse-v0", "--policy", "scripted"),
             "random": play("AGVWarehouse-v0", "--policy", "random")}
    out = {"study": "default_run", "command": command_line(program_name_only=True),
           "machine": machine_info(), "run": _rel(run),
           "train_config": "rlkd train defaults: AGVWarehouse-v0, ppo-rdd, 256 envs, 6M steps, "
                           "seed 0, final video",
           "wall_clock": wall_clock,
           "final_training": {"env_steps": last["env_steps"],
                              "success_rate": last.get("charts/success_rate"),
                              "episodic_return": last.get("charts/episodic_return"),
                              "mean_sps": sum(r["charts/SPS"] for r in rows) / len(rows)},
           "play": table}
    write_json_atomic(args.out, out)
    m, s = divmod(int(round(wall_clock["seconds"])), 60)
    print(f"wall-clock {m} min {s:02d} s (shared CPU: {wall_clock['shared_cpu']}), final "
          f"training success {100 * last['charts/success_rate']:.1f}%\n")
    print("| policy | episodes | success | return |\n|---|---:|---:|---:|")
    for name, label in (("trained", "trained ppo-rdd (default run)"),
                        ("scripted", "scripted goal-seeking controller"), ("random", "random")):
        r = table[name]
        print(f"| {label} | {r['episodes']:,} | {100 * r['success']:.1f}% | {r['return']:+.2f} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
