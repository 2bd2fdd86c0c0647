"""Study C2: do sigmoid's all-positive outputs bias weight updates, zig-zag descent and slow it?

The article's argument is LeCun, Bottou, Orr & Müller 1998 (Efficient BackProp, section 4.3):
for one example the gradient of row i of a weight matrix is delta_i * a, so when every input
a_j is positive (as after a sigmoid) all weights of a row must move up together or down
together, and reaching a target with mixed signs takes a zig-zag. We measure each link of that
chain on a plain deep MLP (no residual, no norm) and on a small pre-LN GPT, trained with plain
SGD and with AdamW:

    premise     mean activation per layer (sigmoid's is about 1/2, the centred ones' about 0)
    mechanism   sign coherence of the consuming Linear's per-example gradient rows, and the
                straightness ||θ_T - θ_0|| / Σ||θ_{t+1} - θ_t|| of the consuming weights' path
    outcome     final validation loss at a fixed budget (and the mean training loss, i.e. the
                area under the loss curve, as a secondary measure of speed)

The clean ablation is sigmoid vs sigmoid_centered (σ - ½): same shape, same slope (max 1/4),
same saturation, only the mean differs. Every consuming Linear has a bias, so both networks
represent exactly the same functions (W σ(x) + b = W (σ(x) - ½) + (b + W ½)): any difference
between them is optimisation, which is what the claim is about. tanh = 2σ(2x) - 1 is reported
too, but its slope at 0 is 1 instead of 1/4, so a sigmoid vs tanh gap mixes centring with slope.

Learning rates: a small grid per (model, optimizer), and each activation gets the grid point
with the lowest final loss on a tuning seed that is not one of the evaluation seeds (a grid of
one point means a rate fixed a priori for every activation); a best rate on the grid's edge
grows that grid one step beyond it, up to three steps (common.grow_grids). Tuning per activation keeps the
comparison from handicapping one activation with a rate chosen for another, and the held-out
seed keeps the selection's noise out of the paired tests.

The regime rule (analysis/regime.py): every setting also trains its reference, the same model
with GELU (the GPT's FFN; the MLP's hidden layers, under the He init it gets by default), at the
same size, optimizer, steps and seeds, its rate tuned from the same grid on the same tuning
seed. Its median final loss against the corpus's trigram baseline says whether the setting's
models have learned more than a table of counts; a setting that has not can neither support
nor refute the claim. The GELU runs enter no comparison: they are the regime check and a row
of the baseline table only.

One run is `runs.run_one`; figures live in `figures.py`; the analysis here
and the figures read only what `run_grid` returned.
"""

from __future__ import annotations

import math

from actlab.analysis import regime
from actlab.analysis.numbers import finite_mean, num
from actlab.article.claims import CLAIMS
from actlab.article.verdicts import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from actlab.analysis.stats import mean_ci, paired_test
from actlab.studies import common
from actlab.studies.base import Verdict, check_preset, register_study
from actlab.studies.centering.presets import PRESETS, SETTINGS, settings_of
from actlab.studies.centering.runs import run_one
from actlab.engine.sweep import run_grid

STUDY = "centering"
ACTS = ("sigmoid", "sigmoid_centered", "tanh")
# Every setting also trains the regime reference; it never enters the comparisons.
REF = regime.REFERENCE_ACT
RUN_ACTS = (*ACTS, REF)
OUT = "out of regime"  # a setting's outcome when its reference is not below the trigram

# A final-loss difference inside ±MARGIN nats counts as no practical difference: 1% in
# perplexity is about the seed-to-seed spread of these small runs, and far below what
# "slowing convergence" would have to mean to matter when choosing an activation.
MARGIN = 0.01


