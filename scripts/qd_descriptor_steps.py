"""Issue 16's missed target, first probe: does the distilled DCG-ME actor's descriptor error
fall with more critic / actor training? AGVOmni-v0, DCG-ME, seed 0, 25,600 evaluations, at the
CPU preset (300 critic steps, 50 PG steps per iteration: the study's run), 1000 critic steps,
and QDax's paper steps (3000 / 150, replay 1e6).

    bash scripts/qd_descriptor_steps_runs.sh           # the two extra runs (one thread, ~1.5 h)
    python scripts/qd_descriptor_steps.py         # -> results/qd_descriptor_steps.json

Reads each run's ``distill.json`` and last ``metrics.jsonl`` row; the CPU-preset row is the
study's own seed-0 run (``results/qd_archive_distill_runs``).
"""

from __future__ import annotations

import json
from pathlib import Path

from rlkd.core.provenance import command_line, git_commit, machine_info, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"cpu_preset (300 critic / 50 pg)": ROOT / "results/qd_archive_distill_runs/AGVOmni-v0_dcg-me_s0",
        "critic 1000 / pg 50": ROOT / "results/qd_steps_runs/critic1000_s0",
        "paper (3000 critic / 150 pg)": ROOT / "results/qd_steps_runs/paper_s0"}


def main() -> None:
    rows = {}
    for name, run in RUNS.items():
        if not (run / "distill.json").exists():
            continue
        d = json.loads((run / "distill.json").read_text())["td3"]
        last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        rows[name] = {"run": str(run.relative_to(ROOT)), "qd_score": last["qd/qd_score"],
                      "coverage": last["qd/coverage"],
                      **{k: d[k] for k in ("desc_error_cells", "desc_error_cells_median",
                                           "within_one_cell", "qd_score_pct",
                                           "reinserted_qd_score_pct")}}
        print(name, {k: round(v, 3) for k, v in rows[name].items() if isinstance(v, float)})
    write_json_atomic(ROOT / "results/qd_descriptor_steps.json", {
        "rows": rows, "target": {"desc_error_cells_max": 2.0},
        "note": "one seed per setting: a probe, not a study",
        "provenance": {"command": command_line(), "commit": git_commit(ROOT),
                       "machine": machine_info()}})


if __name__ == "__main__":
    main()
