"""Study C1: do sigmoid's gradients vanish in deep stacks?

The article's argument: σ'(x) = σ(x)(1 - σ(x)) ≤ 1/4, and the backward pass multiplies one
such factor per layer, so the gradient reaching the early layers of a deep stack shrinks
geometrically. We measure it where the textbook says it happens and where LLMs actually live:

    plain MLP   actlab.nn.mlp.DeepMLP, no residual and no norm, next-character prediction on the
                bundled corpus, plain SGD (what Glorot & Bengio 2010 used). Inits: Xavier
                (Glorot & Bengio 2010) for sigmoid, sigmoid_centered and tanh, as in their
                experiments; Kaiming (He et al. 2015) for relu, gelu and silu, the init derived
                for ReLU-like units. Each activation gets the init its literature pairs it with,
                so ReLU is not handicapped by an init made for tanh nor sigmoid by one made for
                ReLU. The full preset also runs the other init for every activation.
    pre-LN GPT  actlab.nn.gpt.GPT through actlab.training.loop (AdamW, warmup + cosine, clipping at 1),
                GPT-2's init (N(0, 0.02), c_proj scaled by 1/sqrt(2 L)) for every activation.

The measure, per run: the L2 norm of the gradient (before clipping) of the weights feeding
each hidden activation (MLP: fc[i]; GPT: c_fc of block i), recorded every `every` steps from
init (step 0) to step K. The first-to-last ratio ||∇W_first|| / ||∇W_last|| (first = nearest
the input) is 1 when gradients keep their size down the stack and tiny when they vanish; we
use its log10 averaged over the recorded steps. Also stored: gradient norms w.r.t. each
pre-activation, the fraction of saturated units (|f'(x)| < 0.01), the GPT's branch / residual
gradient ratio, activation histograms and losses.

sigmoid_centered (σ - ½) has exactly sigmoid's slope, so the same decay is expected from
saturation alone; comparing the two separates the slope from the centring (that is C2's topic).

Figures live in `figures.py`; both read only what `run_grid` returned.
"""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np

from actlab.article.claims import CLAIMS
from actlab.nn.mlp import default_init
from actlab.analysis.stats import mean_ci, paired_test
from actlab.studies.base import (
    CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Verdict, check_preset, register_study,
)
from actlab.engine.sweep import run_grid

STUDY = "vanishing"
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

# Written before any run of this study and never adjusted after (see `decide`).
RULE = (
    "At the largest depth, per run: L = log10(||∇W_first|| / ||∇W_last||), the gradient norm of "
    "the weights feeding the first hidden activation over that of the last, averaged over the "
    "steps recorded from init to step K. gap = mean of L over relu, gelu, silu minus L of "
    "sigmoid, paired by seed, 95% t-interval. In a model the claim HOLDS if the interval's lower "
    f"end exceeds {MARGIN:g} (sigmoid's gradient shrinks at least 10x more over the stack), "
    f"FAILS if its upper end is below {MARGIN:g}, and is UNCLEAR otherwise or with fewer than 2 "
    "paired seeds. SUPPORTED: holds in both the plain MLP and the pre-LN GPT. SUPPORTED WITH "
    "CAVEAT: holds in one and fails in the other. NOT SUPPORTED: fails in both. INCONCLUSIVE: "
    "otherwise. sigmoid_centered minus sigmoid (same slope, centred) is reported beside it and "
    "does not enter the verdict."
)

