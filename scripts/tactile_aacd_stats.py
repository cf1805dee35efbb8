"""The arms, statistics and report (table, plot, README) of the AACD success study
(``scripts/tactile_aacd.py``, whose docstring describes the statistics and the JSON layout)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
T = "{teacher}"  # replaced by the teacher's run directory of the same seed
#: arm -> (rlkd train flags, what its actor reads)
ARMS = {
    "teacher": (["--agent", "ppo", "--ppo", "actor_groups=[critic]"], "critic (privileged)"),
    "aacd": (["--agent", "aacd", "--teacher", T], "policy + tactile"),
    "aacd_dagger": (["--agent", "aacd", "--teacher", T, "--aacd", "bc_coef=1", "bc_decay=0.95"],
                    "policy + tactile"),
    "dagger": (["--agent", "aacd", "--teacher", T, "--aacd", "rl=false"], "policy + tactile"),
    "ppo_scratch": (["--agent", "ppo", "--ppo", "actor_groups=[policy,tactile]"],
                    "policy + tactile"),
    "no_tactile": (["--agent", "aacd", "--teacher", T, "--ppo", "actor_groups=[policy]"], "policy"),
}
BEST_OF = ("aacd", "aacd_dagger", "dagger")
MARKERS = ("<!-- tactile_aacd:table -->", "<!-- /tactile_aacd:table -->")


def _t(a: np.ndarray, b: np.ndarray | None = None) -> list | None:
    """95% t interval over seeds of mean(a) (Student), or of mean(a) - mean(b) (Welch)."""
    from scipy import stats

    if len(a) < 2 or (b is not None and len(b) < 2):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # identical seeds: a zero-width interval
        r = stats.ttest_1samp(a, 0) if b is None else stats.ttest_ind(a, b, equal_var=False)
        lo, hi = r.confidence_interval(0.95)
    d = float(a.mean() - (0 if b is None else b.mean()))
    return [float(lo), float(hi)] if np.isfinite([lo, hi]).all() else [d, d]


class TwoLevel:
    """Two-level bootstrap: episode indices drawn once for all arms, seed indices per ``key``
    (the same key: the same seed draws). ``means(x, key)``: (B,) pooled means of x (S, E)."""

    def __init__(self, episodes: int, resamples: int, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.ep, self.draws = self.rng.integers(0, episodes, (resamples, episodes)), {}

    def means(self, x: np.ndarray, key) -> np.ndarray:
        if key not in self.draws:
            self.draws[key] = self.rng.integers(0, x.shape[0], (len(self.ep), x.shape[0]))
        return x[self.draws[key][:, :, None], self.ep[:, None, :]].mean(axis=(1, 2))


def _ci(b: np.ndarray) -> list:
    return [float(np.quantile(b, 0.025)), float(np.quantile(b, 0.975))]


def analyse(records: dict, succ: dict, resamples: int) -> dict:
    from rlkd.sim2real.stats import bootstrap_mean

    E = {len(v) for by in succ.values() for v in by.values()}
    if len(E) != 1:
        raise SystemExit(f"evaluations of different lengths {E}: rerun them with one --episodes")
    boot, X, arms = TwoLevel(E.pop(), resamples), {}, {}
    for a, by in succ.items():
        X[a] = x = np.stack([by[s] for s in sorted(by)])
        recs = [records[f"{a}_s{s}"] for s in sorted(by)]
        arms[a] = {"success": x.mean(axis=1).tolist(), "mean": float(x.mean()),
                   "ci": _ci(boot.means(x, a)), "t_ci": _t(x.mean(axis=1)), "seeds": sorted(by),
                   "per_seed_ci": [[(p := bootstrap_mean(v, resamples))["lo"], p["hi"]]
                                   for v in x],
                   "reads": ARMS[a][1], "command": recs[0]["command"],
                   **{k: float(np.mean([r[k] for r in recs]))
                      for k in ("env_steps", "wall_s", "train_s")}}
        arms[a]["steps"] = int(arms[a].pop("env_steps"))
    comps = {}
    best = max((a for a in BEST_OF if a in X), key=lambda a: arms[a]["mean"], default=None)
    common = sorted(set(succ[best]) & set(succ.get("teacher", {}))) if best else []
    if common:
        xs, xt = (np.stack([succ[a][s] for s in common]) for a in (best, "teacher"))
        bs, bt = boot.means(xs, tuple(common)), boot.means(xt, tuple(common))
        comps["best_student_over_teacher"] = {
            "arms": [best, "teacher"], "seeds": common, "welch_t": None,
            "value": float(xs.mean() / xt.mean()) if xt.mean() > 0 else None,
            "ci": _ci(bs / np.maximum(bt, 1e-12))}
    for other in ("ppo_scratch", "no_tactile"):
        if "aacd" in X and other in X:
            comps[f"aacd_minus_{other}"] = {
                "arms": ["aacd", other], "value": float(X["aacd"].mean() - X[other].mean()),
                "ci": _ci(boot.means(X["aacd"], "aacd") - boot.means(X[other], other)),
                "welch_t": _t(X["aacd"].mean(axis=1), X[other].mean(axis=1))}
    return {"arms": arms, "comparisons": comps}


def targets(an: dict, study_wall_s: float) -> dict:
    out, arms, c = {}, an["arms"], an["comparisons"].get("best_student_over_teacher")
    if c:
        out["best_student_ge_90pct_teacher"] = {
            "value": c["value"], "ci": c["ci"], "target": 0.9, "best": c["arms"][0],
            "met": c["value"] is not None and c["value"] >= 0.9}
    for other in ("ppo_scratch", "no_tactile"):
        if "aacd" in arms and other in arms:
            out[f"aacd_ci_above_{other}"] = {
                "value": {"aacd": arms["aacd"]["ci"], other: arms[other]["ci"]},
                "target": f"aacd CI lower bound > {other} CI upper bound",
                "met": arms["aacd"]["ci"][0] > arms[other]["ci"][1]}
    out["study_wall_min"] = {"value": study_wall_s / 60, "target": 150,
                             "met": study_wall_s / 60 <= 150}
    return out



def _p(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _iv(iv, f=_p) -> str:
    return "-" if iv is None else f"[{f(iv[0])}, {f(iv[1])}]"


def table(rep: dict) -> str:
    arms, su = rep["arms"], rep["setup"]
    lines = ["| arm | actor reads | seeds | success % per seed | success % [95% CI] | t over "
             "seeds | env steps | minutes per run |", "|---|---|---|---|---|---|---:|---:|"]
    lines += [f"| {a} | {r['reads']} | {len(r['seeds'])} | "
              f"{', '.join(_p(v) for v in r['success'])} | {_p(r['mean'])} {_iv(r['ci'])} | "
              f"{_iv(r['t_ci'])} | {r['steps']:,} | {r['wall_s'] / 60:.1f} |"
              for a, r in ((a, arms[a]) for a in ARMS if a in arms)]
    lines += ["", f"{su['episodes']} evaluation episodes per run (env seed {su['eval_seed']}, "
              "the same initial states for every arm); CI: two-level bootstrap over seeds and "
              f"episodes; {su['num_envs']} envs, {su['threads']} thread(s) per run, "
              f"{su['jobs']} runs at once"
              + (f", env overrides {' '.join(su['env_set'])}" if su["env_set"] else "")
              + ". A student's minutes exclude its teacher's.", ""]
    pts = lambda v: f"{100 * v:+.1f}"  # noqa: E731
    for k, c in rep["comparisons"].items():
        if k == "best_student_over_teacher":
            v = "-" if c["value"] is None else f"{c['value']:.2f}"
            lines.append(f"- best student ({c['arms'][0]}) / teacher: {v} "
                         f"{_iv(c['ci'], lambda x: f'{x:.2f}')}")
        else:
            lines.append(f"- {' - '.join(c['arms'])}: {pts(c['value'])} points "
                         f"{_iv(c['ci'], pts)}, Welch t over seeds {_iv(c['welch_t'], pts)}")
    lines.append("- targets: " + "; ".join(f"{k} {'met' if t['met'] else 'missed'}"
                                           for k, t in rep["targets"].items())
                 + f" (study {rep['study_wall_s'] / 60:.0f} min)")
    sh = rep.get("shipped") or {}
    if sh.get("student"):
        lines.append("- shipped: " + ", ".join(
            f"`{sh[n]['path']}` ({sh[n]['arm']} s{sh['seed']}: {_p(sh[n]['success'])}% "
            f"from the file, {'reproduces the run' if sh[n]['reproduces'] else 'DIFFERS'})"
            for n in ("teacher", "student")) + f"; `{sh['sensing']['path']}` (suite sensing)")
    return "\n".join(lines)


def plot(rep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.5))
    col = dict(zip(ARMS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for r in rep["runs"]:
        c, first = r["curve"], r["seed"] == min(rep["arms"][r["arm"]]["seeds"])
        ax.plot(np.array(c["env_steps"]) / 1e6, [100 * (v or 0) for v in c["success"]],
                color=col[r["arm"]], lw=1, alpha=0.8, label=r["arm"] if first else None)
    # The runner's window counts finished episodes; successes end early and failures run to
    # the time limit, so this share overstates the per-episode rate (evaluation: right).
    ax.set(xlabel="env steps (M)", ylabel="successes among finished episodes (%)",
           title="training curves (a line per seed; overstates success, see right)")
    ax.legend(fontsize=8)
    names = [a for a in ARMS if a in rep["arms"]]
    m = np.array([100 * rep["arms"][a]["mean"] for a in names])
    ci = 100 * np.array([rep["arms"][a]["ci"] for a in names]).reshape(-1, 2)
    bx.bar(names, m, yerr=[m - ci[:, 0], ci[:, 1] - m], capsize=3, color=[col[a] for a in names])
    for i, a in enumerate(names):
        v = rep["arms"][a]["success"]
        bx.scatter([i] * len(v), [100 * x for x in v], color="k", s=8, zorder=3)
    bx.set(ylabel="evaluation success (%)", title=f"{rep['setup']['episodes']} episodes per "
           "seed; 95% two-level bootstrap CI; dots: seeds")
    bx.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_readme(text: str) -> None:
    p = ROOT / "README.md"
    s = p.read_text(encoding="utf-8")
    if MARKERS[0] not in s or MARKERS[1] not in s:
        raise SystemExit(f"error: README.md lacks the {MARKERS[0]} ... {MARKERS[1]} markers")
    head, rest = s.split(MARKERS[0], 1)
    p.write_text(f"{head}{MARKERS[0]}\n{text}\n{rest[rest.index(MARKERS[1]):]}", encoding="utf-8")
