"""The statistics of study C7, as pure functions of stored runs (dicts with "params" and what
`convergence.runs.train_job` returned), so the tests can check each on hand-built data.

faster        time to a target loss: steps, tokens, wall-clock seconds and CPU-seconds
sensitivity   the width in decades of the rates whose loss is near the activation's best
divergences   grid runs that went unstable (three ways, `unstable`)
spread        range of the final losses over seeds at the best rate

and the comparison of sigmoid with one other activation on each part (`compare_*`), then the
part's outcome over all comparators (`part_outcome`).
"""

from __future__ import annotations

import math
import statistics

from actlab.analysis.numbers import finite_or_inf
from actlab.analysis.ranking import smoothed

WORSE, BETTER, EVEN, MIXED, NA = "worse", "better", "even", "mixed", "n/a"
RISE = 0.10  # a final trailing-mean training loss this far above the run's lowest: unstable


def median_inf(values) -> float:
    """Median with None / NaN counted as +inf (a seed that never got there); NaN if empty."""
    vals = [finite_or_inf(v) for v in values]
    return statistics.median(vals) if vals else math.nan


# -- divergences -----------------------------------------------------------------------------

def unstable(result: dict, unigram: float | None) -> str | None:
    """Why a run counts as unstable, or None: "diverged" (a non-finite loss stopped it),
    "above unigram" (its final validation loss is worse than letter frequencies), or "loss
    rose" (its final trailing-mean training loss is more than RISE above the lowest it
    reached: it learned, then lost it). A job that raised is no training outcome: None."""
    if result.get("outcome") == "error":
        return None
    if result.get("outcome") == "diverged" or not math.isfinite(finite_or_inf(result.get("final_val_loss"))):
        return "diverged"
    if unigram is not None and result["final_val_loss"] > unigram:
        return "above unigram"
    _, curve = smoothed(result.get("history") or [])
    finite = [v for v in curve if math.isfinite(v)]
    if finite and finite[-1] > (1 + RISE) * min(finite):
        return "loss rose"
    return None


def grid_table(results: list[dict], unigram: float | None) -> dict[str, dict]:
    """Per activation, over its grid runs: the rates in increasing order, the final validation
    loss at each (median over grid seeds; a diverged run counts +inf), the unstable runs at
    each rate with their reasons, the runs and the failed jobs (errors, left out)."""
    rows: dict[str, dict[float, list[dict]]] = {}
    for r in results:
        rows.setdefault(r["params"]["act"], {}).setdefault(r["params"]["lr"], []).append(r)
    out = {}
    for act, by_lr in rows.items():
        lrs = sorted(by_lr)
        ok = {lr: [r for r in by_lr[lr] if r.get("outcome") != "error"] for lr in lrs}
        reasons = {lr: [u for r in ok[lr] if (u := unstable(r, unigram))] for lr in lrs}
        out[act] = {
            "lrs": lrs,
            "val_loss": [median_inf([r.get("final_val_loss") for r in ok[lr]]) if ok[lr]
                         else math.inf for lr in lrs],
            "unstable": [len(reasons[lr]) for lr in lrs],
            "reasons": [reasons[lr] for lr in lrs],
            "runs": [len(ok[lr]) for lr in lrs],
            "errors": sum(len(by_lr[lr]) - len(ok[lr]) for lr in lrs),
        }
    return out


# -- sensitivity -----------------------------------------------------------------------------

def best_index(losses: list[float]) -> int:
    """Index of the lowest loss (rates in increasing order: ties go to the smaller rate)."""
    return min(range(len(losses)), key=lambda i: (finite_or_inf(losses[i]), i))


def sensitivity_width(lrs: list[float], losses: list[float], margin: float) -> dict:
    """The unbroken run of grid rates around the best whose loss is within `margin` (a
    fraction) of the best: {"width" (decades, log10(hi / lo); 0 for the best alone), "lo",
    "hi", "best_lr", "best_loss"}. Width NaN when every run diverged."""
    i = best_index(losses)
    best = finite_or_inf(losses[i])
    if not math.isfinite(best):
        return {"width": math.nan, "lo": None, "hi": None, "best_lr": lrs[i], "best_loss": best}
    near = [finite_or_inf(v) <= best * (1 + margin) for v in losses]
    lo = hi = i
    while lo > 0 and near[lo - 1]:
        lo -= 1
    while hi < len(lrs) - 1 and near[hi + 1]:
        hi += 1
    return {"width": math.log10(lrs[hi] / lrs[lo]), "lo": lrs[lo], "hi": lrs[hi],
            "best_lr": lrs[i], "best_loss": best}


def excess(losses: list[float], cap: float) -> float:
    """Mean over the grid of min(loss, cap) - best: how much loss a rate picked blindly from the
    grid costs (a diverged run costs cap - best). Reported beside the width, not in the rule."""
    vals = [min(finite_or_inf(v), cap) for v in losses]
    best = min(vals)
    return sum(v - best for v in vals) / len(vals) if vals else math.nan


