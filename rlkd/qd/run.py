"""``rlkd qd``: run (or resume) a MAP-Elites-family algorithm on a QD task into a directory.

``DIR/archive.pt``   rlkd checkpoint (atomic, SHA-256, ``weights_only`` loading): the run's
                     arguments and the algorithm's whole state (archive elites, critic, actor,
                     targets, optimizers, replay, generator) - :meth:`QDAlgorithm.state_dict`
``DIR/metrics.jsonl`` one line per iteration (``qd/qd_score``, ``qd/coverage``,
                     ``qd/max_fitness``, ``qd/evals_per_s``, offspring added per emitter, time
                     split eval/archive/critic/pg, losses); tensorboard events beside it
``DIR/heatmap.png``  elite fitness per cell
``DIR/distilled.pt``, ``DIR/distill.json``  the archive distilled into one policy pi(a | s, d)
                     and its evaluation (:mod:`rlkd.qd.distill`; ``--distill td3|bc|dagger|auto|none``)
``DIR/videos/``      ``elites.mp4`` (best + 3 far-apart elites), ``distilled.mp4``
                     (:mod:`rlkd.qd.play`)

Resume (``--resume DIR [--evaluations M]``) rebuilds the algorithm from ``archive.pt``, drops
the metrics lines logged after the checkpoint and continues; with the same total it ends in the
state the uninterrupted run reaches (same elites, same QD-score). ``--qd`` / ``--set`` given on a
resume change the run's config from there on; one that changes the archive's shape (``cells``,
``policy_hidden``) is refused. Resuming a finished run only distils (``--distill``) and writes
the videos again.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from rlkd.core.atomic import atomic_path, atomic_write

CHECKPOINT = "archive.pt"


def _build(task_name: str, algo: str, batch_size: int, seed: int, device: str,
           paper_steps: bool, overrides: dict[str, Any], env_overrides: dict[str, Any]):
    from rlkd.agents.dcg_map_elites import QDAlgorithm, preset
    from rlkd.qd.tasks import get_task

    task = get_task(task_name)
    cfg = preset(algo, cpu=not paper_steps, batch_size=batch_size, **overrides)
    return QDAlgorithm(task, cfg, seed=seed, device=device, **env_overrides)


def run_qd(task: str | None = None, algo: str | None = None, evaluations: int | None = None,
           batch_size: int = 256, seed: int = 0, out: str | Path | None = None,
           resume: str | Path | None = None, device: str = "cpu", paper_steps: bool = False,
           checkpoint_every: int = 10, overrides: dict[str, Any] | None = None,
           env_overrides: dict[str, Any] | None = None, progress: bool = True,
           distill: str = "auto", videos: bool = True, distill_cfg=None) -> dict:
    """Run until ``evaluations`` evaluations are done (default 25,600; on resume the run's
    own), ``algo`` default ``dcg-me``; then distil the archive (``distill``: ``td3``, ``bc``, ``dagger``,
    ``auto`` = td3 for dcg-me and bc otherwise, ``none``; ``distill_cfg`` a
    :class:`~rlkd.qd.distill.DistillConfig`) and write the videos. Returns the final archive
    stats, with ``distilled`` (the metrics) when distilled.

    Raises ``KeyError`` (unknown task, algorithm or config field), ``ValueError`` (bad numbers,
    a resume with another task or archive shape) or :class:`~rlkd.train.checkpoint.CheckpointError`
    (missing / truncated ``archive.pt``, naming the file) before any work is done.
    """
    from rlkd.train.checkpoint import load_checkpoint, save_checkpoint
    from rlkd.train.logger import TrainLogger

    if resume is not None:
        run_dir = Path(resume)
        ck = load_checkpoint(run_dir / CHECKPOINT, required=("args", "state"))
        args = dict(ck["args"])
        for name, value in (("task", task), ("algo", algo)):
            if value is not None and value != args[name]:
                raise ValueError(f"--resume {run_dir}: the run is {args['task']} / "
                                 f"{args['algo']}, not {value}; start a new --out instead")
        if evaluations is not None:
            args["evaluations"] = int(evaluations)
        args["overrides"] = {**args["overrides"], **(overrides or {})}
        args["env_overrides"] = {**args["env_overrides"], **(env_overrides or {})}
        alg = _build(args["task"], args["algo"], args["batch_size"], args["seed"], device,
                     args["paper_steps"], args["overrides"], args["env_overrides"])
        saved_cells = list(ck["state"]["archive"]["cells"])
        saved_dim = int(ck["state"]["archive"]["solution_dim"])
        if saved_cells != list(alg.archive.cells) or saved_dim != alg.archive.solution_dim:
            raise ValueError(f"--resume {run_dir}: the archive in {run_dir / CHECKPOINT} has "
                             f"cells {saved_cells} of {saved_dim}-parameter policies, this build "
                             f"{list(alg.archive.cells)} of {alg.archive.solution_dim}; start a "
                             f"new --out for another archive shape")
        alg.load_state_dict(ck["state"])
        _truncate_metrics(run_dir / "metrics.jsonl", alg.iteration)
    else:
        if task is None or out is None:
            raise ValueError("rlkd qd needs a TASK and --out DIR (or --resume DIR)")
        run_dir, algo = Path(out), algo or "dcg-me"
        evaluations = 25_600 if evaluations is None else evaluations
        if (run_dir / CHECKPOINT).exists():
            raise ValueError(f"{run_dir} already holds a QD run ({CHECKPOINT}); --resume it or "
                             f"pick another --out")
        if evaluations is None or evaluations < batch_size:
            raise ValueError(f"--evaluations must be at least --batch-size ({batch_size})")
        args = {"task": task, "algo": algo, "evaluations": int(evaluations),
                "batch_size": int(batch_size), "seed": int(seed), "paper_steps": bool(paper_steps),
                "overrides": dict(overrides or {}), "env_overrides": dict(env_overrides or {})}
        alg = _build(task, algo, batch_size, seed, device, paper_steps, args["overrides"],
                     args["env_overrides"])
    from rlkd.qd.distill import resolve_method

    method = resolve_method(distill, args["algo"])
    total_iters = math.ceil(args["evaluations"] / args["batch_size"])
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / "config.json", lambda f: f.write(json.dumps(
        {**args, "config": dataclasses.asdict(alg.cfg)}, indent=2)), mode="w")
    log = TrainLogger(run_dir, total_iters, progress=progress, start_iteration=alg.iteration,
                      start_env_steps=alg.evaluations, total_env_steps=args["evaluations"],
                      purge_step=alg.evaluations or None)

    def save() -> None:
        save_checkpoint(run_dir / CHECKPOINT, {"args": args, "state": alg.state_dict()})
        write_heatmap(alg, run_dir / "heatmap.png")
        log.flush()

    try:
        while alg.iteration < total_iters:
            metrics = alg.step()
            log.log(alg.iteration - 1, alg.evaluations, metrics)
            if alg.iteration % checkpoint_every == 0 or alg.iteration >= total_iters:
                save()
    finally:
        log.close()
    out = {"iterations": alg.iteration, "evaluations": alg.evaluations, **alg.archive.stats()}
    out.update(finish_run(run_dir, alg, args["env_overrides"], method, videos, distill_cfg,
                          device))
    return out


def finish_run(run_dir: Path, alg, env_overrides: dict, method: str | None, videos: bool,
               distill_cfg=None, device="cpu") -> dict:
    """After the last iteration: distil (``method`` td3 / bc / dagger, or None) into
    ``distilled.pt`` + ``distill.json``, and write ``videos/elites.mp4`` (+ ``distilled.mp4``).
    Returns ``{"distilled": metrics}`` when distilled."""
    from rlkd.qd.distill import distill_archive, write_distilled

    state, out, policy = alg.state_dict(), {}, None
    if method is not None and len(alg.archive):
        policy, metrics = distill_archive(alg.task, state, method, distill_cfg, env_overrides,
                                          device)
        write_distilled(run_dir, policy, metrics)
        out["distilled"] = metrics
    if videos and len(alg.archive):
        from rlkd.qd.play import elite_videos

        elite_videos(alg.task, state, env_overrides, run_dir, policy, device=device)
    return out


def _truncate_metrics(path: Path, iterations: int) -> None:
    """Keep the first ``iterations`` lines of ``metrics.jsonl`` (later ones were logged after
    the checkpoint the run resumes from)."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines(keepends=True)
             if ln.strip() and json.loads(ln).get("iteration", 0) < iterations]
    atomic_write(path, lambda f: f.write("".join(lines)), mode="w")


def write_heatmap(alg, path: Path) -> Path:
    """Elite fitness per cell (x: first descriptor, y: second), atomically to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = alg.archive.grid()
    task = alg.task
    fig, ax = plt.subplots(figsize=(5, 4))
    lo, hi = task.descriptor_low, task.descriptor_high
    im = ax.imshow(grid.T, origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]), aspect="auto",
                   cmap="viridis")
    fig.colorbar(im, ax=ax, label="fitness")
    ax.set_xlabel(task.descriptor_names[0])
    ax.set_ylabel(task.descriptor_names[1] if len(task.descriptor_names) > 1 else "")
    s = alg.archive.stats()
    ax.set_title(f"{task.id} {alg.cfg.algo}: {alg.evaluations} evals, "
                 f"coverage {100 * s['coverage']:.1f}%", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
