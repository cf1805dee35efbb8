"""Statistics, targets, table and plot of ``scripts/humanoid_vision_distill.py`` (issue 15).

Every arm is evaluated on the same episodes (episode i: the same initial state and camera for
every arm and seed), so comparisons are paired: an arm's per-episode values are averaged over
its seeds, then the ratio of means to the other arm's is bootstrapped over episode indices.
``results/humanoid_vision_distill.json``::

    rows: {arm: {train|heldout|noise_xK: {metric: {mean, ci: [lo, hi], per_seed: [...]}}}}
    ratios: {arm: {cond: {metric: {value, ci}}}}     arm / expert, paired
    targets: {name: {value, target, met}}
    runs: [records], study_wall_s, setup, provenance
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rlkd.core.provenance import command_line, git_commit, machine_info, write_json_atomic
from study_runs import ROOT, study_wall_s

METRICS = ("mpjpe", "mpjpe_local", "root_error", "accel_error", "foot_sliding", "completion",
           "fall")
MARK = "humanoid_vision_distill:table"


def _load(arms: dict, runs: Path) -> tuple[dict, dict]:
    evals, records = {}, {}
    for arm, spec in arms.items():
        for s in range(spec["seeds"]):
            f = runs / f"{arm}_s{s}" / "vision_eval.json"
            if f.exists():
                evals.setdefault(arm, {})[s] = json.loads(f.read_text())["conditions"]
            r = runs / f"{arm}_s{s}.json"
            if r.exists():
                records[f"{arm}_s{s}"] = json.loads(r.read_text())
    return evals, records


def _per_episode(ev: dict, cond: str, metric: str) -> np.ndarray:
    """``(E,)`` the metric per episode index, averaged over the arm's seeds."""
    return np.mean([np.asarray(e[cond][metric], float) for e in ev.values()], axis=0)


def _ci(x: np.ndarray, rng, n: int = 2000) -> list[float]:
    idx = rng.integers(0, len(x), size=(n, len(x)))
    return [float(v) for v in np.nanquantile(np.nanmean(x[idx], 1), [0.025, 0.975])]


def _ratio(x: np.ndarray, ref: np.ndarray, rng, n: int = 2000) -> dict:
    idx = rng.integers(0, len(x), size=(n, len(x)))
    r = np.nanmean(x[idx], 1) / np.nanmean(ref[idx], 1)
    return {"value": float(np.nanmean(x) / np.nanmean(ref)),
            "ci": [float(v) for v in np.nanquantile(r, [0.025, 0.975])]}


def analyse(evals: dict) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    rows, ratios = {}, {}
    for arm, ev in evals.items():
        rows[arm] = {}
        for cond in next(iter(ev.values())):
            rows[arm][cond] = {}
            for m in METRICS:
                x = _per_episode(ev, cond, m)
                rows[arm][cond][m] = {
                    "mean": float(np.nanmean(x)), "ci": _ci(x, rng),
                    "per_seed": [float(np.nanmean(e[cond][m])) for e in ev.values()]}
    if "expert" in evals:
        for arm, ev in evals.items():
            ratios[arm] = {c: {m: _ratio(_per_episode(ev, c, m),
                                         _per_episode(evals["expert"], c, m), rng)
                               for m in ("mpjpe", "mpjpe_local", "foot_sliding", "accel_error")}
                           for c in ("train", "heldout") if c in rows[arm]}
    return rows, ratios


def targets(rows: dict, ratios: dict) -> dict:
    """Issue 15's targets on whatever arms finished (a missing arm: ``met`` None)."""
    out = {}

    def val(arm, cond, m):
        return rows.get(arm, {}).get(cond, {}).get(m, {}).get("mean")

    def add(name, value, target, met):
        out[name] = {"value": value, "target": target, "met": None if value is None else met}

    for cond, r_max, c_min in (("train", 1.5, 0.9), ("heldout", 2.0, 0.8)):
        rr = ratios.get("dagger_ft", {}).get(cond, {})
        for m in ("mpjpe", "mpjpe_local"):
            v = rr.get(m, {}).get("value")
            add(f"dagger_ft_{m}_{cond}_over_expert", v, f"<= {r_max}",
                v is not None and v <= r_max)
        v = val("dagger_ft", cond, "completion")
        add(f"dagger_ft_completion_{cond}", v, f">= {c_min}", v is not None and v >= c_min)
        v = val("dagger_ft", cond, "fall")
        add(f"dagger_ft_falls_{cond}", v, "<= 0.05", v is not None and v <= 0.05)
    d, b = val("dagger", "train", "mpjpe"), val("bc", "train", "mpjpe")
    fd, fb = val("dagger", "train", "fall"), val("bc", "train", "fall")
    ok = None if d is None or b is None else (d <= 0.8 * b or (fb or 0) >= 2 * max(fd or 0, 1e-9))
    add("dagger_over_bc_mpjpe", None if ok is None else d / b, "<= 0.8 (or BC falls 2x)", ok)
    ft = {m: (val("dagger_ft", "train", m), val("dagger", "train", m))
          for m in ("mpjpe", "foot_sliding", "accel_error")}
    if all(a is not None and b is not None for a, b in ft.values()):
        change = {m: a / b - 1 for m, (a, b) in ft.items()}
        add("finetune_vs_dagger", change, "one of them <= -10%, none > +5%",
            min(change.values()) <= -0.10 and max(change.values()) <= 0.05)
    else:
        add("finetune_vs_dagger", None, "one of them <= -10%, none > +5%", False)
    r, k = val("dagger_ft", "heldout", "mpjpe"), val("keypoints2d", "heldout", "mpjpe")
    add("rays_over_keypoints2d_heldout", None if r is None or k is None else r / k, "<= 0.9",
        r is not None and k is not None and r / k <= 0.9)
    f, t = val("dagger_ft", "train", "foot_sliding"), val("two_stage", "train", "foot_sliding")
    add("foot_sliding_vs_two_stage", None if f is None or t is None else f / t, "<= 1",
        f is not None and t is not None and f <= t)
    s = val("scratch", "train", "mpjpe")
    add("scratch_over_dagger_ft", None if s is None or r is None else
        s / val("dagger_ft", "train", "mpjpe"), ">= 2", s is not None and r is not None and
        s >= 2 * val("dagger_ft", "train", "mpjpe"))
    n1, n2 = val("dagger_ft", "noise_x1", "mpjpe"), val("dagger_ft", "noise_x2", "mpjpe")
    add("doubled_noise_mpjpe_change", None if n1 is None or n2 is None else n2 / n1 - 1,
        "<= +0.25", n1 is not None and n2 is not None and n2 / n1 - 1 <= 0.25)
    return out


