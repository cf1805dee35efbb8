"""Does domain randomisation while training pay under the sim-to-real suite?

Trains the default task (``rlkd train`` defaults: AGVWarehouse-v0, ppo-rdd, 256 envs, 6M env
steps) nominal and with ``--randomize default`` for each seed, evaluates every run under the
``default`` perturbation suite (256 paired episodes per condition, no twin), and compares the
success lost to each perturbation:

    nohup python scripts/dr_study.py > results/dr_study.log 2>&1 &     # train, evaluate, report
    python scripts/dr_study.py --report-only                           # JSON + PNG + README table

Resumable: a finished run (``<run>.train.json`` written) or evaluation (``<run>/dr_eval_<suite>
.json``) is skipped; a run that died mid-way continues with ``rlkd train --resume`` (exact).
At most ``--jobs`` (2) processes run at once, each with ``OMP_NUM_THREADS=--threads`` (1).
The nominal seed-0 run is the project's default run (``scripts/default_run.py`` reads it).

Statistics. Evaluation seeds are the same for every run, so episode ``e`` of every condition of
every run starts from the same state in the same warehouse (common random numbers). Per run and
condition: success with a bootstrap CI, and its gap to nominal with the paired bootstrap of
:func:`rlkd.sim2real.stats.bootstrap_gap`. Per run: the *mean gap* (average over the perturbed
conditions of the gaps; paired bootstrap over episodes). Pooled per arm: the mean over seeds of
the runs' mean gaps; the comparison randomised minus nominal gets (a) a two-level bootstrap
(seeds resampled within each arm, episodes resampled jointly) and (b) a Welch t interval over
the per-seed values, the honest one with 3 seeds per arm.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"nominal": [], "randomized": ["--randomize", "default"]}
METRICS = ("success", "collision", "return", "length")


def _done_steps(run_dir: Path) -> int:
    rows = (run_dir / "metrics.jsonl")
    if not rows.exists() or not rows.read_text().strip():
        return 0
    return int(json.loads(rows.read_text().strip().splitlines()[-1])["env_steps"])


def train_run(arm: str, seed: int, args, jobs_now: int) -> Path:
    """One ``rlkd train`` process for (arm, seed); skipped when finished; resumed when cut."""
    run_dir = Path(args.runs) / f"{arm}_s{seed}"
    record = run_dir.with_suffix(".train.json")
    if record.exists():
        return run_dir
    resumed = (run_dir / "checkpoints" / "last.pt").exists()
    if resumed:
        cmd = [sys.executable, "-m", "rlkd", "train", "--resume", str(run_dir),
               "--steps", str(args.steps), "--no-progress"]
    else:
        if run_dir.exists():  # died before its first checkpoint: nothing to keep
            shutil.rmtree(run_dir)
        cmd = [sys.executable, "-m", "rlkd", "train", "--seed", str(seed), "--out", str(run_dir),
               "--steps", str(args.steps), "--num-envs", str(args.num_envs), "--no-progress",
               *ARMS[arm]]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    load0, t0 = os.getloadavg(), time.time()
    with open(run_dir.with_suffix(".log"), "a") as f:
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    wall = time.time() - t0
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    _write(record, {
        "arm": arm, "seed": seed, "command": " ".join(["rlkd", *cmd[3:]]),
        "wall_s": wall, "resumed": resumed, "env_steps": rows[-1]["env_steps"],
        "final_success_rate": rows[-1].get("charts/success_rate"),
        "final_return": rows[-1].get("charts/episodic_return"),
        "mean_sps": float(np.mean([r["charts/SPS"] for r in rows])),
        "omp_threads": args.threads, "concurrent_processes": jobs_now,
        "loadavg_1m_start": load0[0], "loadavg_1m_end": os.getloadavg()[0],
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"trained {arm} seed {seed}: {wall / 60:.1f} min, success "
          f"{rows[-1].get('charts/success_rate', float('nan')):.3f}", flush=True)
    return run_dir


def eval_file(run_dir: Path, suite: str) -> Path:
    return Path(run_dir) / f"dr_eval_{suite}.json"


def eval_run(run_dir: Path, suite: str, episodes: int, seed: int) -> None:
    """Evaluate one run under ``suite`` (the python API of ``rlkd eval sim2real --no-twin``)
    and write every episode's metrics per condition to ``<run>/dr_eval_<suite>.json``."""
    import torch

    from rlkd.policies import policy_source
    from rlkd.sim2real import evaluate_suite, load_suite

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    env_id, overrides, factory, label = policy_source(str(run_dir))
    t0 = time.time()
    res = evaluate_suite(factory, env_id, load_suite(suite), episodes=episodes, seed=seed,
                         env_overrides=overrides)
    per = {c: {m: [None if not np.isfinite(v) else float(v) for v in rows[m]]
               for m in METRICS if m in rows} for c, rows in res.per_condition.items()}
    _write(eval_file(run_dir, suite), {
        "run": str(run_dir), "policy": label, "env_id": env_id, "suite": suite,
        "episodes": episodes, "seed": seed, "paired": res.paired, "skipped": res.skipped,
        "command": f"rlkd eval sim2real {run_dir} --suite {suite} --episodes {episodes} "
                   f"--seed {seed} --no-twin (python API)",
        "eval_s": time.time() - t0, "per_condition": per})


