"""The regime rule: in regime only when the reference's median final loss is below the trigram
baseline; every activation's loss against each baseline; findings only in regime."""
import math

from actlab.analysis import regime as R

BASE = {"unigram": 3.3, "bigram": 2.5, "trigram": 2.1, "smoothing": "ikn"}


def test_reference_below_the_trigram_is_in_regime():
    reg = R.regime([2.05, 1.9, 2.3], BASE)  # median 2.05 < 2.1
    assert reg["in_regime"] and reg["reason"] is None
    assert reg["reference_loss"] == 2.05 and reg["bar_loss"] == 2.1


def test_reference_above_the_trigram_is_out_with_the_reason_in_words():
    reg = R.regime([2.6, 2.65, None, float("nan")], BASE, R.hint_for("quick"))  # median of the finite: 2.625
    assert not reg["in_regime"]
    assert reg["reason"] == "reference 2.62 nats vs trigram 2.10: train longer, e.g. --preset standard"
    assert R.out_of_regime_summary(reg).startswith("out of regime (reference 2.62 nats")
    assert not R.regime([2.1], BASE)["in_regime"]  # equal is not below
    assert not R.regime([], BASE)["in_regime"] and not R.regime([1.0], None)["in_regime"]


def test_versus_baselines_and_findings():
    vs = R.versus_baselines({"gelu": [2.0, 2.02], "sigmoid": [2.4, 2.45, 2.5], "x": [None]}, BASE)
    assert vs["gelu"]["below"] == ["unigram", "bigram", "trigram"]
    assert math.isclose(vs["sigmoid"]["minus_trigram"], 2.45 - 2.1)
    assert vs["sigmoid"]["below"] == ["unigram", "bigram"]
    notes = R.findings(vs, R.regime([2.0, 2.02], BASE))
    assert notes == ["sigmoid stays above the trigram baseline (2.450 vs 2.100 nats) while the "
                     "reference is in regime", "x has no finite final loss while the reference is in regime"]
    assert R.findings(vs, R.regime([2.6], BASE)) == []  # out of regime: no findings


def test_the_report_finds_every_regime_check_in_a_verdicts_evidence():
    from actlab.report.collect import regimes
    from actlab.report.render import _regime_line

    inside, outside = R.regime([2.0], BASE), R.regime([2.6], BASE)
    evidence = {"regime": inside, "settings": {"gpt/sgd": {"regime": outside, "n": 3}}, "x": 1}
    found = regimes(evidence)
    assert [(g["label"], g["in_regime"]) for g in found] == [("all runs", True), ("settings/gpt/sgd", False)]
    assert _regime_line(found[1]) == ("reference 2.600 nats vs unigram 3.300, bigram 2.500, trigram 2.100; "
                                      "out of regime: reference 2.60 nats vs trigram 2.10: train longer, "
                                      "e.g. a larger --preset")


def test_the_report_finds_regimes_kept_per_vocabulary_size():
    from actlab.report.collect import regimes

    per_size = {"4096": R.regime([1.9], BASE), "256": R.regime([2.6], BASE)}
    evidence = {"regime": per_size, "decision": {"regime": {"in_regime": False, "sizes_out": ["256"]}}}
    assert [(g["label"], g["in_regime"]) for g in regimes(evidence)] == [("4096", True), ("256", False)]


def test_the_hint_names_the_next_larger_preset():
    assert [R.hint_for(p) for p in ("smoke", "quick", "standard")] == [
        f"train longer, e.g. --preset {p}" for p in ("quick", "standard", "full")]
    assert R.hint_for("full") == "train longer than the full preset"
