"""Stored numbers as the analysis reads them: a missing (None) or non-finite value becomes NaN
(left out of a mean), +inf (worst for a minimum) or JSON null (JSON has no NaN or Inf)."""

from __future__ import annotations

import math

import numpy as np


def num(x) -> float:
    """x as a float; NaN where it is None or not finite."""
    return float(x) if x is not None and math.isfinite(float(x)) else math.nan


def finite_or_inf(x) -> float:
    """x as a float; +inf where it is None or not finite, so a diverged run loses a minimum."""
    return float(x) if x is not None and math.isfinite(float(x)) else math.inf


def is_finite(v) -> bool:
    """Whether v is an int or float with a finite value (None, strings and NaN are not)."""
    return isinstance(v, (int, float)) and math.isfinite(v)


def finite_mean(values) -> float:
    """Mean of the finite values among `values` (None and non-finite ones left out); NaN if
    there is none."""
    vals = [num(v) for v in values or []]
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def json_safe(obj):
    """obj with every non-finite float written as None and every dict key as a string, so
    `json.dumps(..., allow_nan=False)` accepts it and every reader can parse the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
