"""Vision distillation study on HumanoidMotion-v0 (issue 15, PhysHMR): the walk expert turned
into students that see proprioception and a camera's keypoints.

    nohup python scripts/humanoid_vision_distill.py --jobs 2 > results/humanoid_vision_distill.log 2>&1 &
    python scripts/humanoid_vision_distill.py --report-only --update-readme
    python scripts/humanoid_vision_distill.py --quick --jobs 1      # smoke test, own files

``--teacher general`` runs the same arms from ``expert:humanoid-general`` on its motion set
(:data:`TEACHERS`; files ``*_general*``).

Arms (``STEPS`` env steps each, ``NUM_ENVS`` envs, clips ``TRAIN_MOTION``, the env's default
camera: 3-5 m, 1-2 m up, +-60 deg, 1-3 px noise, 0-5% dropout; distill arms ``DISTILL_SET``):

==============  ============================================================================
expert          ``expert:humanoid-walk`` through the ``teacher`` group and ``to_absolute``
two_stage       a regressor estimates the expert's reference from ``student``; the expert
                tracks it (:mod:`rlkd.agents.two_stage`, 4 rounds of 200k states)
bc              ``rlkd distill``, beta = 1 throughout (the teacher always acts: BC)
dagger          ``rlkd distill``, DAgger the whole budget (beta 0.9^k)
dagger_ft       DAgger half the budget, then PPO fine-tuning on the 3D tracking reward
dagger_ft_2d    the same on ``reward=2d`` (reprojection, action rate, foot sliding, penetration)
keypoints2d     dagger_ft with ``--student keypoints2d`` (pixels + intrinsics, no rays)
scratch         PPO on ``student`` from scratch (``rlkd train --agent ppo``)
==============  ============================================================================

bc and dagger run 2 seeds, the rest 1. Each is evaluated on ``EPISODES`` episodes per
condition, the same initial states and cameras for every arm (env seed fixed): ``train`` (its
clips and cameras) and ``heldout`` (``walk@1.1``, cameras 7-9 m away, 3 m up). Rows per arm and
condition: mpjpe, mpjpe_local, root_error, accel_error, foot_sliding (episode means of the
env's per-step metrics), completion (episodes that reach the time limit; failures end early
and count their steps), fall_rate. A noise curve evaluates dagger_ft and keypoints2d with the
detector noise scaled x0, x1, x2, x4. Resumable per run (records in the runs folder); the
statistics, targets and README table are :mod:`humanoid_vision_stats`.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rlkd.core.provenance import write_json_atomic
from study_runs import (ROOT, append_jsonl, rel, run_record, train_resumable,
                        train_then_evaluate)

ENV_ID = "HumanoidMotion-v0"
#: ``--teacher`` -> the expert, the student's training clips and the held-out condition.
#: ``walk``: the study as first run (the walk specialist); ``general``: the general tracker
#: (issue 13) on its whole motion set, held out on clips neither it nor the student trained on.
TEACHERS = {
    "walk": {"expert": "expert:humanoid-walk", "train_motion": "walk@1.0,walk,walk@1.3",
             "heldout": {"motion": "walk@1.1", "camera_distance": [7.0, 9.0],
                         "camera_height": [3.0, 3.0]}},
    "general": {"expert": "expert:humanoid-general", "train_motion": "@general",
                "heldout": {"motion": "walk@1.5+jog_in_place,squat+wave,turn@1.2:-0.9,walk@1.8",
                            "camera_distance": [7.0, 9.0], "camera_height": [3.0, 3.0]}},
}
EXPERT = TEACHERS["walk"]["expert"]
TRAIN_MOTION = TEACHERS["walk"]["train_motion"]
HELDOUT = TEACHERS["walk"]["heldout"]
STEPS, NUM_ENVS, EPISODES = 3_000_000, 256, 100
NOISE_SCALES = (0.0, 1.0, 2.0, 4.0)
EVAL_SEED = {"train": 2000, "heldout": 2001}
#: Every distill arm: a 50k-sample dataset, one pass per iteration (the defaults, 100k and two
#: passes, spent 10.8 s of a 17.4 s iteration on the regression at one thread).
DISTILL_SET = ["distill.capacity=50000", "distill.dagger_epochs=1"]

#: arm -> (command prefix or None, seeds, how its steps split, extra --set items). The
#: ``{half}`` placeholder is the DAgger stage's steps (half the budget).
ARMS: dict[str, dict] = {
    "expert": {"kind": "expert", "seeds": 1},
    "two_stage": {"kind": "two_stage", "seeds": 1},
    "bc": {"kind": "distill", "seeds": 2, "student": "rays",
           "set": ["distill.dagger_steps={steps}", "distill.beta0=1.0", "distill.beta_decay=1.0"]},
    "dagger": {"kind": "distill", "seeds": 2, "student": "rays",
               "set": ["distill.dagger_steps={steps}"]},
    "dagger_ft": {"kind": "distill", "seeds": 1, "student": "rays",
                  "set": ["distill.dagger_steps={half}"]},
    "dagger_ft_2d": {"kind": "distill", "seeds": 1, "student": "rays",
                     "set": ["distill.dagger_steps={half}", "reward=2d"]},
    "keypoints2d": {"kind": "distill", "seeds": 1, "student": "keypoints2d",
                    "set": ["distill.dagger_steps={half}"]},
    "scratch": {"kind": "ppo", "seeds": 1},
}


def _set_teacher(name: str) -> None:
    """Point the module's EXPERT / TRAIN_MOTION / HELDOUT at ``TEACHERS[name]`` (each worker
    process is passed the same ``--teacher``)."""
    global EXPERT, TRAIN_MOTION, HELDOUT
    t = TEACHERS[name]
    EXPERT, TRAIN_MOTION, HELDOUT = t["expert"], t["train_motion"], dict(t["heldout"])


def _paths(args) -> tuple[Path, Path]:
    teacher = getattr(args, "teacher", "walk")
    stem = "humanoid_vision_distill" + ("" if teacher == "walk" else f"_{teacher}") + \
        ("_quick" if args.quick else "")
    runs = Path(args.runs or ROOT / "results" / f"{stem}_runs")
    return (runs if args.quick else ROOT / "results") / f"{stem}.json", runs


def _fresh_args(arm: str, seed: int, args) -> tuple[str, list[str]]:
    """``(subcommand, arguments)`` of a new training run of ``arm``."""
    a = ARMS[arm]
    half = max(1, args.steps // 2)
    sets = [f"motion={TRAIN_MOTION}", f"num_threads={args.threads}",
            *[x.format(steps=args.steps, half=half) for x in a.get("set", [])]]
    common = ["--seed", str(seed), "--num-envs", str(args.num_envs)]
    if a["kind"] == "ppo":
        return "train", [ENV_ID, "--agent", "ppo", "--ppo", "actor_groups=[student]", *common,
                         "--set", "action_mode=absolute", "vision=rays", *sets]
    # DAgger-stage checkpoints hold the aggregated dataset (~0.2 GB each): fewer of them.
    return "distill", [ENV_ID, "--teacher", EXPERT, "--student", a["student"], *common,
                       "--checkpoint-every", "100", "--set", *DISTILL_SET, *sets]


def train_arm(arm: str, seed: int, args) -> Path:
    """Train (or resume) one learned arm's run; writes its record when finished."""
    _, runs = _paths(args)
    run_dir, record = runs / f"{arm}_s{seed}", runs / f"{arm}_s{seed}.json"
    if record.exists() or ARMS[arm]["kind"] in ("expert", "two_stage"):
        return run_dir
    sub, fresh = _fresh_args(arm, seed, args)
    t0 = time.time()
    attempts, rows = train_resumable(run_dir, args.steps, sub, fresh, args.threads)
    write_json_atomic(record, run_record(attempts, rows, arm=arm, seed=seed,
                                         omp_threads=args.threads, jobs=args.jobs))
    print(f"trained {arm} s{seed}: {(time.time() - t0) / 60:.1f} min", flush=True)
    return run_dir


