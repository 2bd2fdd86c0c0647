"""Study C6 (scaling): the slope fit against hand-worked values, the rule on hand-built fits,
out-of-regime points kept out of the fits, the presets' ladders, and the smoke preset end to end."""

import json
import math

import matplotlib.image as mpimg
import numpy as np
import pytest

from actlab.article.claims import CLAIMS
from actlab.studies import base
from actlab.studies.scaling import evidence as E
from actlab.studies.scaling import presets as P
from actlab.studies.scaling import study as S

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BASELINES = {"unigram": 3.34, "bigram": 2.50, "trigram": 2.08}


# -- the slope fit -----------------------------------------------------------------------------

def test_points_on_an_exact_line_give_its_slope_and_a_zero_width_interval():
    xs = [1, 1, 2, 2, 3, 4]
    fit = E.fit_slope(xs, [0.5 + 0.25 * x for x in xs])
    assert fit["slope"] == pytest.approx(0.25, abs=1e-12)
    assert fit["intercept"] == pytest.approx(0.5, abs=1e-12)
    assert fit["hi"] - fit["lo"] == pytest.approx(0.0, abs=1e-9)
    assert (fit["n"], fit["n_x"]) == (6, 4)


def test_slope_and_interval_match_a_hand_worked_example_and_polyfit():
    # x = 0, 1, 2; y = 0, 2, 1: slope 1/2, intercept 1/2, residuals -1/2, 1, -1/2, so
    # s^2 = 1.5 / (3 - 2), Sxx = 2, se = sqrt(0.75), t(0.975, 1) = 12.7062.
    fit = E.fit_slope([0, 1, 2], [0, 2, 1])
    assert fit["slope"] == pytest.approx(0.5)
    assert fit["intercept"] == pytest.approx(0.5)
    assert fit["se"] == pytest.approx(math.sqrt(0.75))
    assert fit["lo"] == pytest.approx(0.5 - 12.7062 * math.sqrt(0.75), abs=1e-3)
    assert fit["hi"] == pytest.approx(0.5 + 12.7062 * math.sqrt(0.75), abs=1e-3)
    rng = np.random.default_rng(3)
    x = np.repeat(np.log10([1e3, 3e3, 1e4, 3e4]), 3)
    y = 0.02 * x + rng.normal(0, 0.01, len(x))
    slope, intercept = np.polyfit(x, y, 1)
    fit = E.fit_slope(x, y)
    assert (fit["slope"], fit["intercept"]) == (pytest.approx(slope), pytest.approx(intercept))


def test_too_few_points_give_no_slope_or_no_interval():
    two = E.fit_slope([1, 2], [3, 5])
    assert two["slope"] == pytest.approx(2.0) and math.isnan(two["lo"]) and math.isnan(two["hi"])
    one_x = E.fit_slope([1, 1, 1], [3, 4, 5])
    assert math.isnan(one_x["slope"]) and one_x["n_x"] == 1
    assert E.fit_slope([1, 2, None, 3, math.nan], [1, 2, 3, math.inf, 4])["n"] == 2


# -- the rule ----------------------------------------------------------------------------------

def _fit(lo, hi, n_points=4):
    f = {"slope": (lo + hi) / 2, "lo": lo, "hi": hi, "intercept": 0.0}
    return {**f, "n_points": n_points, "outcome": E.outcome(f, n_points)}


UP, DOWN, FLAT = _fit(0.01, 0.05), _fit(-0.05, -0.01), _fit(-0.02, 0.03)
FEW_UP = _fit(0.01, 0.05, n_points=2)


def test_outcomes():
    assert [UP["outcome"], DOWN["outcome"], FLAT["outcome"], FEW_UP["outcome"]] == [
        "grows", "shrinks", "unresolved", "too few points"]


