"""Provenance of result files: the command that made them, the code's git commit, the machine,
and an atomic strict-JSON writer.

Every benchmark, study script and report records these next to its figures, so a number in a
results file can be traced to the run that produced it and re-run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkd.core.atomic import atomic_write

#: Directory inside the rlkd checkout: where :func:`git_commit` asks git by default.
_PACKAGE_DIR = Path(__file__).resolve().parent


def command_line(argv: list[str] | None = None, program_name_only: bool = False) -> str:
    """The command that started this process, as one line (``sys.argv`` joined by spaces).

    Args:
        argv: the arguments to record (default ``sys.argv``).
        program_name_only: record only the file name of ``argv[0]`` (``rlkd`` instead of
            ``/usr/local/bin/rlkd``), so reports do not leak local install paths.
    """
    argv = list(sys.argv if argv is None else argv)
    if program_name_only and argv:
        argv[0] = Path(argv[0]).name
    return " ".join(argv)


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """``git rev-parse HEAD`` of the checkout containing ``cwd`` (default: this package's
    directory), or ``None`` outside a git checkout or without git (e.g. a wheel install)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=_PACKAGE_DIR if cwd is None else cwd).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: platform, Python and torch versions, CPU count,
    torch intra-op threads, the CUDA device name (``None`` without CUDA) and ``git_commit``."""
    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "git_commit": git_commit()}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``): wall
    clocks from two machines are not comparable, so every record says which it ran on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def json_safe(x: Any) -> Any:
    """``x`` with non-finite floats (NaN, inf) replaced by ``None``: strict JSON has no NaN."""
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as strict JSON atomically (never a half-written report); NaN/inf -> null.

    Objects JSON cannot encode are written as their ``str``. Returns ``path``."""
    return atomic_write(path, lambda f: json.dump(json_safe(data), f, indent=2, default=str,
                                                  allow_nan=False), mode="w")
