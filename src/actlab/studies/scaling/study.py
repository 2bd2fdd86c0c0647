"""Study C6: does sigmoid's deficit grow with scale?

The article: "sigmoid's elegance from the 1980s doesn't scale to the depth and scale of LLMs".
Read as a measurable statement: the final-loss gap between a sigmoid FFN and a modern one
(GELU, the regime reference; ReLU^2, the FFN of today's fastest small-model recipes; leaky
ReLU^2 where registered) widens as models grow. Two axes (presets.py):

    size    a ladder of shapes at a fixed ratio of training tokens to non-embedding parameters
            (Chinchilla-style), x = log10(parameters);
    depth   2 to 16 blocks (or more) at a fixed width and number of steps, x = blocks.

At every point each activation gets its own learning rate, tuned on the held-out tuning seed
(common.grow_grids; quick uses one a-priori rate per axis), and the evaluation seeds are shared
(same initialisation seed and data order), so gaps are paired by seed. A gap's trend is the
least-squares slope over the per-seed gaps of the in-regime points, with a 95% t-interval
(evidence.fit_slope). Runs go through `runs.py` (run_grid, stored and resumable); evidence and
figures come only from what the store returned.
"""

from __future__ import annotations

import math
from pathlib import Path

from actlab.analysis import regime
from actlab.article.claims import CLAIMS
from actlab.studies import common
from actlab.studies.base import Verdict, check_preset, register_study
from actlab.studies.convergence.runs import prepared
from actlab.studies.scaling import evidence as E
from actlab.studies.scaling.presets import AXES, PRESETS, acts_for, points
from actlab.studies.scaling.runs import STUDY, evaluate, tune

# Written before any run of this study and never adjusted after (see evidence.decide).
RULE = (
    "Gap = final validation loss of the sigmoid FFN minus that of a comparator (GELU; ReLU^2; "
    "leaky ReLU^2 when registered), paired by evaluation seed, each activation at its own rate "
    "tuned on the tuning seed at each point, or at one named point for a whole axis where the "
    "preset says so (depth at a fixed width); a preset whose grid holds one rate uses it for "
    "every activation. Axes: size (a ladder of models at a fixed ratio of "
    "training tokens to non-embedding parameters; x = log10 parameters) and depth (blocks at a "
    "fixed width and number of steps; x = blocks). For each axis and comparator: ordinary "
    "least squares of the per-seed gaps on x over the in-regime points, with a 95% Student-t "
    "interval on the slope (n - 2 degrees of freedom). A point is in regime when the median "
    "final loss of its GELU reference is below the trigram baseline; out-of-regime points and "
    "pairs with a non-finite (diverged) run enter no fit. A fit with fewer than "
    f"{E.MIN_POINTS} in-regime points is INCONCLUSIVE for that axis (neither grows nor shrinks). "
    "'grows': interval above 0; 'shrinks': interval below 0. SUPPORTED if a gap grows on at "
    "least one axis and no gap shrinks on any axis; NOT SUPPORTED if a gap shrinks on an axis "
    "and none grows; INCONCLUSIVE otherwise. The evidence states how many decades of "
    "parameters lie between the largest model here and a 7B LLM; the fit is not read as a "
    "prediction at that scale. " + regime.RULE
)


def _x(axis: str, pt: dict) -> float:
    return math.log10(pt["params"]) if axis == "size" else float(pt["n_layer"])


@register_study(STUDY, "C6")
def run(preset: str, out_dir: str | Path, progress: bool = True, *, data: str | None = None,
        tokenizer: str = "char") -> Verdict:
    """Sigmoid's final-loss gap to GELU and ReLU^2 against model size and depth: slopes with CIs."""
    from actlab.studies.scaling import figures as figs

    check_preset(preset)
    p, out = PRESETS[preset], Path(out_dir)
    corpus = common.corpus_keys(data, tokenizer)
    data, tokenizer = common.job_data(corpus)
    bundle = prepared(data, tokenizer, p["train"]["block_size"])  # checked before any run
    baselines = bundle.baselines()
    acts = acts_for(p)
    comparators = tuple(a for a in acts if a != E.SUBJECT)
    axes = {axis: points(p, axis) for axis in AXES}

    lrs = tune(p, axes, acts, out, progress, corpus)
    runs = evaluate(p, axes, acts, lrs, out, progress, corpus)

    hint = regime.hint_for(preset)
    evidence: dict = {}
    for axis, pts in axes.items():
        rows = []
        for pt in pts:
            row = E.point_evidence(pt["label"], _x(axis, pt), runs["losses"][axis][pt["label"]],
                                   p["seeds"], comparators, baselines, hint)
            for a in acts:
                row["per_act"][a]["lr"] = lrs[(axis, pt["label"], a)]["lr"]
            rows.append({**{k: pt[k] for k in ("params", "steps", "tokens", "n_layer", "n_embd")},
                         **row})
        evidence[axis] = {"points": rows, "fits": E.axis_fits(rows, comparators)}
    fits = {axis: evidence[axis]["fits"] for axis in AXES}
    verdict = E.decide(fits)
    largest = max(pt["params"] for pts in axes.values() for pt in pts)
    evidence.update(
        x={"size": "log10 non-embedding parameters (slope: gap change per 10x parameters)",
           "depth": "blocks (slope: gap change per block)"},
        extrapolation=E.extrapolation(largest), acts=list(acts), comparators=list(comparators),
        seeds=list(p["seeds"]), tune_seed=common.TUNE_SEED, baselines=baselines,
        lr_tuning={"/".join(map(str, k)): v for k, v in lrs.items()},
        not_completed=runs["not_completed"], eval_cpu_s=runs["eval_cpu_s"],
        config={"train": p["train"], "size": p["size"], "depth": p["depth"], "lrs": p["lrs"]},
        corpus=common.corpus_record(bundle, data),
    )
    figures = figs.draw_all(out, evidence, acts, comparators, baselines.get(regime.BAR))
    return Verdict(
        claim="C6", quote=CLAIMS["C6"].quote, rule=RULE, verdict=verdict, evidence=evidence,
        figures=figures, preset=preset, study=STUDY, summary=_summary(evidence, comparators),
        caveats=_caveats(preset, p, evidence, lrs, bundle),
    )


