"""Small statistics used by every study: t-based confidence intervals and paired tests."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean with a two-sided Student-t confidence interval (n-1 degrees of freedom).

    With one value the interval is undefined and reported as NaN rather than zero width.
    """
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "lo": float("nan"), "hi": float("nan"), "n": 1}
    half = float(sps.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n}


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired t-test of a - b (same seeds, same data order): mean difference, CI, p-value."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    ci = mean_ci(d)
    if len(d) < 2 or float(d.std(ddof=1)) == 0.0:
        p = float("nan") if len(d) < 2 else (0.0 if ci["mean"] != 0 else 1.0)
    else:
        p = float(sps.ttest_rel(a, b).pvalue)
    return {"diff": ci["mean"], "lo": ci["lo"], "hi": ci["hi"], "p": p, "n": ci["n"]}


def mean_band(rows: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Column means of a (seeds, points) array and the Student-t half-width of each, as in
    `mean_ci`; NaNs are ignored, and the half-width is 0 with one seed (no interval exists)."""
    rows = np.asarray(rows, dtype=np.float64)
    mean = np.nanmean(rows, axis=0)
    n = rows.shape[0]
    if n < 2:
        return mean, np.zeros_like(mean)
    half = sps.t.ppf(0.5 + level / 2, n - 1) * np.nanstd(rows, axis=0, ddof=1) / math.sqrt(n)
    return mean, half