# Written before any run of this study and never adjusted after (see `decide`).
RULE = (
    "For each setting (plain MLP and GPT, each with SGD and with AdamW), compare sigmoid with "
    "sigmoid_centered (σ-½: same shape and saturation, centred) paired over seeds (same init and "
    "data order), 95% CI of the difference sigmoid - centred. Mechanism: sign coherence of the "
    "consuming layer's per-example gradient rows higher (CI > 0) AND path straightness of the "
    "consuming weights lower (CI < 0). Final validation loss: 'worse' if CI > 0, 'better' if "
    f"CI < 0, 'equivalent' if the CI lies within ±{MARGIN} nats, else 'unresolved'. "
    "SUPPORTED: mechanism and 'worse' in all four settings. SUPPORTED WITH CAVEAT: 'worse' in "
    "at least one setting but not SUPPORTED. NOT SUPPORTED: 'worse' nowhere, and 'better' "
    "somewhere or 'equivalent' everywhere. INCONCLUSIVE: otherwise (unresolved without a "
    "significant difference either way). " + regime.RULE + " Here each setting is judged "
    "on its own; its reference is the same model with GELU (for the MLP: GELU hidden layers and "
    "a softmax head), same size, optimizer, steps and evaluation seeds, its learning rate tuned "
    "from the same grid on the same tuning seed, and it enters no comparison. A setting out of "
    f"regime has the outcome '{OUT}', which is none of 'worse', 'better' or 'equivalent': it "
    "supports and refutes nothing, so SUPPORTED and 'equivalent everywhere' need all four "
    "settings in regime, 'worse' and 'better' count only in settings in regime, and with every "
    "setting out of regime the verdict is INCONCLUSIVE. A setting a preset does not train "
    "counts as out of regime."
)

# -- the grid ------------------------------------------------------------------------------

def _job(preset: dict, setting: str, act: str, lr: float, seed: int, phase: str,
         corpus: dict | None = None) -> dict:
    model, optimizer = setting.split("/")
    return {"phase": phase, "model": model, "optimizer": optimizer, "act": act, "lr": lr,
            "seed": seed, "size": preset[model], "every": preset["every"], **(corpus or {})}


def _group(p: dict) -> tuple[str, str]:
    return f"{p['model']}/{p['optimizer']}", p["act"]


def tune(preset: dict, out_dir, progress: bool, corpus: dict | None = None) -> dict:
    """{(setting, act): common.pick_lrs' choice (lowest final loss on the tuning seed, a
    diverged run +inf, ties to the smaller rate)} for the settings with a grid of several
    rates, an edge best growing its grid one step at a time (common.grow_grids)."""
    grids = {(s, a): preset["lrs"][s] for s in settings_of(preset) for a in RUN_ACTS
             if len(preset["lrs"][s]) > 1}

    def run_and_pick(grids: dict) -> dict:
        jobs = [_job(preset, s, a, lr, common.TUNE_SEED, "tune", corpus) for (s, a), lrs in grids.items()
                for lr in lrs]
        return common.pick_lrs(run_grid(STUDY, jobs, run_one, out_dir, progress=progress), _group, grids)

    return common.grow_grids(grids, run_and_pick) if grids else {}


def chosen_lrs(preset: dict, tuning: dict) -> dict:
    """{setting: {act: lr}}: the tuned rate, or the one rate of a one-point grid."""
    return {s: {a: tuning[(s, a)]["lr"] if (s, a) in tuning else preset["lrs"][s][0]
                for a in RUN_ACTS} for s in settings_of(preset)}


def eval_jobs(preset: dict, lrs: dict, corpus: dict | None = None) -> list[dict]:
    return [_job(preset, s, a, lrs[s][a], seed, "eval", corpus) for s in settings_of(preset)
            for a in RUN_ACTS for seed in preset["seeds"]]


# -- evidence and the decision ---------------------------------------------------------------

def _paired(runs: dict, a: str, b: str, key) -> dict:
    """Paired test of key(run) for activation a minus b over the seeds both have finite."""
    seeds = sorted(set(runs[a]) & set(runs[b]))
    pairs = [(key(runs[a][s]), key(runs[b][s])) for s in seeds]
    pairs = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
    return paired_test([x for x, _ in pairs], [y for _, y in pairs])


