"""Study C7: do ReLU, GELU and Swish (SiLU) give faster, more reliable training than sigmoid, as
the FFN activation of a small GPT?

"Faster" and "more reliable" are four measurable parts, each with its own statistic and
threshold, fixed in RULE before any run:

    faster        CPU-seconds to a target loss, at each activation's best rate, median over
                  evaluation seeds. CPU-seconds (the job's time.process_time) rather than wall
                  clock: on shared cores the wall clock measures the neighbours' load too.
                  Tokens to the target (the per-token speed) and tokens per CPU-second (the
                  per-step cost) come from the same runs and are reported apart, so a cheap
                  step and a fast-learning token are told apart.
    sensitivity   how wide a range of learning rates trains to near the activation's own best:
                  a rate tuned for one activation transfers less to a narrow one.
    divergences   how many runs of a grid that reaches unstable rates go unstable.
    spread        how much the final loss depends on the seed at the best rate.

The grid runs (tuning seed, every rate) give the best rate, the sensitivity and the
divergences; the evaluation seeds (the same data order for every activation) at each best
rate give the time to target and the spread. The target is fixed from the reference's own
runs, as in C3: TARGET_FACTOR x GELU's median final trailing-mean training loss.

Why this combination (see `decide`): the claim is that the modern activations are faster *and*
more reliable, so SUPPORTED needs sigmoid slower than each of them and less reliable on at
least one reliability part, with no part in sigmoid's favour; "not supported" needs no part
where sigmoid is worse. Everything in between is true with a caveat, and out of regime
(analysis/regime.py) nothing is judged.
"""

from __future__ import annotations

import math
from pathlib import Path

from actlab.analysis import regime
from actlab.analysis.numbers import finite_or_inf
from actlab.analysis.ranking import SMOOTH
from actlab.analysis.stats import mean_ci
from actlab.article.claims import CLAIMS
from actlab.article.verdicts import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from actlab.studies import common
from actlab.studies.base import Verdict, check_preset, register_study
from actlab.studies.convergence.runs import prepared
from actlab.studies.stability import evidence as ev
from actlab.studies.stability import runs as stage
from actlab.studies.stability.presets import PRESETS
from actlab.studies.stability.words import caveats, summary_line

STUDY = stage.STUDY
COMPARATORS = ("relu", "gelu", "silu")  # "ReLU/GELU/Swish" in the article's words
PARTS = ("faster", "sensitivity", "divergences", "spread")
RELIABILITY = PARTS[1:]
TARGET_FACTOR = 1.05  # as C3: the reference's own final loss, with 5% of slack to reach it
# CPU time of the same run varies by a few percent on a loaded machine; a 10% gap is more than
# that and less than the gap between a cheap and a costly activation.
FAST_MARGIN = 0.10
# A rate whose loss is within 2% of the activation's best is usable: twice C3's 1% 'no lag'
# margin, the spread Shazeer 2020 reports between ReLU, GELU and Swish.
SENS_MARGIN = 0.02
WIDTH_TOL = 0.25  # decades: widths differing by less are the same number of grid steps
# 0.02 nats is what study C5 calls a material difference of loss.
SPREAD_MARGIN = 0.02
DEGRADE = 0.10  # GELU's top-rate loss this far above its best: the grid reaches bad rates

