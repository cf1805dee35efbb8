"""Training logs: tensorboard scalars, a ``metrics.jsonl`` line per iteration, progress output,
optionally Weights & Biases.

Metric names follow CleanRL / rsl_rl: ``charts/SPS``, ``charts/episodic_return``,
``charts/success_rate``, ``losses/value_loss``, ``losses/approx_kl``, ``intrinsic/reward_raw``,
``rewards/<term>`` ... Only rank 0 logs (``enabled=False`` elsewhere).

Progress: on a terminal a rich progress bar; anywhere else (a file, a pipe, CI, a SLURM log,
where a redrawn bar is unreadable or invisible) plain lines, one every ``log_interval_s``
seconds plus the first and the last iteration.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from rlkd.core.atomic import atomic_write


class MissingPackageError(ImportError):
    """An optional feature was asked for but its package is not installed."""


def require_wandb():
    """The ``wandb`` module, or :class:`MissingPackageError` saying how to install it."""
    try:
        import wandb
    except ImportError:
        raise MissingPackageError("--wandb needs the wandb package, which is not installed: "
                                  "pip install wandb (or train without --wandb)") from None
    return wandb


def _wait_for_later_second(log_dir: Path) -> None:
    """Return once ``int(time.time())`` is past every event file's timestamp in ``log_dir``.

    Tensorboard reads a run's event files in name order, ``events.out.tfevents.<unix
    second>.<host>.<pid>...``: a resumed run's file created in the same second as the old one
    could sort first (by pid), and then the old file's events would land after the purge
    marker instead of being purged. At most a second's wait, only right after a crash."""
    newest = 0
    for p in log_dir.glob("events.out.tfevents.*"):
        try:
            newest = max(newest, int(p.name.split(".")[3]))
        except (IndexError, ValueError):
            continue
    deadline = time.monotonic() + 2.0  # a file from a skewed clock must not stall training
    while int(time.time()) <= newest and time.monotonic() < deadline:
        time.sleep(0.05)


