"""Study C5: does sigmoid survive only as a gate, and does it help there?

The article says sigmoid appears "rarely in hidden layers", only "in specialized spots like
binary gates or older RNNs/LSTMs". Current models put sigmoid in several places, so the
study trains small GPTs (same seeds, same data order, same shared learning-rate policy) with
sigmoid in four roles and compares each with what it replaces:

    FFN gates         GLU, sigma(xW) * xV (Dauphin et al. 2017; Shazeer 2020) against the
                      ungated GELU FFN (GPT-2), beside ReGLU, GEGLU and SwiGLU, and the plain
                      sigmoid FFN, sigma(xW) V, the hidden-layer use the article warns against.
                      Gated widths are parameter-matched by the model (2/3 of the hidden width).
    attention         sigma(QK^T/sqrt(d) - log n) (Ramapuram et al. 2024, Apple) and the same
                      without the -log n bias, against softmax attention.
    output gate       softmax attention times sigma(x W_g) before c_proj (Qiu et al. 2025,
                      "Gated Attention for LLMs", used by Qwen3-Next) against softmax attention.
                      The gate adds n_embd^2 + n_embd parameters per layer, so the reference
                      in the rule is a softmax model whose MLP is widened from 4x to 4.5x
                      n_embd, which adds n_embd^2 + n_embd/2 per layer (param-matched); the
                      unmatched comparison is reported beside it.
    MoE router        a top-k mixture-of-experts FFN (nn/moe.py: 4 GELU experts of a quarter of
                      the dense width, top-2) routed by sigmoid scores renormalised over the
                      chosen experts (DeepSeek-V3) against the same MoE routed by softmax
                      (Mixtral). Same experts, same parameters, same choice of experts for the
                      same logits: only the gate weights and their gradients differ. This role
                      is reported beside the verdict, not read by it (see RULE and `decide`).
                      Each run stores the expert load (fraction of assignments per expert) on a
                      validation batch at initialisation and at the end: there is no
                      load-balancing loss, so a collapsed router shows there.

Learning rates: a grid of one point means one rate shared by every variant, fixed before the
runs (quick: 1e-2, the better of 3e-3 and 1e-2 for the GELU/softmax baseline in a one-seed
timing probe); a longer grid (full) gives each variant the rate with the lowest final loss on
a tuning seed that is never an evaluation seed, so selection noise stays out of the tests.

For sigmoid attention each run stores the mean attention-row sum per query position at
initialisation and at the end (a softmax row sums to 1 by construction), computed with the
model's own `sigmoid_attention` applied to a vector of ones; for the output gate it stores
the mean gate value. One run is `runs.train_variant`; figures live in `figures.py`, the
verdict's words in `words.py`, and all of them read only what run_grid stored (and the corpus
baselines).

The regime rule (analysis/regime.py) applies to the study as a whole: its reference is the
plain GELU variant (GELU FFN, softmax attention, softmax head), which every family already
compares against, and unless its median final loss is below the corpus's trigram baseline the
models have not learned more than a table of counts and no role is judged.
"""

from __future__ import annotations

import time

import numpy as np

from actlab.analysis import regime
from actlab.analysis.numbers import num
from actlab.article.claims import CLAIMS
from actlab.article.verdicts import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from actlab.studies import common
from actlab.studies.base import Verdict, check_preset, register_study
from actlab.studies.gates.evidence import compare_variants, variant_evidence
from actlab.studies.gates.runs import train_variant
from actlab.studies.gates.words import caveats, summary_line
from actlab.engine.sweep import run_grid

STUDY = "gates"

# Tolerance on the final validation loss, in nats per character (about 2% in perplexity).
# Shazeer 2020 (Table 1) measured FFN variants spread over 0.055 nats (GEGLU's gain over GELU
# alone is 0.041) with a seed std of about 0.005: a component within 0.02 nats of what it
# replaces is usable by any practical standard, and a gap larger than that would be a reason
# to drop it.
TOL = 0.02