# Sizes per preset. quick: about two minutes on two busy CPU cores (run_grid runs one
# single-threaded job per core). full: GPU-sized (the MLP stays on the CPU).
# steps = K: K updates, gradients recorded at steps 0, every, ..., K (K + 1 steps run).
PRESETS = {
    "smoke": dict(
        seeds=(0, 1), acts=("sigmoid", "relu"),
        mlp=dict(widths=(16,), depths=(2, 6), inits="paper", steps=4, every=2, batch_size=16,
                 lr=0.1),
        gpt=dict(depths=(2, 6), n_embd=16, n_head=2, block_size=8, batch_size=4, steps=4,
                 every=2, lr=3e-3, warmup_steps=1, eval_batches=1),
    ),
    "quick": dict(
        seeds=(0, 1, 2), acts=ACTS,
        mlp=dict(widths=(128,), depths=(4, 16, 32), inits="paper", steps=60, every=15,
                 batch_size=64, lr=0.1),
        gpt=dict(depths=(4, 16, 32), n_embd=32, n_head=2, block_size=32, batch_size=8, steps=60,
                 every=15, lr=3e-3, warmup_steps=6, eval_batches=4),
    ),
    "full": dict(
        seeds=(0, 1, 2, 3, 4), acts=ACTS,
        mlp=dict(widths=(128, 512), depths=(4, 8, 16, 32, 64), inits="both", steps=1000,
                 every=100, batch_size=128, lr=0.1),
        gpt=dict(depths=(4, 8, 16, 32, 64), n_embd=64, n_head=4, block_size=64, batch_size=32,
                 steps=1000, every=100, lr=3e-3, warmup_steps=50, eval_batches=16),
    ),
}


# -- one run (module level: run_grid may hand it to worker processes) -----------------------

class _Probes:
    """Gradient-norm and activation probes as one trainer callback. They bind to the model in
    `before_train` (actlab.training.loop calls it before the first forward pass, so step 0 is seen),
    or else at the first callback."""

    def __init__(self, layers_of, every: int):
        self.layers_of, self.every = layers_of, every
        self.stack = contextlib.ExitStack()
        self.grad = self.acts = None

    def bind(self, model) -> None:
        from actlab.probes import ActivationProbe, GradNormProbe

        layers = self.layers_of(model)
        self.names = [layer.name for layer in layers]
        self.weight = next(iter(layers[0].weights))  # the Linear feeding the activation
        self.grad = self.stack.enter_context(GradNormProbe(layers, every=self.every))
        self.acts = self.stack.enter_context(ActivationProbe(layers, every=self.every))

    def before_train(self, model) -> None:
        self.bind(model)

    def after_backward(self, step: int, model) -> None:
        if self.grad is None:
            self.bind(model)
        self.grad.after_backward(step, model)
        self.acts.after_backward(step, model)

    def after_step(self, step: int, model) -> None:
        self.grad.after_step(step, model)
        self.acts.after_step(step, model)

    def result(self) -> dict:
        g, a = self.grad.records, self.acts.records
        pooled = self.acts.summary()["layers"]
        first, last = self.names[0], self.names[-1]
        out = {
            "layers": self.names,
            "grad_steps": [r["step"] for r in g],
            "w_grad": [[r[n][self.weight] for n in self.names] for r in g],
            "pre_act": [[r[n]["pre_act"] for n in self.names] for r in g],
            "sat_steps": [r["step"] for r in a],
            "saturated": [[r[n]["saturated"] for n in self.names if n in r] for r in a],
            "hist_edges": self.acts.edges,
            "hist": {"first": pooled.get(first, {}).get("hist"),
                     "last": pooled.get(last, {}).get("hist")},
        }
        if g and "branch_ratio" in g[0][first]:
            out["branch_ratio"] = [[r[n]["branch_ratio"] for n in self.names] for r in g]
        return out


@functools.lru_cache(maxsize=2)
def _gpt_data(block_size: int):
    from actlab.data import prepare

    return prepare(None, "char", block_size)


def _run_mlp(p: dict, probes: _Probes) -> dict:
    from actlab.data.chartask import char_task
    from actlab.nn.mlp import DeepMLP
    from actlab.training.mlp_loop import train_mlp

    task = char_task()
    model = DeepMLP(task.n_in, p["width"], p["depth"], task.vocab_size, p["act"], init=p["init"],
                    seed=p["seed"])
    probes.bind(model)
    out = train_mlp(model, task, p["steps"] + 1, optimizer="sgd", lr=p["lr"],
                    batch_size=p["batch_size"], seed=p["seed"], callbacks=(probes,))
    return {k: out[k] for k in ("outcome", "train_loss", "val_loss", "history")}