@pytest.mark.parametrize("size, depth, expected", [
    ((UP, FLAT), (FLAT, FLAT), base.SUPPORTED),
    ((FEW_UP, FEW_UP), (UP, UP), base.SUPPORTED),  # an axis with too few points shrinks nowhere
    ((DOWN, FLAT), (FLAT, FEW_UP), base.NOT_SUPPORTED),
    ((UP, FLAT), (DOWN, FLAT), base.INCONCLUSIVE),  # grows on one axis, shrinks on the other
    ((FLAT, FLAT), (FLAT, FLAT), base.INCONCLUSIVE),
    ((FEW_UP, FEW_UP), (FEW_UP, FEW_UP), base.INCONCLUSIVE),
])
def test_rule_gives_each_verdict(size, depth, expected):
    fits = {"size": dict(zip(("gelu", "relu2"), size)), "depth": dict(zip(("gelu", "relu2"), depth))}
    assert E.decide(fits) == expected


# -- points, regime and the fit ----------------------------------------------------------------

def _point(label, x, gelu, sigmoid):
    losses = {"gelu": dict(enumerate(gelu)), "sigmoid": dict(enumerate(sigmoid))}
    return E.point_evidence(label, x, losses, (0, 1), ("gelu",), BASELINES, "train longer")


def test_out_of_regime_points_enter_no_fit():
    pts = [_point("a", 2.0, [2.00, 2.02], [2.10, 2.12]),   # gaps 0.10, 0.10
           _point("b", 3.0, [1.90, 1.92], [2.10, 2.12]),   # gaps 0.20, 0.20
           _point("c", 4.0, [1.80, 1.82], [2.10, 2.12]),   # gaps 0.30, 0.30
           _point("d", 5.0, [2.50, 2.52], [2.00, 2.02])]   # out of regime; gaps -0.50
    assert [p["in_regime"] for p in pts] == [True, True, True, False]
    assert pts[3]["regime"]["reason"] == "reference 2.51 nats vs trigram 2.08: train longer"
    fit = E.axis_fits(pts, ("gelu",))["gelu"]
    assert fit["slope"] == pytest.approx(0.1) and fit["hi"] - fit["lo"] == pytest.approx(0, abs=1e-9)
    assert (fit["n"], fit["n_points"], fit["outcome"]) == (6, 3, "grows")
    # with the fourth point in regime the slope would turn negative
    assert E.fit_slope([2, 2, 3, 3, 4, 4, 5, 5], [.1, .1, .2, .2, .3, .3, -.5, -.5])["slope"] < 0
    # two points in regime are too few, whatever their slope
    assert E.axis_fits(pts[1:], ("gelu",))["gelu"]["outcome"] == "too few points"


def test_a_diverged_run_leaves_its_pair_out():
    pt = _point("a", 2.0, [2.0, 2.0], [2.1, math.nan])
    assert pt["gaps"]["gelu"]["per_seed"][0] == pytest.approx(0.1)
    assert pt["gaps"]["gelu"]["per_seed"][1] is None and pt["gaps"]["gelu"]["n_unpaired"] == 1


def test_extrapolation_in_decades():
    ex = E.extrapolation(7_000_000)
    assert ex["decades"] == pytest.approx(3.0)
    assert "3.0 decades" in ex["warning"] and "no prediction at LLM scale" in ex["warning"]


# -- presets -----------------------------------------------------------------------------------

def test_non_embedding_params_match_the_built_model():
    from actlab.config import ModelConfig
    from actlab.nn.gpt import GPT

    model = GPT(ModelConfig(vocab_size=65, n_layer=2, n_embd=16, n_head=2, block_size=8))
    blocks = sum(p.numel() for p in model.transformer.h.parameters())
    assert P.non_embedding_params(2, 16, 8) == blocks == 2 * (4 * 256 + 2 * 16 * 64 + 9 * 16 + 64)
    assert P.steps_for(12_000, 64, 32, 64) == 375


@pytest.mark.parametrize("name", ["quick", "standard", "full"])
def test_ladders_span_what_the_study_needs(name):
    p = P.PRESETS[name]
    size = [pt["params"] for pt in P.points(p, "size")]
    assert len(size) >= 4 and max(size) / min(size) >= 8
    t = p["train"]
    for pt in P.points(p, "size"):  # a fixed ratio of tokens to parameters
        assert pt["tokens"] / pt["params"] == pytest.approx(p["size"]["ratio"], rel=0.01)
    depths = [pt["n_layer"] for pt in P.points(p, "depth")]
    assert depths[0] == 2 and depths[-1] >= 16
    assert len({pt["n_embd"] for pt in P.points(p, "depth")}) == 1
    assert t["block_size"] and len(p["seeds"]) >= 2