# ------------------------------------------------------------------------------ evaluation
def _policy_factory(arm: str, run_dir: Path, args):
    """``(factory(env) -> policy, env overrides of its student env)``."""
    import torch

    from rlkd.policies import load_policy

    expert = load_policy(EXPERT)
    base = {"action_mode": "absolute", "teacher_action_mode": "residual", "vision": "rays"}
    if arm == "expert":
        return (lambda env: lambda obs: env.to_absolute(expert({"policy": obs["teacher"]}),
                                                        "residual")), base
    if arm == "two_stage":
        from rlkd.agents.two_stage import ReferenceRegressor, TwoStagePolicy

        state = torch.load(run_dir / "regressor.pt", weights_only=True)
        reg = ReferenceRegressor(*state["dims"], tuple(state["hidden"]))
        reg.load_state_dict(state["weights"])
        reg.eval()
        return (lambda env: TwoStagePolicy(env, expert, reg)), base
    pol = load_policy(run_dir)
    return (lambda env: pol), {**base, **pol.env_overrides}


def train_two_stage_arm(seed: int, args) -> None:
    """Fit the two-stage arm (stage 1 on the train condition) and save its regressor."""
    import torch

    import rlkd
    from rlkd.agents.two_stage import TwoStageConfig, train_two_stage
    from rlkd.policies import load_policy

    _, runs = _paths(args)
    run_dir = runs / f"two_stage_s{seed}"
    if (run_dir / "regressor.pt").exists():
        return
    t0 = time.time()
    cfg = TwoStageConfig(samples=2_000 if args.quick else 200_000, rounds=2 if args.quick else 4,
                         epochs=2 if args.quick else 30)
    env = rlkd.make(ENV_ID, num_envs=args.num_envs, seed=seed, action_mode="absolute",
                    vision="rays", motion=TRAIN_MOTION, num_threads=args.threads)
    policy, history = train_two_stage(env, load_policy(EXPERT), cfg, seed)
    env.close()
    run_dir.mkdir(parents=True, exist_ok=True)
    reg = policy.regressor
    state = {"weights": reg.state_dict(), "hidden": list(cfg.hidden),
             "dims": [reg.net[0].in_features, reg.net[-1].out_features]}
    tmp = run_dir / "regressor.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(run_dir / "regressor.pt")
    write_json_atomic(run_dir / "fit.json", {"config": vars(cfg), "history": history,
                                             "seconds": time.time() - t0})