RULE = (
    "Each activation trains once per learning rate of a half-decade AdamW grid that reaches "
    "unstable rates (quick and standard: 1e-3 to 3e-1) on the tuning seed; its best rate has the "
    "lowest final validation loss (a diverged run counts +inf; ties to the smaller rate); the "
    "evaluation seeds (same data order for every activation) then train at that rate. Target "
    f"loss: {TARGET_FACTOR} x GELU's median final {SMOOTH}-step "
    "trailing-mean training loss over its evaluation seeds. Sigmoid is compared with each of "
    "relu, gelu and silu on four parts. (1) faster: median over evaluation seeds of the "
    "CPU-seconds to the target (process CPU time of the training steps times the share of steps "
    "taken until the trailing-mean training loss first reaches the target; a seed that never "
    f"does counts +inf); worse if sigmoid's is more than {FAST_MARGIN:.0%} above the other's, "
    f"better if more than {FAST_MARGIN:.0%} below, else even; wall-clock seconds, tokens to "
    "target and tokens/s are reported, not used. (2) sensitivity: width in decades, "
    "log10(highest/lowest), of the unbroken run of grid rates around the best whose final "
    f"loss is within {SENS_MARGIN:.0%} of the activation's best; worse if sigmoid's is narrower "
    f"by more than {WIDTH_TOL} decades (half a grid step: the grid's steps are 0.48 and 0.52 "
    "decades), better if wider by as much. (3) divergences: number of unstable grid runs (a non-finite loss, a final "
    "validation loss above the corpus's unigram baseline, or a final trailing-mean training "
    f"loss more than {ev.RISE:.0%} above the lowest the run reached); worse if sigmoid has more, "
    "better if fewer; not applicable when no run of any activation is unstable. (4) spread: "
    "max - min of the final validation losses over evaluation seeds at the best rate (+inf if "
    f"a seed diverged); worse if sigmoid's exceeds the other's by more than {SPREAD_MARGIN} "
    f"nats, better if it is smaller by more than {SPREAD_MARGIN}, else even; not applicable "
    "with fewer than 2 seeds. A part is 'worse' if sigmoid is worse than each comparator, "
    "'better' if better than each, 'mixed' if worse than some but not all, else 'even'. "
    "SUPPORTED: faster is worse, at least one of sensitivity, divergences and spread is worse, "
    "and no part is better. NOT SUPPORTED: no part is worse or mixed. SUPPORTED WITH CAVEAT: "
    "otherwise. INCONCLUSIVE: faster "
    "cannot be measured (sigmoid or every comparator without runs), or out of regime. "
    + regime.RULE
)


def decide(parts: dict[str, str], reg: dict | None = None) -> str:
    """The rule (RULE) on the part outcomes ({part: worse | better | even | mixed | n/a}, as
    evidence.part_outcome gives them) and the setting's regime (None: the parts alone)."""
    if reg is not None and not reg["in_regime"]:
        return INCONCLUSIVE  # the reference has not learned what a count table knows
    outs = {p: parts.get(p, ev.NA) for p in PARTS}
    if outs["faster"] == ev.NA:
        return INCONCLUSIVE
    if ev.WORSE not in outs.values() and ev.MIXED not in outs.values():
        return NOT_SUPPORTED
    if (outs["faster"] == ev.WORSE and any(outs[p] == ev.WORSE for p in RELIABILITY)
            and ev.BETTER not in outs.values()):
        return SUPPORTED
    return CAVEAT


# -- measurements ----------------------------------------------------------------------------

def per_activation(table: dict, evals: dict[str, dict[int, dict]], target: float | None,
                   seeds, unigram: float | None) -> dict[str, dict]:
    """Every number the rule and the figures use, per activation, from the stored runs."""
    out = {}
    for act, grid in table.items():
        width = ev.sensitivity_width(grid["lrs"], grid["val_loss"], SENS_MARGIN)
        runs = evals.get(act, {})
        done = [runs[s] for s in seeds if s in runs and runs[s].get("outcome") != "error"]
        losses = [finite_or_inf(r.get("final_val_loss")) for r in done]
        hits = [ev.to_target(r, target) for r in done] if target is not None else []
        row = {
            "lr": width["best_lr"], "grid": grid, "width_decades": width["width"],
            "usable_lrs": [width["lo"], width["hi"]], "best_grid_loss": width["best_loss"],
            "excess": ev.excess(grid["val_loss"], unigram) if unigram else math.nan,
            "n_unstable": sum(grid["unstable"]), "n_grid_runs": sum(grid["runs"]),
            "losses": [v if math.isfinite(v) else None for v in losses],
            "n_eval_errors": len([s for s in seeds if s in runs]) - len(done),
            **mean_ci([v for v in losses if math.isfinite(v)]),
            "spread": ev.seed_range(losses),
            "to_target": hits, "reached": f"{sum(h['steps'] is not None for h in hits)}/{len(hits)}",
            "n_params": next((r["n_params"] for r in done if r.get("n_params")), None),
        }
        for key in ("steps", "tokens", "wall_s", "cpu_s"):
            row[f"{key}_to_target"] = ev.median_inf([h[key] for h in hits]) if hits else math.nan
            row[f"{key}_to_target_ci"] = mean_ci([h[key] for h in hits if h[key] is not None])
        for key in ("tokens_per_s", "tokens_per_cpu_s"):
            row[key] = mean_ci([h[key] for h in hits if h[key]])
        out[act] = row
    return out


