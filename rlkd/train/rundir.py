"""Run directories: refusing to train over an old run, starting over, tidying up for a resume.

A run directory (``rlkd train --out DIR``) holds the files the runner writes (:data:`RUN_FILES`,
tensorboard event files, ``videos/``). A fresh run into a directory that already holds one would
mix two runs' metrics, event files and checkpoints, so it is refused unless ``overwrite`` is set
(then only those files are deleted: the directory may be ``.`` or hold the user's own files).

After a crash or ``kill -9`` a run resumes exactly from its last checkpoint, but the directory
still holds what the dead process wrote after that checkpoint: metrics rows of iterations that
will run again, and orphan temp files of interrupted atomic writes. :func:`tidy_for_resume`
removes both, so the resumed directory reads like one uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from rlkd.core.atomic import atomic_write, is_temp_file

#: Files and folders whose presence marks a directory as holding a run.
RUN_FILES = ("checkpoints", "config.yaml", "metrics.jsonl")
#: Everything else a run writes (deleted by ``overwrite`` too).
EXTRA_FILES = ("videos", "wandb", "wandb_run_id")
#: Tensorboard event files' name prefix.
EVENTS_PREFIX = "events.out.tfevents."


class RunDirError(ValueError):
    """The run directory cannot be used as asked (it holds another run, or a resume would
    ignore what was asked of it)."""


def existing_run_files(run_dir: str | Path) -> list[str]:
    """Names of the run-marking entries (:data:`RUN_FILES`) present in ``run_dir``."""
    run_dir = Path(run_dir)
    return [name for name in RUN_FILES if (run_dir / name).exists()]


def check_fresh_run_dir(run_dir: str | Path, overwrite: bool) -> None:
    """Refuse (:class:`RunDirError`) a fresh run into a directory holding a run; with
    ``overwrite`` delete that run's files instead (:func:`remove_run_files`)."""
    found = existing_run_files(run_dir)
    if not found:
        return
    if not overwrite:
        raise RunDirError(
            f"{run_dir} already holds a run ({', '.join(found)}): continue it with "
            f"`rlkd train --resume {run_dir}`, or start over with --overwrite (deletes its "
            f"checkpoints, metrics, event files and videos)")
    remove_run_files(run_dir)


def remove_run_files(run_dir: str | Path) -> None:
    """Delete every file a run writes in ``run_dir`` (and nothing else)."""
    run_dir = Path(run_dir)
    for name in (*RUN_FILES, *EXTRA_FILES):
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    for p in run_dir.iterdir():
        if p.is_file() and (p.name.startswith(EVENTS_PREFIX) or is_temp_file(p)):
            p.unlink()


def stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Orphan temp files of rlkd's atomic writer in ``run_dir`` and its run subfolders."""
    run_dir = Path(run_dir)
    dirs = [run_dir] + [run_dir / d for d in ("checkpoints", "videos") if (run_dir / d).is_dir()]
    return sorted(p for d in dirs for p in d.iterdir() if p.is_file() and is_temp_file(p))


def truncate_metrics(path: str | Path, iteration: int) -> int:
    """Keep the rows of ``metrics.jsonl`` with ``"iteration" < iteration`` (those logged before
    the checkpoint being resumed), each once, in order; rewrite the file atomically. A row cut
    short by a kill is dropped. Returns how many rows were dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept: list[str] = []
    seen: set[int] = set()
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines:
        try:
            it = int(json.loads(line)["iteration"])
        except (ValueError, KeyError, TypeError):  # a partial last line, or not ours
            continue
        if it < iteration and it not in seen:
            seen.add(it)
            kept.append(line)
    if len(kept) != len(lines):
        text = "".join(f"{line}\n" for line in kept)
        atomic_write(path, lambda f: f.write(text), mode="w")
    return len(lines) - len(kept)


def tidy_for_resume(run_dir: str | Path, iteration: int) -> None:
    """Make ``run_dir`` look like a run stopped cleanly at ``iteration``: drop the metrics rows
    of later iterations and delete orphan temp files. (Tensorboard's later events are hidden by
    the logger's ``purge_step``.)"""
    run_dir = Path(run_dir)
    truncate_metrics(run_dir / "metrics.jsonl", iteration)
    for p in stale_temp_files(run_dir):
        p.unlink(missing_ok=True)


def package_versions() -> dict[str, str | None]:
    """Installed versions of rlkd and the packages its results depend on (``None``: absent)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("rlkd", "torch", "mujoco", "gymnasium", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def is_terminal() -> bool:
    """Whether stdout is an interactive terminal (not a file, a pipe, CI or a SLURM log)."""
    stream = sys.stdout
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, OSError, ValueError):  # replaced or closed stdout
        return False
