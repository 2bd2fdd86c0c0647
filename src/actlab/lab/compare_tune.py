"""Learning-rate tuning in `actlab compare`: every activation trains at its own best rate, so a
ranking does not reward whichever activation the tier's one rate happens to suit.

Each activation runs a short log-spaced grid around the tier's rate on the held-out tuning seed
(studies.common.TUNE_SEED, never an evaluation seed, so the luck of the selection stays out of
the paired tests), at the evaluation runs' own step count and schedule: runs shorter than the
ones they stand for favour other rates (see the presets of the convergence study). The rate
with the lowest final validation loss wins (common.pick_lrs); a best rate on the grid's edge
grows the grid one step (common.extend_grid) while the budget affords the extra runs.

The tuning runs' time is part of the budget, so the time model of a run lives here too
(run_seconds, round_seconds, plan_steps): the plan pays for TUNE_ROUNDS runs per activation
beside the evaluation seeds, and a stage of grid growth starts only if it and the evaluation
rounds still fit the time left (`affords`). This module trains nothing and reads no clock:
compare.py hands it the jobs, the runner and the time left.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from actlab.studies import common

# Calibration steps per activation. The plan uses their median step time (the first step is
# warm-up and left out): 8 steps of the tiny model last about 30 ms, which one burst of load
# on a shared machine could fill, so the plan undershot a 25 s budget by 2.5x; 24 steps take it
# past such bursts for under 1% of the budget.
N_CAL = 24
N_EVALS = 5  # validation evaluations per run (the last at the final step)
EVAL_BATCHES = 8

STAGE = "tune"  # the job label of a tuning run (a key train_job does not pass to TrainConfig)
FACTOR = 3.0  # one grid step: the grid is the tier's rate / 3, x 1 and x 3
GRID_STEPS = (-1, 0, 1)
# Grid-growth stages the plan pays for in advance; further ones run only on time the plan's
# safety margin left unused.
PLANNED_EXTENSIONS = 1
TUNE_ROUNDS = len(GRID_STEPS) + PLANNED_EXTENSIONS  # tuning runs per activation in the plan

TUNING_RULE = (
    "Learning rate: unless --lr fixes one rate for every activation, each activation gets its "
    f"own, tuned inside the budget: runs at the tier's rate / {FACTOR:g}, x 1 and x {FACTOR:g} on "
    f"tuning seed {common.TUNE_SEED} (never an evaluation seed), with the evaluation runs' step "
    "count and schedule; the rate with the lowest final validation loss wins (a diverged run "
    "counts as worst, ties go to the smaller rate). A best rate on the grid's edge adds the "
    f"next rate beyond it (x {FACTOR:g} or / {FACTOR:g}), up to {common.MAX_EXTENSIONS} times "
    f"within {common.LR_BOUNDS[0]:g}-{common.LR_BOUNDS[1]:g}, while those runs and the "
    "evaluation rounds still fit the time left; a note says when the budget stopped it. The plan "
    f"counts {TUNE_ROUNDS} tuning runs per activation ({len(GRID_STEPS)} for the grid, "
    f"{PLANNED_EXTENSIONS} for growing it) beside the evaluation seeds."
)


# -- the time model of a run ------------------------------------------------------------------

def run_seconds(cal: dict, steps: int) -> float:
    """Modelled wall time of one run of `steps` steps from its calibration.

    cal holds fixed_s (building the model and the batches) and step_s (seconds per training
    step). Every run evaluates N_EVALS times on EVAL_BATCHES batches, and a forward pass costs
    about a third of forward + backward + update (Kaplan et al. 2020, section 2.1: 2N vs 6N
    FLOPs per token).
    """
    return cal["fixed_s"] + steps * cal["step_s"] + N_EVALS * EVAL_BATCHES * cal["step_s"] / 3


def step_cost(run: dict, tokens_per_step: int) -> dict:
    """Seconds per step and fixed seconds per run from a stored calibration run (its steps,
    then one evaluation); the inverse of run_seconds.

    The step time is the median over the steps after the first (actlab.training.loop.step_seconds), so
    a step the scheduler stalled during calibration does not shrink the plan; the stall lands
    in fixed_s, of which the plan keeps the smallest. Runs stored without step stamps fall
    back to actlab.training.loop's tokens/s, which spans the steps after the first and the evaluation
    (EVAL_BATCHES forward passes, a third of a step each).
    """
    n = run.get("steps") or N_CAL
    if run.get("step_s"):
        step = run["step_s"]
    elif run.get("tokens_per_s"):
        step = tokens_per_step * (n - 1) / run["tokens_per_s"] / (n - 1 + EVAL_BATCHES / 3)
    else:  # diverged at once: no timed steps, charge the whole run
        step = run["wall_s"] / (n - 1 + EVAL_BATCHES / 3)
    fixed = run["wall_s"] - n * step - EVAL_BATCHES * step / 3
    return {"wall_s": run["wall_s"], "step_s": step, "fixed_s": fixed, "n_params": run.get("n_params")}


def round_seconds(cal: dict[str, dict], steps: int, overhead_s: float = 0.0,
                  parallel: int = 1) -> float:
    """Modelled wall time of one round: every activation once, `parallel` runs at a time."""
    return overhead_s + sum(run_seconds(c, steps) for c in cal.values()) / parallel


def plan_steps(cal: dict[str, dict], available_s: float, rounds: int, overhead_s: float = 0.0,
               parallel: int = 1) -> int:
    """Largest step count S with rounds x round_seconds(S) <= available_s (0 if none fits).

    rounds: the evaluation seeds, plus tuning_rounds: a tuning run trains the evaluation's
    step count, so each activation's tuning runs cost what its evaluation runs cost."""
    per_step = sum(c["step_s"] for c in cal.values()) / parallel
    fixed = round_seconds(cal, 0, overhead_s, parallel)  # the model is linear in S
    return max(0, math.floor((available_s / rounds - fixed) / per_step))


