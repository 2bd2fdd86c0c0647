"""Study C4: does an output layer of independent sigmoids fail over a multi-class vocabulary?

Two heads on the same GPT, same seeds and data order (actlab.nn.gpt): softmax + cross-entropy,
and V independent sigmoids + binary cross-entropy against the one-hot target. Per vocabulary
(bytes, then BPE vocabularies trained on the corpus), each run is measured at its end on fixed
validation batches:

    sum_p      Σ_v p_v per position; softmax gives 1 by construction and is measured anyway.
    nats/byte  cross-entropy of the target (for sigmoid after renormalising p / Σp) over the
               UTF-8 bytes of the target tokens: per token is not comparable across
               tokenizers, per byte is (the bundled corpus is ASCII: bytes = characters).
    ECE        expected calibration error of the top-1 confidence, 15 equal-width bins (Guo et
               al. 2017, "On Calibration of Modern Neural Networks", eq. 3), for softmax p,
               raw sigmoid p and renormalised sigmoid p.
    stability  diverged runs, and Σp tracked on a few validation batches during training.

The claim has two parts. (a) "outputs don't sum to 1": true by construction for sigmoids; the
question is by how much, and whether it grows with V. (b) "fails ... unstable probabilities":
the renormalised sigmoid head must be materially worse than softmax, or diverge, and since the
claim names large vocabularies, the failure should grow with V.

Tolerances, fixed before any run: 2% of the loss is about the spread between FFN activations
that practitioners act on (Shazeer 2020, Table 1, in actlab.article.references: SwiGLU 2.7%
below ReLU); a head within it "works" as a scorer. A mean |Σp - 1| of 0.05 loses or invents
5% of the probability mass per position: above it the outputs "don't sum to 1" in a way a
reader of them would see.

The regime rule (analysis.regime), per vocabulary size: a size speaks about the heads only once
its softmax-head runs (GELU FFN, softmax attention: the reference configuration) beat the
trigram baseline of that size's own tokenizer, converted to nats per byte (`regimes.py`).
Measurement and one run: `runs.py`; figures: `figures.py`; the analysis
here and the figures read only what `run_grid` returned.
"""
from __future__ import annotations

import math
from pathlib import Path

from actlab.analysis import regime
from actlab.analysis.numbers import finite_mean, is_finite
from actlab.article.claims import CLAIMS
from actlab.article.verdicts import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from actlab.analysis.stats import mean_ci
from actlab.config import PRESET_NAMES
from actlab.studies import common
from actlab.studies.base import Verdict, check_preset, register_study
from actlab.studies.output_head.regimes import regime_notes, size_regimes
from actlab.studies.output_head.runs import data_baselines, head_job
from actlab.engine.sweep import run_grid

STUDY = "output-head"
HEADS = ("softmax", "sigmoid")
GAP_TOL = 0.02  # relative loss gap that counts as material (see the module docstring)
SUM_TOL = 0.05  # mean |Σp - 1| above which the outputs "don't sum to 1"

# Written before any run of this study and never adjusted after (see `decide`).
RULE = (
    "At the largest vocabulary V_max: gap = (sigmoid renormalised - softmax) validation "
    "nats per byte relative to softmax, per seed (same seed and data order), mean and 95% "
    "t-CI; off = the sigmoid head's mean |sum_p - 1| per position (mean over seeds); slope = "
    "least-squares growth of the relative gap per doubling of V over all vocabularies and "
    f"seeds, 95% CI. 'fails': gap > {GAP_TOL:.0%} with CI lower bound > 0, or more sigmoid "
    f"than softmax runs diverged (any V). SUPPORTED: fails, slope CI lower bound > 0, and "
    f"off > {SUM_TOL}. SUPPORTED WITH CAVEAT: fails otherwise (the gap does not grow with V, "
    f"or the sums stay near 1); or gap CI upper bound < {GAP_TOL:.0%} (renormalised, sigmoid "
    f"works as a scorer) with off > {SUM_TOL} (it is not a distribution). NOT SUPPORTED: gap "
    f"CI upper bound < {GAP_TOL:.0%} and off <= {SUM_TOL}. INCONCLUSIVE: otherwise, including "
    "fewer than 2 finite seed pairs at V_max. " + regime.RULE + " Here a setting is one "
    "vocabulary size: its reference is its softmax-head run (GELU FFN, softmax attention), its "
    "baselines are those of its own tokenizer, converted to nats per byte with the factor of the "
    "study's own losses (divided by the bytes per token of the evaluated validation tokens). A "
    "size out of regime neither supports nor refutes: gap, off, divergences and slope count only "
    "the sizes in regime, and the verdict is INCONCLUSIVE when V_max is out of regime."
)
# What to do about a setting out of regime, per preset.
HINTS = {name: regime.hint_for(name) for name in PRESET_NAMES}