def _write(path: Path, data) -> None:
    from rlkd.core.provenance import write_json_atomic

    write_json_atomic(path, data)


def _eval_subprocess(run_dir: Path, args) -> None:
    if eval_file(run_dir, args.suite).exists():
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, __file__, "--eval-run", str(run_dir), "--suite", args.suite,
           "--episodes", str(args.episodes), "--eval-seed", str(args.eval_seed)]
    with open(Path(run_dir).with_suffix(f".eval_{args.suite}.log"), "w") as f:
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    print(f"evaluated {run_dir}", flush=True)


# ---------------------------------------------------------------------- statistics
def _success(ev: dict) -> tuple[list[str], np.ndarray]:
    """Condition names (nominal first) and ``(C, E)`` success, unfinished episodes as failures."""
    names = ["nominal"] + [c for c in ev["per_condition"] if c != "nominal"]
    x = np.array([[np.nan if v is None else v for v in ev["per_condition"][c]["success"]]
                  for c in names], dtype=np.float64)
    return names, np.nan_to_num(x, nan=0.0)


def _welch(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> dict:
    from scipy import stats

    d = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return {"diff": d, "lo": None, "hi": None}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    df = (va + vb) ** 2 / max(va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1), 1e-300)
    t = float(stats.t.ppf(0.5 + level / 2, df)) if se > 0 else 0.0
    return {"diff": d, "lo": d - t * se, "hi": d + t * se, "df": float(df)}


def _t_ci(x: np.ndarray, level: float = 0.95) -> dict:
    from scipy import stats

    m = float(x.mean())
    if len(x) < 2:
        return {"mean": m, "lo": None, "hi": None, "n": len(x)}
    h = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return {"mean": m, "lo": m - h, "hi": m + h, "n": len(x)}


def analyse(evals: dict[str, dict[int, dict]], resamples: int = 2000) -> dict:
    """Per-run statistics and the pooled nominal-vs-randomised comparison (module docstring)."""
    from rlkd.sim2real.stats import bootstrap_gap, bootstrap_mean

    per_run, succ = {}, {}
    names = None
    for arm, by_seed in evals.items():
        for seed, ev in sorted(by_seed.items()):
            n, x = _success(ev)
            names = names or n
            if n != names:
                raise ValueError(f"{arm} seed {seed}: conditions {n} differ from {names}")
            succ[(arm, seed)] = x
            conds = {}
            for ci, c in enumerate(names):
                conds[c] = {"success": bootstrap_mean(x[ci], resamples),
                            "gap": None if ci == 0 else bootstrap_gap(x[ci], x[0], paired=True,
                                                                      num_resamples=resamples)}
            d = x[1:].mean(axis=0) - x[0]
            per_run[f"{arm}_s{seed}"] = {
                "arm": arm, "seed": seed, "conditions": conds,
                "mean_gap": bootstrap_mean(d, resamples),
                "mean_perturbed_success": bootstrap_mean(x[1:].mean(axis=0), resamples)}
    arms = list(evals)
    seeds = {a: sorted(evals[a]) for a in arms}
    # Per-seed summaries of each arm, then the pooled comparison.
    summary = {}
    for a in arms:
        xs = np.stack([succ[(a, s)] for s in seeds[a]])  # (S, C, E)
        summary[a] = {
            "seeds": seeds[a],
            "per_seed_mean_gap": (xs[:, 1:].mean(axis=(1, 2)) - xs[:, 0].mean(axis=1)).tolist(),
            "per_seed_nominal_success": xs[:, 0].mean(axis=1).tolist(),
            "per_seed_perturbed_success": xs[:, 1:].mean(axis=(1, 2)).tolist(),
            "per_condition_success": {c: _t_ci(xs[:, ci].mean(axis=1))
                                      for ci, c in enumerate(names)},
            "per_condition_gap": {c: _t_ci(xs[:, ci].mean(axis=1) - xs[:, 0].mean(axis=1))
                                  for ci, c in enumerate(names) if ci}}
        for k in ("mean_gap", "nominal_success", "perturbed_success"):
            summary[a][k] = _t_ci(np.array(summary[a][f"per_seed_{k}"]))
    comparison = {}
    if len(arms) == 2 and all(seeds[a] for a in arms):
        a0, a1 = arms
        rng = np.random.default_rng(0)
        E = succ[(a0, seeds[a0][0])].shape[1]
        stacks = {a: np.stack([succ[(a, s)] for s in seeds[a]]) for a in arms}

        def stat(xs, kind):
            if kind == "mean_gap":
                return xs[:, 1:].mean(axis=(1, 2)) - xs[:, 0].mean(axis=1)
            if kind == "nominal_success":
                return xs[:, 0].mean(axis=1)
            return xs[:, 1:].mean(axis=(1, 2))

        for kind in ("mean_gap", "nominal_success", "perturbed_success"):
            boot = np.empty(resamples)
            for b in range(resamples):
                ep = rng.integers(0, E, E)  # the same episodes for every run (paired)
                vals = []
                for a in arms:
                    xs = stacks[a][rng.integers(0, len(seeds[a]), len(seeds[a]))][:, :, ep]
                    vals.append(stat(xs, kind).mean())
                boot[b] = vals[1] - vals[0]
            point = float(stat(stacks[a1], kind).mean() - stat(stacks[a0], kind).mean())
            comparison[kind] = {
                "difference": f"{a1} - {a0}", "value": point,
                "bootstrap_two_level": {"lo": float(np.quantile(boot, 0.025)),
                                        "hi": float(np.quantile(boot, 0.975))},
                "welch_t_over_seeds": _welch(np.array(summary[a0][f"per_seed_{kind}"]),
                                             np.array(summary[a1][f"per_seed_{kind}"]))}
    return {"conditions": names, "per_run": per_run, "arms": summary, "comparison": comparison}


