"""The ``rlkd`` command: list, play, bench (``train`` arrives with the PPO agents).

Examples::

    rlkd list
    rlkd play AGVWarehouse-v0 --policy scripted --video out.mp4
    rlkd bench AGVWarehouse-v0 --num-envs 1 64 1024 4096 --json bench.json

Env config overrides go through ``--set key=value`` (values parsed as YAML: numbers, booleans,
lists), e.g. ``--set num_obstacles=0 lidar_rays=64``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import tyro
import yaml


def _overrides(pairs: tuple[str, ...]) -> dict:
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --set expects key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def list_cmd() -> None:
    """List registered env ids (usable as ``rlkd/<id>`` in gymnasium) with a description."""
    import rlkd

    ids = rlkd.list_envs()
    w = max(len(i) for i in ids)
    for env_id in ids:
        print(f"{env_id:<{w}}  {rlkd.spec(env_id).description}")


def play_cmd(
    env: Annotated[str, tyro.conf.arg(help="env id, e.g. AGVWarehouse-v0")] = "AGVWarehouse-v0",
    /,
    policy: Literal["random", "zero", "scripted"] = "random",
    num_envs: int = 4,
    steps: int = 300,
    seed: int = 0,
    device: str = "cpu",
    video: Path | None = None,
    fps: int | None = None,
    width: int = 320,
    set: tuple[str, ...] = (),
) -> None:
    """Roll out a stand-in policy, print episode statistics and optionally write a tiled video.

    Args:
        env: env id.
        policy: random, zero, or the task's scripted controller (a trained checkpoint arrives with
            `rlkd train`).
        num_envs: envs simulated (all are tiled into the video).
        steps: control steps.
        seed: seed of env and policy.
        device: torch device.
        video: output .mp4 or .gif path.
        fps: video frame rate (default: the env's control rate).
        width: pixel width of one env's frame.
        set: env config overrides, key=value.
    """
    import torch
    from rich.console import Console

    import rlkd
    from rlkd.policies import make_policy
    from rlkd.render import overlay_text, write_video

    e = rlkd.make(env, num_envs=num_envs, device=device, seed=seed, **_overrides(set))
    obs, _ = e.reset(seed=seed)
    pi = make_policy(policy, e, seed)
    frames = []
    returns, lengths, successes = [], [], []
    ids = list(range(num_envs))
    with torch.inference_mode():
        for t in range(steps):
            obs, _, _, _, info = e.step(pi(obs))
            if "episode" in info:
                ep = info["episode"]
                returns += ep["return"].tolist()
                lengths += ep["length"].tolist()
                successes += ep.get("success", torch.zeros_like(ep["return"])).float().tolist()
            if video is not None:
                frame = e.render(env_ids=ids, width=width)
                frames.append(overlay_text(frame, f"{env}  policy={policy}  step {t + 1}",
                                           xy=(4, frame.shape[0] - 16)))
    con = Console()
    n = len(returns)
    if n:
        con.print(f"[bold]{n} episodes[/]: return {sum(returns) / n:+.3f}, length "
                  f"{sum(lengths) / n:.1f}, success {100 * sum(successes) / n:.1f}%")
    else:
        con.print("no episode finished; raise --steps")
    if video is not None:
        path = write_video(video, frames, fps=fps or e.metadata.get("render_fps", 10))
        con.print(f"video: {path} ({len(frames)} frames)")


def bench_cmd(
    env: Annotated[str, tyro.conf.arg(help="env id")] = "AGVWarehouse-v0",
    /,
    num_envs: tuple[int, ...] = (1, 64, 1024, 4096),
    peer_num_envs: tuple[int, ...] = (1, 16, 64),
    device: str = "cpu",
    seed: int = 0,
    budget: int = 400_000,
    json: Path | None = None,
    set: tuple[str, ...] = (),
) -> None:
    """Env steps/s of the batched env vs gymnasium SyncVectorEnv of single envs, same run.

    Args:
        env: env id.
        num_envs: batch sizes of our env.
        peer_num_envs: sizes of the SyncVectorEnv peer (0 values skip it).
        device: torch device of our env (the peer always runs on CPU, numpy).
        seed: seed.
        budget: env steps timed per batch size (clamped to 20-2000 steps).
        json: write the raw results here (atomically).
        set: env config overrides, key=value.
    """
    from rich.console import Console
    from rich.table import Table

    from rlkd.bench import run_bench, write_json_atomic

    peers = tuple(n for n in peer_num_envs if n > 0)
    res = run_bench(env, num_envs, peers, device=device, seed=seed, budget_env_steps=budget,
                    **_overrides(set))
    table = Table(title=f"{env} env steps/s ({device}, {res['machine']['torch_threads']} threads)")
    for col in ("runner", "num_envs", "env steps/s", "ms/step"):
        table.add_column(col, justify="right")
    for r in res["ours"]:
        table.add_row("rlkd batched", str(r["num_envs"]), f"{r['env_steps_per_s']:,.0f}",
                      f"{r['ms_per_step']:.3f}")
    for r in res["peer"]["results"]:
        table.add_row("gymnasium SyncVectorEnv", str(r["num_envs"]),
                      f"{r['env_steps_per_s']:,.0f}", f"{r['ms_per_step']:.3f}")
    con = Console()
    con.print(table)
    con.print(f"best batched / best SyncVectorEnv = [bold]{res['ratio_vs_peer']:.1f}x[/]")
    if json is not None:
        con.print(f"results: {write_json_atomic(json, res)}")


COMMANDS = {"list": list_cmd, "play": play_cmd, "bench": bench_cmd}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``rlkd`` console script."""
    tyro.extras.subcommand_cli_from_dict(
        COMMANDS, args=sys.argv[1:] if argv is None else argv,
        description="rlkd: robot learning by distillation (envs, agents, sim-to-real tooling)")


if __name__ == "__main__":
    main()
