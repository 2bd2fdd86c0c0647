"""Study C4 (output-head): the measurements on hand-built tensors, the decision rule on
hand-built evidence, and a smoke run end to end."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from actlab.data import ByteTokenizer, CharTokenizer
from actlab.nn.gpt import GPT
from actlab.analysis import regime as R
from actlab.studies.output_head import regimes as ohg
from actlab.studies.output_head import study as oh
from actlab.studies.output_head import runs as ohr
from actlab.studies.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, VERDICTS
from conftest import tiny_model

LN3 = math.log(3.0)


def test_softmax_probabilities_sum_to_one_and_nll_is_cross_entropy():
    torch.manual_seed(0)
    logits = 4 * torch.randn(3, 5, 50)
    y = torch.randint(0, 50, (3, 5))
    out = ohr.head_outputs(logits, y, "softmax")
    assert torch.allclose(out["sum_p"], torch.ones(15, dtype=torch.float64), atol=1e-5)
    ref = F.cross_entropy(logits.reshape(-1, 50).double(), y.reshape(-1), reduction="none")
    torch.testing.assert_close(out["nll"], ref)


def test_sigmoid_sum_renormalised_nll_and_confidences_on_hand_values():
    # row 0: all logits 0 -> p = 1/2 each, sum 2; row 1: sigma(ln 3) = 3/4, sigma(-ln 3) = 1/4
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [LN3, -LN3, -LN3, -LN3]])
    y = torch.tensor([1, 0])
    out = ohr.head_outputs(logits, y, "sigmoid")
    torch.testing.assert_close(out["sum_p"], torch.tensor([2.0, 1.5], dtype=torch.float64))
    torch.testing.assert_close(out["nll_raw"],
                               torch.tensor([math.log(2), math.log(4 / 3)], dtype=torch.float64))
    # renormalised: p_y / sum_p = (1/2)/2 = 1/4 and (3/4)/(3/2) = 1/2
    torch.testing.assert_close(out["nll"], torch.tensor([math.log(4), math.log(2)], dtype=torch.float64))
    torch.testing.assert_close(out["conf_raw"], torch.tensor([0.5, 0.75], dtype=torch.float64))
    torch.testing.assert_close(out["conf"], torch.tensor([0.25, 0.5], dtype=torch.float64))
    assert out["correct"].tolist()[1] == 1.0  # argmax of row 1 is token 0, the target


def test_sigmoid_sum_stays_finite_for_a_huge_vocabulary_of_large_logits():
    logits = torch.full((1, 60000), 50.0)  # each p rounds to 1 in float32
    out = ohr.head_outputs(logits, torch.tensor([0]), "sigmoid")
    assert out["sum_p"].item() == pytest.approx(60000.0, rel=1e-9)
    assert out["nll"].item() == pytest.approx(math.log(60000.0), rel=1e-6)


def test_ece_is_zero_when_confidence_equals_accuracy_in_every_bin():
    conf = [0.75] * 4 + [0.25] * 4
    correct = [1, 1, 1, 0] + [1, 0, 0, 0]
    cal = ohr.calibration(conf, correct)
    assert cal["ece"] == pytest.approx(0.0, abs=1e-12)
    assert sum(cal["count"]) == 8 and len(cal["count"]) == ohr.N_BINS


def test_ece_matches_the_analytic_value_when_miscalibrated():
    # all at 0.9 with half right: |0.5 - 0.9| = 0.4
    assert ohr.calibration([0.9] * 10, [1] * 5 + [0] * 5)["ece"] == pytest.approx(0.4)
    # two bins of equal weight: |0 - 0.9| and |1 - 0.3| -> (0.9 + 0.7) / 2
    assert ohr.calibration([0.9, 0.9, 0.3, 0.3], [0, 0, 1, 1])["ece"] == pytest.approx(0.8)
    # confidence 1 lands in the last bin and 0 in the first (bins are ((b-1)/B, b/B])
    cal = ohr.calibration([1.0, 0.0], [1, 0])
    assert cal["count"][-1] == 1 and cal["count"][0] == 1 and cal["ece"] == pytest.approx(0.0)


def test_sum_p_stats_on_hand_values():
    s = ohr.sum_p_stats([0.5, 1.5, 1.0, 1.0])
    assert s["mean"] == pytest.approx(1.0) and s["median"] == pytest.approx(1.0)
    assert s["mean_abs_dev"] == pytest.approx(0.25)
    assert sum(s["hist"]) == 4
    assert ohr.sum_p_stats([1.0, 1.0])["mean_abs_dev"] == 0.0


def test_token_bytes_count_utf8_bytes():
    assert ohr.token_bytes(ByteTokenizer()).tolist() == [1.0] * 256
    tok = CharTokenizer.from_text("aé€")
    assert ohr.token_bytes(tok).tolist() == [1.0, 1.0, 2.0, 3.0]  # unknown id 0 counts as 1


def test_measure_matches_a_direct_computation_on_a_tiny_model():
    torch.manual_seed(0)
    model = GPT(tiny_model(vocab_size=8, head="sigmoid"))
    x = torch.randint(0, 8, (2, 16))
    y = torch.randint(0, 8, (2, 16))
    nbytes = torch.full((8,), 2.0, dtype=torch.float64)
    m = ohr.measure(model, [(x, y)], "sigmoid", nbytes)
    with torch.no_grad():
        p = torch.sigmoid(model(x)[0].double())
    assert m["sum_p"]["mean"] == pytest.approx(p.sum(-1).mean().item(), rel=1e-9)
    assert m["nats_per_byte"] == pytest.approx(m["nats_per_token"] / 2, rel=1e-12)
    assert set(m["calibration"]) == {"sigmoid_raw", "sigmoid_renorm"}


def _ev(mean, lo, hi, n=3, slope_lo=0.005, off=0.2, div=(0, 0)):
    return {"gap": {"mean": mean, "lo": lo, "hi": hi, "n": n},
            "slope": {"slope": slope_lo + 0.01, "lo": slope_lo, "hi": slope_lo + 0.02, "n": 9},
            "off": off, "diverged": {"softmax": div[0], "sigmoid": div[1]}}


@pytest.mark.parametrize("ev, expected", [
    (_ev(0.05, 0.03, 0.07), SUPPORTED),                            # worse, grows with V, sums off
    (_ev(0.05, 0.03, 0.07, slope_lo=-0.01), CAVEAT),               # worse, but flat in V
    (_ev(0.05, 0.03, 0.07, off=0.01), CAVEAT),                     # worse, but sums near 1
    (_ev(0.005, -0.005, 0.015), CAVEAT),                           # works as a scorer, no distribution
    (_ev(0.005, -0.005, 0.015, off=0.01), NOT_SUPPORTED),          # works, and sums near 1
    (_ev(-0.03, -0.05, -0.01, off=0.01), NOT_SUPPORTED),           # sigmoid better
    (_ev(0.03, -0.01, 0.07), INCONCLUSIVE),                        # not resolved
    (_ev(0.05, math.nan, math.nan, n=1), INCONCLUSIVE),            # one seed
    (_ev(math.nan, math.nan, math.nan, n=0, slope_lo=math.nan, div=(0, 3)), CAVEAT),  # diverges, no slope
    (_ev(math.nan, math.nan, math.nan, n=0, div=(0, 3)), SUPPORTED),  # diverges, gap grows with V
])
def test_rule_returns_each_verdict_on_hand_built_evidence(ev, expected):
    verdict, reason = oh.decide(ev)
    assert verdict == expected, reason


def test_gap_slope_recovers_a_known_slope_per_doubling():
    per_vocab = [{"vocab_size": v,
                  "gap_rel": {"per_seed": [0.01 * math.log2(v) + e for e in (-0.001, 0.001)]}}
                 for v in (256, 1024, 4096)]
    s = oh.gap_slope(per_vocab)
    assert s["slope"] == pytest.approx(0.01, rel=1e-9)
    assert s["lo"] < 0.01 < s["hi"] and s["n"] == 6


# -- the regime rule on hand-built results (no training) ----------------------------------------

SIZES = (("byte", 0, 256, 1.0), ("bpe", 1024, 1024, 2.5))  # tokenizer, vocab, V, bytes per token


def _results(softmax=(2.2, 1.9), gaps=(0.03, 0.06), seeds=(0, 1, 2)) -> list[dict]:
    """Stored runs as run_grid returns them: per size, softmax at `softmax` nats per byte and
    the renormalised sigmoid `gaps` worse (relative), growing with V; sigmoid sums off by 0.2."""
    out = []
    for (tok, vocab, size, bpt), soft, gap in zip(SIZES, softmax, gaps):
        for seed in seeds:
            jitter = 0.001 * (seed - 1)
            for head, npb, off in (("softmax", soft + jitter, 0.0),
                                   ("sigmoid", (soft + jitter) * (1 + gap + jitter), 0.2)):
                out.append({"params": {"tokenizer": tok, "vocab": vocab, "head": head, "seed": seed},
                            "outcome": "completed", "vocab_size": size, "history": [],
                            "final": {"nats_per_byte": npb, "bytes_per_token": bpt,
                                      "sum_p": {"mean_abs_dev": off}}})
    return out


def _judge(results, trigram_bpe, trigram_byte=2.5):
    """The study's analysis after run_grid, with per-token baselines given by hand."""
    base = {"byte": {"unigram": 4.0, "bigram": 3.0, "trigram": trigram_byte},
            "bpe-1024": {"unigram": 9.0, "bigram": 6.0, "trigram": trigram_bpe}}
    groups = oh.group(results)
    per_vocab = [oh.summarize(g, (0, 1, 2)) for g in groups]
    losses = [{h: [oh._npb(r) for r in g["runs"][h].values()] for h in oh.HEADS} for g in groups]
    regs = ohg.size_regimes(losses, per_vocab, base, oh.HINTS["smoke"])
    ev = oh.decision_inputs(per_vocab, regs)
    return (*oh.decide(ev), ev, regs)


