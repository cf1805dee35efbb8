"""Statistics, targets, plot and README table of the PPO parity study (:mod:`ppo_parity`).

Per trainer and task over seeds: IQM (interquartile mean, Agarwal et al. 2021) of the final
success with a percentile-bootstrap CI over seeds (one task at a time, so the stratified bootstrap
is the bootstrap over runs), the IQM difference ours - peer with its CI (independent resampling
of both sets of seeds), and the wall-clock and env steps to 50% success (median over seeds, a
seed that never reaches 50% counts as infinitely late; ``null`` when the median is).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from rlkd.core.provenance import command_line, git_commit, machine_info, write_json_atomic
from study_runs import ROOT, rel

RESAMPLES, LEVEL = 5000, 0.95
PEERS = ("sb3", "rsl_rl")
OURS = "rlkd"
MARK = ("<!-- ppo_parity:begin -->", "<!-- ppo_parity:end -->")


def iqm(x: np.ndarray) -> float:
    """Mean of the middle 50% of ``x`` (n,) (scipy's ``trim_mean(x, 0.25)`` rule)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    cut = int(math.floor(0.25 * len(x)))
    return float(x[cut:len(x) - cut].mean())


def iqm_ci(x: np.ndarray, seed: int = 0) -> tuple[float, list[float]]:
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return (float(x.mean()) if len(x) else float("nan")), [float("nan")] * 2
    rng = np.random.default_rng(seed)
    boot = np.array([iqm(x[rng.integers(0, len(x), len(x))]) for _ in range(RESAMPLES)])
    a = (1 - LEVEL) / 2
    return iqm(x), [float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))]