# variant -> family, label, FFN activation, attention kind, MLP width ratio.
VARIANTS = {
    "gelu": ("ffn", "GELU (ungated)", "gelu", "softmax", 4.0),
    "sigmoid": ("ffn", "sigmoid (ungated)", "sigmoid", "softmax", 4.0),
    "glu": ("ffn", "GLU (σ gate)", "glu", "softmax", 4.0),
    "reglu": ("ffn", "ReGLU", "reglu", "softmax", 4.0),
    "geglu": ("ffn", "GEGLU", "geglu", "softmax", 4.0),
    "swiglu": ("ffn", "SwiGLU (x·σ(x) gate)", "swiglu", "softmax", 4.0),
    "attn_sigmoid": ("attention", "sigmoid, bias −log n", "gelu", "sigmoid", 4.0),
    "attn_sigmoid_nobias": ("attention", "sigmoid, no bias", "gelu", "sigmoid_nobias", 4.0),
    "gelu_wide": ("output_gate", "softmax, MLP 4.5x (param-matched)", "gelu", "softmax", 4.5),
    "out_gate": ("output_gate", "softmax + σ output gate", "gelu", "softmax_gated", 4.0),
    "moe_softmax": ("moe", "MoE, softmax router (Mixtral)", "gelu", "softmax", 4.0),
    "moe_sigmoid": ("moe", "MoE, σ router (DeepSeek-V3)", "gelu", "softmax", 4.0),
}
# The MoE variants' router, and the MoE shape both share (only their jobs carry these keys, so
# the other variants' job identities, and their stored runs, are what they were before).
MOE_ROUTERS = {"moe_softmax": "softmax", "moe_sigmoid": "sigmoid"}
MOE_SHAPE = dict(n_experts=4, top_k=2)
FAMILIES = {
    "ffn": ("FFN gates", ("gelu", "sigmoid", "glu", "reglu", "geglu", "swiglu")),
    "attention": ("attention normaliser", ("gelu", "attn_sigmoid", "attn_sigmoid_nobias")),
    "output_gate": ("attention output gate", ("gelu", "gelu_wide", "out_gate")),
    "moe": ("MoE router", ("gelu", "moe_softmax", "moe_sigmoid")),
}

# name -> (variant, reference, role). The four roles the rule reads come first.
GATE_ROLES = ("glu_vs_gelu", "out_gate_vs_matched")
OTHER_ROLES = ("sigmoid_ffn_vs_gelu", "sigmoid_attn_vs_softmax")
ROUTER_ROLE = "moe_router"  # classified like a gate role, reported beside the verdict
COMPARISONS = {
    "glu_vs_gelu": ("glu", "gelu", "gate"),
    "out_gate_vs_matched": ("out_gate", "gelu_wide", "gate"),
    "sigmoid_ffn_vs_gelu": ("sigmoid", "gelu", "non-gate"),
    "sigmoid_attn_vs_softmax": ("attn_sigmoid", "gelu", "non-gate"),
    # reported, not read by the rule
    "out_gate_vs_softmax": ("out_gate", "gelu", "gate (not param-matched)"),
    "sigmoid_attn_nobias_vs_softmax": ("attn_sigmoid_nobias", "gelu", "non-gate (ablation)"),
    "glu_vs_swiglu": ("glu", "swiglu", "gate vs gate"),
    "glu_vs_geglu": ("glu", "geglu", "gate vs gate"),
    "glu_vs_reglu": ("glu", "reglu", "gate vs gate"),
    "swiglu_vs_gelu": ("swiglu", "gelu", "gate"),
    "wide_vs_gelu": ("gelu_wide", "gelu", "control"),
    ROUTER_ROLE: ("moe_sigmoid", "moe_softmax", "router (beside the verdict)"),
    "moe_vs_gelu": ("moe_softmax", "gelu", "control (MoE vs dense FFN)"),
}
WORKS, FAILS, UNCLEAR = "works", "fails", "unclear"