def setting_evidence(results: list[dict], setting: str, baselines: dict | None,
                     hint: str = regime.HINT) -> dict:
    """The numbers of one (model, optimizer) from stored evaluation results, with its regime
    (the GELU reference's median final loss against `baselines`, the corpus's n-gram losses)
    and every activation's final loss against each baseline."""
    runs: dict[str, dict[int, dict]] = {a: {} for a in RUN_ACTS}
    for r in results:
        p = r["params"]
        if p["phase"] == "eval" and f"{p['model']}/{p['optimizer']}" == setting:
            runs[p["act"]][p["seed"]] = r
    measures = {
        "final_loss": lambda r: num(r.get("final_loss")),
        "mean_train_loss": lambda r: num(r.get("mean_train_loss")),
        "coherence": lambda r: finite_mean(r.get("coherence")),
        "straightness": lambda r: num(r.get("straightness")),
        "straightness_all": lambda r: num(r.get("straightness_all")),
        "act_mean": lambda r: finite_mean(r.get("act_mean")),
    }
    ev: dict = {"lr": {a: next(iter(runs[a].values()))["params"]["lr"] if runs[a] else None
                       for a in RUN_ACTS},
                # diverged, or failed with an error (run_grid records those as outcome "error")
                "not_completed": {a: sum(r.get("outcome") != "completed" for r in runs[a].values())
                                  for a in RUN_ACTS}}
    for name, key in measures.items():
        # the reference's final loss belongs to the baseline table; its probes to nothing
        acts = RUN_ACTS if name == "final_loss" else ACTS
        ev[name] = {a: mean_ci([key(r) for r in runs[a].values()]) for a in acts}
    for name in ("final_loss", "mean_train_loss", "coherence", "straightness"):
        ev[f"{name}_diff"] = _paired(runs, "sigmoid", "sigmoid_centered", measures[name])
    ev["final_loss_diff_vs_tanh"] = _paired(runs, "sigmoid", "tanh", measures["final_loss"])
    finals = {a: [r.get("final_loss") for r in runs[a].values()] for a in RUN_ACTS}
    ev["regime"] = regime.regime(finals[REF], baselines, hint)
    ev["vs_baselines"] = regime.versus_baselines(finals, baselines)
    return ev


def all_settings(results: list[dict], baselines: dict | None, hint: str = regime.HINT,
                 names: tuple[str, ...] = SETTINGS) -> dict:
    """{setting: evidence} for the settings `names` (a preset's settings_of), with each one's
    loss outcome and mechanism, as run() stores it."""
    settings = {s: setting_evidence(results, s, baselines, hint) for s in names}
    for ev in settings.values():
        ev["loss_outcome"] = loss_outcome(ev["final_loss_diff"])
        ev["mechanism"] = mechanism(ev)
        ev["rule_outcome"] = rule_outcome(ev)
    return settings


def in_regime(ev: dict) -> bool:
    """Whether a setting's evidence records its reference below the trigram baseline (a setting
    with no regime check recorded has not shown it, so it is out)."""
    return bool((ev.get("regime") or {}).get("in_regime"))


def rule_outcome(ev: dict) -> str:
    """The outcome RULE reads: the loss outcome in regime, OUT otherwise."""
    return loss_outcome(ev["final_loss_diff"]) if in_regime(ev) else OUT


def loss_outcome(diff: dict, margin: float = MARGIN) -> str:
    """'worse' / 'better' for sigmoid when the CI of sigmoid - centred excludes 0,
    'equivalent' when it lies within ±margin, else 'unresolved' (NaN bounds: unresolved)."""
    lo, hi = num(diff.get("lo")), num(diff.get("hi"))
    if lo > 0:
        return "worse"
    if hi < 0:
        return "better"
    if lo >= -margin and hi <= margin:
        return "equivalent"
    return "unresolved"


def mechanism(ev: dict) -> bool:
    """Sigmoid's rows more single-signed AND its consuming weights' path less straight."""
    return num(ev["coherence_diff"].get("lo")) > 0 and num(ev["straightness_diff"].get("hi")) < 0


