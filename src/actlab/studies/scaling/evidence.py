"""The numbers of study C6 from stored final losses: per point the regime and the paired gaps,
per axis and gap a least-squares slope with its 95% t-interval, and the rule on those slopes.

Pure functions of plain data ({point label: {activation: {seed: loss or None}}}), so the
tests hand-build every case.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from actlab.analysis import regime
from actlab.analysis.stats import mean_ci
from actlab.article.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED

SUBJECT = "sigmoid"
MIN_POINTS = 3  # in-regime points an axis needs before its slope says anything
LEVEL = 0.95
LLM_PARAMS = 7e9  # a 7B LLM, the scale the article speaks of
GROWS, SHRINKS, FLAT, TOO_FEW = "grows", "shrinks", "unresolved", "too few points"


def fit_slope(xs, ys, level: float = LEVEL) -> dict:
    """Ordinary least squares y = intercept + slope * x over the finite pairs, with a two-sided
    Student-t interval on the slope (n - 2 degrees of freedom). Fewer than two distinct x give
    no slope; exactly two points give a slope without an interval (NaN bounds)."""
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys)
             if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    n = len(pairs)
    out = {"slope": math.nan, "intercept": math.nan, "se": math.nan, "lo": math.nan,
           "hi": math.nan, "n": n, "n_x": len({x for x, _ in pairs}), "level": level}
    if out["n_x"] < 2:
        return out
    x, y = np.asarray(pairs).T
    dx = x - x.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    out.update(slope=slope, intercept=intercept)
    if n > 2:
        resid = y - (intercept + slope * x)
        se = math.sqrt(float(resid @ resid) / (n - 2) / sxx)
        half = float(sps.t.ppf(0.5 + level / 2, n - 2)) * se
        out.update(se=se, lo=slope - half, hi=slope + half)
    return out


def outcome(fit: dict, n_points: int) -> str:
    """grows (interval above 0) | shrinks (below 0) | unresolved | too few points."""
    if n_points < MIN_POINTS or not math.isfinite(fit["lo"]):
        return TOO_FEW if n_points < MIN_POINTS else FLAT
    if fit["lo"] > 0:
        return GROWS
    if fit["hi"] < 0:
        return SHRINKS
    return FLAT


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def point_evidence(label: str, x: float, losses: dict, seeds, comparators, baselines,
                   hint: str) -> dict:
    """One point: the regime of its GELU reference, each activation's final losses (mean with
    95% CI) and each paired gap sigmoid - comparator per seed (None where a run is not finite)."""
    per_act = {}
    for act, by_seed in losses.items():
        vals = [by_seed.get(s) for s in seeds]
        per_act[act] = {**mean_ci([v for v in vals if _finite(v)]),
                        "losses": [v if _finite(v) else None for v in vals]}
    ref = per_act.get(regime.REFERENCE_ACT, {}).get("losses")
    reg = regime.regime(ref, baselines, hint)
    sub = losses.get(SUBJECT, {})
    gaps = {}
    for c in comparators:
        other = losses.get(c, {})
        per = [sub.get(s) - other.get(s) if _finite(sub.get(s)) and _finite(other.get(s)) else None
               for s in seeds]
        gaps[c] = {**mean_ci([g for g in per if g is not None]), "per_seed": per,
                   "n_unpaired": sum(g is None for g in per)}
    return {"label": label, "x": x, "in_regime": reg["in_regime"], "regime": reg,
            "per_act": per_act, "gaps": gaps}


def axis_fits(points: list[dict], comparators) -> dict:
    """Per comparator: the slope of the per-seed gaps against x over the in-regime points (out
    of regime points enter no fit), the number of in-regime points with a finite gap, and the
    outcome."""
    fits = {}
    for c in comparators:
        xs, ys, used = [], [], 0
        for pt in points:
            if not pt["in_regime"]:
                continue
            gs = [g for g in pt["gaps"][c]["per_seed"] if g is not None]
            used += bool(gs)
            xs += [pt["x"]] * len(gs)
            ys += gs
        fit = fit_slope(xs, ys)
        fits[c] = {**fit, "n_points": used, "outcome": outcome(fit, used)}
    return fits


def decide(fits: dict[str, dict[str, dict]]) -> str:
    """The rule on {axis: {comparator: fit with outcome}}: SUPPORTED if some gap grows on some
    axis and none shrinks anywhere; NOT SUPPORTED if some shrinks and none grows; else
    INCONCLUSIVE (nothing resolved, or growth and shrinkage both).

    Why: the claim is that sigmoid's deficit worsens with scale, which a positive slope on
    either axis shows, as long as no axis points the other way; a shrinking gap is positive
    evidence against it; an axis with too few in-regime points says nothing either way."""
    outs = [f["outcome"] for per in fits.values() for f in per.values()]
    grows, shrinks = GROWS in outs, SHRINKS in outs
    if grows and not shrinks:
        return SUPPORTED
    if shrinks and not grows:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def extrapolation(largest_params: int | None) -> dict:
    """How far a 7B LLM lies beyond the largest model trained here, in decades of parameters."""
    if not largest_params:
        return {"largest_params": largest_params, "llm_params": LLM_PARAMS, "decades": math.nan}
    decades = math.log10(LLM_PARAMS / largest_params)
    return {"largest_params": int(largest_params), "llm_params": LLM_PARAMS, "decades": decades,
            "warning": f"a 7B LLM lies {decades:.1f} decades of parameters beyond the largest "
                       f"model here ({largest_params:,} non-embedding parameters); the slopes "
                       "describe these small character-level models only and are no "
                       "prediction at LLM scale"}
