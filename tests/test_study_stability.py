"""Study C7 (stability): each statistic on hand-built runs with hand-worked answers, the rule on
hand-built part outcomes, and the smoke preset end to end."""

import json
import math

import matplotlib.image as mpimg
import pytest

from actlab.article.claims import CLAIMS
from actlab.studies import base
from actlab.studies.stability import evidence as ev
from actlab.studies.stability import study as s
from actlab.studies.stability.presets import PRESETS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRID = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]


def run(losses, *, outcome="completed", final=2.0, act="gelu", lr=1e-2, seed=0, **extra):
    """A stored run: one history row per step, time_s = 0.1 s per step."""
    history = [{"step": i, "train_loss": v, "time_s": round(0.1 * (i + 1), 6)}
               for i, v in enumerate(losses)]
    return {"params": {"act": act, "lr": lr, "seed": seed, "batch_size": 4, "block_size": 8},
            "outcome": outcome, "final_val_loss": final, "history": history,
            "steps": len(history), **extra}


# -- sensitivity width -----------------------------------------------------------------------

def test_width_is_the_unbroken_run_of_rates_near_the_best():
    # best 2.00 at 1e-2; within 2% means <= 2.04: 3e-2 (2.03) yes, 3e-3 (2.05) no
    got = ev.sensitivity_width(GRID, [2.30, 2.05, 2.00, 2.03, 2.50, math.nan], 0.02)
    assert got["best_lr"] == 1e-2 and (got["lo"], got["hi"]) == (1e-2, 3e-2)
    assert got["width"] == pytest.approx(math.log10(3))


def test_width_stops_at_a_rate_outside_the_margin_even_if_a_farther_one_is_inside():
    # 1e-3 is within 2% but 3e-3 breaks the run: the range is 1e-2 .. 1e-1, one decade
    got = ev.sensitivity_width(GRID, [2.02, 2.50, 2.00, 2.01, 2.02, math.inf], 0.02)
    assert (got["lo"], got["hi"]) == (1e-2, 1e-1) and got["width"] == pytest.approx(1.0)


def test_width_of_a_lone_best_is_zero_ties_go_low_and_all_diverged_is_nan():
    assert ev.sensitivity_width(GRID[:3], [2.5, 2.0, 2.5], 0.02)["width"] == 0.0
    tie = ev.sensitivity_width(GRID[:2], [2.0, 2.0], 0.02)
    assert tie["best_lr"] == 1e-3 and tie["width"] == pytest.approx(math.log10(3))
    dead = ev.sensitivity_width(GRID[:2], [math.inf, math.nan], 0.02)
    assert math.isnan(dead["width"]) and dead["lo"] is None


def test_excess_caps_a_diverged_rate_at_the_cap():
    # min(v, 3.0) - 2.0 over [2.0, 2.5, 3.0 (inf capped)] = (0 + 0.5 + 1.0) / 3
    assert ev.excess([2.0, 2.5, math.inf], 3.0) == pytest.approx(0.5)


# -- tokens, seconds and CPU-seconds to the target -------------------------------------------

def test_to_target_on_a_hand_built_curve():
    # 10 steps at 3.0 then 10 at 1.0: the 10-step trailing mean after step i (0-based) is
    # (3 * (19 - i) + (i - 9)) / 10 for i in 10..19: 2.2 at i = 13, 2.0 at i = 14 <= 2.05
    r = run([3.0] * 10 + [1.0] * 10, cpu_s=10.0, wall_s=12.0, train_seconds=9.0,
            tokens_per_s=123.0)
    got = ev.to_target(r, 2.05)
    assert got["steps"] == 15 and got["tokens"] == 15 * 4 * 8
    assert got["wall_s"] == pytest.approx(1.5)
    # training CPU = 10 * 9/12 = 7.5 s over 20 steps; 15 of them to the target
    assert got["cpu_s"] == pytest.approx(7.5 * 15 / 20)
    assert got["tokens_per_cpu_s"] == pytest.approx(20 * 32 / 7.5)
    assert got["tokens_per_s"] == 123.0
    never = ev.to_target(r, 0.5)
    assert never["steps"] is None and never["cpu_s"] is None and never["tokens"] is None


def test_target_is_the_factor_times_the_median_final_trailing_mean():
    runs = [run([v] * 12) for v in (2.0, 2.2, 2.6)] + [run([1.0], outcome="diverged")]
    assert ev.target_loss(runs, 1.05) == pytest.approx(1.05 * 2.2)
    assert ev.target_loss([], 1.05) is None


def test_median_counts_a_seed_that_never_got_there_as_infinite():
    assert ev.median_inf([3.0, None, 1.0]) == 3.0
    assert ev.median_inf([1.0, None]) == math.inf


# -- divergences -----------------------------------------------------------------------------

