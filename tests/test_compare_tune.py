"""The learning-rate tuning of `actlab compare`: the pick from stored runs, the grid growing past
an edge, the budget's share-out between tuning and evaluation, and one tiny comparison."""

import json
import math

import pytest

from actlab.engine.store import Store
from actlab.engine.sweep import run_grid
from actlab.lab import compare as cmp
from actlab.lab import compare_tune as tn
from actlab.studies.common import LR_BOUNDS, MAX_EXTENSIONS, TUNE_SEED

ACTS = ("gelu", "relu")


def templates(acts=ACTS) -> dict:
    """What compare hands the tuning: each activation's evaluation job (seed 0, tier rate)."""
    return {a: {"stage": "run", "act": a, "lr": 3e-3, "seed": 0, "steps": 20} for a in acts}


def in_memory(loss):
    """A runner that trains nothing: loss(act, lr) is each job's final validation loss. It
    records the jobs of every stage."""
    stages = []

    def run(jobs):
        stages.append(jobs)
        return [{"params": j, "final_val_loss": loss(j["act"], j["lr"]), "wall_s": 0.1} for j in jobs]

    return run, stages


def never(n_runs, results):
    raise AssertionError("no grid grows here, so the budget is never asked")


# -- (a) the pick, from hand-built stored runs ---------------------------------------------------

def test_each_activation_gets_its_lowest_loss_rate_from_stored_runs(tmp_path):
    nan = math.nan
    losses = {  # tier rate 3e-3: the grid is 1e-3, 3e-3, 9e-3
        "gelu": {1e-3: 3.0, 3e-3: 2.5, 9e-3: 2.7},
        "relu": {1e-3: 2.9, 3e-3: 2.6, 9e-3: 2.6},  # a tie: the smaller rate
        "swiglu": {1e-3: 2.7, 3e-3: 2.4, 9e-3: nan},  # diverged at 9e-3: counts as +inf
    }
    calls = []

    def stored(params):  # what train_job would have stored, without training
        calls.append(params)
        loss = losses[params["act"]][params["lr"]]
        return {"outcome": "diverged" if math.isnan(loss) else "completed",
                "final_val_loss": loss, "wall_s": 0.5}

    def run(jobs):
        return run_grid("compare", jobs, stored, tmp_path, progress=False, executor="serial")

    chosen, notes = tn.tune(templates(tuple(losses)), 3e-3, run, never)
    assert {a: c["lr"] for a, c in chosen.items()} == {"gelu": 3e-3, "relu": 3e-3, "swiglu": 3e-3}
    assert chosen["gelu"] == {"lr": 3e-3, "at_edge": False, "lrs": [1e-3, 3e-3, 9e-3],
                              "val_loss": [3.0, 2.5, 2.7]}
    assert chosen["swiglu"]["val_loss"] == [2.7, 2.4, math.inf]
    assert notes == [] and len(calls) == 9
    # the tuning runs are stored as their own stage, on the tuning seed
    with Store(tmp_path / "runs.sqlite") as store:
        configs = [r["config"] for r in store.runs("compare")]
    assert {(c["stage"], c["seed"]) for c in configs} == {("tune", TUNE_SEED)}
    # a second tuning (a resumed compare) reads the same runs back and trains none
    again, _ = tn.tune(templates(tuple(losses)), 3e-3, run, never)
    assert again == chosen and len(calls) == 9

    # on hand-built results, each activation's own best, wherever it lies
    grid = [1e-3, 3e-3, 9e-3]
    results = [{"params": {"act": a, "lr": lr}, "final_val_loss": v}
               for a, vs in {"gelu": [2.9, 2.8, 2.7], "relu": [2.5, 2.6, nan]}.items()
               for lr, v in zip(grid, vs)]
    picked = tn.pick(results, {"gelu": grid, "relu": grid})
    assert (picked["gelu"]["lr"], picked["relu"]["lr"]) == (9e-3, 1e-3)
    assert picked["gelu"]["at_edge"] and picked["relu"]["at_edge"]


# -- (b) a best rate on the grid's edge grows the grid ------------------------------------------

