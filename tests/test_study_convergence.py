"""Study C3 (convergence): the rule on hand-built evidence, its statistics against analytic
values, and the smoke preset end to end."""

import json
import math

import matplotlib.image as mpimg
import pytest

from actlab.article.claims import CLAIMS
from actlab.analysis.stats import mean_ci
from actlab.analysis import regime
from actlab.studies import base
from actlab.studies.convergence import study as c
from actlab.analysis import ranking as runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- the rule, on hand-built comparisons -------------------------------------------------------

def _cmp(diff, lo, hi, p, n=5, a_div=0, b_div=0, b_mean=3.0, n_seeds=5):
    return {"diff": diff, "lo": lo, "hi": hi, "p": p, "p_holm": p, "n": n, "n_seeds": n_seeds,
            "a_only_diverged": a_div, "b_only_diverged": b_div, "b_mean": b_mean}


WORSE = _cmp(0.10, 0.05, 0.15, 0.001)
BETTER = _cmp(-0.10, -0.15, -0.05, 0.001)
NO_LAG = _cmp(0.002, -0.01, 0.02, 0.6)  # CI upper 0.02 < 1% of 3.0 = 0.03
OPEN = _cmp(0.05, -0.05, 0.15, 0.2)  # cannot tell
FEW = _cmp(0.10, 0.05, 0.15, 0.001, n=2, n_seeds=2)


@pytest.mark.parametrize("outs, expected", [
    ((WORSE, WORSE, WORSE), base.SUPPORTED),
    ((WORSE, OPEN, NO_LAG), base.CAVEAT),
    ((WORSE, BETTER, BETTER), base.CAVEAT),
    ((NO_LAG, NO_LAG, BETTER), base.NOT_SUPPORTED),
    ((BETTER, BETTER, BETTER), base.NOT_SUPPORTED),
    ((NO_LAG, OPEN, NO_LAG), base.INCONCLUSIVE),
    ((WORSE, WORSE, FEW), base.INCONCLUSIVE),
    ((), base.INCONCLUSIVE),
])
def test_rule_gives_each_verdict(outs, expected):
    assert c.decide(dict(zip(c.COMPARATORS, outs))) == expected


BASELINES = {"unigram": 3.34, "bigram": 2.50, "trigram": 2.08}


def test_out_of_regime_is_inconclusive_whatever_the_comparisons_say():
    # A hand-built store: sigmoid is worse than all three, but GELU (the reference) ends at a
    # median of 2.65 nats, above the trigram table's 2.08: no verdict from such models.
    comps = dict(zip(c.COMPARATORS, (WORSE, WORSE, WORSE)))
    out = regime.regime([2.64, 2.65, 2.70], BASELINES, regime.hint_for("quick"))
    assert c.decide(comps, out) == base.INCONCLUSIVE
    assert out["reason"] == "reference 2.65 nats vs trigram 2.08: train longer, e.g. --preset standard"
    assert c.decide(comps, regime.regime([1.95, 2.01, 2.03], BASELINES)) == base.SUPPORTED
    s = {"gelu": {"losses": [2.0, 2.1, 2.2], "mean": 2.1}, "relu": {"losses": [2.2, 2.3, 2.4], "mean": 2.3}}
    assert c.start_with_gelu(s, ["gelu", "relu"], out)["verdict"] == base.INCONCLUSIVE
    assert c.start_with_gelu(s, ["gelu", "relu"], regime.regime([2.0], BASELINES))["verdict"] == base.SUPPORTED


def test_divergence_decides_a_comparison_and_is_never_dropped():
    # sigmoid diverged on 3 of 5 seeds, relu on none: worse, although only 2 pairs are finite
    diverged = _cmp(math.nan, math.nan, math.nan, math.nan, n=2, a_div=3)
    assert c.outcome(diverged) == "worse"
    assert c.outcome({**diverged, "a_only_diverged": 0, "b_only_diverged": 3}) == "better"
    assert c.outcome({**diverged, "a_only_diverged": 1}) == "too few"


def test_significance_uses_the_holm_adjusted_p():
    # raw p 0.02 would pass, Holm-adjusted 0.06 does not; the CI alone (above 0) is not enough
    assert c.outcome({**WORSE, "p": 0.02, "p_holm": 0.06, "hi": 0.2}) == "unresolved"


def test_holm_matches_hand_computation():
    # sorted p: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1, but monotone: max(0.04, 0.04))
    assert runs.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert runs.holm([0.5, math.nan]) == pytest.approx([1.0, 1.0])


def _summary(means: dict, spread=0.01, n=4, diverged=()):
    out = {}
    for i, (act, m) in enumerate(means.items()):
        losses = [m + spread * (k - (n - 1) / 2) + 0.001 * i * (k % 2) for k in range(n)]
        if act in diverged:
            losses = [None] * n
        out[act] = {**mean_ci([v for v in losses if v is not None]), "losses": losses,
                    "n_diverged": n if act in diverged else 0, "n_params": 1000,
                    "tokens_per_s": mean_ci([1.0] * n)}
    return out