def tuning_rounds(lr: float | None) -> int:
    """Rounds of tuning runs the plan pays for: none where --lr fixes the rate."""
    return 0 if lr else TUNE_ROUNDS


def affords(n_runs: int, run_s: float, n_acts: int, seeds: int, left_s: float,
            overhead_s: float = 0.0, parallel: int = 1) -> bool:
    """Whether a tuning stage of n_runs runs and then every evaluation round (seeds rounds of
    n_acts runs, each with its overhead) fit in left_s seconds, `parallel` runs at a time."""
    stage = overhead_s + n_runs * run_s / parallel
    evaluation = seeds * (overhead_s + n_acts * run_s / parallel)
    return stage + evaluation <= left_s


def run_cost(forecast_s: list[float], results: list[dict]) -> float:
    """Seconds one more run is expected to take: the larger of the plan's forecast (mean over
    the activations) and the mean wall time of the tuning runs so far, which ran at the
    evaluation's step count on this machine's current load."""
    measured = [r["wall_s"] for r in results if r.get("wall_s")]
    return max(statistics.fmean(forecast_s) if forecast_s else 0.0,
               statistics.fmean(measured) if measured else 0.0)


# -- the tuning ----------------------------------------------------------------------------

def first_grid(tier_lr: float) -> list[float]:
    """The starting grid around the tier's rate, at 3 significant digits (3e-3 / 3 -> 0.001)."""
    return [float(f"{tier_lr * FACTOR ** k:.3g}") for k in GRID_STEPS]


def tune_jobs(templates: dict[str, dict], grids: dict[str, list[float]]) -> list[dict]:
    """Each activation's evaluation job at every rate of its grid, on the tuning seed and
    labelled as tuning: a job's dict is its identity in the store, so a re-run finds these runs
    and they never collide with an evaluation run."""
    return [{**templates[a], "stage": STAGE, "seed": common.TUNE_SEED, "lr": lr}
            for a in templates for lr in sorted(grids[a])]


def pick(results: list[dict], grids: dict[str, list[float]]) -> dict[str, dict]:
    """{act: {"lr", "at_edge", "lrs", "val_loss"}} from the tuning runs (common.pick_lrs on the
    final validation loss); the shape of the convergence study's lr_tuning evidence."""
    return common.pick_lrs(results, lambda p: p["act"], grids, loss_key="final_val_loss")


