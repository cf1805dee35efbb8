"""Atomic file writes: a crash leaves the old file or the new one, never a partial file.

The data goes to a temporary file next to the target, named ``.<target name>.tmp-<random><suffix>``
(:data:`TEMP_TAG`), which is renamed onto the target. A process killed mid-write (``kill -9``,
a lost node) leaves that temp file behind; :func:`is_temp_file` recognises such orphans so a
resumed run can delete them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


#: Part of every temp file name this module creates (after the target's name): what
#: :func:`is_temp_file` looks for.
TEMP_TAG = ".tmp-"


def is_temp_file(path: str | os.PathLike) -> bool:
    """Whether ``path``'s name is one of this module's temp files (``.<name>.tmp-<random>...``),
    or one of the ``.<name>.<random>.tmp`` files earlier rlkd versions wrote."""
    name = Path(path).name
    return name.startswith(".") and (TEMP_TAG in name or name.endswith(".tmp"))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    For writers that need a file name (video encoders); the temp file keeps ``suffix`` so such
    writers can pick their format from it. On any exception the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_TAG}", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, write_fn: Callable[[IO], object],
                 mode: str = "wb") -> Path:
    """Write through ``write_fn(file)`` (opened with ``mode``), fsync, then rename onto ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
    return path