# Sizes per preset. quick: about two minutes of CPU on two cores (18 single-threaded runs,
# dominated by the 4096-way head); full: GPU-sized, vocabularies up to 16k.
PRESETS = {
    "smoke": dict(
        vocabs=(("char", 0), ("byte", 256)), seeds=(0, 1),
        model=dict(n_layer=1, n_head=2, n_embd=32, block_size=32),
        train=dict(steps=16, batch_size=8, lr=3e-3, warmup_steps=4, device="cpu"),
        final_batches=2, track_every=8, track_batches=1,
    ),
    "quick": dict(
        vocabs=(("byte", 256), ("bpe", 1024), ("bpe", 4096)), seeds=(0, 1, 2),
        model=dict(n_layer=2, n_head=4, n_embd=64, block_size=64),
        train=dict(steps=200, batch_size=16, lr=3e-3, warmup_steps=20, device="cpu"),
        final_batches=8, track_every=25, track_batches=2,
    ),
    # standard: quick's vocabularies, five times the steps at twice the batch.
    "standard": dict(
        vocabs=(("byte", 256), ("bpe", 1024), ("bpe", 4096)), seeds=(0, 1, 2),
        model=dict(n_layer=2, n_head=4, n_embd=64, block_size=64),
        train=dict(steps=1000, batch_size=32, lr=3e-3, warmup_steps=50, device="cpu"),
        final_batches=16, track_every=100, track_batches=2,
    ),
    "full": dict(
        vocabs=(("byte", 256), ("bpe", 1024), ("bpe", 4096), ("bpe", 8192), ("bpe", 16384)),
        seeds=(0, 1, 2, 3, 4),
        model=dict(n_layer=4, n_head=4, n_embd=128, block_size=128),
        train=dict(steps=2000, batch_size=32, lr=2e-3, warmup_steps=100, device="auto"),
        final_batches=32, track_every=100, track_batches=4,
    ),
}


# -- analysis of stored results ----------------------------------------------------------------

def _final(result: dict, *keys) -> float:
    """result["final"][k1][k2]... as a float, NaN where missing or not finite."""
    v = result.get("final") or {}
    for k in keys:
        v = v.get(k) if isinstance(v, dict) else None
    return float(v) if is_finite(v) else math.nan


def _npb(result: dict, key: str = "nats_per_byte") -> float:
    """Loss per byte of a completed run; NaN for a diverged or failed one."""
    return _final(result, key) if result.get("outcome") == "completed" else math.nan


def vocab_label(tokenizer: str, vocab: int) -> str:
    return f"{tokenizer}-{vocab}" if vocab else tokenizer


def group(results: list[dict]) -> list[dict]:
    """[{label, tokenizer, vocab, vocab_size, runs: {head: {seed: result}}}], smallest V first."""
    out: dict[tuple, dict] = {}
    for r in results:
        p = r["params"]
        g = out.setdefault((p["tokenizer"], p["vocab"]), {
            "label": vocab_label(p["tokenizer"], p["vocab"]),
            "tokenizer": p["tokenizer"], "vocab": p["vocab"], "vocab_size": None, "runs": {}})
        g["runs"].setdefault(p["head"], {})[p["seed"]] = r
        if r.get("vocab_size"):
            g["vocab_size"] = r["vocab_size"]
    return sorted(out.values(), key=lambda g: g["vocab_size"] or g["vocab"] or 0)


