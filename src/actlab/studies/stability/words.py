"""The verdict's words for study C7: its one-line summary and its caveats, from the numbers the
study computed (nothing here decides anything)."""

from __future__ import annotations

import math

from actlab.analysis import regime
from actlab.studies.stability.presets import ACTS

UNITS = {"faster": ("CPU-s to target", "{:.1f}"), "sensitivity": ("decades of rates", "{:.2f}"),
         "divergences": ("unstable grid runs", "{:.0f}"), "spread": ("nats over seeds", "{:.3f}")}


def fmt(value, pattern: str) -> str:
    """A number for the summary: 'never' for +inf (not reached / a seed diverged), 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf"
    return pattern.format(value)


def summary_line(parts: dict, comps: dict, per_act: dict, target: float | None, reg: dict) -> str:
    """Each part's outcome with sigmoid's statistic and the comparators'."""
    if not reg["in_regime"]:  # no comparison from models below the count tables
        return regime.out_of_regime_summary(reg)
    out = []
    for part, outcome in parts.items():
        unit, pattern = UNITS[part]
        rows = comps.get(part) or {}
        if not rows:
            out.append(f"{part}: {outcome}")
            continue
        sig = fmt(next(iter(rows.values()))["sigmoid"], pattern)
        others = ", ".join(f"{c} {fmt(v['other'], pattern)}" for c, v in rows.items())
        out.append(f"{part}: {outcome} ({unit}: sigmoid {sig} vs {others})")
    head = f"target {target:.3f} nats; " if target is not None else ""
    return head + "; ".join(out)


def caveats(p: dict, per_act: dict, top: dict | None, bundle) -> list[str]:
    """What limits the verdict: sizes, seeds, the grid, shared CPUs, and what went wrong."""
    t, m = p["train"], p["model"]
    out = [] if set(ACTS) <= set(p["acts"]) else [
        f"this preset compares {len(p['acts'])} of the {len(ACTS)} activations "
        f"({', '.join(p['acts'])}); the rest need a larger budget (--preset standard)"]
    out += [
        "the rule was revised twice after the study's first quick run on the bundled corpus "
        "(widths within half a grid step count as equal; a part's outcome made symmetric, with "
        "'mixed' between 'worse' and 'better'); under the first wording those runs read NOT "
        "SUPPORTED: a verdict on those seeds is provisional until other seeds or texts agree",
        f"tiny models ({m['n_layer']} layer{'s' if m['n_layer'] > 1 else ''}, width "
        f"{m['n_embd']}), {bundle.name} ({bundle.tokenizer.kind} tokens), {t['steps']} steps of "
        f"{t['batch_size']}x{m['block_size']} tokens",
        f"one tuning seed per grid rate and {len(p['seeds'])} evaluation seeds: the sensitivity "
        "width moves in whole grid steps, and a range over few seeds is itself noisy",
        "CPU-seconds come from shared cores: contention slows a run's CPU time too (caches, "
        "memory bandwidth), less than its wall clock; compare ratios, not absolute values",
    ]
    if top is not None and not top["degraded"]:
        out.append(f"GELU neither goes unstable nor degrades by 10% at the grid's top rate "
                   f"({top['lr']:g}: {top['loss']:.3f} vs best {top['best_loss']:.3f}): the grid "
                   "may not reach the rates where training breaks")
    edge = sorted(a for a, r in per_act.items() if r["grid"]["lrs"] and r["lr"] in
                  (r["grid"]["lrs"][0], r["grid"]["lrs"][-1]))
    if edge:
        out.append(f"best rate on the grid's edge for: {', '.join(edge)} (a rate outside the grid "
                   "may be better, and the usable range may extend past the edge)")
    never = sorted(a for a, r in per_act.items() if not r["to_target"] or
                   all(h["steps"] is None for h in r["to_target"]))
    if never:
        out.append(f"never reached the target loss: {', '.join(never)} (their time to target "
                   "counts +inf)")
    errors = {a: r["grid"]["errors"] + r["n_eval_errors"] for a, r in per_act.items()
              if r["grid"]["errors"] + r["n_eval_errors"]}
    if errors:
        out.append("failed jobs (left out; run the study again to retry them): "
                   + ", ".join(f"{a} {n}" for a, n in errors.items()))
    return out
