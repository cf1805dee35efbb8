"""PPO parity study (issue 18): ``rlkd train --agent ppo`` vs Stable-Baselines3 PPO vs rsl_rl's
``OnPolicyRunner`` on ``AGVWarehouse-v0``, same env, net, rollout, epochs, minibatches,
gamma/lambda, clip, entropy bonus, learning rate and gradient clip; >= 5 seeds each; the sparse
default reward and ``dense`` shaping (``progress_reward_scale`` 1.0 per metre of progress).

    nohup python scripts/ppo_parity.py --jobs 2 > results/ppo_parity.log 2>&1 &
    python scripts/ppo_parity.py --report-only --update-readme
    python scripts/ppo_parity.py --quick                  # smoke test, its own files
    python scripts/ppo_parity.py --trainers rlkd rlkd+fixed_lr sb3 --tasks sparse --seeds 0 1 2

Trainers (every one drives the same batched env object: ours directly, SB3 through
``SB3VecEnv`` + ``VecNormalize(norm_reward=False)``, rsl_rl through ``RslRlVecEnv``):

* ``rlkd``: our PPO at its defaults (KL-adaptive lr, clipped value loss, asymmetric critic on
  the ``critic`` group, running obs normalization);
* ``sb3``: SB3 ``PPO("MlpPolicy")`` (fixed lr, no value clipping, critic on the policy obs);
* ``rsl_rl``: rsl-rl-lib's PPO (adaptive lr, clipped value loss, asymmetric critic), the same
  recipe ours follows;
* ablations of ours, ``rlkd+NAME``: see :data:`ABLATIONS` (each one flips one difference
  between ours and SB3 or rsl_rl).

Every run's curve is measured the same way for all trainers, at the env (a wrapper on the env's
``step``, not each trainer's own logger): success rate of the last ``WINDOW`` finished training
episodes (stochastic actions; the same finished-episode bias for every trainer), sampled every
``SAMPLE_EVERY`` env steps, with the wall-clock since the trainer's ``learn`` began. A run stops
at ``--steps`` env steps or ``--seconds`` of wall-clock, whichever comes first. One JSON file per
run in ``results/ppo_parity_runs`` (a rerun skips finished runs; a run cut by a stop starts
over: SB3 and rsl_rl cannot resume a run exactly, so no trainer does here). Statistics, targets, plot and
README table: :mod:`ppo_parity_stats`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rlkd.core.provenance import cpu_model, write_json_atomic
from study_runs import ROOT, rel, train_then_evaluate

ENV_ID = "AGVWarehouse-v0"
NUM_ENVS, NUM_STEPS, EPOCHS, MINIBATCHES = 256, 24, 5, 4
HIDDEN = (256, 128, 64)
LR, GAMMA, LAM, CLIP, ENT_COEF, VF_COEF, MAX_GRAD_NORM = 1e-3, 0.99, 0.95, 0.2, 0.005, 1.0, 1.0
TASKS = {"sparse": {}, "dense": {"progress_reward_scale": 1.0}}
STEPS, SECONDS, SEEDS = 6_000_000, 600.0, (0, 1, 2, 3, 4)
WINDOW, SAMPLE_EVERY = 200, 61_440  # 10 rollouts of 256 x 24
#: One difference between our PPO and SB3's (fixed_lr, no_value_clip, symmetric) or rsl_rl's
#: (rollout_adv_norm, torch_init) each, as PPOConfig overrides; sb3_like and rsl_like flip all of
#: that peer's.
ABLATIONS = {
    "fixed_lr": {"lr_schedule": "fixed"},
    "no_value_clip": {"clip_value": False},
    "symmetric": {"asymmetric_critic": False},
    "sb3_like": {"lr_schedule": "fixed", "clip_value": False, "asymmetric_critic": False},
    "rollout_adv_norm": {"advantage_norm_scope": "rollout"},
    "torch_init": {"weight_init": "torch_default"},
    "rsl_like": {"advantage_norm_scope": "rollout", "weight_init": "torch_default"},
    "bf16": {"update_precision": "bf16"},  # not a peer difference: our faster update
}
TRAINERS = ("rlkd", "sb3", "rsl_rl", *(f"rlkd+{a}" for a in ABLATIONS))


class StopRun(Exception):
    """Raised from inside the env's step when the run's budget is spent."""


class CurveRecorder:
    """Wraps ``env.step`` (instance attribute) to record the training curve and end the run.

    ``success`` of the last ``window`` finished episodes every ``every`` env steps; raises
    :class:`StopRun` once ``steps`` env steps or ``seconds`` are spent (``start()`` sets t0)."""

    def __init__(self, env, steps: int, seconds: float, window: int, every: int):
        self.env, self.steps, self.seconds, self.every = env, steps, seconds, every
        self.buf = np.zeros(window)
        self.count = self.env_steps = 0
        self.t0 = None
        self.curve = {"env_steps": [], "success": [], "seconds": [], "episodes": []}
        self._next = every
        self._step = env.step
        env.step = self._wrapped

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def _wrapped(self, actions):
        if self.t0 is None:
            self.start()
        out = self._step(actions)
        ep = out[4].get("episode")
        if ep is not None and len(ep["success"]):
            s = ep["success"].float().cpu().numpy()
            idx = (self.count + np.arange(len(s))) % len(self.buf)
            self.buf[idx[-len(self.buf):]] = s[-len(self.buf):]
            self.count += len(s)
        self.env_steps += self.env.num_envs
        elapsed = time.perf_counter() - self.t0
        if self.env_steps >= self._next:
            self._next += self.every
            c = self.curve
            n = min(self.count, len(self.buf))
            c["env_steps"].append(self.env_steps)
            c["success"].append(float(self.buf[:n].mean()) if n else 0.0)
            c["seconds"].append(elapsed)
            c["episodes"].append(self.count)
        if self.env_steps >= self.steps or elapsed >= self.seconds:
            raise StopRun
        return out


def _make_env(task: str, seed: int):
    import rlkd

    return rlkd.make(ENV_ID, num_envs=NUM_ENVS, seed=seed, **TASKS[task])


def _ppo_overrides(trainer: str) -> dict:
    return dict(ABLATIONS[trainer.split("+", 1)[1]]) if "+" in trainer else {}


def train_rlkd(trainer: str, task: str, seed: int, rec_args: tuple, tmp: Path) -> CurveRecorder:
    from rlkd.train import OnPolicyRunner, TrainConfig

    cfg = TrainConfig(env=ENV_ID, agent="ppo", num_envs=NUM_ENVS, steps=10**12, seed=seed,
                      out=str(tmp), checkpoint_every=10**9, video=False, progress=False,
                      overwrite=True,  # scratch folder: a run cut by a stop starts over
                      env_overrides=dict(TASKS[task]),
                      agent_cfg={"ppo": {"num_steps": NUM_STEPS, "num_epochs": EPOCHS,
                                         "num_minibatches": MINIBATCHES, "actor_hidden": HIDDEN,
                                         "critic_hidden": HIDDEN, "entropy_coef": ENT_COEF,
                                         "gamma": GAMMA, "gae_lambda": LAM, "clip_eps": CLIP,
                                         "learning_rate": LR, "value_coef": VF_COEF,
                                         "max_grad_norm": MAX_GRAD_NORM,
                                         **_ppo_overrides(trainer)}})
    runner = OnPolicyRunner(cfg)
    rec = CurveRecorder(runner.env, *rec_args)
    rec.start()
    try:
        runner.learn()
    except StopRun:
        pass
    return rec


def train_sb3(task: str, seed: int, rec_args: tuple) -> CurveRecorder:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from rlkd.adapters import SB3VecEnv

    env = _make_env(task, seed)
    rec = CurveRecorder(env, *rec_args)
    venv = VecNormalize(SB3VecEnv(env, render_mode=None), norm_obs=True, norm_reward=False)
    model = PPO("MlpPolicy", venv, n_steps=NUM_STEPS, batch_size=NUM_ENVS * NUM_STEPS // MINIBATCHES,
                n_epochs=EPOCHS, learning_rate=LR, gamma=GAMMA, gae_lambda=LAM, clip_range=CLIP,
                ent_coef=ENT_COEF, vf_coef=VF_COEF, max_grad_norm=MAX_GRAD_NORM, seed=seed,
                device="cpu", policy_kwargs=dict(net_arch=dict(pi=list(HIDDEN), vf=list(HIDDEN)),
                                                 activation_fn=torch.nn.ELU), verbose=0)
    rec.start()
    try:
        model.learn(10**12)
    except StopRun:
        pass
    return rec


def train_rsl_rl(task: str, seed: int, rec_args: tuple) -> CurveRecorder:
    import torch
    from rsl_rl.runners import OnPolicyRunner

    from rlkd.adapters import RslRlVecEnv

    torch.manual_seed(seed)
    env = _make_env(task, seed)
    rec = CurveRecorder(env, *rec_args)
    mlp = {"class_name": "MLPModel", "hidden_dims": list(HIDDEN), "activation": "elu",
           "obs_normalization": True}
    cfg = {"num_steps_per_env": NUM_STEPS, "save_interval": 10**9, "seed": seed,
           "obs_groups": {"actor": ["policy"], "critic": ["critic"]},
           "algorithm": {"class_name": "PPO", "num_learning_epochs": EPOCHS,
                         "num_mini_batches": MINIBATCHES, "learning_rate": LR,
                         "schedule": "adaptive", "desired_kl": 0.01, "entropy_coef": ENT_COEF,
                         "gamma": GAMMA, "lam": LAM, "clip_param": CLIP,
                         "max_grad_norm": MAX_GRAD_NORM, "value_loss_coef": VF_COEF,
                         "use_clipped_value_loss": True},
           "actor": {**mlp, "distribution_cfg": {"class_name": "GaussianDistribution",
                                                 "init_std": 1.0}},
           "critic": dict(mlp)}
    runner = OnPolicyRunner(RslRlVecEnv(env), cfg, log_dir=None, device="cpu")
    rec.start()
    try:
        runner.learn(10**9)
    except StopRun:
        pass
    return rec


def run_one(trainer: str, task: str, seed: int, out: Path, args) -> None:
    """Train one run in this process and write its record to ``out`` (atomically)."""
    import torch

    torch.set_num_threads(args.threads)
    rec_args = (args.steps, args.seconds, WINDOW, args.sample_every)
    t = time.time()
    if trainer == "sb3":
        rec = train_sb3(task, seed, rec_args)
    elif trainer == "rsl_rl":
        rec = train_rsl_rl(task, seed, rec_args)
    else:
        rec = train_rlkd(trainer, task, seed, rec_args, out.parent / f"{out.stem}_tmp")
    write_json_atomic(out, {"trainer": trainer, "task": task, "seed": seed, **rec.curve,
                            "total_env_steps": rec.env_steps, "started": t,
                            "wall_s": time.perf_counter() - rec.t0, "threads": args.threads,
                            "cpu_model": cpu_model(), "seconds_cap": args.seconds})


def _paths(args) -> tuple[Path, Path]:
    stem = "ppo_parity_quick" if args.quick else "ppo_parity"
    runs = Path(args.runs or ROOT / "results" / f"{stem}_runs")
    return (runs if args.quick else ROOT / "results") / f"{stem}.json", runs


def restore_runs(out_json: Path, runs: Path) -> int:
    """Write back the per-run records the committed study JSON holds but ``runs`` lacks.

    ``runs`` is git-ignored, so a fresh checkout has none of it; without this a rerun would
    train every finished run again and ``--report-only`` would drop them from the report.
    Returns the number of records written. A record already on disk is never overwritten.
    """
    if not out_json.is_file():
        return 0
    try:
        records = json.loads(out_json.read_text()).get("runs", [])
    except (json.JSONDecodeError, AttributeError) as e:
        raise SystemExit(f"ppo_parity: {rel(out_json)} is not a study JSON ({e})") from None
    n = 0
    for r in records:
        f = runs / f"{r['trainer']}_{r['task']}_s{r['seed']}.json"
        if not f.exists():
            write_json_atomic(f, r)
            n += 1
    return n


def _job(trainer: str, task: str, seed: int, args) -> None:
    _, runs = _paths(args)
    name = f"{trainer}_{task}_s{seed}"
    # No separate training step: the worker trains and writes its record in one process.
    train_then_evaluate(
        name, lambda: None, runs / f"{name}.json",
        [sys.executable, __file__, "--run", trainer, task, str(seed), "--threads",
         str(args.threads), "--steps", str(args.steps), "--seconds", str(args.seconds),
         "--sample-every", str(args.sample_every), *(["--quick"] if args.quick else []),
         *(["--runs", str(args.runs)] if args.runs else [])],
        args.threads, runs / f"{name}.log")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add = p.add_argument
    add("--trainers", nargs="+", choices=TRAINERS, default=["rlkd", "sb3", "rsl_rl"])
    add("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    add("--seeds", nargs="+", type=int, default=None, help=f"({' '.join(map(str, SEEDS))})")
    add("--steps", type=int, default=None, help=f"env steps per run ({STEPS:,})")
    add("--seconds", type=float, default=None, help=f"wall-clock cap per run ({SECONDS:.0f})")
    add("--sample-every", type=int, default=None, help=f"env steps per curve point ({SAMPLE_EVERY})")
    add("--jobs", type=int, default=1, help="runs at once (each with --threads threads)")
    add("--threads", type=int, default=1)
    add("--quick", action="store_true", help="smoke test: tiny budgets, its own files")
    add("--runs", default=None, help="folder of per-run records")
    add("--report-only", action="store_true")
    add("--update-readme", action="store_true")
    add("--run", nargs=3, metavar=("TRAINER", "TASK", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.steps = args.steps or 30_000
        args.seconds = args.seconds or 60.0
        args.sample_every = args.sample_every or 6_144
        args.seeds = args.seeds or [0, 1]
    args.seeds = args.seeds or list(SEEDS)
    args.steps = args.steps or STEPS
    args.seconds = args.seconds or SECONDS
    args.sample_every = args.sample_every or SAMPLE_EVERY
    out_json, runs = _paths(args)
    if args.run:
        trainer, task, seed = args.run
        return run_one(trainer, task, int(seed), runs / f"{trainer}_{task}_s{seed}.json", args)
    runs.mkdir(parents=True, exist_ok=True)
    if restored := restore_runs(out_json, runs):
        print(f"restored {restored} finished runs from {rel(out_json)} into {rel(runs)}", flush=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not args.report_only:
        jobs = [(tr, ta, s) for s in args.seeds for ta in args.tasks for tr in args.trainers]
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(lambda j: _job(*j, args), jobs))
    from ppo_parity_stats import report

    report(runs, out_json, args)
    print(f"runs in {rel(runs)}", flush=True)


if __name__ == "__main__":
    main()