def test_rule_carries_the_regime_rule():
    assert R.RULE in oh.RULE and "nats per byte" in oh.RULE


def test_baselines_per_byte_use_the_study_s_bytes_per_token():
    assert ohg.per_byte({"unigram": 5.0, "bigram": 4.0, "trigram": 3.0}, 2.5) == pytest.approx(
        {"unigram": 2.0, "bigram": 1.6, "trigram": 1.2})
    assert ohg.per_byte(None, 2.5) is None and ohg.per_byte({"trigram": 1.0}, math.nan) is None


def test_reference_below_the_trigram_gives_the_verdict_of_the_comparisons():
    # bpe-1024: trigram 5.0 nats/token = 2.0 nats/byte at 2.5 bytes per token; softmax 1.9 < 2.0
    verdict, reason, ev, regs = _judge(_results(), trigram_bpe=5.0)
    assert ev["regime"]["in_regime"] and ev["regime"]["sizes_out"] == []
    assert regs["bpe-1024"]["regime"]["bar_loss"] == pytest.approx(2.0)
    assert regs["bpe-1024"]["regime"]["reference_loss"] == pytest.approx(1.9)
    no_regime = oh.decide({k: v for k, v in ev.items() if k != "regime"})
    assert (verdict, reason) == no_regime and verdict == SUPPORTED, reason
    vs = regs["bpe-1024"]["vs_baselines"]
    assert vs["softmax"]["median_loss"] == pytest.approx(1.9)
    assert vs["softmax"]["minus_trigram"] == pytest.approx(-0.1)
    assert vs["sigmoid"]["below"] == ["unigram", "bigram"]  # 1.9 * 1.06 = 2.014 > 2.0
    notes = ohg.regime_notes(regs)
    assert notes == ["V=1024 (bpe-1024), per byte: sigmoid stays above the trigram baseline "
                     "(2.014 vs 2.000 nats) while the reference is in regime"]