def comparisons(per_act: dict) -> tuple[dict, dict]:
    """({part: {comparator: {"sigmoid", "other", "outcome"}}}, {part: outcome})."""
    others = [c for c in COMPARATORS if c in per_act]
    if "sigmoid" not in per_act or not others:
        return {p: {} for p in PARTS}, {p: ev.NA for p in PARTS}
    any_unstable = any(r["n_unstable"] for r in per_act.values())
    stat = {"faster": "cpu_s_to_target", "sensitivity": "width_decades",
            "divergences": "n_unstable", "spread": "spread"}

    def outcome(part: str, a, b) -> str:
        if part == "faster":
            return ev.compare_ratio(a, b, FAST_MARGIN)
        if part == "sensitivity":
            return ev.compare_width(a, b, WIDTH_TOL)
        if part == "divergences":
            return ev.compare_count(a, b) if any_unstable else ev.NA
        return ev.compare_diff(a, b, SPREAD_MARGIN)

    table = {}
    for part in PARTS:
        a = per_act["sigmoid"][stat[part]]
        table[part] = {c: {"sigmoid": a, "other": per_act[c][stat[part]],
                           "outcome": outcome(part, a, per_act[c][stat[part]])} for c in others}
    return table, {p: ev.part_outcome(v["outcome"] for v in table[p].values()) for p in PARTS}


def gelu_top(table: dict) -> dict | None:
    """Does the grid reach rates where the reference goes wrong? GELU at the grid's top rate:
    unstable there, or its loss more than DEGRADE above its best."""
    g = table.get(regime.REFERENCE_ACT)
    if not g:
        return None
    best = min(g["val_loss"])
    top = g["val_loss"][-1]
    return {"lr": g["lrs"][-1], "loss": top, "best_loss": best, "unstable": g["unstable"][-1],
            "degraded": bool(g["unstable"][-1]) or top > (1 + DEGRADE) * best}


# -- the study -------------------------------------------------------------------------------

@register_study(STUDY, "C7")
def run(preset: str, out_dir: str | Path, progress: bool = True, *, data: str | None = None,
        tokenizer: str = "char") -> Verdict:
    """Sigmoid vs ReLU/GELU/SiLU: time to a target loss, learning-rate range, divergences, seeds."""
    from actlab.studies.stability import figures as figs

    check_preset(preset)
    p, out = PRESETS[preset], Path(out_dir)
    corpus = common.corpus_keys(data, tokenizer)
    data, tokenizer = common.job_data(corpus)
    bundle = prepared(data, tokenizer, p["model"]["block_size"])  # checked before any run
    baselines = bundle.baselines()  # computed (and cached on disk) before the jobs read it
    table = ev.grid_table(stage.grid_runs(p, out, progress, corpus), baselines["unigram"])
    best = {a: ev.sensitivity_width(t["lrs"], t["val_loss"], SENS_MARGIN)["best_lr"]
            for a, t in table.items()}
    evals = stage.eval_runs(p, best, out, progress, corpus)
    target = ev.target_loss(list(evals.get(regime.REFERENCE_ACT, {}).values()), TARGET_FACTOR)
    per_act = per_activation(table, evals, target, p["seeds"], baselines["unigram"])
    comps, parts = comparisons(per_act)
    reg = regime.regime(per_act.get(regime.REFERENCE_ACT, {}).get("losses"), baselines,
                        regime.hint_for(preset))
    vs = regime.versus_baselines({a: r["losses"] for a, r in per_act.items()}, baselines)
    verdict = decide(parts, reg)
    top = gelu_top(table)
    order = [a for a in p["acts"] if a in per_act]
    figures = figs.draw_all(out, per_act, order, target, baselines)
    evidence = {
        "parts": parts, "sigmoid_vs": comps, "per_act": per_act, "target_loss": target,
        "target_rule": f"{TARGET_FACTOR} x GELU's median final trailing-mean training loss at "
                       "its best rate", "time_used_by_rule": "CPU-seconds (time.process_time)",
        "gelu_top_rate": top, "grid": list(p["lrs"]), "seeds": list(p["seeds"]),
        "tune_seed": common.TUNE_SEED, "config": {**p["model"], **p["train"]},
        "baselines": baselines, "regime": reg, "vs_baselines": vs,
        "corpus": common.corpus_record(bundle, data),
    }
    return Verdict(
        claim="C7", quote=CLAIMS["C7"].quote, rule=RULE, verdict=verdict, evidence=evidence,
        figures=figures, preset=preset, study=STUDY,
        summary=summary_line(parts, comps, per_act, target, reg),
        caveats=caveats(p, per_act, top, bundle) + regime.findings(vs, reg),
    )