def test_rank_puts_diverged_last_and_sorts_by_mean():
    s = _summary({"gelu": 2.0, "relu": 1.9, "sigmoid": 2.2, "tanh": 1.0}, diverged=("tanh",))
    assert runs.rank(s) == ["relu", "gelu", "sigmoid", "tanh"]


def test_paired_comparison_sees_a_constant_shift_that_unpaired_cis_miss():
    # every seed of sigmoid is 0.05 above gelu's: CIs overlap (spread 0.1), the pairs do not
    s = _summary({"gelu": 2.0, "sigmoid": 2.05}, spread=0.1)
    s["sigmoid"]["losses"] = [v + 0.05 for v in s["gelu"]["losses"]]
    assert mean_ci(s["sigmoid"]["losses"])["lo"] < mean_ci(s["gelu"]["losses"])["hi"]
    cmp_ = runs.paired_comparison(s, "sigmoid", "gelu")
    assert cmp_["diff"] == pytest.approx(0.05) and cmp_["n"] == 4 and cmp_["p"] < 1e-10
    assert cmp_["lo"] == pytest.approx(0.05) and cmp_["hi"] == pytest.approx(0.05)


# -- start with GELU ---------------------------------------------------------------------------

def test_start_with_gelu_each_verdict():
    s = _summary({"gelu": 2.0, "swiglu": 2.1})
    assert c.start_with_gelu(s, runs.rank(s))["verdict"] == base.SUPPORTED  # ranks first
    s = _summary({"gelu": 2.0, "swiglu": 1.95}, spread=0.5)  # behind, within noise
    s["gelu"]["losses"] = [v + d for v, d in zip(s["swiglu"]["losses"], (0.2, -0.1, 0.1, 0.0))]
    s["gelu"].update(mean_ci(s["gelu"]["losses"]))
    assert c.start_with_gelu(s, ["swiglu", "gelu"])["verdict"] == base.SUPPORTED
    s = _summary({"gelu": 2.0, "swiglu": 1.99})  # significantly behind by 0.5%
    s["gelu"]["losses"] = [v + 0.01 + 0.001 * k for k, v in enumerate(s["swiglu"]["losses"])]
    s["gelu"].update(mean_ci(s["gelu"]["losses"]))
    ev = c.start_with_gelu(s, ["swiglu", "gelu"])
    assert ev["verdict"] == base.CAVEAT and ev["gelu_rank"] == 2
    s["gelu"]["losses"] = [v + 0.1 + 0.001 * k for k, v in enumerate(s["swiglu"]["losses"])]
    s["gelu"].update(mean_ci(s["gelu"]["losses"]))
    assert c.start_with_gelu(s, ["swiglu", "gelu"])["verdict"] == base.NOT_SUPPORTED


# -- Spearman against Shazeer 2020 Table 1 -----------------------------------------------------

def test_spearman_against_shazeer_on_hand_built_orderings():
    shazeer_order = sorted(c.SHAZEER_2020, key=c.SHAZEER_2020.get)  # geglu, swiglu, ... relu
    assert shazeer_order[0] == "geglu" and shazeer_order[-1] == "relu"
    assert c.spearman_vs_shazeer(shazeer_order)["rho"] == pytest.approx(1.0)
    assert c.spearman_vs_shazeer(shazeer_order[::-1])["rho"] == pytest.approx(-1.0)
    # one adjacent swap among n = 8: rho = 1 - 6 * 2 / (8 * (64 - 1)) = 1 - 12/504
    swapped = shazeer_order[:3] + [shazeer_order[4], shazeer_order[3]] + shazeer_order[5:]
    assert c.spearman_vs_shazeer(swapped)["rho"] == pytest.approx(1 - 12 / 504)
    # activations Shazeer did not test are left out, not ranked
    res = c.spearman_vs_shazeer(["sigmoid", "gelu", "tanh", "relu", "silu"])
    assert res["acts"] == ["gelu", "relu", "silu"] and res["n"] == 3
    # our order gelu < relu < silu vs Shazeer's gelu 1.983 < silu 1.994 < relu 1.997: d = 0,1,1
    assert res["rho"] == pytest.approx(1 - 6 * 2 / (3 * 8))


def test_steps_to_target_uses_the_trailing_mean():
    hist = [{"step": i, "train_loss": v} for i, v in enumerate([4.0] * 5 + [2.0] * 20)]
    # trailing mean over 10 steps falls to <= 3.0 once 5 of the 10 are 2.0: at step index 9
    assert runs.steps_to(hist, 3.0) == 10
    assert runs.steps_to(hist, 1.0) is None