def decide(settings: dict[str, dict]) -> str:
    """Apply RULE to {setting: evidence}; reads coherence_diff, straightness_diff and
    final_loss_diff (each a paired_test dict) and the regime of every setting.

    Why this shape: the claim has a mechanism part (positive outputs -> single-signed update
    rows -> a less straight path) and an outcome part (slower convergence). The article states
    both without conditions, so SUPPORTED needs both everywhere; a penalty in only some settings
    (e.g. SGD but not AdamW, whose per-coordinate scaling can undo a shared sign) is the caveat;
    a significant reversal anywhere, or equivalence everywhere, contradicts a general claim.
    A setting out of regime has the outcome OUT, which matches none of 'worse', 'better' or
    'equivalent': models no better than a trigram table say nothing about the claim, so they
    can neither complete an "everywhere" nor supply a penalty or a reversal.
    """
    # A setting the preset did not train counts as out of regime: it completes no "everywhere".
    outcomes = {s: OUT for s in SETTINGS} | {s: rule_outcome(ev) for s, ev in settings.items()}
    worse = [s for s, o in outcomes.items() if o == "worse"]
    if worse and len(worse) == len(outcomes) and all(mechanism(ev) for ev in settings.values()):
        return SUPPORTED
    if worse:
        return CAVEAT
    if "better" in outcomes.values() or all(o == "equivalent" for o in outcomes.values()):
        return NOT_SUPPORTED
    return INCONCLUSIVE


def _fmt(d: dict, digits: int = 3) -> str:
    keys = ("diff", "lo", "hi") if "diff" in d else ("mean", "lo", "hi")
    m, lo, hi = (num(d.get(k)) for k in keys)
    return f"{m:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _reason(ev: dict) -> str:
    return (ev.get("regime") or {}).get("reason") or "no regime check recorded"


def _joint_regime(settings: dict) -> dict:
    """One regime dict for settings that are all out: each setting's reason, the hint they
    share (the text after the last ': ') said once at the end."""
    reasons = {s: _reason(ev) for s, ev in settings.items()}
    tail = ": " + next(iter(reasons.values())).rpartition(": ")[2]
    if all(r.endswith(tail) for r in reasons.values()):
        joined = "; ".join(f"{s} {r[: -len(tail)]}" for s, r in reasons.items()) + tail
    else:
        joined = "; ".join(f"{s} {r}" for s, r in reasons.items())
    return {"in_regime": False, "reason": joined}


def summary_line(settings: dict) -> str:
    """The verdict table's line: sigmoid - centred in each setting in regime, the reason for
    each one out of it, and no ranking at all when every setting is out."""
    if not any(in_regime(ev) for ev in settings.values()):
        return regime.out_of_regime_summary(_joint_regime(settings))
    parts = [f"{s} {_fmt(ev['final_loss_diff'])} ({ev['loss_outcome']})" if in_regime(ev)
             else f"{s} {OUT} ({_reason(ev)})"
             for s, ev in settings.items()]
    coh = settings.get("mlp/sgd", next(iter(settings.values())))["coherence"]
    return ("sigmoid - centred final loss: " + "; ".join(parts) +
            f"; coherence {num(coh['sigmoid']['mean']):.2f} vs "
            f"{num(coh['sigmoid_centered']['mean']):.2f}")


