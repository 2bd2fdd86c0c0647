"""What study C1 (vanishing) reads from its stored runs: the measure L of each run, the paired
gaps between activations per model, everything else the report shows beside them, and the
verdict's caveat lines written from those numbers. Pure functions of run_grid's results:
the rule (study.py) and the figures (figures.py) both read the runs through them.
"""

from __future__ import annotations

import math

import numpy as np

from actlab.analysis.numbers import finite_mean, num
from actlab.analysis.stats import mean_ci, paired_test
from actlab.nn.mlp import default_init

ACTS = ("sigmoid", "sigmoid_centered", "tanh", "relu", "gelu", "silu")
RELU_FAMILY = ("relu", "gelu", "silu")
MODELS = ("mlp", "gpt")
# One order of magnitude: below that, a difference in gradient decay between two activations
# is the kind Adam's per-parameter scaling or a learning rate re-tune absorbs routinely, and
# not what "gradients vanish, stalling learning" means.
MARGIN = 1.0  # decades (log10 units)
# A norm that underflowed to exactly 0 has vanished completely; it counts as this value so
# the run stays in the statistics instead of becoming -inf (the caveats report how many).
NORM_FLOOR = 1e-30


# -- which runs the rule reads ----------------------------------------------------------------

def variant(params: dict) -> str:
    """Which MLP setting a run belongs to: its width and whether it has its paper init."""
    paper = params["init"] == default_init(params["act"])
    return f"width {params['width']}, {'paper' if paper else 'other'} init"


def reference(results: list[dict], model: str, preset: dict) -> list[dict]:
    """The runs the rule reads: this model; for the MLP the first width and paper inits."""
    ref = f"width {preset['mlp']['widths'][0]}, paper init"
    return [r for r in results if r["params"]["model"] == model
            and (model == "gpt" or variant(r["params"]) == ref)]


# -- the measure and the evidence ------------------------------------------------------------

def log_ratios(run: dict, key: str = "w_grad") -> list[float]:
    """log10(first / last) gradient norm at each recorded step (NaN where missing); key
    "w_grad" (weights feeding the activation, the rule's measure) or "pre_act"."""
    out = []
    for row in run.get(key) or []:
        first, last = num(row[0]), num(row[-1])
        if math.isnan(first) or math.isnan(last):
            out.append(math.nan)
        else:
            out.append(math.log10(max(first, NORM_FLOOR) / max(last, NORM_FLOOR)))
    return out


def run_measure(run: dict, when: str = "mean", key: str = "w_grad") -> float:
    """L of one run: averaged over recorded steps ("mean"), at init ("init") or at step K
    ("final"). A run that did not complete, or has a missing record, gives NaN."""
    if run.get("outcome") != "completed":
        return math.nan
    lr = log_ratios(run, key)
    steps = run.get("grad_steps") or []
    if not lr or steps[0] != 0 or steps[-1] != run["params"]["steps"]:
        return math.nan
    used = {"mean": lr, "init": lr[:1], "final": lr[-1:]}[when]
    return math.nan if any(math.isnan(v) for v in used) else float(np.mean(used))


def family_gap(by_act: dict[str, dict[int, float]]) -> dict:
    """Paired over seeds: mean L over the ReLU family present minus L of sigmoid."""
    family = [a for a in RELU_FAMILY if a in by_act]
    if "sigmoid" not in by_act or not family:
        return paired_test([], [])
    fam, sig = [], []
    for seed, s in sorted(by_act["sigmoid"].items()):
        vals = [by_act[a].get(seed, math.nan) for a in family]
        if math.isfinite(s) and all(math.isfinite(v) for v in vals):
            fam.append(float(np.mean(vals)))
            sig.append(s)
    return paired_test(fam, sig)


def _paired(by_act: dict, a: str, b: str) -> dict:
    if a not in by_act or b not in by_act:
        return paired_test([], [])
    seeds = [s for s in sorted(by_act[a]) if s in by_act[b]
             and math.isfinite(by_act[a][s]) and math.isfinite(by_act[b][s])]
    return paired_test([by_act[a][s] for s in seeds], [by_act[b][s] for s in seeds])