def eval_arm(arm: str, seed: int, out: Path, args) -> None:
    """Worker: every condition (train, heldout, and the noise curve where it applies) ->
    per-episode metrics in ``out``."""
    import numpy as np
    import torch

    import rlkd
    from rlkd.sim2real.evaluate import run_first_episodes

    torch.set_num_threads(args.threads)
    _, runs = _paths(args)
    factory, overrides = _policy_factory(arm, runs / f"{arm}_s{seed}", args)
    conditions = {"train": {"motion": TRAIN_MOTION}, "heldout": dict(HELDOUT)}
    if arm in ("dagger_ft", "keypoints2d"):
        conditions.update({f"noise_x{k:g}": {"motion": TRAIN_MOTION, "_noise": k}
                           for k in NOISE_SCALES})
    res = {}
    for name, cond in conditions.items():
        cond = dict(cond)
        noise = cond.pop("_noise", None)
        kw = {**overrides, **{k: tuple(v) if isinstance(v, list) else v for k, v in cond.items()},
              "num_threads": args.threads}
        seed_e = EVAL_SEED["heldout" if name == "heldout" else "train"]
        env = rlkd.make(ENV_ID, num_envs=args.episodes, seed=seed_e, **kw)
        if noise is not None:
            env.params["keypoint_noise_scale"][:] = noise
        t0 = time.time()
        eps = run_first_episodes(env, factory(env), seed_e)
        env.close()
        v = eps.values
        res[name] = {k: np.nan_to_num(np.asarray(v[src], float), nan=0.0).tolist()
                     if k in ("completion", "fall") else np.asarray(v[src], float).tolist()
                     for k, src in (("completion", "success"), ("fall", "fall"),
                                    ("mpjpe", "mpjpe_mean"), ("mpjpe_local", "mpjpe_local_mean"),
                                    ("root_error", "root_error_mean"),
                                    ("accel_error", "accel_error_mean"),
                                    ("foot_sliding", "foot_sliding_mean"), ("length", "length"))}
        res[name]["seconds"] = time.time() - t0
    write_json_atomic(out, {"arm": arm, "seed": seed, "episodes": args.episodes,
                            "conditions": res, "overrides": {k: str(v) for k, v in
                                                             overrides.items()}})