def summarize(g: dict, seeds) -> dict:
    """One vocabulary: losses per byte, the relative gap per seed, Σp, ECE, divergences."""
    runs = {h: list(g["runs"].get(h, {}).values()) for h in HEADS}
    soft, sig = g["runs"].get("softmax", {}), g["runs"].get("sigmoid", {})
    gaps = []
    for s in seeds:  # paired: same seed, same init and data order
        a = _npb(sig[s]) if s in sig else math.nan
        b = _npb(soft[s]) if s in soft else math.nan
        gaps.append((a - b) / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan)
    drift = []
    for r in runs["sigmoid"]:  # range of the tracked mean Σp over the second half of training
        track = [h["sum_p_mean"] for h in r.get("history", []) if is_finite(h.get("sum_p_mean"))]
        late = track[len(track) // 2:]
        if late:
            drift.append(max(late) - min(late))
    stats = ("mean", "median", "p5", "p95", "std", "mean_abs_dev")
    kinds = (("softmax", "softmax"), ("sigmoid", "sigmoid_raw"), ("sigmoid", "sigmoid_renorm"))
    return {
        "label": g["label"], "tokenizer": g["tokenizer"], "vocab_size": g["vocab_size"],
        "nats_per_byte": {"softmax": mean_ci([_npb(r) for r in runs["softmax"]]),
                          "sigmoid": mean_ci([_npb(r) for r in runs["sigmoid"]]),
                          "sigmoid_raw": mean_ci([_npb(r, "raw_nats_per_byte") for r in runs["sigmoid"]])},
        "gap_rel": {**mean_ci(gaps), "per_seed": [v if math.isfinite(v) else None for v in gaps]},
        "sum_p": {h: {k: finite_mean(_final(r, "sum_p", k) for r in runs[h]) for k in stats} for h in HEADS},
        "ece": {kind: mean_ci([_final(r, "calibration", kind, "ece") for r in runs[h]]) for h, kind in kinds},
        "accuracy": {h: mean_ci([_final(r, "accuracy") for r in runs[h]]) for h in HEADS},
        "diverged": {h: sum(r.get("outcome") == "diverged" for r in runs[h]) for h in HEADS},
        "errors": sum(r.get("outcome") == "error" for h in HEADS for r in runs[h]),
        "sum_p_drift_late": mean_ci(drift),
        "bytes_per_token": finite_mean(_final(r, "bytes_per_token") for h in HEADS for r in runs[h]),
    }


def slope_per_doubling(points) -> dict:
    """Least-squares slope of y on log2 V over (V, y) points, with its 95% t-CI (n - 2 df)."""
    from scipy import stats as sps

    pts = [(math.log2(v), y) for v, y in points if v and is_finite(y)]
    if len(pts) < 3 or len({x for x, _ in pts}) < 2:
        return {"slope": math.nan, "lo": math.nan, "hi": math.nan, "n": len(pts)}
    fit = sps.linregress([x for x, _ in pts], [y for _, y in pts])
    half = float(sps.t.ppf(0.975, len(pts) - 2) * fit.stderr)
    return {"slope": float(fit.slope), "lo": float(fit.slope) - half, "hi": float(fit.slope) + half,
            "n": len(pts)}


def gap_slope(per_vocab: list[dict]) -> dict:
    """Growth of the relative gap per doubling of V, over every (V, seed) point."""
    return slope_per_doubling((v["vocab_size"], g) for v in per_vocab
                              for g in v["gap_rel"]["per_seed"] if g is not None)


# -- the regime rule, one vocabulary size at a time --------------------------------------------

def decision_inputs(per_vocab: list[dict], regs: dict[str, dict] | None = None) -> dict:
    """What `decide` takes. With `regs` (size_regimes) only the sizes in regime count towards
    the slope and the divergences, and "regime" says whether V_max, where gap and off are
    measured, is in regime; without, every size counts."""
    inside = [v for v in per_vocab if regs is None or regs[v["label"]]["regime"]["in_regime"]]
    top = per_vocab[-1]
    ev = {"gap": {k: top["gap_rel"][k] for k in ("mean", "lo", "hi", "n")}, "slope": gap_slope(inside),
          "off": top["sum_p"]["sigmoid"]["mean_abs_dev"],
          "diverged": {h: sum(v["diverged"][h] for v in inside) for h in HEADS}}
    if regs is not None:
        labels = [v["label"] for v in inside]
        top_reg = regs[top["label"]]["regime"]
        ev["regime"] = {"in_regime": top_reg["in_regime"], "reason": top_reg["reason"],
                        "largest_vocab": top["label"], "sizes_in_regime": labels,
                        "sizes_out": [v["label"] for v in per_vocab if v["label"] not in labels]}
    return ev


def decide(ev: dict) -> tuple[str, str]:
    """The rule (RULE) on {"gap": mean_ci of the relative gap at V_max, "slope": gap_slope,
    "off": mean |Σp - 1| of the sigmoid head at V_max, "diverged": {head: runs}} and, where
    known, "regime" (decision_inputs): V_max out of regime is INCONCLUSIVE whatever the rest.

    Why this rule: "fails ... unstable" is a claim about quality and stability, so it needs a
    material, resolved penalty (or divergence); the article ties it to large vocabularies, so
    the full claim also needs the penalty to grow with V, and it names the missing normaliser
    as the cause, so the sums must actually be off. A sigmoid head that, once renormalised,
    scores within tolerance of softmax "works": that refutes "fails" but not "don't sum to 1".
    """
    reg = ev.get("regime")
    if reg is not None and not reg["in_regime"]:
        return INCONCLUSIVE, f"out of regime at the largest vocabulary: {reg['reason']}"
    verdict, reason = _decide_heads(ev)
    if reg is not None and reg["sizes_out"]:
        reason += f"; left out, out of regime: {', '.join(reg['sizes_out'])}"
    return verdict, reason


def _decide_heads(ev: dict) -> tuple[str, str]:
    g, s, off, div = ev["gap"], ev["slope"], ev["off"], ev["diverged"]
    diverges = div["sigmoid"] > div["softmax"]
    resolved = g["n"] >= 2 and is_finite(g["lo"]) and is_finite(g["hi"])
    worse = resolved and g["mean"] > GAP_TOL and g["lo"] > 0
    if worse or diverges:
        why = (f"sigmoid renormalised {g['mean']:+.1%} worse" if worse else "") + \
              (" and " if worse and diverges else "") + \
              (f"{div['sigmoid']} sigmoid vs {div['softmax']} softmax runs diverged" if diverges else "")
        grows = is_finite(s["lo"]) and s["lo"] > 0
        if grows and is_finite(off) and off > SUM_TOL:
            return SUPPORTED, f"{why}; the gap grows with V; mean |sum_p - 1| = {off:.3f}"
        reason = "the gap does not grow with V" if not grows else f"mean |sum_p - 1| = {off:.3f} stays near 1"
        return CAVEAT, f"{why}, but {reason}"
    if not resolved:
        return INCONCLUSIVE, f"{g['n']} finite seed pairs at the largest vocabulary"
    if g["hi"] < GAP_TOL:
        if is_finite(off) and off > SUM_TOL:
            return CAVEAT, (f"renormalised, sigmoid is within {GAP_TOL:.0%} of softmax (gap CI "
                            f"upper {g['hi']:+.1%}), but its outputs are no distribution: mean "
                            f"|sum_p - 1| = {off:.3f}")
        return NOT_SUPPORTED, f"sigmoid within {GAP_TOL:.0%} of softmax and sum_p stays near 1 ({off:.3f})"
    return INCONCLUSIVE, f"gap {g['mean']:+.1%} (CI {g['lo']:+.1%} .. {g['hi']:+.1%}) not resolved"


# -- the study ---------------------------------------------------------------------------------

def jobs_for(p: dict, corpus: dict | None = None) -> list[dict]:
    return [{**p["model"], **p["train"], "tokenizer": tok, "vocab": vocab, "head": head, "seed": seed,
             "final_batches": p["final_batches"], "track_every": p["track_every"],
             "track_batches": p["track_batches"], **(corpus or {})}
            for tok, vocab in p["vocabs"] for seed in p["seeds"] for head in HEADS]


@register_study(STUDY, "C4")
def run(preset: str, out_dir: str | Path, progress: bool = True, *, data: str | None = None,
        tokenizer: str = "char") -> Verdict:
    """Softmax-CE vs sigmoid-BCE output heads as the vocabulary grows: Σp, loss per byte, ECE.
    `tokenizer` does not apply: the study's vocabularies are its own (a caveat says so)."""
    from actlab.studies.output_head import figures as figs

    check_preset(preset)
    p, out = PRESETS[preset], Path(out_dir)
    corpus = common.corpus_keys(data, "char")  # the path and hash; each size has its tokenizer
    jobs = jobs_for(p, corpus)
    # Each size's baselines come from the data its runs train on; preparing it here also
    # trains and caches each BPE once, before the workers need it.
    baselines = {}
    for job in jobs:
        label = vocab_label(job["tokenizer"], job["vocab"])
        if label not in baselines:
            baselines[label] = data_baselines(job)
    results = run_grid(STUDY, jobs, head_job, out, progress=progress)
    groups = group(results)
    per_vocab = [summarize(g, p["seeds"]) for g in groups]
    top = per_vocab[-1]
    losses = [{h: [_npb(r) for r in g["runs"].get(h, {}).values()] for h in HEADS} for g in groups]
    regs = size_regimes(losses, per_vocab, baselines, HINTS[preset])
    ev = decision_inputs(per_vocab, regs)
    verdict, reason = decide(ev)
    figures = figs.draw_all(out, groups, per_vocab, GAP_TOL,
                            bars=[regs[v["label"]]["baselines_per_byte"] for v in per_vocab])
    evidence = {
        "corpus": common.corpus_record(None, corpus.get("data")),
        "decision": {**ev, "reason": reason, "largest_vocab": top["label"]},
        "per_vocab": per_vocab,
        # the regime rule per size: baselines per token of each tokenizer, per byte, the
        # softmax-head reference against them and each head's loss against them
        "reference": f"softmax head at each vocabulary size ({regime.REFERENCE}; GELU is the "
                     "FFN activation every run of this study uses)",
        "baselines": baselines,
        "baselines_per_byte": {k: r["baselines_per_byte"] for k, r in regs.items()},
        "bytes_per_token": {k: r["bytes_per_token"] for k, r in regs.items()},
        "regime": {k: r["regime"] for k, r in regs.items()},
        "vs_baselines": {k: r["vs_baselines"] for k, r in regs.items()},
        "baseline_unit": "baselines: nats per validation token of each size's tokenizer (the "
                         "whole validation split); baselines_per_byte, regime and vs_baselines: "
                         "nats per byte, the per-token baselines divided by bytes_per_token of "
                         "the evaluated validation tokens, the factor of the study's own losses",
        # part (a): does the sigmoid head's distance from a distribution grow with V?
        "sum_p_dev_slope": slope_per_doubling((g["vocab_size"], _final(r, "sum_p", "mean_abs_dev"))
                                              for g in groups for r in g["runs"].get("sigmoid", {}).values()),
        "unit": "nats per UTF-8 byte of the evaluated validation tokens (= per character: the "
                "bundled corpus is ASCII); relative gaps are unit-free",
        "tolerances": {"gap_rel": GAP_TOL, "mean_abs_sum_p_dev": SUM_TOL},
        "seeds": list(p["seeds"]), "config": {**p["model"], **p["train"]},
        "runs": len(results), "errors": sum(r.get("outcome") == "error" for r in results),
    }
    return Verdict(claim="C4", quote=CLAIMS["C4"].quote, rule=RULE, verdict=verdict,
                   evidence=evidence, figures=figures, preset=preset, study=STUDY,
                   summary=_summary(top, ev, reason),
                   caveats=_caveats(p, per_vocab) + regime_notes(regs) + ([
                       f"C4 compares its own vocabularies ({', '.join(v['label'] for v in per_vocab)}), "
                       f"so --tokenizer {tokenizer} does not apply to it"] if tokenizer != "char" else []))


def _summary(top: dict, ev: dict, reason: str) -> str:
    reg = ev.get("regime")
    if reg is not None and not reg["in_regime"]:  # no comparison of heads below the count tables
        return regime.out_of_regime_summary(reg)
    n, s, e = top["nats_per_byte"], top["sum_p"]["sigmoid"], top["ece"]
    g = top["gap_rel"]
    return (f"V={top['vocab_size']}: nats/byte softmax {n['softmax']['mean']:.3f}, sigmoid "
            f"renormalised {n['sigmoid']['mean']:.3f} (gap {g['mean']:+.1%}, CI {g['lo']:+.1%} .. "
            f"{g['hi']:+.1%}); gap slope {ev['slope']['slope']:+.2%}/doubling of V; sigmoid sum_p "
            f"median {s['median']:.2f} (5-95% {s['p5']:.2f}-{s['p95']:.2f}), mean |sum_p-1| "
            f"{s['mean_abs_dev']:.3f}; ECE softmax {e['softmax']['mean']:.3f}, sigmoid raw "
            f"{e['sigmoid_raw']['mean']:.3f}, renormalised {e['sigmoid_renorm']['mean']:.3f}; {reason}")


def _caveats(p: dict, per_vocab: list[dict]) -> list[str]:
    m, t = p["model"], p["train"]
    out = [
        f"largest vocabulary {per_vocab[-1]['vocab_size']} tokens; the article speaks of 50k+, "
        "which these sizes do not reach (the slope over V is the evidence for larger V)",
        f"tiny models ({m['n_layer']} layers, width {m['n_embd']}), {t['steps']} steps of "
        f"{t['batch_size']}x{m['block_size']} tokens on the bundled Shakespeare corpus",
        f"one learning rate ({t['lr']}) shared by both heads, not tuned per head",
        "the sigmoid head starts with a learnable logit bias at -log(V-1) (p = 1/V per token); "
        "without it, Σp starts at V/2",
    ]
    errors = sum(v["errors"] for v in per_vocab)
    if errors:
        out.append(f"{errors} runs raised an error and are missing from the numbers")
    return out
