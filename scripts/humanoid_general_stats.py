"""Statistics, targets and README table of ``scripts/humanoid_general_tracker.py`` (issue 13).

Clips are grouped into families (``walk``, ``turn``, ``in_place``: jog/squat/wave, ``concat``:
``a+b`` clips, ``cmu``: real mocap) and, per policy, into ``train`` (clips of its training set)
and ``heldout`` (never trained on; the walk specialist is labelled with the general tracker's
split, so both columns are the same clips). A family's value is the mean over its clips of the
per-clip means (clips weigh alike); its 95% CI comes from a two-level bootstrap (clips with
replacement, then episodes within each drawn clip), so a family of few clips gets the wide
interval it deserves. ``results/humanoid_general_tracker.json``::

    families: {policy: {split: {family | "procedural": {metric: {mean, ci}}}}}
    clips: {policy: {clip: {split, family, metric: mean}}}
    recovery: {policy: {fallen | offset: {rate_5s: {mean, ci}, time_s: {mean, ci}, n}}}
    targets: {name: {value, target, met}}
    runs: [records], study_wall_s, setup, provenance
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rlkd.core.provenance import command_line, git_commit, machine_info, write_json_atomic
from study_runs import ROOT, study_wall_s

METRICS = ("completion", "fall", "mpjpe", "mpjpe_local", "root_error")
MARK = "humanoid_general_tracker:table"
IN_PLACE = ("jog_in_place", "squat", "wave")
PROCEDURAL = ("walk", "turn", "in_place", "concat")


def family(clip: str) -> str:
    if "+" in clip:
        return "concat"
    if clip.startswith(("walk@", "walk")) and not clip.startswith("walk_"):
        return "walk"
    if clip.startswith("turn"):
        return "turn"
    return "in_place" if clip in IN_PLACE else "cmu"


def _load(runs: Path, names) -> tuple[dict, dict]:
    evals, records = {}, {}
    for n in ["specialist", *names]:
        f = runs / f"{n}.eval.json"
        if f.exists():
            evals[n] = json.loads(f.read_text())
        r = runs / f"{n}.json"
        if r.exists():
            records[n] = json.loads(r.read_text())
    return evals, records


def _split(ev: dict, clip: str, general: str | None, heldout: tuple) -> str:
    """``train`` or ``heldout`` for ``clip`` of the policy that produced ``ev`` (``heldout``:
    the held-out procedural clips and the CMU clip held out of ``no_131_02``)."""
    procedural, cmu = heldout
    trained = ev["trained_on"] if ev["trained_on"] != "walk" else general or "no_131_02"
    if clip in procedural or (clip == cmu and trained == "no_131_02"):
        return "heldout"
    return "train"


def _boot(per_clip: list[np.ndarray], rng, n: int = 2000) -> dict:
    """Mean over clips of per-clip means, two-level bootstrap CI."""
    means = np.array([np.nanmean(x) for x in per_clip])
    out = {"mean": float(np.nanmean(means)), "clips": len(per_clip)}
    if sum(len(x) for x in per_clip) < 2:
        return {**out, "ci": [float("nan"), float("nan")]}
    stats = np.empty(n)
    for b in range(n):
        pick = rng.integers(0, len(per_clip), len(per_clip))
        stats[b] = np.nanmean([np.nanmean(per_clip[i][rng.integers(0, len(per_clip[i]),
                                                                    len(per_clip[i]))])
                               for i in pick])
    return {**out, "ci": [float(v) for v in np.nanquantile(stats, [0.025, 0.975])]}


def analyse(evals: dict, headline: str | None, heldout: tuple) -> tuple[dict, dict, dict]:
    rng = np.random.default_rng(0)
    general = evals.get(headline, {}).get("trained_on") if headline else None
    families, clips, recovery = {}, {}, {}
    for pol, ev in evals.items():
        groups: dict[tuple[str, str], list[str]] = {}
        clips[pol] = {}
        for c, vals in ev["clips"].items():
            sp, fam = _split(ev, c, general, heldout), family(c)
            groups.setdefault((sp, fam), []).append(c)
            if fam in PROCEDURAL:
                groups.setdefault((sp, "procedural"), []).append(c)
            clips[pol][c] = {"split": sp, "family": fam,
                             **{m: float(np.nanmean(vals[m])) for m in METRICS}}
        families[pol] = {}
        for (sp, fam), names in sorted(groups.items()):
            families[pol].setdefault(sp, {})[fam] = {
                m: _boot([np.asarray(ev["clips"][c][m], float) for c in names], rng)
                for m in METRICS}
        recovery[pol] = {}
        for kind, r in ev["recovery"].items():
            ok = np.asarray(r.get("recovered", []), float) * (np.asarray(
                r.get("recovery_time", []), float) <= 5.0 + 1e-6)
            times = np.asarray(r.get("recovery_time", []), float)[ok > 0]
            recovery[pol][kind] = {"n": int(len(ok)), "rate_5s": _boot([ok], rng),
                                   "time_s": _boot([times], rng) if len(times) else None}
    return families, clips, recovery


def targets(families: dict, clips: dict, recovery: dict, headline: str | None) -> dict:
    """Issue 13's targets for the headline policy (``met`` None when it was not evaluated)."""
    out = {}

    def add(name, value, target, ok):
        out[name] = {"value": value, "target": target, "met": None if value is None else bool(ok)}

    fam = families.get(headline, {})

    def val(sp, f, m):
        return fam.get(sp, {}).get(f, {}).get(m, {}).get("mean")

    for sp, c_min, e_max in (("train", 0.95, 50.0), ("heldout", 0.80, 80.0)):
        c, e = val(sp, "procedural", "completion"), val(sp, "procedural", "mpjpe")
        add(f"{sp}_completion", c, f">= {c_min}", c is not None and c >= c_min)
        add(f"{sp}_mpjpe_mm", e, f"<= {e_max:g}", e is not None and e <= e_max)
    cmu = [v for v in clips.get(headline, {}).values() if v["family"] == "cmu"]
    c = float(np.mean([v["completion"] for v in cmu])) if cmu else None
    e = float(np.mean([v["mpjpe"] for v in cmu])) if cmu else None
    add("cmu_completion", c, ">= 0.9", c is not None and c >= 0.9)
    add("cmu_mpjpe_mm", e, "<= 70", e is not None and e <= 70)
    r = recovery.get(headline, {}).get("fallen", {}).get("rate_5s", {}).get("mean")
    add("fall_recovery_within_5s", r, ">= 0.8", r is not None and r >= 0.8)
    g = clips.get(headline, {}).get("walk@1.2", {}).get("mpjpe")
    s = clips.get("specialist", {}).get("walk@1.2", {}).get("mpjpe")
    ratio = None if g is None or s is None else g / s
    add("walk_mpjpe_over_specialist", ratio, "<= 1.2", ratio is not None and ratio <= 1.2)
    return out