def test_pick_lrs_prefers_lowest_loss_and_treats_divergence_as_worst():
    sweep = [{"params": {"act": "relu", "lr": lr}, "final_val_loss": v}
             for lr, v in ((1e-3, 2.5), (3e-3, 2.4), (1e-2, math.nan))]
    got = c.pick_lrs(sweep)["relu"]
    assert got["lr"] == 3e-3 and got["at_edge"] is False
    assert got["val_loss"][-1] == math.inf


# -- the smoke preset end to end ---------------------------------------------------------------

@pytest.mark.slow
def test_smoke_study_writes_a_complete_verdict(tmp_path):
    verdict = c.run("smoke", tmp_path, progress=False)
    base.write_verdict(verdict, tmp_path)
    data = json.loads((tmp_path / "verdict.json").read_text())
    assert data["verdict"] in base.VERDICTS and data["claim"] == "C3"
    assert data["quote"] == CLAIMS["C3"].quote and data["rule"] == c.RULE
    assert data["study"] == "convergence" and data["preset"] == "smoke" and data["summary"]
    ev = data["evidence"]
    preset = c.PRESETS["smoke"]
    assert set(ev["ranking"]) == set(preset["acts"])
    assert ev["start_with_gelu"]["verdict"] in base.VERDICTS
    # the smoke preset has 2 seeds < MIN_PAIRS: the rule must not claim a result
    assert data["verdict"] == base.INCONCLUSIVE
    for act, s in ev["per_act"].items():
        finite = [v for v in s["losses"] if v is not None]
        assert s["mean"] == pytest.approx(sum(finite) / len(finite))
        assert s["n_params"] > 0 and s["lr"] in ev["lr_tuning"][act]["lrs"]
    # the smoke activations are all plain, so the models are identical in size
    assert len({s["n_params"] for s in ev["per_act"].values()}) == 1
    assert len(data["figures"]) == 5 and "figures/val_loss_vs_time.png" in data["figures"]
    for rel in data["figures"]:
        path = tmp_path / rel
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        assert mpimg.imread(path).std() > 0
    # everything came from the store: a second run recomputes nothing and agrees exactly
    again = c.run("smoke", tmp_path, progress=False)
    assert again.evidence["per_act"]["gelu"]["losses"] == ev["per_act"]["gelu"]["losses"]


def test_seed_spread_names_only_unsettled_activations():
    summary = {
        "gelu": {"losses": [2.63, 2.65, 2.68]},           # range 0.05: settled
        "relu": {"losses": [2.69, 2.91, 2.89]},           # range 0.22: one seed left the plateau
        "sigmoid": {"losses": [2.92, None, 3.20]},        # a diverged seed is left out: 0.28
        "tanh": {"losses": [2.60, None, None]},           # one finite loss: no range
    }
    spread = c.seed_spread(summary)
    assert set(spread) == {"relu", "sigmoid"}
    assert spread["relu"] == pytest.approx(0.22) and spread["sigmoid"] == pytest.approx(0.28)
    assert c.seed_spread(summary, limit=0.3) == {}
    assert c.seed_spread(summary, limit=0.01).keys() == {"gelu", "relu", "sigmoid"}


def test_a_best_rate_on_the_grid_edge_grows_the_grid_one_step():
    from actlab.studies import common

    def tuned(losses):
        return [{"params": {"act": "relu", "lr": lr}, "final_val_loss": v} for lr, v in losses.items()]

    top = common.pick_lrs(tuned({3e-3: 2.5, 1e-2: 2.4, 3e-2: 2.3}), lambda p: p["act"], loss_key="final_val_loss")
    assert top["relu"]["at_edge"] and common.extend_grid(top) == {"relu": 0.09}
    low = common.pick_lrs(tuned({3e-3: 2.2, 1e-2: 2.4, 3e-2: 2.5}), lambda p: p["act"], loss_key="final_val_loss")
    assert common.extend_grid(low) == {"relu": 0.0009}  # the bottom step's own ratio, 10/3
    inner = common.pick_lrs(tuned({3e-3: 2.5, 1e-2: 2.2, 3e-2: 2.4}), lambda p: p["act"], loss_key="final_val_loss")
    assert common.extend_grid(inner) == {}
    capped = common.pick_lrs(tuned({0.1: 2.5, 0.3: 2.2}), lambda p: p["act"], loss_key="final_val_loss")
    assert common.extend_grid(capped) == {}  # 0.9 would pass the upper bound


def test_standard_ranks_eleven_and_quick_the_articles_four():
    standard = c.PRESETS["standard"]["acts"]
    assert standard == c.ACTS and len(standard) == 11 and len(set(standard)) == 11
    assert standard.index("leaky_relu2") == standard.index("relu2") + 1
    assert c.PRESETS["quick"]["acts"] == ("sigmoid", "relu", "gelu", "silu")
    assert c.PRESETS["full"]["acts"] == c.ACTS + ("bilinear",)
    from actlab.activations import names
    assert set(standard) <= set(names())  # every entry is registered
