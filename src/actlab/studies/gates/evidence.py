"""Evidence of study C5 (gates) per variant and per paired comparison, from the results run_grid
stored: final losses with CIs, outcomes, parameter counts and the probes' summaries (attention
row sums, output-gate means, MoE expert loads). Plain functions of stored dicts, so the study
and its tests build evidence without training anything.
"""

from __future__ import annotations

import math

import numpy as np

from actlab.analysis.numbers import num
from actlab.analysis.stats import mean_ci, paired_test


def mean_list(lists: list[list]) -> list[float]:
    """Elementwise mean of the non-empty lists, cut to the shortest (per-position probes)."""
    lists = [x for x in lists if x]
    if not lists:
        return []
    width = min(len(x) for x in lists)
    return np.mean([x[:width] for x in lists], axis=0).tolist()


def variant_evidence(runs: dict[int, dict]) -> dict:
    """Final loss with CI, outcomes, parameter count and probe summaries of one variant."""
    done = [r for r in runs.values() if r.get("outcome") == "completed"]
    ev = {
        "final_loss": mean_ci([num(r["final_loss"]) for r in done]),
        "seeds": len(runs), "diverged": sum(r.get("outcome") == "diverged" for r in runs.values()),
        "errors": sum(r.get("outcome") == "error" for r in runs.values()),
        "n_params": next((r["n_params"] for r in runs.values() if r.get("n_params")), None),
        "lr": next((r["params"]["lr"] for r in runs.values()), None),
    }
    inits = [r.get("probe_init") or {} for r in runs.values()]
    finals = [r.get("probe_final") or {} for r in done]
    if any("row_sum_mean" in p for p in inits):
        ev["row_sum"] = {
            "init": mean_ci([p["row_sum_mean"] for p in inits if "row_sum_mean" in p]),
            "final": mean_ci([p["row_sum_mean"] for p in finals if "row_sum_mean" in p]),
            "init_by_pos": mean_list([p.get("row_sum_by_pos") for p in inits]),
            "final_by_pos": mean_list([p.get("row_sum_by_pos") for p in finals]),
        }
    if any("expert_load" in p for p in inits):
        ev["expert_load"] = {  # fraction of assignments per expert, mean over seeds and layers
            "init": mean_list([p.get("expert_load") for p in inits]),
            "final": mean_list([p.get("expert_load") for p in finals]),
            "final_max": mean_ci([max(p["expert_load"]) for p in finals if "expert_load" in p]),
            "final_by_seed": [p.get("expert_load") for p in finals],
        }
    if any("gate_mean" in p for p in inits):
        ev["gate_mean"] = {
            "init": mean_ci([p["gate_mean"] for p in inits if "gate_mean" in p]),
            "final": mean_ci([p["gate_mean"] for p in finals if "gate_mean" in p]),
        }
    return ev


def compare_variants(runs: dict, variant: str, reference: str) -> dict:
    """Paired test of final loss, variant - reference, over seeds where both completed; counts
    the seeds where the variant diverged while the reference completed."""
    a, b = runs[variant], runs[reference]
    seeds = sorted(set(a) & set(b))

    def ok(r: dict) -> bool:
        return r.get("outcome") == "completed" and math.isfinite(num(r.get("final_loss")))

    both = [s for s in seeds if ok(a[s]) and ok(b[s])]
    test = paired_test([a[s]["final_loss"] for s in both], [b[s]["final_loss"] for s in both])
    n_a = next((r["n_params"] for r in a.values() if r.get("n_params")), None)
    n_b = next((r["n_params"] for r in b.values() if r.get("n_params")), None)
    return {**test, "variant": variant, "reference": reference,
            "diverged_only": sum(a[s].get("outcome") == "diverged" and ok(b[s]) for s in seeds),
            "n_params_diff": (n_a - n_b) if n_a is not None and n_b is not None else None}
