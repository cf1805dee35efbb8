"""Statistics of sim-to-real reports: bootstrap confidence intervals and dynamic time warping.

Both are small enough to write here; DTW is a 20-line dynamic programme, and pulling a compiled
DTW package (dtaidistance, tslearn) into the install for it would cost more than it saves.
"""

from __future__ import annotations

import numpy as np


def bootstrap_mean(x: np.ndarray, num_resamples: int = 2000, level: float = 0.95,
                   seed: int = 0) -> dict[str, float]:
    """Mean of ``x`` (n,) with a percentile-bootstrap confidence interval.

    Returns ``{"mean", "lo", "hi", "n"}``; NaN bounds when ``n < 2``.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    if n == 1:
        return {"mean": float(x[0]), "lo": float("nan"), "hi": float("nan"), "n": 1}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(num_resamples, n))].mean(axis=1)
    a = (1.0 - level) / 2
    return {"mean": float(x.mean()), "lo": float(np.quantile(means, a)),
            "hi": float(np.quantile(means, 1 - a)), "n": n}


def bootstrap_gap(x: np.ndarray, ref: np.ndarray, paired: bool, num_resamples: int = 2000,
                  level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """``mean(x) - mean(ref)`` with a percentile-bootstrap confidence interval.

    ``paired``: ``x[i]`` and ``ref[i]`` are the same episode (same initial state and random
    numbers) under two conditions, so episodes are resampled jointly, which removes the
    between-episode variance from the gap; otherwise both samples are resampled independently.
    ``significant`` is True when the interval excludes 0.
    """
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    rng = np.random.default_rng(seed)
    a = (1.0 - level) / 2
    if paired:
        if x.shape != ref.shape:
            raise ValueError(f"paired gap needs equal sample sizes, got {x.shape} and {ref.shape}")
        ok = np.isfinite(x) & np.isfinite(ref)
        d = x[ok] - ref[ok]
        if len(d) < 2:
            return {"gap": float(d.mean()) if len(d) else float("nan"), "lo": float("nan"),
                    "hi": float("nan"), "significant": False}
        gaps = d[rng.integers(0, len(d), size=(num_resamples, len(d)))].mean(axis=1)
        gap = float(d.mean())
    else:
        x, ref = x[np.isfinite(x)], ref[np.isfinite(ref)]
        if len(x) < 2 or len(ref) < 2:
            return {"gap": float(x.mean() - ref.mean()) if len(x) and len(ref) else float("nan"),
                    "lo": float("nan"), "hi": float("nan"), "significant": False}
        gaps = (x[rng.integers(0, len(x), size=(num_resamples, len(x)))].mean(axis=1)
                - ref[rng.integers(0, len(ref), size=(num_resamples, len(ref)))].mean(axis=1))
        gap = float(x.mean() - ref.mean())
    lo, hi = float(np.quantile(gaps, a)), float(np.quantile(gaps, 1 - a))
    return {"gap": gap, "lo": lo, "hi": hi, "significant": bool(lo > 0 or hi < 0)}


def dtw(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Dynamic time warping between traces ``a (n, d)`` and ``b (m, d)`` (Euclidean cost).

    Returns ``{"total", "mean", "path_length"}``: the summed cost of the optimal monotone
    alignment, and that cost per aligned pair (in the traces' units, e.g. metres), which is
    comparable across trace lengths.
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        raise ValueError(f"dtw needs non-empty traces, got lengths {n} and {m}")
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    acc = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1), dtype=np.int64)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        # Row recurrence: the diagonal and vertical moves vectorise, the horizontal one does not.
        up, diag = acc[i - 1, 1:], acc[i - 1, :-1]
        best_prev = np.minimum(up, diag)
        from_diag = diag <= up
        prev_steps = np.where(from_diag, steps[i - 1, :-1], steps[i - 1, 1:])
        row, row_steps = acc[i], steps[i]
        c = cost[i - 1]
        for j in range(1, m + 1):
            left = row[j - 1]
            if left < best_prev[j - 1]:
                row[j] = c[j - 1] + left
                row_steps[j] = row_steps[j - 1] + 1
            else:
                row[j] = c[j - 1] + best_prev[j - 1]
                row_steps[j] = prev_steps[j - 1] + 1
    total = float(acc[n, m])
    return {"total": total, "mean": total / int(steps[n, m]), "path_length": int(steps[n, m])}
