"""`actlab compare`: which activation should my transformer use on my text, within a time budget?

The engine sizes a model and a step count to the budget, tunes each candidate's learning rate
on a held-out seed within that budget (compare_tune.py), trains every candidate at its rate on
the same seeds (same initial-weight seed and the same batches for every activation, so
differences are paired), ranks them by final validation loss with 95% CIs, tests each against
the best, and writes DIR/ranking.json and figures. Runs go through `run_grid` (study
"compare") with the convergence study's run function, so an interrupted comparison resumes
where it stopped.
ranking.json also carries the text's n-gram baselines and the regime rule's judgement of the
runs (compare_regime.py): a ranking out of regime is written, but marked.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

from actlab.errors import ActlabError
from actlab.files.atomic import write_json
from actlab.files.schema import newer_than_known, unversioned, versioned
from actlab.lab import compare_tune
from actlab.lab.compare_tune import (  # the time model of a run lives beside the tuning
    EVAL_BATCHES, N_CAL, N_EVALS, TUNE_ROUNDS, plan_steps, round_seconds, step_cost, tuning_rounds,
)
from actlab.studies.common import TUNE_SEED

STUDY = "compare"
MIN_STEPS = 10  # fewer steps cannot rank anything; a smaller tier is tried first
# Plan the training for 80% of what is left: on shared cores a run's time drifts by 10-20%
# between calibration and the runs (measured on a 2-core machine at load 10).
SAFETY = 0.8
OVERRUN = 0.05  # a round may start if it is expected to end within 5% past the budget
RESERVE_S = 2.0  # analysis, figures and ranking.json after the last run
ALPHA = 0.05

# Model size by the seconds each run would get if the whole budget went to training:
# budget / (activations x runs per activation: the seeds, and TUNE_ROUNDS unless --lr is
# given). Bigger models need more steps before their ranking means anything, so a size is only
# chosen when each run can afford a few hundred of its steps on a laptop CPU.
# (max seconds per run, name, model, sequences per batch, peak learning rate)
TIERS = (
    (15.0, "tiny", dict(n_layer=2, n_head=2, n_embd=32, block_size=32), 8, 3e-3),
    (90.0, "small", dict(n_layer=2, n_head=2, n_embd=64, block_size=64), 16, 3e-3),
    (600.0, "medium", dict(n_layer=4, n_head=4, n_embd=128, block_size=128), 16, 1e-3),
    (math.inf, "large", dict(n_layer=6, n_head=6, n_embd=192, block_size=256), 32, 6e-4),
)

SIZING_RULE = (
    "Sizing: the model size comes from the seconds per run, budget / (activations x runs per "
    f"activation: the seeds, plus {TUNE_ROUNDS} tuning runs unless --lr is given): < 15 s tiny "
    "(2 layers, width 32, context 32), < 90 s small (2 x 64, context 64), < 10 min medium "
    "(4 x 128, context 128), else large (6 x 192, context 256). Each activation then "
    f"trains {N_CAL} calibration steps (their time counts against the budget), and from their "
    f"median step time the step count is the largest that fits {SAFETY:.0%} of the remaining "
    "budget for every activation's tuning runs and seeds (tuning runs train as many steps as "
    f"the evaluation runs), {N_EVALS} evaluations included. Seeds run in rounds (every "
    "activation once per round); a round expected to end more than 5% past the budget is not started."
)

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|secs|m|min|mins|h|hr|hrs)?\s*$", re.I)
_UNIT_S = {"s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60, "h": 3600, "hr": 3600,
           "hrs": 3600}


def parse_budget(text: str) -> float:
    """'90s', '10m', '1.5h' or a bare number of seconds -> seconds (> 0)."""
    m = _BUDGET.match(str(text))
    if not m:
        raise ActlabError(f"budget must look like 90s, 10m or 1h; got {text!r}")
    seconds = float(m.group(1)) * _UNIT_S[(m.group(2) or "s").lower()]
    if seconds <= 0:
        raise ActlabError(f"budget must be more than 0 seconds; got {text!r}")
    return seconds


def choose_tier(per_run_s: float) -> int:
    """Index into TIERS for the seconds each run would get."""
    return next(i for i, t in enumerate(TIERS) if per_run_s < t[0])


def _jobs(acts, seeds, steps: int, base: dict, stage: str, lrs: dict | None = None) -> list[dict]:
    """One job per seed and activation; `lrs`: each activation's rate (default: the base's)."""
    every = steps if stage == "calibrate" else max(1, math.ceil(steps / N_EVALS))
    return [{"stage": stage, **base, "act": a, "lr": (lrs or {}).get(a, base["lr"]), "seed": s,
             "steps": steps, "eval_every": every, "warmup_steps": max(1, steps // 10)}
            for s in seeds for a in acts]


def check_inputs(acts: list[str], seeds: int) -> list[str]:
    """The candidate names, deduplicated in their order; one-line errors for fewer than two, an
    unknown name, or a seed count that would reach the tuning seed. Cheap: nothing is built."""
    from actlab import activations

    acts = list(dict.fromkeys(a.strip() for a in acts if a.strip()))
    if len(acts) < 2:
        raise ActlabError("compare needs at least two activations, e.g. --acts gelu,swiglu")
    for a in acts:
        activations.get_spec(a)  # one-line error for an unknown name
    if not 1 <= seeds <= TUNE_SEED:  # evaluation seeds 0..seeds-1 stay clear of the tuning seed
        raise ActlabError(f"seeds must be between 1 and {TUNE_SEED}, got {seeds}")
    return acts


def run_compare(data: str | None, acts: list[str], budget_s: float, seeds: int, out_dir,
                progress: bool = True, *, lr: float | None = None, tokenizer: str = "char",
                device: str = "auto", workers: int = 1, threads: int = 1,
                steps: int | None = None, executor: str | None = None,
                address: str | None = None) -> dict:
    """Rank `acts` on the text at `data` (None: the bundled corpus) within budget_s seconds of
    wall time; write out_dir/ranking.json and out_dir/figures/*.png; return the ranking.

    steps: a fixed step count instead of sizing to the budget (no calibration; the budget
    still picks the model size and still stops rounds that would overrun it).
    lr: one peak learning rate for every activation and no tuning runs; None: each activation's
    rate is tuned within the budget (compare_tune.TUNING_RULE).
    executor: where the runs execute (engine.sweep.run_grid); None: in this process with one
    worker, in local worker processes with more. The numbers are the same on each.
    """
    from actlab.training.env import environment, resolve_device
    from actlab.studies.convergence.runs import prepared, train_job
    from actlab.engine.sweep import run_grid

    t0 = time.perf_counter()
    from actlab.studies.convergence import figures as convergence_figures  # noqa: F401  (its import counts too)

    acts = check_inputs(acts, seeds)
    resolve_device(device)  # a missing device fails here, not as every run's error
    out = Path(out_dir)
    path = str(Path(data).resolve()) if data else None
    corpus = prepared(path, tokenizer, 8)  # runs in this process reuse these tokens
    # The regime bar of this text and tokenizer (cached on disk), before the plan, so that the
    # seconds a first computation takes are off the budget the plan shares out.
    baselines = corpus.baselines()
    executor = executor or ("serial" if workers == 1 else "local")
    workers = 1 if executor == "serial" else workers
    grid_kw = {"executor": executor, "workers": workers, "threads": threads, "address": address}

    tune_rounds = tuning_rounds(lr)
    tier = choose_tier(budget_s / (len(acts) * (seeds + tune_rounds)))
    key = {"data_hash": corpus.text_hash, "acts": acts, "seeds": seeds, "budget_s": budget_s,
           "lr": lr, "tokenizer": tokenizer, "device": device, "fixed_steps": steps,
           "tune_rounds": tune_rounds}
    plan = _load_plan(out, key)
    while plan is None:
        base = _base(tier, corpus, key, path, device, threads, lr)
        if steps is not None:
            plan = {**key, "tier": TIERS[tier][1], "base": base, "steps": steps,
                    "calibration": {}, "round_s": 0.0}
            break
        plan = _plan(tier, base, key, budget_s - (time.perf_counter() - t0), grid_kw, out,
                     progress, workers)
        if plan["steps"] < MIN_STEPS:
            if tier == 0:
                cal, spent = plan["calibration"], time.perf_counter() - t0
                rounds = (seeds + tune_rounds) * round_seconds(cal, MIN_STEPS, plan["overhead_s"],
                                                               plan["parallel"])
                need = spent + (rounds + RESERVE_S) / SAFETY
                skip = ", or a fixed --lr: no tuning runs" if tune_rounds else ""
                raise ActlabError(f"a budget of {budget_s:g} s is too small for {len(acts)} "
                                  f"activations x {seeds} seeds: about {need:.0f} s needed "
                                  f"(or fewer activations/seeds{skip})")
            tier, plan = tier - 1, None
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", versioned(plan))

    t_tune = time.perf_counter()
    chosen, notes = (None, []) if lr else _tune(acts, plan, budget_s, t0, grid_kw, out, progress)
    tune_s = time.perf_counter() - t_tune
    rates = {a: c["lr"] for a, c in (chosen or {}).items()}
    # Seeds run in rounds so that an overrun drops whole rounds and every comparison stays paired.
    results, rounds_s = [], []
    for seed in range(seeds):
        left = budget_s - (time.perf_counter() - t0) - RESERVE_S
        round_s = max([plan["round_s"], *rounds_s])  # the forecast, or the slowest round so far
        if seed and round_s > left + OVERRUN * budget_s:
            notes.append(f"stopped after {seed} of {seeds} seeds: the next round needed about "
                         f"{round_s:.0f} s, {left:.0f} s were left")
            break
        t_round = time.perf_counter()
        results += run_grid(STUDY, _jobs(acts, [seed], plan["steps"], plan["base"], "run", rates),
                            train_job, out, progress=progress, **grid_kw)
        rounds_s.append(time.perf_counter() - t_round)
    ranking, runs = _rank(results, acts, plan, notes, environment(), baselines)
    ranking.update(compare_tune.lr_keys(chosen, lr))
    # the plan's forecasts beside what the tuning and each round took (stored runs: ~0)
    ranking["timing"] = {"round_s_planned": plan["round_s"], "rounds_s": rounds_s, "tune_s": tune_s,
                         "tune_s_planned": plan.get("tune_s_planned", 0.0)}
    ranking["figures"] = _figures(out, runs, ranking)
    ranking["wall_s"] = time.perf_counter() - t0
    # JSON has no NaN: a missing CI (one seed) or a diverged mean is written as null.
    write_json(out / "ranking.json", versioned(ranking))
    return ranking


def _base(tier, corpus, key, path, device, threads, lr) -> dict:
    """The run parameters shared by every job of the comparison at this tier."""
    _, _, model, batch, tier_lr = TIERS[tier]
    # The context must fit in the validation split (one window plus its target).
    block = max(1, min(model["block_size"], len(corpus.val_ids) - 1, len(corpus.train_ids) - 1))
    return {**model, "block_size": block, "batch_size": batch, "lr": lr or tier_lr,
            "data": path, "data_hash": corpus.text_hash, "tokenizer": key["tokenizer"],
            "eval_batches": EVAL_BATCHES, "device": device, "threads": threads,
            # the plan times eager calibration steps; a compilation would fall outside it
            "compile": "off"}


def _tune(acts, plan, budget_s, t0, grid_kw, out, progress) -> tuple[dict, list[str]]:
    """Each activation's tuned rate and the tuning notes (compare_tune.tune_in_budget) on this
    comparison's store and clock: a stage may use SAFETY of the time left less RESERVE_S, the
    share the plan gave the runs."""
    from actlab.engine.sweep import run_grid
    from actlab.studies.convergence.runs import train_job

    templates = {a: _jobs([a], [0], plan["steps"], plan["base"], "run")[0] for a in acts}
    return compare_tune.tune_in_budget(
        templates, plan, lambda jobs: run_grid(STUDY, jobs, train_job, out, progress=progress, **grid_kw),
        lambda: SAFETY * (budget_s - (time.perf_counter() - t0)) - RESERVE_S)


def _plan(tier, base, key, left_s, grid_kw, out, progress, workers) -> dict:
    """Calibrate every activation at the tier's size; choose the step count for the budget,
    the tuning runs (key["tune_rounds"] per activation) included."""
    from actlab.studies.convergence.runs import train_job
    from actlab.engine.sweep import run_grid

    name, tokens = TIERS[tier][1], base["batch_size"] * base["block_size"]
    t = time.perf_counter()
    cal_runs = run_grid(STUDY, _jobs(key["acts"], [0], N_CAL, base, "calibrate"), train_job, out,
                        progress=progress, **grid_kw)
    grid_s = time.perf_counter() - t
    _check_calibration(cal_runs, out)
    cal = {r["params"]["act"]: step_cost(r, tokens) for r in cal_runs}
    # One-time start-up costs (lazy initialisation, caches) land on whichever calibration run
    # came first; the runs after it do not pay them, so every activation gets the smallest
    # fixed cost seen.
    fixed = max(0.0, min(c["fixed_s"] for c in cal.values()))
    for c in cal.values():
        c["fixed_s"] = fixed
    parallel = min(workers, len(cal))
    # Per-round cost outside the runs (store, environment record), as the calibration round saw it.
    overhead = max(0.0, grid_s - sum(c["wall_s"] for c in cal.values()) / parallel)
    available = SAFETY * (left_s - grid_s) - RESERVE_S
    steps = plan_steps(cal, available, key["seeds"] + key["tune_rounds"], overhead, parallel)
    round_s = round_seconds(cal, steps, overhead, parallel)
    return {**key, "tier": name, "base": base, "steps": steps, "calibration": cal,
            "overhead_s": overhead, "parallel": parallel, "available_s": available,
            "round_s": round_s, "tune_s_planned": key["tune_rounds"] * round_s,
            "eval_s_planned": key["seeds"] * round_s}


def _check_calibration(cal_runs: list[dict], out: Path) -> None:
    """A calibration run that raised has no timing to plan with, and every later run of that
    activation would fail the same way: stop with its error in one line. A machine's failure
    (a full disk, no memory) is an EnvironmentFailure, anything else the input's."""
    from actlab.errors import EnvironmentFailure

    for r in cal_runs:
        if r.get("outcome") != "error":
            continue
        error = str(r.get("error") or "unknown error")
        text = (f"the calibration run of {r['params']['act']} failed: {error} (recorded in "
                f"{out / 'runs.sqlite'}; the next run of this command tries it again)")
        kind = error.split(":", 1)[0]
        machine = kind in _MACHINE_ERRORS or "out of memory" in error.lower()
        raise (EnvironmentFailure if machine else ActlabError)(text)


# Job errors (engine.executors.one_line: "Type: message") that are the machine's, not the input's
_MACHINE_ERRORS = {"OSError", "PermissionError", "MemoryError", "OutOfMemoryError",
                   "EnvironmentFailure", "OperationalError"}


def _load_plan(out: Path, key: dict) -> dict | None:
    """A plan written by an earlier, interrupted compare with the same inputs: reusing it keeps
    the run parameters, hence the stored runs, valid."""
    try:
        plan = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # none, or damaged: plan afresh
        return None
    if not isinstance(plan, dict) or newer_than_known(plan):  # not a plan this actlab can read
        return None
    plan = unversioned(plan, str(out / "plan.json"))
    return plan if all(plan.get(k) == v for k, v in key.items()) else None


def _rank(results: list[dict], acts: list[str], plan: dict, notes: list[str],
          env: dict, baselines: dict | None = None) -> tuple[dict, dict]:
    """(the ranking as written to ranking.json, the runs by activation and seed); `baselines`:
    the corpus baselines of the data the runs trained on (None: none recorded, out of regime)."""
    from actlab.analysis.ranking import (
        by_seed, holm, paired_comparison, rank, seed_spread, spread_note, summarize,
    )
    from actlab.lab.compare_regime import regime_keys

    runs = by_seed(results)
    lr_of = {r["params"]["act"]: r["params"].get("lr") for r in results}  # as the runs trained
    seeds_run = sorted({r["params"]["seed"] for r in results})
    summary = summarize(runs, seeds_run)
    order = rank(summary)
    best = order[0]
    tests = {a: paired_comparison(summary, a, best) for a in order[1:]}
    for a, adj in zip(tests, holm([t["p"] for t in tests.values()])):
        tests[a]["p_holm"] = adj
    rows = []
    for i, a in enumerate(order):
        s, t = summary[a], tests.get(a)
        sig = None if t is None or not math.isfinite(t["p"]) else bool(
            t["p_holm"] < ALPHA and (t["lo"] > 0 or t["hi"] < 0))
        if t is not None and s["n"] == 0 and summary[best]["n"] > 0:
            sig = True  # no finite run at all, where the best has some
        if s["n_errors"]:
            notes.append(f"{a}: {s['n_errors']} run(s) raised an error (see runs.sqlite); "
                         "they count as missing")
        rows.append({"rank": i + 1, "act": a, "mean": s["mean"], "lo": s["lo"], "hi": s["hi"],
                     "n": s["n"], "n_diverged": s["n_diverged"], "losses": s["losses"],
                     "vs_best": t, "significant": sig, "n_params": s["n_params"],
                     "tokens_per_s": s["tokens_per_s"]["mean"], "lr": lr_of.get(a)})
    spread = seed_spread(summary)
    if spread:
        notes.append(spread_note(spread) + " (a seed may still be on the early loss plateau: "
                     "trust that rank only once more steps or seeds make the seeds agree)")
    regime, regime_notes = regime_keys(summary, order, baselines)
    notes += regime_notes
    base = plan["base"]
    return {
        "config": {"data": base["data"], "data_hash": base["data_hash"], "acts": acts,
                   "seeds_requested": plan["seeds"], "seeds_run": seeds_run,
                   "budget_s": plan["budget_s"], "tokenizer": base["tokenizer"], "tier": plan["tier"],
                   "model": {k: base[k] for k in ("n_layer", "n_head", "n_embd", "block_size")},
                   "batch_size": base["batch_size"], "lr": plan.get("lr"), "steps": plan["steps"],
                   "eval_batches": base["eval_batches"], "device": base["device"]},
        "sizes": {a: summary[a]["n_params"] for a in order},
        "steps": plan["steps"], "calibration": plan["calibration"], "sizing_rule": SIZING_RULE,
        "best": best, "rows": rows, "alpha": ALPHA, "seed_spread": spread,
        "test": "paired t-test against the best over shared seeds, Holm-corrected",
        "notes": notes, "environment": env,
        # the regime rule: baselines, in_regime, regime, reference_act, vs_baselines, warning
        **regime,
    }, runs


def _figures(out: Path, runs: dict, ranking: dict) -> list[str]:
    from actlab.studies.convergence import figures as figs

    order = [r["act"] for r in ranking["rows"]]
    summary = {r["act"]: {"mean": r["mean"], "lo": r["lo"], "hi": r["hi"], "losses": r["losses"],
                          "n_diverged": r["n_diverged"]} for r in ranking["rows"]}
    d, cfg = out / "figures", ranking["config"]
    title = f"{cfg['tier']} model, {cfg['steps']} steps, {len(cfg['seeds_run'])} seed(s)"
    paths = [figs.final_loss(summary, order, d / "final_loss.png", f"final validation loss ({title})"),
             figs.loss_curves(runs, order, d / "loss_curves.png", f"loss curves ({title})"),
             figs.val_vs_time(runs, order, d / "val_loss_vs_time.png",
                              f"validation loss vs training time ({title})")]
    return [str(Path(p).relative_to(out)) for p in paths if p]


def format_table(ranking: dict) -> str:
    """The ranking as a fixed-width text table, best first, with a line on what was run, the
    notes, the corpus baselines and, out of regime, a warning as the last line."""
    from actlab.lab.compare_regime import regime_lines

    cfg = ranking["config"]
    m = cfg["model"]
    rate = f"lr {cfg['lr']:g} for all" if cfg.get("lr") else "lr tuned per activation"
    head = (f"{cfg['tier']} model ({m['n_layer']} layers, width {m['n_embd']}, context "
            f"{m['block_size']}), {cfg['steps']} steps x batch {cfg['batch_size']}, {rate}, "
            f"{len(cfg['seeds_run'])} seed(s); val loss in nats/token, lower is better")
    cols = ("rank", "activation", "lr", "val loss", "95% CI", "n", "vs best", "p (Holm)", "sig.",
            "tokens/s", "params")
    tuning = ranking.get("lr_tuning") or {}
    lines = []
    for r in ranking["rows"]:
        t = r["vs_best"]
        ci = f"[{r['lo']:.4f}, {r['hi']:.4f}]" if math.isfinite(r["lo"]) else "-"
        mean = f"{r['mean']:.4f}" if math.isfinite(r["mean"]) else "diverged"
        diff = "best" if t is None else (f"{t['diff']:+.4f}" if math.isfinite(t["diff"]) else "-")
        p = "-" if t is None or not math.isfinite(t["p"]) else f"{t['p_holm']:.3g}"
        sig = {None: "-", True: "yes", False: "no"}[r["significant"]]
        n = f"{r['n']}" + (f" ({r['n_diverged']} div.)" if r["n_diverged"] else "")
        lr_cell = compare_tune.lr_cell(r.get("lr"), tuning.get(r["act"]))
        lines.append((str(r["rank"]), r["act"], lr_cell, mean, ci, n, diff, p, sig,
                      _count(r["tokens_per_s"]), _count(r["n_params"])))
    width = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(width))
    body = [fmt.format(*cols)] + [fmt.format(*line) for line in lines]
    tail = [f"sig. = differs from the best at Holm-corrected p < {ALPHA} with a 95% CI excluding 0"]
    tail += compare_tune.lr_legend(ranking)
    return "\n".join([head, *body, *tail, *ranking.get("notes", []), *regime_lines(ranking)])


def _count(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.0f}"
