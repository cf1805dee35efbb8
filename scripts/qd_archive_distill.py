"""QD study (issue 16): ME vs PGA-ME vs DCG-ME on AGVOmni-v0 / AGVStyle-v0, archive
distillation (td3, bc, dagger), evaluation throughput.

    nohup python scripts/qd_archive_distill.py --jobs 2 > results/qd_archive_distill.log 2>&1 &
    python scripts/qd_archive_distill.py --report-only     # JSON + PNGs + README table again
    python scripts/qd_archive_distill.py --quick           # smoke test: tiny budgets, 20-step
                                                           # evaluations, files in *_quick_runs/

Each run is ``rlkd.qd.run_qd`` (CPU presets: 300 critic / 50 PG steps per iteration, replay
100k; batch 256; the same budget of ``--evaluations`` for every algorithm) followed by the
distillations of ``--methods`` its archive has: ``td3`` (dcg-me only, the conditioned actor),
``bc`` and ``dagger`` (every algorithm; ``--bc-hidden`` widths), evaluated as in
:mod:`rlkd.qd.distill`. One process per run (``--jobs`` at once, ``OMP_NUM_THREADS=--threads``
each); a run's record ``<runs>/<task>_<algo>_s<seed>.json`` marks
it finished (skipped next time); a run cut mid-way resumes from its ``archive.pt`` (exact).

Output ``results/qd_archive_distill.json``::

    runs: [{task, algo, seed, evaluations, qd_score, coverage, max_fitness, seconds,
            distilled: {td3|bc|dagger: {qd_score_pct, desc_error_cells,
                                        reinserted_qd_score_pct, ...}},
            time_split: {eval_s, archive_s, critic_s, pg_s}, env_steps_bound}]
          (seconds: the iterations' wall-clock from metrics.jsonl, resumes included; the
          distillations' own seconds are in distilled[method].seconds)
    summary: {task: {algo: {metric: {mean, lo, hi, n}}}}      (bootstrap 95% CI over seeds)
    ratios: {task: {"dcg-me/pga-me": {...}, "dcg-me/me": {...}}}  (QD-score ratio, bootstrap CI)
    throughput: {batched, sequential, pyribs_loop}            (evaluations/s, AGVOmni-v0)

QD-score = sum over filled cells of (fitness - fitness_low): offset 2 on AGVOmni (fitness in
[-2, 0]), 1 on AGVStyle ([-1, 2]); 32 x 32 cells. One evaluation = one episode of at most 250
control steps of the batched env (``env_steps_bound`` = evaluations x 250).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ALGOS = ("me", "pga-me", "dcg-me")
SEEDS = {"AGVOmni-v0": 5, "AGVStyle-v0": 3}
METRICS = ("qd_score", "coverage", "max_fitness", "seconds")
DISTILL_METRICS = ("qd_score_pct", "desc_error_cells", "reinserted_qd_score_pct")
#: In the JSON summary only (runs since they were measured): pi's episodes that ended early
#: (AGVOmni: collisions) and the descriptor error over the others.
EXTRA_DISTILL_METRICS = ("early_end_rate", "desc_error_cells_full_length")
#: Distillation methods in report order (:mod:`rlkd.qd.distill`); td3 only on dcg-me runs.
DISTILL_METHODS = ("td3", "bc", "dagger")
#: --quick: tiny networks and step counts, 20-step evaluations (a smoke test of the pipeline).
QUICK_OVERRIDES = dict(num_critic_training_steps=4, num_pg_training_steps=3,
                       critic_hidden=[32, 32], policy_hidden=[8, 8], replay_size=20_000,
                       transitions_batch_size=16)
QUICK_ENV = {"max_episode_steps": 20}


def _paths(args) -> tuple[Path, Path]:
    """``(report json, run directory)``; ``--quick`` keeps everything in its (git-ignored) run
    directory, ``results/qd_archive_distill_quick_runs/``."""
    stem = "qd_archive_distill_quick" if args.quick else "qd_archive_distill"
    runs = Path(args.runs or Path(args.results) / f"{stem}_runs")
    return (runs if args.quick else Path(args.results)) / f"{stem}.json", runs


def _qd_overrides(pairs) -> dict:
    """``--qd key=value`` -> DCGMEConfig overrides (values parsed as YAML, as ``rlkd qd``)."""
    from rlkd.train.cli import parse_overrides

    return parse_overrides(tuple(pairs or ()), flag="--qd")


def run_one(task: str, algo: str, seed: int, args) -> dict:
    """One run + its distillations (in this process); writes and returns its record."""
    import torch

    from rlkd.core.provenance import write_json_atomic
    from rlkd.qd.distill import DistillConfig, distill_archive, write_distilled
    from rlkd.qd.run import CHECKPOINT, run_qd
    from rlkd.qd.tasks import get_task
    from rlkd.train.checkpoint import load_checkpoint

    torch.set_num_threads(args.threads)
    _, runs = _paths(args)
    run_dir = runs / f"{task}_{algo}_s{seed}"
    record = run_dir.with_suffix(".json")
    overrides = {**(QUICK_OVERRIDES if args.quick else {}), **_qd_overrides(args.qd)}
    env = dict(QUICK_ENV) if args.quick else {}
    bc = DistillConfig(bc_hidden=tuple(args.bc_hidden), **{
        k: getattr(args, k) for k in ("dagger_rounds", "dagger_steps")
        if getattr(args, k) is not None})
    if args.quick:
        bc = dataclasses.replace(bc, bc_steps=50, dagger_rounds=1, dagger_steps=20)
    t0 = time.perf_counter()
    if (run_dir / CHECKPOINT).exists():
        res = run_qd(resume=run_dir, evaluations=args.evaluations, progress=False,
                     distill="none", videos=False)
    else:
        res = run_qd(task, algo, args.evaluations, args.batch_size, seed, run_dir,
                     overrides=overrides, env_overrides=env, progress=False, distill="none",
                     videos=args.videos)
    seconds = time.perf_counter() - t0
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()
            if ln.strip()]
    split = {k: float(sum(r.get(f"time/{k}", 0.0) for r in rows))
             for k in ("eval_s", "archive_s", "critic_s", "pg_s")}
    # The algorithm's wall-clock summed over iterations (a resumed run counts all of them).
    iter_seconds = float(sum(args.batch_size / r["qd/evals_per_s"] for r in rows))
    state = load_checkpoint(run_dir / CHECKPOINT)["state"]
    distilled = {}
    for method in [m for m in args.methods if m != "td3" or algo == "dcg-me"]:
        policy, m = distill_archive(get_task(task), state, method, bc, env)
        write_distilled(run_dir, policy, m)
        distilled[method] = m
    out = {"task": task, "algo": algo, "seed": seed, "evaluations": res["evaluations"],
           "qd_score": res["qd_score"], "coverage": res["coverage"],
           "max_fitness": res["max_fitness"], "seconds": iter_seconds,
           "process_seconds": seconds,
           "distilled": distilled, "time_split": split,
           "env_steps_bound": res["evaluations"] * get_task(task).episode_steps,
           "threads": args.threads, "quick": bool(args.quick),
           "distill_config": dataclasses.asdict(bc), "qd_overrides": _qd_overrides(args.qd)}
    write_json_atomic(record, out)
    return out


def throughput(args) -> dict:
    """Evaluations/s on AGVOmni-v0 of ``--throughput-batch`` policies batched vs one policy at a
    time on the same (batched, num_envs=1) env vs a pyribs-style ask/tell loop with one
    gymnasium env per solution (numpy MLP); the first policies' fitness agree across the three."""
    import gymnasium
    import torch
    from ribs.archives import GridArchive
    from ribs.emitters import IsoLineEmitter
    from ribs.schedulers import Scheduler

    import rlkd  # noqa: F401  (registers rlkd/<id> in gymnasium)
    from rlkd.qd import PolicyShape, evaluate_population, get_task

    torch.set_num_threads(args.threads)
    task = get_task("AGVOmni-v0")
    env_cfg = {**task.env_overrides, "max_episode_steps": task.episode_steps,
               **(QUICK_ENV if args.quick else {})}
    n, n_seq = args.throughput_batch, args.throughput_sequential
    env = task.make_env(n, **(QUICK_ENV if args.quick else {}))
    shape = PolicyShape(env.observation_spaces["policy"].shape[0], (64, 64), env.act_dim)
    params = shape.init(n, torch.Generator().manual_seed(0))
    t = time.perf_counter()
    batched = evaluate_population(task, env, shape, params, keep_transitions=False)
    t_batched = time.perf_counter() - t
    one = task.make_env(1, **(QUICK_ENV if args.quick else {}))
    t = time.perf_counter()
    seq = [evaluate_population(task, one, shape, params[i:i + 1], keep_transitions=False)
           for i in range(n_seq)]
    t_seq = time.perf_counter() - t

    def gym_eval(x: np.ndarray) -> tuple[float, np.ndarray]:
        genv = gymnasium.make("rlkd/AGVWarehouse-v0", obs_groups=["policy", "critic"],
                              **env_cfg)
        inner = genv.unwrapped.env
        inner.rng.set_streams(torch.zeros(1, dtype=torch.int64))
        genv.reset(seed=task.reset_seed)
        task.reset(inner)  # the task's fixed start, as in the batched evaluation
        o = {k: v[0].numpy() for k, v in inner.get_observations().items()}
        obs = o["policy"]
        layers = [(w[0].numpy(), b[0].numpy())
                  for w, b in shape.unflatten(torch.as_tensor(x[None], dtype=torch.float32))]
        energy, collided = 0.0, False
        for _ in range(task.episode_steps):
            h = obs
            for i, (w, b) in enumerate(layers):
                h = h @ w + b
                h = np.maximum(h, 0) if i < len(layers) - 1 else np.tanh(h)
            energy += float(np.mean(h.astype(np.float64) ** 2))
            o, _, term, trunc, info = genv.step(h.astype(np.float32))
            obs = o["policy"]
            if term or trunc:
                collided = bool(info.get("episode", {}).get("collision", False))
                break
        pos = o["critic"][inner.observation_layout["critic"]["position"]] * np.asarray(inner.world)
        genv.close()
        return -energy / task.episode_steps - float(collided), pos

    archive = GridArchive(solution_dim=shape.num_params, dims=(32, 32),
                          ranges=[(0, 16), (0, 12)])
    emitter = IsoLineEmitter(archive, iso_sigma=0.005, line_sigma=0.05,
                             initial_solutions=params[:n_seq].numpy(), batch_size=n_seq, seed=0)
    scheduler = Scheduler(archive, [emitter])
    t = time.perf_counter()
    sols = scheduler.ask()  # the first ask returns the initial solutions
    out = [gym_eval(x) for x in sols]
    scheduler.tell(np.array([o[0] for o in out]), np.array([o[1] for o in out]))
    t_gym = time.perf_counter() - t
    agree = float(max(abs(out[i][0] - float(batched.fitness[i])) for i in range(n_seq)))
    agree_seq = float(max(abs(float(seq[i].fitness[0]) - float(batched.fitness[i]))
                          for i in range(n_seq)))
    r = {"batched": n / t_batched, "sequential": n_seq / t_seq, "pyribs_loop": n_seq / t_gym,
         "batch_size": n, "sequential_policies": n_seq, "threads": args.threads,
         "max_abs_fitness_diff_sequential": agree_seq, "max_abs_fitness_diff_pyribs": agree}
    r["batched_over_sequential"] = r["batched"] / r["sequential"]
    r["batched_over_pyribs_loop"] = r["batched"] / r["pyribs_loop"]
    return r


