"""Study C2 (centering): the decision rule on hand-built evidence, the regime rule on hand-built
stored results; the smoke preset end to end."""

import math

import matplotlib.image as mpimg
import numpy as np
import pytest

from actlab.analysis import regime
from actlab.article.claims import CLAIMS
from actlab.analysis.stats import mean_ci
from actlab.engine.store import Store
from actlab.studies import base
from actlab.studies.centering import study as c
from actlab.analysis.stats import mean_band as band

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- the rule, on hand-built evidence ----------------------------------------------------------

def _ci(lo: float, hi: float) -> dict:
    return {"diff": (lo + hi) / 2, "lo": lo, "hi": hi, "p": 0.01, "n": 4}


MECH = {"coherence_diff": _ci(0.7, 0.9), "straightness_diff": _ci(-0.2, -0.05)}
WORSE, BETTER = _ci(0.05, 0.2), _ci(-0.2, -0.05)
EQUIV, OPEN = _ci(-0.005, 0.008), _ci(-0.1, 0.2)


BASE = {"unigram": 3.3, "bigram": 2.5, "trigram": 2.1}
IN_REGIME = regime.regime([2.0], BASE)  # reference below the trigram baseline


def _settings(*losses, mech=MECH, reg=IN_REGIME) -> dict:
    return {s: {**mech, "final_loss_diff": loss, "regime": reg} for s, loss in zip(c.SETTINGS, losses)}


@pytest.mark.parametrize("losses, expected", [
    ((WORSE, WORSE, WORSE, WORSE), base.SUPPORTED),
    ((WORSE, WORSE, OPEN, EQUIV), base.CAVEAT),
    ((WORSE, BETTER, BETTER, BETTER), base.CAVEAT),
    ((EQUIV, EQUIV, EQUIV, EQUIV), base.NOT_SUPPORTED),
    ((BETTER, OPEN, OPEN, EQUIV), base.NOT_SUPPORTED),
    ((OPEN, EQUIV, OPEN, EQUIV), base.INCONCLUSIVE),
])
def test_rule_gives_each_verdict(losses, expected):
    assert c.decide(_settings(*losses)) == expected


def test_penalty_everywhere_without_the_zigzag_is_only_a_caveat():
    straight = {"coherence_diff": _ci(0.7, 0.9), "straightness_diff": _ci(-0.1, 0.1)}
    assert c.decide(_settings(WORSE, WORSE, WORSE, WORSE, mech=straight)) == base.CAVEAT


def test_regime_rule_is_part_of_the_rule_text():
    assert c.RULE.index(regime.RULE) > 0 and c.OUT in c.RULE


def test_a_setting_out_of_regime_supports_and_refutes_nothing():
    out = regime.regime([2.4], BASE)
    settings = _settings(WORSE, WORSE, WORSE, WORSE)
    settings["gpt/sgd"]["regime"] = out
    assert c.decide(settings) == base.CAVEAT  # three penalties, but not "all four settings"
    settings = _settings(EQUIV, EQUIV, EQUIV, EQUIV)
    settings["mlp/adamw"]["regime"] = out
    assert c.decide(settings) == base.INCONCLUSIVE  # not "equivalent everywhere"
    assert c.decide(_settings(WORSE, BETTER, WORSE, WORSE, reg=out)) == base.INCONCLUSIVE
    del settings["mlp/adamw"]["regime"]  # no regime check recorded: out as well
    assert c.decide(settings) == base.INCONCLUSIVE


def test_a_setting_the_preset_does_not_train_counts_as_out_of_regime():
    assert c.settings_of(c.PRESETS["quick"]) == ("mlp/sgd", "mlp/adamw", "gpt/adamw")
    assert c.settings_of(c.PRESETS["standard"]) == c.SETTINGS
    settings = _settings(WORSE, WORSE, WORSE, WORSE)
    del settings["gpt/sgd"]
    assert c.decide(settings) == base.CAVEAT  # three penalties, the fourth never trained
    settings = _settings(EQUIV, EQUIV, EQUIV, EQUIV)
    del settings["gpt/sgd"]
    assert c.decide(settings) == base.INCONCLUSIVE  # not "equivalent everywhere"
    jobs = c.eval_jobs(c.PRESETS["quick"], c.chosen_lrs(c.PRESETS["quick"], {}))
    assert {(j["model"], j["optimizer"]) for j in jobs} == {("mlp", "sgd"), ("mlp", "adamw"),
                                                            ("gpt", "adamw")}
    assert len(jobs) == 3 * len(c.RUN_ACTS) * len(c.PRESETS["quick"]["seeds"])


@pytest.mark.parametrize("lo, hi, expected", [
    (0.001, 0.3, "worse"), (-0.3, -0.001, "better"), (-c.MARGIN, c.MARGIN, "equivalent"),
    (-0.02, 0.005, "unresolved"), (math.nan, math.nan, "unresolved"),
])
def test_loss_outcome_thresholds(lo, hi, expected):
    assert c.loss_outcome({"lo": lo, "hi": hi}) == expected


