"""Sim-to-real reports: per-condition statistics with bootstrap CIs -> report.json / .md / PNGs.

Every file is written atomically under the output directory, so a run that dies leaves the
previous report or the new one, never a torn file.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlkd.core.atomic import atomic_write

from .evaluate import Episodes, SuiteResult
from .stats import bootstrap_gap, bootstrap_mean, dtw

#: Metrics every report shows first (when the task reports them), then the task's own.
CORE_METRICS = ("success", "return", "length", "collision", "fall", "action_jerk")
#: Episode flags: shown as percentages, their gaps in percentage points.
RATE_METRICS = ("success", "collision", "fall", "tracking_failure", "timeout")


def shown_metrics(values: dict[str, np.ndarray], task_metrics: dict[str, str]) -> list[str]:
    """Metric names a report table shows, in order: :data:`CORE_METRICS`, then the task's
    ``REPORT_METRICS`` with their aggregate (e.g. ``clearance_min``)."""
    names = [m for m in CORE_METRICS if m in values]
    names += [f"{k}_{agg}" for k, agg in task_metrics.items() if f"{k}_{agg}" in values]
    return names


def summarize(result: SuiteResult, resamples: int = 2000) -> dict[str, Any]:
    """Statistics of a :class:`SuiteResult`: per condition and metric the mean with a 95% CI,
    and the gap to nominal (paired bootstrap when episodes are paired)."""
    nominal = result.per_condition["nominal"]
    all_names = sorted(nominal)
    shown = shown_metrics(nominal, result.report_metrics)
    conds = []
    for cond in result.conditions:
        vals = result.per_condition[cond.name]
        entry = {**cond.to_dict(),
                 "metrics": {m: bootstrap_mean(vals[m], resamples) for m in all_names},
                 # Episodes ended by the env's NaN guard: a policy or condition that blows up
                 # the physics must not pass as merely "unsuccessful".
                 "sim_unstable": int(np.nansum(vals["sim_unstable"]))
                 if "sim_unstable" in vals else 0}
        if cond.name != "nominal":
            entry["gap"] = {m: bootstrap_gap(vals[m], nominal[m], result.paired, resamples)
                            for m in all_names}
        conds.append(entry)
    out: dict[str, Any] = {
        "env_id": result.env_id, "suite": result.suite.to_dict(),
        "episodes_per_condition": result.episodes_per_condition, "paired": result.paired,
        "shown_metrics": shown, "conditions": conds, "skipped": result.skipped,
        "timings": result.timings,
    }
    if result.nominal_groups is not None:
        out["per_group"] = summarize_groups(result, shown, resamples)
    if result.twin is not None:
        out["twin"] = summarize_twin(result, all_names, resamples)
    return out


def summarize_groups(result: SuiteResult, names: list[str], resamples: int = 2000) -> list[dict]:
    """The nominal episodes split by the task's episode group (the humanoid: one row per
    clip), each shown metric's mean with a 95% CI; groups without episodes are left out."""
    nominal = result.per_condition["nominal"]
    return [{"name": name, "episodes": int(mask.sum()),
             "metrics": {m: bootstrap_mean(nominal[m][mask], resamples) for m in names}}
            for name, mask in group_masks(result)]


def group_masks(result: SuiteResult):
    """``(group name, (episodes,) bool mask)`` over the nominal episodes, for every episode
    group that has episodes."""
    for g, name in enumerate(result.group_names):
        mask = result.nominal_groups == g
        if mask.any():
            yield name, mask


def groups_table(result: SuiteResult, key: str = "success"):
    """A ``rich`` table of the nominal episodes per episode group (the humanoid: per clip):
    ``key``, falls and the task's report metrics, means."""
    from rich.table import Table

    nominal = result.per_condition["nominal"]
    keep = (key, "fall", *(f"{k}_{a}" for k, a in result.report_metrics.items()))
    shown = [m for m in shown_metrics(nominal, result.report_metrics) if m in keep]
    table = Table(title="nominal, per episode group (clip): means")
    for col in ("group", "episodes", *(m.removesuffix("_mean") for m in shown)):
        table.add_column(col, justify="left" if col == "group" else "right")
    for name, mask in group_masks(result):
        cells = [float(np.nanmean(nominal[m][mask])) for m in shown]
        table.add_row(name, str(int(mask.sum())),
                      *(f"{100 * v:.1f}%" if m in RATE_METRICS else f"{v:.3g}"
                        for m, v in zip(shown, cells)))
    return table


