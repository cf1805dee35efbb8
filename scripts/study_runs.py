"""What every study script shares: resumable training runs as ``rlkd`` subprocesses, their
metrics, per-run records, and the study's wall-clock over sessions.

A run lives in ``<runs>/<name>/`` (an ordinary ``rlkd train`` / ``rlkd distill`` run) beside
``<name>.attempts.jsonl`` (a line per start and per end of a process) and ``<name>.log``; the
caller writes ``<name>.json`` (its record) when the run is finished, which marks it done. A run
cut by the end of a session continues with ``--resume DIR --steps N``; one that died before its
first checkpoint is restarted from scratch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rel(p: Path | str) -> str:
    """``p`` relative to the repository when inside it (every command runs there)."""
    p = Path(p).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def run_logged(cmd: list[str], threads: int, log: Path) -> None:
    """``cmd`` in the repository with ``threads`` OMP/MKL threads, output appended to ``log``;
    raises ``CalledProcessError`` when it fails."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT)


def train_then_evaluate(label: str, train, out: Path, eval_cmd: list[str], threads: int,
                        log: Path) -> None:
    """One study job: ``train()``, then ``eval_cmd`` (a worker that writes ``out``) unless
    ``out`` exists. A failure is printed, not raised: one failed run must not stop a study."""
    try:
        train()
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            run_logged(eval_cmd, threads, log)
        print(f"evaluated {label}", flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"FAILED {label}: {e}", flush=True)


def metrics_rows(run_dir: Path) -> list[dict]:
    """metrics.jsonl, one row per iteration (a resume redoes the iterations after the last
    checkpoint: the later row wins)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    by_it = {r.get("iteration", i): r for i, r in enumerate(rows)}
    return [by_it[k] for k in sorted(by_it)]


def train_resumable(run_dir: Path, steps: int, subcommand: str, fresh_args: list[str],
                    threads: int) -> tuple[list[dict], list[dict]]:
    """Bring the run in ``run_dir`` to ``steps`` env steps: ``rlkd SUBCOMMAND *fresh_args --out
    run_dir --steps steps`` for a new run, ``--resume`` for a cut one, nothing for a finished
    one. Returns ``(attempts, metrics rows)``."""
    last, attempts_f = run_dir / "checkpoints" / "last.pt", run_dir.with_suffix(".attempts.jsonl")
    if resumed := last.exists():
        from rlkd.train.checkpoint import load_checkpoint

        done = int(load_checkpoint(last, required=("env_steps",))["env_steps"])
        args = None if done >= steps else ["--resume", rel(run_dir), "--steps", str(steps)]
        if args is not None and subcommand == "distill":
            args = ["--out", rel(run_dir), "--resume", "--steps", str(steps)]
    else:
        if run_dir.exists():  # died before its first checkpoint: nothing to keep
            shutil.rmtree(run_dir)
        attempts_f.unlink(missing_ok=True)
        args = [*fresh_args, "--steps", str(steps), "--out", rel(run_dir)]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    if args is not None:  # else: complete (killed between its last checkpoint and the record)
        t0 = time.time()
        cmd = [sys.executable, "-m", "rlkd", subcommand, *args, "--no-progress", "--no-video"]
        append_jsonl(attempts_f, {"command": " ".join(["rlkd", *cmd[3:]]), "resumed": resumed,
                                  "started": time.strftime("%F %T")})
        run_logged(cmd, threads, run_dir.with_suffix(".log"))
        append_jsonl(attempts_f, {"wall_s": time.time() - t0, "ended": time.strftime("%F %T")})
    attempts = [json.loads(x) for x in (attempts_f.read_text().splitlines()
                                        if attempts_f.exists() else []) if x.strip()]
    return attempts, metrics_rows(run_dir)


def run_record(attempts: list[dict], rows: list[dict], **extra) -> dict:
    """The common part of a finished run's record: its first command, attempts, process wall
    time, kept training time, env steps, and the per-iteration curve of ``charts/*``."""
    starts = [a for a in attempts if "command" in a]
    secs = np.cumsum([r.get("perf/collection_s", 0) + r.get("perf/learn_s", 0) for r in rows])
    return {**extra,
            "command": next((a for a in starts if not a["resumed"]), starts[0])["command"]
            if starts else None,
            "attempts": attempts, "wall_s": float(sum(a.get("wall_s", 0) for a in attempts)),
            "train_s": float(secs[-1]) if len(secs) else 0.0,
            "env_steps": int(rows[-1]["env_steps"]) if rows else 0,
            "final_success_rate": rows[-1].get("charts/success_rate") if rows else None,
            "curve": {"env_steps": [int(r["env_steps"]) for r in rows],
                      "success": [r.get("charts/success_rate") for r in rows],
                      "seconds": [round(float(s), 2) for s in secs]},
            "finished_at": time.strftime("%F %T")}


def _stamp(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def study_wall_s(runs: Path, records: dict) -> float:
    """Wall-clock seconds a study has taken over all its sessions: the union of every run's
    process attempts (``started`` -> ``ended``), its evaluation (-> the record's
    ``finished_at``) and every line of ``sessions.jsonl`` (``ended``, ``elapsed_s``). A session
    killed before it could record itself still counts through its runs' own time stamps."""
    spans = []
    for name, rec in records.items():
        f = runs / f"{name}.attempts.jsonl"
        for line in f.read_text().splitlines() if f.exists() else []:
            entry = json.loads(line)
            if "started" in entry:
                spans.append([_stamp(entry["started"]), None])
            elif "ended" in entry and spans and spans[-1][1] is None:
                spans[-1][1] = _stamp(entry["ended"])
        if rec.get("finished_at") and spans:
            spans.append([spans[-1][1] or spans[-1][0], _stamp(rec["finished_at"])])
    ses = runs / "sessions.jsonl"
    for line in ses.read_text().splitlines() if ses.exists() else []:
        if line.strip():
            entry = json.loads(line)
            end = _stamp(entry["ended"])
            spans.append([end - float(entry["elapsed_s"]), end])
    total, cur = 0.0, None
    for lo, hi in sorted([lo, hi] for lo, hi in spans if hi is not None):
        if cur is None or lo > cur[1]:
            total += 0.0 if cur is None else cur[1] - cur[0]
            cur = [lo, hi]
        else:
            cur[1] = max(cur[1], hi)
    return total + (0.0 if cur is None else cur[1] - cur[0])