def _summary(ev: dict, comparators) -> str:
    parts = []
    for axis in AXES:
        pts = ev[axis]["points"]
        inr = sum(pt["in_regime"] for pt in pts)
        fits = ev[axis]["fits"]
        per = [f"{c} {fits[c]['slope']:+.3f} [{fits[c]['lo']:+.3f}, {fits[c]['hi']:+.3f}] "
               f"{fits[c]['outcome']}" if math.isfinite(fits[c]["lo"]) else f"{c} {fits[c]['outcome']}"
               for c in comparators]
        unit = "per 10x params" if axis == "size" else "per block"
        parts.append(f"{axis} ({inr}/{len(pts)} points in regime; slope {unit}): " + ", ".join(per))
    return "; ".join(parts) + f"; {ev['extrapolation']['decades']:.1f} decades below a 7B LLM"


def _caveats(preset: str, p: dict, ev: dict, lrs: dict, bundle) -> list[str]:
    t = p["train"]
    out = [ev["extrapolation"].get("warning", "no model was sized")]
    if all(len(v) == 1 for v in p["lrs"].values()):
        out.append("one a-priori learning rate per axis (" + ", ".join(
            f"{a} {v[0]:g}" for a, v in p["lrs"].items()) + "), not tuned per activation: the "
            "budget of this preset does not hold the tuning runs; --preset standard tunes each")
    edge = sorted(k for k, v in lrs.items() if v["at_edge"])
    if edge:
        out.append("best rate still on the grid's edge after growing it for: "
                   + ", ".join("/".join(map(str, k)) for k in edge))
    for axis in AXES:
        pts = ev[axis]["points"]
        out_pts = [f"{pt['label']} (GELU {pt['regime']['reference_loss']:.3f})"
                   for pt in pts if not pt["in_regime"]]
        if out_pts:
            out.append(f"{axis} axis: out of regime, excluded from the fit: {', '.join(out_pts)} "
                       f"vs trigram {ev['baselines'].get(regime.BAR, math.nan):.3f}; "
                       f"{regime.hint_for(preset)}")
    if preset in ("smoke", "quick"):
        std = PRESETS["standard"]
        out.append(f"{preset} ladder: size {', '.join(pt['label'] for pt in ev['size']['points'])} "
                   f"at {p['size']['ratio']:g} tokens/parameter, depth "
                   f"{', '.join(pt['label'] for pt in ev['depth']['points'])} for only "
                   f"{p['depth']['steps']} steps, {len(p['seeds'])} seeds; --preset standard "
                   f"trains {', '.join(f'{a}x{b}' for a, b in std['size']['shapes'])} and the "
                   f"depth ladder for {std['depth']['steps']} steps, with tuned rates and "
                   f"{len(std['seeds'])} seeds")
    if ev["not_completed"]:
        out.append("runs that did not complete (their pairs enter no fit): " + ", ".join(
            f"{k} {'/'.join(map(str, v))}" for k, v in sorted(ev["not_completed"].items())))
    out += [
        f"{bundle.name} ({bundle.tokenizer.kind} tokens), batch {t['batch_size']} x "
        f"{t['block_size']} tokens; character-level models of at most "
        f"{ev['extrapolation']['largest_params']:,} non-embedding parameters",
        f"each slope's 95% interval is its own ({len(AXES) * len(ev['comparators'])} slopes "
        "are read, with no multiplicity correction)",
    ]
    return out
