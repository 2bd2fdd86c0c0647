"""`actlab compare`'s engine: budget parsing, sizing arithmetic, the ranking it writes, resume,
and (slow) that it keeps to a wall-clock budget."""

import json
import random
import statistics
import time
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from actlab.lab import compare as cmp
from actlab.lab import compare_tune as tn  # the time model of a run
from actlab.errors import ActlabError
from actlab.analysis.stats import mean_ci
from actlab.engine.store import Store
from actlab.training.loop import step_seconds


@pytest.fixture
def corpus(tmp_path):
    """About 30k characters of word salad: enough for train and validation windows."""
    rng = random.Random(0)
    words = ["the", "king", "and", "queen", "of", "a", "small", "land", "spoke", "to", "their",
             "people", "who", "did", "not", "listen", "then", "went", "home"]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(900)]
    path = tmp_path / "text.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- budget strings --------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("10m", 600), ("1h", 3600), ("1.5h", 5400), ("45", 45), (" 2 min ", 120),
    ("0.5m", 30), ("3H", 10800),
])
def test_parse_budget(text, seconds):
    assert cmp.parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5s", "0s", "10x", "m", "1h30", "1e3s", "inf"])
def test_parse_budget_rejects_bad_strings(text):
    with pytest.raises(ActlabError, match="budget"):
        cmp.parse_budget(text)


# -- sizing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("per_run, tier", [(1, "tiny"), (14.9, "tiny"), (15, "small"),
                                           (89, "small"), (599, "medium"), (600, "large")])
def test_choose_tier_boundaries(per_run, tier):
    assert cmp.TIERS[cmp.choose_tier(per_run)][1] == tier


def test_step_cost_recovers_the_cost_model_from_a_calibration_run():
    step, fixed, tokens = 0.1, 0.3, 256
    # a calibration run of 8 steps + one evaluation of 8 batches under the model's own costs
    wall = fixed + 8 * step + 8 * step / 3
    timed = 7 * step + 8 * step / 3  # what train's tokens/s spans: steps 2..8 and the evaluation
    run = {"wall_s": wall, "tokens_per_s": tokens * 7 / timed, "n_params": 5, "steps": 8}
    got = tn.step_cost(run, tokens)  # a run stored without step stamps
    assert (got["step_s"], got["fixed_s"]) == pytest.approx((step, fixed))
    assert tn.run_seconds(got, 8) == pytest.approx(wall + 4 * 8 * step / 3)  # 5 evals, not 1


def test_a_stalled_calibration_step_does_not_shrink_the_plan():
    # 8 steps of 0.1 s, stamped at each flush, where the scheduler stalled step 3 for 0.5 s; the
    # evaluation after step 7 costs 8 batches x 0.1 / 3 s
    stamps = [0.4 + 0.1 * i + (0.5 if i >= 3 else 0.0) for i in range(8)]
    history = [{"step": i, "train_loss": 1.0, "time_s": t} for i, t in enumerate(stamps)]
    history[-1]["val_loss"] = 1.0
    step_s = step_seconds(history)
    assert step_s == pytest.approx(0.1)
    wall = stamps[-1] + 8 * 0.1 / 3
    got = tn.step_cost({"wall_s": wall, "step_s": step_s, "tokens_per_s": 1.0, "steps": 8}, 256)
    # the stall and the start-up land in fixed_s; the plan keeps the smallest fixed_s it sees
    assert got["step_s"] == pytest.approx(0.1)
    assert got["fixed_s"] == pytest.approx(0.3 + 0.5)


