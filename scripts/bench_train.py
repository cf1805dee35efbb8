"""Training throughput and time-to-80%-success: ``rlkd train`` PPO vs Stable-Baselines3 PPO.

Same machine, same run, same env (our AGV warehouse; SB3 drives it through ``SB3VecEnv`` plus
``VecNormalize`` for the observation normalization our PPO has built in), same network
(actor and critic MLPs 256-128-64, ELU), same rollout (N envs x T steps), same epochs and
minibatch size, same gamma (0.99) and entropy bonus (0.005), learning rate 1e-3 (ours adapts it by KL, as in rsl_rl; SB3 keeps it fixed).

    python scripts/bench_train.py                     # throughput only (~3 minutes)
    python scripts/bench_train.py --to-success 0.5 0.8 --time-limit 360
    python scripts/bench_train.py --env HumanoidMotion-v0 --num-envs 512 --ours-steps 122880 \
        --env-steps 61440 --skip-sb3 --out results/bench_train_humanoid.json

Throughput is the whole loop: env steps collected / wall-clock of collection plus updates; ours
runs three times, fp32, with ``update_precision=bf16`` and with ``update_compile`` (its rate
also after the first iteration, which holds the compile), and records how the loop's time
splits between rollout and update. The env alone (random actions, same batch) is the ceiling
each loop is given as a ratio of (``rlkd_over_env_only``).
Writes ``results/bench_train.json`` (command, git commit, machine, raw numbers).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = (256, 128, 64)
ENT_COEF = 0.005  # both agents: entropy bonus (ours defaults to 0.0, SB3 to 0.0; set alike)


def ours(env_id: str, num_envs: int, num_steps: int, steps: int, seed: int, agent: str,
         target: float | None, time_limit: float, out: Path, overrides: dict,
         ppo: dict | None = None) -> dict:
    from rlkd.train import OnPolicyRunner, TrainConfig

    cfg = TrainConfig(env=env_id, agent=agent, num_envs=num_envs, steps=steps, seed=seed,
                      out=str(out), checkpoint_every=10**9, video=False, progress=False,
                      overwrite=True,  # a scratch folder: a second bench run replaces it
                      env_overrides=overrides,
                      agent_cfg={"ppo": {"num_steps": num_steps, "num_epochs": 5,
                                         "num_minibatches": 4, "actor_hidden": HIDDEN,
                                         "critic_hidden": HIDDEN, "entropy_coef": ENT_COEF,
                                         "gamma": 0.99, **(ppo or {})}})
    runner = OnPolicyRunner(cfg)
    t0 = time.perf_counter()
    targets = sorted(target or [])
    hits: dict[str, dict] = {}

    split = {"collection_s": 0.0, "update_s": 0.0}
    first: dict = {}

    def cb(r, scalars):
        el = time.perf_counter() - t0
        first.setdefault("wall_s", el)  # the first iteration (with update_compile: the compile)
        first.setdefault("env_steps", r.env_steps)
        split["collection_s"] += scalars["perf/collection_s"]
        split["update_s"] += scalars["perf/learn_s"]
        for tg in targets:
            if str(tg) not in hits and scalars["charts/success_rate"] >= tg:
                hits[str(tg)] = {"time_s": el, "env_steps": r.env_steps}
        return len(hits) == len(targets) > 0 or el > time_limit

    last = runner.learn(callback=cb)
    wall = time.perf_counter() - t0
    return {"env_steps": runner.env_steps, "wall_s": wall, "env_steps_per_s": runner.env_steps / wall,
            "final_success": last.get("charts/success_rate"), "reached": hits,
            # Where the loop's time goes: rollout (env + inference) vs PPO update.
            **split, "update_share": split["update_s"] / max(wall, 1e-9),
            "first_iteration_s": first.get("wall_s"),
            "env_steps_per_s_after_first": (runner.env_steps - first.get("env_steps", 0))
            / max(wall - first.get("wall_s", 0.0), 1e-9)}


def env_only(env_id: str, num_envs: int, steps: int, seed: int) -> dict:
    """The env alone at the same batch: uniform random actions in [-1, 1] drawn on the env's
    device, no policy, no storage (the ceiling a training loop's env-steps/s is held to). The
    first step (lazy allocations) is not timed."""
    import rlkd

    env = rlkd.make(env_id, num_envs=num_envs, seed=seed)
    env.reset()
    gen = torch.Generator(device=env.device).manual_seed(seed)
    shape = (num_envs, env.act_dim)
    env.step(torch.rand(shape, generator=gen, device=env.device) * 2 - 1)
    n = max(1, steps // num_envs)
    t0 = time.perf_counter()
    for _ in range(n):
        env.step(torch.rand(shape, generator=gen, device=env.device) * 2 - 1)
    wall = time.perf_counter() - t0
    env.close()
    return {"env_steps": n * num_envs, "wall_s": wall, "env_steps_per_s": n * num_envs / wall}


def sb3(env_id: str, num_envs: int, num_steps: int, steps: int, seed: int,
        target: float | None, time_limit: float, overrides: dict) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize

    import rlkd
    from rlkd.adapters import SB3VecEnv

    venv = VecNormalize(SB3VecEnv(rlkd.make(env_id, num_envs=num_envs, seed=seed, **overrides),
                                  render_mode=None), norm_obs=True, norm_reward=False)
    model = PPO("MlpPolicy", venv, n_steps=num_steps, batch_size=num_envs * num_steps // 4,
                n_epochs=5, learning_rate=1e-3, gamma=0.99, gae_lambda=0.95, clip_range=0.2,
                ent_coef=ENT_COEF, vf_coef=1.0, max_grad_norm=1.0, seed=seed, device="cpu",
                policy_kwargs=dict(net_arch=dict(pi=list(HIDDEN), vf=list(HIDDEN)),
                                   activation_fn=torch.nn.ELU), verbose=0)
    t0 = time.perf_counter()
    targets = sorted(target or [])
    hits: dict[str, dict] = {}

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            el = time.perf_counter() - t0
            buf = self.model.ep_success_buffer
            for tg in targets:
                if str(tg) not in hits and len(buf) >= 50 and np.mean(buf) >= tg:
                    hits[str(tg)] = {"time_s": el, "env_steps": int(self.model.num_timesteps)}
            if len(hits) == len(targets) > 0 or el > time_limit:
                self.model._stop = True

    # SB3 stops when a callback's on_step returns False; check the flag at every step.
    class StopStep(Stop):
        def _on_step(self) -> bool:
            return not getattr(self.model, "_stop", False)

    model.learn(steps, callback=StopStep())
    wall = time.perf_counter() - t0
    buf = model.ep_success_buffer
    return {"env_steps": int(model.num_timesteps), "wall_s": wall,
            "env_steps_per_s": model.num_timesteps / wall,
            "final_success": float(np.mean(buf)) if len(buf) else None, "reached": hits}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="AGVWarehouse-v0")
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--num-steps", type=int, default=24)
    p.add_argument("--ours-steps", type=int, default=300_000, help="throughput phase, ours")
    p.add_argument("--sb3-steps", type=int, default=120_000, help="throughput phase, SB3")
    p.add_argument("--env-steps", type=int, default=300_000, help="env-alone phase")
    p.add_argument("--skip-sb3", action="store_true",
                   help="ours and the env alone only (no SB3 arm, no time-to-success)")
    p.add_argument("--to-success", type=float, nargs="*", default=None,
                   help="also measure wall-clock to these success rates (e.g. 0.5 0.8)")
    p.add_argument("--time-limit", type=float, default=480.0, help="cap per time-to-success run")
    p.add_argument("--agent", default="ppo", help="our agent for time-to-success")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench_train.json")
    args = p.parse_args()

    from rlkd.core.provenance import command_line, git_commit, machine_info, write_json_atomic

    tmp = ROOT / "results" / "bench_train_runs"
    res: dict = {"command": command_line(), "machine": machine_info(),
                 "git_commit": git_commit(ROOT),
                 "env": args.env, "num_envs": args.num_envs, "num_steps": args.num_steps,
                 "network": list(HIDDEN), "epochs": 5, "minibatches": 4}
    res["throughput"] = {
        "rlkd": ours(args.env, args.num_envs, args.num_steps, args.ours_steps, args.seed, "ppo",
                     None, 1e9, tmp / "ours_throughput", {}),
        "rlkd_bf16": ours(args.env, args.num_envs, args.num_steps, args.ours_steps, args.seed,
                          "ppo", None, 1e9, tmp / "ours_bf16_throughput", {},
                          {"update_precision": "bf16"}),
        "rlkd_compile": ours(args.env, args.num_envs, args.num_steps, args.ours_steps,
                             args.seed, "ppo", None, 1e9, tmp / "ours_compile_throughput", {},
                             {"update_compile": True}),
        "env_only": env_only(args.env, args.num_envs, args.env_steps, args.seed),
    }
    t = res["throughput"]
    if not args.skip_sb3:
        t["sb3"] = sb3(args.env, args.num_envs, args.num_steps, args.sb3_steps, args.seed,
                       None, 1e9, {})
    # Issue 18's training ratio: the whole loop against the env alone at the same batch.
    for k in ("rlkd", "rlkd_bf16", "rlkd_compile"):
        t[f"{k}_over_env_only"] = t[k]["env_steps_per_s"] / t["env_only"]["env_steps_per_s"]
    print(f"env alone {t['env_only']['env_steps_per_s']:,.0f} env-steps/s; training over it: "
          f"{t['rlkd_over_env_only']:.2f}x (bf16 {t['rlkd_bf16_over_env_only']:.2f}x)", flush=True)
    if args.skip_sb3:
        write_json_atomic(args.out, res)
        return
    t["ratio"] = t["rlkd"]["env_steps_per_s"] / t["sb3"]["env_steps_per_s"]
    t["ratio_bf16"] = t["rlkd_bf16"]["env_steps_per_s"] / t["sb3"]["env_steps_per_s"]
    # The compiled update, after its first iteration (the compile, paid once per run).
    t["ratio_compile_after_first"] = (t["rlkd_compile"]["env_steps_per_s_after_first"]
                                      / t["sb3"]["env_steps_per_s"])
    print(f"throughput: rlkd {t['rlkd']['env_steps_per_s']:,.0f} env-steps/s (update "
          f"{t['rlkd']['update_share']:.0%} of the loop), bf16 update "
          f"{t['rlkd_bf16']['env_steps_per_s']:,.0f} ({t['rlkd_bf16']['update_share']:.0%}), SB3 "
          f"{t['sb3']['env_steps_per_s']:,.0f} -> {t['ratio']:.2f}x / {t['ratio_bf16']:.2f}x",
          flush=True)
    write_json_atomic(args.out, res)
    if args.to_success is not None:
        big = 10**9
        res["time_to_success"] = {
            "target": args.to_success, "time_limit_s": args.time_limit, "agent": args.agent,
            "rlkd": ours(args.env, args.num_envs, args.num_steps, big, args.seed, args.agent,
                         args.to_success, args.time_limit, tmp / "ours_success", {}),
            "sb3": sb3(args.env, args.num_envs, args.num_steps, big, args.seed,
                       args.to_success, args.time_limit, {}),
        }
        for k in ("rlkd", "sb3"):
            r = res["time_to_success"][k]
            print(f"{k}: reached {r['reached']} ({r['env_steps']:,} steps in {r['wall_s']:.0f} s, "
                  f"final success {r['final_success']})", flush=True)
        write_json_atomic(args.out, res)


if __name__ == "__main__":
    main()
