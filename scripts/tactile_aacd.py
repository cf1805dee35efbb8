"""AACD success study on TactilePegInsertion-v0: teacher, AACD and variants, baselines (issue 14).

    nohup python scripts/tactile_aacd.py --jobs 2 > results/tactile_aacd.log 2>&1 &   # all of it
    python scripts/tactile_aacd.py --report-only --update-readme   # JSON + PNG + README table
    python scripts/tactile_aacd.py --quick --jobs 1   # smoke test: 8 envs, 2 iterations, 16
                                                      # episodes, 1 seed, files in *_quick_runs/

Arms (the README's AACD commands; every run ``--set num_threads=T`` + ``--env-set``,
``OMP_NUM_THREADS=T``): ``teacher`` (ppo, actor on ``critic``, ``tactile_obs=none``,
``TEACHER_STEPS``); on ``tactile_obs=field``, ``STUDENT_STEPS`` each: ``aacd``, ``aacd_dagger``
(``--aacd bc_coef=1 bc_decay=0.95``), ``dagger`` (``rl=false``), ``ppo_scratch`` (ppo, actor on
``[policy, tactile]``), ``no_tactile`` (aacd, actor on ``[policy]``); student seed s distils
teacher seed s. Queue: teachers, then students seed-major, ``--jobs`` at once; a student waits
for its teacher. Resumable per run: the record ``<runs>/<arm>_s<seed>.json`` (command; wall_s:
finished attempts' process time; train_s: the kept iterations' time; env_steps, final training
success, curve) marks it finished; a cut run continues with ``rlkd train --resume DIR --steps
N``; a run directory without a checkpoint is restarted. Each run is
evaluated (python API of ``rlkd eval sim2real --suite nominal --no-twin``) on ``--episodes``
(256) episodes of env seed ``--eval-seed``, the same initial states for every arm, per-episode
success (timeouts fail) in ``<run>/aacd_eval.json``.

Statistics (success ``x[arm]``: seeds x episodes). Per seed: percentile bootstrap over episodes
(:func:`rlkd.sim2real.stats.bootstrap_mean`). Per arm: pooled mean, two-level percentile
bootstrap 95% CI (seeds resampled with replacement, then episode indices, shared by all arms),
Student t interval over per-seed means (the honest one with 3 seeds). Comparisons, same
bootstrap: best student (best of aacd / aacd_dagger / dagger) / teacher, seeds resampled jointly
(student s distils teacher s); aacd - ppo_scratch and aacd - no_tactile, seeds resampled per arm,
plus Welch t over seeds. ``results/tactile_aacd.json``::

    arms: {name: {success: [per seed], ci: [lo, hi], mean, t_ci, per_seed_ci, seeds, steps,
                  wall_s, train_s (means per run), reads, command}}
    comparisons: {best_student_over_teacher | aacd_minus_ppo_scratch | aacd_minus_no_tactile:
                  {arms, value, ci: [lo, hi], welch_t}}
    targets: {name: {value, target, met}}   best >= 0.9 teacher; aacd's CI above ppo_scratch's
             and no_tactile's (lo > hi); study wall time (sum of sessions) <= 150 min
    runs: [record + eval], per_episode_success, shipped, setup, study_wall_s, provenance

Ships: ``rlkd export`` of the seed-0 teacher and of the best student arm's seed-0 run to
``results/tactile_aacd/{teacher,student}.pt``, re-evaluated from the files (``load_policy``, same
episodes; ``reproduces``: every episode equal), and that student's ``rlkd eval sim2real RUN
--suite sensing --no-twin`` report -> ``student_sensing.json``. Plot ``results/tactile_aacd.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rlkd.core.provenance import write_json_atomic as _write
from study_runs import append_jsonl as _append
from study_runs import rel as _rel
from study_runs import run_logged, run_record, study_wall_s, train_resumable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tactile_aacd_stats import (ARMS, T, analyse, plot, table, targets,  # noqa: E402
                                update_readme)

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "TactilePegInsertion-v0"
TEACHER_STEPS, STUDENT_STEPS, NUM_ENVS, EPISODES = 3_000_000, 2_000_000, 128, 256
#: Study-wide env and PPO settings (every arm). Finer actions than TacSL's 10 mm / 0.05 rad and
#: a smaller initial std: with TacSL's scales and std 1, a PPO teacher stayed at 0% success for
#: 1.7M steps (exploration moves ~9 mm a step around a 0.1 mm alignment); with these it seated
#: 78% at 1M steps (probe, seed 0, 0.2 mm clearance).
ENV_SET = ("action_pos_scale=0.002", "action_rot_scale=0.01")
PPO_SET = ("init_noise_std=0.5",)


def _paths(args) -> tuple[Path, Path, Path]:
    """``(report json, runs dir, ship dir)``; ``--quick`` puts all three in the git-ignored
    ``results/tactile_aacd_quick_runs/``."""
    res, stem = ROOT / "results", "tactile_aacd" + ("_quick" if args.quick else "")
    runs = Path(args.runs or res / f"{stem}_runs")
    return (runs if args.quick else res) / f"{stem}.json", runs, runs / "ship" if args.quick \
        else res / "tactile_aacd"


# ------------------------------------------------------------------------- train / evaluate
def train_run(arm: str, seed: int, args) -> Path:
    """One ``rlkd train`` process for (arm, seed); skipped when its record exists."""
    _, runs, _ = _paths(args)
    run_dir, record = runs / f"{arm}_s{seed}", runs / f"{arm}_s{seed}.json"
    if record.exists():
        return run_dir
    steps = args.teacher_steps if arm == "teacher" else args.student_steps
    sets = [f"num_threads={args.threads}", *args.env_set,
            f"tactile_obs={'none' if arm == 'teacher' else 'field'}"]
    flags = [f.replace(T, _rel(runs / f"teacher_s{seed}")) for f in ARMS[arm][0]]
    if args.ppo_set:  # one --ppo flag: the study-wide keys join the arm's own
        at = flags.index("--ppo") + 1 if "--ppo" in flags else len(flags)
        flags[at:at] = ([] if "--ppo" in flags else ["--ppo"]) + list(args.ppo_set)
    t0 = time.time()
    attempts, rows = train_resumable(
        run_dir, steps, "train",
        [ENV_ID, *flags, "--seed", str(seed), "--num-envs", str(args.num_envs), "--set", *sets],
        args.threads)
    _write(record, run_record(attempts, rows, arm=arm, seed=seed, omp_threads=args.threads,
                              jobs=args.jobs))
    print(f"trained {arm} s{seed}: {(time.time() - t0) / 60:.1f} min, training success "
          f"{rows[-1].get('charts/success_rate') or 0:.3f}", flush=True)
    return run_dir


def eval_run(target: str, out: Path, episodes: int, seed: int, tag: dict) -> None:
    """Worker: ``episodes`` nominal episodes of the policy in ``target`` (a run directory or an
    exported file, loaded with :func:`rlkd.policies.load_policy`) -> per-episode success."""
    import torch

    from rlkd.policies import load_policy
    from rlkd.sim2real import evaluate_suite, load_suite

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pol, t0 = load_policy(target), time.time()
    res = evaluate_suite(lambda env: pol, pol.env_id, load_suite("nominal"), episodes=episodes,
                         seed=seed, env_overrides=dict(pol.env_overrides))
    succ = np.nan_to_num(np.asarray(res.per_condition["nominal"]["success"], float), nan=0.0)
    _write(out, {**tag, "target": target, "env_id": pol.env_id,
                 "env_overrides": pol.env_overrides, "episodes": episodes, "seed": seed,
                 "command": f"rlkd eval sim2real {target} --suite nominal --episodes "
                            f"{episodes} --seed {seed} --no-twin (python API)",
                 "eval_s": time.time() - t0, "success": succ.tolist(), "mean": succ.mean()})


def _eval(target: Path, out: Path, args, tag: dict) -> dict:
    """Evaluate in a subprocess; skipped when ``out`` holds this tag, episodes and seed."""
    want = {**tag, "episodes": args.episodes, "seed": args.eval_seed}
    if out.exists() and all(json.loads(out.read_text()).get(k) == v for k, v in want.items()):
        return json.loads(out.read_text())
    run_logged([sys.executable, __file__, "--eval-target", _rel(target), "--eval-out", str(out),
          "--episodes", str(args.episodes), "--eval-seed", str(args.eval_seed),
          "--eval-tag", json.dumps(tag)], args.threads, out.with_suffix(".log"))
    return json.loads(out.read_text())


def schedule(jobs: list[tuple[str, int]], args) -> list[tuple[str, int]]:
    """Train + evaluate ``jobs`` in order, ``--jobs`` at a time; a student first waits for its
    teacher and fails without its record. Returns the failed jobs."""
    _, runs, _ = _paths(args)
    ready = {s: threading.Event() for _, s in jobs}
    for s in {s for _, s in jobs} - {s for a, s in jobs if a == "teacher"}:
        ready[s].set()  # no teacher queued: it finished in an earlier session, or never ran
    failed = []

    def one(job):
        arm, s = job
        try:
            if T in ARMS[arm][0]:
                ready[s].wait()
                if not (runs / f"teacher_s{s}.json").exists():
                    raise RuntimeError(f"no finished teacher_s{s}")
            run_dir = train_run(arm, s, args)
            rec = json.loads(run_dir.with_suffix(".json").read_text())
            ev = _eval(run_dir, run_dir / "aacd_eval.json", args, {"env_steps": rec["env_steps"]})
            print(f"evaluated {arm} s{s}: success {ev['mean']:.3f}", flush=True)
        except Exception as e:  # noqa: BLE001 -- one failed run must not stop the study
            print(f"FAILED {arm} s{s}: {e}", flush=True)
            failed.append(job)
        finally:
            if arm == "teacher":
                ready[s].set()

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(one, jobs))
    return failed


# ---------------------------------------------------------------------------- statistics
def load(args) -> tuple[dict, dict]:
    """``records {arm_sN: record + eval}``, ``success {arm: {seed: (E,)}}`` of evaluated runs."""
    _, runs, _ = _paths(args)
    records, succ = {}, {}
    for arm in ARMS:
        for s in args.seeds:
            rec, ev = runs / f"{arm}_s{s}.json", runs / f"{arm}_s{s}" / "aacd_eval.json"
            if rec.exists() and ev.exists():
                e = json.loads(ev.read_text())
                records[f"{arm}_s{s}"] = {**json.loads(rec.read_text()), "eval": {k: e[k] for k in (
                    "mean", "episodes", "seed", "eval_s", "command", "success")}}
                succ.setdefault(arm, {})[s] = np.asarray(e["success"], float)
    return records, succ


# ------------------------------------------------------------------------------- ship
def ship(args, an: dict) -> None:
    """Export the seed-0 teacher and best student, re-evaluate the files, sensing report."""
    _, runs, out = _paths(args)
    c = an["comparisons"].get("best_student_over_teacher")
    if c is None:
        print("ship: skipped (no evaluated teacher and student of one seed)", flush=True)
        return
    best, s0 = c["arms"][0], min(c["seeds"])
    key = {"best": best, "seed": s0, "episodes": args.episodes, "eval_seed": args.eval_seed,
           "env_steps": [json.loads((runs / f"{a}_s{s0}.json").read_text())["env_steps"]
                         for a in ("teacher", best)]}
    old = json.loads((runs / "ship.json").read_text()) if (runs / "ship.json").exists() else {}
    names = ("teacher.pt", "student.pt", "student_sensing.json")
    if old.get("key") == key and all((out / f).exists() for f in names):
        print(f"ship: {_rel(out)} is up to date", flush=True)
        return
    out.mkdir(parents=True, exist_ok=True)
    info = {"key": key, "seed": s0}
    for name, arm in (("teacher", "teacher"), ("student", best)):
        run, f = runs / f"{arm}_s{s0}", out / f"{name}.pt"
        rec = json.loads(run.with_suffix(".json").read_text())
        run_logged([sys.executable, "-m", "rlkd", "export", _rel(run), "--out", _rel(f), "--note",
              rec["command"]], args.threads, runs / "ship.log")
        tag = {"env_steps": rec["env_steps"], "source": _rel(run), "mtime": f.stat().st_mtime}
        ev = _eval(f, runs / f"ship_{name}_eval.json", args, tag)
        orig = json.loads((run / "aacd_eval.json").read_text())
        same = np.asarray(ev["success"]) == np.asarray(orig["success"])
        info[name] = {"path": _rel(f), "arm": arm, "source": _rel(run), "command": rec["command"],
                      "success": ev["mean"], "run_success": orig["mean"],
                      "episodes_equal": int(same.sum()), "episodes": len(same),
                      "reproduces": bool(same.all())}
        print(f"shipped {_rel(f)} ({arm} s{s0}): success {ev['mean']:.3f} from the file, "
              f"{orig['mean']:.3f} from the run, {same.sum()}/{len(same)} episodes equal",
              flush=True)
    rep = runs / "student_sensing"
    cmd = [sys.executable, "-m", "rlkd", "eval", "sim2real", _rel(runs / f"{best}_s{s0}"),
           "--suite", "sensing", "--episodes", str(args.episodes), "--seed",
           str(args.eval_seed), "--no-twin", "--out", _rel(rep)]
    run_logged(cmd, args.threads, runs / "ship.log")
    shutil.copyfile(rep / "report.json", out / "student_sensing.json")
    skipped = json.loads((rep / "report.json").read_text()).get("skipped", {})
    info["sensing"] = {"path": _rel(out / "student_sensing.json"), "skipped": sorted(skipped),
                       "command": " ".join(["rlkd", *cmd[3:]])}
    _write(runs / "ship.json", info)


# ----------------------------------------------------------------------------- report
def report(args) -> dict:
    from rlkd.core.provenance import command_line, machine_info

    out_json, runs, _ = _paths(args)
    records, succ = load(args)
    if not succ:
        raise SystemExit(f"no finished, evaluated runs under {runs}; run the study first")
    an = analyse(records, succ, args.resamples)
    wall = study_wall_s(runs, records)
    rep = {**an, "targets": targets(an, wall), "study_wall_s": wall,
           "runs": [{**r, "eval": {k: v for k, v in r["eval"].items() if k != "success"}}
                    for r in records.values()],
           "per_episode_success": {k: r["eval"]["success"] for k, r in records.items()},
           "shipped": json.loads((runs / "ship.json").read_text())
           if (runs / "ship.json").exists() else None,
           "missing_runs": [f"{a}_s{s}" for a in args.arms for s in args.seeds
                            if f"{a}_s{s}" not in records],
           "setup": {"env": ENV_ID, "arms": {a: " ".join(ARMS[a][0]) for a in ARMS},
                     **{k: getattr(args, k) for k in (
                         "teacher_steps", "student_steps", "num_envs", "env_set", "ppo_set", "episodes",
                         "eval_seed", "threads", "jobs", "resamples", "quick")}},
           "provenance": {"command": command_line(program_name_only=True),
                          "machine": machine_info(), "written": time.strftime("%F %T")}}
    _write(out_json, rep)
    plot(rep, out_json.with_suffix(".png"))
    text = table(rep)
    if args.update_readme:
        update_readme(text)
    miss = rep["missing_runs"]
    print(f"{text}\n\nwrote {_rel(out_json)} and {_rel(out_json.with_suffix('.png'))}"
          + (f"; missing runs: {', '.join(miss)}" if miss else ""), flush=True)
    return rep


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = ap.add_argument
    add("--quick", action="store_true", help="smoke test: tiny budgets, its own files")
    add("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    add("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3; --quick 1)")
    add("--jobs", type=int, default=2, help="training processes at once")
    add("--threads", type=int, default=1, help="torch and MuJoCo threads per process")
    add("--teacher-steps", type=int, default=None, help=f"default {TEACHER_STEPS:,}")
    add("--student-steps", type=int, default=None, help=f"every student arm; {STUDENT_STEPS:,}")
    add("--num-envs", type=int, default=None, help=f"default {NUM_ENVS}")
    add("--env-set", nargs="*", default=list(ENV_SET), metavar="KEY=VALUE",
        help=f"study-wide env overrides, every arm (default {' '.join(ENV_SET)})")
    add("--ppo-set", nargs="*", default=list(PPO_SET), metavar="KEY=VALUE",
        help=f"study-wide --ppo overrides, every arm (default {' '.join(PPO_SET)})")
    add("--episodes", type=int, default=None, help=f"evaluation episodes per run ({EPISODES})")
    add("--eval-seed", type=int, default=1000, help="env seed of every evaluation")
    add("--resamples", type=int, default=2000)
    add("--runs", default=None, help="run directory (default results/tactile_aacd_runs)")
    add("--no-ship", action="store_true", help="no export, re-evaluation or sensing report")
    add("--report-only", action="store_true", help="JSON, PNG and table from finished runs")
    add("--update-readme", action="store_true", help="write the table between README markers")
    add("--eval-target", help=argparse.SUPPRESS)  # worker: evaluate one policy
    add("--eval-out", help=argparse.SUPPRESS)
    add("--eval-tag", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    q = args.quick
    args.episodes = args.episodes or (16 if q else EPISODES)
    if args.eval_target:
        return eval_run(args.eval_target, Path(args.eval_out), args.episodes, args.eval_seed,
                        json.loads(args.eval_tag))
    args.seeds = list(range(args.seeds or (1 if q else 3)))
    args.num_envs = args.num_envs or (8 if q else NUM_ENVS)
    it = args.num_envs * 24  # ppo's num_steps: --quick trains 2 iterations
    args.teacher_steps = args.teacher_steps or (2 * it if q else TEACHER_STEPS)
    args.student_steps = args.student_steps or (2 * it if q else STUDENT_STEPS)
    _, runs, _ = _paths(args)
    if not args.report_only:
        t0 = time.time()
        jobs = [("teacher", s) for s in args.seeds if "teacher" in args.arms] + [
            (a, s) for s in args.seeds for a in args.arms if a != "teacher"]
        todo = [j for j in jobs if not (runs / f"{j[0]}_s{j[1]}.json").exists()]
        print(f"{len(todo)} of {len(jobs)} runs to train in {_rel(runs)}", flush=True)
        failed = schedule(jobs, args)
        records, succ = load(args)
        if not (args.no_ship or failed) and succ:
            ship(args, analyse(records, succ, args.resamples))
        runs.mkdir(parents=True, exist_ok=True)
        _append(runs / "sessions.jsonl", {"ended": time.strftime("%F %T"), "trained": todo,
                                          "elapsed_s": time.time() - t0, "failed": failed})
        print(f"session done in {(time.time() - t0) / 60:.1f} min"
              + (f"; failed: {failed}" if failed else ""), flush=True)
    report(args)


if __name__ == "__main__":
    main()
