"""The runs of study C6: one training job (C3's, with the axis labels taken off), the jobs of
every point, the per-(point, activation) rate tuning and the evaluation seeds, each stage one
`run_grid` call over both axes so that the workers stay busy.
"""

from __future__ import annotations

import math

from actlab.engine.sweep import run_grid
from actlab.studies import common
from actlab.studies.convergence.runs import train_job

STUDY = "scaling"
LABELS = ("axis", "point")  # job keys that only say where a run sits in the study


def scaling_job(params: dict) -> dict:
    """One GPT run (convergence.runs.train_job); the stored history keeps the evaluations only,
    so runs of thousands of steps stay small in the store."""
    result = train_job({k: v for k, v in params.items() if k not in LABELS})
    result["history"] = [h for h in result.get("history", []) if "val_loss" in h]
    return result


def job(p: dict, axis: str, pt: dict, act: str, lr: float, seed: int, stage: str,
        corpus: dict) -> dict:
    """The flat job of one run; warmup 5% of the steps, four evaluations."""
    steps = pt["steps"]
    return {"stage": stage, "axis": axis, "point": pt["label"], "n_layer": pt["n_layer"],
            "n_head": pt["n_head"], "n_embd": pt["n_embd"], **p["train"], "steps": steps,
            "warmup_steps": max(1, steps // 20), "eval_every": max(1, steps // 4), "act": act,
            "lr": lr, "seed": seed, **corpus}


def _cost_first(jobs: list[dict]) -> list[dict]:
    """Longest runs first, so the last worker to finish does not start the largest run last."""
    return sorted(jobs, key=lambda j: -j["steps"] * j["n_layer"] * j["n_embd"] ** 2)


def tune(p: dict, axes: dict[str, list[dict]], acts, out, progress: bool, corpus: dict) -> dict:
    """{(axis, point label, act): pick_lrs choice}. A one-rate grid is that rate, no runs;
    otherwise every group tunes on the tuning seed and grows its grid past an edge
    (common.grow_grids)."""
    where = {(axis, pt["label"]): pt for axis, pts in axes.items() for pt in pts}
    grids = {(axis, lab, a): tuple(p["lrs"][axis]) for (axis, lab) in where for a in acts}
    if all(len(g) == 1 for g in grids.values()):
        return {k: {"lr": g[0], "at_edge": False, "lrs": list(g), "val_loss": [math.nan]}
                for k, g in grids.items()}
    # an axis whose preset names a `tune_at` point tunes there and uses that rate at every
    # point (depth at a fixed width: the rate of standard parametrisation depends on width)
    source = {(axis, pt["label"]): (axis, p[axis].get("tune_at", pt["label"]))
              for axis, pts in axes.items() for pt in pts}
    chosen = _tune(p, where, {(*source[(ax, lab)], a): g for (ax, lab, a), g in grids.items()},
                   out, progress, corpus)
    return {(ax, lab, a): chosen[(*source[(ax, lab)], a)] for (ax, lab, a) in grids}


def _tune(p, where, grids, out, progress, corpus) -> dict:
    """grow_grids over {(axis, label, act): rates}, runs on the tuning seed."""
    def run_and_pick(grown: dict) -> dict:
        jobs = [job(p, axis, where[(axis, lab)], a, lr, common.TUNE_SEED, "tune", corpus)
                for (axis, lab, a), lrs in grown.items() for lr in lrs]
        done = run_grid(STUDY, _cost_first(jobs), scaling_job, out, progress=progress)
        return common.pick_lrs(done, lambda q: (q["axis"], q["point"], q["act"]), grown,
                               loss_key="final_val_loss")

    return common.grow_grids(grids, run_and_pick)


def evaluate(p: dict, axes: dict[str, list[dict]], acts, lrs: dict, out, progress: bool,
             corpus: dict) -> dict:
    """Run every (point, activation, seed) at its tuned rate; return {axis: {label: {act:
    {seed: final loss or None}}}} and the stored runs' bookkeeping (outcomes, CPU seconds)."""
    jobs = [job(p, axis, pt, a, lrs[(axis, pt["label"], a)]["lr"], s, "eval", corpus)
            for axis, pts in axes.items() for pt in pts for a in acts for s in p["seeds"]]
    done = run_grid(STUDY, _cost_first(jobs), scaling_job, out, progress=progress)
    losses: dict = {axis: {pt["label"]: {a: {} for a in acts} for pt in pts}
                    for axis, pts in axes.items()}
    outcomes: dict = {}
    cpu = 0.0
    for r in done:
        q = r["params"]
        v = r.get("final_val_loss")
        finite = v is not None and math.isfinite(v)
        losses[q["axis"]][q["point"]][q["act"]][q["seed"]] = v if finite else None
        if r.get("outcome") != "completed":
            key = f"{q['axis']}/{q['point']}/{q['act']}"
            outcomes.setdefault(key, []).append(r.get("outcome"))
        cpu += float(r.get("cpu_s") or 0.0)
    return {"losses": losses, "not_completed": outcomes, "eval_cpu_s": cpu}