def _duration(seconds: float) -> str:
    """``3725.0 -> "1:02:05"``; ``"?"`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class TrainLogger:
    """Writes scalars to tensorboard (``<log_dir>``) and ``<log_dir>/metrics.jsonl``.

    Args:
        log_dir: run directory.
        total_iterations: for the progress bar.
        enabled: False on ranks > 0 (then every method is a no-op).
        progress: show progress (bar on a terminal, periodic lines elsewhere) and messages.
        start_iteration: first iteration of this process (non-zero on resume).
        start_env_steps: env steps done before this process (non-zero on resume).
        total_env_steps: the run's env-step budget (for percentages and the ETA).
        purge_step: on resume, the env steps of the checkpoint: tensorboard hides the events
            at or after it that the previous process wrote (a new event file in the same
            directory then continues one logical run instead of overlapping it).
        log_interval_s: seconds between progress lines off a terminal.
        terminal: stdout is a terminal (default: ask it).
        wandb_config: log to Weights & Biases too, with this config (``None``: off).
    """

    def __init__(self, log_dir: str | Path, total_iterations: int, enabled: bool = True,
                 progress: bool = True, start_iteration: int = 0, start_env_steps: int = 0,
                 total_env_steps: int | None = None, purge_step: int | None = None,
                 log_interval_s: float = 30.0, terminal: bool | None = None,
                 wandb_config: dict[str, Any] | None = None):
        self.enabled = enabled
        self.log_dir = Path(log_dir)
        self._writer = None
        self._progress = None
        self._lines = False
        self._wandb = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        from rlkd.train.rundir import is_terminal

        self.log_dir.mkdir(parents=True, exist_ok=True)
        if purge_step:
            _wait_for_later_second(self.log_dir)
        self._writer = SummaryWriter(str(self.log_dir), purge_step=purge_step or None)
        self._jsonl = open(self.log_dir / "metrics.jsonl", "a", encoding="utf-8")
        if wandb_config is not None:
            self._wandb = self._start_wandb(wandb_config)
        self.total_iterations = total_iterations
        self.total_env_steps = total_env_steps
        self.log_interval_s = float(log_interval_s)
        self._t0 = time.monotonic()
        self._steps0 = start_env_steps
        self._last_line = -math.inf
        terminal = is_terminal() if terminal is None else terminal
        self._progress_on = progress
        self._lines = progress and not terminal
        if progress and terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._progress = Progress(TextColumn("[bold]train"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      TimeRemainingColumn(), TextColumn("{task.description}"))
            self._progress.start()
            self._task = self._progress.add_task("", total=total_iterations,
                                                 completed=start_iteration)

    def log(self, iteration: int, env_steps: int, scalars: dict[str, float]) -> None:
        """Record ``scalars`` at ``env_steps`` (tensorboard x-axis) for ``iteration``."""
        if not self.enabled:
            return
        for k, v in scalars.items():
            if v is not None and math.isfinite(v):
                self._writer.add_scalar(k, v, env_steps)
        line = {"iteration": iteration, "env_steps": env_steps, **scalars}
        self._jsonl.write(json.dumps(line) + "\n")
        self._jsonl.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in scalars.items()
                             if v is not None and math.isfinite(v)}, step=env_steps)
        if self._progress is not None:
            desc = f"{scalars.get('charts/SPS', 0):,.0f} steps/s" + self._summary(scalars)
            self._progress.update(self._task, completed=iteration + 1, description=desc)
        elif self._lines:
            now = time.monotonic()
            last = iteration + 1 >= self.total_iterations
            if last or now - self._last_line >= self.log_interval_s:
                self._last_line = now
                self.message(self._progress_line(iteration, env_steps, scalars, now))

    @staticmethod
    def _summary(scalars: dict[str, float]) -> str:
        """``"  return +0.123  success 45.0%"`` (the parts that are finite)."""
        out = ""
        ret = scalars.get("charts/episodic_return")
        succ = scalars.get("charts/success_rate")
        if ret is not None and math.isfinite(ret):
            out += f"  return {ret:+.3f}"
        if succ is not None and math.isfinite(succ):
            out += f"  success {100 * succ:.1f}%"
        return out

    def _progress_line(self, iteration: int, env_steps: int, scalars: dict[str, float],
                       now: float) -> str:
        """One self-contained progress line: steps (of the budget), mean steps/s of this
        process, ETA, return, success."""
        elapsed = now - self._t0
        rate = (env_steps - self._steps0) / elapsed if elapsed > 0 else float("nan")
        total = self.total_env_steps
        steps = f"{env_steps:,}" + (f"/{total:,} env steps ({100 * env_steps / total:.0f}%)"
                                    if total else " env steps")
        eta = (total - env_steps) / rate if total and rate > 0 else float("nan")
        return (f"train it {iteration + 1}/{self.total_iterations}  {steps}  {rate:,.0f} "
                f"steps/s  elapsed {_duration(elapsed)}  ETA {_duration(max(eta, 0.0))}"
                + self._summary(scalars))

    def message(self, text: str) -> None:
        """Print one line of progress news (start header, video rendering, ...) when progress
        output is on; above the bar on a terminal, flushed at once elsewhere."""
        if not (self.enabled and self._progress_on):
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def add_text(self, tag: str, text: str, step: int | None = None) -> None:
        if self.enabled:
            self._writer.add_text(tag, text, step)

    def add_image(self, tag: str, image_hwc: Any, step: int) -> None:
        if self.enabled:
            self._writer.add_image(tag, image_hwc, step, dataformats="HWC")

    def flush(self) -> None:
        """Put every event logged so far on disk (called with each checkpoint, so that after a
        crash tensorboard has the curves up to the checkpoint a resume starts from)."""
        if self.enabled:
            self._writer.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.stop()
        self._writer.close()
        self._jsonl.close()
        if self._wandb is not None:
            self._wandb.finish()

    def _start_wandb(self, config: dict[str, Any]):
        """A wandb run for this run directory; its id is kept in ``wandb_run_id`` so that a
        resumed run continues the same wandb run instead of starting a second one."""
        import os

        wandb = require_wandb()
        id_file = self.log_dir / "wandb_run_id"
        if id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = wandb.util.generate_id()
            atomic_write(id_file, lambda f: f.write(run_id), mode="w")
        wandb.init(project=os.environ.get("WANDB_PROJECT", "rlkd"), name=self.log_dir.name,
                   id=run_id, resume="allow", dir=str(self.log_dir), config=config)
        return wandb