def _run_gpt(p: dict, probes: _Probes) -> dict:
    from actlab.config import ModelConfig, TrainConfig
    from actlab.training.loop import train

    model = ModelConfig(n_layer=p["depth"], n_head=p["n_head"], n_embd=p["n_embd"],
                        block_size=p["block_size"], act=p["act"])
    cfg = TrainConfig(model=model, seed=p["seed"], steps=p["steps"] + 1, batch_size=p["batch_size"],
                      lr=p["lr"], warmup_steps=p["warmup_steps"], eval_every=p["steps"] + 1,
                      eval_batches=p["eval_batches"])
    run = train(cfg, data=_gpt_data(p["block_size"]), callbacks=(probes,), progress=False)
    keep = ("step", "train_loss", "val_loss", "grad_norm")
    history = [{k: r[k] for k in keep if k in r} for r in run.history]
    return {"outcome": run.outcome, "train_loss": run.train_loss, "val_loss": run.val_loss,
            "history": history}


def run_one(params: dict) -> dict:
    """Train one (model, activation, depth, seed) with the probes on; JSON-able numbers."""
    from actlab.probes import gpt_layers, mlp_layers

    probes = _Probes(mlp_layers if params["model"] == "mlp" else gpt_layers, params["every"])
    with probes.stack:
        out = (_run_mlp if params["model"] == "mlp" else _run_gpt)(params, probes)
        return {**out, **probes.result()}


# -- the grid ------------------------------------------------------------------------------

def jobs_for(preset: dict) -> list[dict]:
    m, g, seeds = preset["mlp"], preset["gpt"], preset["seeds"]
    jobs = []
    for act in preset["acts"]:
        inits = [default_init(act)] if m["inits"] == "paper" else ["xavier", "kaiming"]
        jobs += [{"model": "mlp", "act": act, "depth": depth, "width": width, "init": init,
                  "seed": seed, **{k: m[k] for k in ("steps", "every", "batch_size", "lr")}}
                 for width in m["widths"] for init in inits for depth in m["depths"] for seed in seeds]
        gpt = {k: v for k, v in g.items() if k != "depths"}
        jobs += [{"model": "gpt", "act": act, "depth": depth, "seed": seed, **gpt}
                 for depth in g["depths"] for seed in seeds]
    return jobs


def variant(params: dict) -> str:
    """Which MLP setting a run belongs to: its width and whether it has its paper init."""
    paper = params["init"] == default_init(params["act"])
    return f"width {params['width']}, {'paper' if paper else 'other'} init"


def reference(results: list[dict], model: str, preset: dict) -> list[dict]:
    """The runs the rule reads: this model; for the MLP the first width and paper inits."""
    ref = f"width {preset['mlp']['widths'][0]}, paper init"
    return [r for r in results if r["params"]["model"] == model
            and (model == "gpt" or variant(r["params"]) == ref)]


# -- evidence and the decision ---------------------------------------------------------------

def _num(x) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else math.nan


def log_ratios(run: dict, key: str = "w_grad") -> list[float]:
    """log10(first / last) gradient norm at each recorded step (NaN where missing); key
    "w_grad" (weights feeding the activation, the rule's measure) or "pre_act"."""
    out = []
    for row in run.get(key) or []:
        first, last = _num(row[0]), _num(row[-1])
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