def model_evidence(runs: list[dict]) -> dict:
    """Everything the rule and the report read for one model, from stored runs."""
    acts = sorted({r["params"]["act"] for r in runs}, key=lambda a: ACTS.index(a) if a in ACTS else 99)
    depths = sorted({r["params"]["depth"] for r in runs})
    top = depths[-1]
    ev: dict = {"depth": top, "depths": depths}
    by_depth: dict = {}
    for depth in depths:
        by_depth[depth] = {a: {r["params"]["seed"]: run_measure(r) for r in runs
                               if r["params"]["act"] == a and r["params"]["depth"] == depth}
                           for a in acts}
    deep = [r for r in runs if r["params"]["depth"] == top]
    per = {a: [r for r in deep if r["params"]["act"] == a] for a in acts}
    for when in ("mean", "init", "final"):
        L = {a: {r["params"]["seed"]: run_measure(r, when) for r in per[a]} for a in acts}
        sfx = "" if when == "mean" else f"_{when}"
        ev[f"log_ratio{sfx}"] = {a: mean_ci(list(L[a].values())) for a in acts}
        ev[f"gap{sfx}"] = family_gap(L)
        ev[f"centering{sfx}"] = _paired(L, "sigmoid_centered", "sigmoid")
    ev["status"] = status(ev["gap"])
    # Reported only: the same ratio for the gradient w.r.t. the pre-activations at step K (the
    # back-propagated signal of Glorot & Bengio 2010, fig. 7), free of the weight gradient's
    # other factor, the layer's input, which can collapse in the forward pass.
    L = {a: {r["params"]["seed"]: run_measure(r, "final", "pre_act") for r in per[a]} for a in acts}
    ev["pre_act_log_ratio_final"] = {a: mean_ci(list(L[a].values())) for a in acts}
    ev["pre_act_gap_final"] = family_gap(L)
    ev["pre_act_centering_final"] = _paired(L, "sigmoid_centered", "sigmoid")
    ev["log_ratio_by_depth"] = {str(d): {a: mean_ci(list(v.values())) for a, v in by_depth[d].items()}
                                for d in depths}
    def over_seeds(fn) -> dict:
        return {a: mean_ci([fn(r) for r in per[a]]) for a in acts}

    def last(key):  # the last recorded row of a per-layer list of rows, or None
        return lambda r: r[key][-1] if r.get(key) else None

    ev["saturated_final"] = over_seeds(lambda r: finite_mean(last("saturated")(r)))
    # The level, not the slope: mean over layers of log10 ||∇W|| at step K (reported only).
    ev["log10_grad_final"] = over_seeds(lambda r: finite_mean(
        [math.log10(max(v, NORM_FLOOR)) for v in map(num, last("w_grad")(r) or []) if math.isfinite(v)]))
    ev["val_loss"] = over_seeds(lambda r: num(r.get("val_loss")))
    if any("branch_ratio" in r for r in deep):
        ev["branch_ratio"] = over_seeds(
            lambda r: finite_mean([finite_mean(row) for row in r.get("branch_ratio") or []]))
    ev["not_completed"] = {a: sum(r.get("outcome") != "completed" for r in per[a]) for a in acts}
    ev["floored_norms"] = {a: sum(1 for r in deep if r["params"]["act"] == a
                                  for row in r.get("w_grad") or [] for v in row
                                  if v is not None and 0 <= v < NORM_FLOOR) for a in acts}
    return ev


def status(gap: dict, margin: float = MARGIN) -> str:
    """'holds' if the gap's CI lies above `margin` decades, 'fails' if below, else 'unclear'."""
    lo, hi = num(gap.get("lo")), num(gap.get("hi"))
    if gap.get("n", 0) < 2 or math.isnan(lo) or math.isnan(hi):
        return "unclear"
    if lo > margin:
        return "holds"
    if hi < margin:
        return "fails"
    return "unclear"


# -- the verdict's words ----------------------------------------------------------------------

def fmt(ci: dict) -> str:
    m, lo, hi = (num(ci.get(k, ci.get("mean"))) for k in ("diff", "lo", "hi"))
    return f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def caveats_for(ev: dict, preset: dict) -> list[str]:
    """The verdict's caveat lines, written from the evidence (stored numbers only)."""
    out = [
        "Inits: plain MLP uses Xavier (Glorot & Bengio 2010) for sigmoid, sigmoid_centered, tanh "
        "and Kaiming (He et al. 2015) for relu, gelu, silu; Xavier has no gain for sigmoid's "
        "slope 1/4, so part of the MLP's decay is the init's (the full preset also runs the "
        "other init). The GPT uses GPT-2's N(0, 0.02) init for every activation.",
        f"Budget: K = {preset['mlp']['steps']} (MLP) and {preset['gpt']['steps']} (GPT) steps, "
        f"{len(preset['seeds'])} seeds; a longer run could change the after-K numbers.",
    ]
    for m in MODELS:
        bad = {a: n for a, n in ev[m]["not_completed"].items() if n}
        if bad:
            out.append(f"{m}: runs that did not complete (left out): {bad}")
        floored = {a: n for a, n in ev[m]["floored_norms"].items() if n}
        if floored:
            out.append(f"{m}: weight-gradient norms below {NORM_FLOOR:g} (counted as {NORM_FLOOR:g}) "
                       f"at the largest depth: {floored}. A layer whose input is exactly 0 has a zero "
                       "weight gradient whatever flows back; sigmoid_centered computed as σ(x) - ½ in "
                       "float32 rounds to exactly 0 for |x| below about 1e-8. The pre-activation ratio "
                       "(pre_act_* in the evidence) does not depend on the input.")
    for m in MODELS:
        c, pc = ev[m]["centering"], ev[m]["pre_act_centering_final"]
        out.append(f"{m}: centring alone (sigmoid_centered - sigmoid, decades): weight gradients "
                   f"{fmt(c)}, pre-activation gradients at step K {fmt(pc)}; a CI around 0 means "
                   "the decay is the slope's, not the mean's.")
    own = {m: ev[m]["log_ratio"].get("sigmoid", {}) for m in MODELS}
    out.append(f"Sigmoid's own log10 first/last ratio at the largest depth (0 = no decay at all): "
               f"MLP {fmt(own['mlp'])}, GPT {fmt(own['gpt'])}; the rule compares it with the "
               "ReLU family's, whose ratio need not be 0 either.")
    for m in MODELS:
        level = {a: num(c.get("mean")) for a, c in ev[m]["log10_grad_final"].items()}
        fam = [level[a] for a in ("relu", "gelu", "silu") if a in level]
        if "sigmoid" in level and fam:
            out.append(f"{m}: at step K the mean over layers of log10 ||∇W||, sigmoid minus the ReLU "
                       f"family, is {level['sigmoid'] - float(np.mean(fam)):+.2f} decades: an overall "
                       "level, where the first/last ratio measures only the slope across depth.")
    sat = {m: ev[m]["saturated_final"].get("sigmoid", {}).get("mean") for m in MODELS}
    out.append(f"Saturated = |f'(x)| < 0.01, so ReLU's zero side counts. Sigmoid's saturated "
               f"fraction at step K, mean over layers: MLP {num(sat['mlp']):.3f}, GPT "
               f"{num(sat['gpt']):.3f}: where it is near 0, any decay comes from σ' ≤ 1/4 at "
               "every unit, not from saturation.")
    return out