# Written before any run of this study and never adjusted after (see `decide`).
RULE = (
    "Metric: final validation loss (nats/char). Each comparison is paired by seed (same init "
    "seed and data order): d = variant - reference, 95% t-interval [lo, hi], tolerance "
    f"TOL = {TOL} nats. A role WORKS if no seed of the variant diverged where the reference "
    "completed and hi < TOL (within TOL or better); it FAILS if such a divergence happened, "
    "or lo > 0 and hi >= TOL (significantly worse and not shown within TOL); else UNCLEAR. "
    "Gate roles: GLU (σ gate) vs the ungated GELU FFN; softmax attention with a σ output gate "
    "vs the param-matched softmax model (MLP 4.5x). Non-gate roles: the plain sigmoid FFN vs "
    "GELU; sigmoid attention with bias -log n vs softmax. NOT SUPPORTED if a gate role FAILS. "
    "SUPPORTED if both gate roles WORK and both non-gate roles FAIL. SUPPORTED WITH CAVEAT if "
    "both gate roles WORK and at least one non-gate role WORKS ('only' is too strong). "
    "INCONCLUSIVE otherwise. 'Helps' (hi < 0) is reported for each gate; it does not change "
    "the verdict. MoE router role, reported beside the verdict and never read by it: the "
    "sigmoid router (DeepSeek-V3) vs the softmax router (Mixtral) in the same top-2 of 4 MoE "
    "FFN, paired by seed, WORKS / FAILS / UNCLEAR by the same TOL test; its status is quoted "
    "only in regime. " + regime.RULE + " Here one regime holds for the whole study: the "
    "reference is the plain GELU variant (the reference of the FFN, attention and unmatched "
    "output-gate comparisons), and out of regime the verdict is INCONCLUSIVE whatever the roles' "
    "statuses."
)

REF = "gelu"  # VARIANTS["gelu"]: GELU FFN, softmax attention, 4x MLP; the regime reference

# Sizes per preset. quick: sized to reach the regime on the bundled corpus (the calibration in
# studies/convergence/study.py, from benchmarks/regime_calibration.py: GELU 1 x 48 at lr 1e-2,
# batch 32 x 64 tokens, 1.966 nats after 900 steps against the trigram baseline's 2.082, about
# 22 CPU-seconds a run); 40 runs, about 15 CPU-minutes, 7-8 minutes of two cores (one
# single-threaded run per core; the sum of the runs' CPU seconds is stored so that can be
# checked on a busy machine).
PRESETS = {
    "smoke": dict(
        seeds=(0, 1), lrs=(1e-2,),
        size=dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, steps=12,
                  eval_every=6, eval_batches=2, warmup_steps=2),
    ),
    "quick": dict(
        seeds=(0, 1, 2, 3), lrs=(1e-2,),
        size=dict(n_layer=1, n_head=2, n_embd=48, block_size=64, batch_size=32, steps=900,
                  eval_every=150, eval_batches=8, warmup_steps=45),
    ),
    # standard: the C3 standard size (1 x 64, 1,500 steps), 5 seeds, each variant's rate tuned
    # on the tuning seed from two rates; about 70 runs of about 47 CPU-seconds.
    "standard": dict(
        seeds=(0, 1, 2, 3, 4), lrs=(3e-3, 1e-2),
        size=dict(n_layer=1, n_head=2, n_embd=64, block_size=64, batch_size=32, steps=1500,
                  eval_every=250, eval_batches=16, warmup_steps=75),
    ),
    "full": dict(
        seeds=(0, 1, 2, 3, 4), lrs=(1.5e-3, 3e-3, 6e-3),
        size=dict(n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=32, steps=2000,
                  eval_every=200, eval_batches=16, warmup_steps=100),
    ),
}


# -- the grid ------------------------------------------------------------------------------

def _job(preset: dict, variant: str, lr: float, seed: int, stage: str,
         corpus: dict | None = None) -> dict:
    _, _, act, attention, ratio = VARIANTS[variant]
    moe = {"ffn": "moe", "router": MOE_ROUTERS[variant], **MOE_SHAPE} if variant in MOE_ROUTERS else {}
    return {"stage": stage, "variant": variant, "act": act, "attention": attention,
            "mlp_ratio": ratio, **moe, "lr": lr, "seed": seed, "size": preset["size"],
            **(corpus or {})}


def _variant(params: dict) -> str:
    return params["variant"]


def tune_jobs(preset: dict, grids: dict, corpus: dict | None = None) -> list[dict]:
    """The tuning runs of `grids` ({variant: rates})."""
    return [_job(preset, v, lr, common.TUNE_SEED, "tune", corpus) for v in VARIANTS for lr in grids[v]]