def test_an_edge_best_grows_the_grid_one_step_until_a_bound():
    # gelu always prefers a larger rate; relu's best is interior (0.03)
    run, stages = in_memory(lambda a, lr: -lr if a == "gelu" else abs(math.log(lr / 0.03)))
    asked = []
    chosen, notes = tn.tune(templates(), 0.03, run, lambda n, res: asked.append(n) or True)
    assert tn.first_grid(0.03) == [0.01, 0.03, 0.09]
    assert [sorted({j["lr"] for j in s if j["act"] == "gelu"}) for s in stages] == [
        [0.01, 0.03, 0.09], [0.01, 0.03, 0.09, 0.27]]  # 0.81 is past the bound of 0.3
    assert 0.27 * tn.FACTOR > LR_BOUNDS[1]
    assert [len(s) for s in stages] == [6, 7] and asked == [1]  # one more run, for gelu only
    assert chosen["gelu"]["lr"] == 0.27 and chosen["gelu"]["at_edge"]
    assert chosen["relu"] == {"lr": 0.03, "at_edge": False, "lrs": [0.01, 0.03, 0.09],
                              "val_loss": pytest.approx([math.log(3), 0.0, math.log(3)])}
    assert len(notes) == 1 and "for gelu (at the bound of 0.0001-0.3)" in notes[0]


def test_the_grid_grows_down_too_and_at_most_max_extensions_times():
    run, stages = in_memory(lambda a, lr: lr)  # both prefer the smallest rate
    chosen, notes = tn.tune(templates(), 1e-3, run, lambda n, res: True)
    assert chosen["gelu"]["lrs"] == [0.000111, 0.000333, 0.001, 0.003]  # 3.7e-05 < 1e-4
    assert len(stages) == 2 and "at the bound" in notes[0]

    run, stages = in_memory(lambda a, lr: -lr)  # both prefer the largest rate
    chosen, notes = tn.tune(templates(), 1e-3, run, lambda n, res: True)
    assert len(stages) == 1 + MAX_EXTENSIONS
    assert chosen["relu"]["lrs"] == [0.000333, 0.001, 0.003, 0.009, 0.027, 0.081]
    assert notes == [tn._edge_note(["gelu", "relu"], f"after {MAX_EXTENSIONS} extensions of its grid")]


def test_the_budget_stops_the_growth_and_says_so():
    run, stages = in_memory(lambda a, lr: -lr if a == "gelu" else lr)
    chosen, notes = tn.tune(templates(), 3e-3, run, lambda n, res: False)
    assert len(stages) == 1 and chosen["gelu"]["lrs"] == [1e-3, 3e-3, 9e-3]
    assert chosen["gelu"]["at_edge"] and chosen["relu"]["at_edge"]
    assert notes == [tn._edge_note(["gelu", "relu"], "the budget left no time to grow its grid")]


# -- (c) the plan pays for the tuning --------------------------------------------------------------

def test_the_planned_tuning_and_evaluation_fit_the_budget():
    cal = {"gelu": {"fixed_s": 0.5, "step_s": 0.01}, "relu": {"fixed_s": 0.5, "step_s": 0.02}}
    seeds, available, overhead = 2, 100.0, 1.0
    rounds = seeds + tn.tuning_rounds(None)
    assert tn.tuning_rounds(None) == tn.TUNE_ROUNDS == len(tn.first_grid(3e-3)) + 1
    assert tn.tuning_rounds(3e-3) == 0  # --lr: no tuning runs
    steps = tn.plan_steps(cal, available, rounds, overhead)
    # a round: 1 s overhead + 1.0 s fixed + 0.03 s x S + 5 evaluations x 8 batches x 0.03 / 3;
    # six rounds in 100 s: S = floor((100 / 6 - 2.4) / 0.03) = 475
    assert steps == 475
    round_s = tn.round_seconds(cal, steps, overhead)
    tuning, evaluation = tn.TUNE_ROUNDS * round_s, seeds * round_s
    assert tuning + evaluation <= available < rounds * tn.round_seconds(cal, steps + 1, overhead)
    assert steps < tn.plan_steps(cal, available, seeds, overhead)  # tuning costs steps

    # after the grid (3 rounds) at the forecast cost, the planned extension and the
    # evaluation fit what is left; a second extension does not
    run_s = tn.run_cost([tn.run_seconds(c, steps) for c in cal.values()], [])
    assert run_s == pytest.approx((round_s - overhead) / 2)
    left = available - len(tn.first_grid(3e-3)) * round_s
    assert tn.affords(len(cal), run_s, len(cal), seeds, left, overhead)
    assert not tn.affords(len(cal), run_s, len(cal), seeds, left - round_s, overhead)
    # tuning runs slower than forecast make growth dearer
    slower = tn.run_cost([run_s], [{"wall_s": 2 * run_s}, {"wall_s": 2 * run_s}])
    assert slower == pytest.approx(2 * run_s)
    assert not tn.affords(len(cal), slower, len(cal), seeds, left, overhead)