# ---------------------------------------------------------------------- statistics and report
def _ratio_ci(a: np.ndarray, b: np.ndarray, resamples: int = 4000, seed: int = 0) -> dict:
    """mean(a) / mean(b) with a percentile-bootstrap 95% CI (seeds resampled independently)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        return {"ratio": float("nan"), "lo": float("nan"), "hi": float("nan")}
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, len(a), (resamples, len(a)))].mean(1)
    rb = b[rng.integers(0, len(b), (resamples, len(b)))].mean(1)
    ratios = ra / rb
    return {"ratio": float(a.mean() / b.mean()), "lo": float(np.percentile(ratios, 2.5)),
            "hi": float(np.percentile(ratios, 97.5)), "n": [len(a), len(b)]}


def summarize(runs: list[dict]) -> tuple[dict, dict]:
    from rlkd.sim2real.stats import bootstrap_mean

    summary: dict = {}
    for task in SEEDS:
        for algo in ALGOS:
            rs = [r for r in runs if r["task"] == task and r["algo"] == algo]
            if not rs:
                continue
            s = {m: bootstrap_mean(np.array([r[m] for r in rs])) for m in METRICS}
            for method in DISTILL_METHODS:
                ds = [r["distilled"][method] for r in rs if method in r["distilled"]]
                if ds:
                    s[method] = {m: bootstrap_mean(np.array([d[m] for d in ds]))
                                 for m in DISTILL_METRICS}
                    s[method].update({m: bootstrap_mean(np.array([d[m] for d in ds if m in d]))
                                      for m in EXTRA_DISTILL_METRICS
                                      if any(m in d for d in ds)})  # n: the runs that have it
                    # The elites under action noise (the same in every method's entry).
                    noisy = [d["elite_noise"] for d in ds if d.get("elite_noise")]
                    for i, row in enumerate(noisy[0] if noisy else []):
                        s[method][f"elite_desc_error_cells_noise_{row['sigma']:g}"] = \
                            bootstrap_mean(np.array([n[i]["desc_error_cells"] for n in noisy]))
            summary.setdefault(task, {})[algo] = s
    ratios: dict = {}
    for task in SEEDS:
        q = {a: [r["qd_score"] for r in runs if r["task"] == task and r["algo"] == a]
             for a in ALGOS}
        ratios[task] = {f"dcg-me/{b}": _ratio_ci(q["dcg-me"], q[b]) for b in ("pga-me", "me")}
    return summary, ratios


def _fmt(s: dict, scale: float = 1.0, digits: int = 1) -> str:
    if s["n"] == 0:
        return "-"
    m = f"{scale * s['mean']:.{digits}f}"
    return m if not np.isfinite(s["lo"]) else f"{m} [{scale * s['lo']:.{digits}f}, " \
                                              f"{scale * s['hi']:.{digits}f}]"


def table(report: dict) -> str:
    """The README table (markdown): mean [bootstrap 95% CI] over seeds."""
    methods = [m for m in DISTILL_METHODS
               if any(m in s for algos in report["summary"].values() for s in algos.values())]
    heads = [f"distilled {m}: QD % / error cells / re-inserted %" if i == 0 else f"{m}: same"
             for i, m in enumerate(methods)]
    lines = ["| task | algo | seeds | QD-score | coverage % | max fitness | minutes | "
             + " | ".join(heads) + " |", "|---|---|---|---|---|---|---|" + "---|" * len(heads)]
    for task, algos in report["summary"].items():
        for algo, s in algos.items():
            dist = []
            for method in methods:
                d = s.get(method)
                dist.append("-" if d is None else " / ".join(
                    f"{d[m]['mean']:.{1 if m != 'desc_error_cells' else 2}f}"
                    for m in DISTILL_METRICS))
            lines.append(f"| {task} | {algo} | {s['qd_score']['n']} | {_fmt(s['qd_score'])} | "
                         f"{_fmt(s['coverage'], 100)} | {_fmt(s['max_fitness'], 1, 3)} | "
                         f"{_fmt(s['seconds'], 1 / 60)} | " + " | ".join(dist) + " |")
    t = report.get("throughput") or {}
    if t:
        lines.append(f"\nThroughput (AGVOmni-v0, {t['threads']} thread(s)): {t['batch_size']} "
                     f"policies batched {t['batched']:.0f} evaluations/s; one at a time "
                     f"{t['sequential']:.1f}/s ({t['batched_over_sequential']:.0f}x); pyribs-style "
                     f"ask/tell, one gymnasium env per solution {t['pyribs_loop']:.1f}/s "
                     f"({t['batched_over_pyribs_loop']:.0f}x).")
    for task, r in report.get("ratios", {}).items():
        parts = [f"{k} {v['ratio']:.2f} [{v['lo']:.2f}, {v['hi']:.2f}]" for k, v in r.items()
                 if np.isfinite(v["ratio"])]
        if parts:
            lines.append(f"\nQD-score ratios on {task}: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def plots(report: dict, runs_dir: Path, stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlkd.core.atomic import atomic_path

    out = []
    fig, axes = plt.subplots(1, len(SEEDS), figsize=(10, 3.8))
    for ax, task in zip(axes, SEEDS):
        for algo in ALGOS:
            curves = []
            for r in report["runs"]:
                if r["task"] == task and r["algo"] == algo:
                    p = runs_dir / f"{task}_{algo}_s{r['seed']}" / "metrics.jsonl"
                    rows = [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
                    curves.append([(x["qd/evaluations"], x["qd/qd_score"]) for x in rows])
            if not curves:
                continue
            k = min(len(c) for c in curves)
            xs = np.array([c[i][0] for c in curves[:1] for i in range(k)])
            ys = np.array([[c[i][1] for i in range(k)] for c in curves])
            ax.plot(xs, ys.mean(0), label=f"{algo} ({len(curves)})")
            ax.fill_between(xs, ys.min(0), ys.max(0), alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("QD-score")
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.append(stem.with_name(stem.name + "_qd_score.png"))
    with atomic_path(out[-1], suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(DISTILL_METRICS), figsize=(12, 3.6))
    for ax, m in zip(axes, DISTILL_METRICS):
        labels, vals, errs = [], [], []
        for task, algos in report["summary"].items():
            for algo, s in algos.items():
                for method in DISTILL_METHODS:
                    if method in s:
                        d = s[method][m]
                        labels.append(f"{task[3:-3]}\n{algo}\n{method}")
                        vals.append(d["mean"])
                        errs.append([d["mean"] - d["lo"] if np.isfinite(d["lo"]) else 0,
                                     d["hi"] - d["mean"] if np.isfinite(d["hi"]) else 0])
        ax.bar(range(len(vals)), vals, yerr=np.array(errs).T if errs else None, capsize=3)
        ax.set_xticks(range(len(vals)), labels, fontsize=6)
        ax.set_title(m)
    fig.tight_layout()
    out.append(stem.with_name(stem.name + "_distill.png"))
    with atomic_path(out[-1], suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out


def update_readme(path: Path, text: str, marker: str = "qd_archive_distill") -> None:
    """Replace the block between the ``<marker>:table`` markers of ``path``."""
    begin, end = f"<!-- {marker}:table -->", f"<!-- /{marker}:table -->"
    s = path.read_text(encoding="utf-8")
    if begin not in s or end not in s:
        raise SystemExit(f"error: {path} lacks the {begin} ... {end} markers")
    head, rest = s.split(begin, 1)
    path.write_text(head + begin + "\n" + text + rest[rest.index(end):], encoding="utf-8")


def report(args, throughput_result: dict | None) -> dict:
    from rlkd.core.provenance import write_json_atomic

    out_json, runs_dir = _paths(args)
    runs = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*_s[0-9]*.json"))]
    old = json.loads(out_json.read_text()) if out_json.exists() else {}
    summary, ratios = summarize(runs)
    rep = {"runs": runs, "summary": summary, "ratios": ratios,
           "throughput": throughput_result or old.get("throughput"),
           "setup": {"evaluations": args.evaluations, "batch_size": args.batch_size,
                     "cells": [32, 32], "qd_offset": {"AGVOmni-v0": 2.0, "AGVStyle-v0": 1.0},
                     "presets": "CPU (300 critic steps, 50 PG steps per iteration, replay 100k)",
                     "quick": bool(args.quick)}}
    write_json_atomic(out_json, rep)
    md = out_json.with_suffix(".md")
    md.write_text(table(rep))
    if args.update_readme:
        update_readme(ROOT / "README.md", table(rep), args.readme_marker)
    pngs = plots(rep, runs_dir, out_json.with_suffix("")) if runs else []
    print(f"wrote {out_json}, {md}, {', '.join(map(str, pngs))}")
    return rep


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny budgets, own output files")
    ap.add_argument("--evaluations", type=int, default=None, help="per run (default 25,600)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--tasks", nargs="+", default=list(SEEDS))
    ap.add_argument("--algos", nargs="+", default=list(ALGOS))
    ap.add_argument("--seeds", type=int, default=None, help="seeds per task (default 5 / 3)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (one process each)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--videos", action="store_true", help="write each run's videos")
    ap.add_argument("--results", default=str(ROOT / "results"))
    ap.add_argument("--runs", default=None, help="run directories (default results/<stem>_runs)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--update-readme", action="store_true",
                    help="write the table into README.md between its markers")
    ap.add_argument("--readme-marker", default="qd_archive_distill",
                    help="the README block --update-readme fills (<!-- NAME:table -->)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--throughput-batch", type=int, default=None, help="default 1024")
    ap.add_argument("--throughput-sequential", type=int, default=None, help="default 8")
    ap.add_argument("--methods", nargs="+", choices=DISTILL_METHODS, default=["td3", "bc"],
                    help="distillations of each archive (td3 on dcg-me runs only)")
    ap.add_argument("--bc-hidden", nargs="+", type=int, default=[128, 128],
                    help="hidden widths of the bc / dagger policy (the committed study: 128 128)")
    ap.add_argument("--dagger-rounds", type=int, default=None,
                    help="DAgger rounds (default DistillConfig's, 10)")
    ap.add_argument("--dagger-steps", type=int, default=None,
                    help="Adam steps per DAgger round (default DistillConfig's, 2000)")
    ap.add_argument("--qd", nargs="+", default=[], metavar="KEY=VALUE",
                    help="DCGMEConfig overrides for every run, e.g. robust_noise=0.05")
    ap.add_argument("--run", nargs=3, metavar=("TASK", "ALGO", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    q = args.quick
    args.evaluations = args.evaluations or (64 if q else 25_600)
    args.batch_size = args.batch_size or (32 if q else 256)
    args.throughput_batch = args.throughput_batch or (64 if q else 1024)
    args.throughput_sequential = args.throughput_sequential or (2 if q else 8)
    if args.run:
        task, algo, seed = args.run
        r = run_one(task, algo, int(seed), args)
        print(json.dumps({k: r[k] for k in ("task", "algo", "seed", "qd_score", "coverage",
                                            "seconds")}))
        return
    _, runs_dir = _paths(args)
    if not args.report_only:
        # seed-major within a task: a study cut short still compares the algorithms on
        # the same seeds
        todo = [(t, a, s) for t in args.tasks
                for s in range(args.seeds or (1 if q else SEEDS[t])) for a in args.algos
                if not (runs_dir / f"{t}_{a}_s{s}.json").exists()]
        print(f"{len(todo)} runs to do in {runs_dir}", flush=True)
        passthrough = [f for f in ("--quick", "--videos") if getattr(args, f[2:])]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}

        def launch(job):
            t, a, s = job
            cmd = [sys.executable, __file__, "--run", t, a, str(s), "--threads",
                   str(args.threads), "--evaluations", str(args.evaluations), "--batch-size",
                   str(args.batch_size), "--results", args.results, "--methods",
                   *args.methods, "--bc-hidden", *map(str, args.bc_hidden), *passthrough]
            if args.qd:
                cmd += ["--qd", *args.qd]
            for k in ("dagger_rounds", "dagger_steps"):
                if getattr(args, k) is not None:
                    cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
            if args.runs:
                cmd += ["--runs", args.runs]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, env=env, capture_output=True, text=True)
            status = "ok" if p.returncode == 0 else f"FAILED ({p.returncode}): {p.stderr[-2000:]}"
            print(f"{t} {a} s{s}: {status} {time.perf_counter() - t0:.0f} s {p.stdout.strip()}",
                  flush=True)

        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(launch, todo))
    tp = None
    if not (args.report_only or args.skip_throughput):
        tp = throughput(args)
        print("throughput:", json.dumps(tp), flush=True)
    report(args, tp)


if __name__ == "__main__":
    main()