def pick_lrs(preset: dict, tuned: list[dict]) -> dict:
    """{variant: lr}: the lowest final loss on the tuning seed (diverged or failed = +inf;
    ties go to the smaller rate); a one-point grid is every variant's rate."""
    best = common.pick_lrs(tuned, _variant, {v: preset["lrs"] for v in VARIANTS})
    return {v: best[v]["lr"] for v in VARIANTS}


def tune(preset: dict, out_dir, progress: bool, corpus: dict | None = None) -> dict:
    """{variant: lr}, a best rate on the grid's edge growing that variant's grid (common.grow_grids)."""
    if len(preset["lrs"]) < 2:
        return pick_lrs(preset, [])

    def run_and_pick(grids: dict) -> dict:
        tuned = run_grid(STUDY, tune_jobs(preset, grids, corpus), train_variant, out_dir,
                         progress=progress)
        return common.pick_lrs(tuned, _variant, grids)

    chosen = common.grow_grids({v: preset["lrs"] for v in VARIANTS}, run_and_pick)
    return {v: c["lr"] for v, c in chosen.items()}


def eval_jobs(preset: dict, lrs: dict, corpus: dict | None = None) -> list[dict]:
    return [_job(preset, v, lrs[v], seed, "eval", corpus) for v in VARIANTS for seed in preset["seeds"]]


# -- evidence and the decision ---------------------------------------------------------------

def by_variant(results: list[dict]) -> dict[str, dict[int, dict]]:
    """{variant: {seed: stored result}} of the evaluation runs."""
    runs: dict[str, dict[int, dict]] = {v: {} for v in VARIANTS}
    for r in results:
        if r["params"]["stage"] == "eval":
            runs[r["params"]["variant"]][r["params"]["seed"]] = r
    return runs


def classify(comp: dict, tol: float = TOL) -> str:
    """WORKS / FAILS / UNCLEAR for one comparison, as RULE says (NaN bounds: UNCLEAR)."""
    if comp.get("diverged_only", 0) > 0:
        return FAILS
    lo, hi = num(comp.get("lo")), num(comp.get("hi"))
    if hi < tol:
        return WORKS
    if lo > 0:
        return FAILS
    return UNCLEAR


def decide(statuses: dict[str, str], reg: dict | None = None) -> str:
    """Apply RULE to {role: works|fails|unclear} for GATE_ROLES and OTHER_ROLES and the study's
    regime (analysis.regime.regime; None judges the statuses alone).

    Why this shape: the article's sentence has two parts. "Survives in gates" is a claim of
    usability, so a gate role is judged by non-inferiority (within TOL of, or better than,
    what it replaces), not by having to win; a gate that is materially and significantly
    worse refutes it outright. "Only", and "rarely in hidden layers", predict that sigmoid
    fails elsewhere: SUPPORTED needs both non-gate uses to fail, and one non-gate use that
    works makes the claim true of gates but too strong as "only" (the caveat). The non-gate
    uses are the published ones: the plain hidden layer the article names, and sigmoid
    attention with the -log n bias (Ramapuram et al. 2024); attention without the bias is the
    ablation that shows why the bias is there and is reported, not judged, since nobody
    proposes it. The output gate is judged against a param-matched model so that a gain from
    the gate's extra n_embd^2 parameters is not credited to gating. GLU against the other
    gates is reported but not judged: SwiGLU and GEGLU gate too (SwiGLU's gate is x*sigma(x)),
    and the claim is about whether sigmoid is usable, not whether it is the best gate. A
    divergence is an outcome of the role, so it counts as failing. Anything else (an interval
    too wide to place on either side of TOL) is INCONCLUSIVE, and so is every outcome of
    models that have not beaten a trigram table: they say nothing about transformers.

    The MoE router role (ROUTER_ROLE) is classified by the same test and reported beside the
    verdict, never read here: it compares sigmoid with softmax as the router's score, not a
    sigmoid gate with no gate, so it does not bear on "survives only as a gate"; the article's
    sentence names no router, and a tiny one-layer MoE without a balancing loss can collapse
    onto one expert for reasons that have nothing to do with the score function. It was set
    beside the verdict when the role was added, before any of its runs.
    """
    if reg is not None and not reg["in_regime"]:
        return INCONCLUSIVE
    gates = [statuses[k] for k in GATE_ROLES]
    others = [statuses[k] for k in OTHER_ROLES]
    if FAILS in gates:
        return NOT_SUPPORTED
    if all(s == WORKS for s in gates):
        if all(s == FAILS for s in others):
            return SUPPORTED
        if WORKS in others:
            return CAVEAT
    return INCONCLUSIVE


