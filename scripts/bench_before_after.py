"""Speed of this checkout against another install of rlkd, same machine, same run, alternating.

Measures what a refactor must not slow down: ``rlkd bench`` env steps/s and the whole-loop
training steps/s (``charts/SPS``) of ``rlkd train``. Each measurement runs in its own process;
the two installs alternate ``--repeats`` times so drift of the machine hits both alike.

    git worktree add /tmp/before <commit>
    pip install --no-deps --no-build-isolation --target /tmp/before_site /tmp/before
    python scripts/bench_before_after.py --before-site /tmp/before_site --label-before <commit>

Writes ``results/bench_before_after.json`` (command, commits, machine, every raw number).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BENCH = [("AGVWarehouse-v0", [1024, 4096], 400_000), ("HumanoidMotion-v0", [512], 40_000)]
TRAIN = [("AGVWarehouse-v0", "ppo", 256, 480_000), ("AGVWarehouse-v0", "ppo-rdd", 256, 480_000)]


def _run(site: str | None, args: list[str], cwd: Path) -> None:
    env = dict(os.environ)
    if site:  # the other install first on the path; run outside the repo so '' finds nothing
        env["PYTHONPATH"] = site
    subprocess.run([sys.executable, "-m", "rlkd", *args], check=True, cwd=cwd, env=env,
                   stdout=subprocess.DEVNULL)


def bench_once(site: str | None, env_id: str, sizes: list[int], budget: int, tmp: Path) -> dict:
    out = tmp / "bench.json"
    _run(site, ["bench", env_id, "--num-envs", *map(str, sizes), "--peer-num-envs", "0",
                "--budget", str(budget), "--json", str(out)], tmp)
    res = json.loads(out.read_text())
    return {str(r["num_envs"]): r["env_steps_per_s"] for r in res["ours"]}


def train_once(site: str | None, env_id: str, agent: str, num_envs: int, steps: int,
               tmp: Path) -> float:
    run = tmp / f"run_{agent}"
    _run(site, ["train", env_id, "--agent", agent, "--num-envs", str(num_envs), "--steps",
                str(steps), "--out", str(run), "--no-video"], tmp)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    sps = [r["charts/SPS"] for r in rows[2:]]  # the first iterations include warm-up
    subprocess.run(["rm", "-rf", str(run)], check=True)
    return statistics.median(sps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before-site", required=True, help="site dir of the other install")
    ap.add_argument("--label-before", default="before")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench_before_after.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from rlkd.core.provenance import command_line, git_commit, machine_info, write_json_atomic

    sides = {"before": args.before_site, "after": None}
    raw: dict = {s: {"bench": [], "train": []} for s in sides}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # "after" runs with no PYTHONPATH: the editable install of this checkout.
        for rep in range(args.repeats):
            for side, site in sides.items():
                for env_id, sizes, budget in BENCH:
                    raw[side]["bench"].append({"env": env_id, "repeat": rep, "env_steps_per_s":
                                               bench_once(site, env_id, sizes, budget, tmp)})
                for env_id, agent, n, steps in TRAIN:
                    raw[side]["train"].append({"env": env_id, "agent": agent, "num_envs": n,
                                               "repeat": rep, "sps_median":
                                               train_once(site, env_id, agent, n, steps, tmp)})
                print(side, rep, "done", flush=True)

    summary = []
    for env_id, sizes, _ in BENCH:
        for n in sizes:
            vals = {s: max(r["env_steps_per_s"][str(n)] for r in raw[s]["bench"] if r["env"] == env_id)
                    for s in sides}
            summary.append({"what": f"rlkd bench {env_id} num_envs={n} (env steps/s, best)",
                            **vals, "ratio_after_vs_before": vals["after"] / vals["before"]})
    for env_id, agent, n, _ in TRAIN:
        vals = {s: max(r["sps_median"] for r in raw[s]["train"] if r["agent"] == agent)
                for s in sides}
        summary.append({"what": f"rlkd train {env_id} --agent {agent} --num-envs {n} "
                                f"(charts/SPS median per run, best run)",
                        **vals, "ratio_after_vs_before": vals["after"] / vals["before"]})
    result = {"command": command_line(), "commit_after": git_commit(),
              "before": args.label_before, "machine": machine_info(), "summary": summary,
              "raw": raw}
    write_json_atomic(args.out, result)
    for row in summary:
        print(f"{row['what']}: before {row['before']:,.0f}, after {row['after']:,.0f}, "
              f"ratio {row['ratio_after_vs_before']:.3f}")


if __name__ == "__main__":
    main()
