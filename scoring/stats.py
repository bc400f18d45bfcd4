"""Aggregates for reports: mean with a 95 % percentile-bootstrap confidence interval over clips.

Why the bootstrap: FAD is a set-level statistic with no per-clip values, so its interval must come from
resampling clips and recomputing; using the same method for the per-clip metrics keeps the columns comparable.
Resampling is seeded, so a report is reproducible.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

N_BOOTSTRAP = 1000


def mean_ci(values: Sequence[float], level: float = 0.95, n_boot: int = N_BOOTSTRAP,
            seed: int = 0) -> dict[str, float | int]:
    """Mean of the finite ``values`` and the percentile-bootstrap ``level`` interval of the mean.

    Returns ``{"mean", "ci_low", "ci_high", "n"}``; NaN entries (metric undefined for a clip) are skipped.
    """
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(x) == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(x.mean()), "ci_low": float(low), "ci_high": float(high), "n": int(len(x))}


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n_items: int, level: float = 0.95,
                 n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of a set-level ``statistic(indices)`` (e.g. FAD over resampled clips)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        try:
            values.append(statistic(rng.integers(0, n_items, size=n_items)))
        except ValueError:  # a resample too small to fit a Gaussian
            continue
    if not values:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