def table(rows: dict, ratios: dict, tg: dict, wall_s: float) -> str:
    head = ("| arm | cond | MPJPE mm [95% CI] | x expert | root-aligned | accel mm/f^2 | "
            "foot sliding mm/f | completion | falls |\n|---|---|---|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for arm, conds in rows.items():
        for cond in ("train", "heldout"):
            if cond not in conds:
                continue
            r = conds[cond]
            x = ratios.get(arm, {}).get(cond, {}).get("mpjpe", {}).get("value")
            lines.append(
                f"| {arm} | {cond} | {r['mpjpe']['mean']:.1f} [{r['mpjpe']['ci'][0]:.1f}, "
                f"{r['mpjpe']['ci'][1]:.1f}] | {'' if x is None else f'{x:.2f}'} | "
                f"{r['mpjpe_local']['mean']:.1f} | {r['accel_error']['mean']:.2f} | "
                f"{r['foot_sliding']['mean']:.2f} | {100 * r['completion']['mean']:.0f}% | "
                f"{100 * r['fall']['mean']:.0f}% |")
    met = "; ".join(f"{k} {'met' if v['met'] else 'missed' if v['met'] is False else 'n/a'}"
                    for k, v in tg.items())
    return "\n".join(lines) + f"\n\nStudy wall-clock {wall_s / 60:.0f} min.\n\n- targets: {met}\n"


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.5))
    names = list(rows)
    for j, cond in enumerate(("train", "heldout")):
        m = [rows[a].get(cond, {}).get("mpjpe", {}).get("mean", np.nan) for a in names]
        ax.bar(np.arange(len(names)) + 0.4 * j, m, 0.4, label=cond)
    ax.set_xticks(np.arange(len(names)) + 0.2, names, rotation=25)
    ax.set(ylabel="MPJPE (mm)", title="world MPJPE, 100 episodes per condition")
    ax.legend()
    for arm in ("dagger_ft", "keypoints2d"):
        pts = sorted((float(c[len("noise_x"):]), v["mpjpe"]["mean"])
                     for c, v in rows.get(arm, {}).items() if c.startswith("noise_x"))
        if pts:
            bx.plot(*zip(*pts), "o-", label=arm)
    bx.set(xlabel="detector noise (x the default 1-3 px)", ylabel="MPJPE (mm)",
           title="noise curve (train condition)")
    bx.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args, arms: dict, runs: Path, out_json: Path) -> dict:
    evals, records = _load(arms, runs)
    if not evals:
        raise SystemExit(f"no evaluated runs under {runs}; run the study first")
    rows, ratios = analyse(evals)
    wall = study_wall_s(runs, records)
    tg = targets(rows, ratios)
    rep = {"rows": rows, "ratios": ratios, "targets": tg, "study_wall_s": wall,
           "runs": list(records.values()),
           "missing": [f"{a}_s{s}" for a, sp in arms.items() for s in range(sp["seeds"])
                       if s not in evals.get(a, {})],
           "setup": {"steps": args.steps, "num_envs": args.num_envs, "episodes": args.episodes,
                     "threads": args.threads, "jobs": args.jobs, "quick": bool(args.quick)},
           "provenance": {"command": command_line(), "commit": git_commit(ROOT),
                          "machine": machine_info()}}
    write_json_atomic(out_json, rep)
    plot(rows, out_json.with_suffix(".png"))
    text = table(rows, ratios, tg, wall)
    print(text, flush=True)
    if args.update_readme and not args.quick:
        readme = ROOT / "README.md"
        s = readme.read_text()
        a, b = f"<!-- {MARK} -->", f"<!-- /{MARK} -->"
        if a in s and b in s:
            i, j = s.index(a) + len(a), s.index(b)
            readme.write_text(s[:i] + "\n" + text + s[j:])
    return rep