def _job(arm: str, seed: int, args) -> None:
    _, runs = _paths(args)
    train = (lambda: train_two_stage_arm(seed, args)) if ARMS[arm]["kind"] == "two_stage" \
        else (lambda: train_arm(arm, seed, args))
    train_then_evaluate(
        f"{arm} s{seed}", train, runs / f"{arm}_s{seed}" / "vision_eval.json",
        [sys.executable, __file__, "--eval-arm", arm, "--eval-seed-of", str(seed),
         *(["--quick"] if args.quick else []), "--threads", str(args.threads),
         "--episodes", str(args.episodes), "--teacher", args.teacher,
         *(["--runs", str(args.runs)] if args.runs else [])],
        args.threads, runs / f"{arm}_s{seed}.eval.log")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = ap.add_argument
    add("--quick", action="store_true", help="smoke test: tiny budgets, its own files")
    add("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    add("--jobs", type=int, default=2)
    add("--threads", type=int, default=1)
    add("--steps", type=int, default=None, help=f"env steps per learned arm ({STEPS:,})")
    add("--num-envs", type=int, default=None, help=f"default {NUM_ENVS}")
    add("--episodes", type=int, default=None, help=f"per condition ({EPISODES})")
    add("--runs", default=None)
    add("--teacher", choices=list(TEACHERS), default="walk",
        help="the expert and its clips (general: files *_general*, README untouched)")
    add("--report-only", action="store_true")
    add("--update-readme", action="store_true")
    add("--eval-arm", help=argparse.SUPPRESS)
    add("--eval-seed-of", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    _set_teacher(args.teacher)
    if args.teacher != "walk":
        args.update_readme = False  # the README table is the walk study's
    args.num_envs = args.num_envs or (8 if args.quick else NUM_ENVS)
    args.steps = args.steps or (args.num_envs * 24 * 2 if args.quick else STEPS)
    args.episodes = args.episodes or (8 if args.quick else EPISODES)
    _, runs = _paths(args)
    if args.eval_arm:
        return eval_arm(args.eval_arm, args.eval_seed_of, runs / f"{args.eval_arm}_s"
                        f"{args.eval_seed_of}" / "vision_eval.json", args)
    if not args.report_only:
        runs.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        jobs = [(a, s) for s in range(2) for a in args.arms if s < ARMS[a]["seeds"]]
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(lambda j: _job(*j, args), jobs))
        append_jsonl(runs / "sessions.jsonl", {"ended": time.strftime("%F %T"),
                                               "elapsed_s": time.time() - t0})
    from humanoid_vision_stats import report

    report(args, ARMS, runs, _paths(args)[0])
    print(f"runs in {rel(runs)}", flush=True)


if __name__ == "__main__":
    main()
