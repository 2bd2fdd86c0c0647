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

One run is `runs.run_one`; the measure, the evidence and the caveats are in `evidence.py`,
the figures in `figures.py`; all of them read only what `run_grid` returned.
"""

from __future__ import annotations

from actlab.article.claims import CLAIMS
from actlab.article.verdicts import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from actlab.nn.mlp import default_init
from actlab.studies import common
from actlab.studies.base import Verdict, check_preset, register_study
from actlab.studies.vanishing.evidence import (
    ACTS, MARGIN, MODELS, NORM_FLOOR, caveats_for, family_gap, fmt, log_ratios, model_evidence,
    reference, run_measure, status, variant,
)
from actlab.studies.vanishing.runs import run_one
from actlab.engine.sweep import run_grid

# The study's face: its rule and decision, and the measures they rest on (from evidence.py).
__all__ = [
    "ACTS", "MARGIN", "MODELS", "NORM_FLOOR", "PRESETS", "RULE", "STUDY", "decide", "family_gap",
    "jobs_for", "log_ratios", "model_evidence", "run", "run_measure", "status",
]

STUDY = "vanishing"

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
# The GPT ladder reaches 128 blocks: the article's depth example is GPT-4's "100+ layers" (GPT-3
# has 96, Brown et al. 2020), so the claim is about stacks that deep. A block this small costs
# mostly its Python and kernel-launch overhead, about 1.5 ms per block and step on one thread
# (batch 8 x 32 tokens) at width 16 as at width 32, so depth, not width, sets the price. Measured
# on two otherwise idle cores, the whole quick study: GPT ladder 4/16/32 at width 32 and K = 60,
# 59 s (103 job-seconds); 4/16/32/128 at width 16 and K = 60, 196 s (359); the same at K = 30,
# 103 s (176, of which 109 at 128 blocks). So quick's GPT takes K = 30: gradients at init and
# after a few steps are what the rule reads. Every depth of a ladder has the same width and K,
# so the depths differ in depth only.
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
        gpt=dict(depths=(4, 16, 32, 128), n_embd=16, n_head=2, block_size=32, batch_size=8,
                 steps=30, every=10, lr=3e-3, warmup_steps=6, eval_batches=4),
    ),
    # standard: quick's depths and one more, 5 seeds, five (MLP) and ten (GPT) times quick's steps.
    "standard": dict(
        seeds=(0, 1, 2, 3, 4), acts=ACTS,
        mlp=dict(widths=(128,), depths=(4, 8, 16, 32), inits="paper", steps=300, every=50,
                 batch_size=64, lr=0.1),
        gpt=dict(depths=(4, 8, 16, 32, 128), n_embd=16, n_head=2, block_size=32, batch_size=16,
                 steps=300, every=50, lr=3e-3, warmup_steps=15, eval_batches=8),
    ),
    "full": dict(
        seeds=(0, 1, 2, 3, 4), acts=ACTS,
        mlp=dict(widths=(128, 512), depths=(4, 8, 16, 32, 64), inits="both", steps=1000,
                 every=100, batch_size=128, lr=0.1),
        gpt=dict(depths=(4, 8, 16, 32, 64, 128), n_embd=64, n_head=4, block_size=64, batch_size=32,
                 steps=1000, every=100, lr=3e-3, warmup_steps=50, eval_batches=16),
    ),
}


# -- the grid ------------------------------------------------------------------------------

def jobs_for(preset: dict, corpus: dict | None = None) -> list[dict]:
    m, g, seeds, corpus = preset["mlp"], preset["gpt"], preset["seeds"], corpus or {}
    jobs = []
    for act in preset["acts"]:
        inits = [default_init(act)] if m["inits"] == "paper" else ["xavier", "kaiming"]
        jobs += [{"model": "mlp", "act": act, "depth": depth, "width": width, "init": init,
                  "seed": seed, **{k: m[k] for k in ("steps", "every", "batch_size", "lr")}, **corpus}
                 for width in m["widths"] for init in inits for depth in m["depths"] for seed in seeds]
        gpt = {k: v for k, v in g.items() if k != "depths"}
        jobs += [{"model": "gpt", "act": act, "depth": depth, "seed": seed, **gpt, **corpus}
                 for depth in g["depths"] for seed in seeds]
    return jobs


# -- the decision ----------------------------------------------------------------------------

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
def run(preset: str = "quick", out_dir: str = "results/vanishing", progress: bool = True, *,
        data: str | None = None, tokenizer: str = "char") -> Verdict:
    """C1: per-layer gradient norms vs depth, plain deep MLP and pre-LN GPT, per activation."""
    from actlab.studies.vanishing.figures import draw

    check_preset(preset)
    cfg = PRESETS[preset]
    corpus = common.corpus_keys(data, "char")  # character-level models (common.char_only)
    bundle = common.gpt_data(cfg["gpt"]["block_size"], corpus.get("data"), "char")  # checked first
    results = run_grid(STUDY, jobs_for(cfg, corpus), run_one, out_dir, progress=progress)
    ev = {m: model_evidence(reference(results, m, cfg)) for m in MODELS}
    ev["margin_decades"] = MARGIN
    ev["corpus"] = common.corpus_record(bundle, corpus.get("data"))
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
                   caveats=caveats_for(ev, cfg) + common.char_only("C1", tokenizer))
