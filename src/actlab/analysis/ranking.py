"""Ranking activations from seed-paired runs of the same model: per-activation final losses
with 95% CIs, divergences counted and ranked last, paired tests against one another with
Holm's correction, the seeds that did not settle, and steps to a target loss.

Pure functions of stored results (each a dict with "params" and the run's outputs): study C3
and `actlab compare` read their runs through them, and the tests call them on hand-built data.
"""

from __future__ import annotations

import math

import numpy as np

from actlab.analysis.numbers import finite_or_inf
from actlab.analysis.stats import mean_ci, paired_test

SMOOTH = 10  # steps in the trailing mean of the training loss

# A seed-to-seed range of final losses above this many nats (ten times the seed std Shazeer 2020
# reports, 0.005 at 65k steps; five times the 0.02 nats the gates study calls material) is named
# in the caveats of study C3 and in `actlab compare`'s notes: it does not change a verdict or a
# ranking, it tells the reader not to trust a rank.
SEED_SPREAD = 0.1


def loss_of(result: dict) -> float:
    """A run's final validation loss; +inf for a diverged or failed run."""
    return finite_or_inf(result.get("final_val_loss"))


def by_seed(results: list[dict]) -> dict[str, dict[int, dict]]:
    """{act: {seed: result}} of the evaluation runs."""
    out: dict[str, dict[int, dict]] = {}
    for r in results:
        out.setdefault(r["params"]["act"], {})[r["params"]["seed"]] = r
    return out


def smoothed(history: list[dict], window: int = SMOOTH) -> tuple[list[int], list[float]]:
    """(steps taken, trailing mean of the training loss over `window` steps)."""
    steps, losses = [], []
    for row in history:
        steps.append(int(row["step"]) + 1)
        losses.append(float(row["train_loss"]) if row.get("train_loss") is not None else math.nan)
    x = np.asarray(losses, dtype=np.float64)
    out = [float(x[max(0, i - window + 1): i + 1].mean()) for i in range(len(x))]
    return steps, out


def steps_to(history: list[dict], target: float) -> int | None:
    steps, loss = smoothed(history)
    return next((s for s, v in zip(steps, loss) if math.isfinite(v) and v <= target), None)


def holm(pvalues: list[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values; NaN counts as 1."""
    p = [1.0 if not math.isfinite(v) else v for v in pvalues]
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def summarize(runs: dict[str, dict[int, dict]], seeds) -> dict[str, dict]:
    """Per activation: final losses by seed (None where not finite), mean with 95% CI,
    divergences, errors (a job that raised), size and speed."""
    out = {}
    for act, per_seed in runs.items():
        done = [per_seed[s] for s in seeds if s in per_seed]
        losses = [loss_of(per_seed[s]) if s in per_seed else math.nan for s in seeds]
        out[act] = {
            **mean_ci([v for v in losses if math.isfinite(v)]),
            "losses": [v if math.isfinite(v) else None for v in losses],
            "n_diverged": sum(r.get("outcome") == "diverged" for r in done),
            "n_errors": sum(r.get("outcome") == "error" for r in done),
            "n_params": next((r["n_params"] for r in done if r.get("n_params")), None),
            "tokens_per_s": mean_ci([r["tokens_per_s"] for r in done if "tokens_per_s" in r]),
        }
    return out


def rank(summary: dict[str, dict]) -> list[str]:
    """Best first: activations with fewer divergences first, then by mean final loss."""
    def key(act):
        m = summary[act]["mean"]
        return (summary[act]["n_diverged"], m if math.isfinite(m) else math.inf, act)
    return sorted(summary, key=key)


def paired_comparison(summary: dict, a: str, b: str) -> dict:
    """Paired test of a - b over the seeds where both are finite, plus divergence counts."""
    pa, pb = summary[a]["losses"], summary[b]["losses"]
    pairs = [(x, y) for x, y in zip(pa, pb) if x is not None and y is not None]
    test = paired_test([x for x, _ in pairs], [y for _, y in pairs]) if pairs else {
        "diff": math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan, "n": 0}
    return {**test, "n_seeds": len(pa),
            "a_only_diverged": sum(x is None and y is not None for x, y in zip(pa, pb)),
            "b_only_diverged": sum(y is None and x is not None for x, y in zip(pa, pb)),
            "b_mean": summary[b]["mean"]}


def seed_spread(summary: dict, limit: float = SEED_SPREAD) -> dict[str, float]:
    """Activations whose finite final losses range over more than `limit` nats across seeds,
    with that range: their seeds did not settle to one outcome."""
    out = {}
    for act, s in summary.items():
        losses = [v for v in s.get("losses", []) if v is not None and math.isfinite(v)]
        spread = max(losses) - min(losses) if len(losses) >= 2 else 0.0
        if spread > limit:
            out[act] = spread
    return out


def spread_note(spread: dict[str, float], limit: float = SEED_SPREAD) -> str:
    """seed_spread's finding in words, for a caveat or a note."""
    return (f"final losses differ by more than {limit} nats between seeds for: "
            + ", ".join(f"{a} {v:.2f}" for a, v in spread.items()))