def test_tuning_takes_the_lowest_loss_treats_divergence_as_worst_and_grows_an_edge(monkeypatch, tmp_path):
    # fake stored runs: 1.0 diverges everywhere; 0.3 beats 0.1, except for tanh, whose loss
    # keeps falling as the rate shrinks, so its best sits on the lower edge and its grid grows
    # one step (x 1/3) at a time, up to common.MAX_EXTENSIONS = 3 steps
    preset = {**c.PRESETS["standard"], "lrs": {s: (0.1, 0.3, 1.0) for s in c.SETTINGS}}
    calls = []

    def fake_grid(study, jobs, fn, out, progress=True):
        calls.append(len(jobs))
        def loss(p):
            if p["lr"] >= 1.0:
                return None
            return p["lr"] if p["act"] == "tanh" else {0.1: 2.5, 0.3: 2.2}.get(p["lr"], 3.0)
        return [{"params": j, "final_loss": loss(j)} for j in jobs]

    monkeypatch.setattr(c, "run_grid", fake_grid)
    tuning = c.tune(preset, tmp_path, progress=False)
    lrs = c.chosen_lrs(preset, tuning)
    assert all(lrs[s][a] == 0.3 for s in c.SETTINGS for a in c.RUN_ACTS if a != "tanh")
    for s in c.SETTINGS:  # three extensions (the cap), each a third of the last edge
        assert tuning[(s, "tanh")]["lrs"] == [0.0037, 0.0111, 0.0333, 0.1, 0.3, 1.0]
        assert tuning[(s, "tanh")]["lr"] == 0.0037 and tuning[(s, "tanh")]["at_edge"]
        assert not tuning[(s, "gelu")]["at_edge"] and tuning[(s, "gelu")]["lrs"] == [0.1, 0.3, 1.0]
    assert len(calls) == 4  # the first grid, then one growth per extension


# -- the regime rule, on hand-built stored results ---------------------------------------------

SEEDS = (0, 1, 2, 3)
NOISE = (0.0, 0.02, -0.01, 0.015)  # per seed, shared by every activation (paired seeds)


def _stored(reference: float, sigmoid_gap: float = 0.1) -> list[dict]:
    """Evaluation results as run_grid stores them: sigmoid `sigmoid_gap` nats above the centred
    sigmoid with its rows single-signed and its path less straight, tanh beside the centred one,
    the GELU reference at `reference` nats; the same in every setting."""
    loss = {"sigmoid_centered": 2.0, "tanh": 2.0, "sigmoid": 2.0 + sigmoid_gap, "gelu": reference}
    coh = {"sigmoid": 1.0, "sigmoid_centered": 0.2, "tanh": 0.2, "gelu": 0.3}
    straight = {"sigmoid": 0.3, "sigmoid_centered": 0.5, "tanh": 0.5, "gelu": 0.5}
    out = []
    for s in c.SETTINGS:
        model, optimizer = s.split("/")
        for a in c.RUN_ACTS:
            for seed, noise in zip(SEEDS, NOISE):
                jitter = noise * (1.5 if a == "sigmoid" else 1.0)
                out.append({"params": {"phase": "eval", "model": model, "optimizer": optimizer,
                                       "act": a, "lr": 0.1, "seed": seed},
                            "outcome": "completed", "final_loss": loss[a] + jitter,
                            "mean_train_loss": loss[a] + 0.3 + jitter,
                            "coherence": [coh[a] + jitter / 10] * 3,
                            "straightness": straight[a] + jitter, "straightness_all": 0.5,
                            "act_mean": [0.5 if a == "sigmoid" else 0.0] * 3})
    return out


def test_reference_above_the_trigram_gives_inconclusive_with_the_reason():
    settings = c.all_settings(_stored(reference=2.3), BASE)
    for ev in settings.values():
        assert ev["loss_outcome"] == "worse" and ev["mechanism"]  # what the runs alone say
        assert not ev["regime"]["in_regime"] and ev["rule_outcome"] == c.OUT
        assert ev["regime"]["reason"] == f"reference 2.31 nats vs trigram 2.10: {regime.HINT}"
        assert ev["vs_baselines"]["gelu"]["below"] == ["unigram", "bigram"]
    assert c.decide(settings) == base.INCONCLUSIVE
    summary = c.summary_line(settings)
    assert summary == regime.out_of_regime_summary(c._joint_regime(settings))
    assert summary.startswith("out of regime (mlp/sgd reference 2.31 nats vs trigram 2.10; "
                              "mlp/adamw reference 2.31 nats")
    assert summary.endswith(f"gpt/adamw reference 2.31 nats vs trigram 2.10: {regime.HINT}): "
                            "INCONCLUSIVE, no ranking")  # the shared hint said once
    assert "worse" not in summary and "+0.1" not in summary  # no ranking
    caveats = c._caveats(settings, "quick", c.PRESETS["quick"])
    assert sum("out of regime (reference 2.31 nats" in x for x in caveats) == len(c.SETTINGS)