def test_acts_follow_the_registry():
    from actlab.activations import names

    acts = P.acts_for()
    assert acts[:3] == ("sigmoid", "gelu", "relu2")
    assert ("leaky_relu2" in acts) == ("leaky_relu2" in names())


def test_registered_with_the_article_quote():
    study = base.get_study("scaling")
    assert study.claim == "C6" and CLAIMS["C6"].study == "scaling"
    assert "doesn't scale to the depth and scale of LLMs" in CLAIMS["C6"].quote


# -- end to end --------------------------------------------------------------------------------

@pytest.mark.slow
def test_smoke_run_returns_a_complete_verdict_with_png_figures(tmp_path):
    v = S.run("smoke", tmp_path, progress=False)
    assert (v.claim, v.study, v.preset, v.rule) == ("C6", "scaling", "smoke", S.RULE)
    assert v.verdict == base.INCONCLUSIVE  # smoke models stay far above the trigram baseline
    ev = v.evidence
    assert [pt["label"] for pt in ev["size"]["points"]] == ["1x8", "1x12", "1x16"]
    assert [pt["label"] for pt in ev["depth"]["points"]] == ["1x8", "2x8", "3x8"]
    for axis in ("size", "depth"):
        assert not any(pt["in_regime"] for pt in ev[axis]["points"])
        assert all(f["outcome"] == "too few points" for f in ev[axis]["fits"].values())
        for pt in ev[axis]["points"]:
            assert all(len(s["losses"]) == 2 and all(x is not None for x in s["losses"])
                       for s in pt["per_act"].values())
    assert set(ev["comparators"]) >= {"gelu", "relu2"}
    assert ev["extrapolation"]["largest_params"] == P.non_embedding_params(1, 16, 8)
    assert sorted(v.figures) == ["figures/gap_vs_depth.png", "figures/gap_vs_params.png",
                                 "figures/loss_vs_params.png"]
    for rel in v.figures:
        path = tmp_path / rel
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        assert mpimg.imread(path).shape[0] > 100
    written = json.loads(base.write_verdict(v, tmp_path).read_text())
    assert written["verdict"] == base.INCONCLUSIVE and written["evidence"]["size"]["fits"]
    assert any("decades of parameters" in c for c in v.caveats)


def test_tuning_per_point_and_at_a_named_point(monkeypatch, tmp_path):
    # A fake store: the tuning loss is |log10(lr) + 2| + the point's width / 1000, so every
    # group's grid (1e-3, 3e-3) grows upward (9e-3, then 0.027) until 9e-3 is interior.
    from actlab.studies.scaling import runs as R

    calls = []

    def fake_grid(study, jobs, fn, out, progress=True):
        calls.append(len(jobs))
        return [{"params": j, "final_val_loss": abs(math.log10(j["lr"]) + 2) + j["n_embd"] / 1000}
                for j in jobs]

    monkeypatch.setattr(R, "run_grid", fake_grid)
    p = {**P.PRESETS["smoke"], "lrs": {"size": (1e-3, 3e-3), "depth": (1e-3, 3e-3)},
         "depth": {**P.PRESETS["smoke"]["depth"], "tune_at": "2x8"}}
    axes = {axis: P.points(p, axis) for axis in P.AXES}
    lrs = R.tune(p, axes, ("sigmoid", "gelu"), tmp_path, False, {})
    assert set(lrs) == {(ax, pt["label"], a) for ax in P.AXES for pt in axes[ax]
                        for a in ("sigmoid", "gelu")}
    assert {v["lr"] for v in lrs.values()} == {0.009}
    # size: 3 points x 2 acts; depth: only 2x8, for both acts: 8 groups of 2, 3, then 4 rates
    # (each round asks for the whole grid; the real store computes only what is new)
    assert calls == [8 * 2, 8 * 3, 8 * 4]
    assert lrs[("depth", "1x8", "gelu")] is lrs[("depth", "2x8", "gelu")]
    assert lrs[("size", "1x8", "gelu")]["lrs"] == [1e-3, 3e-3, 9e-3, 0.027]
