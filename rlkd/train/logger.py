"""Training logs: tensorboard scalars, a ``metrics.jsonl`` line per iteration, a rich progress bar.

Metric names follow CleanRL / rsl_rl: ``charts/SPS``, ``charts/episodic_return``,
``charts/success_rate``, ``losses/value_loss``, ``losses/approx_kl``, ``intrinsic/reward_raw`` ...
Only rank 0 logs (``enabled=False`` elsewhere).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class TrainLogger:
    """Writes scalars to tensorboard (``<log_dir>``) and ``<log_dir>/metrics.jsonl``.

    Args:
        log_dir: run directory.
        total_iterations: for the progress bar.
        enabled: False on ranks > 0 (then every method is a no-op).
        progress: show the rich progress bar (steps/s, return, success).
        start_iteration: first iteration of this process (non-zero on resume).
    """

    def __init__(self, log_dir: str | Path, total_iterations: int, enabled: bool = True,
                 progress: bool = True, start_iteration: int = 0):
        self.enabled = enabled
        self.log_dir = Path(log_dir)
        self._writer = None
        self._progress = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(str(self.log_dir))
        self._jsonl = open(self.log_dir / "metrics.jsonl", "a", encoding="utf-8")
        if progress:
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
        if self._progress is not None:
            ret = scalars.get("charts/episodic_return")
            succ = scalars.get("charts/success_rate")
            desc = f"{scalars.get('charts/SPS', 0):,.0f} steps/s"
            if ret is not None and math.isfinite(ret):
                desc += f"  return {ret:+.3f}"
            if succ is not None and math.isfinite(succ):
                desc += f"  success {100 * succ:.1f}%"
            self._progress.update(self._task, completed=iteration + 1, description=desc)

    def add_text(self, tag: str, text: str) -> None:
        if self.enabled:
            self._writer.add_text(tag, text)

    def add_image(self, tag: str, image_hwc: Any, step: int) -> None:
        if self.enabled:
            self._writer.add_image(tag, image_hwc, step, dataformats="HWC")

    def close(self) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.stop()
        self._writer.close()
        self._jsonl.close()
