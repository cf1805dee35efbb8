"""The ``rlkd`` command: list, train, distill, play, eval, export, bench, qd.

Examples::

    rlkd list                                    # env ids;  `rlkd list agents`: agents + fields
    rlkd train                                   # built-in default: AGV warehouse, ppo-rdd
    rlkd train AGVWarehouse-v0 --agent ppo-rnd --num-envs 512 --steps 5000000 --out runs/rnd
    rlkd train --resume runs/rnd                 # continue exactly from the last checkpoint
    rlkd train HumanoidMotion-v0 --agent ppo --init-from runs/a --out runs/b   # fine-tune
    rlkd distill HumanoidMotion-v0 --teacher expert:humanoid-walk --student rays --out runs/v
    rlkd distill --out runs/v --resume --steps 20000000   # DAgger, then PPO fine-tuning
    torchrun --nproc_per_node 2 -m rlkd train --device cpu --out runs/ddp   # data parallel
    rlkd play runs/rnd --video out.mp4           # replay a trained policy
    rlkd play AGVWarehouse-v0 --policy scripted --video out.mp4
    rlkd play expert:humanoid-walk --video walk.mp4   # shipped expert beside its reference
    rlkd export runs/rnd --out rnd_policy.pt     # the actor alone, for play / eval / sharing
    rlkd eval sim2real runs/rnd --suite default --out report/    # sim-to-real report
    rlkd eval sim2real runs/rnd --real-log robot.npz --out report/
    rlkd bench AGVWarehouse-v0 --num-envs 1 64 1024 4096 --json bench.json
    rlkd qd AGVOmni-v0 --algo dcg-me --evaluations 25600 --seed 0 --out runs/qd   # QD
    rlkd qd --resume runs/qd --evaluations 51200

Env config overrides go through ``--set key=value`` (values parsed as YAML: numbers, booleans,
lists), e.g. ``--set num_obstacles=0 lidar_rays=64``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import tyro


def _overrides(pairs: tuple[str, ...]) -> dict:
    from rlkd.train.cli import parse_overrides

    return parse_overrides(pairs)


def _existing_target(target: str) -> str:
    """``target`` of play / eval, checked: one that looks like a path (has a path separator,
    ends in ``.pt``/``.onnx``/``.ts``) but exists neither as a file nor as a registered env id
    (``rlkd/<id>`` has a slash) is refused with ``file not found: PATH`` instead of being taken
    for an unknown env id."""
    import os

    if target.startswith("expert:") or Path(target).exists():
        return target
    looks_like_path = ("/" in target or os.sep in target
                       or target.endswith((".pt", ".onnx", ".ts")))
    if looks_like_path:
        import rlkd

        try:
            rlkd.spec(target)
        except KeyError:
            from rlkd.train.cli import UsageError

            raise UsageError(f"file not found: {target}") from None
    return target


def list_cmd(
    what: Annotated[Literal["envs", "agents"], tyro.conf.arg(
        help="envs (registered env ids) or agents (registered agents and their config fields)")
    ] = "envs",
    /,
) -> None:
    """List registered env ids (usable as ``rlkd/<id>`` in gymnasium) or registered agents
    (``--agent`` names) with their config sections and fields."""
    if what == "agents":
        from rlkd.train.cli import describe_agents

        print(describe_agents())
        return
    import rlkd

    ids = rlkd.list_envs()
    w = max(len(i) for i in ids)
    for env_id in ids:
        print(f"{env_id:<{w}}  {rlkd.spec(env_id).description}")


def play_cmd(
    env: Annotated[str, tyro.conf.arg(
        help="env id (e.g. AGVWarehouse-v0), a run directory / checkpoint of `rlkd train`, an "
             "exported policy file, or expert:<name> (a shipped expert, e.g. expert:humanoid-walk)")
    ] = "AGVWarehouse-v0",
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
    descriptor: str | None = None,
) -> None:
    """Roll out a trained policy or a stand-in, print episode statistics, optionally write video.

    Args:
        env: env id, or a run directory (``runs/<name>``), checkpoint, exported policy file or
            ``expert:<name>``: then the trained policy (mean actions, frozen normalizers) drives
            the run's env and ``--policy`` is ignored.
        policy: random, zero, or the task's scripted controller (env ids only).
        num_envs: envs simulated (all are tiled into the video).
        steps: control steps.
        seed: seed of env and policy.
        device: torch device.
        video: output .mp4 or .gif path.
        fps: video frame rate (default: the env's control rate).
        width: pixel width of one env's frame.
        set: env config overrides, key=value (added to a run's own overrides).
        descriptor: for a QD run directory (`rlkd qd --out DIR`): the descriptor commanded to its
            distilled policy, comma-separated, normalized to [-1, 1] (`--descriptor=-0.5,0.25`).
    """
    import torch
    from rich.console import Console

    import rlkd
    from rlkd.policies import policy_source
    from rlkd.render import rollout_frames, write_video

    from rlkd.train.cli import as_usage_error, user_errors

    try:  # mistakes in what to play (path, env id, override, device): one line, no traceback
        env, run_overrides, factory, label = policy_source(_existing_target(env), policy,
                                                           device, seed, descriptor)
        e = rlkd.make(env, num_envs=num_envs, device=device, seed=seed,
                      **{**run_overrides, **_overrides(set)})
        if hasattr(factory, "wrap_env"):  # a QD run: every episode from the task's start
            e = factory.wrap_env(e)
    except user_errors() as exc:
        raise as_usage_error(exc) from exc
    returns, lengths, successes = [], [], []

    def collect(info) -> None:
        if "episode" in info:
            ep = info["episode"]
            returns.extend(ep["return"].tolist())
            lengths.extend(ep["length"].tolist())
            successes.extend(ep.get("success", torch.zeros_like(ep["return"])).float().tolist())

    frames = rollout_frames(e, factory(e), steps, seed, caption=f"{env}  {label}",
                            width=width if video is not None else None, on_info=collect)
    con = Console()
    con.print(f"{env}, policy {label}, {num_envs} envs x {steps} steps")
    n = len(returns)
    if n:
        con.print(f"[bold]{n} episodes[/]: return {sum(returns) / n:+.3f}, length "
                  f"{sum(lengths) / n:.1f}, success {100 * sum(successes) / n:.1f}%")
    else:
        con.print("no episode finished; raise --steps")
    if hasattr(factory, "report"):
        con.print(factory.report(e))
    if video is not None:
        path = write_video(video, frames, fps=fps or e.metadata.get("render_fps", 10))
        con.print(f"video: {path} ({len(frames)} frames)")


def eval_cmd(
    kind: Annotated[Literal["sim2real"], tyro.conf.arg(help="evaluation kind")],
    run: Annotated[str, tyro.conf.arg(
        help="run directory / checkpoint / exported policy of `rlkd train`, expert:<name>, "
             "or an env id (then --policy)",
        metavar="RUN")],
    /,
    suite: str = "default",
    out: Path = Path("report"),
    episodes: int = 64,
    seed: int = 0,
    device: str = "cpu",
    policy: Literal["random", "zero", "scripted"] = "random",
    condition: tuple[str, ...] = (),
    twin: bool = True,
    twin_episodes: int = 32,
    real_log: Path | None = None,
    record_log: Path | None = None,
    resamples: int = 2000,
    set: tuple[str, ...] = (),
) -> None:
    """Sim-to-real evaluation of a policy: perturbation suite, twin engine, real-log replay.

    Runs every condition of the suite x ``episodes`` as one batch of envs (same initial states
    under every condition), the nominal episodes again on the task's twin engine (PyBullet for
    the AGV), and optionally replays a robot log; writes report.json, report.md and PNG plots
    (conditions.png, twin.png, divergence.png) atomically under ``out``.

    Args:
        kind: sim2real.
        run: run directory, checkpoint or exported policy (its env, overrides and policy),
            ``expert:<name>`` (a shipped expert), or an env id.
        suite: default, dynamics, sensing, latency, nominal (the policy alone), or a YAML
            suite file.
        out: report directory.
        episodes: episodes per condition (a multiple of 8 keeps AGV episodes paired).
        seed: env seed (worlds, initial states, noise).
        device: torch device of the fast sim (the twin runs on CPU).
        policy: stand-in policy when ``run`` is an env id.
        condition: extra conditions, ``name:kind=value[,kind=value]`` (kinds: mass, inertia,
            friction, motor_strength, pd_gains, action_latency, action_noise, obs_noise,
            sensor_dropout, lidar_noise, tactile_noise, tactile_image_noise, gel_stiffness;
            ``param.<name>=v`` writes a raw param).
        twin: also evaluate the nominal episodes on the task's twin engine, if it has one.
        twin_episodes: nominal episodes run on the twin (it is a per-env Python loop: slower).
        real_log: a robot log (.npz, format in README / rlkd.sim2real.replay) to replay.
        record_log: first record a log of this policy on the twin engine (or the sim when the
            task has none) to this path; it is replayed unless --real-log names another.
        resamples: bootstrap resamples of the confidence intervals.
        set: env config overrides, key=value (added to a run's own overrides).
    """
    import torch
    from rich.console import Console

    import rlkd
    from rlkd.policies import policy_source
    from rlkd.sim2real import evaluate_suite, load_suite, parse_condition
    from rlkd.sim2real.replay import check_log, load_log, record_log as record, replay_log, \
        save_log
    from rlkd.sim2real.report import write_report

    from rlkd.train.cli import as_usage_error, user_errors

    con = Console()
    try:
        try:  # what to evaluate, and how (path, env id, overrides, suite): the user's mistakes
            env_id, overrides, factory, label = policy_source(_existing_target(run), policy,
                                                              device, seed)
            overrides = {**overrides, **_overrides(set)}
            s = load_suite(suite)
            s.conditions += [parse_condition(c) for c in condition]
            probe = rlkd.make(env_id, num_envs=1, seed=seed, **overrides)
            twin_id = probe.TWIN_ID
            probe.close()
        except user_errors() as exc:
            raise as_usage_error(exc) from exc
        if twin and twin_id is None:
            con.print(f"{env_id} has no twin engine: skipping the twin evaluation")
        if record_log is not None:
            rec_id = twin_id or env_id
            rec_env = rlkd.make(rec_id, num_envs=8, seed=seed + 1, **overrides)
            log = record(rec_env, factory(rec_env), seed=seed + 1, env_overrides=overrides)
            rec_env.close()
            con.print(f"recorded {log.steps} steps on {rec_id}: {save_log(record_log, log)}")
            real_log = real_log or record_log
        robot_log = None
        if real_log is not None:  # a bad log fails now, not after the whole suite has run
            robot_log = load_log(real_log)
            check_log(robot_log, env_id, device, overrides, seed).close()
        con.print(f"evaluating {label} on {env_id}: suite {s.name}, {len(s.conditions)} "
                  f"conditions x {episodes} episodes in one batch")
        result = evaluate_suite(factory, env_id, s, episodes=episodes, seed=seed, device=device,
                                env_overrides=overrides, twin=twin and twin_id is not None,
                                twin_episodes=min(twin_episodes, episodes))
        replay = None
        if robot_log is not None:
            replay = replay_log(robot_log, env_id, result.conditions, factory, device,
                                overrides, seed)
    except ValueError as e:  # bad suite, condition, log, env id: one clear line, no traceback
        raise as_usage_error(e) from e
    paths = write_report(out, result, {"policy": label, "seed": seed, "episodes": episodes,
                                       "run": str(run), "env_overrides": overrides},
                         replay=replay, resamples=resamples)
    nominal = result.per_condition["nominal"]
    key = "success" if "success" in nominal else "return"
    con.print(f"{key} per condition (mean over {episodes} episodes):")
    for cond in result.conditions:
        con.print(f"  {cond.name:<20} {float(torch.as_tensor(result.per_condition[cond.name][key]).nanmean()):.3f}")
    if result.skipped:
        con.print(f"not applicable: {', '.join(result.skipped)}")
    if result.nominal_groups is not None:
        from rlkd.sim2real.report import groups_table

        con.print(groups_table(result, key))
    con.print("report: " + ", ".join(str(p) for p in paths.values()))


def export_cmd(
    run: Annotated[Path, tyro.conf.arg(help="run directory or training checkpoint",
                                       metavar="RUN")],
    /,
    out: Path | None = None,
    format: Literal["policy", "onnx", "torchscript"] = "policy",
    note: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = (),
    set: tuple[str, ...] = (),
) -> None:
    """Export a trained run's actor (weights, action std, observation normalizer) to a small
    policy file that `rlkd play` and `rlkd eval` load like the run itself, or to a deployment
    graph (ONNX / TorchScript: one input per observation group, normalizer folded in, mean
    action in [-1, 1] out; play and eval load those too).

    Args:
        run: run directory (its last checkpoint) or a checkpoint file.
        out: the file to write (atomically); default policy.pt / policy.onnx / policy.ts.
        format: policy (rlkd policy file), onnx (needs `pip install "rlkd[deploy]"`) or
            torchscript.
        note: a provenance line stored in the file, e.g. a command that trained it.
        set: env config overrides, key=value, stored in the file in place of the run's own
            (policy files only; e.g. motion=@general when the run trained on a local motion
            file); the run's values are kept in the file's provenance.
    """
    import datetime

    from rlkd.train.checkpoint import CheckpointError
    from rlkd.train.cli import parse_overrides
    from rlkd.train.export import FORMATS, export

    out = out if out is not None else Path("policy" + FORMATS[format])
    try:
        path = export(run, out, format, {
            "notes": list(note), "exported": datetime.datetime.now().isoformat(timespec="seconds")},
            env_overrides=parse_overrides(set))
    except (CheckpointError, ImportError, KeyError, TypeError, ValueError) as e:
        raise SystemExit(f"error: {e.args[0] if isinstance(e, KeyError) else e}")
    print(f"{format}: {path} ({path.stat().st_size / 1e6:.2f} MB)")


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
    """Env steps/s of the batched env vs gymnasium SyncVectorEnv of single envs, same run; for
    MuJoCo tasks also the physics limit (one ``mujoco.rollout`` call of the same model, frame
    skip and batch size, as many threads as cores) and the fraction of it the env reaches.

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

    from rlkd.bench import run_bench
    from rlkd.core.provenance import write_json_atomic

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
    for r in res["physics_limit"]["results"]:
        table.add_row(f"physics limit ({r['ratio_ours_vs_limit']:.0%} reached)", str(r["num_envs"]),
                      f"{r['env_steps_per_s']:,.0f}", "")
    con = Console()
    con.print(table)
    ratio = res["ratio_vs_peer"]  # None when no peer was measured (--peer-num-envs 0)
    con.print("best batched / best SyncVectorEnv = "
              + (f"[bold]{ratio:.1f}x[/]" if ratio is not None else "n/a (no peer measured)"))
    if json is not None:
        con.print(f"results: {write_json_atomic(json, res)}")


def qd_cmd(
    task: Annotated[str | None, tyro.conf.arg(
        help="QD task: AGVOmni-v0 or AGVStyle-v0 (omit with --resume)")] = None,
    /,
    algo: str | None = None,
    evaluations: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    out: Path | None = None,
    resume: Path | None = None,
    device: str = "cpu",
    paper_steps: bool = False,
    checkpoint_every: int = 10,
    qd: tuple[str, ...] = (),
    set: tuple[str, ...] = (),
    distill: str = "auto",
    distill_set: tuple[str, ...] = (),
    video: bool = True,
) -> None:
    """Quality diversity: MAP-Elites (me), PGA-ME or DCG-ME on a QD task; writes
    DIR/archive.pt (resumable), metrics.jsonl + tensorboard, heatmap.png, the archive distilled
    into one policy (distilled.pt, distill.json) and videos/elites.mp4, videos/distilled.mp4.

    Args:
        task: AGVOmni-v0 (descriptor final x, y; fitness -energy) or AGVStyle-v0 (descriptor
            mean speed, yaw rate; fitness progress to a goal behind shelves).
        algo: me, pga-me or dcg-me (default dcg-me; on --resume the run's own).
        evaluations: policy evaluations in total (default 25,600; on --resume the run's own).
        batch_size: offspring evaluated per iteration, as one env batch.
        seed: seed of the algorithm (evaluations are deterministic).
        out: run directory of a new run.
        resume: continue the run in this directory from its archive.pt.
        device: torch device of envs, networks and replay.
        paper_steps: QDax's critic/PG step counts and replay size instead of the CPU preset's.
        checkpoint_every: iterations between archive.pt / heatmap writes.
        qd: algorithm config overrides, key=value (fields of DCGMEConfig, e.g. lengthscale=0.008);
            on --resume they change the run's config from there on (not the archive's shape).
        set: env config overrides, key=value (tests and smoke runs: max_episode_steps is fixed
            by the task).
        distill: td3 (DCG-ME's conditioned actor), bc (behaviour cloning of every elite), dagger
            (bc, then DAgger rounds: pi's own states labelled by each cell's elite), auto
            (td3 for dcg-me, bc otherwise) or none; `--resume DIR --distill bc` on a finished
            run distils it again.
        distill_set: distillation settings, key=value (fields of DistillConfig, e.g.
            dagger_rounds=20 dagger_steps=1000 bc_hidden=[256,256]).
        video: write videos/elites.mp4 and videos/distilled.mp4 at the end.
    """
    from rlkd.qd.distill import distill_config
    from rlkd.qd.run import run_qd
    from rlkd.train.cli import as_usage_error, user_errors

    try:
        cfg = distill_config(_overrides(distill_set))
        res = run_qd(task, algo, evaluations, batch_size, seed, out, resume, device,
                     paper_steps, checkpoint_every, _overrides(qd), _overrides(set),
                     distill=distill, videos=video, distill_cfg=cfg)
    except user_errors() as exc:
        raise as_usage_error(exc) from exc
    print(f"{res['evaluations']} evaluations, {res['iterations']} iterations: QD-score "
          f"{res['qd_score']:.2f}, coverage {100 * res['coverage']:.1f}%, max fitness "
          f"{res['max_fitness']:.4f}")
    if "distilled" in res:
        d = res["distilled"]
        print(f"distilled ({d['method']}): QD-score {d['qd_score_pct']:.1f}% of the archive "
              f"re-evaluated, descriptor error {d['desc_error_cells']:.2f} cells, re-inserted "
              f"{d['reinserted_qd_score_pct']:.1f}%")


def commands() -> dict:
    """The subcommands; ``train`` is a dataclass built from ``TrainConfig`` and the agent
    registry at call time (see :mod:`rlkd.train.cli`)."""
    from rlkd.train.cli import train_args_class

    from rlkd.train.distill_cli import distill_cmd

    return {"list": list_cmd, "train": train_args_class(), "distill": distill_cmd,
            "play": play_cmd, "eval": eval_cmd, "export": export_cmd, "bench": bench_cmd,
            "qd": qd_cmd}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``rlkd`` console script."""
    import dataclasses

    from rlkd.train.cli import UsageError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["--version"], ["-V"]):
        import rlkd

        print(f"rlkd {rlkd.__version__}")
        return
    try:
        result = tyro.extras.subcommand_cli_from_dict(
            commands(), args=argv,
            description="rlkd: robot learning by distillation (envs, agents, sim-to-real "
                        "tooling); `rlkd --version` prints the version")
        if dataclasses.is_dataclass(result):  # `rlkd train`: tyro parsed its arguments
            from rlkd.train.cli import run_train

            run_train(result, argv)
    except UsageError as e:
        print(e, file=sys.stderr)
        raise
    except SystemExit as e:
        # Commands that exit with an "error: ..." message: the same status 2 as UsageError.
        if isinstance(e.code, str) and e.code.startswith("error:"):
            print(e.code, file=sys.stderr)
            raise UsageError(e.code) from None
        raise


if __name__ == "__main__":
    main()