def iqm_diff_ci(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, list[float]]:
    """``IQM(x) - IQM(y)`` with a bootstrap CI (independent resamples of ``x`` and ``y``)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    d = iqm(x) - iqm(y)
    if len(x) < 2 or len(y) < 2:
        return d, [float("nan")] * 2
    rng = np.random.default_rng(seed)
    boot = np.array([iqm(x[rng.integers(0, len(x), len(x))]) - iqm(y[rng.integers(0, len(y), len(y))])
                     for _ in range(RESAMPLES)])
    a = (1 - LEVEL) / 2
    return d, [float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))]


def first_reach(run: dict, key: str, level: float = 0.5) -> float:
    """``run[key]`` (seconds or env_steps) at the first curve point with success >= level."""
    for s, v in zip(run["success"], run[key]):
        if s >= level:
            return float(v)
    return math.inf


def _median_or_none(v: list[float]) -> float | None:
    m = float(np.median(v)) if v else math.inf
    return None if not math.isfinite(m) else m


def load_runs(runs: Path) -> list[dict]:
    out = []
    for f in sorted(runs.glob("*_s*.json")):
        if re.search(r"_s\d+\.json$", f.name):
            d = json.loads(f.read_text())
            if "success" in d:
                out.append(d)
    return out


def summarize(runs: list[dict]) -> tuple[dict, dict]:
    by: dict[str, dict[str, list[dict]]] = {}
    for r in runs:
        by.setdefault(r["trainer"], {}).setdefault(r["task"], []).append(r)
    summary: dict = {}
    for tr, tasks in by.items():
        for ta, rs in tasks.items():
            final = np.array([r["success"][-1] if r["success"] else 0.0 for r in rs])
            m, ci = iqm_ci(final)
            summary.setdefault(tr, {})[ta] = {
                "iqm_final": m, "ci": ci, "n": len(rs), "seeds": sorted(r["seed"] for r in rs),
                "final_per_seed": final.tolist(),
                "seconds_to_50": _median_or_none([first_reach(r, "seconds") for r in rs]),
                "env_steps_to_50": _median_or_none([first_reach(r, "env_steps") for r in rs]),
                "reached_50": int(sum(math.isfinite(first_reach(r, "seconds")) for r in rs)),
                "env_steps_per_s": float(np.mean([r["total_env_steps"] / r["wall_s"] for r in rs])),
                "env_steps": float(np.mean([r["total_env_steps"] for r in rs])),
                # Wall-clock figures compare only within one CPU model (records before the
                # field: "unrecorded", the first study's machine).
                "cpu_models": sorted({r.get("cpu_model", "unrecorded") for r in rs}),
            }
    return summary, by


def targets(summary: dict, by: dict) -> dict:
    out = {}
    ours = summary.get(OURS, {})
    for task, o in ours.items():
        x = np.array(o["final_per_seed"])
        for peer in PEERS:
            if task not in summary.get(peer, {}):
                continue
            d, ci = iqm_diff_ci(x, np.array(summary[peer][task]["final_per_seed"]))
            out[f"{task}_final_iqm_vs_{peer}"] = {
                "diff": d, "ci": ci, "met": bool(d >= 0),
                # The strict reading of the "CI of the difference not below 0".
                "ci_lower_at_least_0": bool(ci[0] >= 0),
                "rule": "IQM(ours) - IQM(peer) >= 0 (CI reported)"}
        peers = [summary[p][task]["seconds_to_50"] for p in PEERS if task in summary.get(p, {})]
        peers = [s for s in peers if s is not None]
        if peers:
            ratio = None if o["seconds_to_50"] is None else o["seconds_to_50"] / min(peers)
            out[f"{task}_seconds_to_50_vs_faster_peer"] = {
                "ratio": ratio, "met": ratio is not None and ratio <= 0.7, "rule": "<= 0.7"}
    return out


def plot(by: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({ta for t in by.values() for ta in t})
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.6 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        for j, key in enumerate(("env_steps", "seconds")):
            ax = axes[i, j]
            for tr in sorted(by):
                rs = by[tr].get(task, [])
                if not rs or not all(r[key] for r in rs):
                    continue
                grid = np.linspace(0, min(r[key][-1] for r in rs), 60)
                ys = np.array([np.interp(grid, r[key], r["success"]) for r in rs])
                mean = ys.mean(0)
                se = ys.std(0, ddof=1) / math.sqrt(len(rs)) if len(rs) > 1 else 0 * mean
                ax.plot(grid, mean, label=f"{tr} (n={len(rs)})")
                ax.fill_between(grid, mean - 1.96 * se, mean + 1.96 * se, alpha=0.2)
            ax.set_xlabel("env steps" if key == "env_steps" else "wall-clock s")
            ax.set_ylabel("success (last 200 episodes)")
            ax.set_title(f"AGVWarehouse-v0 {task}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(summary: dict) -> str:
    rows = ["| trainer | task | seeds | final success IQM [95% CI] | env steps | env-steps/s | "
            "s to 50% | steps to 50% | CPU |", "|---|---|---|---|---|---|---|---|---|"]
    for tr in sorted(summary):
        for ta in sorted(summary[tr]):
            s = summary[tr][ta]
            t50 = "-" if s["seconds_to_50"] is None else f"{s['seconds_to_50']:.0f}"
            n50 = "-" if s["env_steps_to_50"] is None else f"{s['env_steps_to_50'] / 1e6:.2f}M"
            rows.append(f"| {tr} | {ta} | {s['n']} | {100 * s['iqm_final']:.1f}% "
                        f"[{100 * s['ci'][0]:.1f}, {100 * s['ci'][1]:.1f}] | "
                        f"{s['env_steps'] / 1e6:.2f}M | {s['env_steps_per_s']:,.0f} | {t50} | "
                        f"{n50} | {', '.join(s.get('cpu_models', []))} |")
    return "\n".join(rows)


def report(runs_dir: Path, out_json: Path, args) -> dict:
    runs = load_runs(runs_dir)
    summary, by = summarize(runs)
    tg = targets(summary, by)
    png = out_json.with_suffix(".png")
    if runs:
        plot(by, png)
    res = {"command": command_line(), "git_commit": git_commit(ROOT), "machine": machine_info(),
           "env": "AGVWarehouse-v0", "budget": {"env_steps": args.steps, "seconds": args.seconds},
           "threads_per_run": args.threads, "jobs": args.jobs,
           "runs": [{k: r[k] for k in ("trainer", "task", "seed", "env_steps", "success",
                                       "seconds", "episodes", "total_env_steps", "wall_s",
                                       "cpu_model", "cpu_model_note", "seconds_cap")
                     if k in r}
                    for r in runs],
           "summary": summary, "targets": tg, "plot": rel(png) if runs else None}
    write_json_atomic(out_json, res)
    print(table(summary), flush=True)
    for k, v in tg.items():
        print(f"- {k}: {'met' if v['met'] else 'MISSED'} "
              f"{ {kk: vv for kk, vv in v.items() if kk not in ('met', 'rule')} }", flush=True)
    if args.update_readme and not args.quick:
        readme = ROOT / "README.md"
        text = readme.read_text()
        if MARK[0] in text and MARK[1] in text:
            head, rest = text.split(MARK[0], 1)
            _, tail = rest.split(MARK[1], 1)
            readme.write_text(f"{head}{MARK[0]}\n{table(summary)}\n{MARK[1]}{tail}")
    return res