def test_unstable_names_each_of_the_three_ways_and_ignores_errors():
    assert ev.unstable(run([3.0, math.nan], outcome="diverged", final=math.nan), 3.3) == "diverged"
    assert ev.unstable(run([3.0] * 5, final=3.4), 3.3) == "above unigram"
    # trailing mean ends at 2.0 after reaching 1.0: more than 10% back up
    assert ev.unstable(run([3.0] * 10 + [1.0] * 10 + [2.0] * 10, final=2.1), 3.3) == "loss rose"
    # ends 9% above its lowest: still stable
    assert ev.unstable(run([2.0] * 10 + [1.0] * 10 + [1.09] * 10, final=1.1), 3.3) is None
    assert ev.unstable({"params": {}, "outcome": "error"}, 3.3) is None


def test_grid_table_counts_unstable_runs_per_rate_and_takes_the_median_over_seeds():
    results = [
        run([2.0] * 5, final=2.0, act="gelu", lr=1e-2, seed=0),
        run([2.0] * 5, final=2.2, act="gelu", lr=1e-2, seed=1),
        run([2.0] * 5, final=2.6, act="gelu", lr=1e-2, seed=2),
        run([4.0, math.nan], outcome="diverged", final=math.nan, act="gelu", lr=3e-1, seed=0),
        run([4.0] * 5, final=3.5, act="gelu", lr=3e-1, seed=1),
        {"params": {"act": "gelu", "lr": 3e-1, "seed": 2}, "outcome": "error"},
    ]
    t = ev.grid_table(results, unigram=3.3)["gelu"]
    assert t["lrs"] == [1e-2, 3e-1] and t["runs"] == [3, 2] and t["errors"] == 1
    assert t["val_loss"][0] == pytest.approx(2.2)  # median of 2.0, 2.2, 2.6
    assert t["val_loss"][1] == math.inf  # median of (+inf, 3.5): a diverged seed counts +inf
    assert t["unstable"] == [0, 2] and t["reasons"][1] == ["diverged", "above unigram"]


# -- spread and the comparisons --------------------------------------------------------------

def test_seed_range():
    assert ev.seed_range([2.0, 2.1, 1.95]) == pytest.approx(0.15)
    assert ev.seed_range([2.0, None]) == math.inf
    assert math.isnan(ev.seed_range([2.0]))


@pytest.mark.parametrize("fn,a,b,expected", [
    (lambda a, b: ev.compare_ratio(a, b, 0.1), 11.1, 10.0, ev.WORSE),
    (lambda a, b: ev.compare_ratio(a, b, 0.1), 10.9, 10.0, ev.EVEN),
    (lambda a, b: ev.compare_ratio(a, b, 0.1), 9.0, 10.0, ev.BETTER),
    (lambda a, b: ev.compare_ratio(a, b, 0.1), math.inf, 10.0, ev.WORSE),
    (lambda a, b: ev.compare_ratio(a, b, 0.1), math.inf, math.inf, ev.EVEN),
    (lambda a, b: ev.compare_ratio(a, b, 0.1), math.nan, 10.0, ev.NA),
    (lambda a, b: ev.compare_diff(a, b, 0.02), 0.05, 0.02, ev.WORSE),
    (lambda a, b: ev.compare_diff(a, b, 0.02), 0.03, 0.02, ev.EVEN),
    (lambda a, b: ev.compare_diff(a, b, 0.02), 0.01, math.inf, ev.BETTER),
    (ev.compare_width, 0.477, 1.0, ev.WORSE),
    (ev.compare_width, 1.0, 1.0, ev.EVEN),
    (ev.compare_width, 1.0, 0.0, ev.BETTER),
    # one step of 1e-2..3e-2 against one of 3e-3..1e-2: the same width in grid steps
    (ev.compare_width, math.log10(3), math.log10(10 / 3), ev.EVEN),
    (ev.compare_count, 2, 1, ev.WORSE),
    (ev.compare_count, 0, 0, ev.EVEN),
    (ev.compare_count, 0, 3, ev.BETTER),
])
def test_compare_each_statistic(fn, a, b, expected):
    assert fn(a, b) == expected


@pytest.mark.parametrize("outs,expected", [
    ([ev.WORSE, ev.WORSE, ev.WORSE], ev.WORSE),
    ([ev.WORSE, ev.WORSE, ev.EVEN], ev.MIXED),
    ([ev.WORSE, ev.WORSE, ev.BETTER], ev.MIXED),
    ([ev.BETTER, ev.BETTER, ev.BETTER], ev.BETTER),
    ([ev.BETTER, ev.EVEN, ev.EVEN], ev.EVEN),  # worse than none, better than not all
    ([ev.WORSE, ev.NA, ev.WORSE], ev.WORSE),
    ([ev.NA, ev.NA], ev.NA),
    ([], ev.NA),
])
def test_part_outcome(outs, expected):
    assert ev.part_outcome(outs) == expected


def _act(cpu, width, unstable, spread):
    return {"cpu_s_to_target": cpu, "width_decades": width, "n_unstable": unstable, "spread": spread}