def _trace_xy(eps: Episodes) -> tuple[np.ndarray, list[int]]:
    cols = [eps.state_names.index(c) for c in ("x", "y") if c in eps.state_names]
    return eps.traces[..., cols or list(range(eps.traces.shape[-1]))], cols


def summarize_twin(result: SuiteResult, names: list[str], resamples: int = 2000) -> dict[str, Any]:
    """Nominal episodes on the twin engine vs the same episodes in the fast sim: per-metric gap
    (twin - sim) and the DTW distance between the two position traces of each episode."""
    tw, sim = result.twin, result.nominal_traces
    n = len(result.twin_slots)
    sim_vals = {k: v[result.twin_slots] for k, v in result.per_condition["nominal"].items()}
    out: dict[str, Any] = {
        "env_id": result.twin_id, "episodes": n, "paired": result.twin_paired,
        "metrics": {m: bootstrap_mean(tw.values[m], resamples) for m in names if m in tw.values},
        "sim_metrics": {m: bootstrap_mean(sim_vals[m], resamples) for m in names},
        "gap": {m: bootstrap_gap(tw.values[m], sim_vals[m], result.twin_paired, resamples)
                for m in names if m in tw.values},
    }
    if tw.traces is not None and sim is not None:
        a_all, _ = _trace_xy(sim)
        b_all, _ = _trace_xy(tw)
        d = []
        for i in range(n):
            a = a_all[:, i][np.isfinite(a_all[:, i]).all(-1)]
            b = b_all[:, i][np.isfinite(b_all[:, i]).all(-1)]
            if len(a) and len(b):
                d.append(dtw(a, b)["mean"])
        out["dtw_m"] = bootstrap_mean(np.asarray(d), resamples)
        out["dtw_m"]["per_episode"] = [float(x) for x in d]
    return out


# --------------------------------------------------------------------------- markdown
def _fmt(m: str, s: dict[str, float]) -> str:
    if s.get("mean") is None or not np.isfinite(s["mean"]):
        return "—"
    pct = m in RATE_METRICS
    f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.3g}")
    if np.isfinite(s.get("lo", np.nan)):
        return f"{f(s['mean'])} [{f(s['lo'])}, {f(s['hi'])}]"
    return f(s["mean"])


def _fmt_gap(m: str, g: dict[str, Any]) -> str:
    if g.get("gap") is None or not np.isfinite(g["gap"]):
        return "—"
    pct = m in RATE_METRICS
    f = (lambda v: f"{100 * v:+.1f}") if pct else (lambda v: f"{v:+.3g}")
    star = " *" if g["significant"] else ""
    return f"{f(g['gap'])} [{f(g['lo'])}, {f(g['hi'])}]{star}"