def _caveats(settings: dict, preset_name: str, preset: dict) -> list[str]:
    out = [
        "Sign coherence of sigmoid is 1 by construction (all inputs of the consuming layer are "
        "positive), so it confirms the premise; what the study tests is whether it matters.",
        "Every consuming Linear has a bias, so sigmoid and sigmoid_centered networks represent "
        "the same functions: differences are optimisation only.",
        "tanh has 4x sigmoid's slope at 0; sigmoid vs tanh mixes centring with slope "
        "(reported, not used by the rule).",
        f"The GELU runs of each setting are its regime reference ({regime.REFERENCE}; for the "
        "MLP, GELU hidden layers and a softmax head) and a row of the baseline table; they "
        "enter no comparison.",
        "Learning rate per activation: best of a small grid on a held-out tuning seed"
        if any(len(v) > 1 for v in preset["lrs"].values()) else
        "One learning rate per (model, optimizer), fixed a priori for every activation",
    ]
    missing = [s for s in SETTINGS if s not in settings]
    if missing:
        out.append(f"Preset {preset_name!r} does not train {', '.join(missing)} (out of the "
                   "regime at this budget); the rule counts it as out of regime.")
    for s, ev in settings.items():
        n_bad = sum(ev["not_completed"].values())
        if n_bad:
            out.append(f"{s}: {n_bad} evaluation run(s) diverged or failed and were left out.")
        edge = ev.get("lr_at_edge", [])
        if edge:
            out.append(f"{s}: the learning rate chosen for {', '.join(edge)} lies at the edge of "
                       "its grid after growing it; a wider grid might change that comparison"
                       f"{' or the regime check' if REF in edge else ''}.")
        if not in_regime(ev):
            out.append(f"{s}: {OUT} ({_reason(ev)}); its comparison counts for no verdict.")
            continue
        out += [f"{s}: {note}" for note in regime.findings(ev["vs_baselines"], ev["regime"])]
        d = ev["final_loss_diff"]
        if ev["loss_outcome"] in ("worse", "better") and abs(num(d.get("diff"))) < MARGIN:
            out.append(f"{s}: sigmoid is significantly {ev['loss_outcome']} but by less than "
                       f"{MARGIN} nats ({_fmt(d)}): a real but negligible difference.")
        if not mechanism(ev):
            out.append(f"{s}: the mechanism (higher coherence AND less straight path) did not "
                       f"both show: coherence diff {_fmt(ev['coherence_diff'])}, straightness "
                       f"diff {_fmt(ev['straightness_diff'])}.")
    if preset_name != "full":
        out.append(f"Preset {preset_name!r}: tiny models and short runs; the full preset is the "
                   "one to quote.")
    return out


@register_study(STUDY, "C2")
def run(preset: str = "quick", out_dir="results/centering", progress: bool = True, *,
        data: str | None = None, tokenizer: str = "char") -> Verdict:
    """C2: do sigmoid's positive outputs bias updates, zig-zag descent and slow convergence?"""
    from actlab.studies.centering.figures import draw_all

    cfg = PRESETS[check_preset(preset)]
    corpus = common.corpus_keys(data, "char")  # character-level models (common.char_only)
    bundle = common.gpt_data(cfg["gpt"]["block_size"], corpus.get("data"), "char")  # checked first
    tuning = tune(cfg, out_dir, progress, corpus)
    lrs = chosen_lrs(cfg, tuning)
    results = run_grid(STUDY, eval_jobs(cfg, lrs, corpus), run_one, out_dir, progress=progress)
    # The MLP task reads the same corpus, split and character tokenizer as the GPT, so one
    # set of baselines serves every setting.
    baselines = bundle.baselines()
    settings = all_settings(results, baselines, regime.hint_for(preset), settings_of(cfg))
    for s, ev in settings.items():  # the grids as tuned, grown past an edge where it was needed
        ev["lr_grid"] = {a: tuning[(s, a)]["lrs"] for a in RUN_ACTS if (s, a) in tuning}
        ev["lr_at_edge"] = [a for a in RUN_ACTS if tuning.get((s, a), {}).get("at_edge")]
    verdict = decide(settings)
    figures = draw_all(results, settings, out_dir, ACTS)
    evidence = {"margin": MARGIN, "seeds": list(cfg["seeds"]), "tune_seed": common.TUNE_SEED,
                "lr_grid": {s: list(v) for s, v in cfg["lrs"].items()}, "baselines": baselines,
                "reference": {"act": REF, "what": regime.REFERENCE, "bar": regime.BAR},
                "settings": settings, "corpus": common.corpus_record(bundle, corpus.get("data"))}
    return Verdict(claim="C2", quote=CLAIMS["C2"].quote, rule=RULE, verdict=verdict,
                   evidence=evidence, figures=figures, preset=preset, study=STUDY,
                   summary=summary_line(settings), caveats=_caveats(settings, preset, cfg) + common.char_only("C2", tokenizer))