def test_comparisons_on_hand_built_activations():
    per_act = {"sigmoid": _act(20.0, 0.477, 2, 0.05), "relu": _act(10.0, 1.0, 1, 0.01),
               "gelu": _act(19.0, 0.477, 1, 0.04), "silu": _act(10.0, 1.0, 3, 0.02)}
    table, parts = s.comparisons(per_act)
    # faster: 20 vs 10 worse, vs 19 within 10% even -> mixed
    assert [v["outcome"] for v in table["faster"].values()] == [ev.WORSE, ev.EVEN, ev.WORSE]
    assert parts == {"faster": ev.MIXED, "sensitivity": ev.MIXED, "divergences": ev.MIXED,
                     "spread": ev.MIXED}
    calm = {a: {**r, "n_unstable": 0} for a, r in per_act.items()}
    assert s.comparisons(calm)[1]["divergences"] == ev.NA  # no run anywhere went unstable
    assert s.comparisons({"gelu": per_act["gelu"]})[1]["faster"] == ev.NA


# -- the rule --------------------------------------------------------------------------------

W, B, E, NA = ev.WORSE, ev.BETTER, ev.EVEN, ev.NA
IN = {"in_regime": True}


@pytest.mark.parametrize("parts,expected", [
    ((W, W, E, E), base.SUPPORTED),
    ((W, E, NA, W), base.SUPPORTED),
    ((W, E, E, E), base.CAVEAT),       # slower, not less reliable
    ((E, W, W, W), base.CAVEAT),       # less reliable, not slower
    ((W, W, W, B), base.CAVEAT),       # a part in sigmoid's favour
    ((E, E, E, E), base.NOT_SUPPORTED),
    ((ev.MIXED, E, B, E), base.CAVEAT),  # slower than some comparators
    ((W, ev.MIXED, E, E), base.CAVEAT),
    ((B, E, NA, B), base.NOT_SUPPORTED),
    ((NA, W, W, W), base.INCONCLUSIVE),
])
def test_decide_gives_each_verdict(parts, expected):
    assert s.decide(dict(zip(s.PARTS, parts)), IN) == expected


def test_out_of_regime_is_inconclusive_whatever_the_parts_say():
    reg = {"in_regime": False, "reason": "reference 2.65 nats vs trigram 2.08: train longer"}
    assert s.decide(dict(zip(s.PARTS, (W, W, W, W))), reg) == base.INCONCLUSIVE
    assert s.decide(dict(zip(s.PARTS, (W, W, W, W)))) == base.SUPPORTED


def test_gelu_top_rate_check():
    table = {"gelu": {"lrs": [1e-2, 1e-1, 3e-1], "val_loss": [2.0, 2.1, 2.21], "unstable": [0, 0, 0]}}
    assert s.gelu_top(table)["degraded"] is True  # 2.21 > 1.1 x 2.0
    table["gelu"]["val_loss"][-1] = 2.19
    assert s.gelu_top(table)["degraded"] is False
    table["gelu"]["unstable"][-1] = 1
    assert s.gelu_top(table)["degraded"] is True


# -- the smoke preset end to end ---------------------------------------------------------------

@pytest.mark.slow
def test_smoke_study_writes_a_complete_verdict(tmp_path):
    verdict = s.run("smoke", tmp_path, progress=False)
    base.write_verdict(verdict, tmp_path)
    data = json.loads((tmp_path / "verdict.json").read_text())
    assert data["claim"] == "C7" and data["quote"] == CLAIMS["C7"].quote
    assert data["rule"] == s.RULE and data["study"] == "stability" and data["preset"] == "smoke"
    ev_ = data["evidence"]
    preset = PRESETS["smoke"]
    # 20-step models stay above the trigram baseline: out of regime, so INCONCLUSIVE
    assert ev_["regime"]["in_regime"] is False and data["verdict"] == base.INCONCLUSIVE
    assert data["summary"].startswith("out of regime (reference ")
    assert set(ev_["per_act"]) == set(preset["acts"]) and set(ev_["parts"]) == set(s.PARTS)
    for act, r in ev_["per_act"].items():
        assert r["grid"]["lrs"] == list(preset["lrs"]) and r["grid"]["runs"] == [1, 1]
        assert r["lr"] in preset["lrs"] and len(r["losses"]) == len(preset["seeds"])
        assert len(r["to_target"]) == len(preset["seeds"]) and r["n_params"] > 0
    assert data["figures"] == ["figures/lr_curves.png", "figures/time_to_target.png",
                               "figures/seed_spread.png"]
    for rel in data["figures"]:
        path = tmp_path / rel
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        assert mpimg.imread(path).std() > 0
    # everything came from the store: a second run recomputes nothing and agrees exactly
    again = s.run("smoke", tmp_path, progress=False)
    assert again.evidence["per_act"]["gelu"]["losses"] == ev_["per_act"]["gelu"]["losses"]
    assert again.evidence["per_act"]["gelu"]["cpu_s_to_target"] == pytest.approx(
        ev_["per_act"]["gelu"]["cpu_s_to_target"])
