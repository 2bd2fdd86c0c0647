"""The regime rule (analysis.regime) in `actlab compare`: a ranking speaks about the candidates
in a transformer only once its reference has learned more than the text's n-gram counts.

compare is a user tool, so a ranking out of regime is still written, but marked: in_regime is
false in ranking.json and a one-line warning follows the printed table.
"""
from __future__ import annotations

import math

from actlab.analysis import regime

# The budget is compare's only lever on training length.
HINT = "train longer: a larger --budget, or fewer activations or seeds"


def regime_keys(summary: dict[str, dict], order: list[str], baselines: dict | None) -> tuple[dict, list[str]]:
    """(ranking.json's regime keys, the notes they add) from the per-activation summary
    (analysis.ranking.summarize: "losses" per seed), the ranking order (best first) and the
    corpus baselines of the data the runs trained on.

    The reference is gelu when it is a candidate; otherwise the best-ranked candidate, which
    judges the regime more leniently than the rule's GELU reference would, so a note says so."""
    ref = regime.REFERENCE_ACT if regime.REFERENCE_ACT in summary else order[0]
    losses = {a: summary[a]["losses"] for a in order}
    reg = regime.regime(losses[ref], baselines, HINT)
    notes = []
    if ref != regime.REFERENCE_ACT:
        reg["reference"] = f"{ref} FFN, softmax attention, softmax head"
        notes.append(f"the GELU reference was not run (gelu is no candidate): the regime is "
                     f"judged on {ref}, the best-ranked candidate")
    vs = regime.versus_baselines(losses, baselines)
    notes += regime.findings(vs, reg)
    warning = None if reg["in_regime"] else (
        f"warning: out of regime ({reg['reason']}): the models have not learned more than a "
        "trigram count table of this text, so this ranking says nothing about the activations "
        "in a trained transformer")
    return {"baselines": baselines, "reference_act": ref, "in_regime": reg["in_regime"],
            "regime": reg, "vs_baselines": vs, "warning": warning}, notes


def regime_lines(ranking: dict) -> list[str]:
    """The baselines in one line beside the table, then the warning where out of regime."""
    base = ranking.get("baselines")
    if "in_regime" not in ranking:  # a ranking written before the regime rule
        return []
    lines = []
    if base:
        cells = ", ".join(f"{o} {base[o]:.4f}" for o in regime.ORDERS)
        reg = ranking["regime"]
        ref = reg["reference_loss"]
        ref_text = f"{ref:.4f}" if ref is not None and math.isfinite(ref) else "none"
        lines.append(f"n-gram baselines of the validation split (nats/token): {cells}; reference "
                     f"{ranking['reference_act']} median {ref_text}: "
                     + ("in regime" if ranking["in_regime"] else "out of regime"))
    if ranking.get("warning"):
        lines.append(ranking["warning"])
    return lines