def test_reference_above_the_trigram_is_inconclusive_with_the_reason():
    # the same runs against a trigram of 4.5 nats/token = 1.8 nats/byte: softmax 1.9 is above it
    verdict, reason, ev, regs = _judge(_results(), trigram_bpe=4.5)
    assert verdict == INCONCLUSIVE and not ev["regime"]["in_regime"]
    assert reason == ("out of regime at the largest vocabulary: V=1024 (bpe-1024), per byte: "
                      "reference 1.90 nats vs trigram 1.80: train longer, e.g. --preset quick")
    assert oh._summary(None, ev, reason).startswith("out of regime (V=1024 (bpe-1024), per byte")
    # unconverted, 1.9 nats/byte would sit far below 4.5 nats/token and count as in regime
    assert regs["bpe-1024"]["baselines_per_byte"]["trigram"] == pytest.approx(1.8)


def test_a_smaller_size_out_of_regime_neither_supports_nor_refutes():
    # byte: softmax 2.2 nats/byte above its trigram 2.1 (1 byte per token): left out, so the
    # growth of the gap with V rests on one size and cannot support SUPPORTED
    verdict, reason, ev, regs = _judge(_results(), trigram_bpe=5.0, trigram_byte=2.1)
    assert ev["regime"]["sizes_in_regime"] == ["bpe-1024"] and ev["regime"]["sizes_out"] == ["byte"]
    assert math.isnan(ev["slope"]["slope"]) and verdict == CAVEAT
    assert reason.endswith("; left out, out of regime: byte")
    assert ohg.regime_notes(regs)[0].startswith("out of regime, left out of the decision: V=256 (byte)")
    # sigmoid runs that diverge only at the size out of regime do not count either
    diverging = [dict(r, outcome="diverged") if r["params"]["tokenizer"] == "byte"
                 and r["params"]["head"] == "sigmoid" else r for r in _results()]
    _, _, ev2, _ = _judge(diverging, trigram_bpe=5.0, trigram_byte=2.1)
    assert ev2["diverged"] == {"softmax": 0, "sigmoid": 0}