def test_reference_below_the_trigram_gives_the_comparisons_verdict():
    settings = c.all_settings(_stored(reference=2.0), BASE)
    assert all(ev["regime"]["in_regime"] and ev["rule_outcome"] == "worse"
               for ev in settings.values())
    assert c.decide(settings) == base.SUPPORTED
    assert c.summary_line(settings).startswith("sigmoid - centred final loss: mlp/sgd +0.1")
    # the GELU reference enters no comparison: its loss changes no paired difference
    other = c.all_settings(_stored(reference=1.5), BASE)["gpt/adamw"]
    assert other["final_loss_diff"] == settings["gpt/adamw"]["final_loss_diff"]
    # sigmoid (about 2.10) is not below the trigram baseline while the reference is: a finding
    caveats = c._caveats(settings, "full", c.PRESETS["full"])
    assert sum("sigmoid stays above the trigram baseline" in x for x in caveats) == len(c.SETTINGS)


def test_settings_out_of_regime_are_named_and_left_unranked():
    settings = c.all_settings(_stored(reference=2.0), BASE)
    high = c.all_settings(_stored(reference=2.3), BASE)
    settings["gpt/sgd"], settings["gpt/adamw"] = high["gpt/sgd"], high["gpt/adamw"]
    assert c.decide(settings) == base.CAVEAT  # worse where it counts, but not in all four
    summary = c.summary_line(settings)
    assert "mlp/sgd +0.1" in summary and "gpt/sgd out of regime (reference 2.31 nats" in summary
    assert "gpt/sgd +0.1" not in summary


def test_band_matches_mean_ci():
    rows = np.array([[1.0, 2.0], [2.0, 4.0], [4.0, 3.5]])
    mean, half = band(rows)
    for j in range(2):
        ref = mean_ci(rows[:, j])
        assert mean[j] == pytest.approx(ref["mean"])
        assert half[j] == pytest.approx(ref["hi"] - ref["mean"])


# -- the smoke preset --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("centering")
    return c.run("smoke", out, progress=False), out


@pytest.mark.slow
def test_smoke_returns_a_complete_verdict(smoke):
    verdict, _ = smoke
    assert verdict.verdict in base.VERDICTS
    assert verdict.claim == "C2" and verdict.study == "centering" and verdict.preset == "smoke"
    assert verdict.quote == CLAIMS["C2"].quote and verdict.rule == c.RULE
    assert verdict.summary and verdict.caveats
    assert set(verdict.evidence["settings"]) == set(c.SETTINGS)
    for ev in verdict.evidence["settings"].values():
        assert ev["final_loss"]["sigmoid"]["n"] == len(c.PRESETS["smoke"]["seeds"])
        assert ev["loss_outcome"] == c.loss_outcome(ev["final_loss_diff"])
    assert c.decide(verdict.evidence["settings"]) == verdict.verdict


@pytest.mark.slow
def test_smoke_figures_are_real_pngs(smoke):
    verdict, out = smoke
    assert len(verdict.figures) == 4
    for rel in verdict.figures:
        path = out / rel
        assert rel.startswith("figures/") and path.read_bytes()[:8] == PNG_SIGNATURE
        assert float(np.std(mpimg.imread(path))) > 0


@pytest.mark.slow
def test_mechanism_sanity_in_smoke_runs(smoke):
    """Sigmoid's outputs average about 1/2, σ - 1/2's about 0; and a consuming row's
    per-example gradient delta_i * a is single-signed exactly when every a_j > 0."""
    verdict, _ = smoke
    for setting, ev in verdict.evidence["settings"].items():
        assert ev["act_mean"]["sigmoid"]["mean"] > 0.3, setting
        assert abs(ev["act_mean"]["sigmoid_centered"]["mean"]) < 0.1, setting
        assert ev["coherence"]["sigmoid"]["mean"] == pytest.approx(1.0), setting
        assert ev["coherence"]["sigmoid_centered"]["mean"] < 0.5, setting


@pytest.mark.slow
def test_rerun_reuses_stored_runs(smoke, monkeypatch):
    verdict, out = smoke

    def must_not_run(params):
        raise AssertionError(f"re-ran a stored job: {params}")

    monkeypatch.setattr(c, "run_one", must_not_run)
    again = c.run("smoke", out, progress=False)
    assert again.verdict == verdict.verdict and again.summary == verdict.summary
    with Store(out / "runs.sqlite") as store:
        runs = store.runs("centering")
    preset = c.PRESETS["smoke"]
    assert len(runs) == len(c.eval_jobs(preset, c.chosen_lrs(preset, {})))  # one-point grids: no tuning
    assert all(r["status"] == "finished" for r in runs)
