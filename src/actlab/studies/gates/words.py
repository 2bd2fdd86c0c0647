"""The words of study C5's verdict (gates): the summary line and the caveats, from the evidence
dict that study.evidence_from builds. Out of regime they name the reason and rank nothing.
"""

from __future__ import annotations

from actlab.analysis import regime
from actlab.analysis.numbers import num


def _fmt(c: dict) -> str:
    return f"{num(c['diff']):+.3f} [{num(c['lo']):+.3f}, {num(c['hi']):+.3f}]"


def summary_line(ev: dict) -> str:
    """One line for the verdict table: the rule's four roles and the no-bias ablation, or, out
    of regime, why there is no ranking."""
    if not ev["regime"]["in_regime"]:
        return regime.out_of_regime_summary(ev["regime"])
    c = ev["comparisons"]
    parts = [("GLU-GELU", "glu_vs_gelu"), ("σ out-gate-matched", "out_gate_vs_matched"),
             ("σ FFN-GELU", "sigmoid_ffn_vs_gelu"), ("σ attn-softmax", "sigmoid_attn_vs_softmax"),
             ("no-bias σ attn-softmax", "sigmoid_attn_nobias_vs_softmax")]
    text = "; ".join(f"{label} {_fmt(c[k])} ({c[k]['status']}{', helps' if c[k]['helps'] else ''})"
                     for label, k in parts)
    router = c["moe_router"]
    return (f"final val loss diffs (nats, 95% CI): {text}; beside the verdict, MoE σ router-softmax "
            f"router {_fmt(router)} ({router['status']}{', helps' if router['helps'] else ''})")


def _load(load: dict | None) -> str:
    """A variant's mean final expert load, e.g. "0.31/0.22/0.25/0.22" (fractions, sum 1)."""
    final = (load or {}).get("final") or []
    return "/".join(f"{x:.2f}" for x in final) if final else "not measured"


def caveats(ev: dict, preset_name: str) -> list[str]:
    """What limits the verdict: the regime, learning-rate policy, parameter counts, what is not
    tested; in regime, every variant that stays above a baseline the reference beats."""
    v, c, reg = ev["variants"], ev["comparisons"], ev["regime"]
    ranked = reg["in_regime"]  # out of regime no difference is quoted, not even in a caveat
    unmatched = f" Unmatched: {_fmt(c['out_gate_vs_softmax'])}." if ranked else ""
    swiglu = f" (GLU-SwiGLU {_fmt(c['glu_vs_swiglu'])})" if ranked else ""
    n_e, k = ev["moe_router"]["shape"]["n_experts"], ev["moe_router"]["shape"]["top_k"]
    out = [] if ranked else [
        f"Out of regime ({reg['reason']}): the comparisons and role statuses in the evidence "
        "are recorded, not judged."]
    out += [
        ("Learning rate per variant: best of a small grid on a held-out tuning seed."
         if len(ev["lr_grid"]) > 1 else
         f"One learning rate ({ev['lr_grid'][0]:g}) shared by every variant, fixed before the "
         "runs; a variant whose best rate lies elsewhere is handicapped (the full preset tunes "
         "per variant)."),
        f"Output gate: {v['out_gate']['n_params']} parameters vs {v['gelu']['n_params']} for the "
        f"plain softmax model; the rule compares it with the param-matched 4.5x MLP model "
        f"({v['gelu_wide']['n_params']}).{unmatched}",
        "GLU vs the other gates is reported, not judged: SwiGLU's gate is itself x·σ(x), so "
        f"sigmoid sits inside the modern default too{swiglu}.",
        f"MoE router (beside the verdict): one MoE FFN per block, {n_e} GELU experts of 1/{n_e} "
        f"of the dense width, top-{k}, all experts computed and the unchosen masked ({k}/{n_e} of "
        "the expert weights active per token); no load-balancing loss. Final expert loads (fraction of "
        f"assignments, mean over seeds): softmax router {_load(v['moe_softmax'].get('expert_load'))}"
        f", σ router {_load(v['moe_sigmoid'].get('expert_load'))}."
        + (f" MoE (softmax router) vs the dense GELU FFN: {_fmt(c['moe_vs_gelu'])}." if ranked else ""),
        "Not tested: LSTMs.",
        "One corpus (Shakespeare, characters) and small models; orderings can change with scale.",
    ]
    out += regime.findings(ev["vs_baselines"], reg)
    for name, var in v.items():
        if var["diverged"] or var["errors"]:
            out.append(f"{name}: {var['diverged']} diverged, {var['errors']} failed run(s) of "
                       f"{var['seeds']} (left out of the paired tests; a divergence counts as a "
                       "failure of the role).")
    if preset_name != "full":
        out.append(f"Preset {preset_name!r}: tiny models and short runs, so the final loss also "
                   "measures early training speed; the full preset is the one to quote.")
    return out