def _layer_mean(row) -> float:
    vals = [_num(v) for v in row or []]
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


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

    ev["saturated_final"] = over_seeds(lambda r: _layer_mean(last("saturated")(r)))
    # The level, not the slope: mean over layers of log10 ||∇W|| at step K (reported only).
    ev["log10_grad_final"] = over_seeds(lambda r: _layer_mean(
        [math.log10(max(v, NORM_FLOOR)) for v in map(_num, last("w_grad")(r) or []) if math.isfinite(v)]))
    ev["val_loss"] = over_seeds(lambda r: _num(r.get("val_loss")))
    if any("branch_ratio" in r for r in deep):
        ev["branch_ratio"] = over_seeds(
            lambda r: _layer_mean([_layer_mean(row) for row in r.get("branch_ratio") or []]))
    ev["not_completed"] = {a: sum(r.get("outcome") != "completed" for r in per[a]) for a in acts}
    ev["floored_norms"] = {a: sum(1 for r in deep if r["params"]["act"] == a
                                  for row in r.get("w_grad") or [] for v in row
                                  if v is not None and 0 <= v < NORM_FLOOR) for a in acts}
    return ev


def status(gap: dict, margin: float = MARGIN) -> str:
    """'holds' if the gap's CI lies above `margin` decades, 'fails' if below, else 'unclear'."""
    lo, hi = _num(gap.get("lo")), _num(gap.get("hi"))
    if gap.get("n", 0) < 2 or math.isnan(lo) or math.isnan(hi):
        return "unclear"
    if lo > margin:
        return "holds"
    if hi < margin:
        return "fails"
    return "unclear"


def decide(gaps: dict[str, dict]) -> str:
    """Apply RULE to {"mlp": gap, "gpt": gap} (each a paired_test dict: diff, lo, hi, n).

    Why this shape: the claim is that sigmoid's slope (≤ 1/4) makes gradients vanish in deep
    stacks. If that were only the depth itself, every activation would decay alike; the claim is
    about sigmoid, so we compare its decay with the ReLU family's at the largest depth, in
    decades, paired by seed. A textbook plain stack and the residual pre-LN transformer LLMs use
    are two settings the article does not separate: true in both is SUPPORTED, true in one only
    is the caveat (the expected split: identity paths carry the gradient past the branch, He et
    al. 2016), a CI below one decade in both contradicts it, and anything else the budget could
    not separate.
    """
    s = {m: status(gaps.get(m, {})) for m in MODELS}
    if "unclear" in s.values():
        return INCONCLUSIVE
    if all(v == "holds" for v in s.values()):
        return SUPPORTED
    if all(v == "fails" for v in s.values()):
        return NOT_SUPPORTED
    return CAVEAT


@register_study(STUDY, "C1")
def run(preset: str = "quick", out_dir: str = "results/vanishing", progress: bool = True) -> Verdict:
    """C1: per-layer gradient norms vs depth, plain deep MLP and pre-LN GPT, per activation."""
    from actlab.studies.vanishing.figures import caveats_for, draw, fmt

    check_preset(preset)
    cfg = PRESETS[preset]
    results = run_grid(STUDY, jobs_for(cfg), run_one, out_dir, progress=progress)
    ev = {m: model_evidence(reference(results, m, cfg)) for m in MODELS}
    ev["margin_decades"] = MARGIN
    # Other MLP widths and inits (full preset): reported beside, never read by the rule.
    mlp = [r for r in results if r["params"]["model"] == "mlp"]
    ev["mlp_variants"] = {
        v: {k: x for k, x in model_evidence([r for r in mlp if variant(r["params"]) == v]).items()
            if k in ("log_ratio", "gap", "pre_act_gap_final", "status")}
        for v in sorted({variant(r["params"]) for r in mlp})}
    verdict = decide({m: ev[m]["gap"] for m in MODELS})
    figures = draw(results, cfg, out_dir)
    summary = (f"depth {ev['mlp']['depth']}/{ev['gpt']['depth']}: ReLU-family minus sigmoid "
               f"log10 first/last grad ratio, MLP {fmt(ev['mlp']['gap'])} ({ev['mlp']['status']}), "
               f"GPT {fmt(ev['gpt']['gap'])} ({ev['gpt']['status']}) decades")
    return Verdict(claim="C1", quote=CLAIMS["C1"].quote, rule=RULE, verdict=verdict, evidence=ev,
                   figures=figures, preset=preset, study=STUDY, summary=summary,
                   caveats=caveats_for(ev, cfg))