def apply_rule(comparisons: dict[str, dict], tol: float = TOL,
               reg: dict | None = None) -> tuple[str, dict[str, str]]:
    """(verdict, {role: status}) from comparison dicts with lo, hi and diverged_only, and the
    regime (None: the comparisons alone)."""
    statuses = {k: classify(comparisons[k], tol) for k in (*GATE_ROLES, *OTHER_ROLES)}
    return decide(statuses, reg), statuses


def evidence_from(results: list[dict], preset: dict, lrs: dict, baselines: dict | None,
                  hint: str = regime.HINT) -> dict:
    """Everything the verdict reads, from stored results and the corpus's n-gram baselines:
    the comparisons and their statuses, the regime and each variant against each baseline."""
    runs = by_variant(results)
    finals = {v: [r.get("final_loss") for r in runs[v].values()] for v in VARIANTS}
    reg = regime.regime(finals[REF], baselines, hint)
    comparisons = {}
    for name, (variant, reference, role) in COMPARISONS.items():
        comp = {**compare_variants(runs, variant, reference), "role": role,
                "in_rule": name in GATE_ROLES + OTHER_ROLES}
        comp["status"] = classify(comp)
        comp["helps"] = num(comp["hi"]) < 0
        comparisons[name] = comp
    verdict, statuses = apply_rule(comparisons, reg=reg)
    variants = {v: {"family": VARIANTS[v][0], "label": VARIANTS[v][1], "act": VARIANTS[v][2],
                    "attention": VARIANTS[v][3], "mlp_ratio": VARIANTS[v][4],
                    **variant_evidence(runs[v])} for v in VARIANTS}
    cpu = [num(r.get("cpu_seconds")) for r in results]
    return {
        "verdict": verdict, "statuses": statuses, "tolerance": TOL,
        "baselines": baselines, "regime": reg,
        "vs_baselines": regime.versus_baselines(finals, baselines),
        "metric": "final validation loss, nats per character (bundled corpus, char tokenizer)",
        "seeds": list(preset["seeds"]), "tune_seed": common.TUNE_SEED if len(preset["lrs"]) > 1 else None,
        "lr_grid": list(preset["lrs"]), "lrs": lrs, "size": preset["size"],
        "variants": variants,
        "comparisons": comparisons,
        "moe_router": {**{k: comparisons[ROUTER_ROLE][k] for k in ("diff", "lo", "hi", "n", "status")},
                       "in_verdict": False,
                       "shape": {**MOE_SHAPE, "expert_width": "mlp_ratio * n_embd // n_experts"},
                       "expert_load": {v: variants[v].get("expert_load") for v in MOE_ROUTERS}},
        "cpu_seconds_total": float(np.nansum(cpu)) if cpu else 0.0,
    }


@register_study(STUDY, "C5")
def run(preset: str = "quick", out_dir: str = "results/gates", progress: bool = True, *,
        data: str | None = None, tokenizer: str = "char") -> Verdict:
    """C5: is sigmoid usable only as a gate (FFN, attention output), and does it help there?"""
    from actlab.studies.gates.figures import draw_all

    t0 = time.perf_counter()
    cfg = PRESETS[check_preset(preset)]
    corpus = common.corpus_keys(data, tokenizer)
    bundle = common.gpt_data(cfg["size"]["block_size"], *common.job_data(corpus))  # checked first
    lrs = tune(cfg, out_dir, progress, corpus)
    results = run_grid(STUDY, eval_jobs(cfg, lrs, corpus), train_variant, out_dir, progress=progress)
    ev = evidence_from(results, cfg, lrs, bundle.baselines(), regime.hint_for(preset))
    ev["corpus"] = common.corpus_record(bundle, corpus.get("data"))
    figures = draw_all(results, ev, out_dir, FAMILIES)
    return Verdict(claim="C5", quote=CLAIMS["C5"].quote, rule=RULE, verdict=ev["verdict"],
                   evidence=ev, figures=figures, preset=preset, study=STUDY,
                   summary=summary_line(ev), caveats=caveats(ev, preset),
                   seconds=time.perf_counter() - t0)