# -- (d) one tiny comparison -----------------------------------------------------------------------

def test_compare_tunes_each_rate_and_a_fixed_rate_tunes_nothing(tmp_path):
    # a fixed step count keeps the test's size off the machine's load; the budget-sized plan
    # with its tuning is test_compare.py's slow budget test
    out = tmp_path / "tuned"
    ranking = cmp.run_compare(None, list(ACTS), budget_s=12, seeds=1, out_dir=out, progress=False,
                              steps=10)
    data = json.loads((out / "ranking.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    assert data["lr_mode"] == "tuned" and data["tune_seed"] == TUNE_SEED
    assert data["config"]["lr"] is None and data["tuning_rule"] == tn.TUNING_RULE
    with Store(out / "runs.sqlite") as store:
        stored = store.runs("compare")
    tune_runs = [r["config"] for r in stored if r["config"]["stage"] == "tune"]
    eval_runs = [r["config"] for r in stored if r["config"]["stage"] == "run"]
    for row in data["rows"]:
        a, ev = row["act"], data["lr_tuning"][row["act"]]
        assert set(ev) == {"lr", "at_edge", "lrs", "val_loss"} and row["lr"] == ev["lr"]
        assert set(tn.first_grid(cmp.TIERS[0][4])) <= set(ev["lrs"]) and len(ev["val_loss"]) == len(ev["lrs"])
        assert sorted(c["lr"] for c in tune_runs if c["act"] == a) == ev["lrs"]
        assert [c["lr"] for c in eval_runs if c["act"] == a] == [ev["lr"]]
        finite = [v for v in ev["val_loss"] if v is not None and math.isfinite(v)]
        assert ev["val_loss"][ev["lrs"].index(ev["lr"])] == min(finite)
    assert {(c["seed"], c["steps"]) for c in tune_runs} == {(TUNE_SEED, 10)}
    assert plan["tune_rounds"] == tn.TUNE_ROUNDS and data["timing"]["tune_s"] > 0
    assert "lr tuned per activation" in cmp.format_table(ranking)

    # a re-run reuses every stored run, tuning included
    cmp.run_compare(None, list(ACTS), budget_s=12, seeds=1, out_dir=out, progress=False, steps=10)
    with Store(out / "runs.sqlite") as store:
        assert {r["id"]: r["finished"] for r in store.runs("compare")} == {
            r["id"]: r["finished"] for r in stored}

    fixed = tmp_path / "fixed"
    ranking = cmp.run_compare(None, list(ACTS), 12, 1, fixed, progress=False, lr=2e-3, steps=10)
    data = json.loads((fixed / "ranking.json").read_text())
    assert data["lr_mode"] == "fixed" and data["lr_fixed"] == 2e-3 and data["lr_tuning"] is None
    assert [r["lr"] for r in data["rows"]] == [2e-3, 2e-3]
    with Store(fixed / "runs.sqlite") as store:
        assert {r["config"]["stage"] for r in store.runs("compare")} == {"run"}
    assert "lr 0.002 for all" in cmp.format_table(ranking)