def to_markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """The human-readable report."""
    shown = summary["shown_metrics"]
    lines = [f"# Sim-to-real report: {meta.get('policy', '?')} on {summary['env_id']}", "",
             f"- suite **{summary['suite']['name']}**: {summary['suite']['description']}",
             f"- {summary['episodes_per_condition']} episodes per condition, seed "
             f"{meta.get('seed')}, " + ("paired episodes (same initial states and worlds under "
                                        "every condition)" if summary["paired"] else
                                        "unpaired episodes"),
             f"- command: `{meta.get('command', '')}`",
             f"- git {str(meta.get('git_commit'))[:10]}, {meta.get('created', '')}", "",
             "Values are means with 95% bootstrap confidence intervals; gaps are condition minus "
             "nominal (* = interval excludes 0). Rates in %, gaps of rates in percentage points.",
             ""]
    head = ["condition"] + [x for m in shown for x in (m, f"Δ {m}")]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in summary["conditions"]:
        row = [c["name"]]
        for m in shown:
            row.append(_fmt(m, c["metrics"][m]))
            row.append(_fmt_gap(m, c["gap"][m]) if "gap" in c else "")
        lines.append("| " + " | ".join(row) + " |")
    if summary.get("per_group"):
        lines += ["", "Nominal episodes per episode group (the task's label, e.g. the clip):", "",
                  "| group | episodes | " + " | ".join(shown) + " |",
                  "|" + "---|" * (len(shown) + 2)]
        lines += ["| " + " | ".join([g["name"], str(g["episodes"])]
                                    + [_fmt(m, g["metrics"][m]) for m in shown]) + " |"
                  for g in summary["per_group"]]
    lines += ["", "Simulation diverged (episodes ended by the NaN guard, `sim_unstable`): "
              + ", ".join(f"{c['name']} {c.get('sim_unstable', 0)}"
                          for c in summary["conditions"]) + "."]
    if summary["skipped"]:
        lines += ["", "Not applicable to this task: " + "; ".join(
            f"`{k}` ({v})" for k, v in summary["skipped"].items())]
    tw = summary.get("twin")
    if tw:
        lines += ["", f"## Twin engine: {tw['env_id']}", "",
                  f"{tw['episodes']} nominal episodes from the same initial states "
                  f"({'paired' if tw['paired'] else 'unpaired'}). Gap = twin - fast sim.", "",
                  "| metric | fast sim | twin | gap |", "|---|---|---|---|"]
        for m in shown:
            if m in tw["metrics"]:
                lines.append(f"| {m} | {_fmt(m, tw['sim_metrics'][m])} | "
                             f"{_fmt(m, tw['metrics'][m])} | {_fmt_gap(m, tw['gap'][m])} |")
        if "dtw_m" in tw:
            d = tw["dtw_m"]
            lines += ["", f"Trajectory distance (DTW, mean aligned distance between the sim and "
                          f"twin position traces of each episode): {_fmt('dtw', d)} m."]
    rp = summary.get("replay")
    if rp:
        lines += ["", "## Real-log replay", "", f"Log `{rp['log']}`: {rp['steps']} steps, "
                  f"{rp['duration_s']:.1f} s, replayed open-loop from its first state under "
                  f"every condition.", "",
                  f"| condition | mean position error over the first {rp['common_horizon']} "
                  "steps (m) | mean position error (m) | final position error (m) | DTW (m) | "
                  "sim ended at step |", "|---|---|---|---|---|---|"]
        for name, r in rp["open_loop"].items():
            lines.append(f"| {name} | {r['mean_pos_err_common']:.3f} | {r['mean_pos_err']:.3f} | "
                         f"{r['final_pos_err']:.3f} | {r['dtw_m']:.3f} | "
                         f"{r['ended_at'] if r['ended_at'] is not None else '—'} |")
        lines += ["", f"Closest condition to the log (over the common horizon): "
                      f"**{rp['best_condition']}**."]
        cl = rp.get("closed_loop")
        if cl:
            lines += ["", "Policy on logged observations vs logged actions: mean |Δa| "
                      f"{cl['action_diff_mean']:.4f}; policy on sim observations at the logged "
                      f"states vs on logged observations: mean |Δa| {cl['sim_obs_action_diff_mean']:.4f}"
                      f"; observation gap (sim - logged) mean |Δo| {cl['obs_diff_mean']:.4f}."]
    lines += ["", "Plots: `conditions.png`" + (", `twin.png`" if tw else "")
              + (", `divergence.png`" if rp else "") + "."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots
def _save_png(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_conditions(summary: dict[str, Any], path: Path) -> Path:
    """Bar chart per condition: the first two shown metrics (success, return) with 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = summary["shown_metrics"][:2]
    conds = summary["conditions"]
    names = [c["name"] for c in conds]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.0 * len(shown), 0.35 * len(names) + 1.5),
                             squeeze=False, sharey=True)
    for i, (ax, m) in enumerate(zip(axes[0], shown)):
        s = [c["metrics"][m] for c in conds]
        mean = np.array([x["mean"] for x in s], dtype=float)
        lo = np.array([x["lo"] for x in s], dtype=float)
        hi = np.array([x["hi"] for x in s], dtype=float)
        err = np.nan_to_num(np.stack([mean - lo, hi - mean]), nan=0.0)
        sig = [c.get("gap", {}).get(m, {}).get("significant", False) for c in conds]
        colors = ["#4c72b0" if c["name"] == "nominal" else ("#dd8452" if g else "#aaaaaa")
                  for c, g in zip(conds, sig)]
        y = np.arange(len(names))
        ax.barh(y, mean, xerr=err, color=colors, capsize=3)
        ax.axvline(mean[0], color="#4c72b0", lw=1, ls="--")
        if i == 0:  # the condition names once, on the shared axis
            ax.set_yticks(y, names)
            ax.invert_yaxis()
        ax.set_xlabel(m + (" rate" if m in RATE_METRICS else ""))
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{summary['env_id']}: suite {summary['suite']['name']} "
                 f"(orange = differs from nominal, 95% CI)", fontsize=10)
    return _save_png(fig, path)


def plot_twin(result: SuiteResult, path: Path, episodes: int = 4) -> Path | None:
    """Sim vs twin position traces of the first few paired episodes."""
    if result.twin is None or result.twin.traces is None or result.nominal_traces is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, _ = _trace_xy(result.nominal_traces)
    b, _ = _trace_xy(result.twin)
    k = min(episodes, a.shape[1], b.shape[1])
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.4), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.plot(a[:, i, 0], a[:, i, 1], color="#4c72b0", label="fast sim")
        ax.plot(b[:, i, 0], b[:, i, 1], color="#dd8452", ls="--", label="twin")
        ax.plot(a[0, i, 0], a[0, i, 1], "ko", ms=4)
        ax.set_aspect("equal")
        ax.set_title(f"episode {i}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{result.env_id} vs {result.twin_id}: same start, same policy", fontsize=10)
    return _save_png(fig, path)


def plot_divergence(replay: dict[str, Any], path: Path) -> Path:
    """Open-loop position error over time, one curve per condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    t = np.asarray(replay["time_s"])
    # Nominal last and in black: sensing-only conditions replay the same actions identically
    # and would hide it.
    items = sorted(replay["open_loop"].items(), key=lambda kv: kv[0] == "nominal")
    for name, r in items:
        err = np.asarray(r["pos_err"], dtype=float)
        style = dict(lw=2.2, color="black", zorder=5) if name == "nominal" else dict(lw=1.0)
        ax.plot(t[:len(err)], err, label=name, **style)
    ax.set_xlabel("time since log start (s)")
    ax.set_ylabel("position error sim vs log (m)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"open-loop replay of {Path(replay['log']).name}", fontsize=10)
    return _save_png(fig, path)


# --------------------------------------------------------------------------- all together
def write_report(out_dir: str | Path, result: SuiteResult, meta: dict[str, Any],
                 replay: dict[str, Any] | None = None, resamples: int = 2000) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the plots under ``out_dir`` (atomically)."""
    from rlkd.core.provenance import command_line, machine_info, write_json_atomic

    out = Path(out_dir)
    summary = summarize(result, resamples)
    if replay is not None:
        summary["replay"] = replay
    machine = machine_info()
    meta = {"command": command_line(program_name_only=True),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "git_commit": machine.get("git_commit"), **meta}
    paths = {"conditions.png": plot_conditions(summary, out / "conditions.png")}
    twin_png = plot_twin(result, out / "twin.png")
    if twin_png is not None:
        paths["twin.png"] = twin_png
    if replay is not None:
        paths["divergence.png"] = plot_divergence(replay, out / "divergence.png")
    paths["report.md"] = atomic_write(out / "report.md", lambda f: f.write(to_markdown(summary, meta)),
                                      mode="w")
    paths["report.json"] = write_json_atomic(out / "report.json",
                                             {"meta": meta, "machine": machine, **summary})
    return paths