# -- faster ----------------------------------------------------------------------------------

def target_loss(results: list[dict], factor: float) -> float | None:
    """factor x the median final trailing-mean training loss of the completed runs (the
    reference's evaluation seeds at its best rate); None without one."""
    finals = [smoothed(r["history"])[1][-1] for r in results
              if r.get("outcome") == "completed" and r.get("history")]
    return factor * statistics.median(finals) if finals else None


def train_cpu_s(result: dict) -> float | None:
    """CPU-seconds of a run's training steps: the job's process CPU time less the share of its
    wall time spent before the steps (tokenizing, building the model), cpu_s x train_seconds /
    wall_s. None for a run stored without them."""
    cpu, wall, train = (result.get(k) for k in ("cpu_s", "wall_s", "train_seconds"))
    if not (cpu and wall and train):
        return None
    return cpu * min(1.0, train / wall)


def to_target(result: dict, target: float) -> dict:
    """When the run's trailing-mean training loss first reaches `target`: the steps, tokens,
    wall-clock seconds since its clock started and CPU-seconds (train_cpu_s x the share of
    its steps taken so far); all None when it never does. Also the run's tokens per
    CPU-second and per wall second (tokens_per_s, over the steps after the first flush)."""
    history = result.get("history") or []
    p = result["params"]
    per_step = p["batch_size"] * p["block_size"]
    cpu, steps_run = train_cpu_s(result), result.get("steps") or len(history)
    out = {"steps": None, "tokens": None, "wall_s": None, "cpu_s": None,
           "tokens_per_s": result.get("tokens_per_s"),
           "tokens_per_cpu_s": per_step * steps_run / cpu if cpu and steps_run else None}
    steps, curve = smoothed(history)
    hit = next((i for i, v in enumerate(curve) if math.isfinite(v) and v <= target), None)
    if hit is None:
        return out
    out.update(steps=steps[hit], tokens=steps[hit] * per_step, wall_s=history[hit].get("time_s"),
               cpu_s=cpu * steps[hit] / steps_run if cpu and steps_run else None)
    return out


# -- spread ----------------------------------------------------------------------------------

def seed_range(losses: list) -> float:
    """max - min of the final losses over seeds; +inf when a seed diverged (None / NaN),
    NaN with fewer than two seeds."""
    if len(losses) < 2:
        return math.nan
    vals = [finite_or_inf(v) for v in losses]
    return math.inf if math.inf in vals else max(vals) - min(vals)


# -- sigmoid (a) against one other activation (b) --------------------------------------------

def _missing(a, b) -> bool:
    return a is None or b is None or math.isnan(a) or math.isnan(b)


def compare_ratio(a: float, b: float, margin: float) -> str:
    """Lower is better (seconds to target): worse if a > (1 + margin) b, better if
    b > (1 + margin) a; +inf (never reached) against +inf is even."""
    if _missing(a, b):
        return NA
    if math.isinf(a) and math.isinf(b):
        return EVEN
    if a > (1 + margin) * b:
        return WORSE
    if b > (1 + margin) * a:
        return BETTER
    return EVEN


def compare_diff(a: float, b: float, margin: float) -> str:
    """Lower is better (seed range, nats): worse if a - b > margin, better if b - a > margin."""
    if _missing(a, b):
        return NA
    if math.isinf(a) and math.isinf(b):
        return EVEN
    if a - b > margin:
        return WORSE
    if b - a > margin:
        return BETTER
    return EVEN


def compare_width(a: float, b: float, tol: float = 0.25) -> str:
    """Higher is better (decades of usable rates). Widths move in grid steps, and the steps of
    a 1-3-10 grid are not equal (log10 3 = 0.48, log10 10/3 = 0.52 decades): a difference
    under `tol` (half a half-decade step) is the same number of steps, even."""
    if _missing(a, b):
        return NA
    if a < b - tol:
        return WORSE
    if a > b + tol:
        return BETTER
    return EVEN


def compare_count(a: int | None, b: int | None) -> str:
    """Lower is better (unstable runs on the same grid)."""
    if a is None or b is None:
        return NA
    return WORSE if a > b else BETTER if a < b else EVEN


def part_outcome(outcomes) -> str:
    """A part over its comparators (n/a ones skipped), the same both ways: worse if sigmoid is
    worse than each, better if better than each, mixed if worse than some but not all, even
    otherwise (worse than none); n/a if none applies."""
    outs = [o for o in outcomes if o != NA]
    if not outs:
        return NA
    if all(o == WORSE for o in outs):
        return WORSE
    if all(o == BETTER for o in outs):
        return BETTER
    return MIXED if WORSE in outs else EVEN