# ---------------------------------------------------------------------- report
def _pct(x):
    return "—" if x is None else f"{100 * x:.1f}"


def readme_table(an: dict, records: dict) -> str:
    arms = list(an["arms"])
    lines = ["| condition | " + " | ".join(f"{a} success" for a in arms) + " | "
             + " | ".join(f"{a} Δ (points)" for a in arms) + " |",
             "|---|" + "---:|" * (2 * len(arms))]
    for c in an["conditions"]:
        row = [c]
        for a in arms:
            s = an["arms"][a]["per_condition_success"][c]
            row.append(f"{_pct(s['mean'])}% [{_pct(s['lo'])}, {_pct(s['hi'])}]")
        for a in arms:
            g = an["arms"][a]["per_condition_gap"].get(c)
            row.append("—" if g is None else f"{100 * g['mean']:+.1f} [{100 * g['lo']:+.1f}, "
                                             f"{100 * g['hi']:+.1f}]" if g["lo"] is not None
                       else f"{100 * g['mean']:+.1f}")
        lines.append("| " + " | ".join(row) + " |")
    out = ["\n".join(lines), ""]
    for kind, label in (("mean_gap", "mean gap to nominal over perturbed conditions"),
                        ("nominal_success", "nominal success"),
                        ("perturbed_success", "mean success over perturbed conditions")):
        fmt = "+.1f" if kind == "mean_gap" else ".1f"
        per = ", ".join(f"{a} {100 * an['arms'][a][kind]['mean']:{fmt}}" for a in arms)
        cmp_ = an["comparison"].get(kind)
        if cmp_:
            b, w = cmp_["bootstrap_two_level"], cmp_["welch_t_over_seeds"]
            per += (f"; randomized - nominal {100 * cmp_['value']:+.1f} points, two-level "
                    f"bootstrap [{100 * b['lo']:+.1f}, {100 * b['hi']:+.1f}], Welch t over seeds "
                    + ("—" if w["lo"] is None else f"[{100 * w['lo']:+.1f}, {100 * w['hi']:+.1f}]"))
        out.append(f"- {label} (points / %): {per}")
    walls = {k: v["wall_s"] for k, v in records.items()}
    out.append("- training wall-clock (min): "
               + ", ".join(f"{k} {w / 60:.1f}" for k, w in sorted(walls.items())))
    return "\n".join(out)