@pytest.mark.slow
def test_smoke_run_gives_a_complete_verdict_and_figures(tmp_path):
    v = oh.run("smoke", tmp_path, progress=False)
    assert v.verdict in VERDICTS and v.claim == "C4" and v.rule == oh.RULE
    per_vocab = v.evidence["per_vocab"]
    assert [p["tokenizer"] for p in per_vocab] == ["char", "byte"]
    for p in per_vocab:
        assert p["sum_p"]["softmax"]["mean_abs_dev"] < 1e-5  # softmax sums to 1, measured
        assert p["sum_p"]["sigmoid"]["mean_abs_dev"] > 1e-3  # independent sigmoids do not
        assert p["gap_rel"]["n"] == 2 and math.isfinite(p["nats_per_byte"]["sigmoid"]["mean"])
    assert v.evidence["runs"] == 8 and v.evidence["errors"] == 0
    assert len(v.figures) == 4
    import matplotlib.image as mpimg

    for rel in v.figures:
        path = tmp_path / rel
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert float(np.asarray(mpimg.imread(path))[..., :3].std()) > 0.01  # not blank
    again = oh.run("smoke", tmp_path, progress=False)  # read back from the store: same numbers
    assert again.evidence["per_vocab"] == per_vocab
    # the regime rule per size: each tokenizer's own baselines, converted to nats per byte
    for job, p in zip(oh.jobs_for(oh.PRESETS["smoke"])[::4], per_vocab):
        base = v.evidence["baselines"][p["label"]]
        assert base == ohr.data_baselines(job)
        bars = v.evidence["baselines_per_byte"][p["label"]]
        assert bars["trigram"] == pytest.approx(base["trigram"] / p["bytes_per_token"])
        reg = v.evidence["regime"][p["label"]]
        # the reference is the softmax head; of two seeds the median is the mean
        assert reg["reference_loss"] == pytest.approx(p["nats_per_byte"]["softmax"]["mean"])
        assert set(v.evidence["vs_baselines"][p["label"]]) == {"softmax", "sigmoid"}
    if not v.evidence["decision"]["regime"]["in_regime"]:
        assert v.verdict == INCONCLUSIVE and v.summary.startswith("out of regime (")