def _cell(d: dict | None, pct: bool = False) -> str:
    if not d:
        return ""
    k, f = (100, "{:.0f}%") if pct else (1, "{:.1f}")
    lo, hi = d["ci"]
    ci = "" if np.isnan(lo) else f" [{f.format(k * lo).rstrip('%')}, {f.format(k * hi)}]"
    return f.format(k * d["mean"]) + ci


def table(families: dict, recovery: dict, tg: dict, headline: str | None, records: dict,
          wall_s: float) -> str:
    if headline is None:
        return "No general tracker evaluated yet.\n"
    g, s = families.get(headline, {}), families.get("specialist", {})
    lines = [f"| split | family | clips | completion ({headline}) | MPJPE mm | root-aligned mm | "
             f"falls | specialist completion | specialist MPJPE |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for sp in ("train", "heldout"):
        for fam in (*PROCEDURAL, "procedural", "cmu"):
            r = g.get(sp, {}).get(fam)
            if not r:
                continue
            q = s.get(sp, {}).get(fam, {})
            lines.append(f"| {sp} | {fam} | {r['mpjpe']['clips']} | {_cell(r['completion'], 1)} | "
                         f"{_cell(r['mpjpe'])} | {_cell(r['mpjpe_local'])} | "
                         f"{_cell(r['fall'], 1)} | {_cell(q.get('completion'), 1)} | "
                         f"{_cell(q.get('mpjpe'))} |")
    rec = []
    for pol in (headline, "specialist"):
        for kind, v in recovery.get(pol, {}).items():
            t = v["time_s"]
            rec.append(f"{pol} {kind}: {_cell(v['rate_5s'], 1)} within 5 s"
                       + (f", {t['mean']:.2f} s on average" if t else "") + f" (n={v['n']})")
    met = "; ".join(f"{k} {'met' if v['met'] else 'missed' if v['met'] is False else 'n/a'}"
                    + ("" if v["value"] is None or isinstance(v["value"], dict)
                       else f" ({v['value']:.3g})") for k, v in tg.items())
    budget = ", ".join(f"{n} {r['env_steps'] / 1e6:.1f}M steps / {r['wall_s'] / 60:.0f} min"
                       for n, r in records.items())
    return ("\n".join(lines) + "\n\nRecovery: " + "; ".join(rec) + f".\n\nTraining: {budget}; "
            f"study wall-clock {wall_s / 60:.0f} min.\n\n- targets: {met}\n")


def report(args, runs_cfg: dict, runs: Path, out_json: Path, heldout: tuple) -> dict:
    """Write the study's JSON (and the README table with ``--update-readme``); ``heldout``:
    ``(held-out procedural clip names, held-out CMU clip name)``."""
    evals, records = _load(runs, list(runs_cfg))
    if not evals:
        raise SystemExit(f"no evaluated policies under {runs}; run the study first")
    trained = [n for n in runs_cfg if n in evals]
    headline = trained[-1] if trained else None
    families, clips, recovery = analyse(evals, headline, heldout)
    tg = targets(families, clips, recovery, headline)
    wall = study_wall_s(runs, records)
    rep = {"headline": headline, "families": families, "clips": clips, "recovery": recovery,
           "targets": tg, "study_wall_s": wall, "runs": list(records.values()),
           "missing": [n for n in ["specialist", *args.arms] if n not in evals],
           "setup": {"num_envs": args.num_envs, "episodes_per_clip": args.episodes,
                     "recovery_episodes": args.recovery_episodes, "eval_steps": args.eval_steps,
                     "threads": args.threads, "quick": bool(args.quick),
                     "runs": {n: runs_cfg[n] for n in args.arms}},
           "provenance": {"command": command_line(), "commit": git_commit(ROOT),
                          "machine": machine_info()}}
    write_json_atomic(out_json, rep)
    text = table(families, recovery, tg, headline, records, wall)
    print(text, flush=True)
    if args.update_readme and not args.quick and not getattr(args, "out", None):
        readme = ROOT / "README.md"
        s = readme.read_text()
        a, b = f"<!-- {MARK} -->", f"<!-- /{MARK} -->"
        if a not in s or b not in s:
            raise SystemExit(f"README.md has no {a} ... {b} markers: add them where the table "
                             f"goes, then rerun with --report-only --update-readme")
        i, j = s.index(a) + len(a), s.index(b)
        readme.write_text(s[:i] + "\n" + text + s[j:])
    return rep