def plot(an: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, arms = an["conditions"], list(an["arms"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    w = 0.8 / len(arms)
    xs = np.arange(len(names))
    for i, a in enumerate(arms):
        for ax, key, cs in ((axes[0], "per_condition_success", names),
                            (axes[1], "per_condition_gap", names[1:])):
            st = [an["arms"][a][key][c] for c in cs]
            m = np.array([100 * s["mean"] for s in st])
            lo = np.array([100 * (s["lo"] if s["lo"] is not None else s["mean"]) for s in st])
            hi = np.array([100 * (s["hi"] if s["hi"] is not None else s["mean"]) for s in st])
            x = np.arange(len(cs)) + (i - (len(arms) - 1) / 2) * w
            ax.bar(x, m, w, yerr=[m - lo, hi - m], capsize=2, label=f"{a}-trained")
    axes[0].set_xticks(xs, names, rotation=40, ha="right")
    axes[0].set_ylabel("success (%)")
    axes[0].set_title("success per condition (mean over seeds, 95% t CI)")
    axes[1].set_xticks(np.arange(len(names) - 1), names[1:], rotation=40, ha="right")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_ylabel("gap to nominal (points)")
    axes[1].set_title("success lost to each perturbation")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(args) -> dict:
    from rlkd.core.provenance import command_line, machine_info

    runs = Path(args.runs)
    evals: dict[str, dict[int, dict]] = {a: {} for a in ARMS}
    records = {}
    for a in ARMS:
        for s in args.seeds:
            rec, ev = runs / f"{a}_s{s}.train.json", eval_file(runs / f"{a}_s{s}", args.suite)
            if rec.exists():
                records[f"{a}_s{s}"] = json.loads(rec.read_text())
            if ev.exists():
                evals[a][s] = json.loads(ev.read_text())
    missing = [f"{a}_s{s}" for a in ARMS for s in args.seeds if s not in evals[a]]
    evals = {a: e for a, e in evals.items() if e}
    if not evals:
        raise SystemExit(f"no finished evaluations under {runs}; run the study first")
    an = analyse(evals, args.resamples)
    cfg = None
    for k in records:
        y = runs / k / "config.yaml"
        if y.exists() and k.startswith("randomized"):
            import yaml

            cfg = yaml.safe_load(y.read_text()).get("randomize")
            break
    out = {"study": "dr_study", "command": command_line(program_name_only=True),
           "machine": machine_info(), "seeds": args.seeds, "missing_runs": missing,
           "train": {"env": "AGVWarehouse-v0", "agent": "ppo-rdd", "num_envs": args.num_envs,
                     "steps": args.steps, "arms": {a: " ".join(["rlkd train", *v]) or
                                                   "rlkd train" for a, v in ARMS.items()},
                     "randomization": cfg, "runs": records},
           "eval": {"suite": args.suite, "episodes": args.episodes, "seed": args.eval_seed,
                    "twin": False},
           "raw_success": {f"{a}_s{s}": {c: ev["per_condition"][c]["success"]
                                         for c in ev["per_condition"]}
                           for a, by in evals.items() for s, ev in by.items()},
           **an}
    out_json = Path(args.out)
    _write(out_json, out)
    plot(an, out_json.with_suffix(".png"))
    print(readme_table(an, records))
    print(f"\nwrote {out_json} and {out_json.with_suffix('.png')}"
          + (f"; missing runs: {missing}" if missing else ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=6_000_000)
    ap.add_argument("--num-envs", type=int, default=256)
    ap.add_argument("--jobs", type=int, default=2, help="processes at once (<= 2 here)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each process")
    ap.add_argument("--runs", default="runs/dr_study", help="run directories and per-run files")
    ap.add_argument("--suite", default="default")
    ap.add_argument("--episodes", type=int, default=256, help="per condition")
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "results" / "dr_study.json"))
    ap.add_argument("--report-only", action="store_true",
                    help="no training or evaluation: JSON, PNG and README table from finished runs")
    ap.add_argument("--eval-run", help=argparse.SUPPRESS)  # worker: evaluate one run
    args = ap.parse_args()
    args.runs = str(Path(args.runs) if Path(args.runs).is_absolute() else ROOT / args.runs)
    if args.eval_run:
        eval_run(Path(args.eval_run), args.suite, args.episodes, args.eval_seed)
        return
    if not args.report_only:
        jobs = [(a, s) for s in args.seeds for a in ARMS]  # seed 0's pair first
        t0 = time.time()
        with ThreadPoolExecutor(args.jobs) as pool:
            # Each run is evaluated as soon as it is trained, in the same slot.
            def one(job):
                return _eval_subprocess(train_run(*job, args, min(args.jobs, len(jobs))), args)

            for f in [pool.submit(one, j) for j in jobs]:
                f.result()
        print(f"study done in {(time.time() - t0) / 60:.1f} min", flush=True)
    report(args)


if __name__ == "__main__":
    main()