def test_step_seconds_counts_flushes_not_rows():
    # CUDA flushes every few steps: rows of one flush share a stamp. Flushes after steps 3, 7, 11
    # and 15 at 1.0, 1.4, 1.8 and 2.6 s (the last four steps slower), an evaluation after step 7
    rows = [{"step": i, "time_s": [1.0, 1.4, 1.8, 2.6][i // 4]} for i in range(16)]
    rows[7]["val_loss"] = 2.0
    # intervals: 3->7 is 0.1 s/step; 7->11 follows the evaluation and is left out; 11->15 is 0.2
    assert step_seconds(rows) == pytest.approx(0.15)
    assert step_seconds(rows[:4]) is None  # one flush: no interval
    assert step_seconds([{"step": 0}, {"step": 1}]) is None  # stored without stamps


def test_plan_steps_matches_hand_arithmetic():
    cal = {"a": {"fixed_s": 0.5, "step_s": 0.01}, "b": {"fixed_s": 0.5, "step_s": 0.02}}
    # run(S) = fixed + S * step + 5 evaluations * 8 batches * step / 3
    assert tn.run_seconds(cal["a"], 100) == pytest.approx(0.5 + 1.0 + 40 * 0.01 / 3)
    # a round of both: 1 s overhead + 1.0 + 0.4 + 0.03 S; two rounds in 100 s allow 50 s each,
    # so S = floor((50 - 2.4) / 0.03) = floor(1586.67) = 1586
    steps = tn.plan_steps(cal, available_s=100.0, rounds=2, overhead_s=1.0)
    assert steps == 1586
    assert 2 * tn.round_seconds(cal, steps, 1.0) <= 100.0 < 2 * tn.round_seconds(cal, steps + 1, 1.0)
    # two runs at a time halve the run part of a round: floor((50 - 0.9 - 0.7) / 0.015) = 3226
    wide = tn.plan_steps(cal, 100.0, 2, 0.9, parallel=2)
    assert wide == 3226
    assert 2 * tn.round_seconds(cal, wide, 0.9, 2) <= 100.0 < 2 * tn.round_seconds(cal, wide + 1, 0.9, 2)
    assert tn.plan_steps(cal, 1.0, 2) == 0  # nothing fits


def _hand_ranking(finals: dict, baselines: dict | None) -> dict:
    results = [{"params": {"act": a, "seed": s}, "outcome": "completed", "final_val_loss": v,
                "n_params": 10, "tokens_per_s": 1.0} for a, vs in finals.items() for s, v in enumerate(vs)]
    plan = {"base": {"data": None, "data_hash": "h", "tokenizer": "char", "n_layer": 1, "n_head": 1,
                     "n_embd": 8, "block_size": 8, "batch_size": 2, "lr": 1e-3, "eval_batches": 1,
                     "device": "cpu"},
            "seeds": 3, "budget_s": 10.0, "tier": "tiny", "steps": 10, "calibration": {}}
    return cmp._rank(results, list(finals), plan, [], {}, baselines)[0]


def test_ranking_names_activations_whose_seeds_disagree():
    finals = {"gelu": [2.60, 2.62, 2.61], "relu": [2.65, 2.90, 2.66]}  # relu ranges over 0.25
    ranking = _hand_ranking(finals, None)
    assert ranking["best"] == "gelu"
    assert ranking["seed_spread"] == {"relu": pytest.approx(0.25)}
    assert any(n.startswith("final losses differ by more than 0.1 nats") and "relu 0.25" in n
               for n in ranking["notes"])
    assert "relu 0.25" in cmp.format_table(ranking)


BASE = {"unigram": 3.3, "bigram": 2.5, "trigram": 2.1, "smoothing": "ikn"}


def test_regime_from_hand_built_numbers_goes_both_ways():
    finals = {"gelu": [2.00, 2.05, 2.02], "sigmoid": [2.30, 2.40, 2.35]}
    inside = _hand_ranking(finals, BASE)  # gelu's median 2.02 < trigram 2.1
    assert inside["in_regime"] is True and inside["regime"]["in_regime"] and inside["warning"] is None
    assert inside["reference_act"] == "gelu" and inside["baselines"] == BASE
    assert inside["regime"]["reference_loss"] == pytest.approx(2.02)
    assert inside["vs_baselines"]["sigmoid"]["minus_trigram"] == pytest.approx(2.35 - 2.1)
    assert inside["vs_baselines"]["gelu"]["below"] == ["unigram", "bigram", "trigram"]
    assert any(n.startswith("sigmoid stays above the trigram baseline") for n in inside["notes"])
    table = cmp.format_table(inside).splitlines()
    assert table[-1].startswith("n-gram baselines of the validation split (nats/token): unigram "
                                "3.3000, bigram 2.5000, trigram 2.1000; reference gelu median 2.0200")
    assert table[-1].endswith(": in regime")

    out = _hand_ranking(finals, {**BASE, "trigram": 1.95})  # 2.02 is above 1.95
    assert out["in_regime"] is False and out["rows"][0]["act"] == "gelu"  # still ranked, but marked
    assert out["regime"]["reason"] == ("reference 2.02 nats vs trigram 1.95: train longer: a larger "
                                       "--budget, or fewer activations or seeds")
    assert not any("stays above" in n for n in out["notes"])  # no findings out of regime
    table = cmp.format_table(out).splitlines()
    assert table[-2].endswith(": out of regime")
    assert table[-1] == out["warning"] and table[-1].startswith(
        "warning: out of regime (reference 2.02 nats vs trigram 1.95: train longer")
    assert _hand_ranking(finals, None)["in_regime"] is False  # no baselines: out of regime


def test_without_gelu_the_best_ranked_candidate_is_the_reference():
    r = _hand_ranking({"relu": [2.10, 2.12, 2.11], "sigmoid": [2.00, 2.02, 2.01]}, BASE)
    assert r["best"] == "sigmoid" and r["reference_act"] == "sigmoid"
    assert r["regime"]["reference_loss"] == pytest.approx(2.01) and r["in_regime"] is True
    assert r["regime"]["reference"].startswith("sigmoid FFN")
    assert any(n.startswith("the GELU reference was not run") for n in r["notes"])
    assert "reference sigmoid median 2.0100" in cmp.format_table(r)


def test_time_figure_needs_time_stamps(tmp_path):
    from actlab.studies.convergence.figures import val_vs_time

    stamped = {"gelu": {0: {"history": [{"step": 4, "val_loss": 3.0, "time_s": 0.5},
                                        {"step": 9, "val_loss": 2.5, "time_s": 1.0}]}}}
    assert val_vs_time(stamped, ["gelu"], tmp_path / "t.png", "t") == str(tmp_path / "t.png")
    diverged = {"gelu": {0: {"outcome": "diverged", "history": [{"step": 4, "val_loss": 3.0,
                                                                 "time_s": 0.5}]}}}
    assert val_vs_time(diverged, ["gelu"], tmp_path / "d.png", "d") is None
    old = {"gelu": {0: {"history": [{"step": 9, "val_loss": 2.5}]}}}  # stored before stamps
    assert val_vs_time(old, ["gelu"], tmp_path / "u.png", "u") is None
    assert not (tmp_path / "u.png").exists()


# -- a comparison on a small corpus ------------------------------------------------------------

def test_compare_writes_a_complete_ranking_and_resumes(corpus, tmp_path):
    # one fixed rate: the tuning has its own tests (test_compare_tune.py)
    out = tmp_path / "cmp"
    acts = ["gelu", "sigmoid", "swiglu"]
    ranking = cmp.run_compare(str(corpus), acts, budget_s=30, seeds=3, out_dir=out,
                              progress=False, steps=12, lr=3e-3)
    data = json.loads((out / "ranking.json").read_text())
    rows = data["rows"]
    assert sorted(r["act"] for r in rows) == sorted(acts) and data["best"] == rows[0]["act"]
    assert data["config"]["tier"] == "tiny" and data["steps"] == 12
    assert data["config"]["seeds_run"] == [0, 1, 2] and data["environment"]["torch"]
    assert data["lr_mode"] == "fixed" and data["config"]["lr"] == 3e-3 and data["lr_tuning"] is None
    assert all(r["lr"] == 3e-3 for r in rows)
    means = [r["mean"] for r in rows]
    assert means == sorted(means)
    for r in rows:
        ci = mean_ci(r["losses"])  # the CI is the t-interval of the stored per-seed losses
        assert (r["mean"], r["lo"], r["hi"], r["n"]) == pytest.approx(
            (ci["mean"], ci["lo"], ci["hi"], 3))
        assert r["lo"] < r["mean"] < r["hi"] and r["n_params"] > 0
    assert rows[0]["vs_best"] is None
    for r in rows[1:]:
        t = r["vs_best"]
        best = rows[0]["losses"]
        assert t["diff"] == pytest.approx(sum(a - b for a, b in zip(r["losses"], best)) / 3)
        assert 0 <= t["p"] <= t["p_holm"] <= 1 and isinstance(r["significant"], bool)
    assert sorted(Path(rel).name for rel in data["figures"]) == [
        "final_loss.png", "loss_curves.png", "val_loss_vs_time.png"]
    for rel in data["figures"]:
        assert mpimg.imread(out / rel).std() > 0
    table = cmp.format_table(ranking)
    assert all(a in table for a in acts) and "95% CI" in table and "lr 0.003 for all" in table

    # the regime rule: the baselines of the data the runs trained on, gelu as the reference
    from actlab.data.baselines import ngram_baselines
    from actlab.studies.convergence.runs import prepared

    d = prepared(str(corpus.resolve()), "char", 8)
    expected = ngram_baselines(d.train_ids, d.val_ids, d.vocab_size)
    for o in ("unigram", "bigram", "trigram"):
        assert data["baselines"][o] == pytest.approx(expected[o], rel=1e-12)
    assert data["reference_act"] == "gelu" and isinstance(data["in_regime"], bool)
    gelu = statistics.median(next(r["losses"] for r in rows if r["act"] == "gelu"))
    assert data["regime"]["reference_loss"] == pytest.approx(gelu)
    assert data["in_regime"] == (gelu < expected["trigram"]) == data["regime"]["in_regime"]
    assert sorted(data["vs_baselines"]) == sorted(acts)
    for r in rows:
        vs = data["vs_baselines"][r["act"]]
        assert vs["minus_trigram"] == pytest.approx(statistics.median(r["losses"]) - expected["trigram"])
    assert (table.splitlines()[-1] == data["warning"]) != data["in_regime"]

    # same inputs again: the stored runs are reused, nothing is trained twice
    with Store(out / "runs.sqlite") as store:
        before = {r["id"]: r["finished"] for r in store.runs("compare")}
    again = cmp.run_compare(str(corpus), acts, 30, 3, out, progress=False, steps=12, lr=3e-3)
    with Store(out / "runs.sqlite") as store:
        after = {r["id"]: r["finished"] for r in store.runs("compare")}
    assert len(before) == 9 and after == before
    assert [r["losses"] for r in again["rows"]] == [r["losses"] for r in rows]


def test_compare_rejects_bad_input(corpus, tmp_path):
    with pytest.raises(ActlabError, match="at least two"):
        cmp.run_compare(str(corpus), ["gelu"], 30, 2, tmp_path)
    with pytest.raises(ActlabError, match="gelux"):
        cmp.run_compare(str(corpus), ["gelu", "gelux"], 30, 2, tmp_path)
    with pytest.raises(ActlabError):
        cmp.run_compare(str(corpus), ["gelu", "relu"], 1, 3, tmp_path / "tiny", progress=False)


@pytest.mark.slow
def test_compare_keeps_to_its_budget(corpus, tmp_path):
    budget = 25.0
    t0 = time.perf_counter()
    ranking = cmp.run_compare(str(corpus), ["gelu", "sigmoid"], budget, 2, tmp_path,
                              progress=False)
    wall = time.perf_counter() - t0
    # the machine is shared, so only bounds: never over 110%, and not wasting half the budget
    plan = json.loads((tmp_path / "plan.json").read_text())
    seen = {k: plan[k] for k in ("steps", "calibration", "overhead_s", "available_s", "round_s")}
    assert 0.5 * budget <= wall <= 1.1 * budget, (wall, seen)
    assert ranking["steps"] >= cmp.MIN_STEPS and len(ranking["rows"]) == 2
    timing = ranking["timing"]
    assert timing["round_s_planned"] == plan["round_s"]
    assert len(timing["rounds_s"]) == len(ranking["config"]["seeds_run"])
    assert timing["tune_s"] + sum(timing["rounds_s"]) < wall
    # the step count is the one that pays for the tuning runs beside the seeds
    assert ranking["lr_mode"] == "tuned" and plan["tune_rounds"] == tn.TUNE_ROUNDS
    assert plan["steps"] == tn.plan_steps(plan["calibration"], plan["available_s"],
                                          2 + tn.TUNE_ROUNDS, plan["overhead_s"], plan["parallel"])
    assert plan["tune_s_planned"] + plan["eval_s_planned"] <= plan["available_s"]
