"""The regime rule: a comparison of activations speaks about transformers only once its models
have learned more than a table of n-gram counts (the corpus baselines of data/baselines.py).

Written before any run, applied by every training-based study and by `actlab compare`:

    A setting is in regime when the median final validation loss of its reference configuration
    (GELU FFN, softmax attention, softmax head, the setting's own size and budget) is below the
    corpus's trigram baseline. Outside the regime the verdict is INCONCLUSIVE with the reason in
    words, never a ranking.

The evidence records, per activation, its median final loss against each baseline; a candidate
that stays above a baseline while the reference is in regime is a finding, reported as such.
"""
from __future__ import annotations

import math
import statistics

from actlab.config import PRESET_NAMES

ORDERS = ("unigram", "bigram", "trigram")
REFERENCE_ACT = "gelu"
REFERENCE = "GELU FFN, softmax attention, softmax head"
BAR = "trigram"
RULE = (
    f"Regime: a setting is in regime when the median final validation loss of its reference "
    f"configuration ({REFERENCE}) is below the corpus's {BAR} baseline (an interpolated "
    "Kneser-Ney count model fitted on the training split, scored on the validation split); "
    "out of regime the verdict is INCONCLUSIVE, never a ranking."
)
HINT = "train longer, e.g. a larger --preset"


def hint_for(preset_name: str) -> str:
    """The out-of-regime advice for a run of `preset_name`: the next larger preset, which the
    largest (full) does not have."""
    larger = PRESET_NAMES[PRESET_NAMES.index(preset_name) + 1:] if preset_name in PRESET_NAMES else ()
    return f"train longer, e.g. --preset {larger[0]}" if larger else "train longer than the full preset"


def median_final(losses) -> float:
    """Median of the finite losses (NaN when there is none)."""
    finite = [float(v) for v in losses or [] if v is not None and math.isfinite(float(v))]
    return statistics.median(finite) if finite else math.nan


def regime(reference_losses, baselines: dict | None, hint: str = HINT) -> dict:
    """{"in_regime", "reference_loss" (median), "bar" (the trigram baseline), "baselines",
    "reason"}: the rule above for one setting. No baselines or no finite reference run is
    out of regime, with the reason saying which."""
    ref = median_final(reference_losses)
    base = {o: baselines[o] for o in ORDERS} if baselines else None
    out = {"reference": REFERENCE, "reference_loss": ref, "bar": BAR,
           "bar_loss": base[BAR] if base else None, "baselines": base}
    if base is None:
        return {**out, "in_regime": False, "reason": "no corpus baselines were recorded"}
    if not math.isfinite(ref):
        return {**out, "in_regime": False,
                "reason": f"no finite final loss of the reference ({REFERENCE})"}
    if ref < base[BAR]:
        return {**out, "in_regime": True, "reason": None}
    return {**out, "in_regime": False,
            "reason": f"reference {ref:.2f} nats vs {BAR} {base[BAR]:.2f}: {hint}"}


def versus_baselines(losses: dict[str, list], baselines: dict | None) -> dict[str, dict]:
    """Per activation: its median final loss, the margin to each baseline (loss - baseline,
    negative = below it) and the baselines it is below."""
    out = {}
    for act, values in losses.items():
        med = median_final(values)
        row = {"median_loss": med}
        if baselines:
            for o in ORDERS:
                row[f"minus_{o}"] = med - baselines[o] if math.isfinite(med) else math.nan
            row["below"] = [o for o in ORDERS if math.isfinite(med) and med < baselines[o]]
        out[act] = row
    return out


def findings(vs: dict[str, dict], reg: dict) -> list[str]:
    """With the reference in regime: every activation whose median stays above a baseline,
    in words (the highest baseline it fails to beat)."""
    if not reg.get("in_regime") or not reg.get("baselines"):
        return []
    notes = []
    for act, row in vs.items():
        above = [o for o in ORDERS if o not in row.get("below", [])]
        if above and math.isfinite(row["median_loss"]):
            worst = above[0]  # the lowest order it does not beat: unigram before bigram
            notes.append(f"{act} stays above the {worst} baseline ({row['median_loss']:.3f} vs "
                         f"{reg['baselines'][worst]:.3f} nats) while the reference is in regime")
        elif not math.isfinite(row["median_loss"]):
            notes.append(f"{act} has no finite final loss while the reference is in regime")
    return notes


def out_of_regime_summary(reg: dict) -> str:
    """The verdict line of a setting out of regime."""
    return f"out of regime ({reg['reason']}): INCONCLUSIVE, no ranking"