def tune(templates: dict[str, dict], tier_lr: float, run: Callable[[list[dict]], list[dict]],
         fits: Callable[[int, list[dict]], bool]) -> tuple[dict[str, dict], list[str]]:
    """(each activation's tuning evidence as `pick` gives it, notes on the grids that stayed
    on an edge).

    templates: each activation's evaluation job (its rate and seed are replaced). run(jobs):
    their results, stored runs reused (run_grid). fits(n, results): whether n more tuning runs
    still leave the evaluation its time, given the tuning results so far. Every stage runs
    the whole grid again, so its results cover all rates; the stored ones cost nothing.
    """
    grids = {a: first_grid(tier_lr) for a in templates}
    notes: list[str] = []
    for stage in range(common.MAX_EXTENSIONS + 1):
        results = run(tune_jobs(templates, grids))
        chosen = pick(results, grids)
        grow = common.extend_grid(chosen, FACTOR)
        if not grow:
            break
        if stage == common.MAX_EXTENSIONS:
            notes.append(_edge_note(sorted(grow), f"after {stage} extensions of its grid"))
            break
        if not fits(len(grow), results):
            notes.append(_edge_note(sorted(grow), "the budget left no time to grow its grid"))
            break
        for a, lr in grow.items():
            grids[a].append(lr)
    at_bound = sorted(a for a, c in chosen.items() if c["at_edge"] and a not in grow)
    if at_bound:
        notes.append(_edge_note(at_bound, f"at the bound of {common.LR_BOUNDS[0]:g}-"
                                          f"{common.LR_BOUNDS[1]:g}"))
    return chosen, notes


def tune_in_budget(templates: dict[str, dict], plan: dict, run: Callable[[list[dict]], list[dict]],
                   time_left: Callable[[], float]) -> tuple[dict[str, dict], list[str]]:
    """`tune` around the plan's base rate, where a stage that grows a grid runs only if it and
    every evaluation round fit time_left() seconds, each run costing the larger of the plan's
    forecast (its calibration; none at a fixed step count) and the tuning runs' measured time."""
    forecast = [run_seconds(c, plan["steps"]) for c in plan["calibration"].values()]

    def fits(n_runs: int, results: list[dict]) -> bool:
        return affords(n_runs, run_cost(forecast, results), len(templates), plan["seeds"],
                       time_left(), plan.get("overhead_s", 0.0), plan.get("parallel", 1))

    return tune(templates, plan["base"]["lr"], run, fits)


def _edge_note(acts: list[str], why: str) -> str:
    return (f"best learning rate on the grid's edge for {', '.join(acts)} ({why}): its loss "
            "may improve at a rate beyond the grid")


# -- what ranking.json and the table show -----------------------------------------------------

def lr_keys(chosen: dict[str, dict] | None, fixed_lr: float | None) -> dict:
    """ranking.json's learning-rate keys: how the rates were set, the tuning evidence per
    activation (None where --lr fixed one rate) and the rule, beside the sizing rule."""
    return {"lr_mode": "fixed" if chosen is None else "tuned", "lr_fixed": fixed_lr,
            "lr_tuning": chosen, "tune_seed": None if chosen is None else common.TUNE_SEED,
            "tuning_rule": TUNING_RULE}


def lr_legend(ranking: dict) -> list[str]:
    """The line under the table that says where a tuned rate comes from (none for a fixed one)."""
    if not ranking.get("lr_tuning"):
        return []
    return [f"lr = the activation's rate, tuned on seed {ranking['tune_seed']} over its grid "
            "(ranking.json: lr_tuning); (edge) = best on the grid's edge"]


def lr_cell(lr: float | None, evidence: dict | None) -> str:
    """A row's rate in the table; '(edge)' where the tuning ended on its grid's edge."""
    if lr is None or not math.isfinite(lr):
        return "-"
    return f"{lr:.3g}" + (" (edge)" if evidence and evidence.get("at_edge") else "")
